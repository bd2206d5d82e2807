//! [`prune`]: the depmod files of a module directory cut down to the modules
//! an image holds, so PID 1 parses a few lines instead of the host's
//! 4,000-module index. Lines are split by the same functions the parsers
//! use, so the pruned files say what the full ones said about those modules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use super::alias::split_alias_line;
use super::builtin::builtin_name;
use super::dep::{module_name_of_path, split_dep_line};
use super::softdep::split_softdep_line;
use super::{content_lines, modinfo_alias, read_index_bytes, read_index_file};
use super::{IndexError, IndexErrorKind};
use crate::name::ModuleName;

/// `modules.builtin` (and the alias records of `modules.builtin.modinfo`)
/// are kept whole when at most this many bytes (Debian's are 6 KiB and
/// 2 KiB): cheap to parse, and a manifest naming a builtin module keeps
/// working whatever the plan said. Larger ones are cut to the plan's
/// builtin modules.
pub const BUILTIN_WHOLE_MAX_BYTES: u64 = 64 * 1024;

/// Why [`prune`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneError {
    /// A depmod file cannot be read or has a bad line: the error
    /// [`DepIndex::load`](super::DepIndex::load) gives for it.
    Index(IndexError),
    /// The `modules.dep` line of kept module `module` (its host path) lists
    /// `dep`, which is not kept: the image would not boot.
    MissingDependency {
        module: String,
        dep: String,
        /// The `modules.dep` file, as its path reads.
        file: String,
    },
}

impl fmt::Display for PruneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PruneError::Index(e) => write!(f, "{e}"),
            PruneError::MissingDependency { module, dep, file } => write!(
                f,
                "{file}: {module} is kept but its dependency {dep} is not"
            ),
        }
    }
}

impl std::error::Error for PruneError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PruneError::Index(e) => Some(e),
            PruneError::MissingDependency { .. } => None,
        }
    }
}

impl From<IndexError> for PruneError {
    fn from(e: IndexError) -> Self {
        PruneError::Index(e)
    }
}

/// Prunes the depmod text files of `dir` to the `included` module files, a
/// map from each path in the host's `modules.dep` to its path in the image
/// (`modules.dep` is written with the image paths). `builtin_in_plan`: the
/// builtin modules to keep when `modules.builtin` or the aliases of
/// `modules.builtin.modinfo` are too large to keep whole
/// ([`BUILTIN_WHOLE_MAX_BYTES`]).
///
/// Returns each file present (`modules.dep`, which is required, then
/// `modules.softdep`, `modules.alias`, `modules.builtin`,
/// `modules.builtin.modinfo`) with its pruned bytes. Lines keep the host's
/// order, so the output is deterministic. Reads files like
/// [`DepIndex::load`](super::DepIndex::load) and is meant to run after it:
/// lines the parsers would refuse are skipped, except a bad module path in
/// a kept line.
pub fn prune(
    dir: &Path,
    included: &BTreeMap<&str, &str>,
    builtin_in_plan: &BTreeSet<ModuleName>,
) -> Result<Vec<(&'static str, Vec<u8>)>, PruneError> {
    let label = |n: &str| dir.join(n).display().to_string();
    let mut out = Vec::new();

    let dep = read_index_file(dir, "modules.dep")?
        .ok_or_else(|| IndexErrorKind::Missing.at(&label("modules.dep"), 0))?;
    let (kept, names) = prune_dep(&dep, &label("modules.dep"), included)?;
    out.push(("modules.dep", kept.into_bytes()));

    // softdep MODULE pre: … post: …, for kept modules.
    if let Some(text) = read_index_file(dir, "modules.softdep")? {
        let kept = kept_lines(&text, |line| match split_softdep_line(line) {
            Ok(Some((module, _))) => is_kept(module, &names),
            _ => false,
        });
        out.push(("modules.softdep", kept.into_bytes()));
    }

    // alias PATTERN MODULE, for kept modules: aliases in the manifest and in
    // softdeps resolve at boot to what the image holds, and to nothing else.
    if let Some(text) = read_index_file(dir, "modules.alias")? {
        let kept = kept_lines(&text, |line| {
            split_alias_line(line).is_some_and(|(_, module)| is_kept(module, &names))
        });
        out.push(("modules.alias", kept.into_bytes()));
    }

    // modules.builtin: whole when small, else the plan's builtin modules.
    if let Some(text) = read_index_file(dir, "modules.builtin")? {
        if text.len() as u64 <= BUILTIN_WHOLE_MAX_BYTES {
            out.push(("modules.builtin", text.into_bytes()));
        } else {
            let file = label("modules.builtin");
            let mut kept = String::new();
            for (no, line) in content_lines(&text) {
                let name = builtin_name(line).map_err(|k| k.at(&file, no))?;
                if builtin_in_plan.contains(&name) {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
            out.push(("modules.builtin", kept.into_bytes()));
        }
    }

    // modules.builtin.modinfo: only its `alias` records are read at boot
    // (aliases of builtin modules, e.g. `crypto-dh` → dh_generic); all of
    // them when small, like modules.builtin, else those of the plan's
    // builtin modules. Descriptions, authors and parameters are dropped.
    if let Some(bytes) = read_index_bytes(dir, "modules.builtin.modinfo")? {
        let aliases: Vec<(&[u8], &[u8])> = bytes
            .split(|&b| b == 0)
            .filter_map(|r| modinfo_alias(r).map(|(module, _)| (r, module)))
            .collect();
        let all_bytes: usize = aliases.iter().map(|(r, _)| r.len() + 1).sum();
        let mut kept = Vec::new();
        for (record, module) in aliases {
            let keep = all_bytes as u64 <= BUILTIN_WHOLE_MAX_BYTES
                || std::str::from_utf8(module)
                    .ok()
                    .and_then(|m| ModuleName::new(m).ok())
                    .is_some_and(|m| builtin_in_plan.contains(&m));
            if keep {
                kept.extend_from_slice(record);
                kept.push(0);
            }
        }
        out.push(("modules.builtin.modinfo", kept));
    }
    Ok(out)
}

/// The `modules.dep` lines of included modules, with image paths, and the
/// names of those modules. Their dependencies must be included too; that
/// is the planner's promise, checked here because a hole would only show at
/// boot.
fn prune_dep(
    text: &str,
    file: &str,
    included: &BTreeMap<&str, &str>,
) -> Result<(String, BTreeSet<ModuleName>), PruneError> {
    let mut names = BTreeSet::new();
    let mut kept = String::new();
    for (no, line) in content_lines(text) {
        let Some((path, deps)) = split_dep_line(line) else {
            continue; // malformed: DepIndex::load already judged it
        };
        let Some(image_path) = included.get(path) else {
            continue;
        };
        kept.push_str(image_path);
        kept.push(':');
        for d in deps {
            let Some(image_dep) = included.get(d) else {
                return Err(PruneError::MissingDependency {
                    module: path.to_owned(),
                    dep: d.to_owned(),
                    file: file.to_owned(),
                });
            };
            kept.push(' ');
            kept.push_str(image_dep);
        }
        names.insert(module_name_of_path(path).map_err(|k| k.at(file, no))?);
        kept.push('\n');
    }
    Ok((kept, names))
}

/// The content lines of `text` that `keep` accepts, each ending in `\n`.
fn kept_lines(text: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut kept = String::new();
    for (_, line) in content_lines(text) {
        if keep(line) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// True if `module` (as a line spells it) names a kept module.
fn is_kept(module: &str, names: &BTreeSet<ModuleName>) -> bool {
    ModuleName::new(module).is_ok_and(|m| names.contains(&m))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs;

    use super::*;
    use crate::depmod::DepIndex;

    fn n(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    /// A small module directory: a → b (dependency), a softdeps on the
    /// alias crypto-crc (crc_x or crc_y), c unrelated.
    fn fake_dir() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(
            d.join("modules.dep"),
            "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\nkernel/c.ko: kernel/b.ko\n\
             kernel/crc_x.ko:\nkernel/sub/crc-y.ko.xz:\n",
        )
        .unwrap();
        fs::write(
            d.join("modules.softdep"),
            "# Soft dependencies extracted from modules themselves.\n\
             softdep a pre: crypto-crc\nsoftdep c pre: b post: a\n",
        )
        .unwrap();
        fs::write(
            d.join("modules.alias"),
            "# Aliases extracted from modules themselves.\n\
             alias crypto-crc crc_x\nalias crypto-crc crc_y\n\
             alias pci:v00001AF4d*sv*sd*bc*sc*i* a\nalias foo c\n",
        )
        .unwrap();
        fs::write(
            d.join("modules.builtin"),
            "kernel/lib/crc16.ko\nkernel/fs/ext2.ko\n",
        )
        .unwrap();
        t
    }

    fn pruned(dir: &Path, files: &[&str]) -> BTreeMap<&'static str, String> {
        let included: BTreeMap<&str, &str> = files.iter().map(|f| (*f, *f)).collect();
        prune(dir, &included, &BTreeSet::new())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
            .collect()
    }

    fn file<'a>(out: &'a [(&'static str, Vec<u8>)], name: &str) -> &'a [u8] {
        &out.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn prunes_every_index_file_to_the_included_modules() {
        let t = fake_dir();
        let p = pruned(
            t.path(),
            &["kernel/a.ko", "kernel/b.ko", "kernel/sub/crc-y.ko.xz"],
        );
        assert_eq!(
            p["modules.dep"],
            "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\nkernel/sub/crc-y.ko.xz:\n"
        );
        assert_eq!(p["modules.softdep"], "softdep a pre: crypto-crc\n");
        // crc_y matches crc-y.ko.xz through name normalisation; crc_x is out.
        assert_eq!(
            p["modules.alias"],
            "alias crypto-crc crc_y\nalias pci:v00001AF4d*sv*sd*bc*sc*i* a\n"
        );
        // Small: copied whole.
        assert_eq!(
            p["modules.builtin"],
            "kernel/lib/crc16.ko\nkernel/fs/ext2.ko\n"
        );
    }

    #[test]
    fn modules_dep_is_written_with_the_image_paths() {
        let t = fake_dir();
        let included: BTreeMap<&str, &str> = [
            ("kernel/a.ko", "kernel/a.ko"),
            ("kernel/b.ko", "kernel/b.ko"),
            ("kernel/sub/crc-y.ko.xz", "kernel/sub/crc-y.ko"),
        ]
        .into();
        let out = prune(t.path(), &included, &BTreeSet::new()).unwrap();
        assert_eq!(
            file(&out, "modules.dep"),
            b"kernel/a.ko: kernel/b.ko\nkernel/b.ko:\nkernel/sub/crc-y.ko:\n"
        );
    }

    #[test]
    fn a_dependency_missing_from_the_selection_is_an_error() {
        let t = fake_dir();
        let included: BTreeMap<&str, &str> = [("kernel/a.ko", "kernel/a.ko")].into();
        let e = prune(t.path(), &included, &BTreeSet::new()).unwrap_err();
        let PruneError::MissingDependency { module, dep, file } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(
            (module.as_str(), dep.as_str()),
            ("kernel/a.ko", "kernel/b.ko")
        );
        assert!(file.ends_with("modules.dep"), "{file}");
        let msg = e.to_string();
        assert!(
            msg.contains("kernel/a.ko") && msg.contains("kernel/b.ko"),
            "{msg}"
        );
    }

    #[test]
    fn optional_index_files_may_be_absent_but_modules_dep_may_not() {
        let t = fake_dir();
        for f in ["modules.softdep", "modules.alias", "modules.builtin"] {
            fs::remove_file(t.path().join(f)).unwrap();
        }
        let p = pruned(t.path(), &["kernel/b.ko"]);
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), ["modules.dep"]);
        fs::remove_file(t.path().join("modules.dep")).unwrap();
        let e = prune(t.path(), &BTreeMap::new(), &BTreeSet::new()).unwrap_err();
        assert!(
            matches!(&e, PruneError::Index(i) if i.kind == IndexErrorKind::Missing),
            "{e:?}"
        );
        assert!(e.to_string().contains("modules.dep"), "{e}");
    }

    #[test]
    fn a_large_builtin_list_is_cut_to_the_planned_builtins() {
        let t = fake_dir();
        let mut big = String::new();
        for i in 0..5000 {
            big.push_str(&format!("kernel/drivers/x/builtin_{i}.ko\n"));
        }
        big.push_str("kernel/lib/crc16.ko\n");
        fs::write(t.path().join("modules.builtin"), big).unwrap();
        let planned: BTreeSet<ModuleName> = [n("crc16")].into();
        let out = prune(t.path(), &BTreeMap::new(), &planned).unwrap();
        assert_eq!(file(&out, "modules.builtin"), b"kernel/lib/crc16.ko\n");
    }

    #[test]
    fn builtin_modinfo_keeps_only_alias_records() {
        let t = fake_dir();
        fs::write(
            t.path().join("modules.builtin.modinfo"),
            b"dh_generic.alias=crypto-dh\0dh_generic.author=J\xf6rn\0\
              crc16.parm=x:a.alias=b\0tracefs.alias=fs-tracefs\0",
        )
        .unwrap();
        let out = prune(t.path(), &BTreeMap::new(), &BTreeSet::new()).unwrap();
        let modinfo = file(&out, "modules.builtin.modinfo");
        assert_eq!(
            modinfo,
            b"dh_generic.alias=crypto-dh\0tracefs.alias=fs-tracefs\0"
        );
        // What PID 1 reads back: the alias resolves to the builtin module.
        let mut idx = DepIndex::default();
        idx.add_builtin_modinfo(modinfo, "modules.builtin.modinfo")
            .unwrap();
        assert_eq!(idx.resolve("fs-tracefs"), vec![n("tracefs")]);

        // Too many to copy whole: only the plan's builtin modules keep theirs.
        let mut big = Vec::new();
        for i in 0..5000 {
            big.extend_from_slice(format!("builtin_{i}.alias=pci:v{i:08X}d*\0").as_bytes());
        }
        big.extend_from_slice(b"dh_generic.alias=crypto-dh\0");
        fs::write(t.path().join("modules.builtin.modinfo"), big).unwrap();
        let planned: BTreeSet<ModuleName> = [n("dh_generic")].into();
        let out = prune(t.path(), &BTreeMap::new(), &planned).unwrap();
        assert_eq!(
            file(&out, "modules.builtin.modinfo"),
            b"dh_generic.alias=crypto-dh\0"
        );
    }

    #[test]
    fn pruned_files_load_and_know_only_the_kept_modules() {
        let t = fake_dir();
        let included: BTreeMap<&str, &str> = [
            ("kernel/a.ko", "kernel/a.ko"),
            ("kernel/b.ko", "kernel/b.ko"),
            ("kernel/sub/crc-y.ko.xz", "kernel/sub/crc-y.ko.xz"),
        ]
        .into();
        let out = prune(t.path(), &included, &BTreeSet::new()).unwrap();
        let image = tempfile::tempdir().unwrap();
        for (name, bytes) in &out {
            fs::write(image.path().join(name), bytes).unwrap();
        }
        let idx = DepIndex::load(image.path()).unwrap();
        assert!(idx.module(&n("a")).is_some() && idx.module(&n("c")).is_none());
        assert_eq!(idx.resolve("crypto-crc"), vec![n("crc_y")]);
    }
}

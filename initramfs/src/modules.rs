//! Which module files go into the image, and the depmod index pruned to them.
//!
//! The host's plan decides (`Plan::module_files`): the manifest's modules,
//! their `modules.dep` dependencies and the `pre:` softdeps the planner
//! resolved. The depmod files are then cut down to those modules
//! ([`depmod::prune`], owned by the format's parser) so PID 1
//! parses a few lines instead of the host's 4,000-module index, and the
//! pruned index is planned again to prove that PID 1 will see the same plan.
//!
//! Compressed module files (`.ko.xz`, `.ko.zst`, `.ko.gz`) are decompressed
//! here by default and stored as `.ko`, `modules.dep` rewritten to match
//! ([`ModuleCompression`]): the image is compressed as a whole, so `/init`
//! needs no decoder and the kernel's `finit_module` takes the file as is.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use modules_manifest::depmod::{self, PruneError};

pub use crate::params::{check_params, module_params, params_of_file, ModuleParams};
use modules_manifest::{
    plan, Action, Compression, DepIndex, KernelCmdline, Manifest, ModuleName, Plan, PlanInput,
    PlanNode,
};

/// What the image builder does with compressed module files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ModuleCompression {
    /// Decompress `.ko.xz`, `.ko.zst` and `.ko.gz` at build time and store
    /// them as `.ko` (the default). The image's own compression then covers
    /// them, usually better than per-file compression does, and `/init`
    /// needs no decoder whatever the kernel. A signed module keeps its
    /// signature: it is appended to the uncompressed file, which is what
    /// the image holds, byte for byte.
    #[default]
    None,
    /// Store module files as they are on disk. For kernels that decompress
    /// modules themselves (`CONFIG_MODULE_DECOMPRESS`, 5.17 and later; see
    /// `/sys/module/compression`), or an `/init` built with the decoders.
    Keep,
}

impl ModuleCompression {
    pub fn name(self) -> &'static str {
        match self {
            ModuleCompression::None => "none",
            ModuleCompression::Keep => "keep",
        }
    }
}

/// The largest decompressed module accepted (256 MiB): the biggest in-tree
/// modules are tens of MiB; more is a broken or hostile file.
pub const MAX_DECOMPRESSED_MODULE_BYTES: u64 = 256 << 20;

/// depmod files the image carries, pruned; the others (`.bin` tries,
/// `modules.symbols`, `modules.order`…) are not read by PID 1.
pub const INDEX_FILES: [&str; 5] = [
    "modules.dep",
    "modules.softdep",
    "modules.alias",
    "modules.builtin",
    "modules.builtin.modinfo",
];

/// Why the module selection failed.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("kernel release {0:?} is not a plain directory name")]
    BadRelease(String),
    #[error("module directory {dir} does not exist (check --kernel-release and --modules-root)")]
    NoModuleDir { dir: PathBuf },
    #[error("reading the module index: {0}")]
    Index(#[from] modules_manifest::depmod::IndexError),
    #[error("the manifest does not plan against {dir}: {source}")]
    Plan {
        dir: PathBuf,
        /// Boxed: the typed error carries names and JSON paths, and every
        /// `Result` of the builder would otherwise be as large.
        #[source]
        source: Box<modules_manifest::plan::PlanError>,
    },
    #[error("module path {path:?} in {dir}/modules.dep: {why}")]
    UnsafePath {
        dir: PathBuf,
        path: String,
        why: &'static str,
    },
    #[error("module file {path}: {source}")]
    ModuleFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("module file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error(
        "the plan includes {module} but not its dependency {dep} ({file}): the image would not boot"
    )]
    MissingDependency {
        module: String,
        dep: String,
        file: PathBuf,
    },
    #[error("checking the pruned index: {0}")]
    Verify(String),
    #[error("decompressing module file {path}: {what}")]
    Decompress { path: PathBuf, what: String },
    #[error("modprobe.d alias {pattern} {module} ({origin}): {why}")]
    BadAlias {
        pattern: String,
        module: ModuleName,
        origin: String,
        why: String,
    },
    #[error("module file {path}: reading its parameters: {why}")]
    ModuleParams { path: PathBuf, why: String },
    #[error("compiling the image's module index: {why}")]
    CompileIndex { why: String },
    #[error(
        "module {module} has no parameter {} (declared at {at}: {params:?}); its parameters are: {}. \
         Fix the name, or pass --allow-unknown-params to build anyway (the kernel ignores an \
         unknown parameter with a warning)",
        unknown.join(", "),
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    )]
    UnknownParams {
        module: ModuleName,
        unknown: Vec<String>,
        at: String,
        params: String,
        known: Vec<String>,
    },
}

/// Pruning reads the index files as [`DepIndex::load`] does, so its errors
/// read as the index's; a hole in the selection keeps its own message.
impl From<PruneError> for ModulesError {
    fn from(e: PruneError) -> Self {
        match e {
            PruneError::Index(e) => ModulesError::Index(e),
            PruneError::MissingDependency { module, dep, file } => {
                ModulesError::MissingDependency {
                    module,
                    dep,
                    file: file.into(),
                }
            }
        }
    }
}

/// One module file to copy into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Relative to the module directory, as in `modules.dep`.
    pub rel: String,
    /// Relative to the module directory in the image: `rel`, or `rel`
    /// without its `.xz`/`.zst`/`.gz` suffix when it is decompressed.
    pub image_rel: String,
    /// Decompress the source with this format when building the image
    /// (`None` when it is copied as is).
    pub decompress: Option<Compression>,
    /// The file on the host (symlinks resolved, inside the module directory).
    pub source: PathBuf,
    /// Size of the host file.
    pub size: u64,
    /// Permission bits on the host.
    pub perm: u32,
}

/// The result of module selection.
#[derive(Debug, Clone)]
pub struct Selection {
    /// `MODULES_ROOT/lib/modules/RELEASE` as given (not canonicalised).
    pub dir: PathBuf,
    pub plan: Plan,
    /// In plan (topological) order.
    pub files: Vec<ModuleFile>,
    /// Pruned depmod files: (file name, contents), for every file of
    /// [`INDEX_FILES`] the host has (and `modules.params`, added by the
    /// image builder).
    pub index: Vec<(&'static str, Vec<u8>)>,
    /// The builder's notes beyond the plan's (modprobe.d origins…).
    pub notes: Vec<String>,
    /// Things the builder let through that deserve a look.
    pub warnings: Vec<String>,
}

/// `modules_root/lib/modules/release`, with `release` checked to be one
/// plain path component (it is joined to paths and comes from the user).
pub fn module_dir(modules_root: &Path, release: &str) -> Result<PathBuf, ModulesError> {
    let bad = release.is_empty()
        || release == "."
        || release == ".."
        || release.contains('/')
        || release.contains('\0');
    if bad {
        return Err(ModulesError::BadRelease(release.to_owned()));
    }
    Ok(modules_root.join("lib/modules").join(release))
}

/// Plans `manifest` against the module tree (empty command line, nothing
/// loaded: the image must hold everything a boot could need), resolves and
/// checks every module file, and prunes the index (module paths renamed as
/// `modules` says). Reads only; writes nothing.
pub fn select(
    manifest: &Manifest,
    dir: &Path,
    modules: ModuleCompression,
) -> Result<Selection, ModulesError> {
    let index = load_index(dir)?;
    select_in(manifest, dir, &index, &[], &BTreeSet::new(), modules)
}

/// The index of `dir` (which must exist).
pub fn load_index(dir: &Path) -> Result<DepIndex, ModulesError> {
    if !dir.is_dir() {
        return Err(ModulesError::NoModuleDir {
            dir: dir.to_owned(),
        });
    }
    Ok(DepIndex::load(dir)?)
}

/// [`select`] against an index already loaded from `dir` (with
/// `extra_aliases` from modprobe.d already in it): those whose module the
/// plan inserts are added to the image's `modules.alias`, the others are
/// dropped (nothing in the image could load them). `coldplug`: modules
/// the image carries beyond the plan, for `/init`'s coldplug, with what
/// they need (`--coldplug host`, `--coldplug-modules`); one that cannot be
/// planned is left out with a warning.
pub fn select_in(
    manifest: &Manifest,
    dir: &Path,
    index: &DepIndex,
    extra_aliases: &[(String, ModuleName)],
    coldplug: &BTreeSet<ModuleName>,
    modules: ModuleCompression,
) -> Result<Selection, ModulesError> {
    let plan = plan_against(manifest, index).map_err(|source| ModulesError::Plan {
        dir: dir.to_owned(),
        source: Box::new(source),
    })?;
    let (extra_files, warnings) = coldplug_files(manifest, index, &plan, coldplug);

    let canon_dir = fs::canonicalize(dir).map_err(|source| ModulesError::ModuleFile {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for rel in plan
        .module_files()
        .chain(extra_files.iter().map(String::as_str))
    {
        let mut f = resolve_module_file(dir, &canon_dir, rel)?;
        if modules == ModuleCompression::None {
            if let Some((c, plain)) = compressed_name(rel) {
                f.image_rel = plain.to_owned();
                f.decompress = Some(c);
            }
        }
        files.push(f);
    }

    let included: BTreeMap<&str, &str> = files
        .iter()
        .map(|f| (f.rel.as_str(), f.image_rel.as_str()))
        .collect();
    let builtin_names: BTreeSet<ModuleName> = plan
        .nodes
        .iter()
        .filter(|n| n.action == Action::Builtin)
        .map(|n| n.name.clone())
        .collect();
    let mut pruned = depmod::prune(dir, &included, &builtin_names)?;
    let inserted: BTreeSet<&ModuleName> = plan
        .nodes
        .iter()
        .filter(|n| matches!(n.action, Action::Insert { .. }))
        .map(|n| &n.name)
        .chain(coldplug.iter())
        .collect();
    let mut extra = String::new();
    for (pattern, module) in extra_aliases {
        if inserted.contains(module) {
            extra.push_str(&format!("alias {pattern} {module}\n"));
        }
    }
    if !extra.is_empty() {
        match pruned.iter_mut().find(|(n, _)| *n == "modules.alias") {
            Some((_, bytes)) => bytes.extend_from_slice(extra.as_bytes()),
            None => pruned.push(("modules.alias", extra.into_bytes())),
        }
    }
    Ok(Selection {
        dir: dir.to_owned(),
        plan,
        files,
        index: pruned,
        notes: Vec::new(),
        warnings,
    })
}

/// The module files the coldplug modules need beyond `plan`'s (each with
/// its dependencies and softdeps, planned as `/init` will plan them: the
/// manifest's params, blocklist and softdeps), and a warning for each that
/// cannot be planned. A module on the manifest's blocklist is left out.
fn coldplug_files(
    manifest: &Manifest,
    index: &DepIndex,
    plan: &Plan,
    coldplug: &BTreeSet<ModuleName>,
) -> (Vec<String>, Vec<String>) {
    let wanted: Vec<&ModuleName> = coldplug
        .iter()
        .filter(|m| !manifest.blocklist.contains(m) && plan.node(m).is_none())
        .collect();
    if wanted.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut m = manifest.clone();
    m.chains = wanted
        .iter()
        .map(|name| modules_manifest::ChainSpec {
            name: name.as_str().to_owned(),
            modules: vec![modules_manifest::ChainEntry {
                name: (*name).clone(),
                params: None,
            }],
            required: false,
        })
        .collect();
    let cmdline = KernelCmdline::default();
    let loaded = BTreeSet::new();
    let extra = match modules_manifest::plan_at_boot(PlanInput {
        manifest: &m,
        index,
        cmdline: &cmdline,
        loaded: &loaded,
    }) {
        Ok(p) => p,
        Err(e) => return (Vec::new(), vec![format!("coldplug modules: {e}")]),
    };
    let mut warnings = Vec::new();
    let have: BTreeSet<&str> = plan.module_files().collect();
    let mut files = Vec::new();
    for node in &extra.nodes {
        match &node.action {
            Action::Insert { path, .. } if !have.contains(path.as_str()) => {
                files.push(path.clone())
            }
            Action::Unplannable { error } => warnings.push(format!(
                "coldplug: {} left out of the image: {error}",
                node.name
            )),
            _ => {}
        }
    }
    (files, warnings)
}

/// The plan as the image builder sees it: no command line, nothing loaded.
pub fn plan_against(
    manifest: &Manifest,
    index: &DepIndex,
) -> Result<Plan, modules_manifest::plan::PlanError> {
    let cmdline = KernelCmdline::default();
    let loaded = BTreeSet::new();
    plan(PlanInput {
        manifest,
        index,
        cmdline: &cmdline,
        loaded: &loaded,
    })
}

/// Checks that `rel` stays inside the module directory, lexically and after
/// resolving symlinks, and that it is a regular file.
fn resolve_module_file(
    dir: &Path,
    canon_dir: &Path,
    rel: &str,
) -> Result<ModuleFile, ModulesError> {
    let unsafe_path = |why| ModulesError::UnsafePath {
        dir: dir.to_owned(),
        path: rel.to_owned(),
        why,
    };
    let rel_path = Path::new(rel);
    if rel.is_empty() {
        return Err(unsafe_path("empty path"));
    }
    for c in rel_path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_path("contains \"..\"")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path(
                    "is absolute; module paths must be relative to the module directory",
                ))
            }
        }
    }
    let joined = dir.join(rel_path);
    let source = fs::canonicalize(&joined).map_err(|source| ModulesError::ModuleFile {
        path: joined.clone(),
        source,
    })?;
    if !source.starts_with(canon_dir) {
        return Err(unsafe_path(
            "resolves (through a symlink) outside the module directory",
        ));
    }
    let meta = fs::metadata(&source).map_err(|source_err| ModulesError::ModuleFile {
        path: joined.clone(),
        source: source_err,
    })?;
    if !meta.is_file() {
        return Err(ModulesError::NotAFile { path: joined });
    }
    use std::os::unix::fs::PermissionsExt;
    Ok(ModuleFile {
        rel: rel.to_owned(),
        image_rel: rel.to_owned(),
        decompress: None,
        source,
        size: meta.len(),
        perm: meta.permissions().mode() & 0o7777,
    })
}

/// `x.ko.xz` → (Xz, `x.ko`), likewise `.zst` and `.gz`; `None` for a
/// plain `.ko` or anything else.
pub fn compressed_name(rel: &str) -> Option<(Compression, &str)> {
    match Compression::from_path(rel)? {
        Compression::None => None,
        c => Some((c, rel.rsplit_once('.')?.0)),
    }
}

/// The uncompressed contents of a module file that `file` says to
/// decompress, bounded by [`MAX_DECOMPRESSED_MODULE_BYTES`]. Every stream or
/// frame of the file is decoded (as the kernel and kmod do).
pub fn decompressed_module(file: &ModuleFile) -> Result<Vec<u8>, ModulesError> {
    let err = |what: String| ModulesError::Decompress {
        path: file.source.clone(),
        what,
    };
    let Some(format) = file.decompress else {
        return Err(err("not a compressed module file".into()));
    };
    let input = fs::File::open(&file.source).map_err(|e| err(e.to_string()))?;
    let input = io::BufReader::new(input);
    let reader: Box<dyn Read> = match format {
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(input)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input).map_err(|e| err(e.to_string()))?,
        ),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::None => return Err(err("not a compressed module file".into())),
    };
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED_MODULE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| err(format!("{} data: {e}", format.kernel_name().unwrap_or("?"))))?;
    if out.len() as u64 > MAX_DECOMPRESSED_MODULE_BYTES {
        return Err(err(format!(
            "more than {} MiB uncompressed",
            MAX_DECOMPRESSED_MODULE_BYTES >> 20
        )));
    }
    Ok(out)
}

/// Plans the manifest again against the pruned index (written to a
/// temporary directory) and checks that PID 1 will get the same nodes and
/// chains as the host plan. Catches any pruning that changes a decision,
/// e.g. a softdep resolving differently.
pub fn verify_pruned(manifest: &Manifest, selection: &Selection) -> Result<(), ModulesError> {
    let verify = |what: String| ModulesError::Verify(what);
    let tmp = tempfile::tempdir().map_err(|e| verify(format!("temporary directory: {e}")))?;
    for (name, bytes) in &selection.index {
        fs::write(tmp.path().join(name), bytes)
            .map_err(|e| verify(format!("writing {name}: {e}")))?;
    }
    let index = DepIndex::load(tmp.path())
        .map_err(|e| verify(format!("the pruned index does not load: {e}")))?;
    let again = plan_against(manifest, &index).map_err(|e| {
        verify(format!(
            "the manifest does not plan against the pruned index: {e}"
        ))
    })?;
    let expected = image_nodes(selection);
    if again.nodes != expected || again.chains != selection.plan.chains {
        let host: Vec<_> = selection
            .plan
            .nodes
            .iter()
            .map(|n| describe(&n.action, &n.name))
            .collect();
        let image: Vec<_> = again
            .nodes
            .iter()
            .map(|n| describe(&n.action, &n.name))
            .collect();
        return Err(verify(format!(
            "the pruned index plans differently from the host's: host {host:?}, image {image:?}"
        )));
    }
    Ok(())
}

/// The host plan's nodes as PID 1 should see them in the image: module
/// paths and compression as stored there.
fn image_nodes(selection: &Selection) -> Vec<PlanNode> {
    let renamed: BTreeMap<&str, &ModuleFile> = selection
        .files
        .iter()
        .map(|f| (f.rel.as_str(), f))
        .collect();
    let mut nodes = selection.plan.nodes.clone();
    for n in &mut nodes {
        if let Action::Insert { path, compression } = &mut n.action {
            if let Some(f) = renamed
                .get(path.as_str())
                .filter(|f| f.decompress.is_some())
            {
                *path = f.image_rel.clone();
                *compression = Compression::None;
            }
        }
    }
    nodes
}

fn describe(action: &Action, name: &ModuleName) -> String {
    match action {
        Action::Insert { path, .. } => path.clone(),
        other => format!("{name} ({other:?})"),
    }
}

/// Counts of what the selection holds, for the summary.
pub fn summary_counts(selection: &Selection) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for n in &selection.plan.nodes {
        let key = match n.action {
            Action::Insert { .. } => "insert",
            Action::Builtin => "builtin",
            Action::AlreadyLoaded => "already_loaded",
            Action::Blacklisted => "blacklisted",
            // The builder plans without a command line, so never skipped.
            Action::Skipped { .. } => "skipped",
            // Only plan_at_boot makes these; the builder plans strictly.
            Action::Unplannable { .. } => "unplannable",
        };
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (BRIEF)
mod tests {
    use super::*;

    /// A small module directory: a → b (dependency), a softdeps on the
    /// alias crypto-crc (crc_x or crc_y), c unrelated.
    fn fake_dir() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("kernel/sub")).unwrap();
        for f in ["a.ko", "b.ko", "c.ko", "crc_x.ko", "sub/crc-y.ko.xz"] {
            fs::write(d.join("kernel").join(f), f.as_bytes()).unwrap();
        }
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

    #[test]
    fn module_paths_must_stay_inside_the_module_directory() {
        let t = fake_dir();
        let d = t.path();
        let canon = fs::canonicalize(d).unwrap();
        let ok = resolve_module_file(d, &canon, "kernel/a.ko").unwrap();
        assert_eq!(ok.size, 4);
        assert_eq!(ok.source, canon.join("kernel/a.ko"));

        for (rel, why) in [
            ("../etc/passwd", "\"..\""),
            ("kernel/../../x.ko", "\"..\""),
            ("/etc/passwd", "absolute"),
            ("", "empty"),
        ] {
            let e = resolve_module_file(d, &canon, rel).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(why), "{rel}: {msg}");
            assert!(matches!(e, ModulesError::UnsafePath { .. }), "{rel}: {msg}");
        }

        // A symlink that leaves the directory is refused, naming the path;
        // one that stays inside is followed.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("evil.ko"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("evil.ko"), d.join("kernel/evil.ko"))
            .unwrap();
        let e = resolve_module_file(d, &canon, "kernel/evil.ko").unwrap_err();
        assert!(e.to_string().contains("kernel/evil.ko"), "{e}");
        assert!(e.to_string().contains("outside"), "{e}");
        std::os::unix::fs::symlink("a.ko", d.join("kernel/alias.ko")).unwrap();
        let ok = resolve_module_file(d, &canon, "kernel/alias.ko").unwrap();
        assert_eq!(ok.source, canon.join("kernel/a.ko"));

        fs::create_dir(d.join("kernel/dir.ko")).unwrap();
        assert!(matches!(
            resolve_module_file(d, &canon, "kernel/dir.ko"),
            Err(ModulesError::NotAFile { .. })
        ));
        assert!(matches!(
            resolve_module_file(d, &canon, "kernel/missing.ko"),
            Err(ModulesError::ModuleFile { .. })
        ));
    }

    #[test]
    fn compressed_names_lose_only_their_compression_suffix() {
        assert_eq!(
            compressed_name("kernel/fs/ext4/ext4.ko.xz"),
            Some((Compression::Xz, "kernel/fs/ext4/ext4.ko"))
        );
        assert_eq!(
            compressed_name("a.ko.zst"),
            Some((Compression::Zstd, "a.ko"))
        );
        assert_eq!(
            compressed_name("a.ko.gz"),
            Some((Compression::Gzip, "a.ko"))
        );
        assert_eq!(compressed_name("a.ko"), None);
        assert_eq!(compressed_name("a.xz"), None);
    }

    #[test]
    fn decompressed_selection_renames_files_and_plans_the_same() {
        let t = fake_dir();
        let manifest = Manifest::from_json(
            br#"{"version": 1, "chains": [{"name": "s", "modules": ["crc_y"]}]}"#,
        )
        .unwrap();
        // The fake crc-y.ko.xz is not real xz: select only decides, the
        // image builder decompresses.
        let sel = select(&manifest, t.path(), ModuleCompression::None).unwrap();
        assert_eq!(sel.files.len(), 1);
        assert_eq!(sel.files[0].rel, "kernel/sub/crc-y.ko.xz");
        assert_eq!(sel.files[0].image_rel, "kernel/sub/crc-y.ko");
        assert_eq!(sel.files[0].decompress, Some(Compression::Xz));
        let dep = &sel
            .index
            .iter()
            .find(|(n, _)| *n == "modules.dep")
            .unwrap()
            .1;
        assert_eq!(dep.as_slice(), b"kernel/sub/crc-y.ko:\n");
        verify_pruned(&manifest, &sel).unwrap();
        let e = decompressed_module(&sel.files[0]).unwrap_err();
        assert!(e.to_string().contains("crc-y.ko.xz"), "{e}");

        let kept = select(&manifest, t.path(), ModuleCompression::Keep).unwrap();
        assert_eq!(kept.files[0].image_rel, "kernel/sub/crc-y.ko.xz");
        assert_eq!(kept.files[0].decompress, None);
        verify_pruned(&manifest, &kept).unwrap();
    }

    #[test]
    fn kernel_release_must_be_one_plain_component() {
        let root = Path::new("/r");
        assert_eq!(
            module_dir(root, "6.1.0-56-amd64").unwrap(),
            PathBuf::from("/r/lib/modules/6.1.0-56-amd64")
        );
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(
                matches!(module_dir(root, bad), Err(ModulesError::BadRelease(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_pruned_index_is_planned_again_and_a_bad_pruning_is_caught() {
        let t = fake_dir();
        let manifest = Manifest::from_json(
            br#"{"version": 1, "chains": [{"name": "s", "modules": ["a"], "required": true}]}"#,
        )
        .unwrap();
        let mut sel = select(&manifest, t.path(), ModuleCompression::Keep).unwrap();
        let rels: Vec<&str> = sel.files.iter().map(|f| f.rel.as_str()).collect();
        // a, its dependency b, and every provider of crypto-crc (as
        // modprobe loads every match).
        assert_eq!(rels.len(), 4, "{rels:?}");
        for want in [
            "kernel/a.ko",
            "kernel/b.ko",
            "kernel/crc_x.ko",
            "kernel/sub/crc-y.ko.xz",
        ] {
            assert!(rels.contains(&want), "{want}: {rels:?}");
        }
        verify_pruned(&manifest, &sel).unwrap();

        // Drop the alias lines: the softdep no longer resolves in the image,
        // so PID 1 would plan a different set; the check must say so.
        for (name, bytes) in &mut sel.index {
            if *name == "modules.alias" {
                bytes.clear();
            }
        }
        let e = verify_pruned(&manifest, &sel).unwrap_err();
        assert!(e.to_string().contains("plans differently"), "{e}");
    }
}

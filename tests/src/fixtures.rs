//! The fixture kernel modules: built from `tests/fixtures/*.c` against the
//! installed kernel headers, then staged beside the real Debian modules in a
//! tree that `depmod -b` indexes, so the dependency graph is the kernel's own.
//!
//! Layout under the output directory (default `build/fixtures`):
//! `src/` (sources + generated farm + Kbuild), `stage/lib/modules/REL/`
//! (hardlinks of the host's `kernel/`, `extra/*.ko`, depmod files).

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use kmodinit_qemu::{run_command, HarnessError, HostKernel};

/// The hand-written fixtures (`tests/fixtures/NAME.c`).
pub const FIXTURES: &[&str] = &[
    "kmi_base",
    "kmi_a",
    "kmi_b",
    "kmi_c",
    "kmi_d",
    "kmi_e",
    "kmi_fail",
    "kmi_fail_dep",
    "kmi_crypto",
    "kmi_post",
    "kmi_after",
    "kmi_fw",
];

/// The benchmark farm: `FARM_SHARED` shared roots, `FARM_CHAINS` chains of
/// `FARM_CHAIN_LEN` modules; module j of chain i depends on module j-1, the
/// first on shared root `i % FARM_SHARED`, the last also on the next root.
pub const FARM_SHARED: usize = 3;
pub const FARM_CHAINS: usize = 6;
pub const FARM_CHAIN_LEN: usize = 5;

/// Name of the farm's shared root `i`.
pub fn farm_shared(i: usize) -> String {
    format!("kmi_farm_s{i}")
}

/// Name of module `j` of farm chain `i`.
pub fn farm_module(chain: usize, j: usize) -> String {
    format!("kmi_farm_c{chain}_{j}")
}

/// The farm's chains, each in load order (for a manifest).
pub fn farm_chains() -> Vec<Vec<String>> {
    (0..FARM_CHAINS)
        .map(|i| (0..FARM_CHAIN_LEN).map(|j| farm_module(i, j)).collect())
        .collect()
}

/// A built and staged fixture set.
#[derive(Debug, Clone)]
pub struct Fixtures {
    pub kernel: HostKernel,
    /// `--modules-root` for kmodinit-mkimage: holds `lib/modules/REL`.
    pub stage: PathBuf,
    /// The built `.ko` files, by module name.
    pub built: Vec<(String, PathBuf)>,
}

impl Fixtures {
    /// `STAGE/lib/modules/REL`.
    pub fn modules_dir(&self) -> PathBuf {
        self.stage.join("lib/modules").join(&self.kernel.release)
    }
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HarnessError {
    let path = path.to_path_buf();
    move |source| HarnessError::Io { what, path, source }
}

/// Builds (if the sources or the kernel changed) and stages the fixtures
/// into `out`. With `farm`, the benchmark farm is built too. Idempotent and
/// safe to call from every test: the work is skipped when the stamp matches.
pub fn build(kernel: &HostKernel, out: &Path, farm: bool) -> Result<Fixtures, HarnessError> {
    let src_dir = workspace_root().join("tests/fixtures");
    let mut sources: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(&src_dir).map_err(io("listing", &src_dir))? {
        let path = entry.map_err(io("listing", &src_dir))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".c") || name.ends_with(".h") || name.ends_with(".in") {
            let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
            sources.push((name, text));
        }
    }
    sources.sort();
    let mut names: Vec<String> = FIXTURES.iter().map(|s| s.to_string()).collect();
    let template = sources
        .iter()
        .find(|(n, _)| n == "farm.c.in")
        .map(|(_, t)| t.clone())
        .ok_or_else(|| HarnessError::Invalid(format!("{}/farm.c.in missing", src_dir.display())))?;
    let mut generated: Vec<(String, String)> = Vec::new();
    if farm {
        for (name, c) in farm_sources(&template) {
            names.push(name.clone());
            generated.push((format!("{name}.c"), c));
        }
    }

    let mut hasher = DefaultHasher::new();
    (&kernel.release, &sources, &generated, farm).hash(&mut hasher);
    let stamp_value = format!("{:016x}\n", hasher.finish());
    let stamp = out.join("stamp");
    let stage = out.join("stage");
    let built_dir = out.join("src");
    let built: Vec<(String, PathBuf)> = names
        .iter()
        .map(|n| (n.clone(), built_dir.join(format!("{n}.ko"))))
        .collect();
    let fixtures = Fixtures {
        kernel: kernel.clone(),
        stage: stage.clone(),
        built,
    };
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_value.as_str()) {
        return Ok(fixtures);
    }

    // Build in a copy of the sources: Kbuild writes its objects beside them.
    if built_dir.exists() {
        std::fs::remove_dir_all(&built_dir).map_err(io("removing", &built_dir))?;
    }
    std::fs::create_dir_all(&built_dir).map_err(io("creating", &built_dir))?;
    for (name, text) in sources.iter().chain(generated.iter()) {
        if name.ends_with(".in") {
            continue;
        }
        let p = built_dir.join(name);
        std::fs::write(&p, text).map_err(io("writing", &p))?;
    }
    let mut kbuild =
        String::from("# Generated by the kmodinit fixture builder.\nccflags-y := -I$(src)\n");
    for n in &names {
        let _ = writeln!(kbuild, "obj-m += {n}.o");
    }
    let p = built_dir.join("Kbuild");
    std::fs::write(&p, kbuild).map_err(io("writing", &p))?;
    run_command(
        Command::new("make")
            .arg("-C")
            .arg(kernel.build_dir())
            .arg(format!("M={}", built_dir.display()))
            .arg("-j2")
            .arg("modules"),
    )?;

    stage_tree(kernel, &stage, None, &fixtures.built, &[])?;
    std::fs::write(&stamp, stamp_value).map_err(io("writing", &stamp))?;
    Ok(fixtures)
}

/// The farm's C sources from the template, by module name.
pub fn farm_sources(template: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let decl = |n: &str| format!("int {n}_value(void);");
    for s in 0..FARM_SHARED {
        let name = farm_shared(s);
        out.push((
            name.clone(),
            fill(template, &name, "", &format!("{}", 100 + s)),
        ));
    }
    for i in 0..FARM_CHAINS {
        for j in 0..FARM_CHAIN_LEN {
            let name = farm_module(i, j);
            let mut uses = vec![if j == 0 {
                farm_shared(i % FARM_SHARED)
            } else {
                farm_module(i, j - 1)
            }];
            if j + 1 == FARM_CHAIN_LEN {
                uses.push(farm_shared((i + 1) % FARM_SHARED));
            }
            let decls: Vec<String> = uses.iter().map(|u| decl(u)).collect();
            let expr: Vec<String> = uses.iter().map(|u| format!("{u}_value()")).collect();
            out.push((
                name.clone(),
                fill(
                    template,
                    &name,
                    &decls.join("\n"),
                    &(expr.join(" + ") + " + 1"),
                ),
            ));
        }
    }
    out
}

fn fill(template: &str, name: &str, decls: &str, expr: &str) -> String {
    template
        .replace("@SELF@", name)
        .replace("@DECLS@", decls)
        .replace("@EXPR@", expr)
}

/// How a staged module file is transformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompress {
    Xz,
    Zstd,
    Gzip,
}

impl Recompress {
    /// The name of the format (also the `kmodinit` cargo feature decoding it).
    pub fn feature(self) -> &'static str {
        match self {
            Recompress::Xz => "xz",
            Recompress::Zstd => "zstd",
            Recompress::Gzip => "gzip",
        }
    }

    /// The file-name extension after `.ko.`.
    pub fn extension(self) -> &'static str {
        match self {
            Recompress::Xz => "xz",
            Recompress::Zstd => "zst",
            Recompress::Gzip => "gz",
        }
    }
}

/// Stages `STAGE/lib/modules/REL`: hardlinks (or copies) of the host's
/// `kernel/` tree (or only the `only` paths, relative to the module dir) and `modules.builtin*`/`modules.order`, the given fixture
/// `.ko` files in `extra/`, the listed modules (`kernel/…` relative paths)
/// recompressed, then `depmod -b STAGE REL`. Never writes into a hardlinked
/// file: recompression writes a new file and unlinks the old name.
pub fn stage_tree(
    kernel: &HostKernel,
    stage: &Path,
    only: Option<&[String]>,
    extra: &[(String, PathBuf)],
    recompress: &[(String, Recompress)],
) -> Result<(), HarnessError> {
    let dst = stage.join("lib/modules").join(&kernel.release);
    if stage.exists() {
        std::fs::remove_dir_all(stage).map_err(io("removing", stage))?;
    }
    std::fs::create_dir_all(&dst).map_err(io("creating", &dst))?;
    if let Some(paths) = only {
        for rel in paths {
            let from = kernel.modules_dir.join(rel);
            let to = dst.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(io("copying", &from))?;
            }
        }
    } else {
        link_kernel_tree(kernel, &dst)?;
    }
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        let from = kernel.modules_dir.join(f);
        if from.exists() {
            std::fs::copy(&from, dst.join(f)).map_err(io("copying", &from))?;
        }
    }
    let extra_dir = dst.join("extra");
    std::fs::create_dir_all(&extra_dir).map_err(io("creating", &extra_dir))?;
    for (name, ko) in extra {
        let to = extra_dir.join(format!("{name}.ko"));
        std::fs::copy(ko, &to).map_err(io("copying", ko))?;
    }
    // The host's kmod may lack zlib (Debian 12: `-ZLIB`), so its depmod
    // skips `.ko.gz`: index those trees before compressing, then rename the
    // entries, as a depmod with zlib would have written them.
    let gzip: Vec<&String> = recompress
        .iter()
        .filter(|(_, how)| *how == Recompress::Gzip)
        .map(|(rel, _)| rel)
        .collect();
    if !gzip.is_empty() {
        depmod(stage, &kernel.release)?;
    }
    for (rel, how) in recompress {
        let file = dst.join(rel);
        let mut cmd = match how {
            Recompress::Xz => {
                let mut c = Command::new("xz");
                // The kernel's and kmod's xz decoders want CRC32, not CRC64.
                c.args(["--check=crc32", "--lzma2=dict=1MiB", "-f"]);
                c
            }
            Recompress::Zstd => {
                let mut c = Command::new("zstd");
                c.args(["-q", "-f", "--rm"]);
                c
            }
            Recompress::Gzip => {
                let mut c = Command::new("gzip");
                c.args(["-9", "-n", "-f"]);
                c
            }
        };
        run_command(cmd.arg(&file))?;
        if file.exists() {
            std::fs::remove_file(&file).map_err(io("removing", &file))?;
        }
    }
    if gzip.is_empty() {
        return depmod(stage, &kernel.release);
    }
    let dep_file = dst.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file).map_err(io("reading", &dep_file))?;
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let (path, deps) = line.split_once(':').unwrap_or((line, ""));
        let rename = |p: &str| {
            if gzip.iter().any(|g| g.as_str() == p) {
                format!("{p}.gz")
            } else {
                p.to_string()
            }
        };
        let deps: Vec<String> = deps.split_whitespace().map(rename).collect();
        out.push_str(&rename(path));
        out.push(':');
        for d in deps {
            out.push(' ');
            out.push_str(&d);
        }
        out.push('\n');
    }
    std::fs::write(&dep_file, out).map_err(io("writing", &dep_file))?;
    // The binary index still names the .ko files: drop it, the text wins.
    let bin = dst.join("modules.dep.bin");
    if bin.exists() {
        std::fs::remove_file(&bin).map_err(io("removing", &bin))?;
    }
    Ok(())
}

fn depmod(stage: &Path, release: &str) -> Result<(), HarnessError> {
    run_command(Command::new("depmod").arg("-b").arg(stage).arg(release))?;
    Ok(())
}

/// `DST/kernel` as hardlinks of the host's tree (a copy across filesystems).
fn link_kernel_tree(kernel: &HostKernel, dst: &Path) -> Result<(), HarnessError> {
    let from = kernel.modules_dir.join("kernel");
    if run_command(
        Command::new("cp")
            .arg("-al")
            .arg(&from)
            .arg(dst.join("kernel")),
    )
    .is_ok()
    {
        return Ok(());
    }
    // Another filesystem: hardlinks are impossible, copy instead.
    let _ = std::fs::remove_dir_all(dst.join("kernel"));
    run_command(
        Command::new("cp")
            .arg("-a")
            .arg(&from)
            .arg(dst.join("kernel")),
    )?;
    Ok(())
}

/// The relative paths (as in `modules.dep`) of `names` and their
/// dependencies, read from the host's `modules.dep` (softdeps not included).
pub fn host_module_closure(
    kernel: &HostKernel,
    names: &[&str],
) -> Result<Vec<String>, HarnessError> {
    let dep_file = kernel.modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file).map_err(io("reading", &dep_file))?;
    let mut deps: std::collections::BTreeMap<String, (String, Vec<String>)> = Default::default();
    for line in text.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let base = path.rsplit('/').next().unwrap_or(path);
        let name = base.split(".ko").next().unwrap_or(base).replace('-', "_");
        deps.insert(
            name,
            (
                path.to_string(),
                rest.split_whitespace().map(str::to_string).collect(),
            ),
        );
    }
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let (path, ds) = deps.get(&n.replace('-', "_")).ok_or_else(|| {
            HarnessError::Invalid(format!("module {n} is not in {}", dep_file.display()))
        })?;
        for p in std::iter::once(path).chain(ds.iter()) {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn farm_has_chains_over_shared_roots() {
        let template = "@DECLS@\nKMI_MODULE(@SELF@, @EXPR@, 0);\n";
        let sources = farm_sources(template);
        assert_eq!(sources.len(), FARM_SHARED + FARM_CHAINS * FARM_CHAIN_LEN);
        assert!(sources.len() >= 30);
        let get = |n: &str| &sources.iter().find(|(m, _)| m == n).unwrap().1;
        // The first module of chain 4 uses shared root 4 % 3 = 1.
        assert!(get(&farm_module(4, 0)).contains("kmi_farm_s1_value()"));
        // A middle module uses its chain predecessor only.
        let mid = get(&farm_module(2, 2));
        assert!(mid.contains("kmi_farm_c2_1_value()"));
        assert!(!mid.contains("kmi_farm_s"));
        // The last module of chain 2 also uses the next root: shared deps.
        assert!(get(&farm_module(2, FARM_CHAIN_LEN - 1)).contains("kmi_farm_s0_value()"));
        assert!(get(&farm_shared(0)).contains("KMI_MODULE(kmi_farm_s0, 100, 0)"));
        assert_eq!(farm_chains().len(), FARM_CHAINS);
    }
}

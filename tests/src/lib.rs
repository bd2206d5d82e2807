//! kmodinit's end-to-end tests: fixture modules, images built with
//! `kmodinit-mkimage`, boots under QEMU through `kmodinit-qemu`.
//!
//! The tests live in `tests/tests/*.rs` and are `#[ignore]`d (each boots
//! QEMU); `make test-e2e` builds `/init`, the image tool and the fixtures,
//! then runs them with `--ignored`. The benchmarks reuse [`fixtures`] and
//! [`Env`].

pub mod fixtures;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{
    run_command, scratch_dir, Boot, Ext4Image, GptDisk, HarnessError, HostKernel, RealInitRoot, Vm,
};

pub use fixtures::{workspace_root, Fixtures};

/// The static busybox of the host, used as rescue shell and real init.
pub const BUSYBOX: &str = kmodinit_qemu::rootfs::HOST_BUSYBOX;

/// The real Debian modules of the demo: a virtio disk with ext4 on it.
pub const DEMO_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "ext4"];

/// Paths and tools shared by the end-to-end tests.
#[derive(Debug, Clone)]
pub struct Env {
    pub kernel: HostKernel,
    /// The static PID 1 (`make init` → `build/init`; `$KMODINIT_INIT`).
    pub init: PathBuf,
    /// `kmodinit-mkimage` (`make host`; `$KMODINIT_MKIMAGE`).
    pub mkimage: PathBuf,
    /// The host tool, `kmodinit` (`make host`; `$KMODINIT_HOST`).
    pub host_tool: PathBuf,
    /// Scratch space for images, disks and console logs (`build/e2e`).
    pub work: PathBuf,
    /// Where the fixtures are built and staged (`build/fixtures`).
    pub fixtures_dir: PathBuf,
}

impl Env {
    /// The environment, or a message saying which `make` target is missing.
    pub fn new() -> Result<Env, HarnessError> {
        let root = workspace_root();
        let kernel = HostKernel::find()?;
        let init = std::env::var_os("KMODINIT_INIT")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("build/init"));
        let mkimage = std::env::var_os("KMODINIT_MKIMAGE")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/release/kmodinit-mkimage"));
        let host_tool = std::env::var_os("KMODINIT_HOST")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/release/kmodinit"));
        for (what, path, target) in [
            ("/init", &init, "init"),
            ("image tool", &mkimage, "host"),
            ("host tool", &host_tool, "host"),
        ] {
            if !path.is_file() {
                return Err(HarnessError::Invalid(format!(
                    "{what} {} is missing: run `make {target}` (or `make test-e2e`)",
                    path.display()
                )));
            }
        }
        Ok(Env {
            kernel,
            init,
            mkimage,
            host_tool,
            work: root.join("build/e2e"),
            fixtures_dir: root.join("build/fixtures"),
        })
    }

    /// The environment shared by one test binary; panics with the reason
    /// (tests only).
    pub fn get() -> &'static Env {
        static ENV: OnceLock<Env> = OnceLock::new();
        ENV.get_or_init(|| Env::new().unwrap_or_else(|e| panic!("e2e environment: {e}")))
    }

    /// This environment with another `/init`: `$var` if set, else
    /// `build/FILE`; panics naming the `make` target that builds it.
    pub fn with_init(&self, var: &str, file: &str) -> Env {
        let init = std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("build").join(file));
        assert!(
            init.is_file(),
            "{} is missing: run `make {file}` (or `make test-e2e`)",
            init.display()
        );
        Env {
            init,
            ..self.clone()
        }
    }

    /// The environment booting the fault-injection build
    /// (`make init-faults`, `$KMODINIT_INIT_FAULTS`), shared by a test binary.
    pub fn faults() -> &'static Env {
        static ENV: OnceLock<Env> = OnceLock::new();
        ENV.get_or_init(|| Env::get().with_init("KMODINIT_INIT_FAULTS", "init-faults"))
    }

    /// The fixture modules and the farm, built and staged once (see
    /// [`fixtures::build`]).
    pub fn fixtures(&self) -> &'static Fixtures {
        static FIX: OnceLock<Fixtures> = OnceLock::new();
        FIX.get_or_init(|| {
            fixtures::build(&self.kernel, &self.fixtures_dir, true)
                .unwrap_or_else(|e| panic!("building the fixture modules: {e}"))
        })
    }

    /// A fresh directory for one test (see [`Scratch`]).
    pub fn scratch(&self, name: &str) -> Scratch {
        Scratch::new(&self.work, name)
    }

    /// Runs `kmodinit-mkimage`: the manifest is written to `dir/manifest.json`,
    /// the image to `dir/initrd.img`, uncompressed unless `compress` says so.
    pub fn mkimage(
        &self,
        dir: &Path,
        manifest: &serde_json::Value,
        modules_root: Option<&Path>,
        add: &[(&Path, &str)],
        compress: &str,
    ) -> Result<PathBuf, HarnessError> {
        self.mkimage_with(dir, manifest, modules_root, add, compress, &[])
    }

    /// [`Env::mkimage`] with `extra` arguments for the tool (e.g.
    /// `--module-compression keep`).
    pub fn mkimage_with(
        &self,
        dir: &Path,
        manifest: &serde_json::Value,
        modules_root: Option<&Path>,
        add: &[(&Path, &str)],
        compress: &str,
        extra: &[&str],
    ) -> Result<PathBuf, HarnessError> {
        self.mkimage_output(dir, manifest, modules_root, add, compress, extra)
            .map(|(image, _)| image)
    }

    /// [`Env::mkimage_with`], also returning the tool's output (its
    /// summary on stdout, its warnings on stderr).
    pub fn mkimage_output(
        &self,
        dir: &Path,
        manifest: &serde_json::Value,
        modules_root: Option<&Path>,
        add: &[(&Path, &str)],
        compress: &str,
        extra: &[&str],
    ) -> Result<(PathBuf, std::process::Output), HarnessError> {
        let m = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(manifest)
            .map_err(|e| HarnessError::Invalid(format!("manifest to JSON: {e}")))?;
        std::fs::write(&m, text).map_err(|source| HarnessError::Io {
            what: "writing",
            path: m.clone(),
            source,
        })?;
        let out = dir.join("initrd.img");
        let mut cmd = Command::new(&self.mkimage);
        cmd.arg("--manifest")
            .arg(&m)
            .arg("--kernel-release")
            .arg(&self.kernel.release)
            .arg("--output")
            .arg(&out)
            .arg("--init")
            .arg(&self.init)
            .arg("--compress")
            .arg(compress);
        if let Some(root) = modules_root {
            cmd.arg("--modules-root").arg(root);
        }
        for (src, dst) in add {
            cmd.arg("--add").arg(format!("{}:{dst}", src.display()));
        }
        // Images the tests parse stay one archive whatever this machine's
        // microcode (`--microcode auto` adds it for the running kernel).
        if !extra.contains(&"--microcode") {
            cmd.args(["--microcode", "none"]);
        }
        cmd.args(extra);
        let output = run_command(&mut cmd)?;
        Ok((out, output))
    }

    /// A root disk holding the real init, as a whole-disk ext4 (`/dev/vda`,
    /// `UUID=`, `LABEL=`).
    pub fn root_disk(&self, dir: &Path) -> (Ext4Image, PathBuf) {
        let tree = dir.join("rootfs");
        RealInitRoot::new()
            .populate(&tree)
            .unwrap_or_else(|e| panic!("real-init root: {e}"));
        let fs = Ext4Image::new(32).unwrap_or_else(|e| panic!("uuid: {e}"));
        let img = dir.join("root.img");
        fs.build(&tree, &img)
            .unwrap_or_else(|e| panic!("root disk: {e}"));
        (fs, img)
    }

    /// A GPT root disk (partition 1 = ext4 with the real init, `PARTUUID=`).
    pub fn gpt_root_disk(&self, dir: &Path) -> (GptDisk, PathBuf) {
        let tree = dir.join("rootfs");
        RealInitRoot::new()
            .populate(&tree)
            .unwrap_or_else(|e| panic!("real-init root: {e}"));
        let disk = GptDisk::new(32).unwrap_or_else(|e| panic!("uuid: {e}"));
        let img = dir.join("gpt.img");
        disk.build(&tree, &img)
            .unwrap_or_else(|e| panic!("GPT disk: {e}"));
        (disk, img)
    }

    /// A VM for this kernel, logging to `dir/console.log`, stopping when the
    /// real init is done.
    pub fn vm(&self, dir: &Path, initrd: &Path) -> Vm {
        Vm::new(&self.kernel.vmlinuz)
            .initrd(initrd)
            .log_file(dir.join("console.log"))
            .stop_on(markers::DONE)
            .timeout(Duration::from_secs(120))
    }
}

/// A test's scratch directory under `build/e2e`. When the test passes, the
/// big files (disk and initramfs images, staged trees) are removed on drop
/// and only `console.log` stays; after a failure everything stays for
/// inspection.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(base: &Path, name: &str) -> Scratch {
        Scratch {
            path: scratch_dir(base, name).unwrap_or_else(|e| panic!("scratch dir: {e}")),
        }
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "console.log") {
                continue;
            }
            // Best effort: a leftover file only costs disk space.
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// Boots, panicking with the console tail on a harness error (tests only).
pub fn boot(vm: Vm) -> Boot {
    vm.run().unwrap_or_else(|e| panic!("{e}"))
}

/// The `load.modules` entries of a report with this name.
pub fn report_modules<'a>(report: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    report["load"]["modules"]
        .as_array()
        .map(|a| a.iter().filter(|m| m["name"] == name).collect())
        .unwrap_or_default()
}

/// The state of module `name` in the report (`loaded`, `failed`…), if listed once.
pub fn report_state(report: &serde_json::Value, name: &str) -> Option<String> {
    match report_modules(report, name).as_slice() {
        [m] => m["state"].as_str().map(str::to_string),
        _ => None,
    }
}

/// The boot reached the real init as PID 1, without a fatal error and
/// without PID 1 dying.
pub fn assert_real_init_ran(b: &Boot) {
    assert_init_never_died(b);
    assert!(
        !b.console.contains(FATAL_BANNER),
        "fatal error; tail:\n{}",
        b.console.tail(40)
    );
    assert_eq!(
        b.console.real_init().map(|i| i.pid),
        Some(1),
        "the real init did not run; tail:\n{}",
        b.console.tail(40)
    );
}

/// The lines of the console that show PID 1 died (must never appear).
pub fn assert_init_never_died(boot: &Boot) {
    assert!(
        !boot.console.contains("Attempted to kill init"),
        "PID 1 died; console tail:\n{}",
        boot.console.tail(40)
    );
}

/// The banner PID 1 prints before its failure action (init/src/failure.rs).
pub const FATAL_BANNER: &str = "the boot cannot continue";

impl Env {
    /// Writes the real init script to `dir/realinit.sh` (executable), for
    /// images that exec it inside the initramfs (`--add …:/sbin/init`).
    pub fn real_init_script(&self, dir: &Path) -> PathBuf {
        self.real_init_script_of(dir, &RealInitRoot::new())
    }

    /// As [`Env::real_init_script`], for the real init `init` describes.
    pub fn real_init_script_of(&self, dir: &Path, init: &RealInitRoot) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("realinit.sh");
        std::fs::write(&p, init.script()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        p
    }

    /// An image over the fixture stage whose real init runs inside the
    /// initramfs (no root): busybox at /bin/busybox and /bin/sh (rescue),
    /// the real-init script at /sbin/init. Uncompressed, so tests can edit it.
    pub fn fixture_image(&self, dir: &Path, manifest: &serde_json::Value) -> PathBuf {
        self.fixture_image_with(dir, manifest, &RealInitRoot::new())
    }

    /// As [`Env::fixture_image`], with the real init `init` describes.
    pub fn fixture_image_with(
        &self,
        dir: &Path,
        manifest: &serde_json::Value,
        init: &RealInitRoot,
    ) -> PathBuf {
        let script = self.real_init_script_of(dir, init);
        let bb = Path::new(BUSYBOX);
        self.mkimage(
            dir,
            manifest,
            Some(&self.fixtures().stage),
            &[
                (bb, "/bin/busybox"),
                (bb, "/bin/sh"),
                (&script, "/sbin/init"),
            ],
            "none",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Replaces or removes files of an uncompressed image (as the tests need a
/// broken image that `kmodinit-mkimage` would refuse to build).
pub fn edit_image(image: &Path, edit: impl FnOnce(&mut kmodinit_qemu::cpio::Cpio)) {
    let bytes = std::fs::read(image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    let mut c = kmodinit_qemu::cpio::Cpio::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    edit(&mut c);
    c.write(image).unwrap_or_else(|e| panic!("{e}"));
}

/// The manifest path inside the image.
pub const IMAGE_MANIFEST: &str = "etc/kmodinit/manifest.json";

/// `(start, end)` of every module the report says was inserted.
pub fn load_intervals(report: &serde_json::Value) -> Vec<(String, f64, f64)> {
    report["load"]["modules"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some((
                        m["name"].as_str()?.to_string(),
                        m["start"].as_f64()?,
                        m["end"].as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The most modules whose load intervals contain one same instant.
pub fn max_overlap(intervals: &[(String, f64, f64)]) -> usize {
    let mut events: Vec<(f64, i32)> = Vec::new();
    for (_, s, e) in intervals {
        events.push((*s, 1));
        events.push((*e, -1));
    }
    // Ends sort before starts at the same instant: touching is not overlapping.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut cur, mut best) = (0i32, 0i32);
    for (_, d) in events {
        cur += d;
        best = best.max(cur);
    }
    best.max(0) as usize
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn overlap_counts_intersections_not_touching() {
        let iv = |v: &[(f64, f64)]| -> Vec<(String, f64, f64)> {
            v.iter().map(|(s, e)| ("m".to_string(), *s, *e)).collect()
        };
        assert_eq!(max_overlap(&iv(&[(0.0, 1.0), (1.0, 2.0)])), 1);
        assert_eq!(max_overlap(&iv(&[(0.0, 1.0), (0.5, 2.0), (0.7, 0.8)])), 3);
        assert_eq!(max_overlap(&[]), 0);
    }
}

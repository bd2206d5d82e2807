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
    /// `kmodinit-mkimage` (`make mkimage`; `$KMODINIT_MKIMAGE`).
    pub mkimage: PathBuf,
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
        for (what, path, target) in [
            ("/init", &init, "init"),
            ("image tool", &mkimage, "mkimage"),
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

    /// The fixture modules and the farm, built and staged once (see
    /// [`fixtures::build`]).
    pub fn fixtures(&self) -> &'static Fixtures {
        static FIX: OnceLock<Fixtures> = OnceLock::new();
        FIX.get_or_init(|| {
            fixtures::build(&self.kernel, &self.fixtures_dir, true)
                .unwrap_or_else(|e| panic!("building the fixture modules: {e}"))
        })
    }

    /// A fresh directory for one test.
    pub fn scratch(&self, name: &str) -> PathBuf {
        scratch_dir(&self.work, name).unwrap_or_else(|e| panic!("scratch dir: {e}"))
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
        run_command(&mut cmd)?;
        Ok(out)
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

/// The lines of the console that show PID 1 died (must never appear).
pub fn assert_init_never_died(boot: &Boot) {
    assert!(
        !boot.console.contains("Attempted to kill init"),
        "PID 1 died; console tail:\n{}",
        boot.console.tail(40)
    );
}

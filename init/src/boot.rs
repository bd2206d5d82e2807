//! The pieces of the boot sequence that `main.rs` calls one per step, and
//! the error each step can end in.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use modules_manifest::depmod::IndexError;
use modules_manifest::manifest::{ManifestError, MAX_MANIFEST_BYTES};
use modules_manifest::plan::PlanError;
use modules_manifest::{Manifest, ModuleName};

use crate::blockdev::DeviceSpec;
use crate::boot_config::ConfigError;
use crate::handover::NoInit;
use crate::report::ChainFailure;
use crate::switch_root::SwitchRootError;

/// Where the boot report goes (`/run` survives switch_root).
pub const REPORT_PATH: &str = "/run/kmodinit/report.json";

/// Why the boot stopped: one variant per step that can fail.
#[derive(Debug)]
pub enum BootError {
    ReadManifest {
        path: PathBuf,
        source: io::Error,
    },
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    Config(ConfigError),
    /// `/proc/sys/kernel/osrelease` (to find `/lib/modules/$(uname -r)`).
    KernelRelease(io::Error),
    Index {
        dir: PathBuf,
        source: IndexError,
    },
    Plan(PlanError),
    RequiredChains(Vec<ChainFailure>),
    RootNotFound {
        spec: DeviceSpec,
        waited: Duration,
    },
    SwitchRoot(SwitchRootError),
    NoInit {
        root: PathBuf,
        source: NoInit,
    },
    Exec {
        path: String,
        source: io::Error,
    },
    Panic(String),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::ReadManifest { path, source } => {
                write!(f, "cannot read the manifest {}: {source}", path.display())
            }
            BootError::Manifest { path, source } => {
                write!(f, "the manifest {} is invalid: {source}", path.display())
            }
            BootError::Config(e) => write!(f, "bad boot setting: {e}"),
            BootError::KernelRelease(e) => write!(
                f,
                "cannot read the kernel release from /proc/sys/kernel/osrelease: {e}"
            ),
            BootError::Index { dir, source } => write!(
                f,
                "cannot read the module index in {}: {source}",
                dir.display()
            ),
            BootError::Plan(e) => write!(f, "the manifest does not plan against the modules: {e}"),
            BootError::RequiredChains(failures) => {
                write!(f, "required module chain(s) failed:")?;
                for c in failures {
                    write!(
                        f,
                        "\nchain {:?}: module {} failed: {}",
                        c.chain, c.module, c.error
                    )?;
                }
                Ok(())
            }
            BootError::RootNotFound { spec, waited } => write!(
                f,
                "root device {spec} not found after waiting {} s",
                crate::clock::Fixed(waited.as_secs_f64(), 1)
            ),
            BootError::SwitchRoot(e) => write!(f, "{e}"),
            BootError::NoInit { root, source } => {
                write!(f, "nothing to hand over to in {}: {source}", root.display())
            }
            BootError::Exec { path, source } => write!(f, "cannot execute {path}: {source}"),
            BootError::Panic(msg) => write!(f, "internal error (panic): {msg}"),
        }
    }
}

impl std::error::Error for BootError {}

impl BootError {
    /// What the user can try, for the fatal-error explanation.
    pub fn hints(&self) -> Vec<String> {
        let debug = "boot with kmodinit.debug for a line per step and module".to_string();
        let mut h = match self {
            BootError::ReadManifest { .. } | BootError::Manifest { .. } => vec![
                "fix the manifest (kmodinit-mkimage validates it), or point kmodinit.manifest= at another".into(),
            ],
            BootError::Config(_) => vec![
                "check root= (forms: /dev/NAME, UUID=, LABEL=, PARTUUID=, PARTLABEL=, MAJ:MIN)".into(),
            ],
            BootError::KernelRelease(_) => vec!["is /proc mounted? the early mount errors above say".into()],
            BootError::Index { .. } => vec![
                "the image must hold lib/modules/$(uname -r) for the running kernel: was it built for this kernel release?".into(),
            ],
            BootError::Plan(_) => vec!["rebuild the image from this manifest and kernel release".into()],
            BootError::RequiredChains(failures) => {
                // The loader words a caught worker panic "panic: …": that is
                // kmodinit's bug, not something the kernel said.
                let mut h = Vec::new();
                if failures.iter().any(|f| f.error.starts_with("panic:")) {
                    h.push("a \"panic:\" reason is a bug in kmodinit: please report it with the console output".into());
                }
                if failures.iter().any(|f| !f.error.starts_with("panic:")) {
                    h.push("dmesg shows the kernel's own reason above the failed module".into());
                }
                h.push("mark the chain \"required\": false if the machine can boot without it".into());
                h
            }
            BootError::RootNotFound { .. } => vec![
                "check root= and that the storage driver chain is in the manifest".into(),
                "add rootwait (or rootdelay=N) if the disk is slow to appear".into(),
                "ls /sys/class/block in the rescue shell lists the disks the kernel sees".into(),
            ],
            BootError::SwitchRoot(_) => vec![
                "check rootfstype= and rootflags=, and that the filesystem module is in the manifest".into(),
            ],
            BootError::NoInit { .. } | BootError::Exec { .. } => vec![
                "check init= and that the root filesystem holds the init (and its libraries)".into(),
            ],
            BootError::Panic(_) => vec!["please report this bug with the console output".into()],
        };
        h.push(debug);
        h
    }
}

/// Runs the boot `f`, turning a panic into [`BootError::Panic`] (the panic
/// hook has already logged where it happened). Returns what stopped the
/// boot: `f` only returns on failure, its success being an exec.
pub fn run_guarded(f: impl FnOnce() -> Result<Infallible, BootError>) -> BootError {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Err(e)) => e,
        Ok(Ok(never)) => match never {},
        Err(payload) => BootError::Panic(
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into()),
        ),
    }
}

/// Reads and parses the manifest at `path`. A missing file is not an error
/// (`Ok(None)`): the boot goes on with no modules. Reads at most one byte
/// past [`MAX_MANIFEST_BYTES`], so a huge file or `kmodinit.manifest=/dev/zero`
/// is refused by the size check instead of exhausting memory.
pub fn read_manifest(path: &Path) -> Result<Option<Manifest>, BootError> {
    use std::io::Read;
    let read_error = |source| BootError::ReadManifest {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(read_error(source)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Manifest::from_json(&bytes)
        .map(Some)
        .map_err(|source| BootError::Manifest {
            path: path.to_path_buf(),
            source,
        })
}

/// The modules listed in a `/proc/modules` text (first word of each line);
/// unparsable names are skipped.
pub fn parse_proc_modules(text: &str) -> BTreeSet<ModuleName> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| ModuleName::new(n).ok())
        .collect()
}

/// `/lib/modules/<release>` under `root`, the release read from
/// `<proc>/sys/kernel/osrelease` (what `uname -r` prints).
pub fn modules_dir(root: &Path, proc: &Path) -> io::Result<PathBuf> {
    let release = std::fs::read_to_string(proc.join("sys/kernel/osrelease"))?;
    Ok(root.join("lib/modules").join(release.trim()))
}

/// `VmHWM` (peak resident set) from a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn panics_become_boot_errors() {
        let e = run_guarded(|| panic!("boom {}", 42));
        assert!(matches!(&e, BootError::Panic(m) if m == "boom 42"), "{e:?}");
        let e = run_guarded(|| std::panic::panic_any(7u8));
        assert_eq!(e.to_string(), "internal error (panic): (no message)");
        let e = run_guarded(|| {
            Err(BootError::Plan(PlanError::SelfDependency {
                module: ModuleName::new("x").unwrap(),
            }))
        });
        assert!(matches!(e, BootError::Plan(_)));
    }

    #[test]
    fn proc_modules_names() {
        let text = "ext4 1056768 1 - Live 0x0000000000000000\nvirtio-blk 20480 0 - Live 0x0\n\n";
        let names: Vec<String> = parse_proc_modules(text)
            .into_iter()
            .map(|n| n.as_str().to_string())
            .collect();
        assert_eq!(names, ["ext4", "virtio_blk"]);
    }

    #[test]
    fn vm_hwm() {
        assert_eq!(
            parse_vm_hwm_kib("Name:\tinit\nVmHWM:\t    1234 kB\n"),
            Some(1234)
        );
        assert_eq!(parse_vm_hwm_kib("Name:\tinit\n"), None);
    }

    #[test]
    fn missing_manifest_is_none_and_unreadable_is_an_error() {
        let p = Path::new("/nonexistent/kmodinit/manifest.json");
        assert!(matches!(read_manifest(p), Ok(None)));
        // A directory cannot be read as a file: an error naming the path.
        let e = read_manifest(Path::new("/")).err().map(|e| e.to_string());
        assert!(e
            .unwrap_or_default()
            .starts_with("cannot read the manifest /:"));
    }

    #[test]
    fn modules_dir_from_osrelease() {
        let d = std::env::temp_dir().join(format!("kmodinit-osrel-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sys/kernel")).unwrap();
        std::fs::write(d.join("sys/kernel/osrelease"), "6.1.0-56-amd64\n").unwrap();
        assert_eq!(
            modules_dir(Path::new("/"), &d).unwrap(),
            PathBuf::from("/lib/modules/6.1.0-56-amd64")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn every_error_has_hints_and_context() {
        let e = BootError::RootNotFound {
            spec: DeviceSpec::Uuid("abc".into()),
            waited: Duration::from_millis(10_050),
        };
        assert_eq!(
            e.to_string(),
            "root device UUID=abc not found after waiting 10.1 s"
        );
        assert!(e.hints().iter().any(|h| h.contains("rootwait")));
        assert!(e.hints().iter().any(|h| h.contains("kmodinit.debug")));
        let e = BootError::RequiredChains(vec![ChainFailure {
            chain: "storage".into(),
            module: ModuleName::new("virtio_blk").unwrap(),
            error: "finit_module: Invalid argument".into(),
        }]);
        let s = e.to_string();
        assert!(
            s.contains(
                "chain \"storage\": module virtio_blk failed: finit_module: Invalid argument"
            ),
            "{s}"
        );
        assert!(e.hints().iter().any(|h| h.contains("dmesg")));
        assert!(!e.hints().iter().any(|h| h.contains("bug in kmodinit")));
        let e = BootError::RequiredChains(vec![ChainFailure {
            chain: "storage".into(),
            module: ModuleName::new("virtio_blk").unwrap(),
            error: "panic: index out of bounds".into(),
        }]);
        assert!(e.hints().iter().any(|h| h.contains("bug in kmodinit")));
        assert!(!e.hints().iter().any(|h| h.contains("dmesg")));
    }
}

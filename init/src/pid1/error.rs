//! [`BootError`]: why the boot stopped, one variant per step that can fail,
//! and what the user can try.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::inputs::ManifestReadError;
use crate::pid1::config::ConfigError;
use crate::pid1::handover::NoInit;
use crate::pid1::rootdev::DeviceSpec;
use crate::pid1::switch_root::SwitchRootError;
use crate::report::ChainFailure;

/// Why the boot stopped: one variant per step that can fail.
#[derive(Debug)]
pub enum BootError {
    Manifest(ManifestReadError),
    Config(ConfigError),
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
    /// The loader child could not be started.
    SpawnLoader(io::Error),
    /// The loader child could plan nothing (its message and hints), or
    /// died or hung before it planned while a chain is required.
    Loader {
        message: String,
        hints: Vec<String>,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Manifest(e) => e.fmt(f),
            BootError::Config(e) => write!(f, "bad boot setting: {e}"),
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
            BootError::SpawnLoader(e) => write!(f, "cannot start the loader process: {e}"),
            BootError::Loader { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for BootError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BootError::Manifest(e) => Some(e),
            BootError::Config(e) => Some(e),
            BootError::SwitchRoot(e) => Some(e),
            BootError::NoInit { source, .. } => Some(source),
            BootError::Exec { source, .. } | BootError::SpawnLoader(source) => Some(source),
            BootError::RequiredChains(_)
            | BootError::RootNotFound { .. }
            | BootError::Panic(_)
            | BootError::Loader { .. } => None,
        }
    }
}

impl BootError {
    /// What the user can try, for the fatal-error explanation.
    pub fn hints(&self) -> Vec<String> {
        let debug = "boot with kmodinit.debug for a line per step and module".to_string();
        let mut h = match self {
            BootError::Manifest(_) => vec![
                "fix the manifest (kmodinit build validates it), or point kmodinit.manifest= at another".into(),
            ],
            BootError::Config(_) => vec![
                "check root= (forms: /dev/NAME, UUID=, LABEL=, PARTUUID=, PARTLABEL=, MAJ:MIN)".into(),
            ],
            BootError::RequiredChains(failures) => {
                // The loader words a caught worker panic "panic: …": that is
                // kmodinit's bug, not something the kernel said.
                let mut h = Vec::new();
                if failures.iter().any(|f| f.error.contains("panic:")) {
                    h.push("a \"panic:\" reason is a bug in kmodinit: please report it with the console output".into());
                }
                if failures.iter().any(|f| f.error.contains("killed by")) {
                    h.push("the loader process was killed: by the out-of-memory killer? dmesg says".into());
                }
                if failures.iter().any(|f| !f.error.contains("panic:") && !f.error.contains("killed by")) {
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
            BootError::SpawnLoader(_) => vec!["the machine may be out of memory this early".into()],
            BootError::Loader { hints, .. } => hints.clone(),
        };
        if !h.contains(&debug) {
            h.push(debug);
        }
        h
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use modules_manifest::ModuleName;

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

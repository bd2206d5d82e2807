//! The early mounts (`/proc`, `/sys`, `/dev`, `/run`) as a data table, walked
//! by one function that skips targets which are already mount points (the
//! kernel or a previous stage may have mounted them). The mounts go through
//! [`Sys`], so tests use the recording [`crate::sys::FakeSys`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::sys::Sys;

/// One filesystem PID 1 mounts before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyMount {
    pub source: &'static str,
    /// Absolute path inside the root being set up.
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

/// The table. Nothing here needs to run programs or hold device nodes except
/// /dev, so each is `nosuid`; `/proc` and `/sys` are also `nodev,noexec`;
/// `/dev` must keep device nodes and `/run` holds our report, neither needs
/// exec.
pub const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    EarlyMount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    EarlyMount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0755"),
    },
    EarlyMount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        // As systemd mounts it (mode=755,nodev,nosuid,strictatime): it is
        // handed over as it is, and systemd does not remount it.
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_STRICTATIME),
        data: Some("mode=0755"),
    },
];

/// What happened to one table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOutcome {
    Mounted(PathBuf),
    AlreadyMounted(PathBuf),
}

/// An early mount that failed, naming the target and the step.
#[derive(Debug)]
pub struct MountError {
    pub target: PathBuf,
    pub fstype: &'static str,
    pub step: &'static str,
    pub source: io::Error,
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.step,
            self.target.display(),
            self.fstype,
            self.source
        )
    }
}

impl std::error::Error for MountError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Mounts every entry of `table` under `root` (`/` on the real system),
/// creating missing targets and skipping those that are already mount points. Goes on after a failure
/// (a missing /run must not keep /proc from being mounted) and returns every
/// outcome and every error.
pub fn mount_all(
    root: &Path,
    table: &[EarlyMount],
    sys: &impl Sys,
) -> (Vec<MountOutcome>, Vec<MountError>) {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for entry in table {
        let target = root.join(entry.target.trim_start_matches('/'));
        let err = |step, source| MountError {
            target: target.clone(),
            fstype: entry.fstype,
            step,
            source,
        };
        if let Err(e) = std::fs::create_dir_all(&target) {
            errors.push(err("creating", e));
            continue;
        }
        match sys.is_mount_point(&target) {
            Ok(true) => {
                done.push(MountOutcome::AlreadyMounted(target));
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                errors.push(err("checking", e));
                continue;
            }
        }
        match sys.mount(
            Path::new(entry.source),
            &target,
            entry.fstype,
            entry.flags,
            entry.data,
        ) {
            Ok(()) => done.push(MountOutcome::Mounted(target)),
            // EBUSY: someone mounted it between our check and now.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                done.push(MountOutcome::AlreadyMounted(target))
            }
            Err(e) => errors.push(err("mounting", e)),
        }
    }
    (done, errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::sys::{FakeSys, SysCall};

    fn temp_root(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kmodinit-mount-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn mounts(fake: &FakeSys) -> Vec<(PathBuf, String, MsFlags, Option<String>)> {
        fake.calls()
            .into_iter()
            .filter_map(|c| match c {
                SysCall::Mount {
                    target,
                    fstype,
                    flags,
                    data,
                    ..
                } => Some((target, fstype, flags, data)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mounts_the_table_with_hardening_flags() {
        let root = temp_root("table");
        let fake = FakeSys::new();
        let (done, errors) = mount_all(&root, EARLY_MOUNTS, &fake);
        assert!(errors.is_empty());
        assert_eq!(done.len(), 4);
        let calls = mounts(&fake);
        let targets: Vec<_> = calls.iter().map(|c| c.0.clone()).collect();
        assert_eq!(
            targets,
            ["proc", "sys", "dev", "run"].map(|t| root.join(t)),
            "created and mounted in table order"
        );
        assert!(targets.iter().all(|t| t.is_dir()));
        for (target, _, flags, _) in &calls {
            assert!(flags.contains(MsFlags::MS_NOSUID), "{target:?}");
        }
        let dev = calls.iter().find(|c| c.1 == "devtmpfs").unwrap();
        assert!(
            !dev.2.contains(MsFlags::MS_NODEV),
            "/dev needs device nodes"
        );
        assert_eq!(dev.3.as_deref(), Some("mode=0755"));
        let proc_ = calls.iter().find(|c| c.1 == "proc").unwrap();
        assert!(proc_.2.contains(MsFlags::MS_NOEXEC | MsFlags::MS_NODEV));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn skips_mounted_targets_and_reports_failures() {
        let root = temp_root("skip");
        let run = root.join("run");
        let busy = root.join("sys");
        let fake = FakeSys::new()
            .mounted(root.join("dev"))
            .fail_with(move |c| match c {
                SysCall::Mount { target, .. } if *target == run => Some(libc::ENODEV),
                SysCall::Mount { target, .. } if *target == busy => Some(libc::EBUSY),
                _ => None,
            });
        let (done, errors) = mount_all(&root, EARLY_MOUNTS, &fake);
        assert!(done.contains(&MountOutcome::AlreadyMounted(root.join("dev"))));
        assert!(done.contains(&MountOutcome::Mounted(root.join("proc"))));
        // EBUSY: mounted by someone else between the check and the mount.
        assert!(done.contains(&MountOutcome::AlreadyMounted(root.join("sys"))));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].target, root.join("run"));
        assert!(errors[0].to_string().contains("run (tmpfs)"));
        assert_eq!(mounts(&fake).len(), 3, "/dev was not mounted again");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

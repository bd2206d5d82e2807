//! The early mounts (`/proc`, `/sys`, `/dev`, `/run`) as a data table, walked
//! by one function that skips targets which are already mount points (the
//! kernel or a previous stage may have mounted them). Side effects go through
//! the [`Mounter`] trait so tests use a recording fake.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

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
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
];

/// The side effects of mounting, real or recorded.
pub trait Mounter {
    /// True if `path` is already a mount point.
    fn is_mount_point(&self, path: &Path) -> io::Result<bool>;
    /// Creates `path` (and parents) if missing.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    fn mount(&self, m: &EarlyMount, target: &Path) -> io::Result<()>;
}

/// `mount(2)` on the running system.
#[derive(Debug, Default)]
pub struct RealMounter;

impl Mounter for RealMounter {
    /// A mount point lives on another device than its parent directory (or
    /// is the root itself). Needs no /proc, which may not be mounted yet.
    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        let me = std::fs::metadata(path)?;
        let parent = std::fs::metadata(path.join(".."))?;
        Ok(me.dev() != parent.dev() || me.ino() == parent.ino())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn mount(&self, m: &EarlyMount, target: &Path) -> io::Result<()> {
        nix::mount::mount(Some(m.source), target, Some(m.fstype), m.flags, m.data)?;
        Ok(())
    }
}

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
/// skipping targets that are already mount points. Goes on after a failure
/// (a missing /run must not keep /proc from being mounted) and returns every
/// outcome and every error.
pub fn mount_all(
    root: &Path,
    table: &[EarlyMount],
    m: &impl Mounter,
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
        if let Err(e) = m.create_dir(&target) {
            errors.push(err("creating", e));
            continue;
        }
        match m.is_mount_point(&target) {
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
        match m.mount(entry, &target) {
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
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    #[derive(Default)]
    struct FakeMounter {
        mounted: RefCell<BTreeSet<PathBuf>>,
        fail: BTreeSet<PathBuf>,
        calls: RefCell<Vec<(PathBuf, &'static str, MsFlags)>>,
    }

    impl Mounter for FakeMounter {
        fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
            Ok(self.mounted.borrow().contains(path))
        }
        fn create_dir(&self, _path: &Path) -> io::Result<()> {
            Ok(())
        }
        fn mount(&self, m: &EarlyMount, target: &Path) -> io::Result<()> {
            self.calls
                .borrow_mut()
                .push((target.to_path_buf(), m.fstype, m.flags));
            if self.fail.contains(target) {
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            }
            self.mounted.borrow_mut().insert(target.to_path_buf());
            Ok(())
        }
    }

    #[test]
    fn mounts_the_table_with_hardening_flags() {
        let fake = FakeMounter::default();
        let (done, errors) = mount_all(Path::new("/new"), EARLY_MOUNTS, &fake);
        assert!(errors.is_empty());
        assert_eq!(done.len(), 4);
        let calls = fake.calls.borrow();
        let targets: Vec<_> = calls.iter().map(|c| c.0.to_str().unwrap()).collect();
        assert_eq!(targets, ["/new/proc", "/new/sys", "/new/dev", "/new/run"]);
        for (target, _, flags) in calls.iter() {
            assert!(flags.contains(MsFlags::MS_NOSUID), "{target:?}");
        }
        let dev = calls.iter().find(|c| c.1 == "devtmpfs").unwrap();
        assert!(
            !dev.2.contains(MsFlags::MS_NODEV),
            "/dev needs device nodes"
        );
        let proc_ = calls.iter().find(|c| c.1 == "proc").unwrap();
        assert!(proc_.2.contains(MsFlags::MS_NOEXEC | MsFlags::MS_NODEV));
    }

    #[test]
    fn skips_mounted_targets_and_reports_failures() {
        let mut fake = FakeMounter::default();
        fake.mounted.borrow_mut().insert(PathBuf::from("/dev"));
        fake.fail.insert(PathBuf::from("/run"));
        let (done, errors) = mount_all(Path::new("/"), EARLY_MOUNTS, &fake);
        assert!(done.contains(&MountOutcome::AlreadyMounted("/dev".into())));
        assert!(done.contains(&MountOutcome::Mounted("/sys".into())));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].target, PathBuf::from("/run"));
        assert!(errors[0].to_string().contains("/run (tmpfs)"));
        assert_eq!(fake.calls.borrow().len(), 3, "/dev was not mounted again");
    }

    #[test]
    fn real_mount_point_check_on_host_paths() {
        // Read-only: stat only.
        let m = RealMounter;
        assert!(m.is_mount_point(Path::new("/")).unwrap());
        let d = std::env::temp_dir().join(format!("kmodinit-mnt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert!(!m.is_mount_point(&d).unwrap());
        std::fs::remove_dir(&d).unwrap();
    }
}

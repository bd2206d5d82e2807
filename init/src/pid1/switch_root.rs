//! switch_root: mount the real root, move the API filesystems into it, free
//! the initramfs, and make the new root `/`. The mechanism; the step that
//! runs it in order is [`crate::pid1::Boot::enter_root`]. System calls go
//! through [`Sys`].

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::pid1::config::MountOptions;
use crate::pid1::rootdev::FsInfo;
use crate::sys::Sys;

/// Where the real root is mounted before it becomes `/` (initramfs-tools'
/// choice; created if the image lacks it).
pub const NEW_ROOT: &str = "/root";

/// The API filesystems carried into the new root. `/run` carries our report.
pub const MOVED_MOUNTS: &[&str] = &["/dev", "/proc", "/sys", "/run"];

/// A step of switch_root that failed, naming the device, path and step.
#[derive(Debug)]
pub enum SwitchRootError {
    CreateMountPoint {
        path: PathBuf,
        source: io::Error,
    },
    /// Every candidate filesystem type failed.
    Mount {
        device: PathBuf,
        attempts: Vec<(String, io::Error)>,
    },
    NoFsType {
        device: PathBuf,
    },
    Enter {
        step: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for SwitchRootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchRootError::CreateMountPoint { path, source } => {
                write!(f, "cannot create mount point {}: {source}", path.display())
            }
            SwitchRootError::Mount { device, attempts } => {
                write!(f, "cannot mount {}:", device.display())?;
                for (t, e) in attempts {
                    write!(f, " as {t}: {e};")?;
                }
                Ok(())
            }
            SwitchRootError::NoFsType { device } => write!(
                f,
                "no filesystem recognised on {} and no rootfstype= given; /proc/filesystems lists no block filesystem to try (is the filesystem module in the manifest?)",
                device.display()
            ),
            SwitchRootError::Enter { step, source } => {
                write!(f, "switching to the new root: {step}: {source}")
            }
        }
    }
}

impl std::error::Error for SwitchRootError {}

/// Filesystem types to try, in order: the explicit list, else what the
/// superblock says, else every block filesystem `/proc/filesystems` lists
/// (lines without `nodev`).
pub fn fstype_candidates(
    explicit: &[String],
    detected: Option<&FsInfo>,
    proc_filesystems: &str,
) -> Vec<String> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    if let Some(fs) = detected {
        return fs.mount_types().into_iter().map(String::from).collect();
    }
    proc_filesystems
        .lines()
        .filter(|l| !l.starts_with("nodev"))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// Mounts `device` on `target` trying each type. Read-write mounts that
/// fail with `EACCES`/`EROFS` (write-protected media) are retried read-only,
/// as the kernel does. Returns the type that worked.
pub fn mount_root(
    sys: &impl Sys,
    device: &Path,
    target: &Path,
    types: &[String],
    opts: &MountOptions,
) -> Result<String, SwitchRootError> {
    if types.is_empty() {
        return Err(SwitchRootError::NoFsType {
            device: device.to_path_buf(),
        });
    }
    std::fs::create_dir_all(target).map_err(|source| SwitchRootError::CreateMountPoint {
        path: target.to_path_buf(),
        source,
    })?;
    let mut attempts = Vec::new();
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    for t in types {
        let mut flags = opts.flags;
        if opts.read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        let mut r = sys.mount(device, target, t, flags, data);
        let write_protected = |r: &io::Result<()>| matches!(r, Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EROFS)));
        if write_protected(&r) && !opts.read_only {
            log::warn!(
                "{} is write-protected: mounting it read-only",
                device.display()
            );
            r = sys.mount(device, target, t, flags | MsFlags::MS_RDONLY, data);
        }
        match r {
            Ok(()) => return Ok(t.clone()),
            Err(e) => attempts.push((t.clone(), e)),
        }
    }
    Err(SwitchRootError::Mount {
        device: device.to_path_buf(),
        attempts,
    })
}

/// Moves each API mount into `new_root`. A target directory the new root
/// lacks (and that cannot be created on a read-only root) means that mount
/// is detached instead: the real init mounts its own. Returns one message
/// per mount that could not be moved; never fatal.
pub fn move_mounts(
    sys: &impl Sys,
    old_root: &Path,
    new_root: &Path,
    mounts: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    for m in mounts {
        let rel = m.trim_start_matches('/');
        let from = old_root.join(rel);
        let to = new_root.join(rel);
        if !to.is_dir() && std::fs::create_dir_all(&to).is_err() {
            let _ = sys.detach(&from);
            problems.push(format!(
                "the new root has no {m} directory: {m} was unmounted instead of moved"
            ));
            continue;
        }
        if let Err(e) = sys.move_mount(&from, &to) {
            problems.push(format!(
                "moving {} to {}: {e}",
                from.display(),
                to.display()
            ));
        }
    }
    problems
}

/// Deletes everything under `dir` that lives on the same filesystem as
/// `dir`, returning the number of entries removed.
///
/// Best effort and never crossing into another mount (entries whose
/// `st_dev` differs are left alone): the initramfs is RAM that only this
/// delete gives back, but the new root and the moved API mounts hang off it
/// and must not be touched. An entry that cannot be removed is skipped: the
/// worst case is some RAM not freed, never a failed boot.
pub fn remove_same_fs(dir: &Path) -> usize {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    remove_tree(dir, meta.dev())
}

fn remove_tree(dir: &Path, dev: u64) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let path = e.path();
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if m.dev() != dev {
            continue;
        }
        if m.is_dir() {
            removed += remove_tree(&path, dev);
            if std::fs::remove_dir(&path).is_ok() {
                removed += 1;
            }
        } else if std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Makes `new_root` the root: chdir into it, move it over `/`, chroot,
/// chdir `/` (what `switch_root` does; pivot_root does not work on rootfs).
/// `/` is the root the running process sees.
pub fn enter(sys: &impl Sys, new_root: &Path) -> Result<(), SwitchRootError> {
    let step = |step: &'static str| move |source| SwitchRootError::Enter { step, source };
    sys.chdir(new_root).map_err(step("chdir to the new root"))?;
    sys.move_mount(Path::new("."), Path::new("/"))
        .map_err(step("mount --move . /"))?;
    sys.chroot(Path::new(".")).map_err(step("chroot ."))?;
    sys.chdir(Path::new("/")).map_err(step("chdir /"))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn candidate_order() {
        let fs = FsInfo {
            fstype: "ext3",
            uuid: None,
            label: None,
        };
        let procfs = "nodev\tsysfs\nnodev\ttmpfs\n\text4\n\tvfat\nnodev\tproc\n";
        assert_eq!(
            fstype_candidates(&["xfs".into()], Some(&fs), procfs),
            vec!["xfs"]
        );
        assert_eq!(
            fstype_candidates(&[], Some(&fs), procfs),
            vec!["ext3", "ext4"]
        );
        assert_eq!(fstype_candidates(&[], None, procfs), vec!["ext4", "vfat"]);
        assert!(fstype_candidates(&[], None, "nodev\ttmpfs\n").is_empty());
    }

    #[test]
    fn no_type_is_a_clear_error() {
        let e = mount_root(
            &crate::sys::FakeSys::new(),
            Path::new("/dev/vda"),
            Path::new("/nonexistent-kmodinit"),
            &[],
            &MountOptions {
                flags: MsFlags::empty(),
                data: String::new(),
                read_only: true,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("/dev/vda"), "{e}");
    }

    #[test]
    fn removes_a_tree_on_one_filesystem() {
        let d = std::env::temp_dir().join(format!("kmodinit-rm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        std::fs::write(d.join("a/b/c/f"), "x").unwrap();
        std::fs::write(d.join("top"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", d.join("link")).unwrap();
        // The symlink is removed, never followed into /etc.
        let n = remove_same_fs(&d);
        assert_eq!(n, 6);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        assert!(Path::new("/etc").exists());
        std::fs::remove_dir(&d).unwrap();
    }
}

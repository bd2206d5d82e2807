//! [`RealSys`]: the system calls of the boot. With `sys/process.rs` (fork
//! and `_exit`) and the loader's `kernel/real.rs`, the only `unsafe` code
//! of `/init`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use modules_manifest::dm::DmDevice;
use nix::mount::{MntFlags, MsFlags};

use super::InitCommand;
use super::{Shutdown, Sys};

/// The running machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

impl Sys for RealSys {
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        nix::mount::mount(Some(source), target, Some(fstype), flags, data)?;
        Ok(())
    }

    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()> {
        nix::mount::mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>)?;
        Ok(())
    }

    fn detach(&self, target: &Path) -> io::Result<()> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)?;
        Ok(())
    }

    /// A mount point lives on another device than its parent directory (or
    /// is the root itself). Needs no /proc, which may not be mounted yet.
    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        let me = std::fs::metadata(path)?;
        let parent = std::fs::metadata(path.join(".."))?;
        Ok(me.dev() != parent.dev() || me.ino() == parent.ino())
    }

    fn is_ram_fs(&self, path: &Path) -> bool {
        match nix::sys::statfs::statfs(path) {
            Ok(s) => {
                let t = s.filesystem_type();
                // Neither nix nor libc names ramfs' magic; the field's width
                // differs between libcs, hence `as _`.
                const RAMFS_MAGIC: u32 = 0x8584_58f6;
                t == nix::sys::statfs::FsType(RAMFS_MAGIC as _)
                    || t == nix::sys::statfs::TMPFS_MAGIC
            }
            Err(_) => false,
        }
    }

    fn in_background(&self, job: &mut dyn FnMut()) {
        let forked = crate::sys::process::fork(|| {
            // Not PID 1's hook: a panic here must not carry out on_failure.
            std::panic::set_hook(Box::new(|_| crate::sys::process::exit_now(1)));
            job();
            0
        });
        if forked.is_err() {
            job();
        }
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        nix::unistd::chdir(path)?;
        Ok(())
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        nix::unistd::chroot(path)?;
        Ok(())
    }

    fn mknod_block(&self, path: &Path, major: u32, minor: u32) -> io::Result<()> {
        nix::sys::stat::mknod(
            path,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(u64::from(major), u64::from(minor)),
        )?;
        Ok(())
    }

    fn stdio_missing(&self) -> bool {
        // SAFETY: F_GETFD only queries fd 0; no memory is passed.
        unsafe { libc::fcntl(0, libc::F_GETFD) == -1 }
    }

    fn setsid(&self) -> io::Result<()> {
        nix::unistd::setsid()?;
        Ok(())
    }

    fn set_controlling_tty(&self, tty: &File) -> io::Result<()> {
        // SAFETY: TIOCSCTTY takes an int argument, no pointer; `tty` is an
        // open fd for the call's duration. Arg 1 steals the terminal from
        // another session if needed (we are root).
        let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 1) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn dup_to_stdio(&self, f: &File) -> io::Result<()> {
        for fd in 0..3 {
            // SAFETY: dup2 of a valid open fd onto 0..2; std's stdio handles
            // stay valid (they now refer to `f`'s file).
            if unsafe { libc::dup2(f.as_raw_fd(), fd) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    fn sync(&self) {
        nix::unistd::sync();
    }

    fn reboot(&self, how: Shutdown) -> io::Error {
        use nix::sys::reboot::RebootMode;
        let mode = match how {
            Shutdown::Restart => RebootMode::RB_AUTOBOOT,
            Shutdown::PowerOff => RebootMode::RB_POWER_OFF,
            Shutdown::Halt => RebootMode::RB_HALT_SYSTEM,
        };
        match nix::sys::reboot::reboot(mode) {
            Err(e) => e.into(),
            Ok(never) => match never {},
        }
    }

    fn read_sysctl(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write_sysctl(&self, path: &Path, value: &str) -> io::Result<()> {
        std::fs::write(path, value)
    }

    fn dm_create(&self, control: &Path, dev: &DmDevice) -> io::Result<(u32, u32)> {
        super::dm::create(control, dev)
    }

    fn dm_status(&self, control: &Path, name: &str) -> io::Result<String> {
        super::dm::status(control, name)
    }

    fn exec(&self, cmd: &InitCommand) -> io::Error {
        let cstrings = |v: &[String]| -> Result<Vec<CString>, io::Error> {
            v.iter()
                .map(|s| {
                    CString::new(s.as_str())
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
                })
                .collect()
        };
        let (path, argv, env) = match (
            CString::new(cmd.path.as_str()),
            cstrings(&cmd.argv),
            cstrings(&cmd.env),
        ) {
            (Ok(p), Ok(a), Ok(e)) => (p, a, e),
            _ => {
                return io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NUL byte in init path, argument or environment",
                )
            }
        };
        match nix::unistd::execve(&path, &argv, &env) {
            Err(e) => e.into(),
            Ok(never) => match never {},
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn mount_point_check_on_host_paths() {
        // Read-only: stat only.
        assert!(RealSys.is_mount_point(Path::new("/")).unwrap());
        let d = std::env::temp_dir().join(format!("kmodinit-mnt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert!(!RealSys.is_mount_point(&d).unwrap());
        std::fs::remove_dir(&d).unwrap();
    }

    #[test]
    fn exec_failure_is_returned() {
        let e = RealSys.exec(&InitCommand {
            path: "/nonexistent/kmodinit-test".into(),
            argv: vec!["x".into()],
            env: vec![],
        });
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let e = RealSys.exec(&InitCommand {
            path: "bad\0path".into(),
            argv: vec![],
            env: vec![],
        });
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}

//! The boundary between PID 1's boot steps and the machine, beside module
//! insertion ([`crate::kernel`]): mounts, the new root, device nodes, the
//! console, reboot and exec.
//!
//! The boot steps ([`crate::pid1`], [`crate::pid1::switch_root`], [`crate::pid1::mount`],
//! [`crate::pid1::failure`]) only ever talk to a [`Sys`]. [`RealSys`] makes the
//! system calls and, with [`process`] (fork and the immediate exit), holds
//! the only `unsafe` code among them; [`FakeSys`]
//! records every call, answers the queries as configured and fails the calls
//! a test asks it to, so the steps' order and flags are unit-tested without
//! touching the host's mounts.
//!
//! Plain file work (reading sysfs, creating directories, deleting the
//! initramfs) stays outside: it acts on paths the caller passes, which tests
//! point at a temporary directory.

use std::fs::File;
use std::io;
use std::path::Path;

use modules_manifest::dm::DmDevice;
use nix::mount::MsFlags;

pub mod dm;
mod fake;
pub mod process;
mod real;

pub use fake::{FakeSys, SysCall};
pub use real::RealSys;

/// A program ready to exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitCommand {
    /// Absolute path inside the (new) root.
    pub path: String,
    /// `argv`, `argv[0]` included.
    pub argv: Vec<String>,
    pub env: Vec<String>,
}

/// How [`Sys::reboot`] ends the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// `RB_AUTOBOOT`: restart.
    Restart,
    /// `RB_POWER_OFF`.
    PowerOff,
    /// `RB_HALT_SYSTEM`: stop, machine left on.
    Halt,
}

/// The system calls of the boot beyond module insertion.
///
/// Each call blocks until the kernel answered. Methods take `&self`:
/// implementations keep whatever state they need inside (the fake behind a
/// mutex), so one value serves every step and the panic hook.
pub trait Sys {
    /// `mount(2)` of a new filesystem: `source` on `target` as `fstype`.
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// `mount --move from to`.
    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `umount2(target, MNT_DETACH)`: gone from the tree now, freed when
    /// unused.
    fn detach(&self, target: &Path) -> io::Result<()>;
    /// True if `path` is a mount point.
    fn is_mount_point(&self, path: &Path) -> io::Result<bool>;
    /// True if `path` lives on ramfs or tmpfs (an initramfs PID 1 may empty).
    fn is_ram_fs(&self, path: &Path) -> bool;
    /// Runs `job` in a forked child and returns at once (the child ends
    /// when `job` returns; a panic in it ends only the child). The caller
    /// must be single-threaded, as PID 1 is. If the fork fails, `job` runs
    /// here. For work whose result nobody waits for: emptying the
    /// initramfs while the real init starts.
    fn in_background(&self, job: &mut dyn FnMut());
    fn chdir(&self, path: &Path) -> io::Result<()>;
    fn chroot(&self, path: &Path) -> io::Result<()>;
    /// Creates the block device node `path` for `major:minor`, mode 0600.
    fn mknod_block(&self, path: &Path, major: u32, minor: u32) -> io::Result<()>;
    /// True if fd 0 is not open (the kernel found no `/dev/console`).
    fn stdio_missing(&self) -> bool;
    /// Starts a new session (PID 1 starts in session 0).
    fn setsid(&self) -> io::Result<()>;
    /// Makes the open terminal `tty` our controlling terminal
    /// (`TIOCSCTTY`, stealing it from another session if needed).
    fn set_controlling_tty(&self, tty: &File) -> io::Result<()>;
    /// Points fds 0, 1 and 2 at `f`.
    fn dup_to_stdio(&self, f: &File) -> io::Result<()>;
    /// `sync(2)`: flush every filesystem before the machine stops.
    fn sync(&self);
    /// Stops or restarts the machine. Returns only on failure, with the
    /// error.
    fn reboot(&self, how: Shutdown) -> io::Error;
    /// The value of a `/proc/sys` file (e.g. `kernel/modprobe`), as read.
    fn read_sysctl(&self, path: &Path) -> io::Result<String>;
    /// Writes `value` to a `/proc/sys` file.
    fn write_sysctl(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Creates the device-mapper device `dev` through `control`
    /// (`/dev/mapper/control`), loads its table and makes it live; returns
    /// its `major:minor`. A device whose table is refused is removed again.
    fn dm_create(&self, control: &Path, dev: &DmDevice) -> io::Result<(u32, u32)>;
    /// The status line of the first target of device-mapper device `name`.
    fn dm_status(&self, control: &Path, name: &str) -> io::Result<String>;
    /// `execve` of `cmd`, replacing this process. Returns only on failure,
    /// with the error.
    fn exec(&self, cmd: &InitCommand) -> io::Error;
}

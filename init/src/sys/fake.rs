//! [`FakeSys`]: a recording, scriptable [`Sys`] for tests.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use modules_manifest::dm::DmDevice;
use nix::mount::MsFlags;

use super::InitCommand;
use super::{Shutdown, Sys};

/// One recorded call of [`FakeSys`] (queries are answered, not recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysCall {
    Mount {
        source: PathBuf,
        target: PathBuf,
        fstype: String,
        flags: MsFlags,
        data: Option<String>,
    },
    MoveMount {
        from: PathBuf,
        to: PathBuf,
    },
    Detach(PathBuf),
    Chdir(PathBuf),
    Chroot(PathBuf),
    MknodBlock {
        path: PathBuf,
        major: u32,
        minor: u32,
    },
    Setsid,
    SetControllingTty,
    DupToStdio,
    Sync,
    Reboot(Shutdown),
    Exec(InitCommand),
    WriteSysctl {
        path: PathBuf,
        value: String,
    },
    /// A device-mapper device created (its table loaded and resumed).
    DmCreate(DmDevice),
}

type FailRule = Box<dyn Fn(&SysCall) -> Option<i32> + Send>;

#[derive(Default)]
struct State {
    calls: Vec<SysCall>,
    mounted: BTreeSet<PathBuf>,
    sysctls: std::collections::BTreeMap<PathBuf, String>,
    /// What [`Sys::dm_status`] answers (`V` unless set).
    dm_status: Option<String>,
}

/// A machine that changes nothing and remembers every call.
///
/// A successful [`Sys::mount`] makes its target a mount point for
/// [`Sys::is_mount_point`]; `ram_fs` paths answer [`Sys::is_ram_fs`]; the
/// rules given to [`FakeSys::fail_with`] make matching calls fail with an
/// errno (the call is still recorded). `exec` and `reboot` cannot succeed in
/// a test process: they are recorded and return an error (`ENOSYS` unless a
/// rule says otherwise), as the real ones do when they fail.
#[derive(Default)]
pub struct FakeSys {
    state: Mutex<State>,
    rules: Vec<FailRule>,
    ram_fs: BTreeSet<PathBuf>,
    stdio_missing: bool,
}

impl fmt::Debug for FakeSys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeSys")
            .field("calls", &self.lock().calls)
            .field("rules", &self.rules.len())
            .field("ram_fs", &self.ram_fs)
            .finish()
    }
}

impl FakeSys {
    pub fn new() -> FakeSys {
        FakeSys::default()
    }

    /// Calls for which `rule` returns an errno fail with it.
    pub fn fail_with(mut self, rule: impl Fn(&SysCall) -> Option<i32> + Send + 'static) -> Self {
        self.rules.push(Box::new(rule));
        self
    }

    /// `path` is already a mount point.
    pub fn mounted(self, path: impl Into<PathBuf>) -> Self {
        self.lock().mounted.insert(path.into());
        self
    }

    /// `path` lives on ramfs/tmpfs.
    pub fn ram_fs(mut self, path: impl Into<PathBuf>) -> Self {
        self.ram_fs.insert(path.into());
        self
    }

    /// The `/proc/sys` file `path` reads `value` (until written).
    pub fn sysctl(self, path: impl Into<PathBuf>, value: impl Into<String>) -> Self {
        self.lock().sysctls.insert(path.into(), value.into());
        self
    }

    /// [`Sys::dm_status`] answers `status` for every device.
    pub fn dm_status(self, status: impl Into<String>) -> Self {
        self.lock().dm_status = Some(status.into());
        self
    }

    /// fd 0 is not open.
    pub fn without_stdio(mut self) -> Self {
        self.stdio_missing = true;
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<SysCall> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `call`; the errno of the first rule that matches it.
    fn record(&self, call: SysCall) -> io::Result<()> {
        let errno = self.rules.iter().find_map(|r| r(&call));
        self.lock().calls.push(call);
        match errno {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }
}

impl Sys for FakeSys {
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(SysCall::Mount {
            source: source.to_path_buf(),
            target: target.to_path_buf(),
            fstype: fstype.to_string(),
            flags,
            data: data.map(String::from),
        })?;
        self.lock().mounted.insert(target.to_path_buf());
        Ok(())
    }

    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record(SysCall::MoveMount {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        })
    }

    fn detach(&self, target: &Path) -> io::Result<()> {
        self.record(SysCall::Detach(target.to_path_buf()))
    }

    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        Ok(self.lock().mounted.contains(path))
    }

    fn is_ram_fs(&self, path: &Path) -> bool {
        self.ram_fs.contains(path)
    }

    /// Runs `job` here: a test process has threads, which a fork of it
    /// would copy without their locks' owners.
    fn in_background(&self, job: &mut dyn FnMut()) {
        job();
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(SysCall::Chdir(path.to_path_buf()))
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        self.record(SysCall::Chroot(path.to_path_buf()))
    }

    fn mknod_block(&self, path: &Path, major: u32, minor: u32) -> io::Result<()> {
        self.record(SysCall::MknodBlock {
            path: path.to_path_buf(),
            major,
            minor,
        })
    }

    fn stdio_missing(&self) -> bool {
        self.stdio_missing
    }

    fn setsid(&self) -> io::Result<()> {
        self.record(SysCall::Setsid)
    }

    fn set_controlling_tty(&self, _tty: &File) -> io::Result<()> {
        self.record(SysCall::SetControllingTty)
    }

    fn dup_to_stdio(&self, _f: &File) -> io::Result<()> {
        self.record(SysCall::DupToStdio)
    }

    fn sync(&self) {
        let _ = self.record(SysCall::Sync);
    }

    fn reboot(&self, how: Shutdown) -> io::Error {
        match self.record(SysCall::Reboot(how)) {
            Err(e) => e,
            Ok(()) => io::Error::from_raw_os_error(libc::ENOSYS),
        }
    }

    fn read_sysctl(&self, path: &Path) -> io::Result<String> {
        self.lock()
            .sysctls
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    fn write_sysctl(&self, path: &Path, value: &str) -> io::Result<()> {
        self.record(SysCall::WriteSysctl {
            path: path.to_path_buf(),
            value: value.to_owned(),
        })?;
        self.lock()
            .sysctls
            .insert(path.to_path_buf(), value.to_owned());
        Ok(())
    }

    /// Device-mapper devices get `253:N`, N counting from 0.
    fn dm_create(&self, _control: &Path, dev: &DmDevice) -> io::Result<(u32, u32)> {
        self.record(SysCall::DmCreate(dev.clone()))?;
        let n = self
            .lock()
            .calls
            .iter()
            .filter(|c| matches!(c, SysCall::DmCreate(_)))
            .count();
        Ok((253, n as u32 - 1))
    }

    fn dm_status(&self, _control: &Path, _name: &str) -> io::Result<String> {
        Ok(self.lock().dm_status.clone().unwrap_or_else(|| "V".into()))
    }

    fn exec(&self, cmd: &InitCommand) -> io::Error {
        match self.record(SysCall::Exec(cmd.clone())) {
            Err(e) => e,
            Ok(()) => io::Error::from_raw_os_error(libc::ENOSYS),
        }
    }
}

//! The helper's install: point the kernel at it for the boot, and give
//! the kernel its own value back when nothing serves any more.
//!
//! Two parts, so that the 1.1 MB copy is off the path to the load. Before
//! forking the loader, PID 1 [`prepare`]s: it reads
//! `/proc/sys/kernel/modprobe` (the kernel's value, usually
//! `/sbin/modprobe`) and binds the request socket in `/run/kmodinit`. After
//! the loader's go, while the loader plans, PID 1 [`activate`]s: it copies
//! the binary to `/run/kmodinit/modprobe` (`/run` moves into the real root
//! at switch_root, so the path stays valid after it, while the initramfs'
//! `/init` is deleted) and writes the copy's path to the sysctl; the loader
//! waits for its word before the first insertion. Whoever stops serving
//! last puts the kernel's value back and removes both files: PID 1 before
//! exec if the loader has ended, else the loader itself when it stops
//! ([`Restorer`]).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::sys::Sys;

pub use crate::wire::helper::MODPROBE_SYSCTL;
use crate::wire::helper::{socket_name, FACE_NAME};

/// What [`prepare`] set up.
#[derive(Debug)]
pub struct Installed {
    /// The kernel's value before the boot, trimmed.
    pub kernel_value: String,
    /// The helper's path, to be written to the sysctl by [`activate`].
    pub helper: PathBuf,
    /// The request socket, listening; the loader child inherits it.
    pub listener: UnixListener,
}

/// PID 1's part, before the fork: reads the kernel's value from the sysctl
/// under `proc` (through `sys`), and binds the socket `run_dir/helper.sock`
/// (0600). Nothing points at the helper yet: [`activate`] does that.
pub fn prepare<S: Sys>(sys: &S, proc: &Path, run_dir: &Path) -> io::Result<Installed> {
    let kernel_value = sys
        .read_sysctl(&proc.join(MODPROBE_SYSCTL))?
        .trim()
        .to_owned();
    std::fs::create_dir_all(run_dir)?;
    let helper = run_dir.join(FACE_NAME);
    let _ = std::fs::remove_file(&helper);
    let socket = run_dir.join(socket_name());
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(Installed {
        kernel_value,
        helper,
        listener,
    })
}

/// PID 1's second part: `exe` copied to `helper` (0700), then the sysctl
/// under `proc` pointed at the copy (through `sys`). On error nothing is
/// left pointing at a half-installed helper: the sysctl is written last.
pub fn activate<S: Sys>(sys: &S, proc: &Path, helper: &Path, exe: &Path) -> io::Result<()> {
    std::fs::copy(exe, helper)?;
    std::fs::set_permissions(helper, std::fs::Permissions::from_mode(0o700))?;
    sys.write_sysctl(&proc.join(MODPROBE_SYSCTL), &helper.to_string_lossy())
}

/// Both parts in one (tests, and the order they must keep).
#[cfg(test)]
pub fn install<S: Sys>(sys: &S, proc: &Path, run_dir: &Path, exe: &Path) -> io::Result<Installed> {
    let inst = prepare(sys, proc, run_dir)?;
    activate(sys, proc, &inst.helper, exe)?;
    Ok(inst)
}

/// Puts the kernel's value back (through `sys`) and removes the helper's
/// files. Errors are logged: nothing else can be done about them.
pub fn restore<S: Sys>(sys: &S, proc: &Path, run_dir: &Path, kernel_value: &str) {
    if let Err(e) = sys.write_sysctl(&proc.join(MODPROBE_SYSCTL), kernel_value) {
        log::error!("cannot restore /proc/{MODPROBE_SYSCTL} to {kernel_value:?}: {e}");
    }
    let _ = std::fs::remove_file(run_dir.join(FACE_NAME));
    let _ = std::fs::remove_file(run_dir.join(socket_name()));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sys::{FakeSys, SysCall};

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("kmodinit-install-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("proc/sys/kernel")).unwrap();
        d
    }

    #[test]
    fn the_kernel_value_is_kept_and_put_back() {
        let d = tmp("set");
        let (proc, run) = (d.join("proc"), d.join("run/kmodinit"));
        let exe = d.join("init");
        std::fs::write(&exe, b"\x7fELF binary").unwrap();
        let sysctl = proc.join(MODPROBE_SYSCTL);
        let sys = FakeSys::new().sysctl(&sysctl, "/sbin/modprobe\n");
        let inst = install(&sys, &proc, &run, &exe).unwrap();
        assert_eq!(inst.kernel_value, "/sbin/modprobe");
        let helper = run.join("modprobe");
        assert_eq!(inst.helper, helper);
        assert_eq!(std::fs::read(&helper).unwrap(), b"\x7fELF binary");
        let mode = std::fs::metadata(&helper).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let sock = run.join("helper.sock");
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            sys.calls(),
            vec![SysCall::WriteSysctl {
                path: sysctl.clone(),
                value: helper.to_string_lossy().into_owned()
            }]
        );
        restore(&sys, &proc, &run, &inst.kernel_value);
        assert_eq!(
            sys.calls().last(),
            Some(&SysCall::WriteSysctl {
                path: sysctl,
                value: "/sbin/modprobe".into()
            })
        );
        assert!(!helper.exists() && !sock.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_install_leaves_the_kernel_value() {
        let d = tmp("fail");
        let (proc, run) = (d.join("proc"), d.join("run/kmodinit"));
        let sysctl = proc.join(MODPROBE_SYSCTL);
        let sys = FakeSys::new().sysctl(&sysctl, "/sbin/modprobe\n");
        // No binary to copy: nothing is written.
        assert!(install(&sys, &proc, &run, &d.join("missing")).is_err());
        assert!(sys.calls().is_empty());
        // No sysctl to read (no /proc): nothing is written either.
        let sys = FakeSys::new();
        assert!(install(&sys, &proc, &run, &d.join("missing")).is_err());
        assert!(sys.calls().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}

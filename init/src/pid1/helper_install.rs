//! The helper's install: point the kernel at it for the boot, and give
//! the kernel its own value back when nothing serves any more.
//!
//! Two parts. Before forking the loader, PID 1 [`prepare`]s: it reads
//! `/proc/sys/kernel/modprobe` (the kernel's value, usually
//! `/sbin/modprobe`) and binds the request socket in `/run/kmodinit`, which
//! the loader inherits. After the loader's go, while the loader plans,
//! PID 1 [`activate`]s: it points the sysctl at the loader's executable,
//! `/proc/PID/exe` (`wire::helper::helper_path`): `/init` itself, with no
//! copy of it, valid after switch_root for as long as the loader lives;
//! the loader waits for PID 1's word before its first insertion. Whoever
//! stops serving last puts the kernel's value back and removes the socket:
//! PID 1 before exec if the loader has ended ([`restore`]), else the loader
//! itself when it stops (`loader::restorer`).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

use crate::sys::Sys;

use crate::wire::helper::socket_name;
pub use crate::wire::helper::MODPROBE_SYSCTL;

/// What [`prepare`] set up.
#[derive(Debug)]
pub struct Installed {
    /// The kernel's value before the boot, trimmed.
    pub kernel_value: String,
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
    let socket = run_dir.join(socket_name());
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(Installed {
        kernel_value,
        listener,
    })
}

/// PID 1's second part: the sysctl under `proc` pointed at `helper`
/// (through `sys`).
pub fn activate<S: Sys>(sys: &S, proc: &Path, helper: &str) -> io::Result<()> {
    sys.write_sysctl(&proc.join(MODPROBE_SYSCTL), helper)
}

/// Both parts in one (tests, and the order they must keep).
#[cfg(test)]
pub fn install<S: Sys>(
    sys: &S,
    proc: &Path,
    run_dir: &Path,
    helper: &str,
) -> io::Result<Installed> {
    let inst = prepare(sys, proc, run_dir)?;
    activate(sys, proc, helper)?;
    Ok(inst)
}

/// Puts the kernel's value back (through `sys`) and removes the socket.
/// Errors are logged: nothing else can be done about them.
pub fn restore<S: Sys>(sys: &S, proc: &Path, run_dir: &Path, kernel_value: &str) {
    if let Err(e) = sys.write_sysctl(&proc.join(MODPROBE_SYSCTL), kernel_value) {
        log::error!("cannot restore /proc/{MODPROBE_SYSCTL} to {kernel_value:?}: {e}");
    }
    let _ = std::fs::remove_file(run_dir.join(socket_name()));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sys::{FakeSys, SysCall};

    fn tmp(name: &str) -> std::path::PathBuf {
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
        let sysctl = proc.join(MODPROBE_SYSCTL);
        let sys = FakeSys::new().sysctl(&sysctl, "/sbin/modprobe\n");
        let helper = crate::wire::helper::helper_path(42);
        let inst = install(&sys, &proc, &run, &helper).unwrap();
        assert_eq!(inst.kernel_value, "/sbin/modprobe");
        assert_eq!(helper, "/proc/42/exe");
        // No copy of the binary: only the socket is made.
        let entries: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["helper.sock"]);
        let sock = run.join("helper.sock");
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            sys.calls(),
            vec![SysCall::WriteSysctl {
                path: sysctl.clone(),
                value: helper.clone()
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
        assert!(!sock.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_prepare_leaves_the_kernel_value() {
        let d = tmp("fail");
        let (proc, run) = (d.join("proc"), d.join("run/kmodinit"));
        // No sysctl to read (no /proc): nothing is written.
        let sys = FakeSys::new();
        assert!(install(&sys, &proc, &run, "/proc/42/exe").is_err());
        assert!(sys.calls().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}

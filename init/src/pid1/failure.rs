//! The failure policy, decided in one place: what PID 1 does after a fatal
//! error or a panic. It never returns to the kernel (which would panic with
//! "Attempted to kill init"). Carried out through [`Sys`].

use std::path::Path;
use std::time::Duration;

use modules_manifest::OnFailure;

use crate::pid1::handover::{self, InitCommand, CLEAN_ENV};
use crate::pid1::Paths;
use crate::sys::{Shutdown, Sys};

/// The shell `rescue` runs.
pub const RESCUE_SHELL: &str = "/bin/sh";

/// What to do after a fatal error, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    Rescue,
    Reboot,
    Poweroff,
    Halt,
}

/// `kmodinit.on_failure=` wins over the manifest; by default rescue if the
/// image has a shell, else halt. A rescue without a shell halts.
pub fn choose(
    cmdline: Option<OnFailure>,
    manifest: Option<OnFailure>,
    shell_exists: bool,
) -> FailureAction {
    match cmdline.or(manifest) {
        Some(OnFailure::Reboot) => FailureAction::Reboot,
        Some(OnFailure::Poweroff) => FailureAction::Poweroff,
        Some(OnFailure::Halt) => FailureAction::Halt,
        Some(OnFailure::Rescue) | None if shell_exists => FailureAction::Rescue,
        Some(OnFailure::Rescue) | None => FailureAction::Halt,
    }
}

impl FailureAction {
    pub fn describe(self) -> &'static str {
        match self {
            FailureAction::Rescue => "starting a rescue shell (/bin/sh) on the console",
            FailureAction::Reboot => "rebooting",
            FailureAction::Poweroff => "powering off",
            FailureAction::Halt => "halting",
        }
    }
}

/// The multi-line explanation printed on the console and the kernel log.
/// `what` names the failed step and its cause; `hints` say what to try.
pub fn explain(
    what: &str,
    hints: &[String],
    report: Option<&str>,
    action: FailureAction,
) -> String {
    let mut s = String::from("\n*** kmodinit: the boot cannot continue ***\n");
    for line in what.lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    match report {
        Some(path) => s.push_str(&format!("  Details: {path}\n")),
        None => s.push_str("  (no report could be written)\n"),
    }
    if !hints.is_empty() {
        s.push_str("  What to try:\n");
        for h in hints {
            s.push_str(&format!("    - {h}\n"));
        }
    }
    s.push_str(&format!("  Now {}.\n", action.describe()));
    s
}

/// Carries out `action`. Never returns: a rescue that cannot exec halts, a
/// halt that returns sleeps forever.
pub fn carry_out(action: FailureAction, sys: &impl Sys, paths: &Paths) -> ! {
    let err = attempt(action, sys, paths);
    log::error!("reboot(2) failed: {err}; waiting forever");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// What [`carry_out`] does before it waits forever: a rescue execs the
/// shell on the console and halts if it cannot; every other action syncs
/// and asks the kernel to stop. Returns only if `reboot(2)` failed, with
/// its error.
pub fn attempt(action: FailureAction, sys: &impl Sys, paths: &Paths) -> std::io::Error {
    if action == FailureAction::Rescue {
        console_stdio(sys, &paths.dev, &paths.sys);
        let shell = InitCommand {
            path: RESCUE_SHELL.into(),
            argv: vec![RESCUE_SHELL.into()],
            env: CLEAN_ENV.iter().map(|s| s.to_string()).collect(),
        };
        let err = sys.exec(&shell);
        log::error!("cannot start the rescue shell {RESCUE_SHELL}: {err}; halting");
    }
    sys.sync();
    sys.reboot(match action {
        FailureAction::Reboot => Shutdown::Restart,
        FailureAction::Poweroff => Shutdown::PowerOff,
        FailureAction::Rescue | FailureAction::Halt => Shutdown::Halt,
    })
}

/// The terminal behind `/dev/console`: the last name in
/// `/sys/class/tty/console/active` (the kernel's preferred console), e.g.
/// `ttyS0` for `console=tty0 console=ttyS0`.
pub fn active_console(active: &str) -> Option<&str> {
    active.split_whitespace().last()
}

/// Points fds 0, 1, 2 at the console so a shell can talk to the user. The
/// real terminal behind `dev/console` (named in `sysfs`) is preferred and
/// made our controlling terminal (`/dev/console` itself cannot be one), so
/// the rescue shell gets job control and Ctrl-C. Best effort.
pub fn console_stdio(sys: &impl Sys, dev: &Path, sysfs: &Path) {
    let open = |p: &Path| std::fs::OpenOptions::new().read(true).write(true).open(p);
    let tty = std::fs::read_to_string(sysfs.join("class/tty/console/active"))
        .ok()
        .and_then(|a| active_console(&a).map(|n| dev.join(n)))
        .and_then(|p| open(&p).ok());
    let is_tty = tty.is_some();
    let Some(c) = tty.or_else(|| open(&dev.join("console")).ok()) else {
        return;
    };
    if is_tty {
        // A new session (PID 1 starts in session 0, so this succeeds) whose
        // controlling terminal is the console's tty.
        let _ = sys.setsid();
        let _ = sys.set_controlling_tty(&c);
    }
    let _ = sys.dup_to_stdio(&c);
}

/// If the kernel gave us no stdio (an image without `/dev/console`), open
/// the console as fds 0, 1, 2 so the real init and our messages have one.
pub fn ensure_stdio(sys: &impl Sys, dev: &Path) {
    if sys.stdio_missing() {
        if let Ok(c) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev.join("console"))
        {
            let _ = sys.dup_to_stdio(&c);
        }
    }
}

pub use crate::kmsg::{panic_message, panic_text};

/// `on_failure` as far as PID 1 knows it (command line over manifest),
/// for the panic hook: 0 unknown, then [`OnFailure`] + 1.
static POLICY: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Records the `on_failure` a panic in PID 1 must carry out.
pub fn set_policy(p: Option<OnFailure>) {
    let v = match p {
        None => 0,
        Some(OnFailure::Rescue) => 1,
        Some(OnFailure::Reboot) => 2,
        Some(OnFailure::Poweroff) => 3,
        Some(OnFailure::Halt) => 4,
    };
    POLICY.store(v, std::sync::atomic::Ordering::Relaxed);
}

fn policy() -> Option<OnFailure> {
    match POLICY.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Some(OnFailure::Rescue),
        2 => Some(OnFailure::Reboot),
        3 => Some(OnFailure::Poweroff),
        4 => Some(OnFailure::Halt),
        _ => None,
    }
}

/// The report PID 1 last wrote, for the panic hook (which must not read
/// it back: that would link a JSON reader for it into `/init`).
static LAST_REPORT: std::sync::Mutex<Option<crate::report::Report>> = std::sync::Mutex::new(None);

/// Remembers `report` as the one the panic hook adds a panic to.
pub fn remember_report(report: &crate::report::Report) {
    if let Ok(mut last) = LAST_REPORT.lock() {
        *last = Some(report.clone());
    }
}

/// PID 1's panic hook: the release build aborts after a panic, and PID 1
/// must never end, so the hook itself carries out the failure policy: it
/// logs the panic, adds it to the report (the one PID 1 last wrote,
/// [`remember_report`], or a new one), explains on the console and in the
/// kernel log, then runs `on_failure` ([`set_policy`]) through `sys`.
/// Never returns.
pub fn install_pid1_panic_hook<S: Sys + Send + Sync + 'static>(sys: S, paths: Paths) {
    std::panic::set_hook(Box::new(move |info| {
        let text = format!("panic in thread {}", panic_text(info));
        crate::kmsg::announce(&paths.dev, &paths.proc, &format!("kmodinit: {text}\n"));
        let err = crate::pid1::BootError::Panic(panic_message(info));
        let action = choose(
            policy(),
            None,
            handover::is_executable(&paths.root, RESCUE_SHELL),
        );
        let report_path = &paths.report;
        // try_lock: the panic may have come from inside remember_report.
        let mut report = LAST_REPORT
            .try_lock()
            .ok()
            .and_then(|mut r| r.take())
            .unwrap_or_default();
        report.errors.push(err.to_string());
        report.boottime_exec = None;
        let written = report.write(report_path).is_ok();
        let report_name = report_path.to_str().filter(|_| written);
        let explanation = explain(&err.to_string(), &err.hints(), report_name, action);
        crate::kmsg::announce(&paths.dev, &paths.proc, &explanation);
        carry_out(action, &sys, &paths)
    }));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn policy_precedence_and_default() {
        use FailureAction as A;
        assert_eq!(choose(None, None, true), A::Rescue);
        assert_eq!(choose(None, None, false), A::Halt);
        assert_eq!(choose(None, Some(OnFailure::Reboot), true), A::Reboot);
        assert_eq!(
            choose(Some(OnFailure::Poweroff), Some(OnFailure::Reboot), true),
            A::Poweroff
        );
        assert_eq!(
            choose(Some(OnFailure::Rescue), Some(OnFailure::Halt), false),
            A::Halt
        );
        assert_eq!(choose(Some(OnFailure::Halt), None, true), A::Halt);
    }

    #[test]
    fn preferred_console_is_the_last_active() {
        assert_eq!(active_console("tty0 ttyS0\n"), Some("ttyS0"));
        assert_eq!(active_console("ttyS0\n"), Some("ttyS0"));
        assert_eq!(active_console(""), None);
    }

    #[test]
    fn explanation_names_step_report_and_action() {
        let s = explain(
            "root device UUID=x not found after 10 s",
            &["check root=".into()],
            Some("/run/kmodinit/report.json"),
            FailureAction::Reboot,
        );
        assert!(s.contains("  root device UUID=x not found after 10 s\n"));
        assert!(s.contains("Details: /run/kmodinit/report.json"));
        assert!(s.contains("    - check root=\n"));
        assert!(s.trim_end().ends_with("Now rebooting."));
        let s = explain("x", &[], None, FailureAction::Halt);
        assert!(s.contains("no report could be written"));
    }

    use crate::sys::{FakeSys, SysCall};

    fn temp_paths(tag: &str) -> Paths {
        let d = std::env::temp_dir().join(format!("kmodinit-fail-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("dev")).unwrap();
        std::fs::create_dir_all(d.join("sys/class/tty/console")).unwrap();
        Paths::under(&d)
    }

    #[test]
    fn reboot_modes_sync_first() {
        let paths = temp_paths("modes");
        for (action, how) in [
            (FailureAction::Reboot, Shutdown::Restart),
            (FailureAction::Poweroff, Shutdown::PowerOff),
            (FailureAction::Halt, Shutdown::Halt),
        ] {
            let fake = FakeSys::new();
            let err = attempt(action, &fake, &paths);
            assert_eq!(err.raw_os_error(), Some(libc::ENOSYS), "the fake's answer");
            assert_eq!(fake.calls(), [SysCall::Sync, SysCall::Reboot(how)]);
        }
        std::fs::remove_dir_all(&paths.root).unwrap();
    }

    #[test]
    fn rescue_takes_the_console_tty_and_falls_back_to_halt() {
        let paths = temp_paths("rescue");
        std::fs::write(paths.sys.join("class/tty/console/active"), "tty0 ttyS0\n").unwrap();
        std::fs::write(paths.dev.join("ttyS0"), "").unwrap();
        let fake =
            FakeSys::new().fail_with(|c| matches!(c, SysCall::Exec(_)).then_some(libc::ENOENT));
        let err = attempt(FailureAction::Rescue, &fake, &paths);
        assert_eq!(err.raw_os_error(), Some(libc::ENOSYS));
        let calls = fake.calls();
        assert_eq!(
            calls[..3],
            [
                SysCall::Setsid,
                SysCall::SetControllingTty,
                SysCall::DupToStdio
            ]
        );
        let SysCall::Exec(shell) = &calls[3] else {
            panic!("{calls:?}")
        };
        assert_eq!((shell.path.as_str(), shell.argv.len()), (RESCUE_SHELL, 1));
        assert_eq!(shell.env.len(), CLEAN_ENV.len());
        assert_eq!(calls[4..], [SysCall::Sync, SysCall::Reboot(Shutdown::Halt)]);
        std::fs::remove_dir_all(&paths.root).unwrap();
    }

    #[test]
    fn console_without_a_tty_is_not_made_controlling() {
        let paths = temp_paths("console");
        std::fs::write(paths.dev.join("console"), "").unwrap();
        let fake = FakeSys::new();
        console_stdio(&fake, &paths.dev, &paths.sys);
        assert_eq!(fake.calls(), [SysCall::DupToStdio]);
        // stdio already open: nothing to do; missing: the console.
        let fake = FakeSys::new();
        ensure_stdio(&fake, &paths.dev);
        assert!(fake.calls().is_empty());
        let fake = FakeSys::new().without_stdio();
        ensure_stdio(&fake, &paths.dev);
        assert_eq!(fake.calls(), [SysCall::DupToStdio]);
        std::fs::remove_dir_all(&paths.root).unwrap();
    }
}

//! PID 1's handle on the loader child process (`crate::loader`):
//! everything that can hang (a module init that never returns) or panic (a
//! loader bug) runs there, never in PID 1.
//!
//! PID 1 forks it (single-threaded at that point, so the child's copy of
//! every lock is free) right after reading the command line, if the
//! manifest file exists. The child reads the module index while PID 1
//! parses the manifest, then waits for PID 1's word ([`LoaderChild::go`]:
//! the manifest was valid, with the pool width and deadline it decided, or
//! [`LoaderChild::stop`]: the boot loads nothing). Then it reads the same
//! manifest itself, plans, opens every module file, loads on its thread
//! pool and streams [`LoaderEvent`]s up a pipe; PID 1 feeds them to a
//! [`Supervisor`].
//! If PID 1 hands over before the load ends, it forks a reporter just
//! before exec ([`LoaderChild::hand_over`]): a copy of PID 1 with its report
//! and supervisor in memory, which goes on reading the loader's events and
//! writes the final report when the load ends. The loader keeps descriptors
//! of its module files, so switch_root deleting the initramfs does not
//! matter; the reporter is forked after switch_root, so `/run/kmodinit` is
//! at its usual path.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::clock::boottime;
use crate::pid1::supervise::{Handover, LoaderExit, Supervisor, Verdict};
use crate::report::{Report, Step};
use crate::sys::process;
use crate::wire::events::{EventReader, LoaderEvent};
use crate::wire::fork::{ChildPipes, LoadInput, LoaderEntry};
use crate::wire::go::encode_go;

/// The longest PID 1 sleeps in `poll` without looking at the clock and the
/// child again (a child that dies closes its pipe, which wakes PID 1 at
/// once; this only bounds a wait whose deadline was computed late).
const MAX_POLL: Duration = Duration::from_secs(1);

/// PID 1's handle on the loader child.
#[derive(Debug)]
pub struct LoaderChild {
    pid: Pid,
    events: Option<File>,
    reader: EventReader,
    exit: Option<LoaderExit>,
    /// The child's timeline stamps, as received (`process` `loader`).
    steps: Vec<Step>,
    /// PID 1's word to the child ([`LoaderChild::go`]); closed, it means
    /// stop.
    go: Option<File>,
}

impl LoaderChild {
    /// Forks the loader child, which runs `entry` with `input` (the
    /// loader's `child_main`, handed over by `main.rs`) and ends with its
    /// status.
    pub fn spawn(input: LoadInput<'_>, entry: LoaderEntry) -> std::io::Result<LoaderChild> {
        let (events_rx, events_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let (go_rx, go_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let mut pipes = Some((events_tx, go_rx, events_rx, go_tx));
        let pid = process::fork(|| {
            let Some((events, go, events_rx, go_tx)) = pipes.take() else {
                return 1;
            };
            drop(events_rx);
            drop(go_tx);
            entry(input, ChildPipes { events, go })
        })?;
        let Some((events_tx, go_rx, events_rx, go_tx)) = pipes.take() else {
            return Err(std::io::Error::other("the loader's pipes went missing"));
        };
        drop(events_tx);
        drop(go_rx);
        Ok(LoaderChild {
            pid,
            events: Some(File::from(events_rx)),
            reader: EventReader::default(),
            exit: None,
            steps: Vec::new(),
            go: Some(File::from(go_tx)),
        })
    }

    /// Tells the child to plan and load: the manifest is valid, the pool is
    /// `jobs` wide, optional work stops at `deadline`. An error means the
    /// child is gone (supervising it says how it ended).
    /// The pipe stays open for [`LoaderChild::helper_installed`].
    pub fn go(&mut self, jobs: usize, deadline: Duration) -> std::io::Result<()> {
        match self.go.as_mut() {
            Some(f) => f.write_all(&encode_go(jobs, deadline)),
            None => Err(std::io::Error::other("the loader was told to stop")),
        }
    }

    /// After the go: tells the child whether the kernel now runs the module
    /// helper (PID 1 installs it while the child plans; the child waits for
    /// this word before its first insertion), and closes the pipe.
    pub fn helper_installed(&mut self, installed: bool) -> std::io::Result<()> {
        match self.go.take() {
            Some(mut f) => f.write_all(&[u8::from(installed)]),
            None => Err(std::io::Error::other("the loader was told to stop")),
        }
    }

    /// The boot loads nothing (no manifest after all, or it failed before
    /// the load): the child, still waiting for its go, is ended and reaped.
    /// It has loaded nothing.
    pub fn stop(&mut self) {
        self.go = None;
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        match waitpid(self.pid, None) {
            Ok(s) => log::debug!("loader (pid {}) stopped before planning: {s:?}", self.pid),
            Err(e) => log::error!("waitpid on the stopped loader (pid {}): {e}", self.pid),
        }
        self.events = None;
        self.exit = Some(LoaderExit::Signaled("SIGKILL".to_owned()));
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The child's timeline stamps received so far.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// How the child ended, if PID 1 has seen it end.
    pub fn exit(&self) -> Option<&LoaderExit> {
        self.exit.as_ref()
    }

    /// Runs `sup` until it decides: reads events as they come, reaps the
    /// child when its pipe closes, wakes up at the supervisor's deadlines.
    /// Single-threaded; blocks only in `poll` and in `waitpid` for a child
    /// whose pipe has closed (it is exiting). `Err` is [`Verdict::Fatal`]'s
    /// message and hints.
    pub fn supervise(&mut self, sup: &mut Supervisor) -> Result<Handover, (String, Vec<String>)> {
        self.supervise_with(sup, None, || {})
    }

    /// As [`LoaderChild::supervise`], calling `after_events` each time
    /// events came in, or `wake` became readable (PID 1 watches for the
    /// root device meanwhile; `after_events` must drain `wake`).
    pub fn supervise_with(
        &mut self,
        sup: &mut Supervisor,
        wake: Option<BorrowedFd<'_>>,
        mut after_events: impl FnMut(),
    ) -> Result<Handover, (String, Vec<String>)> {
        loop {
            let now = boottime();
            let until = match sup.verdict(now) {
                Verdict::Wait { until } => until,
                Verdict::Proceed(h) => return Ok(h),
                Verdict::Fatal { message, hints } => return Err((message, hints)),
            };
            let wait = until.map_or(MAX_POLL, |u| {
                Duration::from_secs_f64((u - now).max(0.0)).min(MAX_POLL)
            });
            if self.pump(sup, wait, wake) {
                after_events();
            }
        }
    }

    /// Waits up to `wait` for bytes from the child and feeds them to `sup`;
    /// true if events came or `wake` is readable.
    fn pump(&mut self, sup: &mut Supervisor, wait: Duration, wake: Option<BorrowedFd<'_>>) -> bool {
        let Some(events) = self.events.as_mut() else {
            // The pipe is closed: only the clock can change the verdict.
            std::thread::sleep(wait);
            return false;
        };
        let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = vec![PollFd::new(events.as_fd(), PollFlags::POLLIN)];
        fds.extend(wake.map(|w| PollFd::new(w, PollFlags::POLLIN)));
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return false,
            Ok(_) => {}
            Err(e) => {
                log::error!("poll on the loader's pipe: {e}");
                std::thread::sleep(wait);
                return false;
            }
        }
        let ready =
            |fd: Option<&PollFd<'_>>| fd.and_then(PollFd::revents).is_some_and(|r| !r.is_empty());
        let woken = ready(fds.get(1));
        if !ready(fds.first()) {
            return woken;
        }
        drop(fds);
        let mut buf = [0u8; 64 * 1024];
        match events.read(&mut buf) {
            Ok(0) => {
                // Every write end is closed: the child ended or is ending.
                self.events = None;
                if !sup.has_exited() {
                    self.reap(sup, true);
                }
                woken
            }
            Ok(n) => {
                for e in self.reader.feed(&buf[..n]) {
                    match e {
                        Ok(LoaderEvent::Step { step, t }) => self.steps.push(Step {
                            process: "loader".to_owned(),
                            step,
                            t,
                        }),
                        Ok(e) => sup.event(e),
                        Err(why) => sup.garbled(&why),
                    }
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => woken,
            Err(e) => {
                log::error!("reading the loader's pipe: {e}");
                self.events = None;
                woken
            }
        }
    }

    /// Collects the child's exit status (blocking only if `block`) and
    /// tells `sup`.
    fn reap(&mut self, sup: &mut Supervisor, block: bool) {
        let flags = (!block).then_some(WaitPidFlag::WNOHANG);
        let exit = match waitpid(self.pid, flags) {
            Ok(WaitStatus::Exited(_, code)) => LoaderExit::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => LoaderExit::Signaled(sig.as_str().to_owned()),
            Ok(_) => return,
            // Not our child: the reporter after the handover (the loader's
            // parent is PID 1, which is the real init by then).
            Err(nix::errno::Errno::ECHILD) => LoaderExit::Unknown,
            Err(e) => {
                log::error!("waitpid on the loader (pid {}): {e}", self.pid);
                LoaderExit::Unknown
            }
        };
        log::debug!("loader (pid {}) ended: {exit:?}", self.pid);
        sup.exited(exit.clone());
        self.exit = Some(exit);
    }

    /// Collects the exit status if the child has ended (no blocking).
    /// Takes the events already in the pipe, without waiting (1 ms poll):
    /// what the loader said after PID 1 stopped supervising, such as its
    /// module lock or late extends, when it may have ended since.
    pub fn drain_ready(&mut self, sup: &mut Supervisor) {
        while self.events.is_some() && self.pump(sup, Duration::from_millis(1), None) {}
    }

    pub fn try_reap(&mut self, sup: &mut Supervisor) {
        if self.exit.is_none() {
            self.reap(sup, false);
        }
    }

    /// Hands the unfinished load over, just before PID 1 execs: forks a
    /// reporter, a copy of PID 1 holding `report` (as PID 1 last wrote it,
    /// with modules `pending`) and `sup`, which waits for the loader's end,
    /// settles the pending modules and rewrites `report_path` (atomically),
    /// then exits. The real init inherits it. Does nothing when the load is
    /// complete. A failed fork is logged: the report keeps `pending`.
    ///
    /// With `serving` (the loader serves the kernel's module requests after
    /// the handover, [`crate::helper`]) the reporter is started even if the
    /// load is complete, and stays until the loader ends: each module a
    /// request brings in is added to the report (reason `kernel
    /// request:NAME`) as soon as it is decided.
    pub fn hand_over(
        &mut self,
        mut sup: Supervisor,
        report: &Report,
        report_path: &Path,
        serving: bool,
    ) {
        let pending = report
            .loader
            .as_ref()
            .is_some_and(|l| l.pending_at_handover > 0);
        if !pending && !serving {
            return;
        }
        if sup.is_fatal() {
            // The loader stopped before its plan (it puts the kernel's
            // helper back itself) and PID 1 has explained why: a reporter
            // would only log the same failure again.
            return;
        }
        // PID 1 is single-threaded (as `process::fork` needs); so is the
        // reporter.
        let forked = process::fork(|| {
            sup.to_the_end();
            match self.supervise(&mut sup) {
                Ok(end) => {
                    // No reaping here: the loader is PID 1's child, so its
                    // exit status goes to the real init.
                    let mut last = report.clone();
                    settle(&mut last, end, self.exit.as_ref());
                    take_measure_and_lock(&mut last, &sup);
                    let mut code = write_late(&last, report_path);
                    // The loader serves requests: whatever they add goes
                    // into the report until the loader ends.
                    while self.events.is_some() {
                        self.pump(&mut sup, MAX_POLL, None);
                        if let Verdict::Proceed(end) = sup.verdict(boottime()) {
                            let mut next = report.clone();
                            settle(&mut next, end, self.exit.as_ref());
                            take_measure_and_lock(&mut next, &sup);
                            if next.load != last.load
                                || next.measure != last.measure
                                || next.modules_locked != last.modules_locked
                            {
                                code = write_late(&next, report_path);
                                last = next;
                            }
                        }
                    }
                    code
                }
                Err((message, _)) => {
                    log::error!("loader after the handover: {message}");
                    1
                }
            }
        });
        match forked {
            Ok(child) => {
                log::debug!("reporter (pid {child}) settles the report when the loader is done");
            }
            Err(e) => log::error!(
                "cannot start the reporter: {e}; {} keeps pending modules",
                report_path.display()
            ),
        }
    }
}

/// What the supervisor has heard of measuring and locking, into `report`
/// (the loader may extend and lock after the handover).
fn take_measure_and_lock(report: &mut Report, sup: &Supervisor) {
    report.measure = sup.measure().cloned().or(report.measure.take());
    report.modules_locked = sup
        .modules_locked()
        .cloned()
        .or(report.modules_locked.take());
}

/// Writes the reporter's report (atomically); the exit code to end with.
fn write_late(report: &Report, path: &Path) -> i32 {
    match report.write(path) {
        Ok(()) => {
            log::info!("loader after the handover: {} updated", path.display());
            0
        }
        Err(e) => {
            log::error!("cannot update {}: {e}", path.display());
            1
        }
    }
}

/// The report PID 1 wrote at the handover, with the load as it ended.
fn settle(report: &mut Report, end: Handover, exit: Option<&LoaderExit>) {
    let Some(mut load) = end.load else { return };
    if let Some(before) = &report.load {
        // The boot's decision stays PID 1's.
        load.failed_required_chains = before.failed_required_chains.clone();
        crate::report::keep_warnings(&mut load, before);
    }
    report.boottime_load_end = load.boottime_load_end;
    report.load = Some(load);
    report.notes.extend(end.notes);
    let info = report.loader.get_or_insert_with(Default::default);
    info.vm_hwm_kib = end.loader_vm_hwm_kib.or(info.vm_hwm_kib);
    info.exit = exit.map(LoaderExit::to_string).or(info.exit.take());
    info.boottime_late_update = Some(boottime());
}

/// Reaps every exited child of PID 1 that is not the loader (none are
/// expected during the boot; PID 1 reaps whatever it has).
pub fn reap_strays(loader: Option<i32>) {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        match status.pid() {
            None => break,
            Some(p) if Some(p.as_raw()) == loader => {
                log::debug!("loader (pid {p}) reaped late: {status:?}");
            }
            Some(p) => log::debug!("reaped pid {p}: {status:?}"),
        }
    }
}

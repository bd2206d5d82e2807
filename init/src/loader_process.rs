//! The loader child process: everything that can hang (a module init that
//! never returns) or panic (a loader bug) runs here, never in PID 1.
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
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use modules_manifest::{DepIndex, KernelCmdline, Manifest, PlanInput};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::boot::{self, BootError};
use crate::clock::boottime;
use crate::coldplug;
use crate::helper::channel::{run_server, ServerState};
use crate::helper::install::Restorer;
use crate::helper::request::Outcome;
use crate::kernel::{Kernel, RealKernel};
use crate::loader::{self, LoadObserver, LoaderOptions, NodeOutcome};
use crate::loader_events::{
    encode, EventReader, LoadSummary, LoaderEvent, PlannedChain, PlannedModule,
};
use crate::open_world::{Inputs, OpenWorld};
use crate::report::{Report, Step};
use crate::supervise::{Handover, LoaderExit, Supervisor, Verdict};

/// The longest PID 1 sleeps in `poll` without looking at the clock and the
/// child again (a child that dies closes its pipe, which wakes PID 1 at
/// once; this only bounds a wait whose deadline was computed late).
const MAX_POLL: Duration = Duration::from_secs(1);

/// What the child needs from PID 1 at the fork: the command line it has
/// read and the manifest's path (the manifest itself, the width of the
/// pool and the deadline come with [`LoaderChild::go`]).
#[derive(Debug, Clone, Copy)]
pub struct LoadInput<'a> {
    /// The manifest PID 1 reads and validates meanwhile; the child reads
    /// it again after [`LoaderChild::go`].
    pub manifest_path: &'a Path,
    pub cmdline: &'a KernelCmdline,
    /// `/proc` (the loaded modules, the kernel release).
    pub proc_dir: &'a Path,
    /// `/` of the initramfs (holds `lib/modules`).
    pub root: &'a Path,
    /// `/sys` (coldplug walks its `devices`).
    pub sys_dir: &'a Path,
    /// The kernel's module requests, served by the loader while it lives
    /// (`None`: the helper is not installed).
    pub helper: Option<HelperInput<'a>>,
}

/// What the loader needs to serve the kernel's module requests
/// ([`crate::helper`]).
#[derive(Debug, Clone, Copy)]
pub struct HelperInput<'a> {
    /// The request socket PID 1 bound (inherited across the fork).
    pub listener: &'a std::os::unix::net::UnixListener,
    /// The kernel's own `/proc/sys/kernel/modprobe`, to put back.
    pub kernel_value: &'a str,
    /// `/run/kmodinit`.
    pub run_dir: &'a Path,
    /// How long to go on serving after the load and the last request.
    pub linger: Duration,
}

/// The loader's diagnostic knobs, for benchmarks that compare its policies
/// (not settings a user needs): the kernel hands command-line words like
/// `KMODINIT_POOL=fixed` that it does not know to `/init` as environment
/// variables, and the child inherits PID 1's environment.
/// `KMODINIT_POOL=fixed` ([`loader::PoolMode::Fixed`]),
/// `KMODINIT_ORDER=unit` ([`loader::Order::Unit`]).
fn diagnostic_options() -> LoaderOptions {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    LoaderOptions {
        pool: match var("KMODINIT_POOL").as_str() {
            "fixed" => loader::PoolMode::Fixed,
            _ => loader::PoolMode::Adaptive,
        },
        order: match var("KMODINIT_ORDER").as_str() {
            "unit" => loader::Order::Unit,
            _ => loader::Order::CostAware,
        },
        ..LoaderOptions::default()
    }
}

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

/// PID 1's go: the pool width and the deadline, 16 bytes.
const GO_LEN: usize = 16;

impl LoaderChild {
    /// Forks the loader child, which runs [`child_main`] with `input` and
    /// `wrap` (the kernel the child inserts with: [`RealKernel`], or a
    /// fault-injecting decorator in the test build) and never returns.
    pub fn spawn<K: Kernel + Send + 'static>(
        input: LoadInput<'_>,
        wrap: impl FnOnce(RealKernel) -> K,
    ) -> std::io::Result<LoaderChild> {
        let (events_rx, events_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let (go_rx, go_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: PID 1 is single-threaded here (it never starts a thread),
        // so the child's copy of the address space holds no lock another
        // thread owned; the child runs ordinary Rust and ends in `_exit`.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                drop(events_rx);
                drop(go_tx);
                let code = child_main(input, wrap, events_tx, go_rx);
                // SAFETY: `_exit` ends the child without running PID 1's
                // atexit handlers or flushing its copies of PID 1's buffers.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => Ok(LoaderChild {
                pid: child,
                events: Some(File::from(events_rx)),
                reader: EventReader::default(),
                exit: None,
                steps: Vec::new(),
                go: Some(File::from(go_tx)),
            }),
        }
    }

    /// Tells the child to plan and load: the manifest is valid, the pool is
    /// `jobs` wide, optional work stops at `deadline`. An error means the
    /// child is gone (supervising it says how it ended).
    pub fn go(&mut self, jobs: usize, deadline: Duration) -> std::io::Result<()> {
        match self.go.take() {
            Some(mut f) => f.write_all(&encode_go(jobs, deadline)),
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
        // SAFETY: PID 1 is single-threaded (as in `spawn`); the reporter is
        // single-threaded too and ends in `_exit`.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                sup.to_the_end();
                let code = match self.supervise(&mut sup) {
                    Ok(end) => {
                        // No reaping here: the loader is PID 1's child, so
                        // its exit status goes to the real init.
                        let mut last = report.clone();
                        settle(&mut last, end, self.exit.as_ref());
                        let mut code = write_late(&last, report_path);
                        // The loader serves requests: whatever they add
                        // goes into the report until the loader ends.
                        while self.events.is_some() {
                            self.pump(&mut sup, MAX_POLL, None);
                            if let Verdict::Proceed(end) = sup.verdict(boottime()) {
                                let mut next = report.clone();
                                settle(&mut next, end, self.exit.as_ref());
                                if next.load != last.load {
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
                };
                // SAFETY: ends the reporter without running PID 1's exit
                // path.
                unsafe { libc::_exit(code) }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                log::debug!("reporter (pid {child}) settles the report when the loader is done");
            }
            Err(e) => log::error!(
                "cannot start the reporter: {e}; {} keeps pending modules",
                report_path.display()
            ),
        }
    }
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

/// The event writer the child shares with its panic hook.
type Events = Arc<Mutex<File>>;

fn send(events: &Events, e: &LoaderEvent) {
    let line = encode(e);
    let mut f = events.lock().unwrap_or_else(PoisonError::into_inner);
    // PID 1 gone (after exec it no longer reads): the write fails with
    // EPIPE (SIGPIPE is ignored), and nobody is left to tell.
    let _ = f.write_all(&line);
}

/// The child's pipe to PID 1, for [`stamp`] (set once, in the child).
static STEPS: std::sync::OnceLock<Events> = std::sync::OnceLock::new();

/// In the child: tells PID 1 that `step` ended now (the report's `steps`).
fn stamp(step: &str) {
    if let Some(events) = STEPS.get() {
        send(
            events,
            &LoaderEvent::Step {
                step: step.to_owned(),
                t: boottime(),
            },
        );
    }
}

/// Streams the loader's progress to PID 1.
struct Streamer<'e> {
    events: &'e Events,
}

impl LoadObserver for Streamer<'_> {
    fn started(&mut self, id: usize, t: f64) {
        send(self.events, &LoaderEvent::Started { id, t });
    }
    fn finished(&mut self, outcome: &NodeOutcome) {
        send(self.events, &LoaderEvent::Finished(outcome.clone()));
    }
}

/// The child: plan, open the files, load, report. Returns the exit code.
fn child_main<K: Kernel + Send + 'static>(
    input: LoadInput<'_>,
    wrap: impl FnOnce(RealKernel) -> K,
    events: OwnedFd,
    go: OwnedFd,
) -> i32 {
    let events: Events = Arc::new(Mutex::new(File::from(events)));
    install_child_panic_hook(&events);
    let _ = STEPS.set(Arc::clone(&events));
    stamp("start");

    // Requests that come before the index is read wait in the socket's
    // backlog. The restorer's descriptors reach /proc and /run after the
    // handover, when they are no longer at their paths in our root.
    let restorer = input.helper.and_then(|h| {
        Restorer::open(input.proc_dir, h.run_dir, h.kernel_value.to_owned())
            .map_err(|e| log::error!("loader: cannot serve kernel module requests: {e}"))
            .ok()
    });
    // While PID 1 parses the manifest.
    let read = read_index(&input);
    let Some((jobs, deadline)) = wait_for_go(go) else {
        // PID 1 loads nothing (or is gone): neither do we.
        if let Some(r) = &restorer {
            r.restore();
        }
        return 0;
    };
    let planned = read.and_then(|(modules_dir, index, loaded)| {
        let manifest = read_manifest_again(input.manifest_path)?;
        let plan = make_plan(&input, &manifest, &modules_dir, &index, &loaded)?;
        Ok((plan, modules_dir, index, loaded, manifest))
    });
    let (plan, modules_dir, index, loaded, manifest) = match planned {
        Ok(p) => {
            stamp("plan");
            p
        }
        Err((message, hints)) => {
            send(&events, &LoaderEvent::Fatal { message, hints });
            if let Some(r) = &restorer {
                r.restore();
            }
            return 1;
        }
    };
    let mut kernel = RealKernel::new();
    let files = open_ahead_list(&plan, &index, &modules_dir);
    let opened = kernel.open_ahead(files.iter().map(std::path::PathBuf::as_path));
    log::debug!("loader: {opened} module file(s) open");
    stamp("open_ahead");

    let opts = LoaderOptions {
        modules_dir,
        jobs,
        ..diagnostic_options()
    };
    let sink_events = Arc::clone(&events);
    let world = OpenWorld::new(
        Box::new(wrap(kernel)),
        Inputs {
            index,
            manifest: manifest.clone(),
            cmdline: input.cmdline.clone(),
            loaded,
            opts: opts.clone(),
        },
        Box::new(move |e| send(&sink_events, e)),
    );
    world.register_boot_plan(&plan);
    let load_start = boottime();
    send(&events, &planned_event(&plan, load_start));

    let coldplug = coldplug::Settings::of(&manifest, input.cmdline);
    let until = load_start + deadline.as_secs_f64();
    let server = ServerState::default();
    let load = std::thread::scope(|scope| {
        if let (Some(h), Some(r)) = (input.helper, restorer.as_ref()) {
            let (w, server) = (world.clone(), &server);
            let spawned = std::thread::Builder::new()
                .name("helper-server".into())
                .spawn_scoped(scope, move || {
                    run_server(h.listener, server, r.kernel_value(), |name| {
                        serve_request(&w, name)
                    });
                });
            if let Err(e) = spawned {
                log::error!("loader: cannot serve kernel module requests: {e}");
            }
        }
        let main = scope.spawn(|| {
            loader::load_observed(
                &plan,
                world.kernel(),
                &opts,
                &mut Streamer { events: &events },
            )
        });
        if coldplug.enabled {
            coldplug::run(scope, &world, &coldplug, input.sys_dir, until, &|| {
                main.is_finished()
            });
        }
        let load = main.join();
        if let Ok(load) = &load {
            // PID 1 waits for `done`: it goes first, the log line after.
            send(
                &events,
                &LoaderEvent::Done(LoadSummary::of(load, Report::read_vm_hwm_kib())),
            );
            log::info!(
                "loaded {} module(s) in {} s with {} worker(s) (critical path {} s)",
                load.modules.len(),
                crate::clock::Fixed(load.wall_s, 3),
                load.jobs,
                crate::clock::Fixed(load.critical_path_s, 3)
            );
        }
        if let (Some(h), Some(r)) = (input.helper, &restorer) {
            // Serve on while requests come (the real init's first mounts:
            // a filesystem whose module only the image has); then the
            // kernel gets its own helper back before we go.
            linger_while_requested(&server, h.linger);
            r.restore();
            log::info!(
                "stopped serving the kernel's module requests ({} served); its helper is {:?} again",
                server.served.load(std::sync::atomic::Ordering::Acquire),
                r.kernel_value()
            );
        }
        server
            .stop
            .store(true, std::sync::atomic::Ordering::Release);
        // Nothing new from here on; the scope joins the sessions that run.
        world.close();
        load
    });
    match load {
        Ok(_) => 0,
        // The panic hook has told PID 1 and ended the process already.
        Err(_) => 101,
    }
}

/// How often the lingering loader looks whether requests came.
const LINGER_POLL: Duration = Duration::from_millis(200);

/// Returns once no request is in flight and none came for `linger`.
fn linger_while_requested(server: &ServerState, linger: Duration) {
    use std::sync::atomic::Ordering;
    let mut seen = server.served.load(Ordering::Acquire);
    let mut quiet_since = std::time::Instant::now();
    loop {
        let served = server.served.load(Ordering::Acquire);
        if served != seen || server.busy.load(Ordering::Acquire) > 0 {
            seen = served;
            quiet_since = std::time::Instant::now();
        } else if quiet_since.elapsed() >= linger {
            return;
        }
        std::thread::sleep(LINGER_POLL.min(linger.max(Duration::from_millis(1))));
    }
}

/// One kernel request, served through the open world (reason `kernel
/// request:NAME` on the modules it brings in), logged.
fn serve_request(world: &OpenWorld, name: &str) -> Outcome {
    let reason = crate::helper::request::chain_name(name);
    let outcome = crate::helper::request::serve(world, name);
    match &outcome {
        Outcome::Loaded => log::info!("{reason}: loaded"),
        Outcome::Failed(why) => log::warn!("{reason}: {why}"),
        Outcome::NotFound => log::info!("{reason}: not in the image"),
    }
    outcome
}

/// The most module files the child opens ahead. PID 1 (and so the child)
/// starts with the kernel's default of 1,024 descriptors; this leaves room
/// for the pool, the pipe and the uevent socket.
pub const MAX_OPEN_AHEAD: usize = 768;

/// The module files to open before the load: the plan's, then the image's
/// other modules (coldplug and the kernel's requests may need any of them
/// after switch_root has unlinked the initramfs), at most
/// [`MAX_OPEN_AHEAD`] in all; the rest are opened when inserted.
fn open_ahead_list(
    plan: &modules_manifest::Plan,
    index: &DepIndex,
    modules_dir: &Path,
) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = plan
        .nodes
        .iter()
        .filter_map(|n| match &n.action {
            modules_manifest::Action::Insert { path, .. } => Some(modules_dir.join(path)),
            _ => None,
        })
        .collect();
    let planned: BTreeSet<&str> = plan.module_files().collect();
    let mut others: Vec<&str> = index
        .modules
        .values()
        .map(|m| m.path.as_str())
        .filter(|p| !planned.contains(p))
        .collect();
    others.sort_unstable();
    let room = MAX_OPEN_AHEAD.saturating_sub(files.len());
    files.extend(others.into_iter().take(room).map(|p| modules_dir.join(p)));
    files
}

/// A failure that leaves nothing to plan: the `fatal` event's message and
/// hints.
type Fatal = (String, Vec<String>);

fn fatal(e: &BootError) -> Fatal {
    (e.to_string(), e.hints())
}

/// Index and loaded set, read before PID 1's go.
fn read_index(
    input: &LoadInput<'_>,
) -> Result<
    (
        std::path::PathBuf,
        DepIndex,
        BTreeSet<modules_manifest::ModuleName>,
    ),
    Fatal,
> {
    let modules_dir = boot::modules_dir(input.root, input.proc_dir)
        .map_err(|e| fatal(&BootError::KernelRelease(e)))?;
    let index = DepIndex::load(&modules_dir).map_err(|source| {
        fatal(&BootError::Index {
            dir: modules_dir.clone(),
            source,
        })
    })?;
    stamp("index");
    let loaded = std::fs::read_to_string(input.proc_dir.join("modules"))
        .map(|t| boot::parse_proc_modules(&t))
        .unwrap_or_else(|_| BTreeSet::new());
    Ok((modules_dir, index, loaded))
}

/// Waits for PID 1's go: the pool width and the deadline; `None` if PID 1
/// closed the pipe instead (stop, or PID 1 exec'd a rescue shell).
fn wait_for_go(go: OwnedFd) -> Option<(usize, Duration)> {
    let mut msg = [0u8; GO_LEN];
    File::from(go).read_exact(&mut msg).ok()?;
    Some(decode_go(&msg))
}

/// PID 1's go message: `jobs`, then the deadline in ms, little-endian.
fn encode_go(jobs: usize, deadline: Duration) -> [u8; GO_LEN] {
    let mut msg = [0u8; GO_LEN];
    msg[..8].copy_from_slice(&u64::try_from(jobs).unwrap_or(u64::MAX).to_le_bytes());
    let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
    msg[8..].copy_from_slice(&ms.to_le_bytes());
    msg
}

fn decode_go(msg: &[u8; GO_LEN]) -> (usize, Duration) {
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(msg.get(r).unwrap_or(&[0; 8]));
        u64::from_le_bytes(b)
    };
    let jobs = usize::try_from(word(0..8)).unwrap_or(usize::MAX);
    (jobs, Duration::from_millis(word(8..16)))
}

/// The manifest PID 1 has read and validated, read again by the child.
fn read_manifest_again(path: &Path) -> Result<Manifest, Fatal> {
    match boot::read_manifest(path) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err((
            format!(
                "the manifest {} was removed during the boot",
                path.display()
            ),
            Vec::new(),
        )),
        Err(e) => Err(fatal(&e)),
    }
}

/// The plan: only what leaves nothing to plan stops the boot (the child
/// says so with `fatal`); a module that cannot be planned fails alone
/// (`plan_at_boot`).
fn make_plan(
    input: &LoadInput<'_>,
    manifest: &Manifest,
    modules_dir: &Path,
    index: &DepIndex,
    loaded: &BTreeSet<modules_manifest::ModuleName>,
) -> Result<modules_manifest::Plan, Fatal> {
    let mut plan = modules_manifest::plan_at_boot(PlanInput {
        manifest,
        index,
        cmdline: input.cmdline,
        loaded,
    })
    .map_err(|e| fatal(&BootError::Plan(e)))?;
    warn_unknown_cmdline_params(&mut plan, input.cmdline, modules_dir);
    for note in &plan.notes {
        log::info!("plan: {note}");
    }
    Ok(plan)
}

/// The largest `modules.params` read, in bytes (the image builder writes
/// one short line per module).
const MAX_PARAMS_FILE_BYTES: u64 = 4 << 20;

/// A command-line `name.param=value` whose module does not declare
/// `param` (per the image's `modules.params`, written by the image builder
/// from each module's `.modinfo`) is a warning in the log and on the
/// module's report entry; it is still passed on (the kernel ignores an
/// unknown parameter itself, and a stale list must not drop a real one).
/// An image without the file is not checked.
fn warn_unknown_cmdline_params(
    plan: &mut modules_manifest::Plan,
    cmdline: &KernelCmdline,
    modules_dir: &Path,
) {
    use modules_manifest::modinfo;
    if cmdline.module_params.is_empty() {
        return;
    }
    let mut text = String::new();
    let read = File::open(modules_dir.join(modinfo::PARAMS_FILE))
        .and_then(|f| f.take(MAX_PARAMS_FILE_BYTES).read_to_string(&mut text));
    if read.is_err() {
        return;
    }
    let known = modinfo::parse_params_file(&text);
    for node in &mut plan.nodes {
        let (Some(given), Some(declared)) =
            (cmdline.module_params.get(&node.name), known.get(&node.name))
        else {
            continue;
        };
        for p in modinfo::unknown_params(&given.join(" "), declared) {
            let list: Vec<&str> = declared.iter().map(String::as_str).collect();
            let w = format!(
                "{name}.{p} on the kernel command line: {name} has no parameter {p} \
                 (its parameters: {}); the kernel will ignore it",
                if list.is_empty() {
                    "none".to_owned()
                } else {
                    list.join(", ")
                },
                name = node.name
            );
            log::warn!("kmodinit: {w}");
            node.warnings.push(w);
        }
    }
}

/// The `planned` event of `plan`, the load starting at `t`.
fn planned_event(plan: &modules_manifest::Plan, t: f64) -> LoaderEvent {
    let mut chains_of: Vec<Vec<String>> = vec![Vec::new(); plan.nodes.len()];
    for c in &plan.chains {
        for &id in &c.nodes {
            if let Some(list) = chains_of.get_mut(id) {
                if !list.contains(&c.name) {
                    list.push(c.name.clone());
                }
            }
        }
    }
    LoaderEvent::Planned {
        modules: plan
            .nodes
            .iter()
            .zip(chains_of)
            .map(|(n, chains)| {
                let (reason, alternative) = crate::report::plan_facts(n);
                PlannedModule {
                    name: n.name.clone(),
                    params: n.params.clone(),
                    chains,
                    required: n.required,
                    warnings: n.warnings.clone(),
                    reason,
                    alternative,
                }
            })
            .collect(),
        chains: plan
            .chains
            .iter()
            .map(|c| PlannedChain {
                name: c.name.clone(),
                required: c.required,
                nodes: c.nodes.clone(),
            })
            .collect(),
        notes: plan.notes.clone(),
        boottime_load_start: t,
    }
}

/// In the child: a panic is logged, told to PID 1 (`panicked`), and the
/// child ends at once with status 101, in every build (with `panic =
/// "abort"` it would abort right after the hook anyway; a build that
/// unwinds must not go on with a half-updated loader either).
fn install_child_panic_hook(events: &Events) {
    // Its own descriptor of the pipe: the panic may come from inside `send`,
    // with the lock held. A line this short is written in one piece, and
    // its leading newline ends whatever line it interrupts.
    let hook_pipe = events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .try_clone()
        .ok();
    std::panic::set_hook(Box::new(move |info| {
        let message = crate::failure::panic_text(info);
        crate::kmsg::announce(
            Path::new("/dev"),
            Path::new("/proc"),
            &format!("kmodinit: loader: panic in thread {message}\n"),
        );
        if let Some(mut f) = hook_pipe.as_ref() {
            let _ = f.write_all(&encode(&LoaderEvent::Panicked { message }));
        }
        // SAFETY: ends this process at once, as panic = "abort" would.
        unsafe { libc::_exit(101) }
    }));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_go_message_carries_the_width_and_the_deadline() {
        let d = Duration::from_millis(12_345);
        assert_eq!(decode_go(&encode_go(7, d)), (7, d));
        assert_eq!(
            decode_go(&encode_go(1, Duration::from_secs(3600))),
            (1, Duration::from_secs(3600))
        );
        // A stop is the pipe closing before 16 bytes came.
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        File::from(tx).write_all(&[1, 2, 3]).unwrap();
        assert_eq!(wait_for_go(rx), None);
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        File::from(tx).write_all(&encode_go(4, d)).unwrap();
        assert_eq!(wait_for_go(rx), Some((4, d)));
    }

    #[test]
    fn the_plans_files_open_first_then_the_images_others_up_to_the_cap() {
        let mut dep = String::from("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n");
        for i in 0..MAX_OPEN_AHEAD + 10 {
            dep.push_str(&format!("kernel/x{i:04}.ko:\n"));
        }
        let index = DepIndex::parse(&dep, "", "", "").unwrap();
        let manifest =
            Manifest::from_json(br#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#)
                .unwrap();
        let plan = modules_manifest::plan_at_boot(PlanInput {
            manifest: &manifest,
            index: &index,
            cmdline: &KernelCmdline::default(),
            loaded: &BTreeSet::new(),
        })
        .unwrap();
        let files = open_ahead_list(&plan, &index, Path::new("/m"));
        assert_eq!(files.len(), MAX_OPEN_AHEAD);
        assert_eq!(files[0], Path::new("/m/kernel/b.ko"));
        assert_eq!(files[1], Path::new("/m/kernel/a.ko"));
        assert_eq!(files[2], Path::new("/m/kernel/x0000.ko"));
        let distinct: BTreeSet<_> = files.iter().collect();
        assert_eq!(distinct.len(), files.len());
    }
}

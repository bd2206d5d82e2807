//! The boot sequence of DESIGN.md as steps that `main.rs` calls one by one
//! on a [`Boot`], and the error each step can end in ([`BootError`]).
//!
//! Every step that touches the machine does so through the [`Sys`] the
//! `Boot` holds, on the paths of its [`Paths`]: `main` passes
//! [`crate::sys::RealSys`] and [`Paths::system`], tests a
//! [`crate::sys::FakeSys`] and a temporary directory. Step 3 (the loader
//! child) is in `load.rs`, step 5 (switch_root or stay) in `root.rs`.

use std::io;
use std::path::{Path, PathBuf};

use modules_manifest::{KernelCmdline, Manifest, OnFailure};

use crate::clock;
use crate::kmsg::{self, DevkmsgRatelimit, Verbosity};
use crate::report::{Report, Step};
use crate::sys::Sys;
use config::BootConfig;
use failure::FailureAction;
use handover::InitCommand;
use loader_child::LoaderChild;
use mount::{MountOutcome, EARLY_MOUNTS};
use supervise::Supervisor;

pub mod config;
mod dm;
mod error;
pub mod failure;
mod firmware;
pub mod handover;
pub mod helper_install;
mod load;
pub mod loader_child;
pub mod mount;
mod root;
pub mod rootdev;
pub mod supervise;
pub mod switch_root;

pub use error::BootError;

/// Where the boot report goes (`/run` survives switch_root).
pub const REPORT_PATH: &str = "/run/kmodinit/report.json";

/// The places the boot reads and mounts: `/` and its API directories on the
/// machine, a temporary tree in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The initramfs root (`/`): early mounts go under it, it is emptied
    /// at switch_root.
    pub root: PathBuf,
    pub dev: PathBuf,
    pub proc: PathBuf,
    pub sys: PathBuf,
    /// The boot report, [`REPORT_PATH`].
    pub report: PathBuf,
    /// Where the real root is mounted before it becomes `/`
    /// ([`crate::pid1::switch_root::NEW_ROOT`]).
    pub new_root: PathBuf,
}

impl Paths {
    /// The running machine's.
    pub fn system() -> Paths {
        Paths::under(Path::new("/"))
    }

    /// The same layout under `root`.
    pub fn under(root: &Path) -> Paths {
        let at = |p: &str| root.join(p.trim_start_matches('/'));
        Paths {
            root: root.to_path_buf(),
            dev: at("/dev"),
            proc: at("/proc"),
            sys: at("/sys"),
            report: at(REPORT_PATH),
            new_root: at(crate::pid1::switch_root::NEW_ROOT),
        }
    }
}

/// What the boot carries from step to step, and what the failure path
/// needs whatever step failed. Single-threaded, as PID 1 is.
#[derive(Debug)]
pub struct Boot<S: Sys> {
    pub sys: S,
    pub paths: Paths,
    pub report: Report,
    report_written: bool,
    devkmsg: Option<DevkmsgRatelimit>,
    cmdline_on_failure: Option<OnFailure>,
    manifest_on_failure: Option<OnFailure>,
    /// The loader child, once started (it may outlive the handover), and
    /// the state machine over it (taken by the reporter at the handover).
    loader: Option<LoaderChild>,
    supervisor: Option<Supervisor>,
    /// The loader child between its fork ([`Boot::start_loader`]) and its
    /// go ([`Boot::load_modules`]) or stop ([`Boot::stop_loader`]); the
    /// fork's error, if it failed.
    early_loader: Option<io::Result<LoaderChild>>,
    /// What the loader child runs ([`Boot::start_loader`]'s `entry`).
    loader_entry: Option<crate::wire::fork::LoaderEntry>,
    /// The root device (and its mount) found while the modules loaded.
    early_root: root::EarlyRoot,
    /// The device-mapper devices the command line asks for (step 5a).
    dm: dm::DeviceMapper,
    /// The kernel's `/proc/sys/kernel/modprobe` while the helper is
    /// installed ([`crate::pid1::helper_install`]), to put back.
    helper_kernel_value: Option<String>,
    /// `lock_modules` is on: the loader locks module loading at its end.
    locks_modules: bool,
}

impl<S: Sys> Boot<S> {
    /// A boot that started at `boottime_init_start` (first line of main).
    pub fn new(sys: S, paths: Paths, boottime_init_start: f64) -> Boot<S> {
        Boot {
            sys,
            paths,
            report: Report {
                boottime_init_start,
                steps: vec![Step::init("start", boottime_init_start)],
                ..Report::default()
            },
            report_written: false,
            devkmsg: None,
            cmdline_on_failure: None,
            manifest_on_failure: None,
            loader: None,
            supervisor: None,
            early_loader: None,
            loader_entry: None,
            early_root: root::EarlyRoot::default(),
            dm: dm::DeviceMapper::default(),
            helper_kernel_value: None,
            locks_modules: false,
        }
    }

    /// Stamps the end of PID 1's step `name` in the report's timeline.
    pub fn step(&mut self, name: &str) {
        self.report.steps.push(Step::init(name, clock::boottime()));
    }

    /// Step 1: /proc, /sys, /dev, /run, then the logger (which needs /dev and
    /// /proc). Mount failures are logged, not fatal: the steps that need a
    /// missing mount fail with their own error.
    pub fn mount_early_filesystems(&mut self) {
        let (done, errors) = mount::mount_all(&self.paths.root, EARLY_MOUNTS, &self.sys);
        failure::ensure_stdio(&self.sys, &self.paths.dev);
        self.step("mounts");
        kmsg::init(
            &self.paths.dev,
            &self.paths.proc,
            Verbosity::from_cmdline(false, false),
        );
        self.step("logger");
        for d in done {
            if let MountOutcome::AlreadyMounted(p) = d {
                log::debug!("{} was already mounted", p.display());
            }
        }
        for e in errors {
            log::error!("early mount: {e}");
            self.report.errors.push(format!("early mount: {e}"));
        }
    }

    /// Step 2a: the kernel command line; sets verbosity and lifts the kmsg
    /// rate limit for the boot.
    pub fn read_cmdline(&mut self) -> KernelCmdline {
        let text = std::fs::read_to_string(self.paths.proc.join("cmdline")).unwrap_or_else(|e| {
            log::error!("cannot read /proc/cmdline ({e}): booting with an empty command line");
            String::new()
        });
        let cmdline = KernelCmdline::parse(&text);
        #[cfg(feature = "fault-injection")]
        let cmdline = crate::fault::accept_option(cmdline);
        kmsg::set_verbosity(Verbosity::from_cmdline(cmdline.quiet, cmdline.debug));
        let devkmsg = DevkmsgRatelimit::disable(&self.paths.proc, &text);
        log::info!(
            "kmodinit {} starting (pid 1){}",
            env!("CARGO_PKG_VERSION"),
            if devkmsg.changed() {
                "; /dev/kmsg rate limit off for the boot"
            } else {
                ""
            }
        );
        for w in &cmdline.warnings {
            log::warn!("command line: {w}");
            self.report.notes.push(format!("command line: {w}"));
        }
        self.devkmsg = Some(devkmsg);
        self.cmdline_on_failure = cmdline.on_failure;
        self.report.cmdline = text.trim_end().to_string();
        self.step("cmdline");
        cmdline
    }

    /// Step 2b: the manifest the command line points at
    /// (`kmodinit.manifest=`, else the default), if there is one.
    pub fn read_manifest(
        &mut self,
        cmdline: &KernelCmdline,
    ) -> Result<Option<Manifest>, BootError> {
        let path = crate::inputs::manifest_path(cmdline);
        let manifest =
            crate::inputs::read_manifest(Path::new(path)).map_err(BootError::Manifest)?;
        match &manifest {
            Some(m) => {
                log::info!("manifest {path}: {} chain(s)", m.chains.len());
                self.report.manifest = Some(path.to_string());
                self.manifest_on_failure = m.on_failure;
            }
            None => {
                let note = format!("no manifest at {path}: booting with no modules");
                log::warn!("{note}");
                self.report.notes.push(note);
            }
        }
        self.step("manifest");
        Ok(manifest)
    }

    /// Step 2c: the boot settings, command line over manifest; from here a
    /// panic carries out their `on_failure`.
    pub fn configure(
        &mut self,
        cmdline: &KernelCmdline,
        manifest: Option<&Manifest>,
    ) -> Result<BootConfig, BootError> {
        let config = config::merge(cmdline, manifest).map_err(BootError::Config)?;
        failure::set_policy(config.on_failure);
        Ok(config)
    }

    /// Step 4, after the load: the report, unless the root is mounted
    /// already (it was while the modules loaded): then nothing can keep
    /// the boot from reaching exec (which writes it) or the failure path
    /// (which writes it too), and the write would only delay them. The
    /// panic hook gets it either way.
    pub fn report_after_load(&mut self) {
        if self.early_root.is_mounted() {
            failure::remember_report(&self.report);
        } else {
            self.write_report();
            self.step("report");
        }
    }

    /// The report (again before exec, with `boottime_exec`). A report that
    /// cannot be written is logged, not fatal.
    pub fn write_report(&mut self) {
        self.report.vm_hwm_kib = Report::read_vm_hwm_kib(&self.paths.proc);
        failure::remember_report(&self.report);
        match self.report.write(&self.paths.report) {
            Ok(()) => self.report_written = true,
            Err(e) => log::error!("cannot write {}: {e}", self.paths.report.display()),
        }
    }

    /// Step 4b: a required chain that failed stops the boot here, after the
    /// report says why.
    pub fn check_required_chains(&self) -> Result<(), BootError> {
        match self.report.load.as_ref() {
            Some(l) if !l.failed_required_chains.is_empty() => {
                Err(BootError::RequiredChains(l.failed_required_chains.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Step 6: final report, restore the kmsg rate limit, exec. Returns the
    /// error if exec fails.
    pub fn exec_init(&mut self, init: &InitCommand) -> BootError {
        log::info!("exec {} {:?}", init.path, &init.argv[1..]);
        let now = clock::boottime();
        self.report.boottime_exec = Some(now);
        self.report.steps.push(Step::init("exec", now));
        self.take_measure_and_lock();
        self.write_report();
        // The initramfs's cost where the booted system's user looks: the
        // kernel log, hence the journal (systemd reads no timestamp from a
        // non-systemd initrd).
        let cost = handover_line(self.report.boottime_init_start, &self.report.steps);
        kmsg::kmsg_write(&self.paths.dev, log::Level::Info, &cost);
        self.hand_over_the_load();
        loader_child::reap_strays(self.loader.as_ref().map(LoaderChild::pid));
        self.release_helper();
        if let Some(d) = self.devkmsg.as_mut() {
            d.restore(&self.paths.proc);
        }
        let source = self.sys.exec(init);
        // EIO from a verity root: the init's blocks failed verification.
        if source.raw_os_error() == Some(libc::EIO) {
            if let Some(e) = self.verity_failure(None, format!("executing {}", init.path), &source)
            {
                return e;
            }
        }
        BootError::Exec {
            path: init.path.clone(),
            source,
        }
    }

    /// What the loader said of its measuring and its lock since PID 1
    /// stopped supervising (it may have locked and ended since, with no
    /// reporter to come), into the report written before exec.
    fn take_measure_and_lock(&mut self) {
        if !self.locks_modules && self.report.measure.is_none() {
            return;
        }
        if let (Some(loader), Some(sup)) = (self.loader.as_mut(), self.supervisor.as_mut()) {
            loader.drain_ready(sup);
            self.report.measure = sup.measure().cloned().or(self.report.measure.take());
            self.report.modules_locked = sup
                .modules_locked()
                .cloned()
                .or(self.report.modules_locked.take());
        }
    }

    /// After PID 1's last report: a load still running gets a reporter that
    /// settles its pending modules in the report when it ends.
    fn hand_over_the_load(&mut self) {
        // A loader that lives on may still extend or lock module loading:
        // the report records those too.
        let serving = (self.helper_kernel_value.is_some()
            || self.report.measure.is_some()
            || self.locks_modules)
            && self.loader_alive();
        if let (Some(loader), Some(sup)) = (self.loader.as_mut(), self.supervisor.take()) {
            loader.hand_over(sup, &self.report, &self.paths.report, serving);
        }
    }

    /// True if the loader child still runs (it may serve the kernel's
    /// module requests).
    fn loader_alive(&self) -> bool {
        self.loader.as_ref().is_some_and(|l| {
            l.exit().is_none()
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(l.pid()), None).is_ok()
        })
    }

    /// The run directory (`/run/kmodinit`): the report's, the helper's.
    pub fn run_dir(&self) -> PathBuf {
        self.paths
            .report
            .parent()
            .map_or_else(|| self.paths.root.join("run/kmodinit"), Path::to_path_buf)
    }

    /// Before exec: if the loader no longer runs, nothing serves the
    /// kernel's requests through the helper any more, so the kernel gets
    /// its own value back. A loader still running keeps serving, and puts
    /// the value back itself when it stops (init/PID1.md).
    pub fn release_helper(&mut self) {
        let Some(value) = self.helper_kernel_value.take() else {
            return;
        };
        if self.loader_alive() {
            log::info!("the loader serves the kernel's module requests after the handover");
            return;
        }
        crate::pid1::helper_install::restore(&self.sys, &self.paths.proc, &self.run_dir(), &value);
    }

    /// The failure path: explain on the console and the kernel log, record
    /// the error in the report, then carry out `on_failure`. Never returns
    /// (a panic while explaining goes to the panic hook, which carries out
    /// the policy).
    pub fn fail(&mut self, err: BootError) -> ! {
        let action = self.explain_failure(&err);
        self.release_helper();
        failure::carry_out(action, &self.sys, &self.paths)
    }

    /// Everything [`Boot::fail`] does before it carries out the action it
    /// returns.
    pub fn explain_failure(&mut self, err: &BootError) -> FailureAction {
        // A loader that has not planned yet loads nothing now.
        self.stop_loader();
        let action = failure::choose(
            self.cmdline_on_failure,
            self.manifest_on_failure,
            handover::is_executable(&self.paths.root, failure::RESCUE_SHELL),
        );
        self.report.errors.push(err.to_string());
        self.report.boottime_exec = None;
        self.write_report();
        self.hand_over_the_load();
        let report = self.paths.report.to_str().filter(|_| self.report_written);
        let text = failure::explain(&err.to_string(), &err.hints(), report, action);
        kmsg::announce(&self.paths.dev, &self.paths.proc, &text);
        if action == FailureAction::Rescue {
            if let Some(d) = self.devkmsg.as_mut() {
                d.restore(&self.paths.proc);
            }
        }
        action
    }
}

/// The one kernel-log line at the handover: `kmodinit: initramfs N ms: …`,
/// from PID 1's first step to exec, then each step's own time (since the
/// step before it) in ms.
pub fn handover_line(start: f64, steps: &[Step]) -> String {
    let ms = |s: f64| (s * 1000.0).round().max(0.0) as u64;
    let total = steps.last().map_or(0, |s| ms(s.t - start));
    let mut prev = start;
    let parts: Vec<String> = steps
        .iter()
        .filter(|s| s.process == "init" && s.step != "start")
        .map(|s| {
            let d = ms(s.t - prev);
            prev = s.t;
            format!("{} {d}", s.step)
        })
        .collect();
    format!(
        "kmodinit: initramfs {total} ms: {} (ms per step)",
        parts.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn the_kernel_gets_its_helper_back_when_no_loader_serves() {
        use crate::sys::{FakeSys, SysCall};
        let tmp = std::env::temp_dir().join(format!("kmodinit-release-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let paths = Paths::under(&tmp);
        std::fs::create_dir_all(paths.proc.join("sys/kernel")).unwrap_or_default();
        std::fs::create_dir_all(paths.proc.join("self")).unwrap_or_default();
        let sysctl = paths
            .proc
            .join(crate::pid1::helper_install::MODPROBE_SYSCTL);
        let sys = FakeSys::new().sysctl(&sysctl, "/sbin/modprobe\n");
        let mut b = Boot::new(sys, paths, 0.0);
        let run = b.run_dir();
        assert_eq!(run, tmp.join("run/kmodinit"));
        let inst = crate::pid1::helper_install::install(&b.sys, &b.paths.proc, &run, "/proc/7/exe");
        let inst = inst.unwrap_or_else(|e| panic!("{e}"));
        b.helper_kernel_value = Some(inst.kernel_value.clone());
        drop(inst);
        // No loader runs: PID 1 restores, once.
        b.release_helper();
        b.release_helper();
        let writes: Vec<String> = b
            .sys
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                SysCall::WriteSysctl { path, value } if path == sysctl => Some(value),
                _ => None,
            })
            .collect();
        assert_eq!(
            writes,
            ["/proc/7/exe".to_owned(), "/sbin/modprobe".to_owned()]
        );
        assert!(!run.join("helper.sock").exists());
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn totals_and_per_step_times() {
        let steps = [
            Step::init("mounts", 1.002),
            Step::init("load", 1.302),
            Step::init("exec", 1.4125),
        ];
        assert_eq!(
            handover_line(1.0, &steps),
            "kmodinit: initramfs 413 ms: mounts 2, load 300, exec 111 (ms per step)"
        );
        let with_start = [Step::init("start", 1.0), Step::init("exec", 1.25)];
        assert_eq!(
            handover_line(1.0, &with_start),
            "kmodinit: initramfs 250 ms: exec 250 (ms per step)"
        );
    }
}

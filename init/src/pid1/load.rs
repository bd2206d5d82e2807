//! Step 3: the loader child, forked early, plans and loads; PID 1 waits for
//! it as long as the deadlines allow (it may go on loading after the
//! handover). Forks, so
//! it is checked by the QEMU tests, not against the fake.

use std::os::fd::AsFd;

use modules_manifest::{KernelCmdline, Manifest};

use super::config::BootConfig;
use super::loader_child::LoaderChild;
use super::supervise::Supervisor;
use super::{Boot, BootError};
use crate::clock;
use crate::report::{LoaderInfo, ModuleState, Step};
use crate::sys::Sys;
use crate::wire::fork::{HelperInput, LoadInput, LoaderEntry};

impl<S: Sys> Boot<S> {
    /// Step 3a, right after the command line: if the manifest file exists,
    /// prepares the kernel's module helper (its socket bound before the
    /// fork: the child inherits it; PID 1 points the kernel at the loader's
    /// executable after its go, [`Boot::install_helper`]) and forks the
    /// loader child, which reads the module index while PID 1 reads the
    /// manifest. Without a manifest
    /// file nothing happens, as nothing will load. A failed fork is the
    /// boot's error only if the manifest turns out valid
    /// ([`Boot::load_modules`]). The child runs `entry` (the loader's,
    /// handed over by `main.rs`).
    pub fn start_loader(&mut self, cmdline: &KernelCmdline, entry: LoaderEntry) {
        self.loader_entry = Some(entry);
        let manifest_path = std::path::Path::new(crate::inputs::manifest_path(cmdline));
        if !manifest_path.exists() {
            return;
        }
        #[cfg(feature = "fault-injection")]
        self.arm_faults();
        let run_dir = self.run_dir();
        let helper = match super::helper_install::prepare(&self.sys, &self.paths.proc, &run_dir) {
            Ok(h) => {
                self.helper_kernel_value = Some(h.kernel_value.clone());
                Some(h)
            }
            Err(e) => {
                let note = format!("the kernel's module requests are not served: {e}");
                log::warn!("{note}");
                self.report.notes.push(note);
                None
            }
        };
        let input = LoadInput {
            manifest_path,
            cmdline,
            proc_dir: &self.paths.proc,
            root: &self.paths.root,
            helper: helper.as_ref().map(|h| HelperInput {
                listener: &h.listener,
                kernel_value: &h.kernel_value,
                run_dir: &run_dir,
                linger: cmdline.helper_linger_ms.map_or(
                    crate::wire::helper::DEFAULT_LINGER,
                    std::time::Duration::from_millis,
                ),
            }),
            sys_dir: &self.paths.sys,
        };
        let child = LoaderChild::spawn(input, entry);
        // The loader holds the socket now; PID 1's copy would keep it
        // open after the loader ends.
        drop(helper);
        self.early_loader = Some(child);
        self.step("fork");
    }

    /// After the go, while the child plans: points the kernel's
    /// `/proc/sys/kernel/modprobe` at the loader's executable,
    /// `/proc/PID/exe` ([`super::helper_install::activate`]). True if the
    /// kernel now runs the helper.
    fn install_helper(&mut self, loader_pid: i32) -> bool {
        if self.helper_kernel_value.is_none() {
            return false;
        }
        let helper = crate::wire::helper::helper_path(loader_pid);
        let installed = super::helper_install::activate(&self.sys, &self.paths.proc, &helper);
        self.step("helper");
        match installed {
            Ok(()) => {
                log::debug!("kernel module requests go to {helper}");
                true
            }
            Err(e) => {
                let note = format!("the kernel's module requests are not served: {e}");
                log::warn!("{note}");
                self.report.notes.push(note);
                false
            }
        }
    }

    /// The loader child forked by [`Boot::start_loader`] is not needed (no
    /// manifest, or the boot failed before the load): it is stopped before
    /// it plans, and reaped.
    pub fn stop_loader(&mut self) {
        if let Some(Ok(mut child)) = self.early_loader.take() {
            child.stop();
        }
    }

    /// Step 3: tells the loader child to plan and load `manifest` (the
    /// child reads the same file again) and supervises it until it is done
    /// or the deadlines say to go on without it.
    pub fn load_modules(
        &mut self,
        manifest: &Manifest,
        cmdline: &KernelCmdline,
        config: &BootConfig,
    ) -> Result<(), BootError> {
        #[cfg(feature = "fault-injection")]
        crate::fault::Faults::from_cmdline(&self.report.cmdline).boot_point("reading the manifest");
        if let (None, Some(entry)) = (&self.early_loader, self.loader_entry) {
            // The manifest appeared after the command line was read.
            self.start_loader(cmdline, entry);
        }
        let mut child = match self.early_loader.take() {
            Some(child) => child.map_err(BootError::SpawnLoader)?,
            None => {
                return Err(BootError::SpawnLoader(std::io::Error::other(
                    "the loader was not started",
                )))
            }
        };
        self.locks_modules = modules_manifest::measure::lock_modules(Some(manifest), cmdline);
        let spawned = clock::boottime();
        let firmware_watch = super::firmware::Watch::start(&self.paths.dev);
        if let Err(e) = child.go(config.jobs, config.deadline) {
            // The child is gone: supervising it says how it ended.
            log::error!("cannot tell the loader to start: {e}");
        }
        // While the child plans: PID 1 is idle until the load's events.
        let installed = self.install_helper(child.pid());
        // An error: the child is gone, as above.
        let _ = child.helper_installed(installed);
        let any_required = manifest.chains.iter().any(|c| c.required);
        let mut sup = Supervisor::new(
            config.deadline,
            config.required_timeout,
            spawned,
            any_required,
        );
        // Meanwhile, the root device: found and mounted as soon as its
        // driver and file system are loaded, beside the rest of the load.
        // The kernel's uevents wake PID 1 when a disk appears, which is
        // before its driver's init returns.
        let uevents = config
            .root
            .as_ref()
            .and_then(|_| crate::uevent::Socket::open().ok());
        let verdict = child.supervise_with(&mut sup, uevents.as_ref().map(|u| u.as_fd()), || {
            if let Some(u) = &uevents {
                u.drain();
            }
            if let Some(root) = &config.root {
                self.watch_root(root);
            }
        });
        drop(uevents);
        self.step("supervised");
        child.try_reap(&mut sup);
        self.report.steps.extend(child.steps().iter().cloned());
        self.report.loader = Some(LoaderInfo {
            pid: child.pid(),
            exit: child.exit().map(ToString::to_string),
            ..LoaderInfo::default()
        });
        self.report.measure = sup.measure().cloned();
        self.report.modules_locked = sup.modules_locked().cloned();
        self.loader = Some(child);
        self.supervisor = Some(sup);
        let handover = verdict.map_err(|(message, hints)| BootError::Loader { message, hints })?;
        for note in &handover.notes {
            self.report.notes.push(note.clone());
        }
        if let Some(info) = self.report.loader.as_mut() {
            info.vm_hwm_kib = handover.loader_vm_hwm_kib;
            info.pending_at_handover = handover.pending;
        }
        if let Some(load) = &handover.load {
            if handover.pending > 0 {
                let names: Vec<&str> = load
                    .modules
                    .iter()
                    .filter(|m| m.state == ModuleState::Pending)
                    .map(|m| m.name.as_str())
                    .collect();
                log::warn!(
                    "deadline of {} ms passed: {} module(s) still loading go on in the background: {}",
                    config.deadline.as_millis(),
                    names.len(),
                    names.join(" ")
                );
            }
            self.report.boottime_load_start = load.boottime_load_start;
            self.report.boottime_load_end = load.boottime_load_end;
            for (step, t) in [
                ("load_start", load.boottime_load_start),
                ("load_end", load.boottime_load_end),
            ] {
                self.report.steps.push(Step {
                    process: "loader".to_owned(),
                    step: step.to_owned(),
                    t,
                });
            }
        }
        self.report.load = handover.load;
        if let Some(watch) = firmware_watch {
            let dir = crate::inputs::modules_dir(&self.paths.root, &self.paths.proc).ok();
            watch.attribute(&mut self.report, dir.as_deref());
        }
        Ok(())
    }

    /// Test build only (`fault-injection`): the `kmodinit.fault=` faults of
    /// the command line, announced on the console and in the report
    /// (`panic-boot` panics in [`Boot::load_modules`], after the manifest).
    #[cfg(feature = "fault-injection")]
    fn arm_faults(&mut self) {
        let faults = crate::fault::Faults::from_cmdline(&self.report.cmdline);
        for w in &faults.warnings {
            log::warn!("command line: {w}");
            self.report.notes.push(format!("command line: {w}"));
        }
        if faults.armed() {
            let note = format!("test build: fault injection armed: {faults}");
            log::warn!("{note}");
            self.report.notes.push(note);
        }
    }
}

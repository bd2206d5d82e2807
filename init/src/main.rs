//! `/init`: the kernel runs it as PID 1 from the initramfs. The boot below
//! follows DESIGN.md's sequence, one call per step. On a host (not PID 1)
//! it refuses to touch the machine and offers `plan` and `--dry-run`.

use std::convert::Infallible;
use std::path::Path;
use std::process::ExitCode;

use kmodinit::blockdev::{self, BlockScanner, RealWaiter};
use kmodinit::boot::{self, BootError, REPORT_PATH};
use kmodinit::boot_config::{self, BootConfig};
use kmodinit::cli::{self, HostCommand};
use kmodinit::clock::{self, Fixed};
use kmodinit::failure::{self, FailureAction};
use kmodinit::handover::{self, InitCommand};
use kmodinit::kmsg::{self, DevkmsgRatelimit, Verbosity};
use kmodinit::loader_process::{self, LoadInput, LoaderChild};
use kmodinit::mount::{self, MountOutcome, RealMounter, EARLY_MOUNTS};
use kmodinit::report::{LoaderInfo, Report};
use kmodinit::supervise::Supervisor;
use kmodinit::switch_root::{self, MOVED_MOUNTS, NEW_ROOT};
use modules_manifest::{KernelCmdline, Manifest, OnFailure};

const DEV: &str = "/dev";
const PROC: &str = "/proc";

fn main() -> ExitCode {
    let boottime_init_start = clock::boottime();
    // args_os: std::env::args() would panic on a non-UTF-8 argument, before
    // any panic protection is in place.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if nix::unistd::getpid().as_raw() == 1 {
        pid1(boottime_init_start, args)
    }
    host(&args)
}

/// What the boot carries from step to step, and what the failure path
/// needs whatever step failed.
struct Boot {
    report: Report,
    report_written: bool,
    devkmsg: Option<DevkmsgRatelimit>,
    cmdline_on_failure: Option<OnFailure>,
    manifest_on_failure: Option<OnFailure>,
    /// The loader child, once started (it may outlive the handover), and
    /// the state machine over it (taken by the reporter at the handover).
    loader: Option<LoaderChild>,
    supervisor: Option<Supervisor>,
}

/// PID 1: single-threaded; the module loading runs in a child process. An
/// error goes to the failure policy, a panic too (through the panic hook,
/// which carries it out itself: release builds abort after it). Never
/// returns.
fn pid1(boottime_init_start: f64, kernel_args: Vec<String>) -> ! {
    failure::install_pid1_panic_hook(Path::new(DEV), Path::new(REPORT_PATH));
    let mut b = Boot {
        report: Report {
            boottime_init_start,
            ..Report::default()
        },
        report_written: false,
        devkmsg: None,
        cmdline_on_failure: None,
        manifest_on_failure: None,
        loader: None,
        supervisor: None,
    };
    let err = match boot(&mut b, &kernel_args) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    fail(&mut b, err)
}

/// The boot sequence. Returns only if a step failed: success is the exec.
fn boot(b: &mut Boot, kernel_args: &[String]) -> Result<Infallible, BootError> {
    mount_early_filesystems(b);

    let cmdline = read_cmdline(b);
    let manifest_path = boot_config::manifest_path(&cmdline).to_string();
    let manifest = read_manifest(b, &manifest_path)?;
    let config = boot_config::merge(&cmdline, manifest.as_ref()).map_err(BootError::Config)?;
    failure::set_policy(config.on_failure);

    if let Some(m) = &manifest {
        load_modules(b, m, &cmdline, &config)?;
    }
    write_report(b);
    if let Some(failed) = b
        .report
        .load
        .as_ref()
        .map(|l| l.failed_required_chains.clone())
    {
        if !failed.is_empty() {
            return Err(BootError::RequiredChains(failed));
        }
    }

    let init = match &config.root {
        Some(_) => switch_to_root(b, &config, kernel_args)?,
        None => init_in_initramfs(&config, kernel_args)?,
    };
    Err(exec_init(b, &init))
}

/// Step 1: /proc, /sys, /dev, /run, then the logger (which needs /dev and
/// /proc). Mount failures are logged, not fatal: the steps that need a
/// missing mount fail with their own error.
fn mount_early_filesystems(b: &mut Boot) {
    let (done, errors) = mount::mount_all(Path::new("/"), EARLY_MOUNTS, &RealMounter);
    failure::ensure_stdio(Path::new(DEV));
    kmsg::init(
        Path::new(DEV),
        Path::new(PROC),
        Verbosity::from_cmdline(false, false),
    );
    for d in done {
        if let MountOutcome::AlreadyMounted(p) = d {
            log::debug!("{} was already mounted", p.display());
        }
    }
    for e in errors {
        log::error!("early mount: {e}");
        b.report.errors.push(format!("early mount: {e}"));
    }
}

/// Step 2a: the kernel command line; sets verbosity and lifts the kmsg rate
/// limit for the boot.
fn read_cmdline(b: &mut Boot) -> KernelCmdline {
    let text = std::fs::read_to_string(Path::new(PROC).join("cmdline")).unwrap_or_else(|e| {
        log::error!("cannot read /proc/cmdline ({e}): booting with an empty command line");
        String::new()
    });
    let cmdline = KernelCmdline::parse(&text);
    #[cfg(feature = "fault-injection")]
    let cmdline = kmodinit::fault::accept_option(cmdline);
    kmsg::set_verbosity(Verbosity::from_cmdline(cmdline.quiet, cmdline.debug));
    let devkmsg = DevkmsgRatelimit::disable(Path::new(PROC), &text);
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
        b.report.notes.push(format!("command line: {w}"));
    }
    b.devkmsg = Some(devkmsg);
    b.cmdline_on_failure = cmdline.on_failure;
    b.report.cmdline = text.trim_end().to_string();
    cmdline
}

/// Step 2b: the manifest, if there is one.
fn read_manifest(b: &mut Boot, path: &str) -> Result<Option<Manifest>, BootError> {
    let manifest = boot::read_manifest(Path::new(path))?;
    match &manifest {
        Some(m) => {
            log::info!("manifest {path}: {} chain(s)", m.chains.len());
            b.report.manifest = Some(path.to_string());
            b.manifest_on_failure = m.on_failure;
        }
        None => {
            let note = format!("no manifest at {path}: booting with no modules");
            log::warn!("{note}");
            b.report.notes.push(note);
        }
    }
    Ok(manifest)
}

/// Step 3: the loader child plans and loads; PID 1 waits for it as long as
/// the deadlines allow (it may go on loading after the handover).
fn load_modules(
    b: &mut Boot,
    manifest: &Manifest,
    cmdline: &KernelCmdline,
    config: &BootConfig,
) -> Result<(), BootError> {
    #[cfg(feature = "fault-injection")]
    let faults = arm_faults(b);
    let input = LoadInput {
        manifest,
        cmdline,
        jobs: config.jobs,
        proc_dir: Path::new(PROC),
        root: Path::new("/"),
    };
    let spawned = clock::boottime();
    #[cfg(not(feature = "fault-injection"))]
    let child = LoaderChild::spawn(input, |k| k);
    #[cfg(feature = "fault-injection")]
    let child = LoaderChild::spawn(input, |k| faults.kernel(k));
    let mut child = child.map_err(BootError::SpawnLoader)?;
    let any_required = manifest.chains.iter().any(|c| c.required);
    let mut sup = Supervisor::new(
        config.deadline,
        config.required_timeout,
        spawned,
        any_required,
    );
    let verdict = child.supervise(&mut sup);
    child.try_reap(&mut sup);
    b.report.loader = Some(LoaderInfo {
        pid: child.pid(),
        exit: child.exit().map(loader_process::describe_exit),
        ..LoaderInfo::default()
    });
    b.loader = Some(child);
    b.supervisor = Some(sup);
    let handover = verdict.map_err(|(message, hints)| BootError::Loader { message, hints })?;
    for note in &handover.notes {
        b.report.notes.push(note.clone());
    }
    if let Some(info) = b.report.loader.as_mut() {
        info.vm_hwm_kib = handover.loader_vm_hwm_kib;
        info.pending_at_handover = handover.pending;
    }
    if let Some(load) = &handover.load {
        if handover.pending > 0 {
            let names: Vec<&str> = load
                .modules
                .iter()
                .filter(|m| m.state == kmodinit::report::ModuleState::Pending)
                .map(|m| m.name.as_str())
                .collect();
            log::warn!(
                "deadline of {} ms passed: {} module(s) still loading go on in the background: {}",
                config.deadline.as_millis(),
                names.len(),
                names.join(" ")
            );
        }
        b.report.boottime_load_start = load.boottime_load_start;
        b.report.boottime_load_end = load.boottime_load_end;
    }
    b.report.load = handover.load;
    Ok(())
}

/// Step 4: `/run/kmodinit/report.json` (again before exec, with
/// `boottime_exec`). A report that cannot be written is logged, not fatal.
fn write_report(b: &mut Boot) {
    b.report.vm_hwm_kib = std::fs::read_to_string(Path::new(PROC).join("self/status"))
        .ok()
        .and_then(|s| boot::parse_vm_hwm_kib(&s));
    failure::remember_report(&b.report);
    match b.report.write(Path::new(REPORT_PATH)) {
        Ok(()) => b.report_written = true,
        Err(e) => log::error!("cannot write {REPORT_PATH}: {e}"),
    }
}

/// Step 5 with a root: wait for the device, mount it, pick the init in it,
/// move the API mounts, free the initramfs, enter the new root.
fn switch_to_root(
    b: &mut Boot,
    config: &BootConfig,
    kernel_args: &[String],
) -> Result<InitCommand, BootError> {
    let Some(root) = &config.root else {
        return init_in_initramfs(config, kernel_args);
    };
    let scanner = BlockScanner::system();
    log::info!("waiting for root {} ({})", root.device, root.wait);
    let found = blockdev::wait_for(
        root.wait,
        &mut RealWaiter::start(),
        || scanner.find(&root.device),
        |t| {
            log::warn!(
                "still waiting for root {} ({} s)",
                root.device,
                Fixed(t.as_secs_f64(), 0)
            )
        },
    )
    .map_err(|waited| BootError::RootNotFound {
        spec: root.device.clone(),
        waited,
    })?;
    let proc_filesystems =
        std::fs::read_to_string(Path::new(PROC).join("filesystems")).unwrap_or_default();
    let types = switch_root::fstype_candidates(&root.fstypes, found.fs.as_ref(), &proc_filesystems);
    let new_root = Path::new(NEW_ROOT);
    let fstype = switch_root::mount_root(&found.node, new_root, &types, &root.options)
        .map_err(BootError::SwitchRoot)?;
    log::info!(
        "mounted {} ({}) on {NEW_ROOT} {}",
        found.node.display(),
        fstype,
        if root.options.read_only {
            "read-only"
        } else {
            "read-write"
        }
    );
    // Choose the init before anything is moved: if there is none, the
    // initramfs (and its rescue shell) is still intact.
    let init = handover::choose_init(&config.init, kernel_args, |p| {
        handover::is_executable(new_root, p)
    })
    .map_err(|source| BootError::NoInit {
        root: new_root.to_path_buf(),
        source,
    })?;
    for problem in switch_root::move_mounts(Path::new("/"), new_root, MOVED_MOUNTS) {
        log::warn!("{problem}");
        b.report.notes.push(problem);
    }
    // Only a RAM filesystem is ours to empty (a safety net should /init ever
    // run from a real disk).
    if switch_root::is_initramfs(Path::new("/")) {
        let n = switch_root::remove_same_fs(Path::new("/"));
        log::debug!("freed the initramfs: {n} entries removed");
    }
    switch_root::enter(new_root).map_err(BootError::SwitchRoot)?;
    Ok(init)
}

/// Step 5 without a root: the init inside the initramfs.
fn init_in_initramfs(
    config: &BootConfig,
    kernel_args: &[String],
) -> Result<InitCommand, BootError> {
    log::info!("no root device given: staying in the initramfs");
    let _ = nix::unistd::chdir("/");
    handover::choose_init(&config.init, kernel_args, |p| {
        handover::is_executable(Path::new("/"), p)
    })
    .map_err(|source| BootError::NoInit {
        root: "/".into(),
        source,
    })
}

/// After PID 1's last report: a load still running gets a reporter that
/// settles its pending modules in the report when it ends.
fn hand_over_the_load(b: &mut Boot) {
    if let (Some(loader), Some(sup)) = (b.loader.as_mut(), b.supervisor.take()) {
        loader.hand_over(sup, &b.report, Path::new(REPORT_PATH));
    }
}

/// Step 6: final report, restore the kmsg rate limit, exec. Returns the
/// error if exec fails.
fn exec_init(b: &mut Boot, init: &InitCommand) -> BootError {
    log::info!("exec {} {:?}", init.path, &init.argv[1..]);
    b.report.boottime_exec = Some(clock::boottime());
    write_report(b);
    hand_over_the_load(b);
    loader_process::reap_strays(b.loader.as_ref().map(LoaderChild::pid));
    if let Some(d) = b.devkmsg.as_mut() {
        d.restore(Path::new(PROC));
    }
    let source = handover::exec(init);
    BootError::Exec {
        path: init.path.clone(),
        source,
    }
}

/// The failure path: explain on the console and the kernel log, record the
/// error in the report, then carry out `on_failure`. Never returns (a panic
/// while explaining goes to the panic hook, which carries out the policy).
fn fail(b: &mut Boot, err: BootError) -> ! {
    let action = explain_failure(b, &err);
    failure::carry_out(action, Path::new(DEV))
}

fn explain_failure(b: &mut Boot, err: &BootError) -> FailureAction {
    let action = failure::choose(
        b.cmdline_on_failure,
        b.manifest_on_failure,
        handover::is_executable(Path::new("/"), failure::RESCUE_SHELL),
    );
    b.report.errors.push(err.to_string());
    b.report.boottime_exec = None;
    write_report(b);
    hand_over_the_load(b);
    let text = failure::explain(
        &err.to_string(),
        &err.hints(),
        b.report_written.then_some(REPORT_PATH),
        action,
    );
    kmsg::announce(Path::new(DEV), Path::new(PROC), &text);
    if action == FailureAction::Rescue {
        if let Some(d) = b.devkmsg.as_mut() {
            d.restore(Path::new(PROC));
        }
    }
    action
}

/// Not PID 1: refuse to touch the machine; `plan` and `--dry-run` only read.
fn host(args: &[String]) -> ExitCode {
    let cmd = match cli::parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmodinit: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        HostCommand::Help => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        HostCommand::Refuse => {
            eprintln!(
                "kmodinit: not PID 1 (pid {}): refusing to mount, load modules or exec anything on this machine.\n\n{}",
                nix::unistd::getpid(),
                cli::USAGE
            );
            return ExitCode::from(2);
        }
        HostCommand::Plan {
            manifest,
            modules_dir,
            cmdline,
        } => cli::plan_from_files(&manifest, &modules_dir, &KernelCmdline::parse(&cmdline)).map(
            |p| match p {
                Some(p) => p.render_text(),
                None => format!("no manifest at {}\n", manifest.display()),
            },
        ),
        HostCommand::DryRun {
            cmdline,
            manifest,
            modules_dir,
        } => {
            let text = match cmdline {
                Some(c) => c,
                None => std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
            };
            cli::dry_run(&text, manifest.as_deref(), modules_dir.as_deref())
        }
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kmodinit: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Test build only (`fault-injection`): the `kmodinit.fault=` faults of the
/// command line, announced on the console and in the report; panics here,
/// right after planning, for `panic-boot`.
#[cfg(feature = "fault-injection")]
fn arm_faults(b: &mut Boot) -> kmodinit::fault::Faults {
    let faults = kmodinit::fault::Faults::from_cmdline(&b.report.cmdline);
    for w in &faults.warnings {
        log::warn!("command line: {w}");
        b.report.notes.push(format!("command line: {w}"));
    }
    if faults.armed() {
        let note = format!("test build: fault injection armed: {faults}");
        log::warn!("{note}");
        b.report.notes.push(note);
    }
    faults.boot_point("reading the manifest");
    faults
}

//! `/init`: the kernel runs it as PID 1 from the initramfs. The boot below
//! follows DESIGN.md's sequence, one call per step (the steps are
//! `kmodinit_init::pid1`); the loader child's entry is handed to PID 1
//! here, so neither side names the other. On a host (not PID 1) it refuses to touch the machine;
//! the host tool is a separate program (`host/`, `kmodinit`).

use std::convert::Infallible;
use std::process::ExitCode;

use kmodinit_init::clock;
use kmodinit_init::helper;
use kmodinit_init::loader;
use kmodinit_init::pid1::failure;
use kmodinit_init::pid1::{Boot, BootError, Paths};
use kmodinit_init::sys::RealSys;

fn main() -> ExitCode {
    let boottime_init_start = clock::boottime();
    // args_os: std::env::args() would panic on a non-UTF-8 argument, before
    // any panic protection is in place.
    let mut argv = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let argv0 = argv.next().unwrap_or_default();
    let args: Vec<String> = argv.collect();
    let pid = nix::unistd::getpid().as_raw();
    if helper::args::is_helper(&argv0, pid) {
        // The kernel's module helper (`modprobe -q -- NAME`).
        return helper::run(&args);
    }
    if pid == 1 {
        pid1(boottime_init_start, args)
    }
    host()
}

/// PID 1: single-threaded; the module loading runs in a child process. An
/// error goes to the failure policy, a panic too (through the panic hook,
/// which carries it out itself: release builds abort after it). Never
/// returns.
fn pid1(boottime_init_start: f64, kernel_args: Vec<String>) -> ! {
    failure::install_pid1_panic_hook(RealSys, Paths::system());
    let mut b = Boot::new(RealSys, Paths::system(), boottime_init_start);
    let err = match boot(&mut b, &kernel_args) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    b.fail(err)
}

/// The boot sequence. Returns only if a step failed: success is the exec.
fn boot(b: &mut Boot<RealSys>, kernel_args: &[String]) -> Result<Infallible, BootError> {
    b.mount_early_filesystems();
    let cmdline = b.read_cmdline();
    // The loader child reads the module index while PID 1 reads the
    // manifest; it plans only once PID 1 says the manifest is valid.
    b.start_loader(&cmdline, loader::child_main);
    let manifest = b.read_manifest(&cmdline)?;
    let config = b.configure(&cmdline, manifest.as_ref())?;
    b.step("config");
    match &manifest {
        Some(m) => b.load_modules(m, &cmdline, &config)?,
        None => b.stop_loader(),
    }
    b.report_after_load();
    b.check_required_chains()?;
    let init = b.enter_root(&config, kernel_args)?;
    Err(b.exec_init(&init))
}

/// Not PID 1 and not the helper: a person ran `/init` on a running
/// system. Refuse to touch the machine and point at the host tool.
fn host() -> ExitCode {
    eprintln!(
        "init: kmodinit's /init runs as PID 1 from an initramfs; this is pid {}: refusing to mount, \
         load modules or exec anything on this machine.\n\
         On a host use the `kmodinit` tool: kmodinit build | plan | report | manifest-from-host.",
        nix::unistd::getpid()
    );
    ExitCode::from(2)
}

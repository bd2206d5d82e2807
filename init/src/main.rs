//! `/init`: the kernel runs it as PID 1 from the initramfs. The boot below
//! follows DESIGN.md's sequence, one call per step (the steps are
//! `kmodinit::boot`). On a host (not PID 1) it refuses to touch the machine
//! and offers `plan`, `--dry-run`, `report` and `manifest-from-host`.

use std::convert::Infallible;
use std::process::ExitCode;

use kmodinit::boot::{Boot, BootError, Paths};
use kmodinit::cli::{self, HostCommand};
use kmodinit::clock;
use kmodinit::failure;
use kmodinit::helper;
use kmodinit::sys::RealSys;
use modules_manifest::KernelCmdline;

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
    host(&args)
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
    b.start_loader(&cmdline);
    let manifest = b.read_manifest(&cmdline)?;
    let config = b.configure(&cmdline, manifest.as_ref())?;
    b.read_device_mapper(&cmdline)?;
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

/// Not PID 1: refuse to touch the machine; `plan`, `--dry-run`, `report` and
/// `manifest-from-host` only read (`report --svg` and `manifest-from-host
/// --output` write the file they are asked for).
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
        } => cli::plan_from_files(&manifest, &modules_dir, &KernelCmdline::parse(&cmdline))
            .map(|p| match p {
                Some(p) => p.render_text(),
                None => format!("no manifest at {}\n", manifest.display()),
            })
            .map_err(|e| e.to_string()),
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
                .map_err(|e| e.to_string())
        }
        HostCommand::Report { report, svg } => {
            cli::report(&report, svg.as_deref()).map_err(|e| e.to_string())
        }
        #[cfg(feature = "host-tools")]
        HostCommand::ManifestFromHost {
            sysroot,
            modules_root,
            kernel_release,
            output,
        } => cli::manifest_from_host(
            &sysroot,
            modules_root.as_deref(),
            kernel_release.as_deref(),
            output.as_deref(),
        )
        .map(|(text, notes)| {
            for n in notes {
                eprintln!("kmodinit: {n}");
            }
            text
        })
        .map_err(|e| e.to_string()),
        #[cfg(not(feature = "host-tools"))]
        HostCommand::ManifestFromHost { .. } => Err(cli::USAGE.to_owned()),
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

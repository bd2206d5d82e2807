//! `kmodinit`, the host tool: builds images and reads what a boot left
//! behind. It never mounts, loads a module or executes anything on this
//! machine (`/init` is a separate program: `make init`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use kmodinit::from_host::{self, HostPaths};
use kmodinit::measure;
use kmodinit::plan::{self, Mode};
use kmodinit::show_report::{self, DEFAULT_REPORT};
use kmodinit::update;
use kmodinit_mkimage::cli::{build_and_report, BuildArgs};
use modules_manifest::KernelCmdline;

#[derive(Debug, Parser)]
#[command(
    name = "kmodinit",
    version,
    about = "kmodinit's host tool: build initramfs images for the kmodinit /init, preview their load plan, read boot reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an initramfs image (the flags of kmodinit-mkimage).
    #[command(long_about = kmodinit_mkimage::cli::ABOUT)]
    Build(BuildArgs),
    /// Print the load plan of a manifest against a module tree.
    Plan(PlanArgs),
    /// Print a boot's report as a module timeline (and draw it as SVG).
    Report(ReportArgs),
    /// Write a manifest for this machine: its loaded modules by subsystem,
    /// the root's drivers required, the root by UUID.
    ManifestFromHost(FromHostArgs),
    /// Predict the TPM PCR value an image and a command line give with
    /// measured loading, from the image alone.
    Measure(MeasureArgs),
    /// Build /boot/initrd.img-RELEASE from /etc/kmodinit/ (kmodinit.conf,
    /// manifest.json), atomically: the old image stays until the new one is
    /// complete. What the kernel hooks run (host/README.md).
    Update(UpdateArgs),
}

#[derive(Debug, clap::Args)]
struct MeasureArgs {
    /// The image (newc cpio; gzip, zstd, xz or uncompressed).
    #[arg(long, value_name = "IMG")]
    image: PathBuf,
    /// The boot's kernel command line (module parameters,
    /// kmodinit.measure=, kmodinit.skip=, ... change the value).
    #[arg(long, value_name = "TEXT", default_value = "")]
    cmdline: String,
    /// The PCR's value before kmodinit's first extend (64 hex digits, as
    /// the report's measure.initial). Default: zero, as PCRs 8-16 and 23
    /// start at power-on.
    #[arg(long, value_name = "HEX")]
    initial: Option<String>,
    /// Print the report's "measure" object as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct UpdateArgs {
    /// The kernel release, or `all`: every kernel under lib/modules.
    #[arg(
        short = 'k',
        long = "kernel",
        value_name = "RELEASE|all",
        default_value = "all"
    )]
    kernel: String,
    /// The root of the system the images are for.
    #[arg(long, value_name = "DIR", default_value = "/")]
    sysroot: PathBuf,
    /// Where the images go.
    #[arg(long, value_name = "DIR", default_value = "/boot")]
    boot_dir: PathBuf,
    /// The configuration directory (kmodinit.conf, manifest.json).
    #[arg(long, value_name = "DIR", default_value = "/etc/kmodinit")]
    config_dir: PathBuf,
    /// Where init and init-tiny are installed.
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/kmodinit")]
    lib_dir: PathBuf,
}

/// The image builder's flags, parsed as `kmodinit build` parses them.
#[derive(Debug, Parser)]
struct BuildOnly {
    #[command(flatten)]
    args: BuildArgs,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// The JSON manifest (version 1).
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The directory holding modules.dep and the other depmod files
    /// (lib/modules/RELEASE of a tree), or an image's, which holds the
    /// compiled index kmodinit.index.
    #[arg(long, value_name = "DIR")]
    modules_dir: PathBuf,
    /// The kernel command line to plan with (its name.param=,
    /// modprobe.blacklist=, kmodinit.load=, kmodinit.skip=, ...). Default:
    /// none, or /proc/cmdline with --at-boot.
    #[arg(long, value_name = "TEXT")]
    cmdline: Option<String>,
    /// Plan as /init does at boot: a module that cannot be planned fails
    /// alone (the rest is planned), the modules /proc/modules lists count
    /// as loaded, and the command line defaults to /proc/cmdline. Without
    /// it, planning is strict (what `kmodinit build` checks) and nothing
    /// counts as loaded.
    #[arg(long)]
    at_boot: bool,
    /// Where --at-boot reads `modules` and `cmdline`.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/proc",
        requires = "at_boot"
    )]
    proc: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The report to read.
    #[arg(value_name = "REPORT.json", default_value = DEFAULT_REPORT)]
    report: PathBuf,
    /// Also draw the load phase as an SVG chart into this file.
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct FromHostArgs {
    /// Write the manifest to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Root of the module tree (DIR/lib/modules/RELEASE). Default: the
    /// sysroot.
    #[arg(long, value_name = "DIR")]
    modules_root: Option<PathBuf>,
    /// Kernel release. Default: the running one (proc/sys/kernel/osrelease).
    #[arg(long, value_name = "RELEASE")]
    kernel_release: Option<String>,
    /// Read proc, sys and dev under DIR instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    sysroot: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => return build_and_report("kmodinit build", args),
        Command::Plan(a) => run_plan(a),
        Command::Report(a) => {
            show_report::show(&a.report, a.svg.as_deref()).map_err(|e| Box::new(e) as Box<_>)
        }
        Command::ManifestFromHost(a) => run_from_host(a),
        Command::Measure(a) => run_measure(a),
        Command::Update(a) => run_update(a),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kmodinit: error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                if !e.to_string().contains(&s.to_string()) {
                    eprintln!("  caused by: {s}");
                }
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn run_plan(a: PlanArgs) -> Result<String, Error> {
    let (mode, cmdline, loaded) = if a.at_boot {
        (
            Mode::AtBoot,
            plan::boot_cmdline(a.cmdline.as_deref(), &a.proc)?,
            plan::loaded_modules(&a.proc)?,
        )
    } else {
        (
            Mode::Strict,
            a.cmdline.unwrap_or_default(),
            Default::default(),
        )
    };
    let cmdline = KernelCmdline::parse(&cmdline);
    let mut out = String::new();
    for w in &cmdline.warnings {
        out.push_str(&format!("warning: command line: {w}\n"));
    }
    let p = plan::plan_files(&a.manifest, &a.modules_dir, &cmdline, mode, &loaded)?;
    out.push_str(&p.render_text());
    Ok(out)
}

fn run_measure(a: MeasureArgs) -> Result<String, Error> {
    let initial = match a.initial.as_deref() {
        None => [0; 32],
        Some(text) => modules_manifest::measure::parse_hex(text)
            .ok_or("--initial: expected 64 hex digits (a SHA-256 PCR value)")?,
    };
    let image =
        std::fs::read(&a.image).map_err(|e| format!("cannot read {}: {e}", a.image.display()))?;
    let p = measure::predict(&image, &a.cmdline, initial)
        .map_err(|e| format!("{}: {e}", a.image.display()))?;
    Ok(if a.json {
        p.render_json()
    } else {
        p.render_text()
    })
}

fn run_from_host(a: FromHostArgs) -> Result<String, Error> {
    let out = from_host::manifest_from_host(&HostPaths {
        sysroot: a.sysroot,
        modules_root: a.modules_root,
        kernel_release: a.kernel_release,
    })?;
    for n in &out.notes {
        eprintln!("kmodinit: {n}");
    }
    match a.output {
        None => Ok(out.json),
        Some(path) => {
            std::fs::write(&path, &out.json).map_err(|source| from_host::FromHostError::Write {
                path: path.clone(),
                source,
            })?;
            eprintln!("kmodinit: manifest written to {}", path.display());
            Ok(String::new())
        }
    }
}

fn run_update(a: UpdateArgs) -> Result<String, Error> {
    let paths = update::UpdatePaths {
        sysroot: a.sysroot,
        boot: a.boot_dir,
        config_dir: a.config_dir,
        lib_dir: a.lib_dir,
    };
    let config = update::Config::load(&paths.config_dir)?;
    let summary = std::cell::RefCell::new(String::new());
    let build = |r: &update::BuildRequest| -> Result<(), String> {
        let argv = std::iter::once("kmodinit build".to_string()).chain(r.args.iter().cloned());
        let b = BuildOnly::try_parse_from(argv).map_err(|e| e.to_string())?;
        let s = kmodinit_mkimage::cli::run(b.args).map_err(|e| {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                if !m.contains(&c.to_string()) {
                    m.push_str(&format!(": {c}"));
                }
                src = c.source();
            }
            m
        })?;
        summary.replace(format!(
            "kmodinit:   {} modules, {} bytes ({})",
            s.modules,
            s.compressed_bytes,
            s.compress.name()
        ));
        Ok(())
    };
    let mut failed = Vec::new();
    for release in update::releases(&paths, &a.kernel)? {
        let mut log = Vec::new();
        let r = update::update_one(&paths, &config, &release, &build, &mut log);
        for l in &log {
            if l.starts_with("kmodinit:") {
                eprintln!("{l}");
            } else {
                eprintln!("kmodinit:   {l}");
            }
        }
        let s = summary.take();
        if !s.is_empty() {
            eprintln!("{s}");
        }
        match r {
            Ok(image) => eprintln!("kmodinit: {} written", image.display()),
            Err(e) => {
                eprintln!("kmodinit: error: {e}");
                failed.push(release);
            }
        }
    }
    if failed.is_empty() {
        Ok(String::new())
    } else {
        Err(format!("no new image for {} (reasons above)", failed.join(", ")).into())
    }
}

//! `kmodinit-demo`: the README's first command (`make demo`). Builds a root
//! disk with a tiny real init, the demo image, boots it under QEMU (TCG) and
//! shows the module timeline from `report.json` and the real init's marker.
//!
//! Usage: `kmodinit-demo [--init FILE] [--mkimage FILE] [--manifest FILE]
//! [--work DIR]`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use kmodinit::timeline;
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{run_command, End, Ext4Image, HarnessError, HostKernel, RealInitRoot, Vm};
use kmodinit_report::Report;

#[derive(Debug)]
struct Options {
    init: PathBuf,
    mkimage: PathBuf,
    manifest: PathBuf,
    work: PathBuf,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        init: PathBuf::from("build/init"),
        mkimage: PathBuf::from("target/release/kmodinit-mkimage"),
        manifest: PathBuf::from("modules-manifest/examples/demo.json"),
        work: PathBuf::from("build/demo"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let slot = match a.as_str() {
            "--init" => &mut o.init,
            "--mkimage" => &mut o.mkimage,
            "--manifest" => &mut o.manifest,
            "--work" => &mut o.work,
            "-h" | "--help" => {
                return Err("usage: kmodinit-demo [--init FILE] [--mkimage FILE] [--manifest FILE] [--work DIR]".into())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        };
        *slot = args
            .next()
            .map(PathBuf::from)
            .ok_or_else(|| format!("{a} needs a value"))?;
    }
    Ok(o)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kmodinit-demo: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kmodinit-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn invalid(msg: String) -> HarnessError {
    HarnessError::Invalid(msg)
}

fn run(o: &Options) -> Result<(), HarnessError> {
    for (what, p, target) in [
        ("/init", &o.init, "init"),
        ("image tool", &o.mkimage, "mkimage"),
    ] {
        if !p.is_file() {
            return Err(invalid(format!(
                "{what} {} is missing: run `make {target}`",
                p.display()
            )));
        }
    }
    let kernel = HostKernel::find()?;
    if o.work.exists() {
        std::fs::remove_dir_all(&o.work)
            .map_err(|e| invalid(format!("removing {}: {e}", o.work.display())))?;
    }
    std::fs::create_dir_all(&o.work)
        .map_err(|e| invalid(format!("creating {}: {e}", o.work.display())))?;
    println!(
        "== kmodinit demo: kernel {} ({})",
        kernel.release,
        kernel.vmlinuz.display()
    );

    // 1. The root disk: busybox and a real init that reports and powers off.
    let tree = o.work.join("rootfs");
    RealInitRoot::new().populate(&tree)?;
    let fs = Ext4Image::new(32)?;
    let disk = o.work.join("root.img");
    fs.build(&tree, &disk)?;
    println!("   root disk  {} (ext4, UUID={})", disk.display(), fs.uuid);

    // 2. The manifest: the example's chains, the root by this disk's UUID.
    let mut manifest: serde_json::Value = match std::fs::read(&o.manifest) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{}: {e}", o.manifest.display())))?,
        Err(_) => serde_json::json!({
            "version": 1,
            "chains": [
                {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
                {"name": "fs", "modules": ["ext4"], "required": true}
            ],
            "root": {"fstype": "ext4", "flags": "ro", "wait_ms": 10000}
        }),
    };
    if !manifest["root"].is_object() {
        manifest["root"] = serde_json::json!({});
    }
    manifest["root"]["device"] = serde_json::json!(format!("UUID={}", fs.uuid));
    manifest["init"] = serde_json::json!({"path": "/sbin/init", "args": ["demo"]});
    let manifest_path = o.work.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| invalid(e.to_string()))?;
    std::fs::write(&manifest_path, text)
        .map_err(|e| invalid(format!("{}: {e}", manifest_path.display())))?;

    // 3. The image.
    let image = o.work.join("initrd.img");
    run_command(
        Command::new(&o.mkimage)
            .arg("--manifest")
            .arg(&manifest_path)
            .arg("--kernel-release")
            .arg(&kernel.release)
            .arg("--output")
            .arg(&image)
            .arg("--init")
            .arg(&o.init)
            .args(["--compress", "gzip"]),
    )?;
    let size = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
    println!(
        "   image      {} ({:.0} KiB, gzip)",
        image.display(),
        size as f64 / 1024.0
    );

    // 4. Boot.
    let log = o.work.join("console.log");
    println!(
        "   booting    qemu-system-x86_64 -accel tcg (console: {})",
        log.display()
    );
    let boot = Vm::new(&kernel.vmlinuz)
        .initrd(&image)
        .disk(&disk)
        .log_file(&log)
        .stop_on(markers::DONE)
        .timeout(Duration::from_secs(120))
        .run()?;
    println!("   QEMU ran {:.1} s wall\n", boot.elapsed.as_secs_f64());

    // 5. What kmodinit said, the timeline, and the real init.
    println!("== kmodinit on the console");
    // kmodinit's own log lines (`[ 2.3] kmodinit: …`), not the report dump.
    for line in boot
        .console
        .text()
        .lines()
        .filter(|l| l.contains("] kmodinit") || l.starts_with("kmodinit"))
    {
        println!("   {}", line.trim_end());
    }
    println!();
    match boot.console.report() {
        Ok(value) => match serde_json::from_value::<Report>(value) {
            Ok(report) => print_timeline(&report),
            Err(e) => println!("== report.json unreadable: {e}\n"),
        },
        Err(e) => println!("== no report: {e}"),
    }
    match boot.console.line_from("KMI-REALINIT") {
        Some(line) if boot.end == End::Marker(markers::DONE.into()) => {
            println!("== the real init, after switch_root\n   {line}");
            if let Some(root) = boot.console.line_from(markers::ROOT) {
                println!("   {root}");
            }
            Ok(())
        }
        _ => Err(invalid(format!(
            "the real init did not finish ({:?}); console {}:\n{}",
            boot.end,
            log.display(),
            boot.console.tail(30)
        ))),
    }
}

/// Prints the load phase as `kmodinit report` does: one line and bar per
/// module over the load window, then the load's figures.
fn print_timeline(report: &Report) {
    for (i, line) in timeline::render_text(report).lines().enumerate() {
        let lead = if i == 0 { "==" } else { "  " };
        println!("{lead} {line}");
    }
    println!();
}

//! `kmodinit-measure --image IMG [--cmdline "…"] [--initial HEX] [--json]`:
//! the PCR value a kmodinit image and a kernel command line give with
//! measured loading, predicted from the image alone (see
//! `kmodinit_mkimage::measure`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kmodinit_mkimage::measure::predict;
use modules_manifest::measure::{hex, parse_hex};

/// Predicts the TPM PCR value measured loading leaves after the plan's
/// modules: the manifest, the command line's settings, then each module's
/// file and parameters in plan order, replayed from the initial value.
#[derive(Debug, Parser)]
#[command(name = "kmodinit-measure", version)]
struct Cli {
    /// The image (newc cpio, compressed with gzip, zstd or xz, or not).
    #[arg(long, value_name = "IMG")]
    image: PathBuf,
    /// The kernel command line of the boot (module parameters,
    /// `kmodinit.measure=`, `kmodinit.skip=`, … change the value).
    #[arg(long, value_name = "TEXT", default_value = "")]
    cmdline: String,
    /// The PCR's value before kmodinit's first extend (64 hex digits; the
    /// report's `measure.initial`). Default: zero, as PCRs 8–16 and 23
    /// start.
    #[arg(long, value_name = "HEX")]
    initial: Option<String>,
    /// Print the report's `measure` object (pcr, bank, initial, events,
    /// final) as JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let initial = match cli.initial.as_deref().map(parse_hex) {
        None => [0; 32],
        Some(Some(d)) => d,
        Some(None) => {
            eprintln!("kmodinit-measure: --initial: expected 64 hex digits (a SHA-256 PCR value)");
            return ExitCode::from(2);
        }
    };
    let image = match std::fs::read(&cli.image) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("kmodinit-measure: cannot read {}: {e}", cli.image.display());
            return ExitCode::FAILURE;
        }
    };
    let p = match predict(&image, &cli.cmdline, initial) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kmodinit-measure: {}: {e}", cli.image.display());
            return ExitCode::FAILURE;
        }
    };
    if cli.json {
        let events: Vec<serde_json::Value> = p
            .events
            .iter()
            .map(|e| serde_json::json!({"digest": hex(&e.digest), "what": e.what}))
            .collect();
        let v = serde_json::json!({
            "pcr": p.pcr,
            "bank": "sha256",
            "initial": hex(&p.initial),
            "events": events,
            "final": hex(&p.final_value),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "PCR {} (sha256), kernel {}, from {}:",
            p.pcr,
            p.kernel_release,
            hex(&p.initial)
        );
        for e in &p.events {
            println!("  {}  {}", hex(&e.digest), e.what);
        }
        println!("{}", hex(&p.final_value));
    }
    ExitCode::SUCCESS
}

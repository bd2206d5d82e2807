//! `kmodinit-mkimage`: the image builder under its own name (scripts rely
//! on it); the same flags and the same bytes as `kmodinit build`.

use std::process::ExitCode;

use clap::Parser;

use kmodinit_mkimage::cli::{build_and_report, BuildArgs, ABOUT};

#[derive(Debug, Parser)]
#[command(name = "kmodinit-mkimage", version, long_about = ABOUT)]
struct Cli {
    #[command(flatten)]
    args: BuildArgs,
}

fn main() -> ExitCode {
    build_and_report("kmodinit-mkimage", Cli::parse().args)
}

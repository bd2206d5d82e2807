//! `kmodinit-fixtures [--farm] [--out DIR]`: builds and stages the fixture
//! modules (what `make fixtures` runs), then prints the staged tree.

use std::path::PathBuf;
use std::process::ExitCode;

use kmodinit_e2e::fixtures;
use kmodinit_qemu::HostKernel;

fn main() -> ExitCode {
    let mut farm = false;
    let mut out = fixtures::workspace_root().join("build/fixtures");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--farm" => farm = true,
            "--out" => match args.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => {
                    eprintln!("kmodinit-fixtures: --out needs a directory");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("kmodinit-fixtures: unknown argument {other:?}; usage: kmodinit-fixtures [--farm] [--out DIR]");
                return ExitCode::from(2);
            }
        }
    }
    let kernel = match HostKernel::find() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("kmodinit-fixtures: {e}");
            return ExitCode::FAILURE;
        }
    };
    match fixtures::build(&kernel, &out, farm) {
        Ok(f) => {
            println!(
                "fixtures: {} modules for {} staged in {}",
                f.built.len(),
                kernel.release,
                f.modules_dir().display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kmodinit-fixtures: {e}");
            ExitCode::FAILURE
        }
    }
}

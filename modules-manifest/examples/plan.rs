//! Prints the plan of a manifest against a module directory:
//! `cargo run -p modules-manifest --example plan -- MANIFEST [MODULES_DIR] [CMDLINE]`
//! (MODULES_DIR defaults to the newest `/lib/modules/*` with a
//! `modules.dep`). A development aid; the user-facing command is
//! `kmodinit plan`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use modules_manifest::{plan, DepIndex, KernelCmdline, Manifest, PlanInput};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(manifest_path) = args.first() else {
        eprintln!("usage: plan MANIFEST [MODULES_DIR] [CMDLINE]");
        return ExitCode::from(2);
    };
    let dir = match args.get(1) {
        Some(d) => PathBuf::from(d),
        None => {
            let lib_modules = Path::new("/lib/modules");
            match modules_manifest::release::newest_installed(lib_modules, None, None) {
                Ok(Some(release)) => lib_modules.join(release),
                Ok(None) => {
                    eprintln!("no /lib/modules/*/modules.dep: pass MODULES_DIR");
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("/lib/modules: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let cmdline = KernelCmdline::parse(args.get(2).map(String::as_str).unwrap_or(""));
    let bytes = match std::fs::read(manifest_path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{manifest_path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let manifest = match Manifest::from_json(&bytes) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{manifest_path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let index = match DepIndex::load(&dir) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let loaded = BTreeSet::new();
    match plan(PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline: &cmdline,
        loaded: &loaded,
    }) {
        Ok(p) => {
            print!("{}", p.render_text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{manifest_path}: {e}");
            ExitCode::FAILURE
        }
    }
}

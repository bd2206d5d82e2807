//! `kmodinit plan`: the load plan of a manifest against a module tree's
//! depmod files, as text.
//!
//! Two ways to plan, both the planner of `modules_manifest`:
//! - strict (the default, what the image builder checks): any module that
//!   cannot be planned is an error, nothing is taken as loaded;
//! - `--at-boot`: as `/init` plans at boot (`plan_at_boot`): a module that
//!   cannot be planned fails alone and the rest is planned, the modules
//!   `/proc/modules` lists count as loaded, and the command line defaults
//!   to `/proc/cmdline`. A preview that agrees with the boot it previews.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use modules_manifest::compiled;
use modules_manifest::depmod::IndexError;
use modules_manifest::manifest::ManifestError;
use modules_manifest::plan::PlanError;
use modules_manifest::{
    parse_proc_modules, plan, plan_at_boot, DepIndex, KernelCmdline, Manifest, ModuleName, Plan,
    PlanInput,
};

/// Why no plan could be printed; each names the file or the module.
#[derive(Debug, thiserror::Error)]
pub enum PlanCommandError {
    #[error("cannot read the manifest {path}: {source}")]
    ReadManifest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the manifest {path} is not valid: {source}")]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    #[error("cannot read the module index in {dir}: {source}")]
    Index { dir: PathBuf, source: IndexError },
    #[error("cannot use the compiled index {file}: {why}")]
    Compiled { file: PathBuf, why: String },
    #[error("cannot read {path}: {source}")]
    Proc {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the manifest does not plan: {0}")]
    Plan(#[source] PlanError),
}

/// How `kmodinit plan` plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every module must plan; nothing is loaded.
    #[default]
    Strict,
    /// As the boot does: lenient, with these modules already loaded.
    AtBoot,
}

/// Plans the manifest at `manifest_path` against the index in
/// `modules_dir`. `loaded`: what counts as already in the kernel (only
/// [`Mode::AtBoot`] passes a non-empty set).
pub fn plan_files(
    manifest_path: &Path,
    modules_dir: &Path,
    cmdline: &KernelCmdline,
    mode: Mode,
    loaded: &BTreeSet<ModuleName>,
) -> Result<Plan, PlanCommandError> {
    let bytes = std::fs::read(manifest_path).map_err(|source| PlanCommandError::ReadManifest {
        path: manifest_path.to_path_buf(),
        source,
    })?;
    let manifest = Manifest::from_json(&bytes).map_err(|source| PlanCommandError::Manifest {
        path: manifest_path.to_path_buf(),
        source,
    })?;
    let index = read_index(modules_dir)?;
    let input = PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline,
        loaded,
    };
    match mode {
        Mode::Strict => plan(input),
        Mode::AtBoot => plan_at_boot(input),
    }
    .map_err(PlanCommandError::Plan)
}

/// The index of `dir`: its depmod text files, or, in an image's module
/// directory (which holds only `kmodinit.index` unless built with
/// `--depmod-text`), the compiled index the image's `/init` reads.
fn read_index(dir: &Path) -> Result<DepIndex, PlanCommandError> {
    let compiled_file = dir.join(compiled::INDEX_FILE);
    if !dir.join("modules.dep").is_file() && compiled_file.is_file() {
        let compiled_error = |why: String| PlanCommandError::Compiled {
            file: compiled_file.clone(),
            why,
        };
        let bytes = std::fs::read(&compiled_file).map_err(|e| compiled_error(e.to_string()))?;
        return compiled::decode(&bytes, None)
            .map(|c| c.index)
            .map_err(|e| compiled_error(e.to_string()));
    }
    DepIndex::load(dir).map_err(|source| PlanCommandError::Index {
        dir: dir.to_path_buf(),
        source,
    })
}

/// The modules `<proc>/modules` lists now.
pub fn loaded_modules(proc: &Path) -> Result<BTreeSet<ModuleName>, PlanCommandError> {
    let path = proc.join("modules");
    std::fs::read_to_string(&path)
        .map(|t| parse_proc_modules(&t))
        .map_err(|source| PlanCommandError::Proc { path, source })
}

/// The kernel command line the boot would see: `given`, else
/// `<proc>/cmdline`.
pub fn boot_cmdline(given: Option<&str>, proc: &Path) -> Result<String, PlanCommandError> {
    match given {
        Some(c) => Ok(c.to_owned()),
        None => {
            let path = proc.join("cmdline");
            std::fs::read_to_string(&path).map_err(|source| PlanCommandError::Proc { path, source })
        }
    }
}

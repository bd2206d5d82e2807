//! Module parameters checked against the modules themselves: each
//! inserted module's declared parameters, read from its `.modinfo`, and the
//! check of every parameter the plan passes to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use modules_manifest::{modinfo, Action, Manifest, ModuleName, Plan};

use crate::compress::Compress;
use crate::modules::{ModulesError, Selection};

/// What [`module_params`] found: each readable module's parameters, and
/// the modules whose file has no readable `.modinfo`, with why.
pub type ModuleParams = (
    BTreeMap<ModuleName, BTreeSet<String>>,
    BTreeMap<ModuleName, ModulesError>,
);

/// The parameters each inserted module of the plan declares (its
/// `.modinfo`), read from its file, decompressed first if it is a
/// `.ko.xz`/`.ko.zst`/`.ko.gz`. A file that cannot be read at all is an
/// error; one without a readable `.modinfo` is listed apart.
pub fn module_params(selection: &Selection) -> Result<ModuleParams, ModulesError> {
    let mut out = BTreeMap::new();
    let mut unreadable = BTreeMap::new();
    for f in &selection.files {
        let Some(node) = selection
            .plan
            .nodes
            .iter()
            .find(|n| matches!(&n.action, Action::Insert { path, .. } if *path == f.rel))
        else {
            continue;
        };
        match params_of_file(&f.source) {
            Ok(p) => {
                out.insert(node.name.clone(), p);
            }
            Err(e @ ModulesError::ModuleParams { .. }) => {
                unreadable.insert(node.name.clone(), e);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((out, unreadable))
}

/// The parameters a module file declares.
pub fn params_of_file(path: &Path) -> Result<BTreeSet<String>, ModulesError> {
    let bad = |why: String| ModulesError::ModuleParams {
        path: path.to_owned(),
        why,
    };
    let elf = elf_of_file(path).map_err(|e| match e {
        ModulesError::Decompress { what, .. } => bad(what),
        e => e,
    })?;
    modinfo::module_params(&elf).map_err(|e| bad(e.to_string()))
}

/// A module file's ELF bytes: the file, decompressed first if it is a
/// `.ko.xz`/`.ko.zst`/`.ko.gz` (by its magic number).
pub fn elf_of_file(path: &Path) -> Result<Vec<u8>, ModulesError> {
    let raw = fs::read(path).map_err(|source| ModulesError::ModuleFile {
        path: path.to_owned(),
        source,
    })?;
    match Compress::detect(&raw) {
        Compress::None => Ok(raw),
        c => c.decompress(&raw).map_err(|e| ModulesError::Decompress {
            path: path.to_owned(),
            what: format!("{} decompression: {e}", c.name()),
        }),
    }
}

/// Checks every parameter the plan passes to an inserted module against
/// the module's declared ones. The first module with an unknown one is an
/// error naming it and its real parameters, unless `allow`; then each is a
/// warning.
///
/// A module whose parameters could not be read (`unreadable`) is an error
/// too when parameters are declared for it (they cannot be checked), a
/// warning otherwise (its command-line parameters go unchecked at boot).
pub fn check_params(
    manifest: &Manifest,
    plan: &Plan,
    (params, unreadable): &ModuleParams,
    allow: bool,
) -> Result<Vec<String>, ModulesError> {
    let declared = manifest.declared_params().unwrap_or_default();
    let mut warnings = Vec::new();
    for node in &plan.nodes {
        let Some(known) = params.get(&node.name) else {
            if let Some(e) = unreadable.get(&node.name) {
                if node.params.is_empty() {
                    warnings.push(format!(
                        "{e}; command-line parameters of {} are not checked at boot",
                        node.name
                    ));
                } else if allow {
                    warnings.push(format!(
                        "{e}: its parameters {:?} are not checked (allowed: --allow-unknown-params)",
                        node.params
                    ));
                } else {
                    return Err(ModulesError::ModuleParams {
                        path: match e {
                            ModulesError::ModuleParams { path, .. } => path.clone(),
                            _ => PathBuf::new(),
                        },
                        why: format!(
                            "{e}; parameters {:?} are declared for {} and cannot be checked \
                             (pass --allow-unknown-params to build anyway)",
                            node.params, node.name
                        ),
                    });
                }
            }
            continue;
        };
        let unknown = modinfo::unknown_params(&node.params, known);
        if unknown.is_empty() {
            continue;
        }
        let at = declared
            .get(&node.name)
            .map(|d| d.path.clone())
            .unwrap_or_else(|| format!("the parameters of {}", node.name));
        let e = ModulesError::UnknownParams {
            module: node.name.clone(),
            unknown,
            at,
            params: node.params.clone(),
            known: known.iter().cloned().collect(),
        };
        if !allow {
            return Err(e);
        }
        warnings.push(format!("{e} (allowed: --allow-unknown-params)"));
    }
    Ok(warnings)
}

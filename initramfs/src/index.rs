//! The image's compiled index ([`modules_manifest::compiled`]): the pruned
//! depmod files of the selection, resolved once here, written as the one
//! file `/init` reads. The depmod text files stay out of the image unless
//! asked for (`--depmod-text`): nothing of ours reads them at boot.

use std::collections::{BTreeMap, BTreeSet};

use modules_manifest::compiled::{self, CompiledIndex};
use modules_manifest::{DepIndex, Manifest, ModuleName};

use crate::modules::ModulesError;

/// The compiled index of an image: `pruned` (the selection's depmod files,
/// (name, bytes), with modprobe.d's aliases) read back as `/init` would
/// have read them, every name the manifest gives resolved, and `params`
/// (what each module declares).
pub fn compile(
    release: &str,
    manifest: &Manifest,
    pruned: &[(&'static str, Vec<u8>)],
    params: &BTreeMap<ModuleName, BTreeSet<String>>,
) -> Result<Vec<u8>, ModulesError> {
    let text = |name: &str| -> Result<String, ModulesError> {
        let bytes = pruned
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        String::from_utf8(bytes).map_err(|_| ModulesError::CompileIndex {
            why: format!("the pruned {name} is not UTF-8"),
        })
    };
    let mut index = DepIndex::parse(
        &text("modules.dep")?,
        &text("modules.builtin")?,
        &text("modules.softdep")?,
        &text("modules.alias")?,
    )
    .map_err(|e| ModulesError::CompileIndex { why: e.to_string() })?;
    if let Some((_, bytes)) = pruned.iter().find(|(n, _)| *n == "modules.builtin.modinfo") {
        index
            .add_builtin_modinfo(bytes, "modules.builtin.modinfo")
            .map_err(|e| ModulesError::CompileIndex { why: e.to_string() })?;
    }
    let names = manifest_names(manifest);
    let c = CompiledIndex::compile(
        release,
        index,
        params.clone(),
        names.iter().map(String::as_str),
    );
    Ok(compiled::encode(&c))
}

/// Every name the manifest looks up: chain entries and softdep overrides.
fn manifest_names(manifest: &Manifest) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = manifest
        .chains
        .iter()
        .flat_map(|c| c.modules.iter().map(|e| e.name.as_str().to_owned()))
        .collect();
    for sd in manifest.softdeps.values() {
        names.extend(sd.pre.iter().chain(&sd.post).cloned());
    }
    names
}

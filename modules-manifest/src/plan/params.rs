//! Parameter strings: the manifest's (chain entries and the `modules`
//! section, which must agree once aliases are resolved), then the command
//! line's `name.param=value` appended.

use std::collections::BTreeMap;

use super::builder::{Builder, ResolvedEntry};
use super::PlanError;
use crate::name::ModuleName;

impl Builder<'_> {
    /// Declared parameters by resolved module, checked for conflicts again
    /// now that aliases are resolved.
    pub(super) fn params(
        &mut self,
        entries: &[ResolvedEntry],
    ) -> Result<BTreeMap<ModuleName, String>, PlanError> {
        let manifest = self.input.manifest;
        let mut declared: BTreeMap<ModuleName, (String, String)> = BTreeMap::new();
        let from_entries = entries.iter().filter_map(|e| {
            let spec = &manifest.chains[e.chain].modules[e.position];
            spec.params.as_deref().map(|p| {
                (
                    e.module.clone(),
                    p,
                    format!("chains[{}].modules[{}].params", e.chain, e.position),
                )
            })
        });
        let from_section = manifest.modules.iter().filter_map(|(name, spec)| {
            spec.params
                .as_deref()
                .map(|p| (name.clone(), p, format!("modules.{name}.params")))
        });
        for (module, p, place) in from_entries.chain(from_section) {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            if let Some((prev, prev_place)) = declared.get(&module) {
                if prev != p {
                    let error = PlanError::ConflictingParams {
                        module: module.clone(),
                        first: prev.clone(),
                        first_at: prev_place.clone(),
                        second: p.to_owned(),
                        second_at: place,
                    };
                    self.refuse(&module, error)?;
                }
                continue;
            }
            declared.insert(module, (p.to_owned(), place));
        }
        let mut out: BTreeMap<ModuleName, String> =
            declared.into_iter().map(|(m, (p, _))| (m, p)).collect();
        for (module, extra) in &self.input.cmdline.module_params {
            let joined = extra.join(" ");
            if joined.is_empty() {
                continue;
            }
            let slot = out.entry(module.clone()).or_default();
            if !slot.is_empty() {
                slot.push(' ');
            }
            slot.push_str(&joined);
        }
        Ok(out)
    }
}

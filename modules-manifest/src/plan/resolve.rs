//! Names to modules: chain entries and softdep aliases resolved against the
//! index (module, builtin, already loaded or alias), the deterministic choice
//! among several candidates and the note that explains it, and the check of
//! the manifest's softdep overrides.

use std::fmt::Write as _;

use super::builder::{Builder, ResolvedEntry};
use super::{Mode, PlanError};
use crate::manifest::ChainSpec;
use crate::name::ModuleName;

impl Builder<'_> {
    pub(super) fn known(&self, name: &ModuleName) -> bool {
        self.input.index.contains(name) || self.input.loaded.contains(name)
    }

    pub(super) fn free(&self, name: &ModuleName) -> bool {
        self.input.index.is_builtin(name) || self.input.loaded.contains(name)
    }

    /// Splits alias candidates into usable ones, best first, and excluded
    /// ones with the reason.
    pub(super) fn rank_candidates(
        &self,
        candidates: Vec<ModuleName>,
        itself: Option<&ModuleName>,
        prefer_chain_targets: bool,
    ) -> (Vec<ModuleName>, Vec<(ModuleName, &'static str)>) {
        let mut usable = Vec::new();
        let mut excluded = Vec::new();
        for c in candidates {
            if Some(&c) == itself {
                excluded.push((c, "the module itself"));
            } else if !self.known(&c) {
                excluded.push((c, "not in the index"));
            } else if self.input.manifest.blocklist.contains(&c) {
                excluded.push((c, "on the manifest blocklist"));
            } else if self.input.cmdline.blacklist.contains(&c) {
                excluded.push((c, "blacklisted on the kernel command line"));
            } else {
                usable.push(c);
            }
        }
        usable.sort_by_key(|c| {
            (
                !(prefer_chain_targets && self.chain_targets.contains(c)),
                !self.free(c),
                c.clone(),
            )
        });
        (usable, excluded)
    }

    /// `"X → Y (also matched: …; not used: …)"` for notes.
    pub(super) fn choice_text(
        &self,
        chosen: &ModuleName,
        usable: &[ModuleName],
        excluded: &[(ModuleName, &'static str)],
        prefer_chain_targets: bool,
    ) -> String {
        let mut t = chosen.to_string();
        let why = if prefer_chain_targets && self.chain_targets.contains(chosen) {
            "named in a chain"
        } else if self.free(chosen) {
            "builtin or already loaded"
        } else {
            "first by name"
        };
        // `usable` is empty when every candidate was excluded and `chosen`
        // is the blocked one kept for the chain's sake (fuzz finding, issue 8).
        let others: Vec<&str> = usable
            .iter()
            .filter(|m| *m != chosen)
            .map(ModuleName::as_str)
            .collect();
        let mut extra = Vec::new();
        if !others.is_empty() {
            extra.push(format!(
                "also matched: {}; chosen: {why}",
                others.join(", ")
            ));
        }
        if !excluded.is_empty() {
            let ex: Vec<String> = excluded.iter().map(|(m, r)| format!("{m}: {r}")).collect();
            extra.push(format!("not used: {}", ex.join(", ")));
        }
        if !extra.is_empty() {
            let _ = write!(t, " ({})", extra.join("; "));
        }
        t
    }

    /// Resolves every chain entry to one module.
    pub(super) fn resolve_chains(&mut self) -> Result<Vec<ResolvedEntry>, PlanError> {
        let manifest = self.input.manifest;
        let mut out = Vec::new();
        for (ci, chain) in manifest.chains.iter().enumerate() {
            for (pos, entry) in chain.modules.iter().enumerate() {
                if self.skip_chains.contains_key(&ci) {
                    // Not loaded: resolved quietly, never refused.
                    let module = if self.known(&entry.name) {
                        entry.name.clone()
                    } else {
                        let (usable, _) = self.rank_candidates(
                            self.input.index.resolve(entry.name.as_str()),
                            None,
                            false,
                        );
                        usable
                            .into_iter()
                            .next()
                            .unwrap_or_else(|| entry.name.clone())
                    };
                    out.push(ResolvedEntry {
                        chain: ci,
                        position: pos,
                        module,
                    });
                    continue;
                }
                let module = self.resolve_entry(chain, pos, &entry.name)?;
                self.chain_targets.insert(module.clone());
                out.push(ResolvedEntry {
                    chain: ci,
                    position: pos,
                    module,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn resolve_entry(
        &mut self,
        chain: &ChainSpec,
        pos: usize,
        name: &ModuleName,
    ) -> Result<ModuleName, PlanError> {
        if self.known(name) {
            return Ok(name.clone());
        }
        let candidates = self.input.index.resolve(name.as_str());
        let from_cmdline = [self.cmdline_chain, self.post_chain]
            .iter()
            .flatten()
            .any(|&c| self.input.manifest.chains[c].name == chain.name);
        if candidates.is_empty() && from_cmdline {
            let cmdline = self.input.cmdline;
            let option = cmdline
                .load
                .iter()
                .chain(&cmdline.load_post)
                .find(|l| &l.name == name)
                .map(|l| l.option.clone())
                .unwrap_or_else(|| format!("kmodinit.load={name}"));
            let error = PlanError::NotInImage {
                module: name.clone(),
                option,
            };
            self.refuse(name, error)?;
            return Ok(name.clone());
        }
        if candidates.is_empty() {
            let error = PlanError::UnknownEntry {
                chain: chain.name.clone(),
                position: pos,
                name: name.clone(),
            };
            self.refuse(name, error)?;
            return Ok(name.clone());
        }
        let all = candidates.clone();
        let (usable, excluded) = self.rank_candidates(candidates, None, false);
        let chosen = match usable.first() {
            Some(c) => c.clone(),
            None => {
                // Every candidate is excluded. One that is merely blocked
                // keeps the chain's intent visible (the blocklist check or a
                // Blacklisted node reports it); none in the index is an error.
                match all.iter().find(|c| self.known(c)) {
                    Some(c) => c.clone(),
                    None => {
                        let error = PlanError::AliasWithoutFile {
                            chain: chain.name.clone(),
                            position: pos,
                            name: name.clone(),
                            candidates: all,
                        };
                        self.refuse(name, error)?;
                        return Ok(name.clone());
                    }
                }
            }
        };
        let text = self.choice_text(&chosen, &usable, &excluded, false);
        self.notes.push(format!(
            "chain {:?} entry {pos}: alias {name} → {text}",
            chain.name
        ));
        Ok(chosen)
    }

    /// The manifest's `softdeps` overrides name modules the index knows,
    /// and each `pre`/`post` name matches something: an error in
    /// [`Mode::Strict`] (the image builder), a note at boot.
    pub(super) fn check_softdep_overrides(&mut self) -> Result<(), PlanError> {
        let manifest = self.input.manifest;
        for (module, spec) in &manifest.softdeps {
            let mut problems = Vec::new();
            if !self.known(module) {
                problems.push(PlanError::UnknownSoftdepOverride {
                    module: module.clone(),
                    target: None,
                });
            }
            for t in spec.pre.iter().chain(&spec.post) {
                if self.input.index.resolve(t).is_empty() {
                    problems.push(PlanError::UnknownSoftdepOverride {
                        module: module.clone(),
                        target: Some(t.clone()),
                    });
                }
            }
            for p in problems {
                if self.mode == Mode::Strict {
                    return Err(p);
                }
                self.notes.push(format!("{p}; ignored"));
            }
        }
        Ok(())
    }
}

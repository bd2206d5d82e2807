//! Names to modules: chain entries and softdep aliases resolved against the
//! index (module, builtin, already loaded or alias), the deterministic choice
//! among several candidates and the note that explains it, and the check of
//! the manifest's softdep overrides.

use std::fmt::Write as _;

use super::builder::{Builder, ResolvedEntry};
use super::{Alternative, Mode, PlanError};
use crate::manifest::ChainSpec;
use crate::name::ModuleName;

impl Builder<'_> {
    pub(super) fn known(&self, name: &ModuleName) -> bool {
        self.input.index.contains(name) || self.input.loaded.contains(name)
    }

    pub(super) fn free(&self, name: &ModuleName) -> bool {
        self.input.index.is_builtin(name) || self.input.loaded.contains(name)
    }

    /// Splits alias matches into usable ones, best first (builtin or
    /// already loaded, then by name), and excluded ones with the reason.
    pub(super) fn rank_candidates(
        &self,
        candidates: Vec<ModuleName>,
        itself: Option<&ModuleName>,
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
        usable.sort_by_key(|c| (!self.free(c), c.clone()));
        (usable, excluded)
    }

    /// `"a, b (all loaded, as modprobe loads every match; not used: c: why)"`
    /// for notes: what an alias resolved to.
    pub(super) fn matches_text(
        usable: &[ModuleName],
        excluded: &[(ModuleName, &'static str)],
    ) -> String {
        let names: Vec<&str> = usable.iter().map(ModuleName::as_str).collect();
        let mut t = names.join(", ");
        let mut extra = Vec::new();
        if usable.len() > 1 {
            extra.push("all loaded, as modprobe loads every match".to_owned());
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

    /// What a chain entry means in kmod's lookup order: a `modules.dep`
    /// module, else [`crate::DepIndex::resolve`]'s matches, else a module
    /// already loaded under that name.
    fn entry_matches(&self, name: &ModuleName) -> Vec<ModuleName> {
        if self.input.index.module(name).is_some() {
            return vec![name.clone()];
        }
        let found = self.input.index.resolve(name.as_str());
        if found.is_empty() && self.input.loaded.contains(name) {
            return vec![name.clone()];
        }
        found
    }

    /// Resolves every chain entry to its modules.
    pub(super) fn resolve_chains(&mut self) -> Result<Vec<ResolvedEntry>, PlanError> {
        let manifest = self.input.manifest;
        let mut out = Vec::new();
        for (ci, chain) in manifest.chains.iter().enumerate() {
            for (pos, entry) in chain.modules.iter().enumerate() {
                if self.skip_chains.contains_key(&ci) {
                    // Not loaded: resolved quietly, never refused.
                    let (usable, _) = self.rank_candidates(self.entry_matches(&entry.name), None);
                    let module = usable
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| entry.name.clone());
                    out.push(ResolvedEntry {
                        chain: ci,
                        position: pos,
                        module,
                        alternative: None,
                    });
                    continue;
                }
                let (module, alternative) = self.resolve_entry(chain, pos, &entry.name)?;
                out.push(ResolvedEntry {
                    chain: ci,
                    position: pos,
                    module,
                    alternative,
                });
            }
        }
        Ok(out)
    }

    /// The chain's own module for an entry and, when the entry is an alias
    /// with several usable matches, all of them.
    pub(super) fn resolve_entry(
        &mut self,
        chain: &ChainSpec,
        pos: usize,
        name: &ModuleName,
    ) -> Result<(ModuleName, Option<Alternative>), PlanError> {
        let candidates = self.entry_matches(name);
        if candidates.as_slice() == std::slice::from_ref(name) {
            return Ok((name.clone(), None));
        }
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
            return Ok((name.clone(), None));
        }
        if candidates.is_empty() {
            let error = PlanError::UnknownEntry {
                chain: chain.name.clone(),
                position: pos,
                name: name.clone(),
            };
            self.refuse(name, error)?;
            return Ok((name.clone(), None));
        }
        let all = candidates.clone();
        let (usable, excluded) = self.rank_candidates(candidates, None);
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
                        return Ok((name.clone(), None));
                    }
                }
            }
        };
        let text = if usable.is_empty() {
            Self::matches_text(std::slice::from_ref(&chosen), &excluded)
        } else {
            Self::matches_text(&usable, &excluded)
        };
        self.notes.push(format!(
            "chain {:?} entry {pos}: alias {name} → {text}",
            chain.name
        ));
        let alternative = (usable.len() > 1).then(|| Alternative {
            alias: name.to_string(),
            providers: sorted(&usable),
        });
        Ok((chosen, alternative))
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

/// `names`, sorted by name.
pub(super) fn sorted(names: &[ModuleName]) -> Vec<ModuleName> {
    let mut v = names.to_vec();
    v.sort();
    v
}

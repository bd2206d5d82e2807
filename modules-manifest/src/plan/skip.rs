//! The command line's `kmodinit.skip=`: the entries of skipped chains, and
//! required chains that only a skip breaks, made optional.

use std::collections::{BTreeMap, BTreeSet};

use super::builder::{Builder, Draft, ResolvedEntry};
use super::{Action, Reason};

impl Builder<'_> {
    /// The entries of chains skipped on the command line: a node the other
    /// chains need anyway keeps loading (noted); every other entry becomes
    /// an [`Action::Skipped`] node without edges, so the report lists it.
    pub(super) fn add_skipped_chains(&mut self, entries: &[ResolvedEntry]) {
        let manifest = self.input.manifest;
        for e in entries {
            let chain = &manifest.chains[e.chain];
            let option = self.skip_chains.get(&e.chain).cloned().unwrap_or_default();
            let id = match self.ids.get(&e.module) {
                Some(&id) => {
                    if !matches!(self.drafts[id].action, Action::Skipped { .. }) {
                        self.notes.push(format!(
                            "chain {:?} is skipped ({option}), but its entry {} loads anyway: \
                             another chain needs it",
                            chain.name, e.module
                        ));
                    }
                    id
                }
                None => {
                    let id = self.drafts.len();
                    self.drafts.push(Draft {
                        name: e.module.clone(),
                        action: Action::Skipped {
                            option: option.clone(),
                        },
                        reasons: Vec::new(),
                        preds: BTreeMap::new(),
                        alternative: None,
                    });
                    self.ids.insert(e.module.clone(), id);
                    id
                }
            };
            self.reason(
                id,
                Reason::Chain {
                    chain: chain.name.clone(),
                    position: e.position,
                },
            );
        }
        for (&ci, option) in &self.skip_chains {
            self.notes.push(format!(
                "chain {:?} skipped on the command line ({option}): its entries are not loaded",
                manifest.chains[ci].name
            ));
        }
    }

    /// A required chain that cannot complete only because the user skipped
    /// a module it needs (or the chain itself) on the command line is made
    /// optional in the plan, with a note. Why here and not when failures
    /// are counted: the loader and PID 1 both read `required` from the plan,
    /// so one decision serves both, and it is sound: such a chain cannot
    /// complete whatever else happens, because the user asked for that, so
    /// its completion can no longer be the reason to run `on_failure`. Its
    /// other modules still load and a failure among them is logged and
    /// reported, as in any optional chain; a broken root still fails at the
    /// mount. `modprobe.blacklist` keeps its old meaning (the chain fails).
    pub(super) fn excuse_skipped_required_chains(&mut self, blocking: &[BTreeSet<usize>]) {
        let manifest = self.input.manifest;
        for (ci, chain) in manifest.chains.iter().enumerate() {
            if !chain.required {
                continue;
            }
            let by = if let Some(option) = self.skip_chains.get(&ci) {
                Some(option.clone())
            } else {
                blocking[ci]
                    .iter()
                    .find_map(|&id| match &self.drafts[id].action {
                        Action::Skipped { option } => {
                            Some(format!("{option}: {}", self.drafts[id].name))
                        }
                        _ => None,
                    })
            };
            if let Some(by) = by {
                self.required[ci] = false;
                self.notes.push(format!(
                    "required chain {:?} cannot complete: skipped on the command line ({by}); \
                     the user asked for it, so it does not trigger on_failure",
                    chain.name
                ));
            }
        }
        // A skip that matched nothing is a typo worth a word.
        for (module, option) in &self.skip_modules {
            let chain_too = self.skip_chains.values().any(|o| o == option);
            match self.ids.get(module).map(|&id| &self.drafts[id].action) {
                Some(Action::Skipped { .. }) => {}
                Some(Action::Builtin) => self.notes.push(format!(
                    "{option}: {module} is built into the kernel; it cannot be skipped"
                )),
                Some(Action::AlreadyLoaded) => self.notes.push(format!(
                    "{option}: {module} is already loaded; it cannot be skipped"
                )),
                Some(_) => {}
                None if chain_too => {}
                None => self.notes.push(format!(
                    "{option}: no chain or planned module of that name; ignored"
                )),
            }
        }
    }
}

//! The graph's edges: chain entries and chain order, then the
//! `modules.dep` dependencies and softdeps of every module to insert, and
//! what each chain needs through them (and the blocklist check on that).

use std::collections::BTreeSet;

use super::builder::{Builder, ResolvedEntry};
use super::{EdgeKind, PlanError, Reason};
use crate::depmod::SoftDep;
use crate::name::ModuleName;

impl Builder<'_> {
    pub(super) fn add_chains(&mut self, entries: &[ResolvedEntry]) -> Result<(), PlanError> {
        let manifest = self.input.manifest;
        let mut prev: Option<(usize, usize)> = None; // (chain, node)
        for e in entries {
            let chain = &manifest.chains[e.chain];
            let id = match self.node(&e.module) {
                Some(id) => id,
                None => {
                    let error = PlanError::EntryNotInIndex {
                        chain: chain.name.clone(),
                        position: e.position,
                        module: e.module.clone(),
                    };
                    self.refuse(&e.module, error.clone())?;
                    self.unplannable_node(&e.module, error)
                }
            };
            self.reason(
                id,
                Reason::Chain {
                    chain: chain.name.clone(),
                    position: e.position,
                },
            );
            if let Some((pc, pid)) = prev {
                // The command line's modules are independent of each other:
                // one that fails must not keep the next from loading.
                if pc == e.chain
                    && Some(e.chain) != self.cmdline_chain
                    && Some(e.chain) != self.post_chain
                {
                    self.edge(pid, id, EdgeKind::Chain);
                    self.chain_edges.insert((pid, id), chain.name.clone());
                }
            }
            prev = Some((e.chain, id));
        }
        Ok(())
    }

    /// Adds dependencies and `pre:` softdeps until nothing new turns up.
    pub(super) fn expand(&mut self) -> Result<(), PlanError> {
        let index = self.input.index;
        while let Some(id) = self.queue.pop_front() {
            let name = self.drafts[id].name.clone();
            let Some(entry) = index.module(&name) else {
                continue;
            };
            for dep in &entry.deps {
                if *dep == name {
                    let error = PlanError::SelfDependency {
                        module: name.clone(),
                    };
                    self.refuse(&name, error)?;
                    continue;
                }
                let dep_id = match self.node(dep) {
                    Some(id) => id,
                    None => {
                        let error = PlanError::MissingDependency {
                            module: name.clone(),
                            dependency: dep.clone(),
                        };
                        self.refuse(dep, error.clone())?;
                        self.unplannable_node(dep, error)
                    }
                };
                self.edge(dep_id, id, EdgeKind::Dependency);
                self.reason(
                    dep_id,
                    Reason::DependencyOf {
                        module: name.clone(),
                    },
                );
            }
            let overridden = self.input.manifest.softdeps.get(&name);
            let soft = match overridden {
                Some(o) => {
                    let was = index
                        .softdep(&name)
                        .map(|s| format!("pre: {} post: {}", s.pre.join(" "), s.post.join(" ")))
                        .unwrap_or_else(|| "none".to_owned());
                    self.notes.push(format!(
                        "softdep {name}: manifest override used (pre: {} post: {}); the index's \
                         softdeps ({was}) are not",
                        o.pre.join(" "),
                        o.post.join(" ")
                    ));
                    SoftDep {
                        pre: o.pre.clone(),
                        post: o.post.clone(),
                        ignored: Vec::new(),
                    }
                }
                None => match index.softdep(&name) {
                    Some(s) => s.clone(),
                    None => continue,
                },
            };
            for alias in &soft.pre {
                let candidates = index.resolve(alias);
                let (usable, excluded) = self.rank_candidates(candidates, Some(&name), true);
                let Some(chosen) = usable.first().cloned() else {
                    let why = if excluded.is_empty() {
                        "nothing in the index matches".to_owned()
                    } else {
                        let ex: Vec<String> =
                            excluded.iter().map(|(m, r)| format!("{m}: {r}")).collect();
                        format!("no usable match ({})", ex.join(", "))
                    };
                    self.notes
                        .push(format!("softdep {name} pre: {alias} skipped: {why}"));
                    continue;
                };
                let Some(soft_id) = self.node(&chosen) else {
                    // rank_candidates keeps only modules the index knows.
                    continue;
                };
                let normalised_alias = ModuleName::new(alias).ok();
                if usable.len() > 1
                    || !excluded.is_empty()
                    || normalised_alias.as_ref() != Some(&chosen)
                {
                    let text = self.choice_text(&chosen, &usable, &excluded, true);
                    self.notes
                        .push(format!("softdep {name} pre: {alias} → {text}"));
                }
                self.edge(soft_id, id, EdgeKind::Softdep);
                self.reason(
                    soft_id,
                    Reason::SoftdepOf {
                        module: name.clone(),
                        alias: alias.clone(),
                    },
                );
            }
            if overridden.is_some() {
                // A manifest override's post: softdeps load after the
                // module; the Softdep edge makes neither block the other.
                for alias in &soft.post {
                    let (usable, _) = self.rank_candidates(index.resolve(alias), Some(&name), true);
                    let Some(chosen) = usable.first().cloned() else {
                        self.notes.push(format!(
                            "softdep {name} post: {alias} skipped: no usable match"
                        ));
                        continue;
                    };
                    let Some(post_id) = self.node(&chosen) else {
                        continue;
                    };
                    self.edge(id, post_id, EdgeKind::Softdep);
                    self.reason(
                        post_id,
                        Reason::SoftdepOf {
                            module: name.clone(),
                            alias: alias.clone(),
                        },
                    );
                }
            } else if !soft.post.is_empty() {
                self.notes.push(format!(
                    "softdep {name} post: {} not loaded (kmodinit loads only pre: softdeps)",
                    soft.post.join(" ")
                ));
            }
            if !soft.ignored.is_empty() {
                self.notes.push(format!(
                    "softdep {name}: {} ignored (no pre:/post: keyword; kmod ignores these too)",
                    soft.ignored.join(" ")
                ));
            }
        }
        Ok(())
    }

    /// `rd.driver.post=`: each entry of the post chain comes after every
    /// node another chain needs (a Softdep edge: after it, whether it loaded
    /// or not), except the nodes that need the entry themselves (that would
    /// be a cycle); chains skipped on the command line do not count. An
    /// entry another chain needs anyway loads with that chain, as it would
    /// under dracut (udev loads it first); a note says so.
    pub(super) fn order_post_chain(&mut self) {
        let Some(post) = self.post_chain else {
            return;
        };
        let manifest = self.input.manifest;
        let post_name = manifest.chains[post].name.clone();
        let needs = self.chain_needs(false);
        let mut others: BTreeSet<usize> = BTreeSet::new();
        // A chain the user skipped loads nothing of its own.
        let skipped: BTreeSet<usize> = self.skip_chains.keys().copied().collect();
        let counts = |ci: usize| ci != post && !skipped.contains(&ci);
        for (ci, set) in needs.iter().enumerate() {
            if counts(ci) {
                others.extend(set);
            }
        }
        let entries: Vec<usize> = (0..self.drafts.len())
            .filter(|&id| {
                self.drafts[id]
                    .reasons
                    .iter()
                    .any(|r| matches!(r, Reason::Chain { chain, .. } if *chain == post_name))
            })
            .collect();
        for p in entries {
            let name = self.drafts[p].name.clone();
            if others.contains(&p) {
                let by: Vec<&str> = needs
                    .iter()
                    .enumerate()
                    .filter(|(ci, set)| counts(*ci) && set.contains(&p))
                    .map(|(ci, _)| manifest.chains[ci].name.as_str())
                    .collect();
                self.notes.push(format!(
                    "rd.driver.post={name}: chain {} needs it, so it loads with that chain, \
                     not after the others",
                    by.join(", ")
                ));
                continue;
            }
            // The nodes that come after p (recomputed per entry: the edges
            // added for an earlier entry count).
            let mut after: BTreeSet<usize> = BTreeSet::new();
            let mut stack = vec![p];
            while let Some(id) = stack.pop() {
                for (succ, d) in self.drafts.iter().enumerate() {
                    if d.preds.contains_key(&id) && after.insert(succ) {
                        stack.push(succ);
                    }
                }
            }
            for &o in &others {
                if o != p && !after.contains(&o) {
                    self.edge(o, p, EdgeKind::Softdep);
                }
            }
        }
    }

    /// For every chain, the nodes it needs: its entries and everything that
    /// must finish before them (with `blocking_only`, only through edges
    /// whose failure blocks: Dependency and Chain, not Softdep).
    pub(super) fn chain_needs(&self, blocking_only: bool) -> Vec<BTreeSet<usize>> {
        let manifest = self.input.manifest;
        manifest
            .chains
            .iter()
            .map(|chain| {
                let mut seen = BTreeSet::new();
                // The chain's entries, under their resolved names.
                let mut stack: Vec<usize> = self
                    .drafts
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| {
                        d.reasons.iter().any(
                            |r| matches!(r, Reason::Chain { chain: c, .. } if *c == chain.name),
                        )
                    })
                    .map(|(id, _)| id)
                    .collect();
                while let Some(id) = stack.pop() {
                    if seen.insert(id) {
                        stack.extend(
                            self.drafts[id]
                                .preds
                                .iter()
                                .filter(|(_, &k)| !(blocking_only && k == EdgeKind::Softdep))
                                .map(|(&p, _)| p),
                        );
                    }
                }
                seen
            })
            .collect()
    }

    pub(super) fn check_blocklist(&mut self, needed: &[BTreeSet<usize>]) -> Result<(), PlanError> {
        let manifest = self.input.manifest;
        for blocked in &manifest.blocklist {
            let Some(&id) = self.ids.get(blocked) else {
                continue;
            };
            let chain = needed
                .iter()
                .position(|set| set.contains(&id))
                .map(|c| manifest.chains[c].name.clone());
            let error = PlanError::Blocklisted {
                module: blocked.clone(),
                chain,
                needed_as: self.drafts[id].reasons.clone(),
            };
            self.refuse(blocked, error)?;
        }
        Ok(())
    }
}

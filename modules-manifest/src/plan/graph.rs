//! The graph's edges: chain entries and chain order, then the
//! `modules.dep` dependencies and softdeps of every module to insert, and
//! what each chain needs through them (and the blocklist check on that).

use std::collections::BTreeSet;

use super::builder::{Builder, ResolvedEntry};
use super::resolve::sorted;
use super::{Alternative, EdgeKind, PlanError, Reason};
use crate::depmod::SoftDep;
use crate::name::ModuleName;

/// Which side of its module a softdep loads on.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Pre,
    Post,
}

impl Builder<'_> {
    pub(super) fn add_chains(&mut self, entries: &[ResolvedEntry]) -> Result<(), PlanError> {
        let manifest = self.input.manifest;
        // The previous entry of the same chain: (chain, its node, the other
        // matches of its alias).
        let mut prev: Option<(usize, usize, Vec<usize>)> = None;
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
            // The other matches of an alias entry load alongside the
            // chain's own node: Softdep edges keep the chain's order
            // without letting their failure block it.
            let mut others = Vec::new();
            if let Some(alt) = &e.alternative {
                self.alternative(id, alt);
                for m in alt.providers.iter().filter(|m| **m != e.module) {
                    let Some(other) = self.node(m) else { continue };
                    self.alternative(other, alt);
                    self.reason(
                        other,
                        Reason::ChainAlias {
                            chain: chain.name.clone(),
                            position: e.position,
                            alias: alt.alias.clone(),
                        },
                    );
                    others.push(other);
                }
            }
            if let Some((pc, pid, prev_others)) = &prev {
                // The command line's modules are independent of each other:
                // one that fails must not keep the next from loading.
                if *pc == e.chain
                    && Some(e.chain) != self.cmdline_chain
                    && Some(e.chain) != self.post_chain
                {
                    self.edge(*pid, id, EdgeKind::Chain);
                    self.chain_edges.insert((*pid, id), chain.name.clone());
                    for &o in &others {
                        self.edge(*pid, o, EdgeKind::Softdep);
                    }
                    for &o in prev_others {
                        self.edge(o, id, EdgeKind::Softdep);
                    }
                }
            }
            prev = Some((e.chain, id, others));
        }
        Ok(())
    }

    /// Adds dependencies and `pre:`/`post:` softdeps until nothing new
    /// turns up.
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
            self.add_softdeps(id, &name, &soft.pre, Direction::Pre);
            self.add_softdeps(id, &name, &soft.post, Direction::Post);
            if !soft.ignored.is_empty() {
                self.notes.push(format!(
                    "softdep {name}: {} ignored (no pre:/post: keyword; kmod ignores these too)",
                    soft.ignored.join(" ")
                ));
            }
        }
        Ok(())
    }

    /// Adds every usable match of each softdep name of module `id` (kmod's
    /// lookup: [`crate::DepIndex::resolve`]), with a `Softdep` edge: before
    /// the module for `pre:`, after it for `post:`. Neither blocks the
    /// other. An alias with several matches marks each an alternative.
    fn add_softdeps(&mut self, id: usize, name: &ModuleName, aliases: &[String], dir: Direction) {
        let word = match dir {
            Direction::Pre => "pre",
            Direction::Post => "post",
        };
        for alias in aliases {
            let candidates = self.input.index.resolve(alias);
            let (usable, excluded) = self.rank_candidates(candidates, Some(name));
            if usable.is_empty() {
                let why = if excluded.is_empty() {
                    "nothing in the index matches".to_owned()
                } else {
                    let ex: Vec<String> =
                        excluded.iter().map(|(m, r)| format!("{m}: {r}")).collect();
                    format!("no usable match ({})", ex.join(", "))
                };
                self.notes
                    .push(format!("softdep {name} {word}: {alias} skipped: {why}"));
                continue;
            }
            let normalised_alias = ModuleName::new(alias).ok();
            if usable.len() > 1
                || !excluded.is_empty()
                || normalised_alias.as_ref() != usable.first()
            {
                let text = Self::matches_text(&usable, &excluded);
                self.notes
                    .push(format!("softdep {name} {word}: {alias} → {text}"));
            }
            let alternative = (usable.len() > 1).then(|| Alternative {
                alias: alias.clone(),
                providers: sorted(&usable),
            });
            for m in &usable {
                // rank_candidates keeps only modules the index knows.
                let Some(soft_id) = self.node(m) else {
                    continue;
                };
                // A softdep against a modules.dep edge cannot be ordered
                // (`post:` a dependency of the module, `pre:` a module that
                // depends on it): kmod loads it where the dependency puts
                // it (it meets it already visited); so does the plan,
                // instead of a cycle.
                let needs = |a: &ModuleName, b: &ModuleName| {
                    self.input
                        .index
                        .module(a)
                        .is_some_and(|e| e.deps.contains(b))
                };
                let against = match dir {
                    Direction::Pre => needs(m, name),
                    Direction::Post => needs(name, m),
                };
                if against {
                    self.notes.push(format!(
                        "softdep {name} {word}: {m} not ordered {word} {name}: \
                         modules.dep orders them the other way"
                    ));
                } else {
                    match dir {
                        Direction::Pre => self.edge(soft_id, id, EdgeKind::Softdep),
                        Direction::Post => self.edge(id, soft_id, EdgeKind::Softdep),
                    }
                }
                if let Some(alt) = &alternative {
                    self.alternative(soft_id, alt);
                }
                self.reason(
                    soft_id,
                    Reason::SoftdepOf {
                        module: name.clone(),
                        alias: alias.clone(),
                    },
                );
            }
        }
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

//! The plan while it is being built: [`Builder`] holds the draft nodes
//! (ids in discovery order) and their edges, creates nodes, records modules
//! that cannot be planned, and finally turns the drafts into a [`Plan`] in
//! topological order. The steps that fill it live in the sibling files.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::{
    Action, Alternative, Edge, EdgeKind, Mode, NodeId, Plan, PlanChain, PlanError, PlanInput,
    PlanNode, Reason,
};
use crate::name::ModuleName;

/// A node while the graph is being built; ids are discovery order.
#[derive(Debug)]
pub(super) struct Draft {
    pub(super) name: ModuleName,
    pub(super) action: Action,
    pub(super) reasons: Vec<Reason>,
    /// Predecessor id → strongest edge kind.
    pub(super) preds: BTreeMap<usize, EdgeKind>,
    /// The first alias with several matches this module is one of.
    pub(super) alternative: Option<Alternative>,
}

#[derive(Debug)]
pub(super) struct Builder<'a> {
    pub(super) input: PlanInput<'a>,
    pub(super) drafts: Vec<Draft>,
    pub(super) ids: HashMap<ModuleName, usize>,
    /// Nodes whose dependencies and softdeps are still to be added.
    pub(super) queue: VecDeque<usize>,
    /// (from, to) → chain name, to explain chain edges in cycle messages.
    pub(super) chain_edges: HashMap<(usize, usize), String>,
    pub(super) notes: Vec<String>,
    pub(super) mode: Mode,
    /// [`Mode::AtBoot`]: modules that cannot be planned, with the first
    /// reason found; their nodes get [`Action::Unplannable`].
    pub(super) unplannable: HashMap<ModuleName, PlanError>,
    /// The chain `kmodinit.load=` added (index into the manifest's chains).
    pub(super) cmdline_chain: Option<usize>,
    /// The chain `rd.driver.post=` added (index into the manifest's chains).
    pub(super) post_chain: Option<usize>,
    /// `kmodinit.skip=` names that are modules: module → the option text.
    pub(super) skip_modules: BTreeMap<ModuleName, String>,
    /// `kmodinit.skip=` names that are chains: chain index → option text.
    pub(super) skip_chains: BTreeMap<usize, String>,
    /// Per chain: required in the plan (the manifest's `required`, unless
    /// the user's skip broke it: see `excuse_skipped_required_chains`).
    pub(super) required: Vec<bool>,
}

/// A chain entry after alias resolution.
#[derive(Debug)]
pub(super) struct ResolvedEntry {
    pub(super) chain: usize,
    pub(super) position: usize,
    /// The chain's own node for the entry.
    pub(super) module: ModuleName,
    /// The entry is an alias with several usable matches: all of them (the
    /// chain's own node among them), loaded alongside.
    pub(super) alternative: Option<Alternative>,
}

fn kind_rank(k: EdgeKind) -> u8 {
    match k {
        EdgeKind::Dependency => 2,
        EdgeKind::Chain => 1,
        EdgeKind::Softdep => 0,
    }
}

impl<'a> Builder<'a> {
    pub(super) fn new(input: PlanInput<'a>, mode: Mode) -> Self {
        let mut b = Builder {
            input,
            drafts: Vec::new(),
            ids: HashMap::new(),
            queue: VecDeque::new(),
            chain_edges: HashMap::new(),
            notes: Vec::new(),
            mode,
            unplannable: HashMap::new(),
            cmdline_chain: None,
            post_chain: None,
            skip_modules: BTreeMap::new(),
            skip_chains: BTreeMap::new(),
            required: input.manifest.chains.iter().map(|c| c.required).collect(),
        };
        for s in &input.cmdline.skip {
            let mut matched = false;
            for (ci, c) in input.manifest.chains.iter().enumerate() {
                if c.name == s.name {
                    b.skip_chains.entry(ci).or_insert_with(|| s.option.clone());
                    matched = true;
                }
            }
            match ModuleName::new(&s.name) {
                Ok(m) => {
                    b.skip_modules.entry(m).or_insert_with(|| s.option.clone());
                }
                Err(_) if matched => {}
                Err(e) => b.notes.push(format!(
                    "{}: no chain of that name, and not a module name ({e}); ignored",
                    s.option
                )),
            }
        }
        b
    }

    /// `module` cannot be planned: [`Mode::Strict`] fails with `error`;
    /// [`Mode::AtBoot`] records it (the first reason wins) and makes the
    /// module's node, now or when it is created, [`Action::Unplannable`].
    pub(super) fn refuse(
        &mut self,
        module: &ModuleName,
        error: PlanError,
    ) -> Result<(), PlanError> {
        if self.mode == Mode::Strict {
            return Err(error);
        }
        let error = self
            .unplannable
            .entry(module.clone())
            .or_insert(error)
            .clone();
        if let Some(&id) = self.ids.get(module) {
            let action = &mut self.drafts[id].action;
            if !matches!(action, Action::Unplannable { .. }) {
                *action = Action::Unplannable { error };
            }
        }
        Ok(())
    }

    /// The node of `name`, created (and queued for expansion) if new.
    /// `None` if the index does not know the module.
    pub(super) fn node(&mut self, name: &ModuleName) -> Option<usize> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        let index = self.input.index;
        let action = if let Some(error) = self.unplannable.get(name) {
            Action::Unplannable {
                error: error.clone(),
            }
        } else if index.is_builtin(name) {
            Action::Builtin
        } else if self.input.loaded.contains(name) {
            Action::AlreadyLoaded
        } else if let Some(option) = self.skip_modules.get(name) {
            // Only a module the index knows (it would have been inserted).
            index.module(name)?;
            Action::Skipped {
                option: option.clone(),
            }
        } else if self.input.cmdline.blacklist.contains(name) {
            Action::Blacklisted
        } else {
            let entry = index.module(name)?;
            Action::Insert {
                path: entry.path.clone(),
                compression: entry.compression,
            }
        };
        let id = self.drafts.len();
        if matches!(action, Action::Insert { .. }) {
            self.queue.push_back(id);
        }
        self.drafts.push(Draft {
            name: name.clone(),
            action,
            reasons: Vec::new(),
            preds: BTreeMap::new(),
            alternative: None,
        });
        self.ids.insert(name.clone(), id);
        Some(id)
    }

    /// The node of a module that [`Builder::node`] cannot create (not in
    /// the index) and [`Builder::refuse`] just recorded with `error`.
    pub(super) fn unplannable_node(&mut self, name: &ModuleName, error: PlanError) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.drafts.len();
        self.drafts.push(Draft {
            name: name.clone(),
            action: Action::Unplannable { error },
            reasons: Vec::new(),
            preds: BTreeMap::new(),
            alternative: None,
        });
        self.ids.insert(name.clone(), id);
        id
    }

    pub(super) fn edge(&mut self, from: usize, to: usize, kind: EdgeKind) {
        let slot = self.drafts[to].preds.entry(from).or_insert(kind);
        if kind_rank(kind) > kind_rank(*slot) {
            *slot = kind;
        }
    }

    /// Marks `id` as one of the matches of `alt` (the first alias wins).
    pub(super) fn alternative(&mut self, id: usize, alt: &Alternative) {
        let slot = &mut self.drafts[id].alternative;
        if slot.is_none() {
            *slot = Some(alt.clone());
        }
    }

    pub(super) fn reason(&mut self, id: usize, reason: Reason) {
        let reasons = &mut self.drafts[id].reasons;
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }

    pub(super) fn finish(
        self,
        entries: &[ResolvedEntry],
        needed: &[BTreeSet<usize>],
        blocking: &[BTreeSet<usize>],
        order: &[usize],
        params: &BTreeMap<ModuleName, String>,
    ) -> Plan {
        let manifest = self.input.manifest;
        let mut new_id = vec![0usize; self.drafts.len()];
        for (new, &old) in order.iter().enumerate() {
            new_id[old] = new;
        }
        let required_chains: Vec<usize> = (0..manifest.chains.len())
            .filter(|&c| self.required[c])
            .collect();
        let cmdline_chain = self.cmdline_chain.map(|c| manifest.chains[c].name.as_str());
        let mut notes = self.notes.clone();
        for (old, d) in self.drafts.iter().enumerate() {
            if d.action == Action::Blacklisted {
                let chains: Vec<&str> = (0..manifest.chains.len())
                    .filter(|&c| needed[c].contains(&old))
                    .map(|c| manifest.chains[c].name.as_str())
                    .collect();
                notes.push(format!(
                    "{} is blacklisted on the kernel command line (modprobe.blacklist): not loaded; \
                     chains that need it ({}) will not complete",
                    d.name,
                    chains.join(", ")
                ));
            }
            if let Action::Unplannable { error } = &d.action {
                notes.push(format!(
                    "{} cannot be planned, it fails and what needs it is blocked: {error}",
                    d.name
                ));
            }
            // Params only reach the kernel with an insert; say so rather
            // than drop them silently.
            let declared = params.get(&d.name).filter(|p| !p.is_empty());
            match (&d.action, declared) {
                (Action::Builtin, Some(p)) => notes.push(format!(
                    "{} is builtin: parameters \"{p}\" cannot be applied by kmodinit; \
                     put them on the kernel command line as {}.PARAM=VALUE",
                    d.name, d.name
                )),
                (Action::AlreadyLoaded, Some(p)) => notes.push(format!(
                    "{} is already loaded: parameters \"{p}\" are not applied",
                    d.name
                )),
                _ => {}
            }
        }
        let mut nodes: Vec<PlanNode> = order
            .iter()
            .enumerate()
            .map(|(new, &old)| {
                let d = &self.drafts[old];
                let mut preds: Vec<Edge> = d
                    .preds
                    .iter()
                    .map(|(&p, &kind)| Edge {
                        from: new_id[p],
                        kind,
                    })
                    .collect();
                preds.sort_by_key(|e| e.from);
                PlanNode {
                    id: new,
                    name: d.name.clone(),
                    action: d.action.clone(),
                    params: params.get(&d.name).cloned().unwrap_or_default(),
                    required: required_chains.iter().any(|&c| blocking[c].contains(&old)),
                    preds,
                    succs: Vec::new(),
                    reasons: d
                        .reasons
                        .iter()
                        .map(|r| match r {
                            Reason::Chain { chain, .. } | Reason::ChainAlias { chain, .. }
                                if cmdline_chain == Some(chain.as_str()) =>
                            {
                                Reason::Cmdline
                            }
                            r => r.clone(),
                        })
                        .collect(),
                    warnings: Vec::new(),
                    alternative: d.alternative.clone(),
                }
            })
            .collect();
        for i in 0..nodes.len() {
            let preds: Vec<NodeId> = nodes[i].preds.iter().map(|e| e.from).collect();
            for p in preds {
                nodes[p].succs.push(i);
            }
        }
        let chains = manifest
            .chains
            .iter()
            .enumerate()
            .map(|(ci, c)| PlanChain {
                name: c.name.clone(),
                required: self.required[ci],
                nodes: entries
                    .iter()
                    .filter(|e| e.chain == ci)
                    .filter_map(|e| self.ids.get(&e.module).map(|&old| new_id[old]))
                    .collect(),
            })
            .collect();
        Plan {
            nodes,
            chains,
            notes,
        }
    }
}

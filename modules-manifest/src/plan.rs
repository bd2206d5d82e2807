//! The load plan: a DAG of module nodes, built by the pure function [`plan()`].
//!
//! What goes in: every chain entry (a module name or an alias, resolved with
//! [`DepIndex::resolve`]), the transitive `modules.dep` dependencies of every
//! module that will be inserted, and the `pre:` softdeps of those modules
//! (and their own dependencies and softdeps). `post:` softdeps of the index
//! are not loaded; the plan says so in its notes. A manifest `softdeps`
//! override replaces the index's softdeps of its module, and its `post:`
//! names load after the module (a `Softdep` edge: neither blocks the other).
//!
//! The command line adds modules (`kmodinit.load=`, as an optional chain
//! [`CMDLINE_CHAIN`] without chain edges) and skips chains or modules
//! (`kmodinit.skip=`, [`Action::Skipped`]); a required chain broken only by
//! a skip is made optional (see `Builder::excuse_skipped_required_chains`).
//!
//! Edges, all "must finish before": [`EdgeKind::Dependency`] for every module
//! `modules.dep` lists (depmod writes the transitive closure; all of it is
//! kept, which is redundant but never wrong), [`EdgeKind::Softdep`] for a
//! chosen `pre:` softdep, [`EdgeKind::Chain`] from the previous entry of a
//! chain. Between two nodes there is at most one edge; when several reasons
//! apply the strongest kind is kept: Dependency, then Chain, then Softdep.
//!
//! Choosing among several modules for one alias (a softdep like
//! `crypto-crc32c`, or a chain entry that is an alias), deterministically:
//! only candidates the index has a file for (or that are builtin or already
//! loaded) count, minus the module itself, the manifest's `blocklist` and the
//! command line's `modprobe.blacklist`; among those, prefer one a chain names
//! explicitly (softdeps only), then a builtin or already loaded one (it costs
//! nothing), then the first by name. The choice and the alternatives are
//! written to [`Plan::notes`] (booster #64: users must see which `crc32c` they
//! got). A softdep with no candidate left is skipped with a note.
//!
//! Node order: Kahn's algorithm; among ready nodes it takes first what a
//! required chain needs, then by the first chain (in manifest order) that
//! needs it, then in discovery order (chain entries, then dependencies
//! breadth-first). So the same input always gives the same plan, and a
//! loader that starts ready nodes by id serves required chains first.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;

use serde::Serialize;

use crate::cmdline::KernelCmdline;
use crate::depmod::{Compression, DepIndex, SoftDep};
use crate::manifest::{ChainEntry, ChainSpec, Manifest, ManifestError};
use crate::name::ModuleName;

/// Index of a node in [`Plan::nodes`].
pub type NodeId = usize;

/// Everything the planner reads. `loaded` is the set of modules already in
/// `/proc/modules` (empty on the host).
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub manifest: &'a Manifest,
    pub index: &'a DepIndex,
    pub cmdline: &'a KernelCmdline,
    pub loaded: &'a BTreeSet<ModuleName>,
}

/// The plan. Invariants (tested): every module appears in exactly one node;
/// `nodes` is in topological order, so every predecessor of node `i` has an
/// id smaller than `i`; `succs` is the exact reverse of `preds`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub nodes: Vec<PlanNode>,
    pub chains: Vec<PlanChain>,
    /// Human-readable notes: which module a softdep alias resolved to, softdeps
    /// that resolved to nothing, command-line blacklist hits, …
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanNode {
    pub id: NodeId,
    pub name: ModuleName,
    pub action: Action,
    /// The final parameter string: manifest params, then command-line
    /// `name.param=value` entries appended (they win, as with modprobe).
    pub params: String,
    /// True if any required chain cannot complete without this node: it is
    /// an entry of one, or reached from one through Dependency or Chain
    /// edges. A softdep is not required (its failure blocks nothing).
    pub required: bool,
    /// Edges from the nodes that must finish first.
    pub preds: Vec<Edge>,
    /// Nodes that wait for this one.
    pub succs: Vec<NodeId>,
    /// Why the node is in the plan (a chain entry, a dependency of X, …).
    pub reasons: Vec<Reason>,
    /// Warnings about this module for the report (e.g. a command-line
    /// parameter it does not declare). The planner leaves it empty: `/init`
    /// adds what it checks against the image's `modules.params`.
    pub warnings: Vec<String>,
}

/// What the loader must do for a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Insert the file at `path` (relative to the module directory).
    Insert {
        path: String,
        compression: Compression,
    },
    /// Built into the kernel (`modules.builtin`): satisfied, no syscall.
    Builtin,
    /// Already in `/proc/modules`: satisfied, no syscall.
    AlreadyLoaded,
    /// Blacklisted on the kernel command line: not loaded; dependents blocked.
    Blacklisted,
    /// Skipped on the kernel command line (`kmodinit.skip=`, the module or
    /// its chain): not loaded, its own dependencies not planned, dependents
    /// blocked. `option` is the text that asked for it (`kmodinit.skip=ext4`).
    Skipped { option: String },
    /// Cannot be planned ([`plan_at_boot()`] only; [`plan()`] returns the
    /// error instead): not loaded, the loader fails it with `error`'s
    /// message and blocks its dependents. Its own dependencies are planned
    /// only if they were found before the problem was.
    Unplannable { error: PlanError },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub from: NodeId,
    pub kind: EdgeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// From `modules.dep`: the dependent cannot load without it.
    Dependency,
    /// A `pre:` softdep: loaded first, but its failure does not block.
    Softdep,
    /// The previous entry of a chain.
    Chain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    Chain { chain: String, position: usize },
    DependencyOf { module: ModuleName },
    SoftdepOf { module: ModuleName, alias: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanChain {
    pub name: String,
    pub required: bool,
    /// The chain's own entries, in order (not their dependencies).
    pub nodes: Vec<NodeId>,
}

/// Why a module, or the whole manifest, does not plan against the index. The
/// message ([`Display`](std::fmt::Display)) names the module and chain.
///
/// Only [`PlanError::Manifest`] concerns the whole manifest; every other
/// variant concerns the module(s) it names ([`PlanError::is_per_module`]):
/// [`plan()`] fails on either, [`plan_at_boot()`] turns those into
/// [`Action::Unplannable`] nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The manifest fails [`Manifest::check`] (a manifest built in code).
    Manifest(ManifestError),
    /// A chain entry that is neither a module, a builtin nor an alias.
    UnknownEntry {
        chain: String,
        position: usize,
        name: ModuleName,
    },
    /// A chain entry that is an alias of modules none of which the index
    /// has a file for (nor builtin, nor loaded).
    AliasWithoutFile {
        chain: String,
        position: usize,
        name: ModuleName,
        candidates: Vec<ModuleName>,
    },
    /// A chain entry that resolved to a module `modules.dep` has no line for.
    EntryNotInIndex {
        chain: String,
        position: usize,
        module: ModuleName,
    },
    /// One module given two parameter strings (also through an alias):
    /// `first` at JSON path `first_at`, `second` at `second_at`.
    ConflictingParams {
        module: ModuleName,
        first: String,
        first_at: String,
        second: String,
        second_at: String,
    },
    /// `module`'s `modules.dep` line lists `dependency`, which has no line
    /// of its own (is not in the module tree or the image).
    MissingDependency {
        module: ModuleName,
        dependency: ModuleName,
    },
    /// A module on the manifest's `blocklist` that `chain` needs (`None`:
    /// no chain could be named); `needed_as` says how it is reached.
    Blocklisted {
        module: ModuleName,
        chain: Option<String>,
        needed_as: Vec<Reason>,
    },
    /// `modules.dep` lists a module as its own dependency.
    SelfDependency { module: ModuleName },
    /// A module named on the command line (`kmodinit.load=`, `option`)
    /// that the index (the image) does not have.
    NotInImage { module: ModuleName, option: String },
    /// The manifest's `softdeps` names `module`, which the index does not
    /// know (`target: None`), or one of its `pre`/`post` names (`target`)
    /// that nothing in the index matches. [`plan()`] fails; [`plan_at_boot()`]
    /// only notes it (there is no module to fail).
    UnknownSoftdepOverride {
        module: ModuleName,
        target: Option<String>,
    },
    /// Chain order, dependencies and softdeps form a cycle: each link's
    /// `from` must finish before its `to`, and the last link's `to` is the
    /// first link's `from`. Empty when the cycle could not be traced.
    Cycle { links: Vec<CycleLink> },
}

/// One edge of a [`PlanError::Cycle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleLink {
    pub from: ModuleName,
    pub to: ModuleName,
    pub kind: EdgeKind,
    /// For [`EdgeKind::Chain`]: the chain that lists `to` after `from`.
    pub chain: Option<String>,
}

impl PlanError {
    /// True unless the error concerns the whole manifest: the modules it
    /// names ([`PlanError::modules`]) can fail alone at boot.
    pub fn is_per_module(&self) -> bool {
        !matches!(self, PlanError::Manifest(_))
    }

    /// The modules that cannot be planned because of this error: the
    /// unknown entry, the missing dependency (not its dependent), the
    /// module with two parameter strings, the blocklisted module, every
    /// module of a cycle. Empty for [`PlanError::Manifest`].
    pub fn modules(&self) -> Vec<ModuleName> {
        match self {
            PlanError::Manifest(_) => Vec::new(),
            PlanError::UnknownEntry { name, .. } | PlanError::AliasWithoutFile { name, .. } => {
                vec![name.clone()]
            }
            PlanError::EntryNotInIndex { module, .. }
            | PlanError::ConflictingParams { module, .. }
            | PlanError::Blocklisted { module, .. }
            | PlanError::SelfDependency { module }
            | PlanError::NotInImage { module, .. }
            | PlanError::UnknownSoftdepOverride { module, .. } => vec![module.clone()],
            PlanError::MissingDependency { dependency, .. } => vec![dependency.clone()],
            PlanError::Cycle { links } => links.iter().map(|l| l.from.clone()).collect(),
        }
    }
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Manifest(e) => write!(f, "{e}"),
            PlanError::UnknownEntry {
                chain,
                position,
                name,
            } => write!(
                f,
                "chain {chain:?} entry {position} ({name}): no such module or alias in \
                 modules.dep, modules.builtin or modules.alias"
            ),
            PlanError::AliasWithoutFile {
                chain,
                position,
                name,
                candidates,
            } => {
                let list: Vec<&str> = candidates.iter().map(ModuleName::as_str).collect();
                write!(
                    f,
                    "chain {chain:?} entry {position} ({name}): the alias matches {} but the \
                     index has no file for any of them",
                    list.join(", ")
                )
            }
            PlanError::EntryNotInIndex {
                chain,
                position,
                module,
            } => write!(
                f,
                "chain {chain:?} entry {position} ({module}): no such module in modules.dep"
            ),
            PlanError::ConflictingParams {
                module,
                first,
                first_at,
                second,
                second_at,
            } => write!(
                f,
                "module {module} has two different parameter strings: {first:?} at \
                 {first_at} and {second:?} at {second_at}; parameters belong to the module, \
                 declare them once"
            ),
            PlanError::MissingDependency { module, dependency } => write!(
                f,
                "module {module} depends on {dependency} (modules.dep), but {dependency} has \
                 no line of its own in modules.dep"
            ),
            PlanError::Blocklisted {
                module,
                chain,
                needed_as,
            } => {
                let why: Vec<String> = needed_as.iter().map(reason_text).collect();
                write!(
                    f,
                    "module {module} is on the manifest's blocklist, but chain {:?} needs it ({})",
                    chain.as_deref().unwrap_or("?"),
                    why.join(", ")
                )
            }
            PlanError::NotInImage { module, option } => write!(
                f,
                "{option}: {module} is not in the image (no such module or alias in its \
                 modules.dep, modules.builtin or modules.alias); the command line can only \
                 load modules the image holds: add it to the manifest and rebuild"
            ),
            PlanError::UnknownSoftdepOverride {
                module,
                target: None,
            } => write!(
                f,
                "manifest softdeps.{module}: no module {module} in modules.dep or \
                 modules.builtin: the override would never apply"
            ),
            PlanError::UnknownSoftdepOverride {
                module,
                target: Some(t),
            } => write!(
                f,
                "manifest softdeps.{module}: {t} matches no module or alias in the index"
            ),
            PlanError::SelfDependency { module } => write!(
                f,
                "dependency cycle: {module} → {module} (modules.dep lists {module} as its own \
                 dependency)"
            ),
            PlanError::Cycle { links } => {
                let Some(first) = links.first() else {
                    return f.write_str("dependency cycle");
                };
                let mut names: Vec<&str> = links.iter().map(|l| l.from.as_str()).collect();
                names.push(first.from.as_str());
                let why: Vec<String> = links
                    .iter()
                    .map(|l| {
                        let (fr, to) = (&l.from, &l.to);
                        match l.kind {
                            EdgeKind::Chain => format!(
                                "chain {:?} lists {to} after {fr}",
                                l.chain.as_deref().unwrap_or("?")
                            ),
                            EdgeKind::Softdep => format!("{to} has softdep pre: {fr}"),
                            EdgeKind::Dependency => format!("{to} needs {fr} (modules.dep)"),
                        }
                    })
                    .collect();
                write!(
                    f,
                    "dependency cycle: {} ({})",
                    names.join(" → "),
                    why.join("; ")
                )
            }
        }
    }
}

impl std::error::Error for PlanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlanError::Manifest(e) => Some(e),
            _ => None,
        }
    }
}

/// In a serialized plan an error is its message.
impl Serialize for PlanError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The longest path through the plan under a per-node cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriticalPath {
    pub cost: f64,
    pub nodes: Vec<NodeId>,
}

/// Builds the plan. Pure and deterministic. Strict: any module that cannot
/// be planned fails the whole plan (what the image builder wants: it must
/// refuse such an image).
///
/// Errors (each message names the module and chain): a manifest that fails
/// [`Manifest::check`]; a chain entry that is neither a module, a builtin nor
/// an alias of one; a module whose dependency has no `modules.dep` line; a
/// module on the manifest's `blocklist` that a chain needs; one module given
/// two parameter strings (also through an alias); a cycle in chain order +
/// dependencies + softdeps, named like `a → b → a`.
pub fn plan(input: PlanInput<'_>) -> Result<Plan, PlanError> {
    build(input, Mode::Strict)
}

/// Builds the plan as PID 1 needs it at boot: a module that cannot be
/// planned fails alone. Pure and deterministic, like [`plan()`], and equal
/// to it whenever [`plan()`] succeeds.
///
/// Every error of [`plan()`] that concerns modules
/// ([`PlanError::is_per_module`]) instead makes each module it names
/// ([`PlanError::modules`]: the unknown entry, the dependency without a
/// `modules.dep` line, the module with two parameter strings, the
/// blocklisted module, every module of a cycle) a node with
/// [`Action::Unplannable`], and its message a [`Plan::notes`] entry. The
/// node keeps its place in its chains and its edges to what needs it, so
/// the loader fails it and blocks its dependents, and a required chain
/// through it fails; everything else loads. Edges inside a cycle are
/// dropped (the plan stays a DAG).
///
/// Errors only when nothing can be planned: [`PlanError::Manifest`].
pub fn plan_at_boot(input: PlanInput<'_>) -> Result<Plan, PlanError> {
    build(input, Mode::AtBoot)
}

/// What the builder does with a module that cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Fail the plan with the first error.
    Strict,
    /// Make the module an [`Action::Unplannable`] node.
    AtBoot,
}

/// The name of the chain `kmodinit.load=` (and `rd.driver.pre=`,
/// `modules-load=`) adds, unless the manifest has a chain of that name
/// (then `cmdline-2`, `cmdline-3`, …).
pub const CMDLINE_CHAIN: &str = "cmdline";

/// The manifest the plan is built from: `manifest` plus, when the command
/// line asks to load modules, an optional chain of them.
fn with_cmdline_chain(input: &PlanInput<'_>) -> Option<(Manifest, usize)> {
    let load = &input.cmdline.load;
    if load.is_empty() {
        return None;
    }
    let mut m = input.manifest.clone();
    let mut name = CMDLINE_CHAIN.to_owned();
    let mut k = 1;
    while m.chains.iter().any(|c| c.name == name) {
        k += 1;
        name = format!("{CMDLINE_CHAIN}-{k}");
    }
    m.chains.push(ChainSpec {
        name,
        modules: load
            .iter()
            .map(|l| ChainEntry {
                name: l.name.clone(),
                params: None,
            })
            .collect(),
        required: false,
    });
    let at = m.chains.len() - 1;
    Some((m, at))
}

fn build(input: PlanInput<'_>, mode: Mode) -> Result<Plan, PlanError> {
    input.manifest.check().map_err(PlanError::Manifest)?;
    let extended = with_cmdline_chain(&input);
    let (input, cmdline_chain) = match &extended {
        Some((m, at)) => (
            PlanInput {
                manifest: m,
                ..input
            },
            Some(*at),
        ),
        None => (input, None),
    };
    let mut b = Builder::new(input, mode);
    b.cmdline_chain = cmdline_chain;
    b.check_softdep_overrides()?;
    let entries = b.resolve_chains()?;
    let params = b.params(&entries)?;
    let (skipped, active): (Vec<ResolvedEntry>, Vec<ResolvedEntry>) = entries
        .into_iter()
        .partition(|e| b.skip_chains.contains_key(&e.chain));
    b.add_chains(&active)?;
    b.expand()?;
    b.add_skipped_chains(&skipped);
    if mode == Mode::AtBoot {
        b.break_cycles()?;
    }
    let needed = b.chain_needs(false);
    let blocking = b.chain_needs(true);
    b.check_blocklist(&needed)?;
    b.excuse_skipped_required_chains(&blocking);
    let order = b.topo_order(&needed)?;
    let mut entries = active;
    entries.extend(skipped);
    entries.sort_by_key(|e| (e.chain, e.position));
    Ok(b.finish(&entries, &needed, &blocking, &order, &params))
}

/// A node while the graph is being built; ids are discovery order.
#[derive(Debug)]
struct Draft {
    name: ModuleName,
    action: Action,
    reasons: Vec<Reason>,
    /// Predecessor id → strongest edge kind.
    preds: BTreeMap<usize, EdgeKind>,
}

#[derive(Debug)]
struct Builder<'a> {
    input: PlanInput<'a>,
    drafts: Vec<Draft>,
    ids: HashMap<ModuleName, usize>,
    /// Nodes whose dependencies and softdeps are still to be added.
    queue: VecDeque<usize>,
    /// Modules a chain names (after alias resolution): preferred softdep
    /// candidates.
    chain_targets: BTreeSet<ModuleName>,
    /// (from, to) → chain name, to explain chain edges in cycle messages.
    chain_edges: HashMap<(usize, usize), String>,
    notes: Vec<String>,
    mode: Mode,
    /// [`Mode::AtBoot`]: modules that cannot be planned, with the first
    /// reason found; their nodes get [`Action::Unplannable`].
    unplannable: HashMap<ModuleName, PlanError>,
    /// The chain `kmodinit.load=` added (index into the manifest's chains).
    cmdline_chain: Option<usize>,
    /// `kmodinit.skip=` names that are modules: module → the option text.
    skip_modules: BTreeMap<ModuleName, String>,
    /// `kmodinit.skip=` names that are chains: chain index → option text.
    skip_chains: BTreeMap<usize, String>,
    /// Per chain: required in the plan (the manifest's `required`, unless
    /// the user's skip broke it: see `excuse_skipped_required_chains`).
    required: Vec<bool>,
}

/// A chain entry after alias resolution.
#[derive(Debug)]
struct ResolvedEntry {
    chain: usize,
    position: usize,
    module: ModuleName,
}

fn kind_rank(k: EdgeKind) -> u8 {
    match k {
        EdgeKind::Dependency => 2,
        EdgeKind::Chain => 1,
        EdgeKind::Softdep => 0,
    }
}

impl<'a> Builder<'a> {
    fn new(input: PlanInput<'a>, mode: Mode) -> Self {
        let mut b = Builder {
            input,
            drafts: Vec::new(),
            ids: HashMap::new(),
            queue: VecDeque::new(),
            chain_targets: BTreeSet::new(),
            chain_edges: HashMap::new(),
            notes: Vec::new(),
            mode,
            unplannable: HashMap::new(),
            cmdline_chain: None,
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
    fn refuse(&mut self, module: &ModuleName, error: PlanError) -> Result<(), PlanError> {
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

    fn known(&self, name: &ModuleName) -> bool {
        self.input.index.contains(name) || self.input.loaded.contains(name)
    }

    fn free(&self, name: &ModuleName) -> bool {
        self.input.index.is_builtin(name) || self.input.loaded.contains(name)
    }

    /// Splits alias candidates into usable ones, best first, and excluded
    /// ones with the reason.
    fn rank_candidates(
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
    fn choice_text(
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
    fn resolve_chains(&mut self) -> Result<Vec<ResolvedEntry>, PlanError> {
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

    fn resolve_entry(
        &mut self,
        chain: &ChainSpec,
        pos: usize,
        name: &ModuleName,
    ) -> Result<ModuleName, PlanError> {
        if self.known(name) {
            return Ok(name.clone());
        }
        let candidates = self.input.index.resolve(name.as_str());
        let from_cmdline = self
            .cmdline_chain
            .is_some_and(|c| self.input.manifest.chains[c].name == chain.name);
        if candidates.is_empty() && from_cmdline {
            let option = self
                .input
                .cmdline
                .load
                .iter()
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

    /// Declared parameters by resolved module, checked for conflicts again
    /// now that aliases are resolved.
    fn params(
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

    /// The node of `name`, created (and queued for expansion) if new.
    /// `None` if the index does not know the module.
    fn node(&mut self, name: &ModuleName) -> Option<usize> {
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
        });
        self.ids.insert(name.clone(), id);
        Some(id)
    }

    /// The node of a module that [`Builder::node`] cannot create (not in
    /// the index) and [`Builder::refuse`] just recorded with `error`.
    fn unplannable_node(&mut self, name: &ModuleName, error: PlanError) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.drafts.len();
        self.drafts.push(Draft {
            name: name.clone(),
            action: Action::Unplannable { error },
            reasons: Vec::new(),
            preds: BTreeMap::new(),
        });
        self.ids.insert(name.clone(), id);
        id
    }

    fn edge(&mut self, from: usize, to: usize, kind: EdgeKind) {
        let slot = self.drafts[to].preds.entry(from).or_insert(kind);
        if kind_rank(kind) > kind_rank(*slot) {
            *slot = kind;
        }
    }

    fn reason(&mut self, id: usize, reason: Reason) {
        let reasons = &mut self.drafts[id].reasons;
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }

    fn add_chains(&mut self, entries: &[ResolvedEntry]) -> Result<(), PlanError> {
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
                if pc == e.chain && Some(e.chain) != self.cmdline_chain {
                    self.edge(pid, id, EdgeKind::Chain);
                    self.chain_edges.insert((pid, id), chain.name.clone());
                }
            }
            prev = Some((e.chain, id));
        }
        Ok(())
    }

    /// The entries of chains skipped on the command line: a node the other
    /// chains need anyway keeps loading (noted); every other entry becomes
    /// an [`Action::Skipped`] node without edges, so the report lists it.
    fn add_skipped_chains(&mut self, entries: &[ResolvedEntry]) {
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
    fn excuse_skipped_required_chains(&mut self, blocking: &[BTreeSet<usize>]) {
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

    /// The manifest's `softdeps` overrides name modules the index knows,
    /// and each `pre`/`post` name matches something: an error in
    /// [`Mode::Strict`] (the image builder), a note at boot.
    fn check_softdep_overrides(&mut self) -> Result<(), PlanError> {
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

    /// Adds dependencies and `pre:` softdeps until nothing new turns up.
    fn expand(&mut self) -> Result<(), PlanError> {
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

    /// For every chain, the nodes it needs: its entries and everything that
    /// must finish before them (with `blocking_only`, only through edges
    /// whose failure blocks: Dependency and Chain, not Softdep).
    fn chain_needs(&self, blocking_only: bool) -> Vec<BTreeSet<usize>> {
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

    fn check_blocklist(&mut self, needed: &[BTreeSet<usize>]) -> Result<(), PlanError> {
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

    /// Kahn's algorithm taking the smallest discovery id among ready nodes;
    /// on a cycle, an error naming it.
    fn topo_order(&self, needed: &[BTreeSet<usize>]) -> Result<Vec<usize>, PlanError> {
        let n = self.drafts.len();
        let chains = &self.input.manifest.chains;
        // (not required, first chain needing it, discovery id): smallest first.
        let key = |id: usize| -> (bool, usize, usize) {
            let required = (0..chains.len()).any(|c| self.required[c] && needed[c].contains(&id));
            let first = (0..chains.len())
                .find(|&c| needed[c].contains(&id))
                .unwrap_or(usize::MAX);
            (!required, first, id)
        };
        let mut indegree: Vec<usize> = self.drafts.iter().map(|d| d.preds.len()).collect();
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (id, d) in self.drafts.iter().enumerate() {
            for &p in d.preds.keys() {
                succs[p].push(id);
            }
        }
        let mut ready: BinaryHeap<Reverse<(bool, usize, usize)>> = (0..n)
            .filter(|&i| indegree[i] == 0)
            .map(|i| Reverse(key(i)))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse((_, _, id))) = ready.pop() {
            order.push(id);
            for &s in &succs[id] {
                indegree[s] -= 1;
                if indegree[s] == 0 {
                    ready.push(Reverse(key(s)));
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        Err(self.cycle_error(|i| indegree[i] > 0))
    }

    /// A cycle among the nodes `in_set` accepts, found by walking
    /// predecessors from the first such node. Every node of the set must
    /// have a predecessor in the set (true of the nodes Kahn leaves, and of
    /// a strongly connected component), so the walk must revisit a node.
    fn cycle_error(&self, in_set: impl Fn(usize) -> bool) -> PlanError {
        let unknown = PlanError::Cycle { links: Vec::new() };
        let Some(start) = (0..self.drafts.len()).find(|&i| in_set(i)) else {
            return unknown;
        };
        let mut walk = vec![start];
        let mut pos: HashMap<usize, usize> = HashMap::from([(start, 0)]);
        let mut cur = start;
        let cycle = loop {
            let Some(&p) = self.drafts[cur].preds.keys().find(|&&p| in_set(p)) else {
                return unknown;
            };
            if let Some(&at) = pos.get(&p) {
                // walk[at..] goes backwards along edges; reverse it so each
                // node is followed by one that must load after it.
                let mut c: Vec<usize> = walk[at..].to_vec();
                c.reverse();
                break c;
            }
            pos.insert(p, walk.len());
            walk.push(p);
            cur = p;
        };
        let links = (0..cycle.len())
            .map(|w| {
                let (from, to) = (cycle[w], cycle[(w + 1) % cycle.len()]);
                // An edge without a recorded kind cannot happen; it reads as
                // a dependency, as it always did.
                let kind = self.drafts[to]
                    .preds
                    .get(&from)
                    .copied()
                    .unwrap_or(EdgeKind::Dependency);
                CycleLink {
                    from: self.drafts[from].name.clone(),
                    to: self.drafts[to].name.clone(),
                    kind,
                    chain: match kind {
                        EdgeKind::Chain => self.chain_edges.get(&(from, to)).cloned(),
                        _ => None,
                    },
                }
            })
            .collect();
        PlanError::Cycle { links }
    }

    /// [`Mode::AtBoot`]: every module of a cycle (a strongly connected
    /// component with an edge inside it) becomes unplannable with that
    /// cycle's error, and the edges inside the component are dropped, so
    /// the graph is a DAG while edges into and out of the cycle stay (what
    /// needs a module of the cycle is blocked, not lost).
    fn break_cycles(&mut self) -> Result<(), PlanError> {
        let n = self.drafts.len();
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (id, d) in self.drafts.iter().enumerate() {
            for &p in d.preds.keys() {
                succs[p].push(id);
            }
        }
        // Kosaraju, iteratively. Pass 1: finish order of a DFS along succs.
        let mut seen = vec![false; n];
        let mut finished = Vec::with_capacity(n);
        for root in 0..n {
            if seen[root] {
                continue;
            }
            seen[root] = true;
            let mut stack = vec![(root, 0usize)];
            while let Some((v, i)) = stack.pop() {
                if let Some(&w) = succs[v].get(i) {
                    stack.push((v, i + 1));
                    if !seen[w] {
                        seen[w] = true;
                        stack.push((w, 0));
                    }
                } else {
                    finished.push(v);
                }
            }
        }
        // Pass 2: along preds, latest finished first; each tree is one
        // component.
        let mut comp = vec![usize::MAX; n];
        let mut comps: Vec<Vec<usize>> = Vec::new();
        for &root in finished.iter().rev() {
            if comp[root] != usize::MAX {
                continue;
            }
            let c = comps.len();
            comp[root] = c;
            let mut members = vec![root];
            let mut stack = vec![root];
            while let Some(v) = stack.pop() {
                for &p in self.drafts[v].preds.keys() {
                    if comp[p] == usize::MAX {
                        comp[p] = c;
                        members.push(p);
                        stack.push(p);
                    }
                }
            }
            comps.push(members);
        }
        for (c, mut members) in comps.into_iter().enumerate() {
            let cyclic =
                members.len() > 1 || self.drafts[members[0]].preds.contains_key(&members[0]);
            if !cyclic {
                continue;
            }
            members.sort_unstable();
            let error = self.cycle_error(|i| comp[i] == c);
            for &m in &members {
                let name = self.drafts[m].name.clone();
                self.refuse(&name, error.clone())?;
                self.drafts[m].preds.retain(|p, _| comp[*p] != c);
            }
        }
        Ok(())
    }

    fn finish(
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
                    reasons: d.reasons.clone(),
                    warnings: Vec::new(),
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

fn reason_text(r: &Reason) -> String {
    match r {
        Reason::Chain { chain, position } => format!("chain {chain} #{position}"),
        Reason::DependencyOf { module } => format!("dep of {module}"),
        Reason::SoftdepOf { module, alias } => {
            if alias.as_str() == module.as_str() {
                format!("softdep of {module}")
            } else {
                format!("softdep of {module} ({alias})")
            }
        }
    }
}

impl Plan {
    /// The longest chain of dependent nodes when node `n` costs `cost(n)`
    /// (seconds). Satisfied nodes should be given cost 0 by the caller.
    /// Every edge kind counts: each one delays its successor's start. Ties
    /// go to the smaller node id; an empty plan gives cost 0 and no nodes.
    pub fn critical_path(&self, cost: impl Fn(&PlanNode) -> f64) -> CriticalPath {
        let n = self.nodes.len();
        let mut finish = vec![0f64; n];
        let mut via: Vec<Option<NodeId>> = vec![None; n];
        for node in &self.nodes {
            let mut start = 0f64;
            for e in &node.preds {
                // Nodes are topologically ordered, so preds are done.
                if e.from < node.id && finish[e.from] > start {
                    start = finish[e.from];
                    via[node.id] = Some(e.from);
                }
            }
            let c = cost(node);
            finish[node.id] = start + if c.is_finite() && c > 0.0 { c } else { 0.0 };
        }
        let mut end = None;
        let mut best = 0f64;
        for (i, &f) in finish.iter().enumerate() {
            if end.is_none() || f > best {
                best = f;
                end = Some(i);
            }
        }
        let mut nodes = Vec::new();
        let mut cur = end;
        while let Some(i) = cur {
            nodes.push(i);
            cur = via[i];
        }
        nodes.reverse();
        CriticalPath { cost: best, nodes }
    }

    /// Module files the image must hold (Insert actions), in node order.
    pub fn module_files(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter_map(|n| match &n.action {
            Action::Insert { path, .. } => Some(path.as_str()),
            _ => None,
        })
    }

    /// The node of a module, if the plan has one.
    pub fn node(&self, name: &ModuleName) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| &n.name == name)
    }

    /// A human-readable listing for `kmodinit plan`: a summary, the chains,
    /// one line per node (id, name, action or path, params, what it waits
    /// for, why it is there), then the notes.
    pub fn render_text(&self) -> String {
        let mut t = String::new();
        let inserts = self.module_files().count();
        let _ = writeln!(
            t,
            "plan: {} modules ({} to insert, {} satisfied), {} chains",
            self.nodes.len(),
            inserts,
            self.nodes.len() - inserts,
            self.chains.len()
        );
        for c in &self.chains {
            let names: Vec<&str> = c
                .nodes
                .iter()
                .map(|&i| self.nodes[i].name.as_str())
                .collect();
            let _ = writeln!(
                t,
                "chain {}{}: {}",
                c.name,
                if c.required { " (required)" } else { "" },
                names.join(" → ")
            );
        }
        let width = self
            .nodes
            .iter()
            .map(|n| n.name.as_str().len())
            .max()
            .unwrap_or(0);
        let idw = self.nodes.len().saturating_sub(1).to_string().len();
        for node in &self.nodes {
            let action = match &node.action {
                Action::Insert { path, .. } => path.clone(),
                Action::Builtin => "(builtin)".to_owned(),
                Action::AlreadyLoaded => "(already loaded)".to_owned(),
                Action::Blacklisted => "(blacklisted: not loaded)".to_owned(),
                Action::Skipped { option } => format!("(skipped: {option})"),
                Action::Unplannable { error } => format!("(cannot be planned: {error})"),
            };
            let after: Vec<String> = node
                .preds
                .iter()
                .map(|e| {
                    let name = self.nodes[e.from].name.as_str();
                    match e.kind {
                        EdgeKind::Dependency => name.to_owned(),
                        EdgeKind::Softdep => format!("{name} (softdep)"),
                        EdgeKind::Chain => format!("{name} (chain)"),
                    }
                })
                .collect();
            let why: Vec<String> = node.reasons.iter().map(reason_text).collect();
            let _ = writeln!(
                t,
                "{:>idw$} {:<width$} {}{} params: {} after: {} why: {}",
                node.id,
                node.name.as_str(),
                if node.required { "* " } else { "  " },
                action,
                if node.params.is_empty() {
                    "-"
                } else {
                    &node.params
                },
                if after.is_empty() {
                    "-".to_owned()
                } else {
                    after.join(", ")
                },
                why.join(", ")
            );
        }
        for note in &self.notes {
            let _ = writeln!(t, "note: {note}");
        }
        t
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn n(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    /// `deps` is `"a: b c; b: c; c"`: module a depends on b and c, …
    fn dep_text(deps: &str) -> String {
        deps.split(';')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (m, ds) = l.split_once(':').unwrap_or((l, ""));
                let ds: Vec<String> = ds.split_whitespace().map(|d| format!("k/{d}.ko")).collect();
                format!("k/{}.ko: {}\n", m.trim(), ds.join(" "))
            })
            .collect()
    }

    fn index(deps: &str, builtin: &str, softdep: &str, alias: &str) -> DepIndex {
        let builtin: String = builtin
            .split_whitespace()
            .map(|b| format!("kernel/{b}.ko\n"))
            .collect();
        DepIndex::parse(&dep_text(deps), &builtin, softdep, alias).unwrap()
    }

    fn manifest(json: &str) -> Manifest {
        Manifest::from_json(json.as_bytes()).unwrap()
    }

    fn run(
        m: &Manifest,
        idx: &DepIndex,
        cmdline: &str,
        loaded: &[&str],
    ) -> Result<Plan, PlanError> {
        let cmdline = KernelCmdline::parse(cmdline);
        let loaded: BTreeSet<ModuleName> = loaded.iter().map(|s| n(s)).collect();
        plan(PlanInput {
            manifest: m,
            index: idx,
            cmdline: &cmdline,
            loaded: &loaded,
        })
    }

    fn id(p: &Plan, name: &str) -> NodeId {
        p.node(&n(name))
            .unwrap_or_else(|| panic!("{name} not in plan"))
            .id
    }

    fn pred_kind(p: &Plan, from: &str, to: &str) -> Option<EdgeKind> {
        let f = id(p, from);
        p.nodes[id(p, to)]
            .preds
            .iter()
            .find(|e| e.from == f)
            .map(|e| e.kind)
    }

    fn check_invariants(p: &Plan) {
        let mut names = BTreeSet::new();
        for (i, node) in p.nodes.iter().enumerate() {
            assert_eq!(node.id, i);
            assert!(names.insert(node.name.clone()), "{} twice", node.name);
            for e in &node.preds {
                assert!(e.from < i, "edge {} → {} goes backwards", e.from, i);
                assert!(p.nodes[e.from].succs.contains(&i));
            }
            for &s in &node.succs {
                assert!(p.nodes[s].preds.iter().any(|e| e.from == i));
            }
        }
    }

    #[test]
    fn dependencies_come_first_and_chain_order_is_an_edge() {
        let idx = index("a: b c; b: c; c; d: c; e", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "one", "modules": ["a", "d"], "required": true},
                                          {"name": "two", "modules": ["e"]}]}"#,
        );
        let p = run(&m, &idx, "", &[]).unwrap();
        check_invariants(&p);
        let names: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names.len(), 5);
        assert!(id(&p, "c") < id(&p, "b") && id(&p, "b") < id(&p, "a"));
        assert!(id(&p, "a") < id(&p, "d"));
        assert_eq!(pred_kind(&p, "b", "a"), Some(EdgeKind::Dependency));
        assert_eq!(pred_kind(&p, "c", "a"), Some(EdgeKind::Dependency));
        assert_eq!(pred_kind(&p, "a", "d"), Some(EdgeKind::Chain));
        assert_eq!(pred_kind(&p, "a", "e"), None);
        assert!(p.nodes[id(&p, "e")].preds.is_empty());
        assert_eq!(p.chains[0].nodes, vec![id(&p, "a"), id(&p, "d")]);
        assert_eq!(p.chains[1].nodes, vec![id(&p, "e")]);
        assert!(p.nodes[id(&p, "c")].required);
        assert!(!p.nodes[id(&p, "e")].required);
        assert!(p.nodes[id(&p, "c")]
            .reasons
            .contains(&Reason::DependencyOf { module: n("a") }));
        assert!(p.nodes[id(&p, "c")]
            .reasons
            .contains(&Reason::DependencyOf { module: n("d") }));
        assert_eq!(
            p.nodes[id(&p, "a")].action,
            Action::Insert {
                path: "k/a.ko".into(),
                compression: Compression::None
            }
        );
        assert_eq!(p.module_files().count(), 5);
    }

    #[test]
    fn a_dependency_keeps_its_declared_params_however_it_is_reached() {
        // u-root's bug: "b" is declared with params in chain "two", but chain
        // "one" pulls it in first as a dependency of "a".
        let idx = index("a: b; b", "", "", "");
        let m = manifest(
            r#"{"version": 1,
                "chains": [{"name": "one", "modules": ["a"]},
                           {"name": "two", "modules": [{"name": "b", "params": "x=1"}]}],
                "modules": {"a": {"params": "y=2 z=\"q r\""}}}"#,
        );
        let p = run(&m, &idx, "b.w=3 a.y=4 other.v=1", &[]).unwrap();
        assert_eq!(p.nodes[id(&p, "b")].params, "x=1 w=3");
        assert_eq!(p.nodes[id(&p, "a")].params, "y=2 z=\"q r\" y=4");
        let p = run(&m, &idx, "", &[]).unwrap();
        assert_eq!(p.nodes[id(&p, "b")].params, "x=1");
    }

    #[test]
    fn required_flows_to_everything_a_required_chain_waits_for() {
        // x is only in an optional chain, but y (in a required chain) waits
        // for it through chain "opt"'s order.
        let idx = index("x; y; z: w; w", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "opt", "modules": ["x", "y"]},
                                          {"name": "req", "modules": ["y"], "required": true},
                                          {"name": "opt2", "modules": ["z"]}]}"#,
        );
        let p = run(&m, &idx, "", &[]).unwrap();
        assert!(p.nodes[id(&p, "x")].required);
        assert!(p.nodes[id(&p, "y")].required);
        assert!(!p.nodes[id(&p, "z")].required);
        assert!(!p.nodes[id(&p, "w")].required);
    }

    #[test]
    fn builtin_loaded_and_blacklisted_nodes() {
        let idx = index("a: b c; b: d; c; d", "bi", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "s", "modules": ["a", "bi", "e"], "required": true}]}"#,
        );
        let p = run(&m, &idx, "modprobe.blacklist=b", &["c", "e"]).unwrap();
        check_invariants(&p);
        assert_eq!(p.nodes[id(&p, "bi")].action, Action::Builtin);
        assert_eq!(p.nodes[id(&p, "c")].action, Action::AlreadyLoaded);
        assert_eq!(p.nodes[id(&p, "e")].action, Action::AlreadyLoaded);
        assert_eq!(p.nodes[id(&p, "b")].action, Action::Blacklisted);
        // A blacklisted module is not loaded, so its own deps are not needed.
        assert!(p.node(&n("d")).is_none());
        assert!(
            p.notes
                .iter()
                .any(|t| t.contains("b is blacklisted") && t.contains("(s)")),
            "{:?}",
            p.notes
        );
        assert_eq!(p.module_files().collect::<Vec<_>>(), vec!["k/a.ko"]);
    }

    #[test]
    fn params_that_cannot_be_applied_are_noted() {
        let idx = index("a", "bi", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "s", "modules": [{"name": "bi", "params": "x=1"}, {"name": "a", "params": "y=2"}]}]}"#,
        );
        let p = run(&m, &idx, "", &["a"]).unwrap();
        let notes = p.notes.join("\n");
        assert!(
            notes.contains("bi is builtin: parameters \"x=1\""),
            "{notes}"
        );
        assert!(notes.contains("bi.PARAM=VALUE"), "{notes}");
        assert!(
            notes.contains("a is already loaded: parameters \"y=2\""),
            "{notes}"
        );
    }

    #[test]
    fn unknown_module_names_chain_and_entry() {
        let idx = index("a", "", "", "");
        let m = manifest(r#"{"version": 1, "chains": [{"name": "fs", "modules": ["a", "ext5"]}]}"#);
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert_eq!(
            e,
            PlanError::UnknownEntry {
                chain: "fs".into(),
                position: 1,
                name: n("ext5")
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("\"fs\"") && msg.contains("entry 1"), "{e}");
        assert!(msg.contains("ext5"), "{e}");
    }

    #[test]
    fn missing_dependency_line_is_named() {
        let idx = DepIndex::parse("k/a.ko: k/ghost.ko\n", "", "", "").unwrap();
        let m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert_eq!(
            e,
            PlanError::MissingDependency {
                module: n("a"),
                dependency: n("ghost")
            }
        );
        assert!(e.to_string().contains("a depends on ghost"), "{e}");
    }

    #[test]
    fn blocklisted_module_that_a_chain_needs_is_an_error() {
        let idx = index("a: floppy; floppy; b", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["b"]}, {"name": "storage", "modules": ["a"]}],
                "blocklist": ["floppy"]}"#,
        );
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert!(
            matches!(&e, PlanError::Blocklisted { module, chain: Some(c), .. }
                if *module == n("floppy") && c == "storage"),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("floppy"), "{e}");
        assert!(msg.contains("\"storage\""), "{e}");
        assert!(msg.contains("dep of a"), "{e}");
        // Not needed by any chain: fine.
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["b"]}], "blocklist": ["floppy"]}"#,
        );
        run(&m, &idx, "", &[]).unwrap();
    }

    #[test]
    fn chain_order_against_dependencies_is_a_cycle() {
        let idx = index("virtio_pci: virtio_ring; virtio_ring", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "storage", "modules": ["virtio_pci", "virtio_ring"]}]}"#,
        );
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("virtio_pci → virtio_ring → virtio_pci")
                || e.to_string()
                    .contains("virtio_ring → virtio_pci → virtio_ring"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("chain \"storage\" lists virtio_ring after virtio_pci"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("virtio_pci needs virtio_ring (modules.dep)"),
            "{e}"
        );
    }

    #[test]
    fn dependency_and_self_cycles() {
        let idx = index("a: b; b: c; c: a", "", "", "");
        let m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert!(
            matches!(&e, PlanError::Cycle { links } if links.len() == 3
                && links.iter().all(|l| l.kind == EdgeKind::Dependency)),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("dependency cycle: "), "{e}");
        for x in ["a", "b", "c"] {
            assert!(e.to_string().contains(&format!("{x} →")), "{e}");
        }
        let idx = index("a: a", "", "", "");
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert_eq!(e, PlanError::SelfDependency { module: n("a") });
        assert!(e.to_string().contains("a → a"), "{e}");
    }

    #[test]
    fn softdep_cycle_is_an_error() {
        let idx = index("a; b", "", "softdep a pre: b\nsoftdep b pre: a\n", "");
        let m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert!(
            e.to_string().contains("a → b → a") || e.to_string().contains("b → a → b"),
            "{e}"
        );
        assert!(e.to_string().contains("has softdep pre:"), "{e}");
    }

    const CRC_ALIASES: &str =
        "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n\
                               alias crypto-crc32c crc32c_pruned\n";

    #[test]
    fn softdep_alias_choice_is_deterministic_and_noted() {
        let idx = index(
            "ext4: jbd2; jbd2; crc32c_generic; crc32c_intel; other",
            "",
            "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c nothing-at-all\n",
            CRC_ALIASES,
        );
        let m = manifest(r#"{"version": 1, "chains": [{"name": "fs", "modules": ["ext4"]}]}"#);
        let p = run(&m, &idx, "", &[]).unwrap();
        check_invariants(&p);
        assert!(p.node(&n("crc32c_intel")).is_none());
        assert_eq!(
            pred_kind(&p, "crc32c_generic", "ext4"),
            Some(EdgeKind::Softdep)
        );
        assert_eq!(
            pred_kind(&p, "crc32c_generic", "jbd2"),
            Some(EdgeKind::Softdep)
        );
        let notes = p.notes.join("\n");
        assert!(
            notes.contains(
                "softdep ext4 pre: crypto-crc32c → crc32c_generic (also matched: crc32c_intel"
            ),
            "{notes}"
        );
        assert!(notes.contains("crc32c_pruned: not in the index"), "{notes}");
        assert!(
            notes.contains("softdep jbd2 pre: nothing-at-all skipped"),
            "{notes}"
        );
        assert!(p.nodes[id(&p, "crc32c_generic")]
            .reasons
            .contains(&Reason::SoftdepOf {
                module: n("ext4"),
                alias: "crypto-crc32c".into()
            }));

        // A chain that names crc32c_intel gets it for the softdep too.
        let m2 = manifest(
            r#"{"version": 1, "chains": [{"name": "fs", "modules": ["ext4"]}, {"name": "c", "modules": ["crc32c_intel"]}]}"#,
        );
        let p = run(&m2, &idx, "", &[]).unwrap();
        assert!(p.node(&n("crc32c_generic")).is_none());
        assert_eq!(
            pred_kind(&p, "crc32c_intel", "ext4"),
            Some(EdgeKind::Softdep)
        );
        assert!(
            p.notes.join("\n").contains("chosen: named in a chain"),
            "{:?}",
            p.notes
        );

        // Blocklisted or blacklisted candidates are passed over.
        let m3 = manifest(
            r#"{"version": 1, "chains": [{"name": "fs", "modules": ["ext4"]}], "blocklist": ["crc32c_generic"]}"#,
        );
        let p = run(&m3, &idx, "", &[]).unwrap();
        assert!(p.node(&n("crc32c_intel")).is_some());
        assert!(p
            .notes
            .join("\n")
            .contains("crc32c_generic: on the manifest blocklist"));
        let p = run(
            &m,
            &idx,
            "modprobe.blacklist=crc32c_generic,crc32c_intel",
            &[],
        )
        .unwrap();
        assert!(p.node(&n("crc32c_generic")).is_none() && p.node(&n("crc32c_intel")).is_none());
        assert!(p
            .notes
            .join("\n")
            .contains("softdep ext4 pre: crypto-crc32c skipped"));

        // An already loaded implementation costs nothing: preferred.
        let p = run(&m, &idx, "", &["crc32c_intel"]).unwrap();
        assert_eq!(
            p.nodes[id(&p, "crc32c_intel")].action,
            Action::AlreadyLoaded
        );
        assert!(p.node(&n("crc32c_generic")).is_none());
    }

    #[test]
    fn a_softdep_of_a_required_chain_is_not_required() {
        let idx = index("a: b; b; s; t", "", "softdep b pre: s\n", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true}]}"#,
        );
        let p = run(&m, &idx, "", &[]).unwrap();
        assert!(p.nodes[id(&p, "a")].required && p.nodes[id(&p, "b")].required);
        assert!(!p.nodes[id(&p, "s")].required);
        assert!(id(&p, "s") < id(&p, "b"));
    }

    #[test]
    fn softdep_by_plain_module_name_needs_no_note_and_post_is_noted() {
        let idx = index(
            "a; b; c",
            "",
            "softdep a pre: b post: c\nsoftdep b junk\n",
            "",
        );
        let m = manifest(r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}]}"#);
        let p = run(&m, &idx, "", &[]).unwrap();
        assert_eq!(pred_kind(&p, "b", "a"), Some(EdgeKind::Softdep));
        assert!(p.node(&n("c")).is_none());
        let notes = p.notes.join("\n");
        assert!(!notes.contains("pre: b →"), "{notes}");
        assert!(notes.contains("softdep a post: c not loaded"), "{notes}");
        assert!(notes.contains("softdep b: junk ignored"), "{notes}");
    }

    fn cmd_boot_plan(m: &Manifest, idx: &DepIndex, cmdline: &str) -> Plan {
        let cmdline = KernelCmdline::parse(cmdline);
        plan_at_boot(PlanInput {
            manifest: m,
            index: idx,
            cmdline: &cmdline,
            loaded: &BTreeSet::new(),
        })
        .unwrap()
    }

    #[test]
    fn command_line_load_adds_an_unordered_optional_chain() {
        let idx = index("a: b; b; c; d", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true}]}"#,
        );
        let p = run(
            &m,
            &idx,
            "kmodinit.load=c rd.driver.pre=b modules-load=d,c",
            &[],
        )
        .unwrap();
        let chain = p.chains.iter().find(|c| c.name == CMDLINE_CHAIN).unwrap();
        assert!(!chain.required);
        let names: Vec<&str> = chain
            .nodes
            .iter()
            .map(|&i| p.nodes[i].name.as_str())
            .collect();
        assert_eq!(names, ["c", "b", "d"]);
        // Independent: no chain edge between them.
        assert_eq!(pred_kind(&p, "c", "b"), None);
        assert_eq!(pred_kind(&p, "b", "d"), None);
        // b stays required for chain x.
        assert!(p.nodes[id(&p, "b")].required && !p.nodes[id(&p, "c")].required);
        check_invariants(&p);
        // A manifest chain called "cmdline" keeps its name.
        let m2 = manifest(r#"{"version": 1, "chains": [{"name": "cmdline", "modules": ["a"]}]}"#);
        let p = run(&m2, &idx, "kmodinit.load=c", &[]).unwrap();
        assert!(p.chains.iter().any(|c| c.name == "cmdline-2"));
    }

    #[test]
    fn loading_a_module_not_in_the_image_fails_it_alone() {
        let idx = index("a; b", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true}]}"#,
        );
        let p = cmd_boot_plan(&m, &idx, "kmodinit.load=nope,b");
        let node = p.node(&n("nope")).unwrap();
        let Action::Unplannable { error } = &node.action else {
            panic!("{:?}", node.action)
        };
        assert!(matches!(error, PlanError::NotInImage { .. }));
        let msg = error.to_string();
        assert!(
            msg.contains("kmodinit.load=nope") && msg.contains("not in the image"),
            "{msg}"
        );
        assert!(!node.required);
        assert!(matches!(
            p.node(&n("b")).unwrap().action,
            Action::Insert { .. }
        ));
        assert!(
            p.notes.iter().any(|x| x.contains("not in the image")),
            "{:?}",
            p.notes
        );
        check_invariants(&p);
    }

    #[test]
    fn skipping_a_module_blocks_its_dependents_and_excuses_the_required_chain() {
        let idx = index("a: b; b: c; c; e", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "root", "modules": ["a"], "required": true},
                {"name": "other", "modules": ["e"], "required": true}]}"#,
        );
        let p = cmd_boot_plan(&m, &idx, "kmodinit.skip=b");
        assert_eq!(
            p.node(&n("b")).unwrap().action,
            Action::Skipped {
                option: "kmodinit.skip=b".into()
            }
        );
        // b's own dependency c is not planned; a waits for b (blocked).
        assert!(p.node(&n("c")).is_none());
        assert_eq!(pred_kind(&p, "b", "a"), Some(EdgeKind::Dependency));
        let root = p.chains.iter().find(|c| c.name == "root").unwrap();
        assert!(!root.required, "a user's skip does not make on_failure run");
        assert!(!p.nodes[id(&p, "a")].required);
        assert!(
            p.chains
                .iter()
                .find(|c| c.name == "other")
                .unwrap()
                .required
        );
        assert!(p.nodes[id(&p, "e")].required);
        let notes = p.notes.join("\n");
        assert!(
            notes.contains("required chain \"root\" cannot complete")
                && notes.contains("does not trigger on_failure"),
            "{notes}"
        );
        check_invariants(&p);
    }

    #[test]
    fn skipping_a_chain_skips_its_entries_but_not_what_others_need() {
        let idx = index("a: b; b; c; d", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true},
                {"name": "y", "modules": ["c", "b", "d"], "required": true}]}"#,
        );
        let p = cmd_boot_plan(&m, &idx, "kmodinit.skip=y kmodinit.skip=nothing");
        assert!(matches!(
            p.node(&n("c")).unwrap().action,
            Action::Skipped { .. }
        ));
        assert!(matches!(
            p.node(&n("d")).unwrap().action,
            Action::Skipped { .. }
        ));
        assert!(matches!(
            p.node(&n("b")).unwrap().action,
            Action::Insert { .. }
        ));
        let y = p.chains.iter().find(|c| c.name == "y").unwrap();
        assert_eq!(y.nodes.len(), 3);
        assert!(!y.required);
        assert!(p.chains.iter().find(|c| c.name == "x").unwrap().required);
        let notes = p.notes.join("\n");
        assert!(notes.contains("loads anyway"), "{notes}");
        assert!(
            notes.contains("kmodinit.skip=nothing: no chain or planned module"),
            "{notes}"
        );
        check_invariants(&p);
    }

    #[test]
    fn softdep_override_replaces_the_index_and_loads_post_after() {
        let idx = index(
            "a; crc_generic; crc_intel; p",
            "",
            "softdep a pre: crypto-crc\n",
            "alias crypto-crc crc_intel\nalias crypto-crc crc_generic\n",
        );
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true}],
                "softdeps": {"a": {"pre": ["crc_intel"], "post": ["p"]}}}"#,
        );
        let p = run(&m, &idx, "", &[]).unwrap();
        assert!(p.node(&n("crc_generic")).is_none());
        assert_eq!(pred_kind(&p, "crc_intel", "a"), Some(EdgeKind::Softdep));
        assert_eq!(pred_kind(&p, "a", "p"), Some(EdgeKind::Softdep));
        assert!(!p.nodes[id(&p, "p")].required);
        assert!(
            p.notes
                .iter()
                .any(|x| x.contains("softdep a: manifest override used")),
            "{:?}",
            p.notes
        );
        check_invariants(&p);
        // An empty override removes them.
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}], "softdeps": {"a": {}}}"#,
        );
        let p = run(&m, &idx, "", &[]).unwrap();
        assert_eq!(p.nodes.len(), 1);
    }

    #[test]
    fn a_softdep_override_naming_an_unknown_module_fails_the_build_not_the_boot() {
        let idx = index("a", "", "", "");
        for json in [
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}], "softdeps": {"ghost": {"pre": ["a"]}}}"#,
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}], "softdeps": {"a": {"pre": ["ghost"]}}}"#,
        ] {
            let m = manifest(json);
            let e = run(&m, &idx, "", &[]).unwrap_err();
            assert!(
                matches!(e, PlanError::UnknownSoftdepOverride { .. }),
                "{e:?}"
            );
            assert!(e.to_string().contains("ghost"), "{e}");
            let p = cmd_boot_plan(&m, &idx, "");
            assert!(p.notes.iter().any(|x| x.contains("ghost")), "{:?}", p.notes);
            assert!(matches!(
                p.node(&n("a")).unwrap().action,
                Action::Insert { .. }
            ));
        }
    }

    #[test]
    fn chain_entry_alias_resolves_with_a_note_and_params_follow() {
        let idx = index("ext4: jbd2; jbd2", "", "", "alias fs-ext4 ext4\n");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "fs", "modules": [{"name": "fs-ext4", "params": "a=1"}]}]}"#,
        );
        let p = run(&m, &idx, "", &[]).unwrap();
        assert_eq!(p.nodes[id(&p, "ext4")].params, "a=1");
        assert!(
            p.notes.iter().any(|t| t.contains("alias fs_ext4 → ext4")),
            "{:?}",
            p.notes
        );
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "fs", "modules": [{"name": "fs-ext4", "params": "a=1"}]}],
                "modules": {"ext4": {"params": "a=2"}}}"#,
        );
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("module ext4 has two different parameter strings"),
            "{e}"
        );
    }

    #[test]
    fn plan_rechecks_a_manifest_built_in_code() {
        let idx = index("a", "", "", "");
        let mut m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
        m.chains.push(m.chains[0].clone());
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert!(matches!(e, PlanError::Manifest(_)), "{e:?}");
        assert!(!e.is_per_module());
        assert!(e.to_string().contains("used twice"), "{e}");
    }

    #[test]
    fn critical_path_follows_the_costliest_chain() {
        let idx = index("a: b c; b; c: d; d; e", "", "", "");
        let m = manifest(r#"{"version": 1, "chains": [{"name": "x", "modules": ["a", "e"]}]}"#);
        let p = run(&m, &idx, "", &[]).unwrap();
        let cost = |node: &PlanNode| match node.name.as_str() {
            "d" => 5.0,
            "b" => 1.0,
            "c" => 1.0,
            "a" => 1.0,
            "e" => 0.5,
            _ => 0.0,
        };
        let cp = p.critical_path(cost);
        let names: Vec<&str> = cp.nodes.iter().map(|&i| p.nodes[i].name.as_str()).collect();
        assert_eq!(names, vec!["d", "c", "a", "e"]);
        assert!((cp.cost - 7.5).abs() < 1e-9);
        let empty = Plan {
            nodes: vec![],
            chains: vec![],
            notes: vec![],
        };
        assert_eq!(empty.critical_path(|_| 1.0).nodes, Vec::<NodeId>::new());
    }

    #[test]
    fn render_text_lists_every_node() {
        let idx = index("a: b; b", "c", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "s", "modules": [{"name": "a", "params": "p=1"}, "c"], "required": true}]}"#,
        );
        let p = run(&m, &idx, "", &[]).unwrap();
        let t = p.render_text();
        assert!(
            t.starts_with("plan: 3 modules (2 to insert, 1 satisfied), 1 chains\n"),
            "{t}"
        );
        assert!(t.contains("chain s (required): a → c"), "{t}");
        assert!(
            t.contains("k/a.ko params: p=1 after: b why: chain s #0"),
            "{t}"
        );
        assert!(
            t.contains("(builtin) params: - after: a (chain) why: chain s #1"),
            "{t}"
        );
        assert_eq!(t.lines().count(), 2 + 3);
    }

    // plan_at_boot: a module that cannot be planned fails alone.

    fn run_at_boot(m: &Manifest, idx: &DepIndex) -> Result<Plan, PlanError> {
        let cmdline = KernelCmdline::default();
        let loaded = BTreeSet::new();
        plan_at_boot(PlanInput {
            manifest: m,
            index: idx,
            cmdline: &cmdline,
            loaded: &loaded,
        })
    }

    fn unplannable(p: &Plan, name: &str) -> PlanError {
        match &p.nodes[id(p, name)].action {
            Action::Unplannable { error } => error.clone(),
            other => panic!("{name}: {other:?}, not unplannable"),
        }
    }

    fn is_insert(p: &Plan, name: &str) -> bool {
        matches!(p.nodes[id(p, name)].action, Action::Insert { .. })
    }

    #[test]
    fn at_boot_a_missing_dependency_line_fails_only_that_dependency() {
        let idx = DepIndex::parse(
            "k/a.ko: k/x/ghost.ko\nk/c.ko:\nk/r.ko: k/s.ko\nk/s.ko:\n",
            "",
            "",
            "",
        )
        .unwrap();
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "opt", "modules": ["a", "c"]},
                                          {"name": "req", "modules": ["r"], "required": true}]}"#,
        );
        let strict = run(&m, &idx, "", &[]).unwrap_err();
        assert_eq!(
            strict.to_string(),
            "module a depends on ghost (modules.dep), but ghost has no line of its own in \
             modules.dep"
        );
        let p = run_at_boot(&m, &idx).unwrap();
        check_invariants(&p);
        assert_eq!(unplannable(&p, "ghost"), strict);
        assert_eq!(strict.modules(), vec![n("ghost")]);
        assert!(strict.is_per_module());
        // Its dependent and the rest of its chain are planned as usual, and
        // wait for it, so the loader blocks them.
        assert!(is_insert(&p, "a") && is_insert(&p, "c"));
        assert_eq!(pred_kind(&p, "ghost", "a"), Some(EdgeKind::Dependency));
        assert_eq!(pred_kind(&p, "a", "c"), Some(EdgeKind::Chain));
        assert!(p.nodes[id(&p, "ghost")]
            .reasons
            .contains(&Reason::DependencyOf { module: n("a") }));
        // The required chain is untouched.
        assert!(is_insert(&p, "r") && is_insert(&p, "s"));
        assert!(p.nodes[id(&p, "r")].required && !p.nodes[id(&p, "ghost")].required);
        assert_eq!(p.chains[0].nodes, vec![id(&p, "a"), id(&p, "c")]);
        assert!(
            p.notes.iter().any(
                |t| t.starts_with("ghost cannot be planned") && t.contains(&strict.to_string())
            ),
            "{:?}",
            p.notes
        );
        assert!(
            p.render_text()
                .contains("(cannot be planned: module a depends on ghost"),
            "{}",
            p.render_text()
        );
        assert_eq!(p.module_files().count(), 4);
    }

    #[test]
    fn at_boot_an_unknown_entry_fails_in_its_chain() {
        let idx = index("a; c; r", "", "", "alias fs-pruned pruned\n");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "opt", "modules": ["a", "ext5", "c"]},
                                          {"name": "opt2", "modules": ["fs-pruned"]},
                                          {"name": "req", "modules": ["r"], "required": true}]}"#,
        );
        let strict = run(&m, &idx, "", &[]).unwrap_err();
        assert_eq!(
            strict.to_string(),
            "chain \"opt\" entry 1 (ext5): no such module or alias in modules.dep, \
             modules.builtin or modules.alias"
        );
        let p = run_at_boot(&m, &idx).unwrap();
        check_invariants(&p);
        assert_eq!(unplannable(&p, "ext5"), strict);
        let alias = unplannable(&p, "fs_pruned");
        assert_eq!(
            alias,
            PlanError::AliasWithoutFile {
                chain: "opt2".into(),
                position: 0,
                name: n("fs_pruned"),
                candidates: vec![n("pruned")],
            }
        );
        assert_eq!(
            alias.to_string(),
            "chain \"opt2\" entry 0 (fs_pruned): the alias matches pruned but the index has \
             no file for any of them"
        );
        assert_eq!(pred_kind(&p, "a", "ext5"), Some(EdgeKind::Chain));
        assert_eq!(pred_kind(&p, "ext5", "c"), Some(EdgeKind::Chain));
        assert!(is_insert(&p, "a") && is_insert(&p, "c") && is_insert(&p, "r"));
        assert_eq!(
            p.chains[0].nodes,
            vec![id(&p, "a"), id(&p, "ext5"), id(&p, "c")]
        );
        assert_eq!(p.chains[1].nodes, vec![id(&p, "fs_pruned")]);
        assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    }

    #[test]
    fn at_boot_every_module_of_a_cycle_fails_and_what_needs_it_stays() {
        let idx = index("a: b; b: c; c: a; d: a; e", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "opt", "modules": ["d"]},
                                          {"name": "req", "modules": ["e"], "required": true}]}"#,
        );
        let strict = run(&m, &idx, "", &[]).unwrap_err();
        assert_eq!(
            strict.to_string(),
            "dependency cycle: c → b → a → c (b needs c (modules.dep); a needs b \
             (modules.dep); c needs a (modules.dep))"
        );
        let p = run_at_boot(&m, &idx).unwrap();
        check_invariants(&p);
        for x in ["a", "b", "c"] {
            assert_eq!(unplannable(&p, x), strict, "{x}");
        }
        let mut in_cycle = strict.modules();
        in_cycle.sort();
        assert_eq!(in_cycle, vec![n("a"), n("b"), n("c")]);
        // The edges inside the cycle are gone, the one out of it stays.
        for (x, y) in [("b", "a"), ("c", "b"), ("a", "c")] {
            assert_eq!(pred_kind(&p, x, y), None, "{x} → {y}");
        }
        assert_eq!(pred_kind(&p, "a", "d"), Some(EdgeKind::Dependency));
        assert!(is_insert(&p, "d") && is_insert(&p, "e"));
        assert_eq!(p.notes.len(), 3, "{:?}", p.notes);

        // A module that depends on itself; a chain listed against its
        // dependencies, in a required chain.
        let idx = index("a: a; d: a; v: w; w; e", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "opt", "modules": ["d"]},
                                          {"name": "req", "modules": ["v", "w"], "required": true},
                                          {"name": "ok", "modules": ["e"]}]}"#,
        );
        let p = run_at_boot(&m, &idx).unwrap();
        check_invariants(&p);
        assert_eq!(
            unplannable(&p, "a"),
            PlanError::SelfDependency { module: n("a") }
        );
        assert_eq!(pred_kind(&p, "a", "d"), Some(EdgeKind::Dependency));
        let vw = unplannable(&p, "v");
        assert_eq!(unplannable(&p, "w"), vw);
        assert!(
            matches!(&vw, PlanError::Cycle { links } if links.iter().any(|l|
                l.kind == EdgeKind::Chain && l.chain.as_deref() == Some("req"))),
            "{vw:?}"
        );
        assert!(p.nodes[id(&p, "v")].required && p.nodes[id(&p, "w")].required);
        assert!(is_insert(&p, "d") && is_insert(&p, "e"));
    }

    #[test]
    fn at_boot_conflicting_params_fail_that_module() {
        let idx = index("ext4: jbd2; jbd2; a", "", "", "alias fs-ext4 ext4\n");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "fs", "modules": [{"name": "fs-ext4", "params": "a=1"}]},
                                          {"name": "other", "modules": ["a"], "required": true}],
                "modules": {"ext4": {"params": "a=2"}}}"#,
        );
        let strict = run(&m, &idx, "", &[]).unwrap_err();
        assert_eq!(
            strict.to_string(),
            "module ext4 has two different parameter strings: \"a=1\" at \
             chains[0].modules[0].params and \"a=2\" at modules.ext4.params; parameters belong \
             to the module, declare them once"
        );
        let p = run_at_boot(&m, &idx).unwrap();
        check_invariants(&p);
        assert_eq!(
            unplannable(&p, "ext4"),
            PlanError::ConflictingParams {
                module: n("ext4"),
                first: "a=1".into(),
                first_at: "chains[0].modules[0].params".into(),
                second: "a=2".into(),
                second_at: "modules.ext4.params".into(),
            }
        );
        // Not loaded, so its dependencies are not needed.
        assert!(p.node(&n("jbd2")).is_none());
        assert!(is_insert(&p, "a"));
        assert_eq!(p.module_files().collect::<Vec<_>>(), vec!["k/a.ko"]);
    }

    #[test]
    fn at_boot_a_blocklisted_module_a_chain_needs_fails_alone() {
        let idx = index("a: floppy; floppy; b", "", "", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["b"]}, {"name": "storage", "modules": ["a"]}],
                "blocklist": ["floppy"]}"#,
        );
        let strict = run(&m, &idx, "", &[]).unwrap_err();
        let p = run_at_boot(&m, &idx).unwrap();
        check_invariants(&p);
        assert_eq!(unplannable(&p, "floppy"), strict);
        assert_eq!(
            strict.to_string(),
            "module floppy is on the manifest's blocklist, but chain \"storage\" needs it \
             (dep of a)"
        );
        assert!(is_insert(&p, "a") && is_insert(&p, "b"));
        assert!(!p.module_files().any(|f| f.contains("floppy")));
    }

    #[test]
    fn at_boot_equals_plan_when_plan_succeeds_and_manifest_errors_stay() {
        let idx = index("a: b c; b: c; c; d: c; e", "bi", "softdep a pre: e\n", "");
        let m = manifest(
            r#"{"version": 1, "chains": [{"name": "one", "modules": ["a", "bi"], "required": true},
                                          {"name": "two", "modules": [{"name": "d", "params": "x=1"}]}]}"#,
        );
        assert_eq!(run_at_boot(&m, &idx), run(&m, &idx, "", &[]));
        let mut m = m;
        m.chains.push(m.chains[0].clone());
        let e = run_at_boot(&m, &idx).unwrap_err();
        assert!(matches!(e, PlanError::Manifest(_)), "{e:?}");
        assert!(e.modules().is_empty());
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn an_unplannable_node_serializes_with_its_message() {
        let idx = DepIndex::parse("k/a.ko: k/ghost.ko\n", "", "", "").unwrap();
        let m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
        let p = run_at_boot(&m, &idx).unwrap();
        let json = serde_json::to_value(&p.nodes[id(&p, "ghost")].action).unwrap();
        assert_eq!(json["kind"], "unplannable");
        assert_eq!(
            json["error"],
            "module a depends on ghost (modules.dep), but ghost has no line of its own in \
             modules.dep"
        );
    }
}

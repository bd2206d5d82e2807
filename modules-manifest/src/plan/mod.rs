//! The load plan: a DAG of module nodes, built by the pure function [`plan()`].
//!
//! What goes in: every chain entry (a module name or an alias, looked up in
//! kmod's order, see below), the transitive `modules.dep` dependencies of
//! every module that will be inserted, and the `pre:` and `post:` softdeps
//! of those modules (and their own dependencies and softdeps), as
//! `modprobe` loads them. A `pre:` softdep loads before its module, a
//! `post:` one after it; both through a `Softdep` edge, so neither blocks
//! the other. A manifest `softdeps` override replaces the index's softdeps
//! of its module. Unlike kmod, which reads only the first `softdep` line of
//! a module, the index merges all of them (see [`crate::depmod`]); the kmod
//! differential test (`tests/kmod_differential.rs`) proves this is the only
//! difference from `modprobe --show-depends` over the whole installed tree.
//!
//! The command line adds modules (`kmodinit.load=`, as an optional chain
//! [`CMDLINE_CHAIN`] without chain edges; `rd.driver.post=`, as an optional
//! chain [`CMDLINE_POST_CHAIN`] each of whose modules comes after every
//! module the other chains need, through Softdep edges: after, whether they
//! loaded or not) and skips chains or modules
//! (`kmodinit.skip=`, [`Action::Skipped`]); a required chain broken only by
//! a skip is made optional (see `Builder::excuse_skipped_required_chains`).
//!
//! Edges, all "must finish before": [`EdgeKind::Dependency`] for every module
//! `modules.dep` lists (depmod writes the transitive closure; all of it is
//! kept, which is redundant but never wrong), [`EdgeKind::Softdep`] for a
//! softdep (and for the other matches of an alias chain entry, see below),
//! [`EdgeKind::Chain`] from the previous entry of a chain. Between two nodes
//! there is at most one edge; when several reasons apply the strongest kind
//! is kept: Dependency, then Chain, then Softdep.
//!
//! Names, as kmod's `kmod_module_new_from_lookup` resolves them
//! ([`DepIndex::resolve`]): a module of `modules.dep`, else EVERY module
//! whose `modules.alias` pattern matches, else the builtin modules whose
//! `modules.builtin.modinfo` alias matches, else a builtin module of that
//! name (so `softdep f2fs pre: crc32`, with `lib/crc32` builtin, means
//! `crc32_generic` and `crc32_pclmul`); a chain entry may also name a module
//! already loaded. Of the matches, the module itself, the manifest's
//! `blocklist`, the command line's `modprobe.blacklist` and modules the
//! index has no file for are left out. Every match left is planned, as
//! modprobe loads every match (the crypto API then uses the one with the
//! highest priority that loaded): with several, each node carries
//! [`PlanNode::alternative`] (the alias and all its matches), and an
//! alternative the kernel refuses (`crc32c_intel` without SSE4.2: ENODEV)
//! is a note in the report, never a chain failure nor a block, since only
//! Softdep edges leave it. For a chain entry, the first match (builtin or
//! already loaded first, then by name) is the chain's own node, with the
//! chain's edges and `required`; the others load alongside ([`Reason::ChainAlias`],
//! Softdep edges from the previous entry and to the next). The matches and
//! the left-out ones are written to [`Plan::notes`] (booster #64: users
//! must see which `crc32c` they got). A softdep with no match left is
//! skipped with a note.
//!
//! Why each module is there: [`PlanNode::reasons`], the strongest shown by
//! [`PlanNode::reason`] as `chain:NAME`, `cmdline`, `dependency of X` or
//! `softdep of X` (one `Display`; a new source is a new [`Reason`] variant).
//!
//! Node order: Kahn's algorithm; among ready nodes it takes first what a
//! required chain needs, then by the first chain (in manifest order) that
//! needs it, then in discovery order (chain entries, then dependencies
//! breadth-first). So the same input always gives the same plan, and a
//! loader that starts ready nodes by id serves required chains first.
//!
//! Files, one job each: this one holds the public types and the entry
//! points, and `build` runs the planner's steps in order; `error` the
//! [`PlanError`] and its messages; `builder` the graph under construction
//! (nodes, edges, refusals) and its conversion into a [`Plan`]; `resolve`
//! chain entries, aliases and softdep overrides to modules; `params` the
//! parameter strings; `graph` the chains, dependencies and softdeps added as
//! edges, and what each chain needs; `skip` the command line's
//! `kmodinit.skip=`; `order` the topological order and cycles; `render` the
//! text listing.

mod builder;
mod error;
mod graph;
mod order;
mod params;
mod render;
mod resolve;
mod skip;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cmdline::KernelCmdline;
use crate::depmod::{Compression, DepIndex};
use crate::manifest::{ChainEntry, ChainSpec, Manifest};
use crate::name::ModuleName;

use builder::{Builder, ResolvedEntry};
pub use error::{CycleLink, PlanError};

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
    /// Set when this module is one of several that one alias matched
    /// (a softdep like `crypto-crc32c`, or a chain entry): every match is
    /// planned, as modprobe loads every match, and the kernel's users
    /// (the crypto API, by priority) pick among those that load. Its edges
    /// to the alias's user are `Softdep` edges (except for the chain's own
    /// node of a chain entry), so unless the node is `required` its
    /// failure (`crc32c_intel` refused without SSE4.2) is a note for the
    /// report, never a chain failure nor a block.
    pub alternative: Option<Alternative>,
}

/// The alias a node is one match of, and all the modules it matched that
/// the plan loads (the node among them), sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alternative {
    pub alias: String,
    pub providers: Vec<ModuleName>,
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

/// Why a module is in the plan. A node lists every reason found;
/// [`PlanNode::reason`] picks the one the report shows, rendered by
/// [`Reason`]'s `Display` (`chain:NAME`, `dependency of X`, `softdep of X`,
/// `cmdline`). A new source of modules is a new variant here, its text in
/// that one `Display` and its rank in [`Reason::rank`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// An entry of a manifest chain (the chain's own node for it).
    Chain { chain: String, position: usize },
    /// Another match of a chain entry that is an alias with several
    /// matches (see [`PlanNode::alternative`]); not the chain's own node.
    ChainAlias {
        chain: String,
        position: usize,
        alias: String,
    },
    /// Asked for on the kernel command line (`kmodinit.load=`,
    /// `rd.driver.pre=`, `modules-load=`): an entry of the chain
    /// [`CMDLINE_CHAIN`] (or a match of one).
    Cmdline,
    /// Listed in `modules.dep` for `module`.
    DependencyOf { module: ModuleName },
    /// A match of a `pre:` or `post:` softdep of `module`.
    SoftdepOf { module: ModuleName, alias: String },
}

impl Reason {
    /// Strength for [`PlanNode::reason`]: smaller is stronger. What the
    /// user asked for first, then what a module cannot load without, then
    /// what is only wished for.
    pub fn rank(&self) -> u8 {
        match self {
            Reason::Chain { .. } | Reason::Cmdline => 0,
            Reason::ChainAlias { .. } => 1,
            Reason::DependencyOf { .. } => 2,
            Reason::SoftdepOf { .. } => 3,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Chain { chain, .. } | Reason::ChainAlias { chain, .. } => {
                write!(f, "chain:{chain}")
            }
            Reason::Cmdline => f.write_str("cmdline"),
            Reason::DependencyOf { module } => write!(f, "dependency of {module}"),
            Reason::SoftdepOf { module, .. } => write!(f, "softdep of {module}"),
        }
    }
}

impl PlanNode {
    /// The reason the report shows: the strongest ([`Reason::rank`]), the
    /// first found among equals. `None` only for a node nothing asked for
    /// (the planner makes none).
    pub fn reason(&self) -> Option<&Reason> {
        self.reasons.iter().min_by_key(|r| r.rank())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanChain {
    pub name: String,
    pub required: bool,
    /// The chain's own entries, in order (not their dependencies).
    pub nodes: Vec<NodeId>,
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

/// The name of the chain dracut's `rd.driver.post=` adds (same renaming
/// rule): its modules start after every module of every other chain has
/// finished.
pub const CMDLINE_POST_CHAIN: &str = "cmdline-post";

/// The manifest the plan is built from: `manifest` plus, when the command
/// line asks to load modules, an optional chain of them, and one for
/// `rd.driver.post=`; with their indices.
struct Extended {
    manifest: Manifest,
    load: Option<usize>,
    post: Option<usize>,
}

fn with_cmdline_chains(input: &PlanInput<'_>) -> Option<Extended> {
    let lists = [
        (&input.cmdline.load, CMDLINE_CHAIN),
        (&input.cmdline.load_post, CMDLINE_POST_CHAIN),
    ];
    if lists.iter().all(|(l, _)| l.is_empty()) {
        return None;
    }
    let mut m = input.manifest.clone();
    let mut at = [None, None];
    for (slot, (load, base)) in at.iter_mut().zip(lists) {
        if load.is_empty() {
            continue;
        }
        let mut name = base.to_owned();
        let mut k = 1;
        while m.chains.iter().any(|c| c.name == name) {
            k += 1;
            name = format!("{base}-{k}");
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
        *slot = Some(m.chains.len() - 1);
    }
    Some(Extended {
        manifest: m,
        load: at[0],
        post: at[1],
    })
}

fn build(input: PlanInput<'_>, mode: Mode) -> Result<Plan, PlanError> {
    input.manifest.check().map_err(PlanError::Manifest)?;
    let extended = with_cmdline_chains(&input);
    let (input, cmdline_chain, post_chain) = match &extended {
        Some(e) => (
            PlanInput {
                manifest: &e.manifest,
                ..input
            },
            e.load,
            e.post,
        ),
        None => (input, None, None),
    };
    let mut b = Builder::new(input, mode);
    b.cmdline_chain = cmdline_chain;
    b.post_chain = post_chain;
    b.check_softdep_overrides()?;
    let entries = b.resolve_chains()?;
    let params = b.params(&entries)?;
    let (skipped, active): (Vec<ResolvedEntry>, Vec<ResolvedEntry>) = entries
        .into_iter()
        .partition(|e| b.skip_chains.contains_key(&e.chain));
    b.add_chains(&active)?;
    b.expand()?;
    b.add_skipped_chains(&skipped);
    b.order_post_chain();
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
}

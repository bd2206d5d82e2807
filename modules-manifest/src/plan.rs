//! The load plan: a DAG of module nodes. SKELETON: the types are the contract
//! the loader, the image builder and the report build against (issue 2).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cmdline::KernelCmdline;
use crate::depmod::{Compression, DepIndex};
use crate::manifest::Manifest;
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
    /// True if any required chain needs this node.
    pub required: bool,
    /// Edges from the nodes that must finish first.
    pub preds: Vec<Edge>,
    /// Nodes that wait for this one.
    pub succs: Vec<NodeId>,
    /// Why the node is in the plan (a chain entry, a dependency of X, …).
    pub reasons: Vec<Reason>,
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

/// A manifest that does not plan against the index: names the module/chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PlanError {}

/// The longest path through the plan under a per-node cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriticalPath {
    pub cost: f64,
    pub nodes: Vec<NodeId>,
}

/// Builds the plan. Pure and deterministic.
pub fn plan(_input: PlanInput<'_>) -> Result<Plan, PlanError> {
    todo!("issue 2")
}

impl Plan {
    /// The longest chain of dependent nodes when node `n` costs `cost(n)`
    /// (seconds). Satisfied nodes should be given cost 0 by the caller.
    pub fn critical_path(&self, _cost: impl Fn(&PlanNode) -> f64) -> CriticalPath {
        todo!("issue 2")
    }

    /// Module files the image must hold (Insert actions), in node order.
    pub fn module_files(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter_map(|n| match &n.action {
            Action::Insert { path, .. } => Some(path.as_str()),
            _ => None,
        })
    }
}

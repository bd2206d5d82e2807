//! Shared by the loader tests: a hand-made plan builder (independent of the
//! planner) and a reference model of what the loader must decide.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{mpsc, Once};
use std::time::Duration;

use kmodinit_init::kernel::{FakeCall, FakeKernel, FakeOutcome};
use kmodinit_init::loader::engine::{
    load, load_probed, LoaderOptions, PoolMode, WorkerProbe, MAX_AUTO_JOBS,
};
use kmodinit_init::report::{LoadReport, ModuleState};
use modules_manifest::{
    Action, Compression, Edge, EdgeKind, ModuleName, Plan, PlanChain, PlanNode,
};

/// Builds plans by hand: nodes in the order added (so preds must be added
/// first, as the planner guarantees), chains add their `Chain` edges.
#[derive(Debug, Default)]
pub struct PlanBuilder {
    nodes: Vec<PlanNode>,
    chains: Vec<PlanChain>,
}

/// Keeps the panics whose message `is_injected` recognises (the fake
/// kernel's injected ones, which the loader catches and reports) out of the
/// test output; every other panic (a failed assertion, loom's own reports)
/// still goes to the default hook. Installed once per test binary.
pub fn quiet_injected_panics(is_injected: fn(&str) -> bool) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !is_injected(msg) {
                default(info);
            }
        }));
    });
}

pub fn name(s: &str) -> ModuleName {
    ModuleName::new(s).unwrap()
}

impl PlanBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An Insert node `name` with hard dependencies `deps` (names added before).
    pub fn module(&mut self, n: &str, deps: &[&str]) -> usize {
        let preds: Vec<(usize, EdgeKind)> = deps
            .iter()
            .map(|d| (self.id(d), EdgeKind::Dependency))
            .collect();
        self.node(n, insert(n), "", &preds)
    }

    pub fn node(
        &mut self,
        n: &str,
        action: Action,
        params: &str,
        preds: &[(usize, EdgeKind)],
    ) -> usize {
        let id = self.nodes.len();
        self.nodes.push(PlanNode {
            id,
            name: name(n),
            action,
            params: params.to_owned(),
            required: false,
            preds: preds
                .iter()
                .map(|&(from, kind)| Edge { from, kind })
                .collect(),
            succs: Vec::new(),
            reasons: Vec::new(),
            warnings: Vec::new(),
            alternative: None,
        });
        id
    }

    pub fn id(&self, n: &str) -> usize {
        let n = name(n);
        self.nodes
            .iter()
            .position(|x| x.name == n)
            .unwrap_or_else(|| panic!("no node {n}"))
    }

    pub fn params(&mut self, n: &str, params: &str) {
        let id = self.id(n);
        self.nodes[id].params = params.to_owned();
    }

    /// Adds an edge `from → to` of `kind`.
    pub fn edge(&mut self, from: &str, to: &str, kind: EdgeKind) {
        let (from, to) = (self.id(from), self.id(to));
        self.nodes[to].preds.push(Edge { from, kind });
    }

    /// A chain of existing nodes, in order, adding the Chain edges.
    pub fn chain(&mut self, chain: &str, required: bool, entries: &[&str]) {
        let ids: Vec<usize> = entries.iter().map(|e| self.id(e)).collect();
        for w in ids.windows(2) {
            self.nodes[w[1]].preds.push(Edge {
                from: w[0],
                kind: EdgeKind::Chain,
            });
        }
        self.chain_ids(chain, required, ids);
    }

    /// A chain without adding edges (for hand-made edge sets).
    pub fn chain_ids(&mut self, chain: &str, required: bool, ids: Vec<usize>) {
        if required {
            for &i in &ids {
                self.nodes[i].required = true;
            }
        }
        self.chains.push(PlanChain {
            name: chain.to_owned(),
            required,
            nodes: ids,
        });
    }

    pub fn build(mut self) -> Plan {
        for n in &mut self.nodes {
            n.succs.clear();
        }
        let edges: Vec<(usize, usize)> = self
            .nodes
            .iter()
            .flat_map(|n| n.preds.iter().map(move |e| (e.from, n.id)))
            .collect();
        for (from, to) in edges {
            if let Some(n) = self.nodes.get_mut(from) {
                if !n.succs.contains(&to) {
                    n.succs.push(to);
                }
            }
        }
        Plan {
            nodes: self.nodes,
            chains: self.chains,
            notes: Vec::new(),
        }
    }
}

pub fn insert(n: &str) -> Action {
    Action::Insert {
        path: format!("kernel/{n}.ko"),
        compression: Compression::None,
    }
}

pub fn opts(jobs: usize) -> LoaderOptions {
    LoaderOptions {
        modules_dir: "/lib/modules/test".into(),
        jobs,
        ..LoaderOptions::default()
    }
}

/// Runs `load` on another thread and fails the test if it has not returned
/// within `limit`: a deadlock is a test failure, never a hung suite.
pub fn load_with_watchdog(
    plan: &Plan,
    kernel: &FakeKernel,
    jobs: usize,
    limit: Duration,
) -> LoadReport {
    load_opts_with_watchdog(plan, kernel, &opts(jobs), None, limit)
}

/// [`load_with_watchdog`] with options and a probe (`None`: the real one,
/// [`load`]).
pub fn load_opts_with_watchdog(
    plan: &Plan,
    kernel: &FakeKernel,
    opts: &LoaderOptions,
    probe: Option<&dyn WorkerProbe>,
    limit: Duration,
) -> LoadReport {
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        s.spawn(move || {
            let r = match probe {
                None => load(plan, kernel, opts),
                Some(p) => load_probed(plan, kernel, opts, &mut (), p),
            };
            let _ = tx.send(r);
        });
        match rx.recv_timeout(limit) {
            Ok(r) => r,
            Err(_) => {
                eprintln!("DEADLOCK: load did not return within {limit:?}; plan: {plan:#?}");
                // The scope would join the stuck thread forever: abort.
                std::process::abort();
            }
        }
    })
}

pub fn load_ok(plan: &Plan, kernel: &FakeKernel, jobs: usize) -> LoadReport {
    load_with_watchdog(plan, kernel, jobs, Duration::from_secs(60))
}

/// [`load_ok`] on the fixed pool: exactly `jobs` workers when the graph
/// keeps them busy, whatever the probe would say.
pub fn load_fixed(plan: &Plan, kernel: &FakeKernel, jobs: usize) -> LoadReport {
    let o = LoaderOptions {
        pool: PoolMode::Fixed,
        ..opts(jobs)
    };
    load_opts_with_watchdog(plan, kernel, &o, None, Duration::from_secs(60))
}

/// What the loader must decide for each node, computed sequentially from the
/// plan and the fake kernel's scripted outcomes (deterministic, unlike the
/// order of events).
pub fn expected_states(plan: &Plan, outcomes: &HashMap<String, FakeOutcome>) -> Vec<ModuleState> {
    let mut st: Vec<ModuleState> = Vec::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        let s = if node.preds.iter().any(|e| e.from >= i) {
            ModuleState::Failed
        } else if matches!(node.action, Action::Blacklisted | Action::Skipped { .. }) {
            ModuleState::Skipped
        } else if matches!(node.action, Action::Unplannable { .. }) {
            ModuleState::Failed
        } else if node
            .preds
            .iter()
            .any(|e| e.kind != EdgeKind::Softdep && !st[e.from].is_satisfied())
        {
            ModuleState::Blocked
        } else {
            match node.action {
                Action::Builtin => ModuleState::Builtin,
                Action::AlreadyLoaded => ModuleState::Already,
                Action::Blacklisted | Action::Skipped { .. } => ModuleState::Skipped,
                Action::Unplannable { .. } => ModuleState::Failed,
                Action::Insert { .. } => {
                    match outcomes
                        .get(node.name.as_str())
                        .copied()
                        .unwrap_or_default()
                    {
                        FakeOutcome::Load => ModuleState::Loaded,
                        FakeOutcome::Exists => ModuleState::Already,
                        FakeOutcome::Fail(_) | FakeOutcome::Panic => ModuleState::Failed,
                    }
                }
            }
        };
        st.push(s);
    }
    st
}

/// Nodes reachable backwards from `i` through hard (Dependency/Chain) edges.
pub fn hard_ancestors(plan: &Plan, i: usize) -> Vec<usize> {
    let mut seen = vec![false; plan.nodes.len()];
    let mut stack = vec![i];
    let mut out = Vec::new();
    while let Some(x) = stack.pop() {
        for e in &plan.nodes[x].preds {
            if e.kind != EdgeKind::Softdep && e.from < plan.nodes.len() && !seen[e.from] {
                seen[e.from] = true;
                out.push(e.from);
                stack.push(e.from);
            }
        }
    }
    out
}

/// Checks every invariant of a load against the plan and the fake kernel's
/// record; returns a description of the first violation.
pub fn check_load(
    plan: &Plan,
    kernel: &FakeKernel,
    outcomes: &HashMap<String, FakeOutcome>,
    report: &LoadReport,
    jobs: usize,
) -> Result<(), String> {
    let calls = kernel.calls();
    let dups = kernel.duplicates();
    if !dups.is_empty() {
        return Err(format!("double loads: {dups:?}"));
    }
    if report.modules.len() != plan.nodes.len() {
        return Err(format!(
            "{} report entries for {} nodes",
            report.modules.len(),
            plan.nodes.len()
        ));
    }
    let by_name: HashMap<&str, &FakeCall> = calls.iter().map(|c| (c.name.as_str(), c)).collect();
    let expected = expected_states(plan, outcomes);
    for (i, (node, m)) in plan.nodes.iter().zip(&report.modules).enumerate() {
        if m.name != node.name {
            return Err(format!("entry {i} is {} not {}", m.name, node.name));
        }
        if m.state != expected[i] {
            return Err(format!(
                "{}: state {:?}, expected {:?}",
                node.name, m.state, expected[i]
            ));
        }
        if m.params != node.params {
            return Err(format!("{}: params {:?} in report", node.name, m.params));
        }
        let call = by_name.get(node.name.as_str());
        let should_call = matches!(node.action, Action::Insert { .. })
            && matches!(
                m.state,
                ModuleState::Loaded | ModuleState::Already | ModuleState::Failed
            )
            && !node.preds.iter().any(|e| e.from >= i);
        match (call, should_call) {
            (Some(_), false) => {
                return Err(format!("{} reached the kernel ({:?})", node.name, m.state))
            }
            (None, true) => {
                return Err(format!(
                    "{} never reached the kernel ({:?})",
                    node.name, m.state
                ))
            }
            _ => {}
        }
        if let Some(c) = call {
            if c.params != node.params {
                return Err(format!("{}: kernel got params {:?}", node.name, c.params));
            }
            if m.worker.is_none_or(|w| w >= report.jobs) || m.start.is_none() || m.end.is_none() {
                return Err(format!("{}: worker/start/end missing", node.name));
            }
            for e in node.preds.iter().filter(|e| e.from < i) {
                if let Some(p) = by_name.get(plan.nodes[e.from].name.as_str()) {
                    if p.end_seq > c.start_seq {
                        return Err(format!(
                            "{} started before its predecessor {} ended",
                            node.name, p.name
                        ));
                    }
                }
            }
        } else if m.worker.is_some() || m.start.is_some() {
            return Err(format!("{}: timing without a kernel call", node.name));
        }
        match m.state {
            ModuleState::Blocked => {
                let Some(b) = &m.blocked_by else {
                    return Err(format!("{} blocked by nobody", node.name));
                };
                let root = plan.nodes.iter().position(|n| &n.name == b).unwrap();
                if !matches!(expected[root], ModuleState::Failed | ModuleState::Skipped) {
                    return Err(format!("{} blocked by {b}, which did not fail", node.name));
                }
                if !hard_ancestors(plan, i).contains(&root) {
                    return Err(format!("{} blocked by {b}, not a hard ancestor", node.name));
                }
            }
            _ if m.blocked_by.is_some() => {
                return Err(format!("{} has blocked_by but is {:?}", node.name, m.state));
            }
            ModuleState::Failed if m.error.is_none() => {
                return Err(format!("{} failed without an error", node.name));
            }
            _ => {}
        }
    }
    // jobs = 0 is automatic: bounded by MAX_AUTO_JOBS.
    let limit = if jobs == 0 { MAX_AUTO_JOBS } else { jobs };
    if report.jobs > limit {
        return Err(format!("report says {} jobs, asked {jobs}", report.jobs));
    }
    if kernel.max_concurrent() > report.jobs {
        return Err(format!(
            "{} concurrent calls with {} workers",
            kernel.max_concurrent(),
            report.jobs
        ));
    }
    Ok(())
}

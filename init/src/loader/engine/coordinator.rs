//! The coordinator: the plan's graph, each node's outcome, and the single-
//! threaded loop that hands ready nodes to the pool and releases dependents —
//! the one owner of "exactly once".

use super::*;

/// The plan's edges, checked and indexed for the coordinator.
pub(super) struct Graph {
    /// For each node: the valid predecessor edges (from < node id).
    pub(super) preds: Vec<Vec<(usize, EdgeKind)>>,
    /// For each node: (dependent, edge kind), the reverse of `preds`.
    pub(super) succs: Vec<Vec<(usize, EdgeKind)>>,
    /// For each node: why the plan is malformed there, if it is.
    pub(super) malformed: Vec<Option<String>>,
    /// The cost of the longest path from each node to a sink, the node
    /// included ([`node_costs`]): ready nodes with more work behind them go
    /// to the pool first.
    pub(super) height: Vec<u64>,
    /// Insert nodes.
    pub(super) inserts: usize,
    /// An upper bound of how many kernel calls can ever run at once: the
    /// Insert nodes, less those that share one dependency path with others
    /// (nodes on one path never overlap, so an antichain holds at most one
    /// of them).
    pub(super) width: usize,
}

impl Graph {
    /// The cost of the longest path that starts after node `id` (its
    /// dependents' heights; 0 for a node nothing depends on).
    pub(super) fn behind(&self, id: usize) -> u64 {
        self.succs[id]
            .iter()
            .map(|&(s, _)| self.height[s])
            .max()
            .unwrap_or(0)
    }

    pub(super) fn new(plan: &Plan, costs: &[u64]) -> Self {
        let n = plan.nodes.len();
        let mut preds = vec![Vec::new(); n];
        let mut succs = vec![Vec::new(); n];
        let mut malformed = vec![None; n];
        for (i, node) in plan.nodes.iter().enumerate() {
            for e in &node.preds {
                if e.from < i {
                    preds[i].push((e.from, e.kind));
                    succs[e.from].push((i, e.kind));
                } else {
                    malformed[i] = Some(format!(
                        "malformed plan: {} (node {i}) waits for node {}, which is not an earlier node",
                        node.name, e.from
                    ));
                }
            }
        }
        let cost = |i: usize| costs.get(i).copied().unwrap_or(1);
        let mut height: Vec<u64> = (0..n).map(cost).collect();
        for i in (0..n).rev() {
            for &(s, _) in &succs[i] {
                height[i] = height[i].max(height[s].saturating_add(cost(i)));
            }
        }
        let is_insert = |i: usize| matches!(plan.nodes[i].action, Action::Insert { .. });
        let inserts = (0..n).filter(|&i| is_insert(i)).count();
        // Longest path counted in Insert nodes.
        let mut path = vec![0usize; n];
        for i in 0..n {
            let longest_pred = preds[i].iter().map(|&(p, _)| path[p]).max().unwrap_or(0);
            path[i] = longest_pred + usize::from(is_insert(i));
        }
        let longest = path.into_iter().max().unwrap_or(0);
        let width = (inserts + 1).saturating_sub(longest).min(inserts);
        Graph {
            preds,
            succs,
            malformed,
            height,
            inserts,
            width,
        }
    }
}

/// The outcome of one node while the load runs.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub(super) state: ModuleState,
    pub(super) error: Option<String>,
    pub(super) blocked_by: Option<usize>,
    pub(super) start: Option<f64>,
    pub(super) end: Option<f64>,
    pub(super) worker: Option<usize>,
}

impl Outcome {
    pub(super) fn new(state: ModuleState) -> Self {
        Outcome {
            state,
            error: None,
            blocked_by: None,
            start: None,
            end: None,
            worker: None,
        }
    }
}

/// The coordinator's state: only the coordinator thread touches it.
pub(super) struct Run<'g, 'o> {
    pub(super) graph: &'g Graph,
    pub(super) observer: &'o mut dyn LoadObserver,
    /// Unfinished predecessors per node.
    pub(super) waiting: Vec<usize>,
    pub(super) outcome: Vec<Option<Outcome>>,
    /// Nodes whose predecessors are all finished, not yet decided.
    pub(super) ready: BinaryHeap<(u64, Reverse<usize>)>,
    /// Set once a node entered `ready`: the one guard that makes every node
    /// dispatched (and so passed to the kernel) at most once.
    pub(super) queued: Vec<bool>,
    pub(super) decided: usize,
    /// Nodes handed to the pool whose completion has not come yet.
    pub(super) in_flight: Vec<usize>,
}

impl<'g, 'o> Run<'g, 'o> {
    pub(super) fn new(plan: &Plan, graph: &'g Graph, observer: &'o mut dyn LoadObserver) -> Self {
        let n = plan.nodes.len();
        let mut run = Run {
            graph,
            observer,
            waiting: graph.preds.iter().map(Vec::len).collect(),
            outcome: vec![None; n],
            ready: BinaryHeap::new(),
            queued: vec![false; n],
            decided: 0,
            in_flight: Vec::new(),
        };
        for i in 0..n {
            if let Some(o) = forced_outcome(plan, graph, i) {
                run.pending_finish(plan, i, o);
            }
        }
        for i in 0..n {
            if run.outcome[i].is_none() && run.waiting[i] == 0 {
                run.push_ready(i);
            }
        }
        run
    }

    pub(super) fn push_ready(&mut self, id: usize) {
        if !self.queued[id] {
            self.queued[id] = true;
            self.ready.push((self.graph.height[id], Reverse(id)));
        }
    }

    /// Records `id`'s outcome and releases its dependents; dependents that
    /// become ready are queued (not started: the caller dispatches).
    pub(super) fn pending_finish(&mut self, plan: &Plan, id: usize, outcome: Outcome) {
        let mut stack = vec![(id, outcome)];
        while let Some((id, outcome)) = stack.pop() {
            if self.outcome[id].is_some() {
                continue;
            }
            log_outcome(plan, id, &outcome);
            self.observer.finished(&NodeOutcome {
                id,
                state: outcome.state,
                error: outcome.error.clone(),
                blocked_by: outcome.blocked_by.map(|b| plan.nodes[b].name.clone()),
                start: outcome.start,
                end: outcome.end,
                worker: outcome.worker,
            });
            let ok = outcome.state.is_satisfied();
            let root = outcome.blocked_by.unwrap_or(id);
            self.outcome[id] = Some(outcome);
            self.decided += 1;
            let graph = self.graph;
            for &(s, kind) in &graph.succs[id] {
                if self.outcome[s].is_some() {
                    continue;
                }
                self.waiting[s] = self.waiting[s].saturating_sub(1);
                if ok {
                    if self.waiting[s] == 0 {
                        self.push_ready(s);
                    }
                } else if kind == EdgeKind::Softdep {
                    log::warn!(
                        "kmodinit: softdep {} of {} did not load; loading {} anyway",
                        plan.nodes[id].name,
                        plan.nodes[s].name,
                        plan.nodes[s].name
                    );
                    if self.waiting[s] == 0 {
                        self.push_ready(s);
                    }
                } else {
                    // Decided now, without waiting for its other
                    // predecessors, so its own dependents are released at
                    // once too. Blacklisted and malformed nodes stay what
                    // they are whatever their predecessors did.
                    let o = forced_outcome(plan, graph, s).unwrap_or_else(|| {
                        let mut o = Outcome::new(ModuleState::Blocked);
                        o.blocked_by = Some(root);
                        o.error = Some(format!(
                            "not loaded: needs {}, which {}",
                            plan.nodes[root].name,
                            match self.outcome[root].as_ref().map(|o| o.state) {
                                Some(ModuleState::Skipped) => "was skipped",
                                _ => "failed",
                            }
                        ));
                        o
                    });
                    stack.push((s, o));
                }
            }
        }
    }

    /// Decides ready nodes that need no kernel call; returns the next node
    /// that does, if any, leaving it first in the ready queue.
    pub(super) fn next_insert(&mut self, plan: &Plan) -> Option<usize> {
        while let Some(&(_, Reverse(id))) = self.ready.peek() {
            if self.outcome[id].is_some() {
                self.ready.pop();
                continue;
            }
            if matches!(plan.nodes[id].action, Action::Insert { .. }) {
                return Some(id);
            }
            self.ready.pop();
            match plan.nodes[id].action {
                Action::Insert { .. } => {}
                Action::Builtin => {
                    self.pending_finish(plan, id, Outcome::new(ModuleState::Builtin))
                }
                Action::AlreadyLoaded => {
                    self.pending_finish(plan, id, Outcome::new(ModuleState::Already))
                }
                Action::Blacklisted => {
                    let mut o = Outcome::new(ModuleState::Skipped);
                    o.error = Some("blacklisted".to_owned());
                    self.pending_finish(plan, id, o)
                }
                Action::Skipped { ref option } => {
                    self.pending_finish(plan, id, skipped_by_user(option))
                }
                // Decided up front by forced_outcome; never left to run.
                Action::Unplannable { ref error } => {
                    self.pending_finish(plan, id, unplannable(error))
                }
            }
        }
        None
    }

    /// Removes and returns the next node that needs a kernel call.
    pub(super) fn take_insert(&mut self, plan: &Plan) -> Option<usize> {
        let id = self.next_insert(plan)?;
        self.ready.pop();
        Some(id)
    }

    pub(super) fn coordinate<'p>(
        &mut self,
        plan: &'p Plan,
        opts: &LoaderOptions,
        pool: &mut dyn Dispatch<'p>,
    ) {
        let n = plan.nodes.len();
        while self.decided < n {
            // Ready modules stay in the queue, in order, until the pool can
            // start them: a module that becomes ready later with more work
            // behind it still goes first.
            while let Some(next) = self.next_insert(plan) {
                if !pool.can_take(self.heads_longest_path(next)) {
                    break;
                }
                let Some(id) = self.take_insert(plan) else {
                    break;
                };
                let node = &plan.nodes[id];
                let Action::Insert { path, compression } = &node.action else {
                    continue;
                };
                self.observer.started(id, boottime());
                let job = Job {
                    id,
                    name: &node.name,
                    path: opts.modules_dir.join(path),
                    compression: *compression,
                    params: &node.params,
                };
                if pool.send(job).is_err() {
                    // Every worker is gone (cannot happen while the scope
                    // keeps them alive); fail the node rather than wait for
                    // an answer that never comes.
                    let mut o = Outcome::new(ModuleState::Failed);
                    o.error = Some("internal error: no loader worker left".to_owned());
                    self.pending_finish(plan, id, o);
                    continue;
                }
                self.in_flight.push(id);
            }
            if self.decided >= n {
                break;
            }
            if self.in_flight.is_empty() {
                // Nothing running, and nothing ready or nothing the pool
                // would start (it always can when idle): the plan's edges
                // cannot be satisfied. Fail what is left instead of waiting
                // forever.
                self.fail_stuck(plan);
                break;
            }
            let holding = self.next_insert(plan).is_some();
            match pool.recv(holding) {
                Received::Done(d) => {
                    if let Some(at) = self.in_flight.iter().position(|&i| i == d.id) {
                        self.in_flight.swap_remove(at);
                    }
                    let mut o = match d.result {
                        Ok(Inserted::Loaded) => Outcome::new(ModuleState::Loaded),
                        Ok(Inserted::AlreadyLoaded) => Outcome::new(ModuleState::Already),
                        Err(e) => {
                            let mut o = Outcome::new(ModuleState::Failed);
                            o.error = Some(e.message);
                            o
                        }
                    };
                    o.start = Some(d.start);
                    o.end = Some(d.end);
                    o.worker = Some(d.worker);
                    self.pending_finish(plan, d.id, o);
                }
                // The pool looked at its workers: maybe it starts more.
                Received::Timeout => {}
                Received::Lost => {
                    // A worker died (a loader bug): an answer will never
                    // come, and which is unknown. Fail what is undecided
                    // rather than wait; the live workers may still run what
                    // was queued before the pool closes.
                    self.fail_stuck(plan);
                    break;
                }
            }
        }
    }

    /// Whether ready node `id` heads a longest remaining path: it has
    /// dependents (a path of two modules or more starts at it), and no
    /// node in flight has more work waiting behind it ([`Graph::behind`])
    /// than `id` carries, itself included ([`Graph::height`]). Holding such
    /// a node lengthens the load by the time it is held, however busy the
    /// CPUs are, so the pool starts it at once ([`Dispatch::can_take`]). A
    /// node in flight is compared by what follows it only: its own
    /// insertion is under way. A module without dependents delays only
    /// itself, and stays under the adaptive pool's CPU rule.
    pub(super) fn heads_longest_path(&self, id: usize) -> bool {
        let graph = self.graph;
        !graph.succs[id].is_empty()
            && self
                .in_flight
                .iter()
                .all(|&r| graph.behind(r) <= graph.height[id])
    }

    /// Decides everything without a pool: the plan has nothing to insert,
    /// only satisfied, skipped or blocked nodes.
    pub(super) fn settle_without_pool(&mut self, plan: &Plan) {
        while let Some(id) = self.take_insert(plan) {
            // Unreachable (no Insert nodes), but never drop a node silently.
            let mut o = Outcome::new(ModuleState::Failed);
            o.error = Some("internal error: no loader worker".to_owned());
            self.pending_finish(plan, id, o);
        }
        if self.decided < plan.nodes.len() {
            self.fail_stuck(plan);
        }
    }

    pub(super) fn fail_stuck(&mut self, plan: &Plan) {
        for i in 0..plan.nodes.len() {
            if self.outcome[i].is_none() {
                let mut o = Outcome::new(ModuleState::Failed);
                o.error = Some(
                    "internal error: the loader could not schedule this module (malformed plan?)"
                        .to_owned(),
                );
                self.pending_finish(plan, i, o);
            }
        }
    }

    pub(super) fn into_report(
        self,
        plan: &Plan,
        graph: &Graph,
        jobs: usize,
        boottime_load_start: f64,
        boottime_load_end: f64,
    ) -> LoadReport {
        let n = plan.nodes.len();
        let mut chains: Vec<Vec<String>> = vec![Vec::new(); n];
        for c in &plan.chains {
            for &id in &c.nodes {
                if let Some(list) = chains.get_mut(id) {
                    if !list.contains(&c.name) {
                        list.push(c.name.clone());
                    }
                }
            }
        }
        let outcomes: Vec<Outcome> = self
            .outcome
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    let mut o = Outcome::new(ModuleState::Failed);
                    o.error = Some("internal error: module left undecided".to_owned());
                    o
                })
            })
            .collect();
        let mut modules: Vec<ModuleReport> = plan
            .nodes
            .iter()
            .zip(outcomes)
            .zip(chains)
            .map(|((node, o), chains)| {
                let (reason, alternative) = crate::report::plan_facts(node);
                ModuleReport {
                    name: node.name.clone(),
                    state: o.state,
                    params: node.params.clone(),
                    error: o.error,
                    blocked_by: o.blocked_by.map(|b| plan.nodes[b].name.clone()),
                    start: o.start,
                    end: o.end,
                    worker: o.worker,
                    chains,
                    warnings: node.warnings.clone(),
                    reason,
                    alternative,
                }
            })
            .collect();
        crate::report::note_alternatives(&mut modules);

        let (critical_path_s, path) = critical_path(graph, &modules);
        let failed_required_chains = ChainFailure::of_required(
            plan.chains
                .iter()
                .filter(|c| c.required)
                .map(|c| (c.name.as_str(), c.nodes.as_slice())),
            &modules,
        );
        LoadReport {
            critical_path: path.into_iter().map(|i| modules[i].name.clone()).collect(),
            modules,
            jobs,
            boottime_load_start,
            boottime_load_end,
            wall_s: (boottime_load_end - boottime_load_start).max(0.0),
            critical_path_s,
            failed_required_chains,
        }
    }
}

/// The outcome of a node decided before the load starts, whatever its
/// predecessors do: malformed and unplannable nodes fail, blacklisted ones
/// are skipped.
pub(super) fn forced_outcome(plan: &Plan, graph: &Graph, id: usize) -> Option<Outcome> {
    if let Some(why) = &graph.malformed[id] {
        let mut o = Outcome::new(ModuleState::Failed);
        o.error = Some(why.clone());
        Some(o)
    } else {
        match &plan.nodes[id].action {
            Action::Blacklisted => {
                let mut o = Outcome::new(ModuleState::Skipped);
                o.error = Some("blacklisted".to_owned());
                Some(o)
            }
            Action::Skipped { option } => Some(skipped_by_user(option)),
            Action::Unplannable { error } => Some(unplannable(error)),
            _ => None,
        }
    }
}

/// A module the user skipped (`kmodinit.skip=`): `option` is what they typed.
pub(super) fn skipped_by_user(option: &str) -> Outcome {
    let mut o = Outcome::new(ModuleState::Skipped);
    o.error = Some(format!("skipped on the command line ({option})"));
    o
}

/// A module the planner could not plan fails with the planner's message.
pub(super) fn unplannable(error: &PlanError) -> Outcome {
    let mut o = Outcome::new(ModuleState::Failed);
    o.error = Some(error.to_string());
    o
}

pub(super) fn log_outcome(plan: &Plan, id: usize, o: &Outcome) {
    let node = &plan.nodes[id];
    let name = &node.name;
    let params = if node.params.is_empty() {
        String::new()
    } else {
        format!(" (params: {})", node.params)
    };
    let ms = match (o.start, o.end) {
        (Some(s), Some(e)) => (e - s).max(0.0) * 1e3,
        _ => 0.0,
    };
    let error = o.error.as_deref().unwrap_or("");
    match o.state {
        ModuleState::Loaded => log::info!(
            "kmodinit: loaded {name} in {} ms{params}",
            crate::clock::Fixed(ms, 1)
        ),
        ModuleState::Already => log::info!("kmodinit: {name} was already loaded"),
        ModuleState::Builtin => log::info!("kmodinit: {name} is built into the kernel"),
        ModuleState::Skipped => log::warn!("kmodinit: skipped {name}: {error}"),
        // One of several matches of an alias, needed by nothing that
        // requires it: a note, not an error (crc32c_intel without SSE4.2).
        ModuleState::Failed if node.alternative.is_some() && !node.required => {
            let alias = node.alternative.as_ref().map_or("", |a| a.alias.as_str());
            log::warn!(
                "kmodinit: {name}, one of the modules {alias} matched, did not load \
                 (the others may serve): {error}"
            )
        }
        ModuleState::Failed => log::error!("kmodinit: failed to load {name}{params}: {error}"),
        ModuleState::Blocked => log::error!("kmodinit: did not load {name}: {error}"),
        // The loader decides every node; only the supervisor's handover
        // report uses this state.
        ModuleState::Pending => log::warn!("kmodinit: {name} is still loading"),
    }
}

//! `loom` checks the loader's real coordinator, on-demand pool and worker
//! code (`src/loader.rs`, its workers as loom threads through
//! `src/loader/loom_pool.rs`): for small plans with a shared dependency, a
//! failing module, a panicking kernel call, a softdep and a chain edge, on
//! pools of 1, 2 and 3 workers, with a failed thread start and with workers
//! that die (all, or one while another waits idle), in every interleaving
//! (up to the preemption bound each test names):
//! - every module reaches the kernel at most once, and exactly once when
//!   everything it needs succeeded;
//! - it starts only after its Dependency and Chain predecessors loaded,
//!   as a happens-before fact (loom checks the memory ordering);
//! - each module ends in the state a sequential reference computes: the
//!   dependents of a failed Dependency or Chain predecessor are blocked by
//!   it, a failed softdep blocks nothing;
//! - every module is in the report, and workers are started on demand, as
//!   many as the case expects (the adaptive pool with running workers never
//!   starts more than `cpus`);
//! - nothing deadlocks (loom fails a model in which every thread waits).
//!
//! Run: `make loom`. Compiled only under `--cfg loom`.
#![cfg(loom)]
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::HashMap;

use common::{expected_states, hard_ancestors, insert, opts, quiet_injected_panics, PlanBuilder};
use kmodinit_init::kernel::{FakeOutcome, InsertError, InsertRequest, Inserted, Kernel};
use kmodinit_init::loader::engine::{load_on_loom, LoaderOptions, LoomFaults};
use kmodinit_init::report::{LoadReport, ModuleState};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use modules_manifest::{Action, EdgeKind, Plan};

/// The message of the injected kernel panics, which the test's panic hook
/// keeps quiet (the loader catches them; they are expected thousands of
/// times).
const INJECTED: &str = "loom kernel: injected panic";

/// A kernel of loom atomics. It records and never asserts: a panic inside
/// `insert` would be caught by the loader's `catch_unwind` and become that
/// module's failure, not the test's.
struct LoomKernel {
    plan: &'static Plan,
    outcomes: HashMap<String, FakeOutcome>,
    calls: Vec<AtomicUsize>,
    /// Set when the module's insertion succeeded (Release), or from the start
    /// for modules that need no insertion.
    loaded: Vec<AtomicBool>,
    /// Set when the module's insertion began while one of its Dependency or
    /// Chain predecessors was not visibly loaded.
    early: Vec<AtomicBool>,
}

impl LoomKernel {
    fn new(plan: &'static Plan, outcomes: HashMap<String, FakeOutcome>) -> Self {
        LoomKernel {
            plan,
            outcomes,
            calls: plan.nodes.iter().map(|_| AtomicUsize::new(0)).collect(),
            loaded: plan
                .nodes
                .iter()
                .map(|n| {
                    AtomicBool::new(matches!(n.action, Action::Builtin | Action::AlreadyLoaded))
                })
                .collect(),
            early: plan.nodes.iter().map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

impl Kernel for LoomKernel {
    fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
        let id = self
            .plan
            .nodes
            .iter()
            .position(|n| &n.name == req.name)
            .unwrap();
        self.calls[id].fetch_add(1, Ordering::Relaxed);
        for e in &self.plan.nodes[id].preds {
            if e.kind != EdgeKind::Softdep && !self.loaded[e.from].load(Ordering::Acquire) {
                self.early[id].store(true, Ordering::Relaxed);
            }
        }
        let outcome = self.outcomes.get(req.name.as_str()).copied();
        match outcome.unwrap_or_default() {
            FakeOutcome::Load => {
                self.loaded[id].store(true, Ordering::Release);
                Ok(Inserted::Loaded)
            }
            FakeOutcome::Exists => {
                self.loaded[id].store(true, Ordering::Release);
                Ok(Inserted::AlreadyLoaded)
            }
            FakeOutcome::Fail(errno) => Err(InsertError::from_errno(
                errno,
                "finit_module",
                req.path,
                req.params,
            )),
            FakeOutcome::Panic => panic!("{INJECTED} in {}", req.name),
        }
    }
}

/// One loom model.
struct Case {
    plan: Plan,
    outcomes: Vec<(&'static str, FakeOutcome)>,
    jobs: usize,
    faults: LoomFaults,
    /// CPUs the adaptive pool is told; `None`: `jobs` (then it never holds
    /// a module a worker could take, as the pool before the adaptive rule).
    cpus: Option<usize>,
    /// How many workers the on-demand pool must start (the report's `jobs`).
    workers: std::ops::RangeInclusive<usize>,
    /// loom explores every interleaving with at most this many preemptions
    /// (forced thread switches); `None`: every interleaving. Each case's
    /// bound keeps it within about a minute on two shared cores (all cases:
    /// 2.3 minutes, 2.7 million interleavings; `make loom` prints the count
    /// of each).
    preemption_bound: Option<usize>,
}

fn check(name: &str, case: Case) {
    quiet_injected_panics(|msg| msg.starts_with(INJECTED));
    // The loom pool's threads outlive any borrow: the plan lives for the
    // test process (one small plan per test).
    let plan: &'static Plan = Box::leak(Box::new(case.plan));
    let outcomes: HashMap<String, FakeOutcome> = case
        .outcomes
        .iter()
        .map(|&(m, o)| (m.to_owned(), o))
        .collect();
    let expected = expected_states(plan, &outcomes);
    let (jobs, faults, workers) = (case.jobs, case.faults, case.workers.clone());
    let options = LoaderOptions {
        cpus: case.cpus.unwrap_or(jobs),
        ..opts(jobs)
    };
    let models = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = models.clone();

    let mut builder = loom::model::Builder::new();
    // loom's own LOOM_MAX_PREEMPTIONS (read by `Builder::new`) overrides the
    // case's bound, to explore deeper by hand.
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = case.preemption_bound;
    }
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kernel = std::sync::Arc::new(LoomKernel::new(plan, outcomes.clone()));
        let report = load_on_loom(plan, kernel.clone(), &options, faults);
        verify(plan, &kernel, &report, &expected, faults);
        assert!(
            workers.contains(&report.jobs),
            "{} workers started, expected {workers:?}",
            report.jobs
        );
    });
    println!(
        "loom {name}: {} interleavings (preemption bound {:?}, jobs {jobs}, cpus {:?}, {faults:?})",
        models.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound,
        case.cpus
    );
}

/// The invariants of one finished load.
fn verify(
    plan: &Plan,
    kernel: &LoomKernel,
    report: &LoadReport,
    expected: &[ModuleState],
    faults: LoomFaults,
) {
    assert_eq!(
        report.modules.len(),
        plan.nodes.len(),
        "every module reported"
    );
    for (i, (node, m)) in plan.nodes.iter().zip(&report.modules).enumerate() {
        let name = &node.name;
        assert_eq!(&m.name, name, "report entry {i}");
        let calls = kernel.calls[i].load(Ordering::Relaxed);
        assert!(calls <= 1, "{name} inserted {calls} times");
        assert!(
            !kernel.early[i].load(Ordering::Relaxed),
            "{name} inserted before a hard predecessor visibly loaded"
        );
        let kernel_said = matches!(
            m.state,
            ModuleState::Loaded | ModuleState::Already | ModuleState::Failed
        ) && m.worker.is_some();
        if faults.workers_die_from.is_some() {
            // A worker died with a job: the coordinator stopped waiting and
            // failed (or blocked) whatever it had not heard back about.
            // Live workers may still have run queued jobs before the pool
            // closed, but never one twice, and with every worker dead none.
            let lost = matches!(m.state, ModuleState::Failed | ModuleState::Blocked);
            assert!(lost || m.state == expected[i], "{name}: {:?}", m.state);
            if faults.workers_die_from == Some(0) {
                assert_eq!(calls, 0, "{name}: kernel call by a dead worker");
            }
            if kernel_said {
                assert_eq!(m.state, expected[i], "{name}: state from the kernel");
            }
        } else {
            assert_eq!(m.state, expected[i], "{name}: state");
            let should_call = matches!(node.action, Action::Insert { .. })
                && matches!(
                    expected[i],
                    ModuleState::Loaded | ModuleState::Already | ModuleState::Failed
                );
            assert_eq!(calls, usize::from(should_call), "{name}: kernel calls");
            assert_eq!(kernel_said, should_call, "{name}: answer recorded");
        }
        if m.worker.is_some() {
            assert_eq!(calls, 1, "{name}: a worker without a kernel call");
            assert!(m.worker.is_some_and(|w| w < report.jobs), "{name}: worker");
            assert!(m.start.is_some() && m.end.is_some(), "{name}: times");
        }
        if m.state == ModuleState::Failed {
            assert!(m.error.is_some(), "{name} failed without an error");
        }
        if m.state == ModuleState::Blocked {
            let by = m.blocked_by.as_ref().expect("blocked by a module");
            let root = plan.nodes.iter().position(|n| &n.name == by).unwrap();
            assert!(
                matches!(
                    report.modules[root].state,
                    ModuleState::Failed | ModuleState::Skipped
                ),
                "{name} blocked by {by}, which did not fail"
            );
            assert!(
                hard_ancestors(plan, i).contains(&root),
                "{name} blocked by {by}, not a Dependency/Chain ancestor"
            );
        } else {
            assert!(
                m.blocked_by.is_none(),
                "{name}: blocked_by but {:?}",
                m.state
            );
        }
    }
}

const ENODEV: i32 = 19;

/// m0 is shared by m1 and m2; m3 follows m1 in a chain and takes m2 as a
/// softdep. With m2 failing: m3 still loads, nothing is blocked.
fn shared_dep_with_softdep() -> Plan {
    let mut b = PlanBuilder::new();
    b.module("m0", &[]);
    b.module("m1", &["m0"]);
    b.module("m2", &["m0"]);
    b.node("m3", insert("m3"), "", &[]);
    b.chain("c", true, &["m1", "m3"]);
    b.edge("m2", "m3", EdgeKind::Softdep);
    b.build()
}

/// A builtin b0 and m1 feed m2; m1 also feeds m3; m4 needs m2 and m3.
fn diamond_with_builtin() -> Plan {
    let mut b = PlanBuilder::new();
    b.node("b0", Action::Builtin, "", &[]);
    b.module("m1", &[]);
    b.module("m2", &["b0", "m1"]);
    b.module("m3", &["m1"]);
    b.module("m4", &["m2", "m3"]);
    b.build()
}

/// Three roots dispatched at once (so a pool of 3 starts 3 workers, one of
/// 2 queues the third); m3 follows m1 in a chain, needs m2, softdeps m0.
fn three_roots() -> Plan {
    let mut b = PlanBuilder::new();
    b.module("m0", &[]);
    b.module("m1", &[]);
    b.module("m2", &[]);
    b.node("m3", insert("m3"), "", &[]);
    b.chain("c", false, &["m1", "m3"]);
    b.edge("m2", "m3", EdgeKind::Dependency);
    b.edge("m0", "m3", EdgeKind::Softdep);
    b.build()
}

fn softdep_fails(jobs: usize, workers: usize, preemption_bound: Option<usize>) -> Case {
    Case {
        plan: shared_dep_with_softdep(),
        outcomes: vec![("m2", FakeOutcome::Fail(ENODEV))],
        jobs,
        faults: LoomFaults::default(),
        cpus: None,
        workers: workers..=workers,
        preemption_bound,
    }
}

#[test]
fn inline_pool_of_one() {
    check("inline_pool_of_one", softdep_fails(1, 1, None));
}

#[test]
fn softdep_failure_two_workers() {
    check("softdep_failure_two_workers", softdep_fails(2, 2, Some(3)));
}

/// The width allows 3, but never are 3 jobs out at once: 2 are started.
#[test]
fn softdep_failure_three_allowed() {
    check(
        "softdep_failure_three_allowed",
        softdep_fails(3, 2, Some(2)),
    );
}

/// The shared dependency's kernel call panics: its dependents, and the
/// chain successor of one of them, are blocked without a kernel call.
#[test]
fn panicking_shared_dependency() {
    let case = Case {
        plan: shared_dep_with_softdep(),
        outcomes: vec![("m0", FakeOutcome::Panic)],
        jobs: 2,
        faults: LoomFaults::default(),
        cpus: None,
        workers: 1..=1,
        preemption_bound: None,
    };
    check("panicking_shared_dependency", case);
}

/// m2 fails: m4 is blocked by it; m3 answers EEXIST, which counts as loaded.
#[test]
fn diamond_with_failure() {
    let case = Case {
        plan: diamond_with_builtin(),
        outcomes: vec![
            ("m2", FakeOutcome::Fail(ENODEV)),
            ("m3", FakeOutcome::Exists),
        ],
        jobs: 2,
        faults: LoomFaults::default(),
        cpus: None,
        workers: 2..=2,
        preemption_bound: Some(4),
    };
    check("diamond_with_failure", case);
}

fn three_roots_case(jobs: usize, faults: LoomFaults, workers: usize, bound: Option<usize>) -> Case {
    Case {
        plan: three_roots(),
        outcomes: vec![
            ("m0", FakeOutcome::Fail(ENODEV)),
            ("m2", FakeOutcome::Exists),
        ],
        jobs,
        faults,
        cpus: None,
        workers: workers..=workers,
        preemption_bound: bound,
    }
}

#[test]
fn three_workers_started_on_demand() {
    let case = three_roots_case(3, LoomFaults::default(), 3, Some(2));
    check("three_workers_started_on_demand", case);
}

/// Three ready jobs, two workers: the third waits in the queue.
#[test]
fn limit_of_two_with_three_ready() {
    let case = three_roots_case(2, LoomFaults::default(), 2, Some(3));
    check("limit_of_two_with_three_ready", case);
}

/// The second thread cannot be started: the pool goes on with one worker.
#[test]
fn second_spawn_fails() {
    let faults = LoomFaults {
        spawn_fails_from: Some(1),
        ..LoomFaults::default()
    };
    check(
        "second_spawn_fails",
        three_roots_case(3, faults, 1, Some(6)),
    );
}

/// No thread can be started: the coordinator's thread makes every call.
#[test]
fn no_spawn_runs_inline() {
    let mut case = softdep_fails(2, 1, None);
    case.faults.spawn_fails_from = Some(0);
    check("no_spawn_runs_inline", case);
}

/// Every worker dies with its first job unanswered: the coordinator stops
/// waiting, and fails what it never heard back about.
#[test]
fn every_worker_ended() {
    let faults = LoomFaults {
        workers_die_from: Some(0),
        ..LoomFaults::default()
    };
    check(
        "every_worker_ended",
        three_roots_case(3, faults, 3, Some(3)),
    );
}

/// The second worker dies with a job while the first lives on and goes
/// idle: the coordinator must stop waiting for the lost answer then too
/// (it used to wait only once every worker had ended: a hang).
#[test]
fn one_worker_died_one_idle() {
    let faults = LoomFaults {
        workers_die_from: Some(1),
        ..LoomFaults::default()
    };
    check(
        "one_worker_died_one_idle",
        three_roots_case(2, faults, 2, Some(3)),
    );
}

/// Three independent modules, nothing after them.
fn three_leaves() -> Plan {
    let mut b = PlanBuilder::new();
    for m in ["m0", "m1", "m2"] {
        b.module(m, &[]);
    }
    b.build()
}

/// [`three_leaves`] on the adaptive pool told 1 CPU, with a cap of `jobs`.
fn three_leaves_case(
    jobs: usize,
    faults: LoomFaults,
    workers: std::ops::RangeInclusive<usize>,
    bound: Option<usize>,
) -> Case {
    Case {
        plan: three_leaves(),
        outcomes: vec![
            ("m0", FakeOutcome::Fail(ENODEV)),
            ("m2", FakeOutcome::Exists),
        ],
        jobs,
        faults,
        cpus: Some(1),
        workers,
        preemption_bound: bound,
    }
}

/// The adaptive pool on one CPU whose probe says the workers run, with
/// modules that head no path: it never has more than one insertion out,
/// so it starts one worker, and every module still loads exactly once.
#[test]
fn adaptive_one_cpu_workers_running() {
    let case = three_leaves_case(3, LoomFaults::default(), 1..=1, Some(3));
    check("adaptive_one_cpu_workers_running", case);
}

/// The same pool and probe with three roots that each head a longest path
/// (m3 follows them): none waits for the CPU rule, so three workers start
/// before any completion is taken.
#[test]
fn adaptive_path_heads_start_at_once() {
    // Three workers: the bound of three_workers_started_on_demand.
    let mut case = three_roots_case(3, LoomFaults::default(), 3, Some(2));
    case.cpus = Some(1);
    check("adaptive_path_heads_start_at_once", case);
}

/// The adaptive pool on one CPU whose probe says the workers sleep: after
/// a probe interval without a completion it hands the held modules to new
/// workers, up to the cap of 3 (or reuses one that finished meanwhile).
#[test]
fn adaptive_one_cpu_workers_asleep() {
    let faults = LoomFaults {
        asleep: true,
        ..LoomFaults::default()
    };
    let case = three_leaves_case(3, faults, 1..=3, Some(1));
    check("adaptive_one_cpu_workers_asleep", case);
}

/// The adaptive pool widening while a worker dies with a job: the
/// coordinator, polling the probe, must still notice the lost answer.
#[test]
fn adaptive_widens_while_a_worker_dies() {
    let faults = LoomFaults {
        asleep: true,
        workers_die_from: Some(1),
        ..LoomFaults::default()
    };
    let case = three_leaves_case(2, faults, 1..=2, Some(2));
    check("adaptive_widens_while_a_worker_dies", case);
}

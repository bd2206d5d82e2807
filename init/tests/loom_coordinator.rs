//! A `loom` model of the loader's coordinator protocol (`src/loader.rs`):
//! every interleaving of the coordinator and its workers, for small plans with
//! a shared dependency, a failure, a softdep and a chain edge.
//!
//! Run: `make loom` (`RUSTFLAGS="--cfg loom" cargo test -p kmodinit --test
//! loom_coordinator --release`). Compiled only under `--cfg loom`.
//!
//! Why a model and not the real code: loom can only explore interleavings of
//! its own primitives, and the loader talks through crossbeam channels, which
//! are not loom-aware. The protocol is small enough to restate faithfully:
//! the same single-threaded coordinator loop (unfinished-predecessor counts,
//! blocked-by propagation, dispatch of ready nodes, `in_flight` accounting,
//! fail-instead-of-wait when nothing can run), the same worker loop (take a
//! job, call the kernel, always answer), and unbounded MPMC channels with
//! crossbeam's semantics (send never blocks; recv blocks until a message or
//! every sender is gone) built from loom's `Mutex` + `Condvar`. A panicking
//! kernel call is modelled by what `catch_unwind` turns it into in the real
//! worker: an error answer. Keep this file in step with `loader.rs`.
#![cfg(loom)]
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

// ---- an unbounded MPMC channel with crossbeam's disconnect semantics ----

struct ChanState<T> {
    queue: VecDeque<T>,
    senders: usize,
    receivers: usize,
}

struct Chan<T> {
    state: Mutex<ChanState<T>>,
    ready: Condvar,
}

struct Sender<T>(Arc<Chan<T>>);
struct Receiver<T>(Arc<Chan<T>>);

fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(ChanState {
            queue: VecDeque::new(),
            senders: 1,
            receivers: 1,
        }),
        ready: Condvar::new(),
    });
    (Sender(chan.clone()), Receiver(chan))
}

impl<T> Sender<T> {
    fn send(&self, value: T) -> Result<(), T> {
        let mut s = self.0.state.lock().unwrap();
        if s.receivers == 0 {
            return Err(value);
        }
        s.queue.push_back(value);
        drop(s);
        self.0.ready.notify_one();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.state.lock().unwrap().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().senders -= 1;
        self.0.ready.notify_all();
    }
}

impl<T> Receiver<T> {
    /// A message, or `Err` once the queue is empty and every sender is gone.
    fn recv(&self) -> Result<T, ()> {
        let mut s = self.0.state.lock().unwrap();
        loop {
            if let Some(v) = s.queue.pop_front() {
                return Ok(v);
            }
            if s.senders == 0 {
                return Err(());
            }
            s = self.0.ready.wait(s).unwrap();
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.0.state.lock().unwrap().receivers += 1;
        Receiver(self.0.clone())
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().receivers -= 1;
    }
}

// ---- the plan and the fake kernel ----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Dependency,
    Softdep,
    Chain,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Insert,
    Builtin,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    Load,
    Fail,
    /// The real worker's `catch_unwind` turns a panic into an error answer.
    Panic,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Loaded,
    Builtin,
    Failed,
    Blocked,
}

impl State {
    fn ok(self) -> bool {
        matches!(self, State::Loaded | State::Builtin)
    }
}

struct Node {
    action: Action,
    kernel: Kernel,
    preds: Vec<(usize, Kind)>,
}

/// Records every kernel call; checks at each call that the module's hard
/// predecessors are visibly loaded (happens-before through the channels).
struct FakeKernel {
    calls: Vec<AtomicUsize>,
    loaded: Vec<AtomicBool>,
    hard_preds: Vec<Vec<usize>>,
    kernel: Vec<Kernel>,
}

impl FakeKernel {
    fn insert(&self, id: usize) -> Result<(), String> {
        let before = self.calls[id].fetch_add(1, Ordering::Relaxed);
        assert_eq!(before, 0, "node {id} inserted twice");
        for &p in &self.hard_preds[id] {
            assert!(
                self.loaded[p].load(Ordering::Acquire),
                "node {id} started before its hard predecessor {p} loaded"
            );
        }
        match self.kernel[id] {
            Kernel::Load => {
                self.loaded[id].store(true, Ordering::Release);
                Ok(())
            }
            Kernel::Fail => Err("ENODEV".into()),
            Kernel::Panic => Err("panic: injected".into()),
        }
    }
}

// ---- the protocol, as in loader.rs ----

struct Done {
    id: usize,
    result: Result<(), String>,
}

/// `lose_panics` models a worker without `catch_unwind`: a panicking kernel
/// call never answers. Only the mutation test sets it, to show that the model
/// catches the hang this would cause.
fn worker(kernel: &FakeKernel, jobs: &Receiver<usize>, done: &Sender<Done>, lose_panics: bool) {
    while let Ok(id) = jobs.recv() {
        let result = kernel.insert(id);
        if lose_panics && kernel.kernel[id] == Kernel::Panic {
            continue;
        }
        if done.send(Done { id, result }).is_err() {
            return;
        }
    }
}

struct Run<'a> {
    nodes: &'a [Node],
    succs: Vec<Vec<(usize, Kind)>>,
    waiting: Vec<usize>,
    blocked_by: Vec<Option<usize>>,
    outcome: Vec<Option<State>>,
    decisions: Vec<usize>,
    ready: Vec<usize>,
    decided: usize,
    in_flight: usize,
}

impl<'a> Run<'a> {
    fn new(nodes: &'a [Node]) -> Self {
        let n = nodes.len();
        let mut succs = vec![Vec::new(); n];
        for (i, node) in nodes.iter().enumerate() {
            for &(p, k) in &node.preds {
                assert!(p < i, "model plans are topologically ordered");
                succs[p].push((i, k));
            }
        }
        let waiting: Vec<usize> = nodes.iter().map(|x| x.preds.len()).collect();
        let ready = (0..n).filter(|&i| waiting[i] == 0).collect();
        Run {
            nodes,
            succs,
            waiting,
            blocked_by: vec![None; n],
            outcome: vec![None; n],
            decisions: vec![0; n],
            ready,
            decided: 0,
            in_flight: 0,
        }
    }

    fn finish(&mut self, id: usize, state: State) {
        let mut stack = vec![(id, state)];
        while let Some((id, state)) = stack.pop() {
            if self.outcome[id].is_some() {
                continue;
            }
            self.outcome[id] = Some(state);
            self.decisions[id] += 1;
            self.decided += 1;
            let root = if state == State::Blocked {
                self.blocked_by[id].unwrap_or(id)
            } else {
                id
            };
            for i in 0..self.succs[id].len() {
                let (s, kind) = self.succs[id][i];
                if self.outcome[s].is_some() {
                    continue;
                }
                self.waiting[s] -= 1;
                if !state.ok() && kind != Kind::Softdep && self.blocked_by[s].is_none() {
                    self.blocked_by[s] = Some(root);
                }
                if self.waiting[s] == 0 {
                    match self.blocked_by[s] {
                        Some(_) => stack.push((s, State::Blocked)),
                        None => self.ready.push(s),
                    }
                }
            }
        }
    }

    fn next_insert(&mut self) -> Option<usize> {
        while let Some(id) = self.ready.pop() {
            match self.nodes[id].action {
                Action::Insert => return Some(id),
                Action::Builtin => self.finish(id, State::Builtin),
            }
        }
        None
    }

    fn coordinate(&mut self, work: &Sender<usize>, done: &Receiver<Done>) {
        let n = self.nodes.len();
        while self.decided < n {
            while let Some(id) = self.next_insert() {
                if work.send(id).is_err() {
                    self.finish(id, State::Failed);
                    continue;
                }
                self.in_flight += 1;
            }
            if self.decided >= n {
                break;
            }
            if self.in_flight == 0 {
                self.fail_stuck();
                break;
            }
            match done.recv() {
                Ok(d) => {
                    self.in_flight -= 1;
                    let state = if d.result.is_ok() {
                        State::Loaded
                    } else {
                        State::Failed
                    };
                    self.finish(d.id, state);
                }
                Err(()) => {
                    self.fail_stuck();
                    break;
                }
            }
        }
    }

    fn fail_stuck(&mut self) {
        for i in 0..self.nodes.len() {
            if self.outcome[i].is_none() {
                self.finish(i, State::Failed);
            }
        }
    }
}

/// What a sequential loader decides: the oracle the model is checked against.
fn expected(nodes: &[Node]) -> Vec<State> {
    let mut out: Vec<State> = Vec::new();
    for node in nodes {
        let blocked = node
            .preds
            .iter()
            .any(|&(p, k)| k != Kind::Softdep && !out[p].ok());
        out.push(if blocked {
            State::Blocked
        } else {
            match (node.action, node.kernel) {
                (Action::Builtin, _) => State::Builtin,
                (Action::Insert, Kernel::Load) => State::Loaded,
                (Action::Insert, _) => State::Failed,
            }
        });
    }
    out
}

/// One loom model: `workers` workers load `nodes`; in every interleaving each
/// node is decided exactly once with the sequential oracle's state, each
/// kernel call happens at most once and after its hard predecessors loaded,
/// nothing deadlocks (loom reports a deadlock as a failure), and every worker
/// is joined.
fn check(workers: usize, plan: fn() -> Vec<Node>) {
    check_with(workers, plan, false);
}

fn check_with(workers: usize, plan: fn() -> Vec<Node>, lose_panics: bool) {
    let mut builder = loom::model::Builder::new();
    // Every interleaving with up to 2 preemptions (1 with three workers):
    // protocol bugs of this size need one or two. Bound 3 with two workers,
    // or 2 with three, did not finish in 20 minutes on 2 shared cores.
    builder.preemption_bound = Some(if workers > 2 { 1 } else { 2 });
    builder.check(move || {
        let nodes = plan();
        let n = nodes.len();
        let kernel = Arc::new(FakeKernel {
            calls: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            // A builtin predecessor is satisfied from the start.
            loaded: nodes
                .iter()
                .map(|x| AtomicBool::new(x.action == Action::Builtin))
                .collect(),
            hard_preds: nodes
                .iter()
                .map(|x| {
                    x.preds
                        .iter()
                        .filter(|(_, k)| *k != Kind::Softdep)
                        .map(|(p, _)| *p)
                        .collect()
                })
                .collect(),
            kernel: nodes.iter().map(|x| x.kernel).collect(),
        });
        let (work_tx, work_rx) = channel::<usize>();
        let (done_tx, done_rx) = channel::<Done>();
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let kernel = kernel.clone();
                let work_rx = work_rx.clone();
                let done_tx = done_tx.clone();
                thread::spawn(move || worker(&kernel, &work_rx, &done_tx, lose_panics))
            })
            .collect();
        drop(work_rx);
        drop(done_tx);

        let mut run = Run::new(&nodes);
        run.coordinate(&work_tx, &done_rx);
        drop(work_tx);
        for h in handles {
            h.join().unwrap();
        }

        let want = expected(&nodes);
        for i in 0..n {
            assert_eq!(
                run.decisions[i], 1,
                "node {i} decided {} times",
                run.decisions[i]
            );
            assert_eq!(run.outcome[i], Some(want[i]), "node {i}");
            let calls = kernel.calls[i].load(Ordering::Relaxed);
            let should_call = nodes[i].action == Action::Insert && want[i] != State::Blocked;
            assert_eq!(calls, usize::from(should_call), "kernel calls for node {i}");
        }
        assert_eq!(run.in_flight, 0);
    });
}

fn node(action: Action, kernel: Kernel, preds: &[(usize, Kind)]) -> Node {
    Node {
        action,
        kernel,
        preds: preds.to_vec(),
    }
}

/// `dep` is shared by `a` and `b`; `c` follows `a` in a chain and takes `b`
/// as a softdep. `b` fails: `c` must still load, nothing is blocked.
fn shared_dep_softdep_fails() -> Vec<Node> {
    use Kind::*;
    vec![
        node(Action::Insert, Kernel::Load, &[]),
        node(Action::Insert, Kernel::Load, &[(0, Dependency)]),
        node(Action::Insert, Kernel::Fail, &[(0, Dependency)]),
        node(Action::Insert, Kernel::Load, &[(1, Chain), (2, Softdep)]),
    ]
}

/// The shared dependency's insertion panics: both dependents and the chain
/// successor are blocked, with no kernel call.
fn shared_dep_panics() -> Vec<Node> {
    use Kind::*;
    vec![
        node(Action::Insert, Kernel::Panic, &[]),
        node(Action::Insert, Kernel::Load, &[(0, Dependency)]),
        node(Action::Insert, Kernel::Load, &[(0, Dependency)]),
        node(Action::Insert, Kernel::Load, &[(1, Chain), (2, Softdep)]),
    ]
}

/// Two roots (one builtin) feeding a diamond whose left arm fails.
fn diamond_with_builtin_and_failure() -> Vec<Node> {
    use Kind::*;
    vec![
        node(Action::Builtin, Kernel::Load, &[]),
        node(Action::Insert, Kernel::Load, &[]),
        node(
            Action::Insert,
            Kernel::Fail,
            &[(0, Dependency), (1, Dependency)],
        ),
        node(Action::Insert, Kernel::Load, &[(1, Dependency)]),
        node(
            Action::Insert,
            Kernel::Load,
            &[(2, Dependency), (3, Dependency)],
        ),
    ]
}

#[test]
fn softdep_failure_two_workers() {
    check(2, shared_dep_softdep_fails);
}

#[test]
fn softdep_failure_three_workers() {
    check(3, shared_dep_softdep_fails);
}

#[test]
fn panicking_shared_dependency_two_workers() {
    check(2, shared_dep_panics);
}

#[test]
fn diamond_two_workers() {
    check(2, diamond_with_builtin_and_failure);
}

#[test]
fn one_worker_is_enough() {
    check(1, shared_dep_softdep_fails);
}

/// Mutation check, run by hand: the model must catch a worker that loses a
/// completion (what a missing `catch_unwind` would do). Loom reports
/// "deadlock; threads = [...all Blocked...]" and, since its threads cannot
/// unwind, aborts the test process, so this cannot be a `should_panic` test.
#[test]
#[ignore = "mutation check: must abort with loom's deadlock report"]
fn a_lost_completion_is_caught_as_a_deadlock() {
    check_with(2, shared_dep_panics, true);
}

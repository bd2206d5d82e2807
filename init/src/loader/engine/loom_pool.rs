//! The pool's workers as `loom` threads, so that `loom` checks the real
//! coordinator ([`Run`](super::Run)), the real on-demand pool
//! ([`OnDemand`](super::OnDemand): when to start a worker, the `limit`,
//! `busy` and inline fallback) and the real worker body
//! ([`work`](super::work), [`insert`](super::insert) with its
//! `catch_unwind`). Only the mechanism below differs from
//! [`Threads`](super::Threads): loom threads instead of a `std` scope
//! (hence the `'static` plan and the `Arc` kernel), and queues built from
//! loom's `Mutex` and `Condvar` with the semantics the real pool gets from
//! crossbeam (a send never blocks; a worker waits for a job until the pool
//! closes; the coordinator waits for a completion until a worker has
//! ended, which before the pool closes means it died). loom has no clock:
//! a wait with a timeout (the adaptive pool's probe interval) may time out
//! whenever no completion is queued, at most [`MAX_TIMEOUTS`] times in a
//! row (each then probes; an unbounded spin would give loom infinitely many
//! interleavings), then waits for a completion. The probe
//! ([`LoomProbe`]) answers what the case says. Compiled only under
//! `--cfg loom`.

use std::collections::VecDeque;
use std::sync::PoisonError;

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread::JoinHandle;

use super::{work, Done, Job, Kernel, Received, WorkerProbe, Workers};

/// Timeouts in a row the coordinator may see before a wait blocks.
const MAX_TIMEOUTS: usize = 2;

/// What the machine, or a loader bug, does to the workers in a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoomFaults {
    /// Starting worker number `n` or any later one fails, as thread creation
    /// can when early boot is short of memory.
    pub spawn_fails_from: Option<usize>,
    /// Worker number `n` and every later one ends with the first job it
    /// takes, without running or answering it: a worker that died outside
    /// `catch_unwind` (a loader bug), so that the coordinator's "a worker
    /// ended" path runs, with the other workers alive or not.
    pub workers_die_from: Option<usize>,
    /// What the adaptive pool's probe says: every busy worker asleep inside
    /// the kernel (true: the pool widens to its cap whenever it holds a
    /// ready module), or every one on a CPU (false: it stays at `cpus`).
    pub asleep: bool,
}

/// The probe of a loom model: a fixed answer.
pub(super) struct LoomProbe(pub(super) bool);

impl WorkerProbe for LoomProbe {
    fn register(&self, _worker: usize) {}
    fn on_cpu(&self, started: usize, _busy: usize) -> usize {
        if self.0 {
            0
        } else {
            started
        }
    }
}

/// An unbounded queue. `pop` waits until there is a value or the queue is
/// closed.
struct Queue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
}

struct QueueState<T> {
    items: VecDeque<T>,
    open: bool,
}

impl<T> Queue<T> {
    fn new() -> Arc<Self> {
        Arc::new(Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                open: true,
            }),
            ready: Condvar::new(),
        })
    }

    fn push(&self, value: T) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .items
            .push_back(value);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<T> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(v) = s.items.pop_front() {
                return Some(v);
            }
            if !s.open {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A value if there is one now, without waiting.
    fn try_pop(&self) -> Option<T> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .items
            .pop_front()
    }

    fn is_open(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
    }

    fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open = false;
        // Every waiter must see it: several workers may wait for a job.
        self.ready.notify_all();
    }
}

/// Closes the completion queue when its worker ends, however it ends: what
/// `is_finished` on the real pool's handles observes.
struct Ended(Arc<Queue<Done>>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// [`Workers`] on loom threads.
pub(super) struct LoomWorkers<K> {
    kernel: std::sync::Arc<K>,
    /// Open until the pool closes.
    jobs: Arc<Queue<Job<'static>>>,
    /// Open until a worker ends.
    done: Arc<Queue<Done>>,
    handles: Vec<JoinHandle<()>>,
    faults: LoomFaults,
    /// Timeouts since the last completion.
    timeouts: usize,
}

impl<K> LoomWorkers<K> {
    pub(super) fn new(kernel: std::sync::Arc<K>, faults: LoomFaults) -> Self {
        LoomWorkers {
            kernel,
            jobs: Queue::new(),
            done: Queue::new(),
            handles: Vec::new(),
            faults,
            timeouts: 0,
        }
    }
}

impl<K: Kernel + Send + 'static> Workers<'static> for LoomWorkers<K> {
    fn spawn(&mut self, worker: usize) -> std::io::Result<()> {
        if self.faults.spawn_fails_from.is_some_and(|n| worker >= n) {
            return Err(std::io::Error::other("injected: no more threads"));
        }
        let kernel = self.kernel.clone();
        let jobs = self.jobs.clone();
        let ended = Ended(self.done.clone());
        let dies = self.faults.workers_die_from.is_some_and(|n| worker >= n);
        self.handles.push(loom::thread::spawn(move || {
            if dies {
                drop(jobs.pop());
                drop(ended);
                return;
            }
            work(worker, &*kernel, std::iter::from_fn(|| jobs.pop()), |d| {
                ended.0.push(d);
                true
            });
        }));
        Ok(())
    }

    fn send(&mut self, job: Job<'static>) -> Result<(), Job<'static>> {
        self.jobs.push(job);
        Ok(())
    }

    fn recv(&mut self, timeout: Option<std::time::Duration>) -> Received {
        if timeout.is_some() && self.timeouts < MAX_TIMEOUTS {
            if let Some(d) = self.done.try_pop() {
                self.timeouts = 0;
                return Received::Done(d);
            }
            if !self.done.is_open() {
                return Received::Lost;
            }
            self.timeouts += 1;
            return Received::Timeout;
        }
        match self.done.pop() {
            Some(d) => {
                self.timeouts = 0;
                Received::Done(d)
            }
            None => Received::Lost,
        }
    }

    fn close(self) -> bool {
        self.jobs.close();
        let mut panicked = false;
        for h in self.handles {
            panicked |= h.join().is_err();
        }
        panicked
    }
}

//! [`FakeKernel`]: a recording, scriptable [`Kernel`] for tests and benchmarks.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use modules_manifest::{Compression, ModuleName};

use super::WorkerProbe;
use super::{InsertError, InsertRequest, Inserted, Kernel};

/// What the fake kernel does with one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FakeOutcome {
    /// Loads (after the module's delay).
    #[default]
    Load,
    /// Answers `EEXIST`, as the kernel does for a module it already has.
    Exists,
    /// Fails with this errno.
    Fail(i32),
    /// Panics inside `insert`, to prove a buggy kernel implementation cannot
    /// take the loader down.
    Panic,
}

/// One recorded call to [`FakeKernel::insert`].
///
/// `start_seq`/`end_seq` come from one counter shared by all calls, so
/// "B started after A ended" is `b.start_seq > a.end_seq`: a logical order
/// that tests can assert without timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCall {
    pub name: ModuleName,
    pub params: String,
    pub path: PathBuf,
    pub compression: Compression,
    pub start_seq: u64,
    pub end_seq: u64,
    /// Since the fake kernel was created.
    pub start: Duration,
    pub end: Duration,
    pub thread: ThreadId,
    pub outcome: FakeOutcome,
}

/// A kernel that loads nothing and remembers everything.
///
/// Per module (by normalised name; `-` and `_` are the same) it can sleep,
/// fail with an errno, answer `EEXIST` or panic; every other module loads
/// after the default delay. Thread-safe; counts how many calls run at once.
#[derive(Debug)]
pub struct FakeKernel {
    epoch: Instant,
    default_delay: Duration,
    cpu_bound: bool,
    delays: HashMap<String, Duration>,
    outcomes: HashMap<String, FakeOutcome>,
    /// module → module whose `insert` must have begun before it returns.
    gates: HashMap<String, String>,
    gate_timeout: Duration,
    started: Mutex<HashSet<String>>,
    started_cv: Condvar,
    seq: AtomicU64,
    active: AtomicUsize,
    max_active: AtomicUsize,
    calls: Mutex<Vec<FakeCall>>,
    /// Worker number → its thread, as the loader registered them
    /// ([`WorkerProbe`]).
    workers: Mutex<HashMap<usize, ThreadId>>,
    /// Threads inside `insert`: true while they sleep (a sleeping delay, a
    /// gate), false while they run. Absent: idle, waiting for work.
    inside: Mutex<HashMap<ThreadId, bool>>,
}

impl Default for FakeKernel {
    fn default() -> Self {
        FakeKernel::new()
    }
}

fn key(name: &str) -> String {
    name.replace('-', "_")
}

impl FakeKernel {
    /// A fake where every module loads at once.
    pub fn new() -> Self {
        FakeKernel {
            epoch: Instant::now(),
            default_delay: Duration::ZERO,
            cpu_bound: false,
            delays: HashMap::new(),
            outcomes: HashMap::new(),
            gates: HashMap::new(),
            gate_timeout: Duration::from_secs(30),
            started: Mutex::new(HashSet::new()),
            started_cv: Condvar::new(),
            seq: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            calls: Mutex::new(Vec::new()),
            workers: Mutex::new(HashMap::new()),
            inside: Mutex::new(HashMap::new()),
        }
    }

    /// Marks the calling thread as inside `insert`, asleep or on a CPU.
    fn set_inside(&self, asleep: bool) {
        self.inside
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(std::thread::current().id(), asleep);
    }

    /// Every module without its own delay sleeps `delay` in `insert`.
    pub fn default_delay(mut self, delay: Duration) -> Self {
        self.default_delay = delay;
        self
    }

    /// Delays burn CPU time of the calling thread instead of sleeping, to
    /// model module init that computes rather than waits on hardware
    /// (benchmarks: how a pool wider than the CPUs behaves then).
    pub fn cpu_bound(mut self, yes: bool) -> Self {
        self.cpu_bound = yes;
        self
    }

    /// `module` sleeps `delay` in `insert` (whatever its outcome).
    pub fn delay(mut self, module: &str, delay: Duration) -> Self {
        self.delays.insert(key(module), delay);
        self
    }

    /// `module` gets `outcome`.
    pub fn outcome(mut self, module: &str, outcome: FakeOutcome) -> Self {
        self.outcomes.insert(key(module), outcome);
        self
    }

    /// `module` fails with `errno`.
    pub fn fail(self, module: &str, errno: i32) -> Self {
        self.outcome(module, FakeOutcome::Fail(errno))
    }

    /// `module` panics inside `insert`.
    pub fn panic(self, module: &str) -> Self {
        self.outcome(module, FakeOutcome::Panic)
    }

    /// `module` answers `EEXIST`.
    pub fn exists(self, module: &str) -> Self {
        self.outcome(module, FakeOutcome::Exists)
    }

    /// `module`'s `insert` does not return until the `insert` of `other` has
    /// begun (or [`FakeKernel::gate_timeout`] passed, then it fails with
    /// `ETIMEDOUT`). Proves two calls overlap without timing assertions: a
    /// loader that serialised them would make `module` time out.
    pub fn wait_for_start(mut self, module: &str, other: &str) -> Self {
        self.gates.insert(key(module), key(other));
        self
    }

    /// How long a [`FakeKernel::wait_for_start`] gate waits (default 30 s).
    pub fn gate_timeout(mut self, timeout: Duration) -> Self {
        self.gate_timeout = timeout;
        self
    }

    fn wait_gate(&self, other: &str) -> bool {
        let deadline = Instant::now() + self.gate_timeout;
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        while !started.contains(other) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            started = self
                .started_cv
                .wait_timeout(started, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn lock_calls(&self) -> MutexGuard<'_, Vec<FakeCall>> {
        // A panicking fake module never holds this lock, but stay usable anyway.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every call so far, in the order they ended.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock_calls().clone()
    }

    /// The calls for `module`.
    pub fn calls_for(&self, module: &str) -> Vec<FakeCall> {
        let k = key(module);
        self.lock_calls()
            .iter()
            .filter(|c| c.name.as_str() == k)
            .cloned()
            .collect()
    }

    /// How many times `module` reached the kernel.
    pub fn call_count(&self, module: &str) -> usize {
        self.calls_for(module).len()
    }

    /// The names that reached the kernel more than once (empty when the
    /// loader kept its exactly-once promise).
    pub fn duplicates(&self) -> Vec<ModuleName> {
        let mut seen = BTreeSet::new();
        let mut dup = BTreeSet::new();
        for c in self.lock_calls().iter() {
            if !seen.insert(c.name.clone()) {
                dup.insert(c.name.clone());
            }
        }
        dup.into_iter().collect()
    }

    /// The most calls that were inside `insert` at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }

    /// How many distinct threads called `insert`.
    pub fn threads_used(&self) -> usize {
        self.lock_calls()
            .iter()
            .map(|c| c.thread)
            .collect::<HashSet<_>>()
            .len()
    }

    /// Forgets the recorded calls and the concurrency high-water mark, so one
    /// fake serves several loads (benchmarks).
    pub fn reset(&self) {
        self.lock_calls().clear();
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.max_active.store(0, Ordering::SeqCst);
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Records the call when dropped, so a panicking fake module is recorded too
/// and the concurrency counter goes back down.
struct CallGuard<'k> {
    kernel: &'k FakeKernel,
    call: Option<FakeCall>,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let k = self.kernel;
        k.inside
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&std::thread::current().id());
        k.active.fetch_sub(1, Ordering::SeqCst);
        if let Some(mut call) = self.call.take() {
            call.end_seq = k.seq.fetch_add(1, Ordering::SeqCst);
            call.end = k.epoch.elapsed();
            k.lock_calls().push(call);
        }
    }
}

impl Kernel for FakeKernel {
    fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
        let name = req.name.as_str();
        let outcome = self.outcomes.get(name).copied().unwrap_or_default();
        let delay = self.delays.get(name).copied().unwrap_or(self.default_delay);

        let now_active = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now_active, Ordering::SeqCst);
        let _guard = CallGuard {
            kernel: self,
            call: Some(FakeCall {
                name: req.name.clone(),
                params: req.params.to_owned(),
                path: req.path.to_owned(),
                compression: req.compression,
                start_seq: self.seq.fetch_add(1, Ordering::SeqCst),
                end_seq: 0,
                start: self.epoch.elapsed(),
                end: Duration::ZERO,
                thread: std::thread::current().id(),
                outcome,
            }),
        };

        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned());
        self.started_cv.notify_all();

        if self.cpu_bound {
            self.set_inside(false);
            burn_cpu(delay);
        } else if !delay.is_zero() {
            self.set_inside(true);
            std::thread::sleep(delay);
        }
        self.set_inside(false);
        if let Some(other) = self.gates.get(name) {
            self.set_inside(true);
            let opened = self.wait_gate(other);
            self.set_inside(false);
            if !opened {
                return Err(InsertError::from_errno(
                    libc::ETIMEDOUT,
                    "finit_module",
                    req.path,
                    req.params,
                ));
            }
        }
        match outcome {
            FakeOutcome::Load => Ok(Inserted::Loaded),
            FakeOutcome::Exists => Ok(Inserted::AlreadyLoaded),
            FakeOutcome::Fail(errno) => Err(InsertError::from_errno(
                errno,
                "finit_module",
                req.path,
                req.params,
            )),
            FakeOutcome::Panic => panic!("fake kernel: injected panic in {name}"),
        }
    }
}

/// The fake kernel knows which calls sleep (a delay that is not
/// [`FakeKernel::cpu_bound`], a gate) and which run: the adaptive pool's
/// probe, without `/proc`.
impl WorkerProbe for FakeKernel {
    fn register(&self, worker: usize) {
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(worker, std::thread::current().id());
    }

    /// The busy workers less those asleep inside `insert`. Not "the
    /// workers inside `insert` and running": a worker that was sent a job
    /// but has not reached `insert` yet (not scheduled yet on a loaded
    /// machine), or that has left it and not handed its completion over,
    /// is busy and not asleep in a module's init (under `/proc` it is
    /// runnable), and counting it off a CPU let the pool start a third
    /// CPU-bound insertion on two CPUs when the test machine was loaded.
    fn on_cpu(&self, started: usize, busy: usize) -> usize {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let inside = self.inside.lock().unwrap_or_else(PoisonError::into_inner);
        let asleep = (0..started)
            .filter(|w| workers.get(w).is_some_and(|t| inside.get(t) == Some(&true)))
            .count();
        busy.saturating_sub(asleep)
    }
}

/// Spins until this thread has used `cpu` of CPU time (not wall time: under
/// contention it takes longer, as real computation would).
fn burn_cpu(cpu: Duration) {
    use nix::time::{clock_gettime, ClockId};
    let now = || {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
            .ok()
    };
    let Some(start) = now() else {
        // No thread CPU clock: fall back to wall time.
        let end = Instant::now() + cpu;
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        return;
    };
    let mut x = 0u64;
    while now().is_some_and(|t| t.saturating_sub(start) < cpu) {
        for i in 0..1000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
}

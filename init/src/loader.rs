//! The parallel loader: runs a [`Plan`] against a [`Kernel`] on a pool of
//! worker threads, inserting every module exactly once, each as soon as
//! everything it needs has loaded.
//!
//! One thread, the coordinator (the caller of [`load`]), owns all scheduling
//! state: it counts each node's unfinished predecessors, hands ready nodes to
//! the workers over a channel, receives their completions on another and
//! releases dependents. Workers only make kernel calls. "Exactly once" is
//! therefore a property of one single-threaded loop, not of shared state.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use crossbeam_channel as channel;
use modules_manifest::{Action, Compression, EdgeKind, ModuleName, Plan, PlanError};

use crate::clock::boottime;
use crate::kernel::{InsertError, InsertRequest, Inserted, Kernel};
use crate::report::{ChainFailure, LoadReport, ModuleReport, ModuleState};

/// The widest pool the automatic width allows.
pub const MAX_AUTO_JOBS: usize = 32;

/// How the loader runs. The zero value (`Default`) means: automatic pool
/// width, adaptive pool, cost-aware order, module paths taken as the plan
/// gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Directory the plan's relative module paths are joined to
    /// (`/lib/modules/$(uname -r)`).
    pub modules_dir: PathBuf,
    /// The most workers the pool may start (manifest `jobs`,
    /// `kmodinit.jobs=`); 0 = automatic: min(graph width, [`MAX_AUTO_JOBS`])
    /// for the adaptive pool, [`auto_jobs`] for the fixed one.
    pub jobs: usize,
    /// CPUs the adaptive pool keeps busy; 0 = [`available_cpus`].
    pub cpus: usize,
    pub pool: PoolMode,
    pub order: Order,
}

/// When the pool hands a ready module to a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PoolMode {
    /// About one insertion on a CPU per CPU: a ready module waits while
    /// `cpus` or more workers are busy, unless the [`WorkerProbe`] shows
    /// that some of them sleep inside a module's init (then it goes to an
    /// idle worker or a new one, up to the cap). No tuning for sleeping
    /// (probes, firmware) or CPU-bound (signature checks, relocation) init.
    #[default]
    Adaptive,
    /// Every ready module goes to a worker at once, up to the cap (the
    /// pool before issue 16; benchmarks compare against it). Diagnostic:
    /// `KMODINIT_POOL=fixed` on the kernel command line.
    Fixed,
}

/// Which ready module goes to the pool first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Longest remaining path first, a module costing its file size plus
    /// [`INSERT_FIXED_COST_BYTES`] (what is known at plan time: signature
    /// check and relocation grow with the file).
    #[default]
    CostAware,
    /// Longest remaining path first counted in modules, every module the
    /// same (the order before issue 16). Diagnostic:
    /// `KMODINIT_ORDER=unit` on the kernel command line.
    Unit,
}

/// What one insertion costs beyond its file size, in bytes of file: the
/// syscall, the module's allocation and its init (a 10 KB fixture module
/// takes ~11 ms under QEMU TCG, a 1 MB one ~100 ms).
pub const INSERT_FIXED_COST_BYTES: u64 = 64 * 1024;

/// Workers per CPU that [`auto_jobs`] allows.
pub const AUTO_JOBS_PER_CPU: usize = 4;

/// The width of the fixed pool ([`PoolMode::Fixed`]) when `jobs` is 0,
/// for a plan in which at most `width` modules can load at the same time,
/// on a machine with `cpus` CPUs: `min(width, 4 × cpus)`, at least 1, at
/// most [`MAX_AUTO_JOBS`]. The adaptive pool needs no such compromise
/// (init/REPORT.md has the figures of both).
pub fn auto_jobs(width: usize, cpus: usize) -> usize {
    width
        .min(AUTO_JOBS_PER_CPU.saturating_mul(cpus.max(1)))
        .clamp(1, MAX_AUTO_JOBS)
}

/// The CPUs this process may run on (its affinity mask); 1 if that is
/// unknown. Not [`std::thread::available_parallelism`]: it also reads cgroup
/// quotas, which do not apply to PID 1 in an initramfs, and links std's
/// cgroup and mountinfo parsing into `/init` for that.
pub fn available_cpus() -> usize {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .count()
            .max(1),
        Err(_) => 1,
    }
}

/// Loads `plan` with `kernel`: every `Insert` node is passed to
/// [`Kernel::insert`] at most once, only after all its predecessors finished
/// (and, for `Dependency` and `Chain` edges, succeeded); `Builtin` and
/// `AlreadyLoaded` nodes are satisfied without a kernel call; `Blacklisted`
/// nodes are skipped. A failed module blocks its transitive dependents
/// (through `Dependency` and `Chain` edges, not `Softdep`) and nothing else.
///
/// Blocking: returns when every node has an outcome, after every worker
/// thread has been joined. Never panics, even when the kernel implementation
/// does (that module fails with "panic: …"), and never hangs on a malformed
/// plan (a predecessor id that is out of range or not smaller than the
/// node's own id fails that node). Logs one line per module.
pub fn load<K: Kernel>(plan: &Plan, kernel: &K, opts: &LoaderOptions) -> LoadReport {
    load_observed(plan, kernel, opts, &mut ())
}

/// What [`load_observed`] tells its observer while the load runs, on the
/// coordinator's thread (an observer needs no locking). The loader child
/// streams these to PID 1, which may hand the machine over before the load
/// ends.
pub trait LoadObserver {
    /// Node `id` was handed to a worker at `t` (boot time, seconds): from
    /// now on it may sit inside the kernel.
    fn started(&mut self, id: usize, t: f64);
    /// Node `id` has its final outcome.
    fn finished(&mut self, outcome: &NodeOutcome);
}

/// The no-op observer of [`load`].
impl LoadObserver for () {
    fn started(&mut self, _id: usize, _t: f64) {}
    fn finished(&mut self, _outcome: &NodeOutcome) {}
}

/// The final outcome of one plan node, as [`LoadObserver::finished`] gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOutcome {
    /// The node's index in the plan (and in [`LoadReport::modules`]).
    pub id: usize,
    pub state: ModuleState,
    pub error: Option<String>,
    pub blocked_by: Option<ModuleName>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub worker: Option<usize>,
}

/// As [`load`], telling `observer` when each kernel call starts and each
/// node is decided. Same guarantees; `observer` is called exactly once per
/// node with [`LoadObserver::finished`]. The adaptive pool watches its
/// workers through `/proc` ([`ProcProbe`]).
pub fn load_observed<K: Kernel>(
    plan: &Plan,
    kernel: &K,
    opts: &LoaderOptions,
    observer: &mut dyn LoadObserver,
) -> LoadReport {
    load_probed(plan, kernel, opts, observer, &ProcProbe::new())
}

/// As [`load_observed`], with the adaptive pool asking `probe` which of its
/// workers are on a CPU (tests inject a fake; the answers only decide how
/// wide the pool grows, never whether a module loads or how often).
pub fn load_probed<K: Kernel>(
    plan: &Plan,
    kernel: &K,
    opts: &LoaderOptions,
    observer: &mut dyn LoadObserver,
    probe: &dyn WorkerProbe,
) -> LoadReport {
    load_on(plan, opts, kernel, observer, |run, width| {
        // std's scope joins every worker before it returns; `Threads::close`
        // joins them first so that a worker panic is counted rather than
        // re-raised by the scope.
        std::thread::scope(|scope| {
            let (work, work_rx) = channel::unbounded::<Job<'_>>();
            let (done_tx, done) = channel::unbounded::<Done>();
            let threads = Threads {
                scope,
                kernel,
                probe,
                handles: Vec::with_capacity(width.limit),
                work,
                work_rx,
                done_tx,
                done,
            };
            run_pool(run, plan, opts, kernel, width, probe, threads)
        })
    })
}

/// Loads `plan` as [`load`] does, with worker threads started by `loom`, so
/// that `loom` explores every interleaving of the real coordinator, pool and
/// worker code (`tests/loom_coordinator.rs`). `faults` injects what the
/// machine or a loader bug can do to the workers, and what the adaptive
/// pool's probe answers. Only under `--cfg loom`, inside a loom model.
#[cfg(loom)]
pub fn load_on_loom<K: Kernel + Send + 'static>(
    plan: &'static Plan,
    kernel: std::sync::Arc<K>,
    opts: &LoaderOptions,
    faults: LoomFaults,
) -> LoadReport {
    load_on(plan, opts, &*kernel, &mut (), |run, width| {
        let probe = loom_pool::LoomProbe(faults.asleep);
        let workers = loom_pool::LoomWorkers::new(kernel.clone(), faults);
        run_pool(run, plan, opts, &*kernel, width, &probe, workers)
    })
}

#[cfg(loom)]
mod loom_pool;
#[cfg(loom)]
pub use loom_pool::LoomFaults;

/// How wide the pool may grow and how it decides.
#[derive(Debug, Clone, Copy)]
struct Width {
    /// The cap: never more workers than this.
    limit: usize,
    /// CPUs to keep busy (adaptive pool).
    cpus: usize,
    mode: PoolMode,
}

/// The load around the pool: picks the pool's cap, runs the coordinator on
/// `pool` (given the width; it answers how many workers it used), inline or
/// without a pool when fewer than two workers would do, and reports.
fn load_on<K: Kernel>(
    plan: &Plan,
    opts: &LoaderOptions,
    kernel: &K,
    observer: &mut dyn LoadObserver,
    pool: impl FnOnce(&mut Run<'_, '_>, Width) -> usize,
) -> LoadReport {
    let boottime_load_start = boottime();
    let costs = node_costs(plan, opts);
    let graph = Graph::new(plan, &costs);
    let cpus = if opts.cpus == 0 {
        available_cpus()
    } else {
        opts.cpus
    };
    let requested = match (opts.jobs, opts.pool) {
        (0, PoolMode::Fixed) => auto_jobs(graph.width, cpus),
        (0, PoolMode::Adaptive) => graph.width.clamp(1, MAX_AUTO_JOBS),
        (n, _) => n,
    };
    // No point in threads that would never get work.
    let jobs = requested
        .min(graph.inserts)
        .max(usize::from(graph.inserts > 0));

    let mut run = Run::new(plan, &graph, observer);
    let workers = if jobs > 1 {
        pool(
            &mut run,
            Width {
                limit: jobs,
                cpus,
                mode: opts.pool,
            },
        )
    } else if jobs == 1 {
        // One worker: the calling thread is that worker, no thread needed.
        run.coordinate(plan, opts, &mut Inline::new(kernel));
        1
    } else {
        run.settle_without_pool(plan);
        0
    };
    let boottime_load_end = boottime();
    run.into_report(
        plan,
        &graph,
        workers,
        boottime_load_start,
        boottime_load_end,
    )
}

/// Each node's cost for the order of ready modules: for an insertion, its
/// file's size plus [`INSERT_FIXED_COST_BYTES`] with [`Order::CostAware`]
/// (a file that cannot be stat'ed costs the fixed part only: the insertion
/// will report why), 1 with [`Order::Unit`]; nothing for a node that needs
/// no kernel call.
fn node_costs(plan: &Plan, opts: &LoaderOptions) -> Vec<u64> {
    plan.nodes
        .iter()
        .map(|node| match (&node.action, opts.order) {
            (_, Order::Unit) => 1,
            (Action::Insert { path, .. }, Order::CostAware) => {
                let size = std::fs::metadata(opts.modules_dir.join(path)).map_or(0, |m| m.len());
                INSERT_FIXED_COST_BYTES.saturating_add(size)
            }
            (_, Order::CostAware) => 0,
        })
        .collect()
}

/// Runs the coordinator on a pool of at most `width.limit` workers started
/// on demand from `workers`, then closes it and joins every worker. Returns
/// how many workers ran kernel calls (1 when none could be started: then the
/// coordinator's own thread made them).
fn run_pool<'p, K: Kernel, W: Workers<'p>>(
    run: &mut Run<'_, '_>,
    plan: &'p Plan,
    opts: &LoaderOptions,
    kernel: &K,
    width: Width,
    probe: &dyn WorkerProbe,
    workers: W,
) -> usize {
    let mut pool = OnDemand {
        workers,
        kernel,
        probe,
        limit: width.limit,
        cpus: width.cpus.max(1),
        mode: width.mode,
        spawned: 0,
        busy: 0,
        on_cpu: 0,
        probe_wait: PROBE_INTERVAL,
        inline: std::collections::VecDeque::new(),
    };
    run.coordinate(plan, opts, &mut pool);
    if pool.workers.close() {
        // Workers catch panics around the kernel call; anything else
        // panicking is a loader bug. The coordinator already accounted for
        // every node it could not get a completion for.
        log::error!("kmodinit: a loader worker panicked outside a module insertion");
    }
    pool.spawned.max(1)
}

/// One node a worker should insert.
struct Job<'p> {
    id: usize,
    name: &'p ModuleName,
    path: PathBuf,
    compression: Compression,
    params: &'p str,
}

/// A worker's answer for one job.
struct Done {
    id: usize,
    worker: usize,
    start: f64,
    end: f64,
    result: Result<Inserted, InsertError>,
}

/// What waiting for a completion gave.
enum Received {
    Done(Done),
    /// The wait's time ran out: look at the workers again.
    Timeout,
    /// A worker ended before the pool closed: it died, and whatever job it
    /// held will never be answered.
    Lost,
}

/// Where the coordinator sends ready jobs and gets completions from.
trait Dispatch<'p> {
    /// Whether a job sent now would start at once (on an idle worker, a new
    /// one, or inline) under the pool's rule. May start no thread itself.
    fn can_take(&mut self) -> bool;
    /// Hands `job` to a worker; gives it back if no worker can take it.
    fn send(&mut self, job: Job<'p>) -> Result<(), Job<'p>>;
    /// The next completion. `holding`: the coordinator holds ready jobs
    /// that [`Dispatch::can_take`] refused, so the wait may end early
    /// ([`Received::Timeout`]) for the pool to look at its workers again.
    fn recv(&mut self, holding: bool) -> Received;
}

/// Worker threads behind channels, as [`OnDemand`] drives them: the one
/// part of the pool that differs between the real threads and the loom
/// model.
trait Workers<'p> {
    /// Starts worker number `worker`, which registers with the probe on its
    /// own thread, then runs [`work`] on the jobs sent until the pool is
    /// closed.
    fn spawn(&mut self, worker: usize) -> std::io::Result<()>;
    /// Queues `job` for the started workers; gives it back if none can ever
    /// take it.
    fn send(&mut self, job: Job<'p>) -> Result<(), Job<'p>>;
    /// Waits for the next completion, at most `timeout` if one is given;
    /// [`Received::Lost`] once a worker has ended before the pool closed.
    fn recv(&mut self, timeout: Option<std::time::Duration>) -> Received;
    /// Closes the job queue (every worker ends after its current job) and
    /// joins every worker; true if one of them panicked.
    fn close(self) -> bool;
}

/// Which of the pool's workers are on a CPU: the adaptive pool's signal.
///
/// A module's init runs in the worker's thread: signature checks and
/// relocation keep it runnable, `msleep` and firmware waits put it to sleep
/// (task state `D` or `S`). Only the coordinator calls
/// [`WorkerProbe::on_cpu`]; every worker calls [`WorkerProbe::register`] on
/// its own thread as it starts. Thread-safe.
pub trait WorkerProbe: Sync {
    /// Worker number `worker` has started, on the calling thread.
    fn register(&self, worker: usize);
    /// How many of the workers `0..started` are running or waiting for a
    /// CPU (not asleep). A worker that has not registered yet counts as
    /// running; so does one the probe cannot see (then the pool stays at
    /// about one worker per CPU).
    fn on_cpu(&self, started: usize) -> usize;
}

/// The real [`WorkerProbe`]: each worker's thread id (`gettid`), recorded
/// as it starts, its task state from `/proc/self/task/TID/stat` and, for a
/// sleeping one, where it sleeps (`/proc/self/task/TID/wchan`).
///
/// A worker asleep (`S`, `D`) counts as off the CPU unless its wait
/// channel is one where an insertion waits for another insertion or a
/// kernel-wide lock ([`waits_for_another_insertion`]): measured under QEMU
/// on 176 Debian modules, the busy workers of a wide pool slept almost only
/// in `static_call_module_notify`, `ftrace_process_locs`, `load_module`,
/// `ftrace_module_enable`, `do_init_module` (module, ftrace and
/// static-call mutexes), so more workers would only queue there; the
/// fixture farm's slept in `msleep`.
#[derive(Debug, Default)]
pub struct ProcProbe {
    /// (worker, tid).
    tids: std::sync::Mutex<Vec<(usize, libc::pid_t)>>,
}

impl ProcProbe {
    pub fn new() -> Self {
        ProcProbe::default()
    }
}

impl WorkerProbe for ProcProbe {
    fn register(&self, worker: usize) {
        let tid = nix::unistd::gettid().as_raw();
        self.tids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((worker, tid));
    }

    fn on_cpu(&self, started: usize) -> usize {
        let tids = self
            .tids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let seen = tids.iter().filter(|&&(w, _)| w < started).count();
        let off_cpu = tids
            .iter()
            .filter(|&&(w, tid)| {
                w < started
                    && task_state(tid).is_some_and(is_asleep)
                    && !wait_channel(tid).is_some_and(|c| waits_for_another_insertion(&c))
            })
            .count();
        started.saturating_sub(seen) + seen - off_cpu
    }
}

/// A task state letter of `/proc/PID/stat` that means the thread waits
/// rather than runs: `S` (interruptible sleep) or `D` (uninterruptible:
/// `msleep` in a module's init).
fn is_asleep(state: u8) -> bool {
    matches!(state, b'S' | b'D')
}

/// The task state letter of thread `tid` of this process: the field after
/// the command name in parentheses (which may itself hold `)`).
fn task_state(tid: libc::pid_t) -> Option<u8> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(format!("/proc/self/task/{tid}/stat")).ok()?;
    // pid (comm) state: comm is at most 16 bytes, the state well within 64.
    let mut buf = [0u8; 64];
    let n = f.read(&mut buf).ok()?;
    parse_task_state(&buf[..n])
}

fn parse_task_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// The kernel function thread `tid` sleeps in (`/proc/.../wchan`), if the
/// kernel names it (`CONFIG_KALLSYMS`; "0" while it runs).
fn wait_channel(tid: libc::pid_t) -> Option<String> {
    let c = std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan")).ok()?;
    let c = c.trim();
    (!c.is_empty() && c != "0").then(|| c.to_owned())
}

/// Wait channels (prefixes) where a worker sleeps not in its module's own
/// init but behind another insertion or a kernel-wide lock: the module
/// loader (`module_mutex`, `module_wq`), its notifiers (ftrace, static
/// calls, tracing, jump labels, alternatives, kprobes), sysfs, RCU grace
/// periods, vmalloc purges, kernel thread creation, usermode helpers and
/// crypto self-tests (computed by another thread). An idle worker sleeps
/// on its job queue (`futex_…`): that is not one. Nor is
/// `async_synchronize_cookie_domain`: the module's init has returned and
/// waits for asynchronous probing, which sleeps on hardware as often as
/// not (ATA port resets, SCSI scans).
const INSERTION_WAITS: &[&str] = &[
    "load_module",
    "do_init_module",
    "add_unformed_module",
    "module_",
    "finit_module",
    "init_module",
    "idempotent",
    "resolve_symbol",
    "simplify_symbols",
    "complete_formation",
    "mod_sysfs",
    "static_call",
    "ftrace",
    "trace_",
    "jump_label",
    "text_poke",
    "alternatives_",
    "unwind_module",
    "kernfs_",
    "__wait_rcu_gp",
    "synchronize_rcu",
    "_vm_unmap_aliases",
    "__purge_vmap",
    "__kthread_create",
    "call_usermodehelper",
    "crypto_wait_for_test",
    "stop_machine",
    "mutex_",
    "__mutex",
    "rwsem",
    "down_",
    "percpu_down",
    "cpus_read_lock",
];

/// Whether a worker sleeping in `wchan` waits behind another insertion or
/// a kernel-wide lock ([`INSERTION_WAITS`]) rather than in its module's
/// init (`msleep`, firmware, a device).
fn waits_for_another_insertion(wchan: &str) -> bool {
    INSERTION_WAITS.iter().any(|p| wchan.starts_with(p))
}

/// How long the adaptive pool, holding a ready module because `cpus`
/// workers are busy, first waits for a completion before it looks at the
/// workers' task states. Sleeping module init lasts tens to hundreds of ms.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(4);

/// The longest wait between two probes: each probe that changes nothing
/// (every busy worker still on a CPU) doubles the wait up to this, so a
/// CPU-bound load (~100 ms per insertion under emulation) costs a few
/// `/proc` reads per insertion rather than dozens (~0.1 ms each under
/// emulation). A completion, or a probe that lets a module start, resets
/// it.
const MAX_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(32);

/// The pool: workers started on demand, up to `limit`.
///
/// A worker is started only when a job is dispatched while every started
/// worker is busy, up to `limit`: a thread start is not free under emulation
/// or on a loaded machine (~1 ms each under QEMU TCG, and all of them used
/// to come before the first insertion), and a graph rarely keeps its whole
/// width busy at once.
///
/// The adaptive rule ([`PoolMode::Adaptive`]): a job is dispatched while
/// fewer than `cpus` workers are busy, or while fewer than `cpus` of the busy
/// ones are on a CPU. `on_cpu` is the last probe's count, plus the jobs
/// dispatched since (a fresh insertion starts on a CPU), less the
/// completions since; the probe runs only when the coordinator holds a job
/// that rule refused and no completion came for [`PROBE_INTERVAL`] (up to
/// [`MAX_PROBE_INTERVAL`] after probes that changed nothing).
struct OnDemand<'k, K, W> {
    workers: W,
    kernel: &'k K,
    probe: &'k dyn WorkerProbe,
    /// The pool width: never more workers than this.
    limit: usize,
    cpus: usize,
    mode: PoolMode,
    spawned: usize,
    /// Jobs sent to the workers whose completion was not received yet.
    busy: usize,
    /// Busy workers estimated on a CPU (adaptive pool).
    on_cpu: usize,
    /// The wait before the next probe.
    probe_wait: std::time::Duration,
    /// Completions of jobs run on the coordinator's thread because not even
    /// one worker could be started.
    inline: std::collections::VecDeque<Done>,
}

impl<K, W> OnDemand<'_, K, W> {
    /// An idle worker, or room for one more.
    fn room(&self) -> bool {
        self.busy < self.spawned || self.spawned < self.limit
    }
}

impl<'p, K: Kernel, W: Workers<'p>> Dispatch<'p> for OnDemand<'_, K, W> {
    fn can_take(&mut self) -> bool {
        if self.spawned == 0 && self.limit == 0 {
            // No thread could be started: every call runs inline.
            return true;
        }
        self.room()
            && (self.mode == PoolMode::Fixed || self.busy < self.cpus || self.on_cpu < self.cpus)
    }

    fn send(&mut self, job: Job<'p>) -> Result<(), Job<'p>> {
        if self.busy >= self.spawned && self.spawned < self.limit {
            match self.workers.spawn(self.spawned) {
                Ok(()) => self.spawned += 1,
                Err(e) => {
                    // Early boot may be short of memory or threads: go on
                    // with the workers we have, or on this thread.
                    log::warn!(
                        "kmodinit: could not start loader worker {} of {}: {e}",
                        self.spawned,
                        self.limit
                    );
                    self.limit = self.spawned;
                }
            }
        }
        if self.spawned == 0 {
            self.inline.push_back(insert(0, self.kernel, &job));
            return Ok(());
        }
        self.workers.send(job)?;
        self.busy += 1;
        self.on_cpu = (self.on_cpu + 1).min(self.busy);
        Ok(())
    }

    fn recv(&mut self, holding: bool) -> Received {
        if let Some(d) = self.inline.pop_front() {
            return Received::Done(d);
        }
        if self.busy == 0 {
            return Received::Lost;
        }
        // Only a probe can let a held job start, and only if a worker could
        // take it.
        let poll = holding && self.mode == PoolMode::Adaptive && self.room();
        match self.workers.recv(poll.then_some(self.probe_wait)) {
            Received::Done(d) => {
                self.busy -= 1;
                self.on_cpu = self.on_cpu.saturating_sub(1).min(self.busy);
                self.probe_wait = PROBE_INTERVAL;
                Received::Done(d)
            }
            Received::Timeout => {
                // Idle workers sleep on the job queue: they count as asleep,
                // so the count is of busy workers (bounded by `busy`).
                self.on_cpu = self.probe.on_cpu(self.spawned).min(self.busy);
                self.probe_wait = if self.on_cpu < self.cpus {
                    PROBE_INTERVAL
                } else {
                    (self.probe_wait * 2).min(MAX_PROBE_INTERVAL)
                };
                Received::Timeout
            }
            Received::Lost => Received::Lost,
        }
    }
}

/// Worker threads in a `std::thread::scope`, fed through crossbeam channels.
struct Threads<'s, 'env, K> {
    scope: &'s std::thread::Scope<'s, 'env>,
    kernel: &'env K,
    probe: &'env dyn WorkerProbe,
    handles: Vec<std::thread::ScopedJoinHandle<'s, ()>>,
    work: channel::Sender<Job<'env>>,
    work_rx: channel::Receiver<Job<'env>>,
    done_tx: channel::Sender<Done>,
    done: channel::Receiver<Done>,
}

/// How often the coordinator, waiting for a completion, checks that some
/// worker is still alive to send one.
const WORKER_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

impl<'env, K: Kernel> Workers<'env> for Threads<'_, 'env, K> {
    fn spawn(&mut self, worker: usize) -> std::io::Result<()> {
        let kernel = self.kernel;
        let probe = self.probe;
        let work_rx = self.work_rx.clone();
        let done_tx = self.done_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("kmodinit-load-{worker}"))
            .spawn_scoped(self.scope, move || {
                probe.register(worker);
                work(worker, kernel, &work_rx, |d| done_tx.send(d).is_ok())
            })?;
        self.handles.push(h);
        Ok(())
    }

    fn send(&mut self, job: Job<'env>) -> Result<(), Job<'env>> {
        self.work.send(job).map_err(|e| e.into_inner())
    }

    fn recv(&mut self, timeout: Option<std::time::Duration>) -> Received {
        // The pool keeps a completion sender (to hand to workers it starts
        // later), so the channel never disconnects by itself. A worker only
        // ends when the pool closes; one that ended before died (which only
        // a loader bug could cause: the kernel call is behind catch_unwind)
        // with a job whose answer will never come, and which one is unknown:
        // stop waiting instead of hanging PID 1. Not only once every worker
        // is gone: the live ones may all be idle, waiting for jobs that the
        // coordinator only sends after that answer (loom found that hang).
        let wait = timeout.map_or(WORKER_CHECK, |t| t.min(WORKER_CHECK));
        loop {
            match self.done.recv_timeout(wait) {
                Ok(d) => return Received::Done(d),
                Err(channel::RecvTimeoutError::Timeout) => {
                    if self.handles.iter().any(|h| h.is_finished()) {
                        return Received::Lost;
                    }
                    if timeout.is_some() {
                        return Received::Timeout;
                    }
                }
                Err(channel::RecvTimeoutError::Disconnected) => return Received::Lost,
            }
        }
    }

    fn close(self) -> bool {
        let Threads { handles, work, .. } = self;
        // Every worker ends once the work channel is closed and empty.
        drop(work);
        // Join them all (no short cut at the first panic: the scope would
        // re-raise the panic of a worker left unjoined).
        let mut panicked = false;
        for h in handles {
            panicked |= h.join().is_err();
        }
        panicked
    }
}

/// A pool of one: the coordinator's own thread makes each call as it is
/// dispatched.
struct Inline<'k, K> {
    kernel: &'k K,
    done: std::collections::VecDeque<Done>,
}

impl<'k, K: Kernel> Inline<'k, K> {
    fn new(kernel: &'k K) -> Self {
        Inline {
            kernel,
            done: std::collections::VecDeque::new(),
        }
    }
}

impl<'p, K: Kernel> Dispatch<'p> for Inline<'_, K> {
    fn can_take(&mut self) -> bool {
        true
    }

    fn send(&mut self, job: Job<'p>) -> Result<(), Job<'p>> {
        self.done.push_back(insert(0, self.kernel, &job));
        Ok(())
    }

    fn recv(&mut self, _holding: bool) -> Received {
        self.done.pop_front().map_or(Received::Lost, Received::Done)
    }
}

/// One kernel call, timed, with a panic turned into that module's failure.
fn insert<K: Kernel>(worker: usize, kernel: &K, job: &Job<'_>) -> Done {
    let req = InsertRequest {
        name: job.name,
        path: &job.path,
        compression: job.compression,
        params: job.params,
    };
    let start = boottime();
    let result = catch_unwind(AssertUnwindSafe(|| kernel.insert(&req)))
        .unwrap_or_else(|payload| Err(InsertError::other(panic_message(&*payload))));
    let end = boottime();
    Done {
        id: job.id,
        worker,
        start,
        end,
        result,
    }
}

/// A worker: runs each job it takes and hands over its completion, until
/// the jobs end or nobody takes completions any more (`done` is false).
fn work<'p, K: Kernel>(
    worker: usize,
    kernel: &K,
    jobs: impl IntoIterator<Item = Job<'p>>,
    mut done: impl FnMut(Done) -> bool,
) {
    for job in jobs {
        if !done(insert(worker, kernel, &job)) {
            // The coordinator is gone; nobody is left to tell.
            return;
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    format!("panic: {text}")
}

/// The plan's edges, checked and indexed for the coordinator.
struct Graph {
    /// For each node: the valid predecessor edges (from < node id).
    preds: Vec<Vec<(usize, EdgeKind)>>,
    /// For each node: (dependent, edge kind), the reverse of `preds`.
    succs: Vec<Vec<(usize, EdgeKind)>>,
    /// For each node: why the plan is malformed there, if it is.
    malformed: Vec<Option<String>>,
    /// The cost of the longest path from each node to a sink, the node
    /// included ([`node_costs`]): ready nodes with more work behind them go
    /// to the pool first.
    height: Vec<u64>,
    /// Insert nodes.
    inserts: usize,
    /// An upper bound of how many kernel calls can ever run at once: the
    /// Insert nodes, less those that share one dependency path with others
    /// (nodes on one path never overlap, so an antichain holds at most one
    /// of them).
    width: usize,
}

impl Graph {
    fn new(plan: &Plan, costs: &[u64]) -> Self {
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
struct Outcome {
    state: ModuleState,
    error: Option<String>,
    blocked_by: Option<usize>,
    start: Option<f64>,
    end: Option<f64>,
    worker: Option<usize>,
}

impl Outcome {
    fn new(state: ModuleState) -> Self {
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
struct Run<'g, 'o> {
    graph: &'g Graph,
    observer: &'o mut dyn LoadObserver,
    /// Unfinished predecessors per node.
    waiting: Vec<usize>,
    outcome: Vec<Option<Outcome>>,
    /// Nodes whose predecessors are all finished, not yet decided.
    ready: BinaryHeap<(u64, Reverse<usize>)>,
    /// Set once a node entered `ready`: the one guard that makes every node
    /// dispatched (and so passed to the kernel) at most once.
    queued: Vec<bool>,
    decided: usize,
    in_flight: usize,
}

impl<'g, 'o> Run<'g, 'o> {
    fn new(plan: &Plan, graph: &'g Graph, observer: &'o mut dyn LoadObserver) -> Self {
        let n = plan.nodes.len();
        let mut run = Run {
            graph,
            observer,
            waiting: graph.preds.iter().map(Vec::len).collect(),
            outcome: vec![None; n],
            ready: BinaryHeap::new(),
            queued: vec![false; n],
            decided: 0,
            in_flight: 0,
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

    fn push_ready(&mut self, id: usize) {
        if !self.queued[id] {
            self.queued[id] = true;
            self.ready.push((self.graph.height[id], Reverse(id)));
        }
    }

    /// Records `id`'s outcome and releases its dependents; dependents that
    /// become ready are queued (not started: the caller dispatches).
    fn pending_finish(&mut self, plan: &Plan, id: usize, outcome: Outcome) {
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
    fn next_insert(&mut self, plan: &Plan) -> Option<usize> {
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
    fn take_insert(&mut self, plan: &Plan) -> Option<usize> {
        let id = self.next_insert(plan)?;
        self.ready.pop();
        Some(id)
    }

    fn coordinate<'p>(
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
            while self.next_insert(plan).is_some() && pool.can_take() {
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
                self.in_flight += 1;
            }
            if self.decided >= n {
                break;
            }
            if self.in_flight == 0 {
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
                    self.in_flight -= 1;
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

    /// Decides everything without a pool: the plan has nothing to insert,
    /// only satisfied, skipped or blocked nodes.
    fn settle_without_pool(&mut self, plan: &Plan) {
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

    fn fail_stuck(&mut self, plan: &Plan) {
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

    fn into_report(
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
        let modules: Vec<ModuleReport> = plan
            .nodes
            .iter()
            .zip(outcomes)
            .zip(chains)
            .map(|((node, o), chains)| ModuleReport {
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
            })
            .collect();

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
fn forced_outcome(plan: &Plan, graph: &Graph, id: usize) -> Option<Outcome> {
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
fn skipped_by_user(option: &str) -> Outcome {
    let mut o = Outcome::new(ModuleState::Skipped);
    o.error = Some(format!("skipped on the command line ({option})"));
    o
}

/// A module the planner could not plan fails with the planner's message.
fn unplannable(error: &PlanError) -> Outcome {
    let mut o = Outcome::new(ModuleState::Failed);
    o.error = Some(error.to_string());
    o
}

/// The longest path through the plan's edges when each module costs its
/// measured kernel-call time: what an unlimited pool could have achieved.
fn critical_path(graph: &Graph, modules: &[ModuleReport]) -> (f64, Vec<usize>) {
    let n = modules.len();
    let mut finish = vec![0.0f64; n];
    let mut via: Vec<Option<usize>> = vec![None; n];
    for i in 0..n {
        let mut best = 0.0f64;
        for &(p, _) in &graph.preds[i] {
            if finish[p] > best || (via[i].is_none() && finish[p] >= best && finish[p] > 0.0) {
                best = finish[p];
                via[i] = Some(p);
            }
        }
        finish[i] = best + modules[i].duration();
    }
    let Some(mut last) = (0..n).max_by(|&a, &b| finish[a].total_cmp(&finish[b]).then(b.cmp(&a)))
    else {
        return (0.0, Vec::new());
    };
    let cost = finish[last];
    if cost <= 0.0 {
        return (0.0, Vec::new());
    }
    let mut path = vec![last];
    while let Some(p) = via[last] {
        path.push(p);
        last = p;
    }
    path.reverse();
    (cost, path)
}

fn log_outcome(plan: &Plan, id: usize, o: &Outcome) {
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
        ModuleState::Failed => log::error!("kmodinit: failed to load {name}{params}: {error}"),
        ModuleState::Blocked => log::error!("kmodinit: did not load {name}: {error}"),
        // The loader decides every node; only the supervisor's handover
        // report uses this state.
        ModuleState::Pending => log::warn!("kmodinit: {name} is still loading"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_state_follows_the_last_parenthesis() {
        assert_eq!(parse_task_state(b"42 (kmodinit-load-0) D 1 42"), Some(b'D'));
        // A command name may hold ") R (": the state follows the last ')'.
        assert_eq!(parse_task_state(b"7 (a) R (b) S 1 7"), Some(b'S'));
        assert_eq!(parse_task_state(b"7 (truncated"), None);
        assert_eq!(parse_task_state(b"7 (x)"), None);
        assert!(is_asleep(b'S') && is_asleep(b'D'));
        assert!(!is_asleep(b'R') && !is_asleep(b'Z'));
    }

    #[test]
    fn waits_behind_other_insertions_are_not_sleeping_module_init() {
        // What a wide pool's workers slept in on 176 Debian modules, and
        // what the fixture farm's slept in.
        for c in [
            "static_call_module_notify",
            "ftrace_process_locs",
            "load_module",
            "ftrace_module_enable",
            "do_init_module",
            "mod_sysfs_setup",
            "__kthread_create_on_node",
            "trace_module_notify",
            "__wait_rcu_gp",
            "resolve_symbol",
            "alternatives_smp_module_add",
            "_vm_unmap_aliases.part.0",
            "call_usermodehelper_exec",
        ] {
            assert!(waits_for_another_insertion(c), "{c}");
        }
        for c in [
            "msleep",
            "usleep_range_state",
            "_request_firmware",
            "async_synchronize_cookie_domain",
            "futex_wait_queue",
            "ata_exec_internal_sg",
        ] {
            assert!(!waits_for_another_insertion(c), "{c}");
        }
    }

    #[test]
    fn cost_aware_order_weighs_the_file_size() {
        // a (big file) and b (small) are both roots with one dependent each;
        // unit heights are equal, cost-aware heights put a first.
        let dir = std::env::temp_dir().join(format!("kmodinit-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        std::fs::write(dir.join("a.ko"), vec![0u8; 300_000]).unwrap_or_default();
        std::fs::write(dir.join("b.ko"), vec![0u8; 1_000]).unwrap_or_default();
        let node = |id: usize, name: &str| modules_manifest::PlanNode {
            id,
            name: ModuleName::new(name).unwrap_or_else(|e| panic!("{e}")),
            action: Action::Insert {
                path: format!("{name}.ko"),
                compression: Compression::None,
            },
            params: String::new(),
            required: false,
            preds: Vec::new(),
            succs: Vec::new(),
            reasons: Vec::new(),
            warnings: Vec::new(),
        };
        let plan = Plan {
            nodes: vec![node(0, "b"), node(1, "a")],
            chains: Vec::new(),
            notes: Vec::new(),
        };
        let opts = LoaderOptions {
            modules_dir: dir.clone(),
            ..LoaderOptions::default()
        };
        let costs = node_costs(&plan, &opts);
        assert_eq!(
            costs,
            vec![
                INSERT_FIXED_COST_BYTES + 1_000,
                INSERT_FIXED_COST_BYTES + 300_000
            ]
        );
        let g = Graph::new(&plan, &costs);
        assert!(g.height[1] > g.height[0]);
        let unit = node_costs(
            &plan,
            &LoaderOptions {
                order: Order::Unit,
                ..opts
            },
        );
        assert_eq!(unit, vec![1, 1]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

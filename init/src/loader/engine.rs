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
/// width, adaptive pool, longest path first in modules, module paths taken
/// as the plan gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Directory the plan's relative module paths are joined to
    /// (`/lib/modules/$(uname -r)`).
    pub modules_dir: PathBuf,
    /// The most workers the pool may start (manifest `jobs`,
    /// `kmodinit.jobs=`); 0 = automatic: [`auto_jobs`] (min(graph width,
    /// 4 × CPUs, [`MAX_AUTO_JOBS`])) for both pools.
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
    /// idle worker or a new one, up to the cap). A ready module that heads
    /// a longest remaining path (it has dependents, and no module in
    /// flight has more behind it) never waits for the probe: it starts at
    /// once, up to the cap. No tuning for sleeping (probes, firmware) or
    /// CPU-bound (signature checks, relocation) init.
    #[default]
    Adaptive,
    /// Every ready module goes to a worker at once, up to the cap; the
    /// benchmarks compare the adaptive pool against it. Diagnostic:
    /// `KMODINIT_POOL=fixed` on the kernel command line.
    Fixed,
}

/// Which ready module goes to the pool first.
///
/// By module count, not by file size: under QEMU, weighing modules by
/// file size lengthened the load of 182 Debian modules by 10–15 %, and
/// on the fixture farm and the demo boot neither order wins consistently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Longest remaining path first counted in modules, every module the
    /// same.
    #[default]
    Unit,
    /// Longest remaining path first, a module costing its file size plus
    /// [`INSERT_FIXED_COST_BYTES`] (what is known at plan time: signature
    /// check and relocation grow with the file). Diagnostic, for the
    /// benchmarks that compare it: `KMODINIT_ORDER=cost` on the kernel
    /// command line.
    CostAware,
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

pub use crate::wire::events::NodeOutcome;

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

mod coordinator;
mod critical_path;
mod pool;
mod probe;

use coordinator::*;
use critical_path::*;
use pool::*;
pub use probe::{ProcProbe, WorkerProbe};

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
        // Capped as the fixed pool is: a lock wait counts as a sleep
        // (probe.rs), and a wider pool would only queue on the locks.
        (0, PoolMode::Adaptive) => auto_jobs(graph.width, cpus),
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

#[cfg(test)]
mod tests {
    use super::probe::*;
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
            alternative: None,
        };
        let plan = Plan {
            nodes: vec![node(0, "b"), node(1, "a")],
            chains: Vec::new(),
            notes: Vec::new(),
        };
        let opts = LoaderOptions {
            modules_dir: dir.clone(),
            order: Order::CostAware,
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
        // The default counts modules.
        let unit = node_costs(
            &plan,
            &LoaderOptions {
                modules_dir: dir.clone(),
                ..LoaderOptions::default()
            },
        );
        assert_eq!(unit, vec![1, 1]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

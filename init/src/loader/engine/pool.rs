//! The worker pool: jobs and completions over crossbeam channels, workers
//! started on demand (fixed width, or adaptive: about one insertion on a CPU
//! per CPU, wider while workers sleep in module init), the inline pool of
//! one, and the worker body with its one timed, panic-guarded kernel call.

use super::*;

/// One node a worker should insert.
pub(super) struct Job<'p> {
    pub(super) id: usize,
    pub(super) name: &'p ModuleName,
    pub(super) path: PathBuf,
    pub(super) compression: Compression,
    pub(super) params: &'p str,
}

/// A worker's answer for one job.
pub(super) struct Done {
    pub(super) id: usize,
    pub(super) worker: usize,
    pub(super) start: f64,
    pub(super) end: f64,
    pub(super) result: Result<Inserted, InsertError>,
}

/// What waiting for a completion gave.
pub(super) enum Received {
    Done(Done),
    /// The wait's time ran out: look at the workers again.
    Timeout,
    /// A worker ended before the pool closed: it died, and whatever job it
    /// held will never be answered.
    Lost,
}

/// Where the coordinator sends ready jobs and gets completions from.
pub(super) trait Dispatch<'p> {
    /// Whether a job sent now would start at once (on an idle worker, a new
    /// one, or inline) under the pool's rule. `on_path`: the job heads a
    /// longest remaining path ([`Run::heads_longest_path`]), so the adaptive
    /// pool starts it whenever a worker is idle or may be started, without
    /// its CPU rule. May start no thread itself.
    fn can_take(&mut self, on_path: bool) -> bool;
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
pub(super) trait Workers<'p> {
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

/// How long the adaptive pool, holding a ready module because `cpus`
/// workers are busy, first waits for a completion before it looks at the
/// workers' task states. Sleeping module init lasts tens to hundreds of ms.
pub(super) const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(4);

/// The longest wait between two probes: each probe that changes nothing
/// (every busy worker still on a CPU) doubles the wait up to this, so a
/// CPU-bound load (~100 ms per insertion under emulation) costs a few
/// `/proc` reads per insertion rather than dozens (~0.1 ms each under
/// emulation). A completion, or a probe that lets a module start, resets
/// it.
pub(super) const MAX_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(32);

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
/// [`MAX_PROBE_INTERVAL`] after probes that changed nothing). The rule
/// holds only modules off the longest remaining path: one that heads it
/// goes to a worker at once, up to `limit` (holding it would add the wait
/// to the load's length whatever the CPUs do, and a fresh insertion counted
/// on a CPU may be about to sleep in its init).
pub(super) struct OnDemand<'k, K, W> {
    pub(super) workers: W,
    pub(super) kernel: &'k K,
    pub(super) probe: &'k dyn WorkerProbe,
    /// The pool width: never more workers than this.
    pub(super) limit: usize,
    pub(super) cpus: usize,
    pub(super) mode: PoolMode,
    pub(super) spawned: usize,
    /// Jobs sent to the workers whose completion was not received yet.
    pub(super) busy: usize,
    /// Busy workers estimated on a CPU (adaptive pool).
    pub(super) on_cpu: usize,
    /// The wait before the next probe.
    pub(super) probe_wait: std::time::Duration,
    /// Completions of jobs run on the coordinator's thread because not even
    /// one worker could be started.
    pub(super) inline: std::collections::VecDeque<Done>,
}

impl<K, W> OnDemand<'_, K, W> {
    /// An idle worker, or room for one more.
    pub(super) fn room(&self) -> bool {
        self.busy < self.spawned || self.spawned < self.limit
    }
}

impl<'p, K: Kernel, W: Workers<'p>> Dispatch<'p> for OnDemand<'_, K, W> {
    fn can_take(&mut self, on_path: bool) -> bool {
        if self.spawned == 0 && self.limit == 0 {
            // No thread could be started: every call runs inline.
            return true;
        }
        self.room()
            && (self.mode == PoolMode::Fixed
                || on_path
                || self.busy < self.cpus
                || self.on_cpu < self.cpus)
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
                self.on_cpu = self.probe.on_cpu(self.spawned, self.busy).min(self.busy);
                if self.on_cpu >= self.cpus {
                    self.probe_wait = (self.probe_wait * 2).min(MAX_PROBE_INTERVAL);
                    return Received::Timeout;
                }
                self.probe_wait = PROBE_INTERVAL;
                // A worker seen asleep may be one that has just finished,
                // asleep on the job queue with its completion not taken
                // yet (seen under QEMU: it made the pool start a worker the
                // finished one could have served). Take that completion
                // first; the probe counted the worker off a CPU already.
                match self.workers.recv(Some(std::time::Duration::ZERO)) {
                    Received::Done(d) => {
                        self.busy -= 1;
                        self.on_cpu = self.on_cpu.min(self.busy);
                        Received::Done(d)
                    }
                    other => other,
                }
            }
            Received::Lost => Received::Lost,
        }
    }
}

/// Worker threads in a `std::thread::scope`, fed through crossbeam channels.
pub(super) struct Threads<'s, 'env, K> {
    pub(super) scope: &'s std::thread::Scope<'s, 'env>,
    pub(super) kernel: &'env K,
    pub(super) probe: &'env dyn WorkerProbe,
    pub(super) handles: Vec<std::thread::ScopedJoinHandle<'s, ()>>,
    pub(super) work: channel::Sender<Job<'env>>,
    pub(super) work_rx: channel::Receiver<Job<'env>>,
    pub(super) done_tx: channel::Sender<Done>,
    pub(super) done: channel::Receiver<Done>,
}

/// How often the coordinator, waiting for a completion, checks that some
/// worker is still alive to send one.
pub(super) const WORKER_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

impl<'env, K: Kernel> Workers<'env> for Threads<'_, 'env, K> {
    fn spawn(&mut self, worker: usize) -> std::io::Result<()> {
        let kernel = self.kernel;
        let probe = self.probe;
        let work_rx = self.work_rx.clone();
        let done_tx = self.done_tx.clone();
        let h = crate::sys::process::thread(&format!("kmodinit-load-{worker}")).spawn_scoped(
            self.scope,
            move || {
                probe.register(worker);
                work(worker, kernel, &work_rx, |d| done_tx.send(d).is_ok())
            },
        )?;
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
pub(super) struct Inline<'k, K> {
    pub(super) kernel: &'k K,
    pub(super) done: std::collections::VecDeque<Done>,
}

impl<'k, K: Kernel> Inline<'k, K> {
    pub(super) fn new(kernel: &'k K) -> Self {
        Inline {
            kernel,
            done: std::collections::VecDeque::new(),
        }
    }
}

impl<'p, K: Kernel> Dispatch<'p> for Inline<'_, K> {
    fn can_take(&mut self, _on_path: bool) -> bool {
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
pub(super) fn insert<K: Kernel>(worker: usize, kernel: &K, job: &Job<'_>) -> Done {
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
pub(super) fn work<'p, K: Kernel>(
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

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    format!("panic: {text}")
}

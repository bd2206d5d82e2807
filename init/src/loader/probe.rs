//! Which loader workers are on a CPU: the adaptive pool's signal, read from
//! `/proc/self/task/TID/{stat,wchan}` for the real pool.

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
    /// about one worker per CPU). `busy` of them hold a job (the pool's
    /// count; it takes at most that many): a job sent to an idle worker
    /// makes it runnable at once, before it is seen inside the kernel.
    fn on_cpu(&self, started: usize, busy: usize) -> usize;
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
///
/// Measured under QEMU on 178 Debian modules (issue 16): once drivers
/// probe asynchronously, the busy workers sleep in
/// `async_synchronize_cookie_domain` (their module's init has returned;
/// `do_init_module` waits for all asynchronous work of the system), with
/// 0–2 other tasks runnable (`/proc/loadavg`): the CPUs are mostly idle
/// then, and the pool widens (to 8–12 workers on 2 CPUs) as its rule says.
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

    fn on_cpu(&self, started: usize, _busy: usize) -> usize {
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
pub(super) fn is_asleep(state: u8) -> bool {
    matches!(state, b'S' | b'D')
}

/// The task state letter of thread `tid` of this process: the field after
/// the command name in parentheses (which may itself hold `)`).
pub(super) fn task_state(tid: libc::pid_t) -> Option<u8> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(format!("/proc/self/task/{tid}/stat")).ok()?;
    // pid (comm) state: comm is at most 16 bytes, the state well within 64.
    let mut buf = [0u8; 64];
    let n = f.read(&mut buf).ok()?;
    parse_task_state(&buf[..n])
}

pub(super) fn parse_task_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// The kernel function thread `tid` sleeps in (`/proc/.../wchan`), if the
/// kernel names it (`CONFIG_KALLSYMS`; "0" while it runs).
pub(super) fn wait_channel(tid: libc::pid_t) -> Option<String> {
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
pub(super) const INSERTION_WAITS: &[&str] = &[
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
pub(super) fn waits_for_another_insertion(wchan: &str) -> bool {
    INSERTION_WAITS.iter().any(|p| wchan.starts_with(p))
}

//! Which loader workers are on a CPU: the adaptive pool's signal, read from
//! `/proc/self/task/TID/stat` for the real pool.

pub use crate::kernel::WorkerProbe;

/// The real [`WorkerProbe`]: each worker's thread id (`gettid`), recorded
/// as it starts, and its task state from `/proc/self/task/TID/stat`. A
/// worker asleep (`S`, `D`) is off the CPU, wherever it sleeps.
///
/// Every sleep counts as off the CPU, including a wait behind another
/// insertion (`module_mutex`, ftrace, static calls, RCU grace periods):
/// a worker waiting for a lock leaves its CPU to another insertion's
/// signature check or relocation, so counting such waits as busy keeps
/// the pool too narrow (measured under QEMU on 182 Debian modules: 6–15 %
/// slower than a fixed pool of 8). With the width capped at
/// [`super::auto_jobs`] (4 × CPUs) the adaptive pool stays within a few
/// per cent of the best fixed width (`bench/results/sweep.md`). CPU-bound
/// init stays runnable (`R`), so it still gets about one worker per CPU.
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
            .filter(|&&(w, tid)| w < started && task_state(tid).is_some_and(is_asleep))
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

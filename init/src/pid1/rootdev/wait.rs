//! Waiting for the root device: a poll with backoff against an injected
//! clock, so the loop is tested without time.

use std::fmt;
use std::time::Duration;

/// How long to wait for the root device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootWait {
    /// `rootwait`: until it appears.
    Forever,
    /// At most this long.
    Upto(Duration),
}

impl fmt::Display for RootWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootWait::Forever => f.write_str("rootwait: no time limit"),
            RootWait::Upto(d) => write!(f, "up to {} s", crate::clock::Fixed(d.as_secs_f64(), 1)),
        }
    }
}

/// The first poll interval; doubled each round up to [`POLL_MAX`], so a
/// device that shows up quickly is found quickly and a slow one costs little.
pub const POLL_MIN: Duration = Duration::from_millis(10);
pub const POLL_MAX: Duration = Duration::from_millis(100);
/// How often a waiting boot says that it is still waiting.
pub const WAIT_LOG_EVERY: Duration = Duration::from_secs(5);

/// A clock and a sleep, injected so the wait loop is tested without time.
pub trait Waiter {
    /// Time since the wait started.
    fn elapsed(&self) -> Duration;
    fn sleep(&mut self, d: Duration);
}

/// The real clock.
#[derive(Debug)]
pub struct RealWaiter(std::time::Instant);

impl RealWaiter {
    pub fn start() -> RealWaiter {
        RealWaiter(std::time::Instant::now())
    }
}

impl Waiter for RealWaiter {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// Polls `probe` with a 10 ms → 100 ms backoff until it yields, or the wait
/// runs out (`Err(waited)`). Calls `still_waiting(elapsed)` about every
/// [`WAIT_LOG_EVERY`]. Blocking.
pub fn wait_for<T>(
    wait: RootWait,
    waiter: &mut impl Waiter,
    mut probe: impl FnMut() -> Option<T>,
    mut still_waiting: impl FnMut(Duration),
) -> Result<T, Duration> {
    let mut interval = POLL_MIN;
    let mut next_log = WAIT_LOG_EVERY;
    loop {
        if let Some(t) = probe() {
            return Ok(t);
        }
        let elapsed = waiter.elapsed();
        if let RootWait::Upto(limit) = wait {
            if elapsed >= limit {
                return Err(elapsed);
            }
        }
        if elapsed >= next_log {
            still_waiting(elapsed);
            next_log = elapsed + WAIT_LOG_EVERY;
        }
        waiter.sleep(interval);
        interval = (interval * 2).min(POLL_MAX);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    struct FakeWaiter {
        now: Duration,
        sleeps: Vec<Duration>,
    }

    impl Waiter for FakeWaiter {
        fn elapsed(&self) -> Duration {
            self.now
        }
        fn sleep(&mut self, d: Duration) {
            self.now += d;
            self.sleeps.push(d);
        }
    }

    #[test]
    fn wait_backs_off_and_gives_up() {
        let mut w = FakeWaiter {
            now: Duration::ZERO,
            sleeps: Vec::new(),
        };
        let mut logs = Vec::new();
        let r: Result<(), _> = wait_for(
            RootWait::Upto(Duration::from_secs(11)),
            &mut w,
            || None,
            |e| logs.push(e),
        );
        let waited = r.expect_err("never appears");
        assert!(waited >= Duration::from_secs(11));
        assert_eq!(&w.sleeps[..4], &[10, 20, 40, 80].map(Duration::from_millis));
        assert!(w.sleeps[4..].iter().all(|&s| s == POLL_MAX));
        assert_eq!(logs.len(), 2, "logged at about 5 s and 10 s: {logs:?}");
    }

    #[test]
    fn wait_returns_when_found() {
        let mut w = FakeWaiter {
            now: Duration::ZERO,
            sleeps: Vec::new(),
        };
        let mut polls = 0;
        let r = wait_for(
            RootWait::Forever,
            &mut w,
            || {
                polls += 1;
                (polls == 50).then_some(polls)
            },
            |_| {},
        );
        assert_eq!(r, Ok(50));
        assert_eq!(w.sleeps.len(), 49);
    }
}

//! The one clock of every timestamp kmodinit reports.

use nix::time::{clock_gettime, ClockId};

/// Seconds since boot on `CLOCK_BOOTTIME`, the clock of `/proc/uptime` and of
/// the kernel log, so report times line up with `dmesg` and other loaders.
///
/// Never fails: if the clock cannot be read (it always can on Linux ≥ 2.6.39)
/// it returns 0.0 rather than aborting the boot over a timestamp.
pub fn boottime() -> f64 {
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => ts.tv_sec() as f64 + ts.tv_nsec() as f64 * 1e-9,
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_is_positive_and_monotonic() {
        let a = boottime();
        let b = boottime();
        assert!(a > 0.0);
        assert!(b >= a);
    }
}

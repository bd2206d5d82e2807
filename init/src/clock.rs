//! The one clock of every timestamp kmodinit reports.

use nix::time::{clock_gettime, ClockId};

/// Seconds since boot on `CLOCK_BOOTTIME`, the clock of `/proc/uptime`, so
/// report times line up with other loaders'. The kernel log's timestamps
/// (`local_clock()`) may be off by a per-boot offset (tens of ms under QEMU
/// TCG, where the TSC is unstable): see init/REPORT.md.
///
/// Never fails: if the clock cannot be read (it always can on Linux ≥ 2.6.39)
/// it returns 0.0 rather than aborting the boot over a timestamp.
pub fn boottime() -> f64 {
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => ts.tv_sec() as f64 + ts.tv_nsec() as f64 * 1e-9,
        Err(_) => 0.0,
    }
}

/// A non-negative quantity (seconds, milliseconds) shown with a fixed number
/// of decimals (at most 6), for log lines and messages: `Fixed(1.23456, 3)`
/// shows `1.235`. Integer arithmetic on purpose: `{:.3}` on an `f64` links
/// core's float formatting (about 9 KiB of `/init`) for a handful of
/// messages. Negative, NaN and infinite values show as 0; values beyond
/// `u64` range saturate.
#[derive(Debug, Clone, Copy)]
pub struct Fixed(pub f64, pub u8);

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let decimals = u32::from(self.1.min(6));
        let scale = 10u64.pow(decimals);
        // `as` saturates (and maps NaN to 0): no panic on any input.
        let scaled = if self.0 > 0.0 {
            (self.0 * scale as f64).round() as u64
        } else {
            0
        };
        if decimals == 0 {
            write!(f, "{scaled}")
        } else {
            let width = decimals as usize;
            write!(f, "{}.{:0width$}", scaled / scale, scaled % scale)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_matches_float_formatting_away_from_ties() {
        for v in [
            0.0, 0.0004, 0.0006, 0.9996, 1.0, 1.23456, 2.5049, 59.99, 123.4567, 3600.0001,
        ] {
            assert_eq!(Fixed(v, 3).to_string(), format!("{v:.3}"), "{v}");
            assert_eq!(Fixed(v, 1).to_string(), format!("{v:.1}"), "{v}");
            assert_eq!(Fixed(v, 0).to_string(), format!("{v:.0}"), "{v}");
        }
        assert_eq!(Fixed(0.05, 6).to_string(), "0.050000");
        assert_eq!(Fixed(1.0, 9).to_string(), "1.000000");
        assert_eq!(Fixed(-1.5, 3).to_string(), "0.000");
        assert_eq!(Fixed(f64::NAN, 1).to_string(), "0.0");
        assert_eq!(Fixed(f64::INFINITY, 0).to_string(), "18446744073709551615");
    }

    #[test]
    fn boottime_is_positive_and_monotonic() {
        let a = boottime();
        let b = boottime();
        assert!(a > 0.0);
        assert!(b >= a);
    }
}

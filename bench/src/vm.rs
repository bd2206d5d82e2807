//! One benchmark boot through the shared QEMU harness (`kmodinit-qemu`):
//! TCG, a fixed CPU count, the serial console captured; a timeout is a
//! measurement that did not happen, not an error that stops the run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmodinit_qemu::{Console, HarnessError};

/// Generous: the slowest boot (Debian's initramfs with udev under TCG on a
/// loaded machine) takes well under a minute.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// What one boot printed.
#[derive(Debug, Clone)]
pub struct Boot {
    pub console: Console,
    /// The guest powered off by itself (false: killed on timeout).
    pub exited: bool,
}

impl Boot {
    /// A run that did not give its measurement: notes `why` on `series`
    /// ("timed out" instead when QEMU had to be killed) and keeps the console
    /// in `console_log` for a look afterwards.
    pub fn record_failure(&self, series: &mut crate::stats::Series, why: &str, console_log: &Path) {
        series.note(if self.exited { why } else { "timed out" });
        let _ = std::fs::write(console_log, self.console.text());
    }
}

/// Boots `kernel` + `initrd` on `arch` with `append` (after the harness's
/// own `console=ttyS0 panic=-1`) and raw virtio `disks`; blocks until QEMU
/// is gone.
pub fn boot(
    kernel: &Path,
    initrd: &Path,
    append: &str,
    disks: &[PathBuf],
    smp: u32,
    arch: kmodinit_qemu::Arch,
    log: &Path,
) -> Result<Boot, String> {
    let mut vm = kmodinit_qemu::Vm::new(kernel)
        .arch(arch)
        .initrd(initrd)
        .append(append)
        .smp(smp)
        .memory_mib(1024)
        .timeout(BOOT_TIMEOUT)
        .log_file(log);
    for d in disks {
        vm = vm.disk(d);
    }
    match vm.run() {
        Ok(b) => Ok(Boot {
            console: b.console,
            exited: true,
        }),
        Err(HarnessError::Timeout { tail, .. }) => Ok(Boot {
            console: Console::new(tail),
            exited: false,
        }),
        Err(e) => Err(e.to_string()),
    }
}

/// Values of `KMB key=value ...` lines on the console (the last one wins).
pub fn kmb_fields(console: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for line in console.lines() {
        let Some(pos) = line.find("KMB ") else {
            continue;
        };
        for kv in line[pos + 4..].split_whitespace() {
            if let Some((k, v)) = kv.split_once('=') {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kmb_fields_take_the_last_value() {
        let c = "noise\nKMB load_start=1.00 load_end=2.50\n[ 3.0] x\nKMB load_end=2.75 n=3\n";
        let f = kmb_fields(c);
        assert_eq!(f["load_start"], "1.00");
        assert_eq!(f["load_end"], "2.75");
        assert_eq!(f["n"], "3");
    }
}

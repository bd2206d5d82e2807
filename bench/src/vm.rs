//! A small QEMU runner for the benchmark: boots kernel + initrd (+ raw virtio
//! disks) under TCG with a fixed CPU count and captures the serial console
//! until the guest powers off or the timeout passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One boot's configuration.
#[derive(Debug, Clone)]
pub struct Vm {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
    pub disks: Vec<PathBuf>,
    pub smp: u32,
    pub memory_mib: u32,
    pub timeout: Duration,
}

/// What one boot printed.
#[derive(Debug, Clone)]
pub struct Boot {
    pub console: String,
    /// The guest powered off by itself (rather than being killed on timeout).
    pub exited: bool,
}

impl Vm {
    pub fn new(kernel: &Path, initrd: &Path, append: &str) -> Vm {
        Vm {
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            append: append.to_string(),
            disks: Vec::new(),
            smp: 2,
            memory_mib: 1024,
            timeout: Duration::from_secs(240),
        }
    }

    /// Boots once, blocking until the guest is gone. `scratch` holds the
    /// console log.
    pub fn boot(&self, scratch: &Path) -> Result<Boot, String> {
        let log = scratch.join("console.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-machine", "q35", "-cpu", "max"])
            .args([
                "-smp",
                &self.smp.to_string(),
                "-m",
                &self.memory_mib.to_string(),
            ])
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .args(["-serial", &format!("file:{}", log.display())])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &self.append]);
        for d in &self.disks {
            // snapshot=on: every run sees the same pristine disk.
            cmd.args([
                "-drive",
                &format!("file={},format=raw,if=virtio,snapshot=on", d.display()),
            ]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("qemu-system-x86_64: cannot start: {e}"))?;
        let exited = loop {
            match child.try_wait() {
                Ok(Some(_)) => break true,
                Ok(None) if started.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break false;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("qemu-system-x86_64: wait: {e}")),
            }
        };
        let console = std::fs::read(&log)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default();
        Ok(Boot { console, exited })
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

/// The text between the `KMB-REPORT-BEGIN` and `KMB-REPORT-END` lines
/// (the report.json the guest printed), kernel log lines dropped.
pub fn report_text(console: &str) -> Option<String> {
    let start = console.find("KMB-REPORT-BEGIN\n")? + "KMB-REPORT-BEGIN\n".len();
    let end = start + console[start..].find("KMB-REPORT-END")?;
    let body: Vec<&str> = console[start..end]
        .lines()
        // A kernel message may interleave with the dump; its lines start
        // with the printk timestamp "[".
        .filter(|l| !l.starts_with('['))
        .collect();
    Some(body.join("\n"))
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

    #[test]
    fn report_text_is_cut_out_and_kernel_lines_dropped() {
        let c = "boot\nKMB-REPORT-BEGIN\n{\"a\":\n[    2.1] virtio_blk: x\n1}\nKMB-REPORT-END\n";
        assert_eq!(report_text(c).unwrap(), "{\"a\":\n1}");
        assert!(report_text("KMB-REPORT-BEGIN\n{").is_none());
    }
}

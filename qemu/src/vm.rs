//! One QEMU boot: `qemu-system-x86_64 -accel tcg` with the serial console on
//! stdio, captured to a file, until a marker, power-off or a timeout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::arch::Arch;
use crate::console::Console;
use crate::error::{io_err, HarnessError};

/// Default wall-clock limit of one boot. TCG boots the Debian kernel to
/// `/init` in 2–10 s on a quiet machine; the margin is for a loaded one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// `qemu64` without `cmpxchg16b`. Measured on Debian 12's QEMU 7.2 (TCG):
/// Debian's 6.12 kernel died early in 9 of 20 boots on CPUs with `cx16`
/// (a double fault in `kmem_cache_alloc`, at SLUB's `gs:`-prefixed
/// `cmpxchg16b`, or "Attempted to kill init" with a corrupted heap), with
/// `-smp 1` too; without `cx16` SLUB takes its fallback path and 14 of 14
/// boots were clean. The 6.1 kernel needs no change.
pub const CPU_WITHOUT_CX16: &str = "qemu64,-cx16";

/// Console lines shown with a timeout error.
const TAIL_LINES: usize = 40;

/// A QEMU machine to boot: builder, then [`Vm::run`].
///
/// Always TCG (KVM hangs guests on these hosts), `-smp 2 -m 1024`,
/// `-nographic -no-reboot`, and `console=ttyS0 panic=-1` on the kernel
/// command line, so a kernel panic reboots and `-no-reboot` turns that into
/// QEMU exiting instead of a hang.
#[derive(Debug, Clone)]
pub struct Vm {
    arch: Arch,
    qemu: PathBuf,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    append: Vec<String>,
    disks: Vec<PathBuf>,
    memory_mib: u32,
    cpu: Option<String>,
    smp: u32,
    timeout: Duration,
    stop_on: Vec<String>,
    inputs: Vec<(String, String)>,
    log: Option<PathBuf>,
    extra: Vec<String>,
}

/// How a boot ended (a timeout is an error, see [`HarnessError::Timeout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The console showed this stop marker; QEMU was then killed.
    Marker(String),
    /// QEMU exited by itself: the guest powered off, rebooted (turned into an
    /// exit by `-no-reboot`) or the kernel panicked (`panic=-1`).
    Exited { code: Option<i32> },
}

/// The result of one boot.
#[derive(Debug, Clone)]
pub struct Boot {
    pub console: Console,
    pub end: End,
    pub elapsed: Duration,
    /// Where the raw console was written.
    pub log: PathBuf,
}

impl Boot {
    /// True when QEMU exited after the kernel's power-off message.
    pub fn powered_off(&self) -> bool {
        matches!(self.end, End::Exited { .. }) && self.console.contains("reboot: Power down")
    }

    /// True when QEMU exited after the kernel's restart message (a reboot
    /// that `-no-reboot` turned into an exit), or after a kernel panic.
    pub fn rebooted(&self) -> bool {
        matches!(self.end, End::Exited { .. })
            && (self.console.contains("reboot: Restarting system")
                || self.console.contains("Rebooting in"))
    }
}

static BOOTS: AtomicU64 = AtomicU64::new(0);

impl Vm {
    /// A machine booting `kernel` (a bzImage such as `/boot/vmlinuz-*`).
    pub fn new(kernel: impl Into<PathBuf>) -> Vm {
        Vm {
            arch: Arch::X86_64,
            qemu: PathBuf::from(Arch::X86_64.qemu_binary()),
            kernel: kernel.into(),
            initrd: None,
            append: Vec::new(),
            disks: Vec::new(),
            memory_mib: 1024,
            cpu: None,
            smp: 2,
            timeout: DEFAULT_TIMEOUT,
            stop_on: Vec::new(),
            inputs: Vec::new(),
            log: None,
            extra: Vec::new(),
        }
    }

    /// The guest's architecture (default x86-64): its QEMU binary, machine,
    /// default CPU and serial console. Call before [`Vm::qemu_binary`].
    pub fn arch(mut self, arch: Arch) -> Vm {
        self.arch = arch;
        self.qemu = PathBuf::from(arch.qemu_binary());
        self
    }

    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Vm {
        self.initrd = Some(path.into());
        self
    }

    /// Appends words to the kernel command line (after `console=ttyS0
    /// panic=-1`, or the architecture's serial port). May be called several times.
    pub fn append(mut self, words: impl AsRef<str>) -> Vm {
        self.append
            .extend(words.as_ref().split_whitespace().map(str::to_string));
        self
    }

    /// Adds a raw disk image as the next virtio-blk device (`/dev/vda`, `vdb`…).
    pub fn disk(mut self, path: impl Into<PathBuf>) -> Vm {
        self.disks.push(path.into());
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Vm {
        self.memory_mib = mib;
        self
    }

    /// The guest CPU model (`-cpu`; default: QEMU's `qemu64`), e.g.
    /// [`CPU_WITHOUT_CX16`].
    pub fn cpu(mut self, model: impl Into<String>) -> Vm {
        self.cpu = Some(model.into());
        self
    }

    pub fn smp(mut self, cpus: u32) -> Vm {
        self.smp = cpus;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Vm {
        self.timeout = timeout;
        self
    }

    /// Stops the boot (kills QEMU) once the console contains `marker`.
    pub fn stop_on(mut self, marker: impl Into<String>) -> Vm {
        self.stop_on.push(marker.into());
        self
    }

    /// Once the console shows `seen` (after the previous input's trigger),
    /// types `input` on the serial line, e.g. a command for a rescue shell.
    pub fn send_when(mut self, seen: impl Into<String>, input: impl Into<String>) -> Vm {
        self.inputs.push((seen.into(), input.into()));
        self
    }

    /// Writes the console to this file (default: a fresh file in the temp dir).
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Vm {
        self.log = Some(path.into());
        self
    }

    /// Adds QEMU arguments as they are (e.g. a TPM's `-chardev`,
    /// `-tpmdev`, `-device`: [`crate::SwTpm::qemu_args`]).
    pub fn qemu_extra(mut self, args: impl IntoIterator<Item = String>) -> Vm {
        self.extra.extend(args);
        self
    }

    /// Uses another QEMU binary (default `qemu-system-x86_64` from `PATH`).
    pub fn qemu_binary(mut self, path: impl Into<PathBuf>) -> Vm {
        self.qemu = path.into();
        self
    }

    /// The kernel command line the guest gets.
    pub fn command_line(&self) -> String {
        let mut words = vec![
            format!("console={}", self.arch.console()),
            "panic=-1".to_string(),
        ];
        words.extend(self.append.iter().cloned());
        words.join(" ")
    }

    /// The QEMU arguments (without the binary).
    pub fn qemu_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["-accel", "tcg", "-nographic", "-no-reboot", "-nic", "none"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(self.arch.machine_args().iter().map(|s| s.to_string()));
        if let Some(cpu) = self.cpu.as_deref().or(self.arch.default_cpu()) {
            args.extend(["-cpu".into(), cpu.to_string()]);
        }
        args.extend([
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-kernel".into(),
            self.kernel.display().to_string(),
        ]);
        if let Some(initrd) = &self.initrd {
            args.extend(["-initrd".into(), initrd.display().to_string()]);
        }
        for disk in &self.disks {
            args.extend([
                "-drive".into(),
                format!("file={},if=virtio,format=raw", disk.display()),
            ]);
        }
        args.extend(self.extra.iter().cloned());
        args.extend(["-append".into(), self.command_line()]);
        args
    }

    /// Boots and blocks until a stop marker, QEMU's exit, or the timeout.
    /// QEMU is always reaped before this returns; on timeout it is killed and
    /// the error carries the console's last lines.
    pub fn run(&self) -> Result<Boot, HarnessError> {
        for (what, path) in std::iter::once(("kernel", &self.kernel))
            .chain(self.initrd.iter().map(|p| ("initrd", p)))
            .chain(self.disks.iter().map(|p| ("disk", p)))
        {
            if !path.exists() {
                return Err(HarnessError::Invalid(format!(
                    "{what} {} does not exist",
                    path.display()
                )));
            }
        }
        let log = self.log.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "kmodinit-qemu-{}-{}.log",
                std::process::id(),
                BOOTS.fetch_add(1, Ordering::Relaxed)
            ))
        });
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        let mut log_file = std::fs::File::create(&log).map_err(io_err("creating", &log))?;
        writeln!(
            log_file,
            "# {} {}",
            self.qemu.display(),
            self.qemu_args().join(" ")
        )
        .map_err(io_err("writing", &log))?;

        let started = Instant::now();
        let mut child = Command::new(&self.qemu)
            .args(self.qemu_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::Command {
                command: self.qemu.display().to_string(),
                status: None,
                stderr: format!("cannot start: {e} (run `make deps`)"),
            })?;
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let mut stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Some(out) = stdout.as_mut() {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let mut stdin = child.stdin.take();

        let mut raw: Vec<u8> = Vec::new();
        let mut next_input = 0usize;
        let mut input_from = 0usize;
        let mut stopped: Option<String> = None;
        let mut timed_out = false;
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                timed_out = true;
                break;
            }
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(chunk) => {
                    log_file
                        .write_all(&chunk)
                        .map_err(io_err("writing", &log))?;
                    let scan_from = raw.len().saturating_sub(256);
                    raw.extend_from_slice(&chunk);
                    let window = String::from_utf8_lossy(&raw[scan_from..]).replace('\r', "");
                    if let Some(m) = self.stop_on.iter().find(|m| window.contains(m.as_str())) {
                        stopped = Some(m.clone());
                        break;
                    }
                    if let Some((seen, input)) = self.inputs.get(next_input) {
                        let text = String::from_utf8_lossy(&raw[input_from..]);
                        if let Some(at) = text.find(seen.as_str()) {
                            input_from += at + seen.len();
                            next_input += 1;
                            if let Some(w) = stdin.as_mut() {
                                // A write error means QEMU is gone; its exit is reported below.
                                let _ = w.write_all(input.as_bytes());
                                let _ = w.flush();
                            }
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if stopped.is_some() || timed_out {
            // kill() fails only when QEMU already exited, which is what we want.
            let _ = child.kill();
        }
        drop(stdin);
        let status = child.wait().map_err(io_err("waiting for QEMU", &log))?;
        let _ = reader.join();
        let qemu_stderr = err_reader.join().unwrap_or_default();
        // Keep what arrived after the stop condition, too.
        while let Ok(chunk) = rx.try_recv() {
            raw.extend_from_slice(&chunk);
            let _ = log_file.write_all(&chunk);
        }
        if !qemu_stderr.trim().is_empty() {
            let _ = writeln!(log_file, "\n# qemu stderr:\n{qemu_stderr}");
        }
        let console = Console::new(String::from_utf8_lossy(&raw).into_owned());
        let elapsed = started.elapsed();
        if timed_out {
            return Err(HarnessError::Timeout {
                after: elapsed,
                log,
                tail: console.tail(TAIL_LINES),
            });
        }
        let end = match stopped {
            Some(m) => End::Marker(m),
            None => End::Exited {
                code: status.code(),
            },
        };
        if end == (End::Exited { code: Some(1) }) && console.text().trim().is_empty() {
            return Err(HarnessError::Command {
                command: format!("{} {}", self.qemu.display(), self.qemu_args().join(" ")),
                status: status.code(),
                stderr: qemu_stderr,
            });
        }
        Ok(Boot {
            console,
            end,
            elapsed,
            log,
        })
    }
}

/// A unique scratch directory under `base` (created), for one test's files.
pub fn scratch_dir(base: &Path, name: &str) -> Result<PathBuf, HarnessError> {
    let dir = base.join(format!(
        "{name}-{}-{}",
        std::process::id(),
        BOOTS.fetch_add(1, Ordering::Relaxed)
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err("removing", &dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    Ok(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn arguments_are_tcg_and_carry_console_and_panic() {
        let vm = Vm::new("/boot/vmlinuz-x")
            .initrd("/tmp/i.cpio")
            .disk("/tmp/root.img")
            .append("root=/dev/vda  quiet")
            .append("-- single");
        let args = vm.qemu_args();
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg"), "{joined}");
        assert!(!joined.contains("kvm"), "{joined}");
        assert!(joined.contains("-no-reboot"));
        assert!(joined.contains("-smp 2 -m 1024"));
        assert!(!joined.contains("-cpu"), "{joined}");
        let cx = vm.clone().cpu(CPU_WITHOUT_CX16).qemu_args().join(" ");
        assert!(cx.contains("-cpu qemu64,-cx16 -smp 2"), "{cx}");
        assert!(joined.contains("-drive file=/tmp/root.img,if=virtio,format=raw"));
        assert_eq!(
            vm.command_line(),
            "console=ttyS0 panic=-1 root=/dev/vda quiet -- single"
        );
        assert_eq!(
            args.last().map(String::as_str),
            Some(vm.command_line().as_str())
        );
    }

    #[test]
    fn arm64_boots_the_virt_board_with_its_serial_console() {
        let vm = Vm::new("/k/Image").arch(Arch::Arm64).append("quiet");
        let joined = vm.qemu_args().join(" ");
        assert!(
            joined.starts_with(
                "-accel tcg -nographic -no-reboot -nic none -M virt -cpu cortex-a72 -smp 2"
            ),
            "{joined}"
        );
        assert_eq!(vm.command_line(), "console=ttyAMA0 panic=-1 quiet");
        assert_eq!(vm.qemu, PathBuf::from("qemu-system-aarch64"));
        let max = vm.cpu("max").qemu_args().join(" ");
        assert!(max.contains("-M virt -cpu max -smp"), "{max}");
    }

    #[test]
    fn missing_kernel_is_reported_before_starting_qemu() {
        let err = Vm::new("/nonexistent/vmlinuz").run().unwrap_err();
        assert!(
            err.to_string().contains("kernel /nonexistent/vmlinuz"),
            "{err}"
        );
    }
}

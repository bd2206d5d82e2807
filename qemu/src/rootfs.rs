//! A real-init root filesystem: static busybox plus an `/sbin/init` script
//! that reports what it sees (its PID and arguments, kmodinit's report,
//! `/proc/modules`, module parameters) between markers, then powers off.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{io_err, run, HarnessError};

/// The marker lines the real init prints (see [`RealInitRoot::script`]).
pub mod markers {
    /// `KMI-REALINIT pid=1 args=[…] uptime=S argc=N`.
    pub const REAL_INIT: &str = "KMI-REALINIT pid=";
    /// `KMI-RUNINIT <seconds> clock_offset=<seconds>`: the kernel-log
    /// timestamp of the kernel's "Run /init as init process" line (from
    /// `dmesg`) and printk's clock minus CLOCK_MONOTONIC, each `none` when
    /// unknown; see [`super::run_init_lines`].
    pub const RUN_INIT: &str = "KMI-RUNINIT ";
    /// `KMI-ROOT <the /proc/mounts line of />`.
    pub const ROOT: &str = "KMI-ROOT ";
    pub const REPORT_BEGIN: &str = "KMI-REPORT-BEGIN";
    pub const REPORT_END: &str = "KMI-REPORT-END";
    /// Around report.json read again once no module is `pending` (see
    /// [`super::RealInitRoot::late_report`]).
    pub const LATE_REPORT_BEGIN: &str = "KMI-LATE-REPORT-BEGIN";
    pub const LATE_REPORT_END: &str = "KMI-LATE-REPORT-END";
    pub const MODULES_BEGIN: &str = "KMI-MODULES-BEGIN";
    pub const MODULES_END: &str = "KMI-MODULES-END";
    pub const PARAMS_BEGIN: &str = "KMI-PARAMS-BEGIN";
    pub const PARAMS_END: &str = "KMI-PARAMS-END";
    /// Printed last, just before `poweroff -f`: stop the VM on it.
    pub const DONE: &str = "KMI-REALINIT-DONE";
}

/// The host's static busybox (`busybox-static`).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Shell lines that print [`markers::RUN_INIT`]: the printk timestamp (s) of
/// the kernel's `Run /init as init process` line, taken from `dmesg` (the
/// kernel logs it at KERN_INFO, so with `quiet` it is in the ring buffer but
/// not on the console), then `clock_offset=` the kernel's `local_clock()`
/// (printk's clock) minus `ktime_get()` (CLOCK_MONOTONIC, = CLOCK_BOOTTIME
/// without a suspend), in seconds, as the scheduler's debug file shows both
/// (`cpu_clk`, `ktime`; debugfs is mounted for the read and unmounted
/// after). The two clocks are not the same: with an unstable TSC (as under
/// TCG) local_clock keeps the offset the TSC sched_clock had when the kernel
/// switched to it, tens of ms either way in our guests, so a printk time
/// must be moved by that offset before it is compared with the report's
/// boot-time stamps.
/// Each value is `none` when it cannot be had (the ring buffer wrapped,
/// printk timestamps off, no debugfs or SCHED_DEBUG). `bb` prefixes every
/// applet (`"$B "` in a tree without applet links, `""` with them); busybox
/// `dmesg` prints `[    1.234567] Run /init as init process`.
pub fn run_init_lines(bb: &str) -> String {
    run_init_lines_with(bb, "/sys/kernel/debug")
}

/// [`run_init_lines`] with debugfs at `debugfs` (a test's fake tree).
fn run_init_lines_with(bb: &str, debugfs: &str) -> String {
    format!(
        r#"kmi_d={debugfs}; kmi_m=
[ -e $kmi_d/sched ] || {{ {bb}mount -t debugfs debugfs $kmi_d 2>/dev/null && kmi_m=1; }}
kmi_c=$(for kmi_f in $kmi_d/sched/debug /proc/sched_debug; do [ -r $kmi_f ] && {{ {bb}awk '/^ktime /{{k=$3}} /^cpu_clk /{{c=$3}} END{{if (k != "" && c != "") printf "%.6f", (c - k) / 1000}}' $kmi_f; break; }}; done)
[ -n "$kmi_m" ] && {bb}umount $kmi_d
echo "{}$({bb}dmesg 2>/dev/null | {bb}sed -n 's/.*\[ *\([0-9][0-9]*\.[0-9][0-9]*\)\] Run [^ ]* as init process.*/\1/p' | {bb}head -n 1 | {bb}grep . || echo none) clock_offset=${{kmi_c:-none}}""#,
        markers::RUN_INIT
    )
}

/// Builder of the real init's root tree.
#[derive(Debug, Clone)]
pub struct RealInitRoot {
    busybox: PathBuf,
    param_modules: Vec<String>,
    power_off: bool,
    late_report_s: Option<u32>,
    before_report: String,
}

impl Default for RealInitRoot {
    fn default() -> Self {
        RealInitRoot {
            busybox: PathBuf::from(HOST_BUSYBOX),
            param_modules: vec!["kmi_*".into()],
            power_off: true,
            late_report_s: None,
            before_report: String::new(),
        }
    }
}

impl RealInitRoot {
    pub fn new() -> RealInitRoot {
        RealInitRoot::default()
    }

    /// The static busybox to install (default [`HOST_BUSYBOX`]); another
    /// architecture's for a foreign guest (`Arch::busybox`). Its applet
    /// list is read by running the host's busybox, which has the same
    /// applets when both come from the same Debian release.
    pub fn busybox(mut self, path: impl Into<PathBuf>) -> RealInitRoot {
        self.busybox = path.into();
        self
    }

    /// Module-name globs whose `/sys/module/*/parameters/*` get dumped
    /// (default `kmi_*`, the fixture modules).
    pub fn params_of(mut self, glob: impl Into<String>) -> RealInitRoot {
        self.param_modules.push(glob.into());
        self
    }

    /// When false, the init sleeps forever instead of powering off (the VM
    /// is then stopped on [`markers::DONE`]).
    pub fn power_off(mut self, yes: bool) -> RealInitRoot {
        self.power_off = yes;
        self
    }

    /// After the first report, wait (at most `secs`) until report.json has
    /// no `pending` module any more (the loader still running after the
    /// handover settles them), then print it again between
    /// [`markers::LATE_REPORT_BEGIN`] and [`markers::LATE_REPORT_END`].
    pub fn late_report(mut self, secs: u32) -> RealInitRoot {
        self.late_report_s = Some(secs);
        self
    }

    /// Shell lines the init runs before it prints the report (e.g. mount a
    /// second disk, whose filesystem module the kernel then asks for).
    pub fn before_report(mut self, lines: impl Into<String>) -> RealInitRoot {
        self.before_report = lines.into();
        self
    }

    /// The `/sbin/init` shell script.
    pub fn script(&self) -> String {
        use markers::*;
        let globs = self.param_modules.join(" ");
        let end = if self.power_off {
            "sync\npoweroff -f\n"
        } else {
            "while :; do sleep 3600; done\n"
        };
        let late = match self.late_report_s {
            Some(n) => format!(
                r#"i=0
while grep -q '"state": "pending"' /run/kmodinit/report.json 2>/dev/null && [ $i -lt {n} ]; do
  sleep 1; i=$((i+1))
done
echo {LATE_REPORT_BEGIN}
cat /run/kmodinit/report.json || echo "KMI-NO-REPORT"
echo
echo {LATE_REPORT_END}
"#
            ),
            None => String::new(),
        };
        let before = &self.before_report;
        let run_init = run_init_lines("");
        format!(
            r#"#!/bin/busybox sh
# The real init of kmodinit's QEMU tests: print what we see, then power off.
export PATH=/bin:/sbin
# In an initramfs that only has /bin/busybox, make the applet links first.
[ -e /bin/cat ] || /bin/busybox --install -s /bin
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/module ] || mount -t sysfs sysfs /sys
echo "{REAL_INIT}$$ args=[$*] uptime=$(cut -d' ' -f1 /proc/uptime) argc=$#"
{run_init}
echo "{ROOT}$(grep ' / ' /proc/mounts | tail -n 1)"
{before}
echo {REPORT_BEGIN}
cat /run/kmodinit/report.json || echo "KMI-NO-REPORT"
echo
echo {REPORT_END}
{late}echo {MODULES_BEGIN}
cat /proc/modules
echo {MODULES_END}
echo {PARAMS_BEGIN}
for f in $(for m in {globs}; do ls -d /sys/module/$m/parameters/* 2>/dev/null; done); do
  [ -r "$f" ] && echo "$f=$(cat "$f")"
done
echo {PARAMS_END}
echo "KMI-TAINT $(cat /proc/sys/kernel/tainted)"
echo {DONE}
{end}"#
        )
    }

    /// Fills `dir` with the root tree: `/bin/busybox` and its applet links,
    /// `/sbin/init`, and the empty mount points `dev proc sys run tmp`.
    pub fn populate(&self, dir: &Path) -> Result<(), HarnessError> {
        for d in ["bin", "sbin", "dev", "proc", "sys", "run", "tmp", "etc"] {
            let p = dir.join(d);
            std::fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
        }
        let bb = dir.join("bin/busybox");
        std::fs::copy(&self.busybox, &bb).map_err(io_err("copying busybox to", &bb))?;
        // A foreign busybox cannot run here: list the host's applets.
        let list = run(Command::new(HOST_BUSYBOX).arg("--list"))?;
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let applet = applet.trim();
            if applet.is_empty() || applet == "busybox" || applet == "init" {
                continue;
            }
            let link = dir.join("bin").join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", &link).map_err(io_err("linking", &link))?;
            }
        }
        let init = dir.join("sbin/init");
        std::fs::write(&init, self.script()).map_err(io_err("writing", &init))?;
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &init))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// Runs [`run_init_lines`] under the host's busybox with `dmesg`
    /// printing `log` and `mount` failing (a wrapper given as `$B`), and
    /// debugfs in `dir/debug` holding `sched` (when given); returns what it
    /// printed.
    fn run_with(dir: &Path, log: &str, sched: Option<&str>) -> Option<String> {
        if !Path::new(HOST_BUSYBOX).exists() {
            eprintln!("skipped: no {HOST_BUSYBOX} (busybox-static)");
            return None;
        }
        let log_file = dir.join("log");
        std::fs::write(&log_file, log).unwrap();
        let debugfs = dir.join("debug");
        let _ = std::fs::remove_dir_all(&debugfs);
        if let Some(text) = sched {
            std::fs::create_dir_all(debugfs.join("sched")).unwrap();
            std::fs::write(debugfs.join("sched/debug"), text).unwrap();
        }
        let wrapper = dir.join("bb");
        std::fs::write(
            &wrapper,
            format!(
                "#!{HOST_BUSYBOX} sh\n\
                 case \"$1\" in dmesg) exec {HOST_BUSYBOX} cat {};; mount|umount) exit 1;; esac\n\
                 exec {HOST_BUSYBOX} \"$@\"\n",
                log_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = format!(
            "B={}\n{}\n",
            wrapper.display(),
            run_init_lines_with("$B ", &debugfs.display().to_string())
        );
        let out = Command::new(HOST_BUSYBOX)
            .args(["sh", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        Some(String::from_utf8(out.stdout).unwrap())
    }

    const SCHED_DEBUG: &str = "Sched Debug Version: v0.11, 6.1.0-56-amd64 #1\n\
        ktime                                   : 2282.530373\n\
        sched_clk                               : 2419.130054\n\
        cpu_clk                                 : 2310.043618\n\
        jiffies                                 : 4294667864\n";

    #[test]
    fn run_init_lines_print_the_kernels_timestamp_and_clock_offset() {
        let dir = std::env::temp_dir().join(format!("kmi-runinit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = "[    0.000000] Linux version 6.1.0\n\
                   [    2.890123] Freeing unused kernel image (initmem) memory: 2920K\n\
                   [    2.901234] Run /init as init process\n\
                   [    2.901240]   with arguments:\n\
                   [    3.500000] Run /sbin/init as init process\n";
        if let Some(out) = run_with(&dir, log, Some(SCHED_DEBUG)) {
            assert_eq!(out, "KMI-RUNINIT 2.901234 clock_offset=0.027513\n");
            let r = crate::Console::new(out).run_init().unwrap();
            assert_eq!(r.printk_s, 2.901234);
            assert_eq!(r.clock_offset_s, Some(0.027513));
            assert!((r.boottime_s().unwrap() - 2.873721).abs() < 1e-9);
        }
        if let Some(out) = run_with(&dir, "[    1.000000] something else\n", Some(SCHED_DEBUG)) {
            assert_eq!(out, "KMI-RUNINIT none clock_offset=0.027513\n");
            assert_eq!(crate::Console::new(out).run_init(), None);
        }
        // No debugfs (and none to mount): the offset is unknown. The
        // fallback /proc/sched_debug exists only on kernels before 5.13.
        if !Path::new("/proc/sched_debug").exists() {
            if let Some(out) = run_with(&dir, log, None) {
                assert_eq!(out, "KMI-RUNINIT 2.901234 clock_offset=none\n");
                let r = crate::Console::new(out).run_init().unwrap();
                assert_eq!(r.clock_offset_s, None);
                assert_eq!(r.boottime_s(), None);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Reading what the guest printed on the serial console: the real init's
//! marker, the report JSON, `/proc/modules` and module parameters, each
//! between the markers that [`crate::rootfs::RealInitRoot`]'s script prints.

use std::collections::BTreeMap;

use crate::rootfs::markers;

/// The captured serial console, with `\r` removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Console {
    text: String,
}

/// What the real init printed about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RealInit {
    pub pid: u32,
    /// The arguments it was started with (`$*`), split on spaces.
    pub args: Vec<String>,
    /// First field of `/proc/uptime` when it started, in seconds.
    pub uptime_s: f64,
}

/// The kernel's "Run /init as init process" line, as the init saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunInit {
    /// Its printk timestamp, s since boot on the kernel's `local_clock()`.
    pub printk_s: f64,
    /// `local_clock()` − CLOCK_MONOTONIC when the init looked, s: the
    /// correction from printk's clock to the report's (CLOCK_BOOTTIME, the
    /// same as CLOCK_MONOTONIC without a suspend). `None` when the init
    /// could not read it (no debugfs).
    pub clock_offset_s: Option<f64>,
}

impl RunInit {
    /// The line's time on CLOCK_BOOTTIME, when the offset is known.
    pub fn boottime_s(&self) -> Option<f64> {
        Some(self.printk_s - self.clock_offset_s?)
    }
}

/// One line of `/proc/modules`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcModule {
    pub name: String,
    pub size: u64,
    pub refcount: i64,
    /// Modules using this one.
    pub used_by: Vec<String>,
    /// `Live`, `Loading` or `Unloading`.
    pub state: String,
}

impl Console {
    pub fn new(raw: impl Into<String>) -> Console {
        Console {
            text: raw.into().replace('\r', ""),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.text.contains(needle)
    }

    /// The last `n` lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The first line that contains `needle`, from `needle` on.
    pub fn line_from(&self, needle: &str) -> Option<&str> {
        let at = self.text.find(needle)?;
        let rest = &self.text[at..];
        Some(rest.lines().next().unwrap_or(rest))
    }

    /// The lines strictly between the first `begin` marker line and the next
    /// `end` marker line, with kernel log lines (`[  1.234] …`) that the
    /// kernel interleaved removed.
    pub fn section(&self, begin: &str, end: &str) -> Option<Vec<&str>> {
        let mut lines = self.text.lines();
        lines.by_ref().find(|l| l.trim_end() == begin)?;
        let mut out = Vec::new();
        for line in lines {
            if line.trim_end() == end {
                return Some(out);
            }
            if !is_kernel_log_line(line) {
                out.push(line);
            }
        }
        None
    }

    /// The real init's start marker, if it ran.
    pub fn real_init(&self) -> Option<RealInit> {
        let line = self.line_from(markers::REAL_INIT)?;
        let pid = field(line, "pid=")?.parse().ok()?;
        let args_start = line.find("args=[")? + "args=[".len();
        let args_end = args_start + line[args_start..].find(']')?;
        let args = line[args_start..args_end]
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let uptime_s = field(line, "uptime=")?.parse().ok()?;
        Some(RealInit {
            pid,
            args,
            uptime_s,
        })
    }

    /// When the kernel logged "Run /init as init process", as the init read
    /// it from `dmesg` and printed it on a [`markers::RUN_INIT`] line
    /// ([`crate::rootfs::run_init_lines`]). `None` when there is no such
    /// line, it says `none`, or its time is not a non-negative number.
    pub fn run_init(&self) -> Option<RunInit> {
        let line = self.line_from(markers::RUN_INIT)?;
        let mut words = line[markers::RUN_INIT.len()..].split_whitespace();
        let printk_s: f64 = words.next()?.parse().ok()?;
        if !(printk_s.is_finite() && printk_s >= 0.0) {
            return None;
        }
        let clock_offset_s = words
            .find_map(|w| w.strip_prefix("clock_offset="))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite());
        Some(RunInit {
            printk_s,
            clock_offset_s,
        })
    }

    /// `/run/kmodinit/report.json` as the real init printed it.
    pub fn report(&self) -> Result<serde_json::Value, String> {
        self.json_section(markers::REPORT_BEGIN, markers::REPORT_END)
    }

    /// report.json as the real init printed it again once no module was
    /// `pending` ([`crate::RealInitRoot::late_report`]).
    pub fn late_report(&self) -> Result<serde_json::Value, String> {
        self.json_section(markers::LATE_REPORT_BEGIN, markers::LATE_REPORT_END)
    }

    fn json_section(&self, begin: &str, end: &str) -> Result<serde_json::Value, String> {
        let lines = self.section(begin, end).ok_or_else(|| {
            format!(
                "no {begin}…{end} section on the console; tail:\n{}",
                self.tail(30)
            )
        })?;
        let text = lines.join("\n");
        serde_json::from_str(&text).map_err(|e| format!("report.json does not parse: {e}\n{text}"))
    }

    /// `/proc/modules` as the real init printed it.
    pub fn proc_modules(&self) -> Result<Vec<ProcModule>, String> {
        let lines = self
            .section(markers::MODULES_BEGIN, markers::MODULES_END)
            .ok_or_else(|| format!("no {} section on the console", markers::MODULES_BEGIN))?;
        lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_proc_modules_line(l))
            .collect()
    }

    /// `module.param` → value, for the parameters the real init dumped.
    pub fn module_params(&self) -> Result<BTreeMap<String, String>, String> {
        let lines = self
            .section(markers::PARAMS_BEGIN, markers::PARAMS_END)
            .ok_or_else(|| format!("no {} section on the console", markers::PARAMS_BEGIN))?;
        let mut out = BTreeMap::new();
        for line in lines {
            // /sys/module/NAME/parameters/PARAM=VALUE
            let Some(rest) = line.strip_prefix("/sys/module/") else {
                continue;
            };
            let Some((path, value)) = rest.split_once('=') else {
                continue;
            };
            let Some((module, param)) = path.split_once("/parameters/") else {
                continue;
            };
            out.insert(format!("{module}.{param}"), value.to_string());
        }
        Ok(out)
    }

    /// How many times `needle` occurs.
    pub fn count(&self, needle: &str) -> usize {
        self.text.matches(needle).count()
    }
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    line[at..].split_whitespace().next()
}

/// `[    1.234567] …`: a printk line on the console.
fn is_kernel_log_line(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim();
    !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Parses `name size refcount deps state address` (deps `-` or `a,b,`).
pub fn parse_proc_modules_line(line: &str) -> Result<ProcModule, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 5 {
        return Err(format!("not a /proc/modules line: {line:?}"));
    }
    let size = f[1]
        .parse()
        .map_err(|_| format!("bad size in /proc/modules line {line:?}"))?;
    let refcount = f[2]
        .parse()
        .map_err(|_| format!("bad refcount in /proc/modules line {line:?}"))?;
    let used_by = f[3]
        .split(',')
        .filter(|s| !s.is_empty() && *s != "-")
        .map(str::to_string)
        .collect();
    Ok(ProcModule {
        name: f[0].to_string(),
        size,
        refcount,
        used_by,
        state: f[4].to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    const SAMPLE: &str = "[    0.000000] Linux version 6.1\r\n\
kmodinit: loaded virtio_blk\r\n\
KMI-REALINIT pid=1 args=[single foo] uptime=3.52 argc=2\r\n\
KMI-RUNINIT 2.901234 clock_offset=0.0275\r\n\
KMI-REPORT-BEGIN\r\n\
{\"version\": 1,\r\n\
[    4.100000] random: crng init done\r\n\
 \"load\": {\"jobs\": 2}}\r\n\
KMI-REPORT-END\r\n\
KMI-MODULES-BEGIN\r\n\
ext4 991232 1 - Live 0xffffffffc0000000\r\n\
jbd2 167936 1 ext4, Live 0xffffffffc0100000\r\n\
KMI-MODULES-END\r\n\
KMI-PARAMS-BEGIN\r\n\
/sys/module/kmi_a/parameters/tag=hello\r\n\
/sys/module/kmi_a/parameters/delay_ms=200\r\n\
KMI-PARAMS-END\r\n";

    #[test]
    fn reads_marker_report_modules_and_params() {
        let c = Console::new(SAMPLE);
        let init = c.real_init().unwrap();
        assert_eq!(init.pid, 1);
        assert_eq!(init.args, vec!["single", "foo"]);
        assert!((init.uptime_s - 3.52).abs() < 1e-9);
        let run = c.run_init().unwrap();
        assert_eq!(run.printk_s, 2.901234);
        assert!((run.boottime_s().unwrap() - 2.873734).abs() < 1e-9);
        let report = c.report().unwrap();
        assert_eq!(report["load"]["jobs"], 2);
        let mods = c.proc_modules().unwrap();
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[1].name, "jbd2");
        assert_eq!(mods[1].used_by, vec!["ext4"]);
        assert_eq!(mods[0].state, "Live");
        let params = c.module_params().unwrap();
        assert_eq!(params["kmi_a.tag"], "hello");
        assert_eq!(params["kmi_a.delay_ms"], "200");
    }

    #[test]
    fn missing_sections_are_errors_not_panics() {
        let c = Console::new("nothing here\n");
        assert!(c.real_init().is_none());
        assert_eq!(c.run_init(), None);
        assert!(c.report().unwrap_err().contains("KMI-REPORT-BEGIN"));
        assert!(c.proc_modules().is_err());
        assert!(parse_proc_modules_line("x 1").is_err());
    }

    #[test]
    fn run_init_marker_none_or_garbage_is_absent() {
        for text in [
            "KMI-RUNINIT none clock_offset=0.02\n",
            "KMI-RUNINIT \n",
            "KMI-RUNINIT [ 1.0] x\n",
            "KMI-RUNINIT -1.5\n",
            "KMI-RUNINIT nan\n",
        ] {
            assert_eq!(Console::new(text).run_init(), None, "{text:?}");
        }
        // An unknown offset leaves the time uncorrected, not wrong.
        for text in [
            "KMI-RUNINIT 1.5 clock_offset=none\n",
            "KMI-RUNINIT 1.5\n",
            "KMI-RUNINIT 1.5 clock_offset=inf\n",
        ] {
            let r = Console::new(text).run_init().unwrap();
            assert_eq!((r.printk_s, r.clock_offset_s), (1.5, None), "{text:?}");
            assert_eq!(r.boottime_s(), None);
        }
        // The first marker counts; the kernel's own line on a non-quiet
        // console is not the marker.
        let c = Console::new(
            "[    1.500000] Run /init as init process\nKMI-RUNINIT 1.500000 clock_offset=-0.002\r\nKMI-RUNINIT 9.0\n",
        );
        let r = c.run_init().unwrap();
        assert_eq!(r.printk_s, 1.5);
        assert!((r.boottime_s().unwrap() - 1.502).abs() < 1e-12);
    }

    #[test]
    fn the_scripts_run_init_lines_read_dmesg_and_the_clocks() {
        let lines = crate::rootfs::run_init_lines("$B ");
        assert!(lines.contains("echo \"KMI-RUNINIT $($B dmesg"), "{lines}");
        assert!(lines.contains("Run [^ ]* as init process"), "{lines}");
        assert!(lines.contains("|| echo none) clock_offset="), "{lines}");
        assert!(lines.starts_with("kmi_d=/sys/kernel/debug;"), "{lines}");
        assert!(
            lines.contains("$B mount -t debugfs debugfs $kmi_d"),
            "{lines}"
        );
        let script = crate::RealInitRoot::new().script();
        let run = script.find("KMI-RUNINIT").unwrap();
        let real = script.find("KMI-REALINIT pid=").unwrap();
        assert!(real < run, "the uptime is taken before dmesg runs");
        assert!(script.contains("$(dmesg 2>/dev/null"), "{script}");
    }
}

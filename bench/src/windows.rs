//! The time around the load phase (issue 16's two overhead windows, target
//! ≤ 30 ms each under TCG), from a kmodinit report and the console of the
//! same boot:
//!
//! - the kernel's "Run /init as init process" (its printk time, which the
//!   harness's init reads from `dmesg`: `KMI-RUNINIT`) → the loader's
//!   `load_start`, split at `/init`'s first instruction
//!   (`boottime_init_start`) into the kernel's exec and ELF load and
//!   kmodinit's own set-up;
//! - the loader's `load_end` → PID 1's `exec` of the real init, and → the
//!   real init's first line (its `/proc/uptime`, 10 ms resolution).
//!
//! Two clocks: the report's stamps and `/proc/uptime` are CLOCK_BOOTTIME
//! (= CLOCK_MONOTONIC before any suspend, and a boot to the real init is
//! never suspended), but printk timestamps are the scheduler's
//! `local_clock()`, which is not: with an unstable TSC (TCG marks it so) it
//! keeps the offset the TSC sched_clock had over the timekeeping clock when
//! the kernel switched: −31 to +28 ms in our guests, different at every
//! boot (checked against kmodinit's own kmsg lines, which bracket it).
//! So the init that prints `KMI-RUNINIT` also prints that offset
//! (`cpu_clk − ktime` from the scheduler's debug file), and "Run /init" is
//! moved onto CLOCK_BOOTTIME by it; a boot without the offset gets no
//! "Run /init" window rather than one off by 20 ms.
//!
//! Plus where the time goes: the gap before each timeline step (init/
//! REPORT.md "The timeline"). A step's gap is measured from the previous
//! stamp of the same process, with three exceptions: PID 1's `start` from
//! "Run /init"; the loader's first step from PID 1's last stamp before it
//! (the fork); PID 1's steps after the load from `load_end` at the earliest
//! (a step done during the load, such as finding the root device, costs the
//! window nothing: gap 0). So PID 1's after-load gaps add up to
//! `load_end → exec`, and "Run /init" → PID 1's steps up to the fork → the
//! loader's steps add up to `Run /init → load_start`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::BootReport;
use crate::stats::median;
use kmodinit_qemu::RunInit;

/// Issue 16's target for each window, ms.
pub const TARGET_MS: f64 = 30.0;

/// The steps shown, in their usual order: (process, step).
const SHOWN: &[(&str, &str)] = &[
    ("init", "start"),
    ("init", "mounts"),
    ("init", "logger"),
    ("init", "cmdline"),
    ("init", "fork"),
    ("init", "manifest"),
    ("init", "config"),
    ("init", "helper"),
    ("loader", "start"),
    ("loader", "index"),
    ("loader", "manifest"),
    ("loader", "plan"),
    ("loader", "open_ahead"),
    ("loader", "go"),
    ("loader", "helper"),
    ("loader", "load_start"),
    ("init", "root_found"),
    ("init", "root_mounted"),
    ("init", "supervised"),
    ("init", "report"),
    ("init", "mounts_moved"),
    ("init", "initramfs_freed"),
    ("init", "switch_root"),
    ("init", "exec"),
];

/// PID 1's steps that come after the load (their gaps start at `load_end`
/// at the earliest).
const AFTER_LOAD: &[&str] = &[
    "root_found",
    "root_mounted",
    "supervised",
    "report",
    "mounts_moved",
    "initramfs_freed",
    "switch_root",
    "exec",
];

/// The windows of one boot, in seconds; `None` where a stamp is missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows {
    /// "Run /init" → the loader's `load_start`.
    pub run_init_to_load: Option<f64>,
    /// "Run /init" → `/init`'s first instruction: the kernel's exec.
    pub run_init_to_init_start: Option<f64>,
    /// `/init`'s first instruction → `load_start`: kmodinit's set-up.
    pub init_start_to_load: Option<f64>,
    /// `load_end` → PID 1's `exec`.
    pub load_end_to_exec: Option<f64>,
    /// `load_end` → the real init's first line (10 ms resolution).
    pub load_end_to_real_init: Option<f64>,
    /// printk's clock − CLOCK_BOOTTIME: the correction applied to "Run
    /// /init".
    pub clock_offset: Option<f64>,
    /// (process, step) → the gap before it, s (see the module doc).
    pub gaps: BTreeMap<(String, String), f64>,
}

/// The first stamp of `process`'s `step`.
fn stamp(r: &BootReport, process: &str, step: &str) -> Option<f64> {
    r.steps
        .iter()
        .find(|s| s.process == process && s.step == step)
        .map(|s| s.t)
}

/// `b − a` when both are known.
fn span(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

/// A boot-level stamp of the report; 0 means not set.
fn set(v: f64) -> Option<f64> {
    (v > 0.0).then_some(v)
}

/// The windows of one boot: its report, the kernel's "Run /init" line
/// (`KMI-RUNINIT`) and the real init's start (uptime, s), when known.
pub fn windows(r: &BootReport, run_init: Option<RunInit>, real_init: Option<f64>) -> Windows {
    let clock_offset = run_init.and_then(|x| x.clock_offset_s);
    // On the report's clock, or not at all.
    let run_init = run_init.and_then(|x| x.boottime_s());
    let init_start = stamp(r, "init", "start").or(set(r.boottime_init_start));
    let load_start = stamp(r, "loader", "load_start").or(set(r.boottime_load_start));
    let load_end = stamp(r, "loader", "load_end").or(set(r.boottime_load_end));
    let exec = stamp(r, "init", "exec").or(r.boottime_exec);
    Windows {
        run_init_to_load: span(run_init, load_start),
        run_init_to_init_start: span(run_init, init_start),
        init_start_to_load: span(init_start, load_start),
        load_end_to_exec: span(load_end, exec),
        load_end_to_real_init: span(load_end, real_init),
        clock_offset,
        gaps: gaps(r, run_init, load_end),
    }
}

fn gaps(
    r: &BootReport,
    run_init: Option<f64>,
    load_end: Option<f64>,
) -> BTreeMap<(String, String), f64> {
    let mut by_t: Vec<&kmodinit_report::Step> = r.steps.iter().collect();
    by_t.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut out = BTreeMap::new();
    let mut last: BTreeMap<&str, f64> = BTreeMap::new();
    // The latest stamp of PID 1 so far (the loader's first step's base).
    let mut last_init: Option<f64> = None;
    for s in by_t {
        let key = (s.process.clone(), s.step.clone());
        let prev = last.get(s.process.as_str()).copied();
        let base = match (s.process.as_str(), s.step.as_str()) {
            // The load itself is not a gap of the windows.
            ("loader", "load_end") => None,
            ("init", "start") => run_init,
            ("init", step) if AFTER_LOAD.contains(&step) => match (prev, load_end) {
                (Some(p), Some(e)) => Some(p.max(e)),
                (p, e) => p.or(e),
            },
            ("loader", _) => prev.or(last_init),
            _ => prev,
        };
        if let Some(b) = base {
            out.entry(key).or_insert((s.t - b).max(0.0));
        }
        last.insert(s.process.as_str(), s.t);
        if s.process == "init" {
            last_init = Some(s.t);
        }
    }
    out
}

/// Median and min–max of `values` (s) in ms, for a table row.
fn ms_cells(values: &[f64]) -> (String, String) {
    let Some(m) = median(values) else {
        return ("–".into(), "–".into());
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (
        format!("{:.1}", m * 1000.0),
        format!("{:.1}–{:.1}", min * 1000.0, max * 1000.0),
    )
}

/// "met", or by how much it is missed, for a median in seconds.
fn verdict(median_s: Option<f64>) -> String {
    match median_s {
        Some(m) if m * 1000.0 <= TARGET_MS => "met".into(),
        Some(m) => format!("missed by {:.0} ms", m * 1000.0 - TARGET_MS),
        None => "not measured".into(),
    }
}

/// Medians of the two target windows over `runs`, s.
pub fn medians(runs: &[Windows]) -> (Option<f64>, Option<f64>) {
    let pick =
        |f: fn(&Windows) -> Option<f64>| median(&runs.iter().filter_map(f).collect::<Vec<_>>());
    (pick(|w| w.run_init_to_load), pick(|w| w.load_end_to_exec))
}

/// The two summary rows of one case: (what, median ms).
pub fn summary(label: &str, runs: &[Windows]) -> Vec<(String, String)> {
    let (pre, post) = medians(runs);
    let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1}", v * 1000.0));
    vec![
        (
            format!("{label}: Run /init → load start (median ms, target ≤ 30)"),
            ms(pre),
        ),
        (
            format!("{label}: load end → exec (median ms, target ≤ 30)"),
            ms(post),
        ),
    ]
}

/// The section "The time around the load phase" of one case: the windows
/// table, then the gap before each timeline step. `boots` says which boots
/// `runs` are; `real_init` names where the real init's start comes from.
pub fn markdown(runs: &[Windows], boots: &str, real_init: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n### The time around the load phase\n\n{} boots ({boots}); the kernel log time of \"Run /init as init process\" (read from `dmesg` by the init the harness runs after kmodinit) moved onto the report's clock (CLOCK_BOOTTIME) by the offset printk's `local_clock` had over it in the same boot (last row), and the report's timeline (`steps`).\n",
        runs.len()
    );
    let _ = writeln!(
        md,
        "| window | median (ms) | runs min–max (ms) | runs | target |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | --- |");
    type Pick = fn(&Windows) -> Option<f64>;
    let real_init_row =
        format!("`load_end` → the real init's first line ({real_init}, 10 ms resolution)");
    let rows: [(&str, Pick, bool); 6] = [
        ("kernel \"Run /init\" → loader `load_start`", |w| w.run_init_to_load, true),
        ("… of which \"Run /init\" → /init's first instruction (`boottime_init_start`: the kernel's exec and ELF load)", |w| w.run_init_to_init_start, false),
        ("… of which /init's first instruction → `load_start` (kmodinit's set-up)", |w| w.init_start_to_load, false),
        ("loader `load_end` → PID 1's `exec`", |w| w.load_end_to_exec, true),
        (real_init_row.as_str(), |w| w.load_end_to_real_init, false),
    (
            "printk's `local_clock` − CLOCK_BOOTTIME (`cpu_clk − ktime`, the correction applied to \"Run /init\")",
            |w| w.clock_offset,
            false,
        ),
    ];
    for (what, pick, target) in rows {
        let values: Vec<f64> = runs.iter().filter_map(pick).collect();
        let (m, spread) = ms_cells(&values);
        let target = if target {
            format!("≤ {TARGET_MS:.0} ms: {}", verdict(median(&values)))
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {what} | {m} | {spread} | {} | {target} |",
            values.len()
        );
    }

    // The gaps: the steps listed in SHOWN first, in that order, then any
    // other the reports carry.
    let mut keys: Vec<(String, String)> = SHOWN
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .filter(|k| runs.iter().any(|w| w.gaps.contains_key(k)))
        .collect();
    for w in runs {
        for k in w.gaps.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    if keys.is_empty() {
        let _ = writeln!(md, "\nNo timeline steps in these reports (an older /init).");
        return md;
    }
    let meds: Vec<Option<f64>> = keys
        .iter()
        .map(|k| {
            median(
                &runs
                    .iter()
                    .filter_map(|w| w.gaps.get(k).copied())
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    // The three biggest gaps in bold.
    let mut sorted: Vec<f64> = meds.iter().flatten().copied().collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let bold_from = sorted.get(2.min(sorted.len().saturating_sub(1))).copied();
    let _ = writeln!(
        md,
        "\nWhere the time goes: the gap before each step of the timeline (from the previous stamp of the same process; PID 1's `start` from \"Run /init\", the loader's `start` from PID 1's last stamp before it, PID 1's steps after the load from `load_end` at the earliest, 0 when done during the load), medians over the boots that have the step; the three biggest in bold.\n"
    );
    let _ = writeln!(
        md,
        "| process | step | median gap (ms) | runs min–max (ms) | runs |"
    );
    let _ = writeln!(md, "| --- | --- | ---: | ---: | ---: |");
    for ((process, step), med) in keys.iter().zip(&meds) {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|w| w.gaps.get(&(process.clone(), step.clone())).copied())
            .collect();
        let (m, spread) = ms_cells(&values);
        let m = match (med, bold_from) {
            (Some(v), Some(b)) if *v >= b && *v > 0.0 => format!("**{m}**"),
            _ => m,
        };
        let _ = writeln!(
            md,
            "| {process} | `{step}` | {m} | {spread} | {} |",
            values.len()
        );
    }
    md
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kmodinit_report::Step;

    /// "Run /init" at `t` on the report's clock, printed 20 ms later by
    /// printk's clock.
    fn run_at(t: f64) -> Option<RunInit> {
        Some(RunInit {
            printk_s: t + 0.020,
            clock_offset_s: Some(0.020),
        })
    }

    fn step(process: &str, step: &str, t: f64) -> Step {
        Step {
            process: process.into(),
            step: step.into(),
            t,
        }
    }

    /// A boot to a real root: PID 1 starts 10 ms after "Run /init" (2.0 s),
    /// forks at 2.030, the loader starts loading at 2.080 and ends at 3.0;
    /// the root was found during the load, the exec is at 3.025.
    fn report() -> BootReport {
        BootReport {
            boottime_init_start: 2.010,
            boottime_load_start: 2.080,
            boottime_load_end: 3.000,
            boottime_exec: Some(3.025),
            steps: vec![
                step("init", "start", 2.010),
                step("init", "mounts", 2.015),
                step("init", "helper", 2.025),
                step("init", "fork", 2.030),
                step("init", "manifest", 2.040),
                step("init", "config", 2.041),
                step("init", "root_found", 2.500),
                step("init", "supervised", 3.010),
                step("init", "mounts_moved", 3.015),
                step("init", "exec", 3.025),
                step("loader", "start", 2.028),
                step("loader", "index", 2.050),
                step("loader", "go", 2.060),
                step("loader", "load_start", 2.080),
                step("loader", "load_end", 3.000),
            ],
            ..BootReport::default()
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn the_windows_of_one_boot() {
        let w = windows(&report(), run_at(2.000), Some(3.04));
        assert!(close(w.run_init_to_load, 0.080));
        assert!(close(w.run_init_to_init_start, 0.010));
        assert!(close(w.init_start_to_load, 0.070));
        assert!(close(w.load_end_to_exec, 0.025));
        assert!(close(w.load_end_to_real_init, 0.040));
        assert!(close(w.clock_offset, 0.020));
        // Without the offset, no window mixes the two clocks.
        let bare = RunInit {
            printk_s: 2.020,
            clock_offset_s: None,
        };
        let w = windows(&report(), Some(bare), Some(3.04));
        assert_eq!(w.run_init_to_load, None);
        assert_eq!(w.run_init_to_init_start, None);
        assert!(close(w.init_start_to_load, 0.070));
        assert!(!w
            .gaps
            .contains_key(&("init".to_string(), "start".to_string())));
    }

    #[test]
    fn gaps_add_up_to_the_windows() {
        let w = windows(&report(), run_at(2.000), None);
        let g = |p: &str, s: &str| w.gaps.get(&(p.to_string(), s.to_string())).copied();
        assert!(close(g("init", "start"), 0.010), "from Run /init");
        assert!(close(g("init", "mounts"), 0.005));
        // The loader's first step from PID 1's last stamp before it (helper
        // at 2.025), not from the fork stamp PID 1 wrote after it.
        assert!(close(g("loader", "start"), 0.003));
        assert!(close(g("loader", "index"), 0.022));
        assert!(close(g("loader", "load_start"), 0.020));
        assert_eq!(g("loader", "load_end"), None, "the load is no gap");
        // Found during the load: it costs the window nothing.
        assert!(close(g("init", "root_found"), 0.0));
        assert!(close(g("init", "supervised"), 0.010), "from load_end");
        assert!(close(g("init", "exec"), 0.010));
        let after: f64 = AFTER_LOAD.iter().filter_map(|s| g("init", s)).sum();
        assert!((after - w.load_end_to_exec.unwrap()).abs() < 1e-9);
        let before = g("init", "start").unwrap()
            + g("init", "mounts").unwrap()
            + g("init", "helper").unwrap()
            + ["start", "index", "go", "load_start"]
                .iter()
                .filter_map(|s| g("loader", s))
                .sum::<f64>();
        assert!((before - w.run_init_to_load.unwrap()).abs() < 1e-9);
    }

    #[test]
    fn missing_stamps_give_missing_windows_not_zeros() {
        // No KMI-RUNINIT, no real init line, an older report without steps:
        // the boot-level stamps still give what they can.
        let r = BootReport {
            steps: Vec::new(),
            ..report()
        };
        let w = windows(&r, None, None);
        assert_eq!(w.run_init_to_load, None);
        assert_eq!(w.run_init_to_init_start, None);
        assert_eq!(w.load_end_to_real_init, None);
        assert!(close(w.init_start_to_load, 0.070));
        assert!(close(w.load_end_to_exec, 0.025));
        assert!(w.gaps.is_empty());
        // Without a Run /init time, PID 1's start has no gap.
        let w = windows(&report(), None, None);
        assert!(!w
            .gaps
            .contains_key(&("init".to_string(), "start".to_string())));
        // No exec (a report written before it): no after-load window.
        let r = BootReport {
            boottime_exec: None,
            steps: report()
                .steps
                .into_iter()
                .filter(|s| s.step != "exec")
                .collect(),
            ..report()
        };
        assert_eq!(windows(&r, run_at(2.0), None).load_end_to_exec, None);
    }

    #[test]
    fn the_section_gives_medians_and_the_verdict() {
        let a = windows(&report(), run_at(2.000), Some(3.04));
        // A second boot 40 ms slower before the load, 10 ms after it.
        let mut b = a.clone();
        b.run_init_to_load = Some(0.120);
        b.load_end_to_exec = Some(0.015);
        let c = windows(&report(), run_at(1.990), None);
        let runs = [a, b, c];
        assert_eq!(medians(&runs).0.map(|v| (v * 1000.0).round()), Some(90.0));
        let md = markdown(&runs, "kmodinit", "KMI-REALINIT uptime");
        assert!(
            md.contains("| kernel \"Run /init\" → loader `load_start` | 90.0 | 80.0–120.0 | 3 | ≤ 30 ms: missed by 60 ms |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| loader `load_end` → PID 1's `exec` | 25.0 | 15.0–25.0 | 3 | ≤ 30 ms: met |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 40.0 | 40.0–40.0 | 2 |"),
            "real init in two runs: {md}"
        );
        assert!(
            md.contains("the correction applied to \"Run /init\") | 20.0 | 20.0–20.0 | 3 |"),
            "{md}"
        );
        // Steps in timeline order, PID 1's first.
        let start = md.find("| init | `start` |").unwrap();
        let load_start = md.find("| loader | `load_start` |").unwrap();
        let exec = md.find("| init | `exec` |").unwrap();
        assert!(start < load_start && load_start < exec, "{md}");
        // The biggest gap (loader index, 22 ms) in bold.
        assert!(md.contains("| loader | `index` | **22.0** |"), "{md}");
        let rows = summary("boot", &runs);
        assert_eq!(
            rows[0].0,
            "boot: Run /init → load start (median ms, target ≤ 30)"
        );
        assert_eq!(rows[0].1, "90.0");
        assert_eq!(rows[1].1, "25.0");
    }
}

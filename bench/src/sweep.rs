//! `kmodinit-bench sweep`: the loader's pool width against time, under QEMU.
//! Boots one kmodinit image per case on the fixed pool
//! (`KMODINIT_POOL=fixed kmodinit.jobs=N`) for every width asked for (0: no
//! `kmodinit.jobs`, the fixed pool's automatic width), on the adaptive pool
//! (no option: the default), and on the adaptive pool with the cost-aware
//! order (`KMODINIT_ORDER=cost`), runs interleaved and the order rotated
//! each run, so drift on the shared host hits every variant alike. Writes
//! `sweep.md` with medians, and the adaptive pool against the best fixed
//! width of each case.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cases::{self, done_script, Env, APPEND};
use crate::report::{self, ReportFigures};
use crate::stats::{secs, Series};

/// One case's image and how to boot it.
struct Target {
    key: &'static str,
    title: &'static str,
    image: PathBuf,
    disks: Vec<PathBuf>,
    /// Boots to the real init on a root disk (case 3) rather than a
    /// load-only image that powers off.
    to_root: bool,
    work: PathBuf,
}

/// Measurements of one (case, width).
#[derive(Debug, Default)]
struct Cell {
    /// report: load_end − load_start.
    load: Series,
    /// Uptime at which the real init started (case 3 only).
    real_init: Series,
    /// Σ over modules of their kernel-call time: grows with the width if
    /// concurrent insertions slow each other down.
    sum_insert: Series,
    /// First insertion's start − load_start.
    first_insert: Series,
    /// Pool width the report states.
    jobs: Vec<usize>,
}

/// How one sweep boot runs the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The fixed pool of this width (0: its automatic width).
    Fixed(usize),
    /// The default: adaptive pool, cost-aware order.
    Adaptive,
    /// The adaptive pool with the unit (module-count) order.
    AdaptiveCostOrder,
}

impl Variant {
    fn name(self) -> String {
        match self {
            Variant::Fixed(0) => "fixed auto".into(),
            Variant::Fixed(w) => format!("fixed {w}"),
            Variant::Adaptive => "adaptive".into(),
            Variant::AdaptiveCostOrder => "adaptive, cost-aware order".into(),
        }
    }

    fn tag(self) -> String {
        match self {
            Variant::Fixed(w) => format!("f{w}"),
            Variant::Adaptive => "a".into(),
            Variant::AdaptiveCostOrder => "ac".into(),
        }
    }

    /// Kernel command-line words (the `KMODINIT_*` ones reach /init as
    /// environment variables).
    pub fn append(self) -> String {
        match self {
            Variant::Fixed(0) => format!("{APPEND} KMODINIT_POOL=fixed"),
            Variant::Fixed(w) => format!("{APPEND} KMODINIT_POOL=fixed kmodinit.jobs={w}"),
            Variant::Adaptive => APPEND.to_string(),
            Variant::AdaptiveCostOrder => format!("{APPEND} KMODINIT_ORDER=cost"),
        }
    }
}

/// The variants of a case: the fixed widths, then both adaptive ones.
fn variants(widths: &[usize]) -> Vec<Variant> {
    widths
        .iter()
        .map(|&w| Variant::Fixed(w))
        .chain([Variant::Adaptive, Variant::AdaptiveCostOrder])
        .collect()
}

fn build_load_target(
    env: &Env,
    key: &'static str,
    title: &'static str,
    manifest: &serde_json::Value,
    modules_root: &Path,
) -> Result<Target, String> {
    let work = env.work.join(format!("sweep-{key}"));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let mut m = manifest.clone();
    m["init"] = serde_json::json!({"path": "/bin/busybox", "args": ["sh", "/kmb-done"]});
    if let Some(o) = m.as_object_mut() {
        o.remove("root");
        o.insert("on_failure".into(), serde_json::json!("poweroff"));
        o.insert(
            "deadline_ms".into(),
            serde_json::json!(cases::WHOLE_LOAD_DEADLINE_MS),
        );
    }
    let done = work.join("kmb-done");
    std::fs::write(&done, done_script()).map_err(|e| e.to_string())?;
    let image = work.join("kmodinit.img");
    cases::mkimage(
        env,
        &m,
        modules_root,
        &[
            (PathBuf::from(crate::stage::BUSYBOX), "/bin/busybox"),
            (done, "/kmb-done"),
        ],
        "none",
        &image,
    )?;
    Ok(Target {
        key,
        title,
        image,
        disks: Vec::new(),
        to_root: false,
        work,
    })
}

fn build_boot_target(env: &Env) -> Result<Target, String> {
    let work = env.work.join("sweep-boot");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let disk = cases::root_disk(&work)?;
    let image = work.join("kmodinit.img");
    cases::mkimage(
        env,
        &cases::root_manifest(),
        Path::new("/"),
        &[],
        "zstd",
        &image,
    )?;
    Ok(Target {
        key: "boot",
        title: "boot to real init (11 demo modules)",
        image,
        disks: vec![disk],
        to_root: true,
        work,
    })
}

fn boot_once(
    env: &Env,
    t: &Target,
    variant: Variant,
    run: usize,
    cell: &mut Cell,
) -> Result<(), String> {
    let append = variant.append();
    let tag = format!("{}-{run}", variant.tag());
    let boot = cases::run_vm(env, &t.image, &append, &t.disks, &t.work)?;
    if t.to_root {
        match boot.console.real_init() {
            Some(r) => cell.real_init.push(r.uptime_s),
            None => cell.real_init.note("real init never ran"),
        }
    }
    let value = match boot.console.report() {
        Ok(v) => v,
        Err(_) => {
            boot.record_failure(
                &mut cell.load,
                "no report",
                &t.work.join(format!("failed-{tag}-console.log")),
            );
            return Ok(());
        }
    };
    let _ = std::fs::write(t.work.join(format!("report-{tag}.json")), value.to_string());
    let _ = std::fs::write(
        t.work.join(format!("console-{tag}.log")),
        boot.console.text(),
    );
    let r = report::from_value(value)?;
    if let Some(w) = r.load_wall_s() {
        cell.load.push(w);
    }
    if let Some(l) = &r.load {
        cell.jobs.push(l.jobs);
        let durations = l
            .modules
            .iter()
            .filter_map(|m| Some(m.end? - m.start?))
            .sum::<f64>();
        cell.sum_insert.push(durations);
        if let Some(first) = l
            .modules
            .iter()
            .filter_map(|m| m.start)
            .min_by(f64::total_cmp)
        {
            cell.first_insert.push(first - l.boottime_load_start);
        }
    }
    Ok(())
}

/// Runs the sweep over `cases` (1 farm, 2 server, 3 boot) and `widths`;
/// `server_runs` applies to case 2. Returns the markdown.
pub fn sweep(
    env: &Env,
    case_ids: &[u32],
    widths: &[usize],
    server_widths: &[usize],
    server_runs: usize,
    server_manifest: Option<serde_json::Value>,
) -> Result<String, String> {
    let mut targets: Vec<(Target, Vec<Variant>, usize)> = Vec::new();
    for &c in case_ids {
        match c {
            1 => targets.push((
                build_load_target(
                    env,
                    "farm",
                    "fixture farm (33 modules, 6 chains, delay_ms sleeps)",
                    &crate::farm::manifest(),
                    &crate::farm::build(Path::new("build/fixtures"))?,
                )?,
                variants(widths),
                env.runs,
            )),
            2 => {
                let m = server_manifest
                    .clone()
                    .ok_or("case 2: no server manifest")?;
                targets.push((
                    build_load_target(
                        env,
                        "server",
                        "real Debian modules (case 2's set)",
                        &m,
                        Path::new("/"),
                    )?,
                    variants(server_widths),
                    server_runs,
                ))
            }
            3 => targets.push((build_boot_target(env)?, variants(widths), env.runs)),
            other => return Err(format!("sweep: no case {other}")),
        }
    }
    let mut md = String::new();
    for (t, ws, runs) in &targets {
        let before = md.len();
        let mut cells: Vec<Cell> = ws.iter().map(|_| Cell::default()).collect();
        for run in 0..*runs {
            // Rotate the order so no width always boots first or last.
            for k in 0..ws.len() {
                let i = (k + run) % ws.len();
                eprintln!("sweep {}: run {}/{runs}, {}", t.key, run + 1, ws[i].name());
                boot_once(env, t, ws[i], run, &mut cells[i])?;
            }
        }
        let _ = writeln!(md, "\n### {} ({runs} runs)\n", t.title);
        let _ = writeln!(
            md,
            "| pool | workers | load phase median (s) | min–max (s) | Σ insertion time median (s) | first insertion after (ms) |{}",
            if t.to_root { " real init at (median uptime s) | min–max (s) |" } else { "" }
        );
        let _ = writeln!(
            md,
            "| --- | ---: | ---: | ---: | ---: | ---: |{}",
            if t.to_root { " ---: | ---: |" } else { "" }
        );
        for (w, c) in ws.iter().zip(&cells) {
            let mut jobs = c.jobs.clone();
            jobs.dedup();
            let _ = write!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                w.name(),
                jobs.iter()
                    .map(|j| j.to_string())
                    .collect::<Vec<_>>()
                    .join("/"),
                secs(c.load.median()),
                c.load.spread(),
                secs(c.sum_insert.median()),
                c.first_insert
                    .median()
                    .map_or("–".into(), |f| format!("{:.0}", f * 1e3)),
            );
            if t.to_root {
                let _ = write!(
                    md,
                    " {} | {} |",
                    secs(c.real_init.median()),
                    c.real_init.spread()
                );
            }
            let notes: Vec<String> = c
                .load
                .notes
                .iter()
                .chain(&c.real_init.notes)
                .cloned()
                .collect();
            if !notes.is_empty() {
                let _ = write!(md, " {}", notes.join("; "));
            }
            md.push('\n');
        }
        // The adaptive pool against the best fixed width, on the measure
        // that matters for the case.
        let measure = |c: &Cell| {
            if t.to_root {
                c.real_init.median()
            } else {
                c.load.median()
            }
        };
        let best = ws
            .iter()
            .zip(&cells)
            .filter(|(v, _)| matches!(v, Variant::Fixed(_)))
            .filter_map(|(v, c)| Some((*v, measure(c)?)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let adaptive = ws
            .iter()
            .zip(&cells)
            .find(|(v, _)| **v == Variant::Adaptive)
            .and_then(|(_, c)| measure(c));
        if let (Some((v, b)), Some(a)) = (best, adaptive) {
            let _ = writeln!(
                md,
                "\nAdaptive / best fixed width ({}, {b:.3} s) on the {}: **{:.3}×** (target ≤ 1.03×).",
                v.name(),
                if t.to_root { "real init's start" } else { "load phase" },
                a / b
            );
        }
        eprint!("{}", &md[before..]);
    }
    Ok(md)
}

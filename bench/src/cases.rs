//! The benchmark cases of issue #7. Each builds its images once, boots every
//! variant `runs` times (interleaved, so drift on the shared machine hits all
//! variants alike) and returns a markdown section plus README summary rows.
//! This file: the load-phase cases (1 and 2) and the helpers every case
//! uses; the boots to the real init (cases 3 and 5) are in `cases/boot.rs`.
//!
//! Over 500 lines on purpose: this is the benchmark harness, not shipped
//! code, and each case is one function that keeps its variants, its runs
//! and its table together, so a reader checks a figure against the code
//! that measured it in one place.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{self, BootReport, ReportFigures};
use crate::spec::Spec;
use crate::stage::Image;
use crate::stats::{ratio, secs, Series};
use crate::vm::{boot, kmb_fields, Boot};
use crate::windows::{self, Windows};
use kmodinit_report::ModuleState;
use modules_manifest::{Action, EdgeKind};

mod arm64;
mod boot;
mod compiled;
pub use arm64::arm64_case;
pub use boot::{boot_case, coldplug_case};
pub(crate) use boot::{root_disk, root_disk_with, root_manifest};
pub use compiled::compiled_case;

/// Paths and knobs shared by every case.
#[derive(Debug, Clone)]
pub struct Env {
    pub release: String,
    pub kernel: PathBuf,
    /// Scratch space for images and disks.
    pub work: PathBuf,
    /// Where SVGs go.
    pub results: PathBuf,
    pub runs: usize,
    pub init_bin: PathBuf,
    pub mkimage: PathBuf,
    pub smp: u32,
    /// The guest's architecture (x86-64 but for case 6).
    pub arch: kmodinit_qemu::Arch,
}

/// One case's output.
#[derive(Debug, Default)]
pub struct CaseOutput {
    pub markdown: String,
    /// (what, value) lines for the README summary.
    pub summary: Vec<(String, String)>,
    /// Peak RSS samples of PID 1 from kmodinit's reports, KiB.
    pub hwm_kib: Vec<u64>,
    /// Peak RSS samples of the loader child, KiB.
    pub loader_hwm_kib: Vec<u64>,
}

/// The peak RSS target of PID 1 and of the loader child, each.
pub const PEAK_RSS_TARGET_KIB: u64 = 2048;

/// "max M KiB (median D, N runs)" of peak RSS samples, or "–".
pub fn peak_rss(samples: &[u64]) -> String {
    let Some(max) = samples.iter().max() else {
        return "–".into();
    };
    let med = crate::stats::median(&samples.iter().map(|&h| h as f64).collect::<Vec<_>>());
    format!(
        "max {max} KiB (median {}, {} runs)",
        med.map_or("–".into(), |m| format!("{m:.0}")),
        samples.len()
    )
}

/// Kernel command line words shared by all boots (the harness adds
/// `console=ttyS0 panic=-1`): a quiet kernel, as in production.
pub(crate) const APPEND: &str = "quiet";

pub(crate) fn run_vm(
    env: &Env,
    initrd: &Path,
    append: &str,
    disks: &[PathBuf],
    work: &Path,
) -> Result<Boot, String> {
    boot(
        &env.kernel,
        initrd,
        append,
        disks,
        env.smp,
        env.arch,
        &work.join("console.log"),
    )
}

/// Builds a kmodinit image with `kmodinit-mkimage`.
pub(crate) fn mkimage(
    env: &Env,
    manifest: &serde_json::Value,
    modules_root: &Path,
    adds: &[(PathBuf, &str)],
    compress: &str,
    out: &Path,
) -> Result<u64, String> {
    mkimage_with(env, manifest, modules_root, adds, compress, out, &[])
}

/// [`mkimage`] with `extra` arguments for the tool.
pub(crate) fn mkimage_with(
    env: &Env,
    manifest: &serde_json::Value,
    modules_root: &Path,
    adds: &[(PathBuf, &str)],
    compress: &str,
    out: &Path,
    extra: &[&str],
) -> Result<u64, String> {
    if !env.mkimage.exists() || !env.init_bin.exists() {
        return Err(format!(
            "{} or {} missing (make init mkimage)",
            env.mkimage.display(),
            env.init_bin.display()
        ));
    }
    let mpath = out.with_extension("manifest.json");
    std::fs::write(
        &mpath,
        serde_json::to_vec_pretty(manifest).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", mpath.display()))?;
    let mut cmd = Command::new(&env.mkimage);
    cmd.arg("--manifest")
        .arg(&mpath)
        .args(["--kernel-release", &env.release])
        .arg("--output")
        .arg(out)
        .arg("--modules-root")
        .arg(modules_root)
        .arg("--init")
        .arg(&env.init_bin)
        .args(["--compress", compress]);
    for (src, dst) in adds {
        cmd.arg("--add").arg(format!("{}:{dst}", src.display()));
    }
    cmd.args(extra);
    let o = cmd
        .output()
        .map_err(|e| format!("{}: {e}", env.mkimage.display()))?;
    if !o.status.success() {
        return Err(format!(
            "kmodinit-mkimage failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    std::fs::metadata(out)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", out.display()))
}

/// The optional-chain deadline of the load-phase images: long enough that
/// PID 1 waits for every module, so the report handed to the init is whole
/// (no `pending` module) and its load phase is the whole load, the work the
/// baselines do.
pub(crate) const WHOLE_LOAD_DEADLINE_MS: u64 = 600_000;

/// The init that kmodinit execs inside the initramfs in cases 1 and 2: prints
/// its start (uptime), the module count and whether the kernel probes
/// asynchronously (`module.async_probe`), the kernel-log time of "Run /init"
/// (`KMI-RUNINIT`), dumps the report on the console and powers off.
pub(crate) fn done_script() -> String {
    format!(
        "#!/bin/busybox sh\n\
B=/bin/busybox\n\
read t rest < /proc/uptime\n\
echo \"KMB exec_uptime=$t modules=$($B wc -l < /proc/modules) async_probe=$($B cat /sys/module/module/parameters/async_probe 2>/dev/null || echo none)\"\n\
{}\n\
echo KMI-REPORT-BEGIN\n\
$B cat /run/kmodinit/report.json\n\
echo\n\
echo KMI-REPORT-END\n\
$B poweroff -f\n",
        kmodinit_qemu::rootfs::run_init_lines("$B ")
    )
}

/// Chains as busybox sees them: each entry preceded by the pre-softdeps the
/// plan chose for it, named explicitly (busybox modprobe ignores
/// `modules.softdep`), so both loaders insert the same set of modules.
/// With `loaded` (the modules kmodinit loaded in a calibration boot), only
/// those: a baseline is given exactly kmodinit's work, not the modules the
/// VM has no hardware for (whose failure would stop its chain early and make
/// it look faster for doing less).
fn busybox_chains(spec: &Spec, loaded: Option<&BTreeSet<String>>) -> Vec<Vec<String>> {
    let plan = &spec.plan;
    let keep = |name: &str| loaded.is_none_or(|l| l.contains(name));
    plan.chains
        .iter()
        .map(|chain| {
            let mut out: Vec<String> = Vec::new();
            for &id in &chain.nodes {
                let node = &plan.nodes[id];
                let softdeps = node
                    .preds
                    .iter()
                    .filter(|e| e.kind == EdgeKind::Softdep)
                    .map(|e| &plan.nodes[e.from])
                    .filter(|s| matches!(s.action, Action::Insert { .. }));
                for s in softdeps {
                    if keep(s.name.as_str()) && !out.iter().any(|o| o == s.name.as_str()) {
                        out.push(s.name.to_string());
                    }
                }
                if keep(node.name.as_str()) {
                    out.push(node.name.to_string());
                }
            }
            out
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// The modules a kmodinit report says were inserted (loaded, or EEXIST).
fn loaded_set(r: &BootReport) -> BTreeSet<String> {
    r.load
        .iter()
        .flat_map(|l| l.modules.iter())
        .filter(|m| matches!(m.state, ModuleState::Loaded | ModuleState::Already))
        .map(|m| m.name.to_string())
        .collect()
}

/// The two limits of one load, from a report of the load at `jobs=1` (each
/// module's time then is its single-insertion cost, with its sleep):
/// (CPU limit: Σ module times ÷ `cpus`; path limit: the longest dependency
/// path with those times).
fn limits(spec: &Spec, r: &BootReport, cpus: u32) -> Option<(f64, f64)> {
    let l = r.load.as_ref()?;
    let times: HashMap<String, f64> = l
        .modules
        .iter()
        .filter_map(|m| Some((m.name.to_string(), (m.end? - m.start?).max(0.0))))
        .collect();
    if times.is_empty() {
        return None;
    }
    let sum: f64 = times.values().sum();
    let path = spec
        .plan
        .critical_path(|n| times.get(n.name.as_str()).copied().unwrap_or(0.0))
        .cost;
    Some((sum / f64::from(cpus.max(1)), path))
}

/// "N" or "N ⚠ fewer than kmodinit's M" for a baseline's module count.
fn count_vs(c: &[String], km: Option<f64>) -> String {
    let text = count(c);
    let nums: Vec<f64> = c.iter().filter_map(|x| x.parse().ok()).collect();
    match (crate::stats::median(&nums), km) {
        (Some(n), Some(k)) if n < k => format!("{text} ⚠ fewer than kmodinit's {k:.0}"),
        _ => text,
    }
}

/// A busybox `/init` that modprobes every chain, one after the other or one
/// background job per chain, timing the phase with /proc/uptime.
fn modprobe_script(chains: &[Vec<String>], parallel: bool) -> String {
    let mut s = String::from(
        "#!/bin/sh\nB=/bin/busybox\n$B mount -t proc proc /proc\n$B mount -t sysfs sysfs /sys\n\
         $B mount -t devtmpfs devtmpfs /dev\nread t0 rest < /proc/uptime\n",
    );
    for c in chains {
        let body = format!(
            "for m in {}; do $B modprobe $m || {{ echo \"KMB-FAIL $m\"; break; }}; done",
            c.join(" ")
        );
        if parallel {
            let _ = writeln!(s, "( {body} ) &");
        } else {
            let _ = writeln!(s, "{body}");
        }
    }
    if parallel {
        s.push_str("wait\n");
    }
    s.push_str(
        "read t1 rest < /proc/uptime\n\
         echo \"KMB load_start=$t0 load_end=$t1 modules=$($B wc -l < /proc/modules)\"\n\
         $B poweroff -f\n",
    );
    s
}

/// `modprobe.d` options so dependencies get their params too, as the
/// manifest gives them to kmodinit.
fn modprobe_options(spec: &Spec) -> String {
    spec.params()
        .map(|(m, p)| format!("options {m} {p}\n"))
        .collect()
}

fn uptime_diff(fields: &std::collections::BTreeMap<String, String>) -> Option<f64> {
    let a: f64 = fields.get("load_start")?.parse().ok()?;
    let b: f64 = fields.get("load_end")?.parse().ok()?;
    Some(b - a)
}

fn count(c: &[String]) -> String {
    let mut c = c.to_vec();
    c.sort();
    c.dedup();
    if c.is_empty() {
        "–".into()
    } else {
        c.join("/")
    }
}

/// kmodinit's runs of one variant: wall times, critical paths and reports.
#[derive(Debug, Default)]
struct KmSeries {
    wall: Series,
    crit: Series,
    counts: Vec<String>,
    hwm: Vec<u64>,
    loader_hwm: Vec<u64>,
    reports: Vec<BootReport>,
    /// The time around the load phase of each boot with a report.
    windows: Vec<Windows>,
    /// `/sys/module/module/parameters/async_probe` as the init saw it.
    async_probe: Vec<String>,
}

impl KmSeries {
    /// Boots a kmodinit image once and records what its report says; the
    /// report is also kept as `report-TAG.json` in `work`.
    fn boot(
        &mut self,
        env: &Env,
        img: &Path,
        append: &str,
        work: &Path,
        tag: &str,
    ) -> Result<(), String> {
        let boot = run_vm(env, img, append, &[], work)?;
        let value = match boot.console.report() {
            Ok(v) => v,
            Err(_) => {
                boot.record_failure(
                    &mut self.wall,
                    "no report on the console",
                    &work.join(format!("failed-{tag}-console.log")),
                );
                return Ok(());
            }
        };
        let _ = std::fs::write(work.join(format!("report-{tag}.json")), value.to_string());
        let r = match report::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                self.wall.note(e);
                return Ok(());
            }
        };
        match r.load_wall_s() {
            Some(w) => self.wall.push(w),
            None => self.wall.note("report without load times"),
        }
        if let Some(l) = &r.load {
            self.crit.push(l.critical_path_s);
        }
        if r.failures() > 0 {
            self.wall
                .note(format!("{} modules failed or blocked", r.failures()));
        }
        if let Some(h) = r.vm_hwm_kib {
            self.hwm.push(h);
        }
        if let Some(h) = r.loader.as_ref().and_then(|l| l.vm_hwm_kib) {
            self.loader_hwm.push(h);
        }
        let fields = kmb_fields(boot.console.text());
        if let Some(n) = fields.get("modules") {
            self.counts.push(n.clone());
        }
        if let Some(a) = fields.get("async_probe") {
            self.async_probe.push(a.clone());
        }
        let real_init = fields.get("exec_uptime").and_then(|t| t.parse().ok());
        self.windows
            .push(windows::windows(&r, boot.console.run_init(), real_init));
        self.reports.push(r);
        Ok(())
    }

    /// The report whose load wall time is closest to the median.
    fn median_report(&self) -> Option<&BootReport> {
        let m = self.wall.median()?;
        self.reports.iter().min_by(|a, b| {
            let da = (a.load_wall_s().unwrap_or(f64::INFINITY) - m).abs();
            let db = (b.load_wall_s().unwrap_or(f64::INFINITY) - m).abs();
            da.total_cmp(&db)
        })
    }

    fn jobs(&self) -> String {
        self.reports
            .iter()
            .find_map(|r| r.load.as_ref().map(|l| l.jobs.to_string()))
            .unwrap_or_else(|| "?".into())
    }

    /// Modules that failed or were blocked in any run.
    fn failed_modules(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .reports
            .iter()
            .filter_map(|r| r.load.as_ref())
            .flat_map(|l| l.modules.iter())
            .filter(|m| report::is_failure(m.state))
            .map(|m| format!("{} ({})", m.name, report::state_name(m.state)))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// One load-phase case (1 or 2).
#[derive(Debug, Clone)]
pub struct LoadCase {
    /// File-name stem of its scratch dir and SVG.
    pub key: String,
    pub title: String,
    pub manifest: serde_json::Value,
    /// Holds `lib/modules/RELEASE`.
    pub modules_root: PathBuf,
    /// Add the Σ delay_ms row (fixture farm only).
    pub physical_limit: bool,
    pub runs: usize,
    /// Also boot kmodinit with `kmodinit.jobs=N` (the pool width's effect).
    pub alt_jobs: Option<usize>,
    /// Also boot kmodinit with `module.async_probe=1` (informational: the
    /// kernel then no longer waits for a module's async probes before
    /// `init_module` returns, so "loaded" no longer means "probed").
    pub async_probe: bool,
}

/// Cases 1 and 2: the load phase of `manifest` (modules under
/// `modules_root`), kmodinit against sequential and per-chain busybox
/// modprobe. `physical_limit` adds the Σ delay_ms row (fixture farm only).
pub fn load_case(env: &Env, case: &LoadCase) -> Result<CaseOutput, String> {
    let LoadCase {
        key,
        title,
        manifest,
        modules_root,
        physical_limit,
        runs,
        alt_jobs,
        async_probe,
    } = case;
    let (key, title, physical_limit, runs, alt_jobs, async_probe) = (
        key.as_str(),
        title.as_str(),
        *physical_limit,
        *runs,
        *alt_jobs,
        *async_probe,
    );
    let work = env.work.join(key);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let spec = Spec::load(
        manifest,
        &modules_root.join("lib/modules").join(&env.release),
    )?;
    let mut out = CaseOutput::default();

    let mut km_manifest = manifest.clone();
    km_manifest["init"] = serde_json::json!({"path": "/bin/busybox", "args": ["sh", "/kmb-done"]});
    if let Some(o) = km_manifest.as_object_mut() {
        o.remove("root");
        o.insert("on_failure".into(), serde_json::json!("poweroff"));
        o.insert(
            "deadline_ms".into(),
            serde_json::json!(WHOLE_LOAD_DEADLINE_MS),
        );
    }
    let done = work.join("kmb-done");
    std::fs::write(&done, done_script()).map_err(|e| e.to_string())?;
    let km_path = work.join("kmodinit.img");
    let km_built = mkimage(
        env,
        &km_manifest,
        modules_root,
        &[
            (PathBuf::from(crate::stage::BUSYBOX), "/bin/busybox"),
            (done.clone(), "/kmb-done"),
        ],
        "none",
        &km_path,
    );

    // Equal work: one calibration boot of kmodinit tells which modules it
    // loads here; the baselines get exactly those.
    let mut calibration = KmSeries::default();
    if km_built.is_ok() {
        eprintln!("bench {key}: calibration boot");
        calibration.boot(env, &km_path, APPEND, &work, "calibration")?;
    }
    let loaded = calibration.reports.first().map(loaded_set);
    let chains = busybox_chains(&spec, loaded.as_ref());

    // Images.
    let mut bb = Image::busybox()?;
    bb.add_modules(modules_root, &env.release, &spec.module_files(), &work)?;
    bb.add_file("/etc/modprobe.d/bench.conf", 0o644, modprobe_options(&spec));
    let mut seq_img = bb.clone();
    seq_img.add_file("/init", 0o755, modprobe_script(&chains, false));
    let seq_path = work.join("busybox-seq.img");
    seq_img.write(&seq_path, "none")?;
    let mut par_img = bb;
    par_img.add_file("/init", 0o755, modprobe_script(&chains, true));
    let par_path = work.join("busybox-par.img");
    par_img.write(&par_path, "none")?;

    let (mut seq, mut par) = (Series::default(), Series::default());
    let mut km = KmSeries::default();
    // kmodinit at jobs=1, every run: its module times are the single-
    // insertion costs the limits are computed from, in the same run.
    let mut km_one = KmSeries::default();
    // A fixed pool of another width, when asked for: how the adaptive pool
    // compares with a hand-picked width.
    let mut km_alt = KmSeries::default();
    // Asynchronous probing, when asked for (not the default: see LoadCase).
    let mut km_async = KmSeries::default();
    let mut counts: [Vec<String>; 2] = Default::default();
    if let Err(e) = &km_built {
        km.wall.note(format!("kmodinit image not built: {e}"));
    }
    for run in 0..runs {
        eprintln!("bench {key}: run {}/{runs}", run + 1);
        if km_built.is_ok() {
            km.boot(env, &km_path, APPEND, &work, &format!("auto-{run}"))?;
            km_one.boot(
                env,
                &km_path,
                &format!("{APPEND} kmodinit.jobs=1"),
                &work,
                &format!("jobs1-{run}"),
            )?;
            if let Some(j) = alt_jobs {
                km_alt.boot(
                    env,
                    &km_path,
                    &format!("{APPEND} KMODINIT_POOL=fixed kmodinit.jobs={j}"),
                    &work,
                    &format!("fixed{j}-{run}"),
                )?;
            }
            if async_probe {
                km_async.boot(
                    env,
                    &km_path,
                    &format!("{APPEND} {ASYNC_PROBE}"),
                    &work,
                    &format!("async-{run}"),
                )?;
            }
        }
        for (i, (path, series)) in [(&seq_path, &mut seq), (&par_path, &mut par)]
            .into_iter()
            .enumerate()
        {
            let boot = run_vm(env, path, APPEND, &[], &work)?;
            let f = kmb_fields(boot.console.text());
            match uptime_diff(&f) {
                Some(d) => series.push(d),
                None => {
                    boot.record_failure(
                        series,
                        "no timing line",
                        &work.join(format!("busybox-{i}-failed-console.log")),
                    );
                }
            }
            let failed: Vec<&str> = boot
                .console
                .text()
                .lines()
                .filter_map(|l| l.split("KMB-FAIL ").nth(1))
                .map(str::trim)
                .collect();
            if !failed.is_empty() {
                series.note(format!("modprobe failed: {}", failed.join(", ")));
            }
            if let Some(n) = f.get("modules") {
                counts[i].push(n.clone());
            }
        }
    }
    let (mut cpu_limit, mut path_limit, mut limit) =
        (Series::default(), Series::default(), Series::default());
    for r in &km_one.reports {
        if let Some((c, p)) = limits(&spec, r, env.smp) {
            cpu_limit.push(c);
            path_limit.push(p);
            // The farm sleeps (its CPU limit is not a bound); the real set
            // computes.
            limit.push(if physical_limit { p } else { c });
        }
    }

    // Timeline of the kmodinit run closest to the median.
    let shown = km.median_report();
    if let Some(r) = shown {
        let bars = kmodinit::timeline::bars(r);
        let edges = spec.edges();
        let svg = kmodinit::timeline::render_svg(
            &format!(
                "kmodinit load phase: {title} ({} workers, -smp {})",
                r.load.as_ref().map_or(0, |l| l.jobs),
                env.smp
            ),
            &bars,
            &edges,
        );
        let p = env.results.join(format!("{key}.svg"));
        std::fs::write(&p, svg).map_err(|e| format!("{}: {e}", p.display()))?;
    }

    let km_med = km.wall.median();
    out.hwm_kib = km.hwm.clone();
    out.loader_hwm_kib = km.loader_hwm.clone();
    let km_count = crate::stats::median(
        &km.counts
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect::<Vec<f64>>(),
    );
    let md = &mut out.markdown;
    let _ = writeln!(md, "| variant | median (s) | runs min–max (s) | ratio to kmodinit | modules in /proc/modules | notes |");
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | --- |");
    let _ = writeln!(
        md,
        "| kmodinit, adaptive pool (the default; {} workers; report: load_end − load_start) | {} | {} | 1.00× | {} | {} |",
        km.jobs(),
        secs(km_med),
        km.wall.spread(),
        count(&km.counts),
        km.wall.notes.join("; ")
    );
    // One row per kmodinit variant besides the default, against it.
    let variant_row = |md: &mut String, label: &str, v: &KmSeries, notes: Vec<String>| {
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} |",
            secs(v.wall.median()),
            v.wall.spread(),
            ratio(v.wall.median(), km_med),
            count_vs(&v.counts, km_count),
            notes.join("; ")
        );
    };
    variant_row(
        md,
        "kmodinit, `kmodinit.jobs=1`",
        &km_one,
        km_one.wall.notes.clone(),
    );
    if let Some(j) = alt_jobs {
        variant_row(
            md,
            &format!("kmodinit, fixed pool of {j} (`KMODINIT_POOL=fixed kmodinit.jobs={j}`)"),
            &km_alt,
            km_alt.wall.notes.clone(),
        );
    }
    if async_probe {
        variant_row(
            md,
            &format!("kmodinit, `{ASYNC_PROBE}` {ASYNC_PROBE_CAVEAT}"),
            &km_async,
            async_notes(&km_async),
        );
    }
    for (name, series, c) in [
        ("busybox modprobe, sequential", &seq, &counts[0]),
        ("busybox modprobe, one job per chain", &par, &counts[1]),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            secs(series.median()),
            series.spread(),
            ratio(series.median(), km_med),
            count_vs(c, km_count),
            series.notes.join("; ")
        );
    }
    let _ = writeln!(
        md,
        "| critical path (kmodinit report: measured module times on the longest path) | {} | {} | {} | | |",
        secs(km.crit.median()),
        km.crit.spread(),
        ratio(km.crit.median(), km_med)
    );
    let _ = writeln!(
        md,
        "| CPU limit: Σ module times at jobs=1 ÷ {} CPUs | {} | {} | {} | | same runs |",
        env.smp,
        secs(cpu_limit.median()),
        cpu_limit.spread(),
        ratio(cpu_limit.median(), km_med)
    );
    let _ = writeln!(
        md,
        "| path limit: longest path of module times at jobs=1 (delay + single-insertion cost) | {} | {} | {} | | same runs |",
        secs(path_limit.median()),
        path_limit.spread(),
        ratio(path_limit.median(), km_med)
    );
    let target = if physical_limit { "path" } else { "CPU" };
    let _ = writeln!(
        md,
        "\nkmodinit / the {target} limit = **{}** (target ≤ 1.05×); \
         kmodinit / its own critical path = **{}**; kmodinit.jobs=1 / kmodinit = {}.",
        ratio(km_med, limit.median()),
        ratio(km_med, km.crit.median()),
        ratio(km_one.wall.median(), km_med)
    );
    if async_probe {
        let _ = writeln!(
            md,
            "\nInformational, `{ASYNC_PROBE}` {ASYNC_PROBE_CAVEAT}: its load / the CPU limit = **{}**, \
             / the default kmodinit = {}. With it, `do_init_module` no longer waits for the module's \
             asynchronous probes (`async_synchronize_full`), so the load phase ends before every device is probed; \
             the CPU limit is measured without it (kmodinit.jobs=1, the same runs).",
            ratio(km_async.wall.median(), cpu_limit.median()),
            ratio(km_async.wall.median(), km_med)
        );
    }
    if let Some(l) = &loaded {
        let _ = writeln!(
            md,
            "\nEqual work: the baselines were given the {} modules kmodinit loaded in a calibration boot (softdep providers named explicitly, in plan order); \
             a baseline whose count is below kmodinit's is marked ⚠.",
            l.len()
        );
    }
    let _ = writeln!(
        md,
        "\nPeak RSS (VmHWM) in kmodinit's default boots (target ≤ {PEAK_RSS_TARGET_KIB} KiB each): \
         PID 1 {}; loader child {}.",
        peak_rss(&km.hwm),
        peak_rss(&km.loader_hwm)
    );
    out.summary.push((
        format!("{title}: peak RSS, PID 1 / loader child (max over runs, KiB; target ≤ {PEAK_RSS_TARGET_KIB})"),
        format!(
            "{} / {}",
            km.hwm.iter().max().map_or("–".into(), u64::to_string),
            km.loader_hwm.iter().max().map_or("–".into(), u64::to_string)
        ),
    ));
    out.summary.push((
        format!("{title}: kmodinit / limit (target ≤ 1.05×)"),
        ratio(km_med, limit.median()),
    ));
    if let Some(j) = alt_jobs {
        out.summary.push((
            format!("{title}: fixed pool of {j} / limit"),
            ratio(km_alt.wall.median(), limit.median()),
        ));
    }
    if async_probe {
        out.summary.push((
            format!("{title}: kmodinit with {ASYNC_PROBE} / CPU limit (not the default: probes finish later)"),
            ratio(km_async.wall.median(), cpu_limit.median()),
        ));
    }
    if physical_limit {
        let (ms, path) = spec.longest_delay_path();
        let sleep = ms as f64 / 1000.0;
        let _ = writeln!(
            md,
            "\nΣ delay_ms alone on the longest path: {sleep:.3} s ({}); kmodinit / that = {}.",
            path.join(" → "),
            ratio(km_med, Some(sleep))
        );
        if let Some(load) = shown.and_then(|r| r.load.as_ref()) {
            let over: Vec<f64> = load
                .modules
                .iter()
                .filter_map(|m| Some((m.end? - m.start?) * 1000.0 - spec.delay_ms(&m.name) as f64))
                .collect();
            if let Some(o) = crate::stats::median(&over) {
                let _ = writeln!(
                    md,
                    "Per-module overhead in the timeline's run (measured time − its delay_ms, median): {o:.0} ms."
                );
            }
        }
    }
    if let Some(r) = shown {
        let origin = r
            .load
            .as_ref()
            .map_or(r.boottime_load_start, |l| l.boottime_load_start);
        let first = r
            .load
            .iter()
            .flat_map(|l| l.modules.iter())
            .filter_map(|m| m.start)
            .fold(f64::INFINITY, f64::min);
        if first.is_finite() && origin > 0.0 {
            let _ = writeln!(
                md,
                "\nIn the timeline's run the first insertion began {:.0} ms after the load phase's start stamp \
                 (set-up inside the measured phase), and /init reached the load phase {:.0} ms after its first line.",
                (first - origin) * 1000.0,
                (r.boottime_load_start - r.boottime_init_start) * 1000.0
            );
        }
    }
    let failed = km.failed_modules();
    if !failed.is_empty() {
        let _ = writeln!(
            md,
            "\nModules kmodinit reported failed or blocked (no such hardware in the VM, or a failed chain predecessor): {}.",
            failed.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\n{} modules planned ({} chains), {runs} runs; ratios are variant / kmodinit (> 1 means kmodinit is faster).",
        spec.inserts().count(),
        spec.plan.chains.len()
    );
    if shown.is_some() {
        let _ = writeln!(md, "\n![{title} timeline]({key}.svg)");
    }
    // The windows around the load, over every kmodinit boot that loads
    // the default way (the async_probe variant changes what a load is).
    let around: Vec<Windows> = [&km, &km_one, &km_alt]
        .iter()
        .flat_map(|s| s.windows.iter().cloned())
        .collect();
    let boots = match alt_jobs {
        Some(j) => format!("kmodinit's default, `kmodinit.jobs=1` and fixed pool of {j} boots"),
        None => "kmodinit's default and `kmodinit.jobs=1` boots".into(),
    };
    md.push_str(&windows::markdown(
        &around,
        &boots,
        "the init's `/proc/uptime`, `KMB exec_uptime`",
    ));
    out.summary.extend(windows::summary(title, &around));
    out.summary
        .push((format!("{title}: kmodinit load (median s)"), secs(km_med)));
    out.summary.push((
        format!("{title}: busybox sequential / kmodinit"),
        ratio(seq.median(), km_med),
    ));
    out.summary.push((
        format!("{title}: busybox per-chain / kmodinit"),
        ratio(par.median(), km_med),
    ));
    Ok(out)
}

/// The kernel parameter of case 2's informational variant.
const ASYNC_PROBE: &str = "module.async_probe=1";
const ASYNC_PROBE_CAVEAT: &str =
    "(changes semantics: probes finish after init_module returns; not the default)";

/// Notes of the async_probe variant, plus what the kernel said of the
/// parameter when it was not `Y` (a kernel without it boots the default).
fn async_notes(s: &KmSeries) -> Vec<String> {
    let mut notes = s.wall.notes.clone();
    let mut seen: Vec<&String> = s.async_probe.iter().filter(|a| *a != "Y").collect();
    seen.sort();
    seen.dedup();
    if !seen.is_empty() {
        notes.push(format!(
            "/sys/module/module/parameters/async_probe: {} (not Y: the parameter did not take)",
            seen.iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if s.async_probe.is_empty() && !s.reports.is_empty() {
        notes.push("async_probe not printed by the init".into());
    }
    notes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parallel_script_backgrounds_every_chain_and_waits() {
        let chains = vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["c".to_string()],
        ];
        let s = modprobe_script(&chains, true);
        assert_eq!(s.matches(") &").count(), 2);
        assert!(s.contains("for m in a b;"));
        assert!(s.contains("\nwait\n"));
        let s = modprobe_script(&chains, false);
        assert!(!s.contains('&'));
        assert!(s.find("read t0").unwrap() < s.find("for m in a b").unwrap());
        assert!(s.find("for m in c").unwrap() < s.find("read t1").unwrap());
    }

    #[test]
    fn busybox_chains_get_softdeps_first() {
        // crc16 is builtin (nothing to modprobe); the softdep alias has two
        // matches and busybox gets both, as kmodinit's plan (and modprobe)
        // loads every match.
        let index = modules_manifest::DepIndex::parse(
            "ext4.ko: crc16.ko jbd2.ko\njbd2.ko:\ncrc32c_generic.ko:\ncrc32c-intel.ko:\nvfat.ko:\n",
            "crc16.ko\n",
            "softdep ext4 pre: crypto-crc32c crc16\n",
            "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n",
        )
        .unwrap();
        let manifest = serde_json::json!({"version": 1, "chains": [
            {"name": "fs", "modules": ["ext4", "vfat"]}, {"name": "other", "modules": ["jbd2"]}]});
        let spec = Spec::new(&manifest, index).unwrap();
        assert_eq!(
            busybox_chains(&spec, None),
            vec![
                vec!["crc32c_generic", "crc32c_intel", "ext4", "vfat"],
                vec!["jbd2"]
            ]
        );
        // Equal work: only what kmodinit loaded; a chain left empty goes.
        let loaded: BTreeSet<String> = ["crc32c_generic", "ext4", "jbd2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            busybox_chains(&spec, Some(&loaded)),
            vec![vec!["crc32c_generic", "ext4"], vec!["jbd2"]]
        );
        let only: BTreeSet<String> = ["vfat".to_string()].into_iter().collect();
        assert_eq!(busybox_chains(&spec, Some(&only)), vec![vec!["vfat"]]);
    }

    #[test]
    fn baselines_that_load_fewer_are_marked() {
        assert_eq!(
            count_vs(&["170".into()], Some(172.0)),
            "170 ⚠ fewer than kmodinit's 172"
        );
        assert_eq!(count_vs(&["172".into()], Some(172.0)), "172");
        assert_eq!(count_vs(&[], Some(172.0)), "–");
    }

    #[test]
    fn the_done_script_prints_its_start_then_run_init_then_the_report() {
        let s = done_script();
        let start = s.find("KMB exec_uptime=$t").unwrap();
        let run_init = s.find("echo \"KMI-RUNINIT $($B dmesg").unwrap();
        let report = s.find("echo KMI-REPORT-BEGIN").unwrap();
        assert!(start < run_init && run_init < report, "{s}");
        assert!(s.contains("async_probe=$($B cat /sys/module/module/parameters/async_probe"));
        assert!(s.ends_with("$B poweroff -f\n"));
        // The fields the bench reads back.
        let f = kmb_fields("KMB exec_uptime=3.10 modules=33 async_probe=Y\n");
        assert_eq!(f["async_probe"], "Y");
    }

    #[test]
    fn async_probe_not_taken_is_noted() {
        let mut s = KmSeries::default();
        s.reports.push(BootReport::default());
        assert_eq!(async_notes(&s), vec!["async_probe not printed by the init"]);
        s.async_probe = vec!["Y".into(), "N".into(), "none".into(), "N".into()];
        let notes = async_notes(&s);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains(": N, none (not Y"), "{notes:?}");
        s.async_probe = vec!["Y".into()];
        assert!(async_notes(&s).is_empty());
    }

    #[test]
    fn uptime_diff_needs_both_stamps() {
        let mut f = std::collections::BTreeMap::new();
        f.insert("load_start".to_string(), "2.50".to_string());
        assert_eq!(uptime_diff(&f), None);
        f.insert("load_end".to_string(), "4.00".to_string());
        assert_eq!(uptime_diff(&f), Some(1.5));
    }
}

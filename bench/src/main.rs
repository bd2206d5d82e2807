//! `make bench`: boots kmodinit and baseline initramfs images under QEMU
//! (TCG, `-smp 2`), several runs each, and writes medians and ratios to
//! `bench/results/latest.md` (with a summary table at its top), plus boot
//! timeline SVGs. It writes the README's benchmark section only when asked
//! (`--readme README.md`): the README is the lead's to update.
//!
//! Usage:
//!   kmodinit-bench [--runs N] [--cases 1,2,3,4,5,6,7] [--results DIR] [--readme FILE]
//!   kmodinit-bench svg REPORT.json OUT.svg [TITLE]   (kmodinit::timeline, the
//!                           renderer of `kmodinit report --svg`)
//!   kmodinit-bench sweep   (pool width sweep; BENCH_CASES, BENCH_RUNS,
//!                           BENCH_WIDTHS=1,2,4,8, BENCH_SERVER_WIDTHS=1,2,4,8:
//!                           fixed pool widths, 0 = the fixed pool's automatic
//!                           width; the adaptive pool is always swept too;
//!                           writes bench/results/sweep.md)

mod cases;
mod farm;
mod report;
mod spec;
mod stage;
mod stats;
mod sweep;
mod vm;
mod windows;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use cases::{CaseOutput, Env};
use kmodinit::timeline;

const README_START: &str = "<!-- bench:start -->";
const README_END: &str = "<!-- bench:end -->";
/// Pool width of case 1's extra kmodinit variant: more than the farm's six
/// chains can use at once, so the pool is never what waits.
const FARM_WIDE_JOBS: usize = 8;
/// Pool width of case 2's extra kmodinit variant: the guest's CPU count, for
/// a load that is CPU-bound under emulation.
const SERVER_NARROW_JOBS: usize = 2;
/// Case 2 boots take minutes under TCG: fewer runs by default keep a whole
/// `make bench` near 25 minutes. `BENCH_RUNS` (or `--runs`) applies to all.
const SERVER_DEFAULT_RUNS: usize = 3;

#[derive(Debug)]
struct Options {
    runs: usize,
    /// Runs of case 2.
    server_runs: usize,
    cases: Vec<u32>,
    results: PathBuf,
    /// Also write the README's benchmark section (off by default).
    readme: Option<PathBuf>,
    work: PathBuf,
    release: String,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let env_runs = std::env::var("BENCH_RUNS").ok();
    let mut o = Options {
        runs: match &env_runs {
            Some(r) => r
                .parse()
                .map_err(|_| format!("BENCH_RUNS={r}: not a number"))?,
            None => 5,
        },
        server_runs: 0,
        cases: std::env::var("BENCH_CASES")
            .unwrap_or_else(|_| "1,2,3,4,5,6,7".into())
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .collect(),
        results: PathBuf::from("bench/results"),
        readme: None,
        work: PathBuf::from("target/bench"),
        release: std::env::var("KVER").unwrap_or_default(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--runs" => o.runs = val()?.parse().map_err(|_| "--runs: not a number")?,
            "--cases" => {
                o.cases = val()?
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse()
                            .map_err(|_| format!("--cases: bad case {c}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--results" => o.results = val()?.into(),
            "--readme" => o.readme = Some(val()?.into()),
            "--work" => o.work = val()?.into(),
            "--kernel-release" => o.release = val()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let explicit = env_runs.is_some() || args.iter().any(|a| a == "--runs");
    o.server_runs = if explicit {
        o.runs
    } else {
        o.runs.min(SERVER_DEFAULT_RUNS)
    };
    if o.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    if o.release.is_empty() {
        o.release = newest_release()?;
    }
    Ok(o)
}

/// The kernel the QEMU harness boots (`HostKernel::find`: the newest
/// `/boot/vmlinuz-*` with a module tree), which the bench also needs.
fn newest_release() -> Result<String, String> {
    kmodinit_qemu::HostKernel::find()
        .map(|k| k.release)
        .map_err(|e| e.to_string())
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|e| format!("({cmd}: {e})"))
}

fn machine_facts(release: &str, smp: u32) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "- date (UTC): {}\n- host CPU: {cpu}, {cpus} CPUs online; load average at start {}\n- host kernel: {}\n- QEMU: {} (`-accel tcg -smp {smp} -m 1024`, q35)\n- guest kernel: {release}\n",
        command_line("date", &["-u", "+%Y-%m-%d %H:%M"]),
        load_average(),
        command_line("uname", &["-r"]),
        command_line("qemu-system-x86_64", &["--version"]),
    )
}

/// The 1/5/15-minute load averages: the machine is shared, and a loaded
/// host slows every TCG guest.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The server manifest from `core` (or the environment's choice).
fn server_manifest() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BENCH_SERVER_MANIFEST") {
        return Some(p.into());
    }
    ["modules-manifest/examples/server.json"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn read_json(p: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", p.display()))
}

fn case_section(md: &mut String, title: &str, r: Result<CaseOutput, String>) -> Option<CaseOutput> {
    let _ = writeln!(md, "\n## {title}\n");
    match r {
        Ok(o) => {
            md.push_str(&o.markdown);
            Some(o)
        }
        Err(e) => {
            let _ = writeln!(md, "Not run: {e}");
            eprintln!("bench: {title}: {e}");
            None
        }
    }
}

fn init_sizes(init: &Path, work: &Path) -> Result<(u64, u64), String> {
    let size = std::fs::metadata(init)
        .map_err(|e| format!("{}: {e} (run make init)", init.display()))?
        .len();
    let stripped = work.join("init.stripped");
    let o = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(init)
        .output()
        .map_err(|e| format!("strip: {e}"))?;
    if !o.status.success() {
        return Err(format!("strip: {}", String::from_utf8_lossy(&o.stderr)));
    }
    let s = std::fs::metadata(&stripped)
        .map_err(|e| e.to_string())?
        .len();
    Ok((size, s))
}

fn update_readme(readme: &Path, section: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(readme).map_err(|e| format!("{}: {e}", readme.display()))?;
    let block = format!("{README_START}\n{section}{README_END}");
    let new = match (text.find(README_START), text.find(README_END)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{block}{}", &text[..a], &text[b + README_END.len()..])
        }
        _ => format!("{}\n## Benchmarks\n\n{block}\n", text.trim_end()),
    };
    std::fs::write(readme, new).map_err(|e| format!("{}: {e}", readme.display()))
}

/// Creates the results and work directories and the environment every
/// case (and the width sweep) runs in.
fn prepare_env(o: &Options) -> Result<Env, String> {
    std::fs::create_dir_all(&o.results).map_err(|e| format!("{}: {e}", o.results.display()))?;
    std::fs::create_dir_all(&o.work).map_err(|e| format!("{}: {e}", o.work.display()))?;
    Ok(Env {
        release: o.release.clone(),
        kernel: PathBuf::from(format!("/boot/vmlinuz-{}", o.release)),
        work: std::fs::canonicalize(&o.work).map_err(|e| e.to_string())?,
        results: o.results.clone(),
        runs: o.runs,
        init_bin: std::fs::canonicalize("build/init").unwrap_or_else(|_| "build/init".into()),
        mkimage: std::fs::canonicalize("target/release/kmodinit-mkimage")
            .unwrap_or_else(|_| "target/release/kmodinit-mkimage".into()),
        smp: 2,
        arch: kmodinit_qemu::Arch::X86_64,
    })
}

fn run(o: &Options) -> Result<(), String> {
    let started = Instant::now();
    let env = prepare_env(o)?;
    let mut md = format!(
        "# kmodinit benchmarks\n\nWritten by `make bench` (`kmodinit-bench`): every variant booted {} times under QEMU \
         (case 2: {}), runs interleaved; medians, with ratios computed from medians of the same invocation. \
         Load phases are the loader's own stamps (kmodinit: report.json boottime_load_end − boottime_load_start; \
         busybox: /proc/uptime before and after, 10 ms resolution).\n\n{}",
        o.runs,
        o.server_runs,
        machine_facts(&o.release, env.smp)
    );
    let mut summary: Vec<(String, String)> = Vec::new();
    let mut hwm: Vec<u64> = Vec::new();
    let mut loader_hwm: Vec<u64> = Vec::new();

    if o.cases.contains(&1) {
        let r = (|| {
            let (manifest, root) = match (
                std::env::var("BENCH_FARM_MANIFEST"),
                std::env::var("BENCH_FARM_ROOT"),
            ) {
                (Ok(m), Ok(r)) => (read_json(Path::new(&m))?, PathBuf::from(r)),
                _ => (farm::manifest(), farm::build(Path::new("build/fixtures"))?),
            };
            cases::load_case(
                &env,
                &cases::LoadCase {
                    key: "farm".into(),
                    title: "fixture farm".into(),
                    manifest,
                    modules_root: root,
                    physical_limit: true,
                    runs: o.runs,
                    alt_jobs: Some(FARM_WIDE_JOBS),
                    async_probe: false,
                },
            )
        })();
        if let Some(c) = case_section(&mut md, "1. Fixture farm: load phase", r) {
            summary.extend(c.summary);
        }
    }
    if o.cases.contains(&2) {
        let r = match server_manifest() {
            Some(p) => read_json(&p).and_then(|m| {
                cases::load_case(
                    &env,
                    &cases::LoadCase {
                        key: "server".into(),
                        title: "~100 Debian modules".into(),
                        manifest: m,
                        modules_root: PathBuf::from("/"),
                        physical_limit: false,
                        runs: o.server_runs,
                        alt_jobs: Some(SERVER_NARROW_JOBS),
                        async_probe: true,
                    },
                )
            }),
            None => Err("no server manifest (modules-manifest/examples/server.json or BENCH_SERVER_MANIFEST)".into()),
        };
        if let Some(c) = case_section(&mut md, "2. ~100 real Debian modules: load phase", r) {
            let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
            let _ = writeln!(
                md,
                "\nCPU-bound under TCG: module init here is mostly signature checks, relocation and \
                 allocation, emulated on {} guest vCPUs (host: {cpus} CPUs shared with other jobs), \
                 so parallel loading can win at most ~{}× over sequential.",
                env.smp, env.smp
            );
            summary.extend(c.summary);
            hwm.extend(c.hwm_kib);
            loader_hwm.extend(c.loader_hwm_kib);
        }
    }
    if o.cases.contains(&3) {
        if let Some(c) = case_section(
            &mut md,
            "3. Boot to the real init (virtio ext4 root)",
            cases::boot_case(&env),
        ) {
            summary.extend(c.summary);
        }
    }
    if o.cases.contains(&5) {
        if let Some(c) = case_section(
            &mut md,
            "5. Boot to the real init: coldplug vs explicit chains (virtio ext4 root)",
            cases::coldplug_case(&env),
        ) {
            summary.extend(c.summary);
        }
    }
    if o.cases.contains(&6) {
        if let Some(c) = case_section(
            &mut md,
            "6. arm64: boot to the real init (virt board, virtio ext4 root)",
            cases::arm64_case(&env),
        ) {
            summary.extend(c.summary);
        }
    }
    if o.cases.contains(&7) {
        if let Some(c) = case_section(
            &mut md,
            "7. The compiled index: start window against the previous /init, sizes",
            cases::compiled_case(&env),
        ) {
            summary.extend(c.summary);
        }
    }
    if o.cases.contains(&4) {
        let _ = writeln!(md, "\n## 4. The /init binary\n");
        match init_sizes(&env.init_bin, &env.work) {
            Ok((size, stripped)) => {
                let _ = writeln!(md, "- `build/init`: {size} bytes as built, {stripped} bytes after `strip` ({:.0} KiB)", stripped as f64 / 1024.0);
                summary.push(("/init stripped size (bytes)".into(), stripped.to_string()));
            }
            Err(e) => {
                let _ = writeln!(md, "- `build/init`: {e}");
            }
        }
        let _ = writeln!(
            md,
            "- peak RSS (VmHWM) during case 2 (target ≤ {} KiB each): PID 1 {}; loader child {}",
            cases::PEAK_RSS_TARGET_KIB,
            cases::peak_rss(&hwm),
            cases::peak_rss(&loader_hwm)
        );
        if let (Some(p), Some(l)) = (hwm.iter().max(), loader_hwm.iter().max()) {
            summary.push((
                "/init peak RSS in case 2, PID 1 / loader child (max over runs, KiB)".into(),
                format!("{p} / {l}"),
            ));
        }
    }
    let _ = writeln!(
        md,
        "\n_Whole run: {:.0} s; load average at the end {}._",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    let mut table = String::from("\n## Summary\n\n| measure | value |\n| --- | ---: |\n");
    for (k, v) in &summary {
        let _ = writeln!(table, "| {k} | {v} |");
    }
    // The summary goes after the machine facts, before case 1.
    let at = md.find("\n## ").unwrap_or(md.len());
    md.insert_str(at, &table);
    let latest = o.results.join("latest.md");
    std::fs::write(&latest, &md).map_err(|e| format!("{}: {e}", latest.display()))?;
    let Some(readme) = &o.readme else {
        eprintln!(
            "bench: wrote {} in {:.0} s",
            latest.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    };

    let mut section = format!(
        "Last `make bench`: {} (QEMU TCG, `-smp {}`, {} runs each, case 2: {}; medians). Full table: [bench/results/latest.md](bench/results/latest.md).\n\n| measure | value |\n| --- | ---: |\n",
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        env.smp,
        o.runs,
        o.server_runs
    );
    for (k, v) in &summary {
        let _ = writeln!(section, "| {k} | {v} |");
    }
    for (key, what) in [("farm", "Fixture farm"), ("server", "~100 Debian modules")] {
        if o.results.join(format!("{key}.svg")).exists() {
            let _ = writeln!(section, "\n{what} load timeline (one row per worker, one colour per chain, grey: dependencies pulled in, red lines: dependency → dependent):\n\n![{what} timeline](bench/results/{key}.svg)");
        }
    }
    update_readme(readme, &section)?;
    eprintln!(
        "bench: wrote {} and {} in {:.0} s",
        latest.display(),
        readme.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn widths_from_env(var: &str, default: &[usize]) -> Result<Vec<usize>, String> {
    match std::env::var(var) {
        Ok(v) => v
            .split(',')
            .map(|w| {
                w.trim()
                    .parse()
                    .map_err(|_| format!("{var}={v}: {w} is not a number"))
            })
            .collect(),
        Err(_) => Ok(default.to_vec()),
    }
}

/// `kmodinit-bench sweep`: the pool-width sweep (see `sweep.rs`).
fn run_sweep(o: &Options) -> Result<(), String> {
    let started = Instant::now();
    let env = prepare_env(o)?;
    let widths = widths_from_env("BENCH_WIDTHS", &[1, 2, 4, 8])?;
    let server_widths = widths_from_env("BENCH_SERVER_WIDTHS", &[1, 2, 4, 8])?;
    let server = match server_manifest() {
        Some(p) => Some(read_json(&p)?),
        None => None,
    };
    let body = sweep::sweep(
        &env,
        &o.cases,
        &widths,
        &server_widths,
        o.server_runs,
        server,
    )?;
    let md = format!(
        "# kmodinit pool-width sweep\n\nWritten by `kmodinit-bench sweep`: one kmodinit image per case booted on the \
         fixed pool (`KMODINIT_POOL=fixed kmodinit.jobs=N`; fixed auto: min(graph width, 4 × CPUs, 32)), on the \
         adaptive pool (the default, no option) and on the adaptive pool with the cost-aware order \
         (`KMODINIT_ORDER=cost`: file sizes as costs), variants interleaved within each run and their order rotated per run; medians.\n\n{}{body}\n_Whole run: {:.0} s; load average at the end {}._\n",
        machine_facts(&o.release, env.smp),
        started.elapsed().as_secs_f64(),
        load_average()
    );
    let out = o.results.join("sweep.md");
    std::fs::write(&out, md).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("svg") {
        match args.as_slice() {
            [_, report, out, rest @ ..] => std::fs::read_to_string(report)
                .map_err(|e| format!("{report}: {e}"))
                .and_then(|t| report::from_json(&t))
                .and_then(|r| {
                    let title = rest
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "kmodinit load phase".into());
                    std::fs::write(out, timeline::render_svg(&title, &timeline::bars(&r), &[]))
                        .map_err(|e| format!("{out}: {e}"))
                }),
            _ => Err("usage: kmodinit-bench svg REPORT.json OUT.svg [TITLE]".into()),
        }
    } else if args.first().map(String::as_str) == Some("sweep") {
        parse_args(&args[1..]).and_then(|o| run_sweep(&o))
    } else {
        parse_args(&args).and_then(|o| run(&o))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kmodinit-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn readme_section_is_replaced_between_markers_or_appended() {
        let dir = std::env::temp_dir().join(format!("kmb-readme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("README.md");
        std::fs::write(
            &p,
            format!("# x\n{README_START}\nold\n{README_END}\ntail\n"),
        )
        .unwrap();
        update_readme(&p, "new\n").unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert_eq!(t, format!("# x\n{README_START}\nnew\n{README_END}\ntail\n"));
        std::fs::write(&p, "# y\n").unwrap();
        update_readme(&p, "first\n").unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(t.contains(&format!(
            "## Benchmarks\n\n{README_START}\nfirst\n{README_END}"
        )));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

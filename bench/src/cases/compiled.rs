//! Case 7: what the compiled index buys. The start window (`/init`'s first
//! instruction → its first insertion, both from the report: its `start`
//! step and the earliest module start) and load end → exec of the real
//! init, for this `/init` and the previous one (`build/baseline/init`,
//! `make baseline-init`: the `/init` that parsed the depmod text and planned
//! after PID 1's go), booted from images that differ only in `/init` (built
//! with `--depmod-text`, so the previous one finds its files), runs
//! interleaved; peak RSS of PID 1 and the loader child in every run; the
//! sizes of `build/init`, `build/init-tiny` and of the demo image
//! (`modules-manifest/examples/demo.json`, xz) with each.

use super::*;

/// Targets of the compiled-index design.
pub const WINDOW_TARGET_MS: f64 = 25.0;
pub const WINDOW_RATIO_TARGET: f64 = 0.4;
pub const EXEC_TARGET_MS: f64 = 30.0;
pub const INIT_TARGET: u64 = 921_600;
pub const TINY_TARGET: u64 = 409_600;
pub const DEMO_TARGET: u64 = 850_000;
pub const DEMO_TINY_TARGET: u64 = 650_000;
pub const RSS_TARGET_KIB: u64 = 2048;

/// Where `make baseline-init` puts the previous `/init`.
pub const BASELINE_INIT: &str = "build/baseline/init";

/// `/init`'s first instruction → its first insertion (ms), from a report.
fn start_window_ms(r: &BootReport) -> Option<f64> {
    let start = r
        .steps
        .iter()
        .find(|s| s.process == "init" && s.step == "start")
        .map_or(r.boottime_init_start, |s| s.t);
    window_of(start, r.load.as_ref()?.modules.iter().map(|m| m.start))
}

/// From `start` to the earliest of the module `starts` (s), in ms.
fn window_of(start: f64, starts: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let first = starts.flatten().min_by(f64::total_cmp)?;
    Some((first - start) * 1000.0)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

/// Case 7.
pub fn compiled_case(env: &Env) -> Result<CaseOutput, String> {
    let work = env.work.join("compiled");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let baseline = std::fs::canonicalize(BASELINE_INIT)
        .map_err(|e| format!("{BASELINE_INIT}: {e} (run make baseline-init)"))?;
    let tiny = std::fs::canonicalize("build/init-tiny")
        .map_err(|e| format!("build/init-tiny: {e} (run make init-tiny)"))?;
    let disk = root_disk(&work)?;
    let manifest = root_manifest();
    let mut out = CaseOutput::default();

    // The same image but for /init.
    let mut images = Vec::new();
    for (name, init) in [("this /init", &env.init_bin), ("previous /init", &baseline)] {
        let e = Env {
            init_bin: init.clone(),
            ..env.clone()
        };
        let path = work.join(format!("{}.img", name.replace([' ', '/'], "")));
        mkimage_with(
            &e,
            &manifest,
            Path::new("/"),
            &[],
            "zstd",
            &path,
            &["--depmod-text"],
        )?;
        images.push((name, path));
    }
    let mut window: Vec<Series> = vec![Series::default(); images.len()];
    let mut exec: Vec<Series> = vec![Series::default(); images.len()];
    let mut pid1_rss: Vec<Vec<u64>> = vec![Vec::new(); images.len()];
    let mut loader_rss: Vec<Vec<u64>> = vec![Vec::new(); images.len()];
    for run in 0..env.runs {
        eprintln!("bench compiled: run {}/{}", run + 1, env.runs);
        for (i, (name, img)) in images.iter().enumerate() {
            let boot = run_vm(env, img, APPEND, std::slice::from_ref(&disk), &work)?;
            let report = boot
                .console
                .report()
                .ok()
                .and_then(|v| report::from_value(v).ok());
            let Some(r) = report.filter(|_| boot.console.real_init().is_some()) else {
                boot.record_failure(
                    &mut window[i],
                    "no report or real init never ran",
                    &work.join(format!("failed-{i}-console.log")),
                );
                eprintln!("bench compiled: {name}: boot failed");
                continue;
            };
            // Each boot's console stays for a look at its steps.
            let _ = std::fs::copy(
                work.join("console.log"),
                work.join(format!("console-{i}-{run}.log")),
            );
            if let Some(w) = start_window_ms(&r) {
                window[i].push(w);
            }
            if let Some(w) = windows::windows(&r, None, None).load_end_to_exec {
                exec[i].push(w * 1000.0);
            }
            pid1_rss[i].extend(r.vm_hwm_kib);
            loader_rss[i].extend(r.loader.as_ref().and_then(|l| l.vm_hwm_kib));
        }
    }

    let md = &mut out.markdown;
    let _ = writeln!(md, "| /init | first instruction → first insertion (median ms) | each run (ms) | load end → exec (median ms) | peak RSS PID 1 / loader, max over runs (KiB) |");
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
    for (i, (name, _)) in images.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} / {} |",
            ms(window[i].median()),
            window[i]
                .values
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            ms(exec[i].median()),
            pid1_rss[i].iter().max().map_or("–".into(), u64::to_string),
            loader_rss[i]
                .iter()
                .max()
                .map_or("–".into(), u64::to_string),
        );
    }
    let (new, old) = (window[0].median(), window[1].median());
    let ratio_w = match (new, old) {
        (Some(n), Some(o)) if o > 0.0 => Some(n / o),
        _ => None,
    };
    out.summary.push((
        format!(
            "/init first instruction → first insertion, this / previous /init, same image (median ms; target ≤ {WINDOW_TARGET_MS} and ≤ {WINDOW_RATIO_TARGET}×)"
        ),
        format!(
            "{} / {} ({}×; {}, {})",
            ms(new),
            ms(old),
            ratio_w.map_or("–".into(), |r| format!("{r:.2}")),
            met(new.is_some_and(|n| n <= WINDOW_TARGET_MS)),
            met(ratio_w.is_some_and(|r| r <= WINDOW_RATIO_TARGET)),
        ),
    ));
    out.summary.push((
        format!(
            "load end → exec of the real init, this /init (median ms; target ≤ {EXEC_TARGET_MS})"
        ),
        format!(
            "{} ({})",
            ms(exec[0].median()),
            met(exec[0].median().is_some_and(|e| e <= EXEC_TARGET_MS))
        ),
    ));
    let max1 = pid1_rss[0].iter().max().copied();
    let max2 = loader_rss[0].iter().max().copied();
    out.summary.push((
        format!("peak RSS of this /init's boot, PID 1 / loader child, max over runs (KiB; target ≤ {RSS_TARGET_KIB} each)"),
        format!(
            "{} / {} ({})",
            max1.map_or("–".into(), |v| v.to_string()),
            max2.map_or("–".into(), |v| v.to_string()),
            met(max1.is_some_and(|v| v <= RSS_TARGET_KIB) && max2.is_some_and(|v| v <= RSS_TARGET_KIB))
        ),
    ));

    // Sizes: the binaries, and the demo image (xz) with each.
    let demo: serde_json::Value = serde_json::from_slice(
        &std::fs::read("modules-manifest/examples/demo.json").map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let _ = writeln!(
        md,
        "\n| build | /init (bytes, stripped) | target | demo image, xz (bytes) | target |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
    for (name, init, target, demo_target) in [
        ("make init", &env.init_bin, INIT_TARGET, DEMO_TARGET),
        ("make init-tiny", &tiny, TINY_TARGET, DEMO_TINY_TARGET),
    ] {
        let size = std::fs::metadata(init).map_err(|e| e.to_string())?.len();
        let e = Env {
            init_bin: init.clone(),
            ..env.clone()
        };
        let img = work.join(format!("demo-{}.img", name.replace(' ', "-")));
        let demo_size = mkimage(&e, &demo, Path::new("/"), &[], "xz", &img)?;
        let _ = writeln!(
            md,
            "| `{name}` | {size} | {target} | {demo_size} | {demo_target} |"
        );
        out.summary.push((
            format!("`{name}` /init / demo image xz (bytes; targets {target} / {demo_target})"),
            format!(
                "{size} / {demo_size} ({}, {})",
                met(size <= target),
                met(demo_size <= demo_target)
            ),
        ));
    }
    let _ = writeln!(
        md,
        "\nBoth boot images hold the depmod text and the compiled index (`--depmod-text`); each /init reads its own. The window ends at the earliest module start of the report (the first `finit_module`)."
    );
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_window_runs_from_the_start_to_the_first_module_start() {
        let w = window_of(1.0, [Some(1.030), None, Some(1.025)].into_iter()).unwrap();
        assert!((w - 25.0).abs() < 1e-6, "{w}");
        assert_eq!(window_of(1.0, [None, None].into_iter()), None);
    }
}

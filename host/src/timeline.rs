//! The load phase of a report.json drawn two ways: a text timeline for a
//! terminal (`kmodinit report`, `make demo`) and a self-contained SVG boot
//! chart (`kmodinit report --svg`, `make bench`). One renderer for the
//! product, the demo and the benchmark, reading the report through
//! [`kmodinit_report::Report`], so none of them keeps a second parser.
//!
//! The SVG: one row per loader worker, one bar per module labelled with its
//! name, one colour per chain (grey-blue: dependencies pulled in), a
//! millisecond axis, and thin red lines from each dependency's bar end to
//! its dependent's bar start. Plain text with no dependencies: it diffs and
//! renders anywhere (GitHub, a browser, `rsvg-convert`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kmodinit_report::{ModuleState, Report};

/// Width of the text timeline's bars, in characters.
const CHART_WIDTH: usize = 48;

/// Left margin for row titles, in px.
const LEFT_PX: f64 = 90.0;
const RIGHT_PX: f64 = 30.0;
/// Width of the time axis area, in px.
const PLOT_PX: f64 = 1100.0;
const TOP_PX: f64 = 54.0;
const BAR_PX: f64 = 16.0;
/// Height of one label lane under a row's bars, in px.
const LANE_PX: f64 = 11.0;
const ROW_GAP_PX: f64 = 8.0;
/// Approximate advance of one 9 px sans-serif character, in px.
const CHAR_PX: f64 = 5.2;

/// One module's bar: `row` is the worker (or chain) it ran on.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub name: String,
    pub row: String,
    /// Bars of one group (the module's first chain) share a colour.
    pub group: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// The time every figure is measured from: the load phase's start (boot
/// time, s), from the load report or else the boot-level stamp.
fn origin(report: &Report) -> f64 {
    match &report.load {
        Some(load) if load.boottime_load_start > 0.0 => load.boottime_load_start,
        _ => report.boottime_load_start,
    }
}

/// Bars for every module of the report that really ran (has start, end and a
/// worker), with times relative to the load phase's start.
pub fn bars(report: &Report) -> Vec<Bar> {
    let Some(load) = &report.load else {
        return Vec::new();
    };
    let origin = origin(report);
    load.modules
        .iter()
        .filter_map(|m| {
            let (start, end) = (m.start?, m.end?);
            let row = match m.worker {
                Some(w) => format!("worker {w}"),
                None => m.chains.first()?.clone(),
            };
            Some(Bar {
                name: m.name.to_string(),
                row,
                group: m.chains.first().cloned().unwrap_or_default(),
                start_ms: (start - origin) * 1000.0,
                end_ms: (end - origin) * 1000.0,
            })
        })
        .collect()
}

/// The dependency edges a report itself knows: consecutive modules of its
/// critical path (each needs the one before it). The benchmark, which has
/// the plan, passes all of the plan's edges to [`render_svg`] instead.
pub fn critical_path_edges(report: &Report) -> Vec<(String, String)> {
    report.load.as_ref().map_or_else(Vec::new, |l| {
        l.critical_path
            .windows(2)
            .map(|w| (w[0].to_string(), w[1].to_string()))
            .collect()
    })
}

/// The text timeline: one line per plan node (start and end in ms from the
/// load start, duration, worker, state, a bar over the load window), then
/// the load's wall time and critical path, modules still pending, and the
/// report's errors (each) and notes (counted).
pub fn render_text(report: &Report) -> String {
    let mut s = String::new();
    let Some(load) = &report.load else {
        let _ = writeln!(s, "no load phase in this report (no manifest was read)");
        summary(&mut s, report);
        return s;
    };
    let t0 = origin(report);
    let mut rows: Vec<_> = load.modules.iter().collect();
    // Stable: modules that made no kernel call stay in plan order, last.
    rows.sort_by(|a, b| {
        a.start
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.start.unwrap_or(f64::INFINITY))
    });
    let latest_end = rows.iter().filter_map(|m| m.end).fold(t0, f64::max);
    let span = (load.boottime_load_end.max(latest_end) - t0).max(1e-6);
    let _ = writeln!(
        s,
        "module timeline (load phase {:.1} ms, {} worker(s); times in ms from load start)",
        load.wall_s * 1000.0,
        load.jobs
    );
    let w = rows
        .iter()
        .map(|m| m.name.as_str().len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        s,
        "{:<w$} {:>8} {:>8} {:>7} {:>6}  {:<8} |{}|",
        "module",
        "start",
        "end",
        "ms",
        "worker",
        "state",
        "-".repeat(CHART_WIDTH)
    );
    let ms =
        |t: Option<f64>| t.map_or_else(|| "-".to_string(), |t| format!("{:.1}", (t - t0) * 1000.0));
    for m in rows {
        let worker = m.worker.map_or_else(|| "-".to_string(), |w| w.to_string());
        let duration = match (m.start, m.end) {
            (Some(_), Some(_)) => format!("{:.1}", m.duration() * 1000.0),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "{:<w$} {:>8} {:>8} {:>7} {worker:>6}  {:<8} |{}|",
            m.name.as_str(),
            ms(m.start),
            ms(m.end),
            duration,
            m.state.name(),
            text_bar(m.start, m.end, t0, span, latest_end)
        );
    }
    let cp: Vec<&str> = load.critical_path.iter().map(|n| n.as_str()).collect();
    let _ = writeln!(
        s,
        "load wall {:.1} ms, critical path {:.1} ms{}",
        load.wall_s * 1000.0,
        load.critical_path_s * 1000.0,
        if cp.is_empty() {
            String::new()
        } else {
            format!(" ({})", cp.join(" → "))
        }
    );
    let pending: Vec<&str> = load
        .modules
        .iter()
        .filter(|m| m.state == ModuleState::Pending)
        .map(|m| m.name.as_str())
        .collect();
    if !pending.is_empty() {
        let _ = writeln!(
            s,
            "pending at the handover, not settled in this file: {}",
            pending.join(", ")
        );
    } else if let Some(l) = report.loader.as_ref().filter(|l| l.pending_at_handover > 0) {
        let _ = writeln!(
            s,
            "{} module(s) were pending at the handover, settled later{}",
            l.pending_at_handover,
            l.boottime_late_update
                .map(|t| format!(" (at {t:.3} s)"))
                .unwrap_or_default()
        );
    }
    for c in &load.failed_required_chains {
        let _ = writeln!(
            s,
            "required chain {} failed at {}: {}",
            c.chain, c.module, c.error
        );
    }
    summary(&mut s, report);
    s
}

/// The bar of one module, or blanks when it made no (finished) kernel call;
/// a kernel call still running at the handover runs to the right edge.
fn text_bar(start: Option<f64>, end: Option<f64>, t0: f64, span: f64, latest: f64) -> String {
    let Some(start) = start else {
        return " ".repeat(CHART_WIDTH);
    };
    let end = end.unwrap_or(latest.max(start));
    let col = |t: f64| {
        // Rounded and clamped to [0, CHART_WIDTH]: the cast cannot truncate.
        (((t - t0) / span) * CHART_WIDTH as f64)
            .round()
            .clamp(0.0, CHART_WIDTH as f64) as usize
    };
    let b = col(end).max(col(start) + 1).min(CHART_WIDTH);
    let a = col(start).min(b.saturating_sub(1));
    format!(
        "{}{}{}",
        " ".repeat(a),
        "#".repeat(b - a),
        " ".repeat(CHART_WIDTH - b)
    )
}

/// Boot-level stamps, then the errors (each) and how many notes.
fn summary(s: &mut String, report: &Report) {
    let _ = writeln!(
        s,
        "boottime: /init started {:.3} s, load {:.3}–{:.3} s, exec of the real init {}",
        report.boottime_init_start,
        report.boottime_load_start,
        report.boottime_load_end,
        report
            .boottime_exec
            .map_or_else(|| "-".to_string(), |t| format!("{t:.3} s"))
    );
    steps(s, report);
    let _ = writeln!(
        s,
        "{} error(s), {} note(s)",
        report.errors.len(),
        report.notes.len()
    );
    for e in &report.errors {
        let _ = writeln!(s, "  error: {e}");
    }
}

/// The report's step stamps in time order (ms from `/init`'s start, and
/// since the stamp before), PID 1's and the loader child's interleaved.
fn steps(s: &mut String, report: &Report) {
    if report.steps.is_empty() {
        return;
    }
    let mut steps: Vec<_> = report.steps.iter().collect();
    steps.sort_by(|a, b| a.t.total_cmp(&b.t));
    let _ = writeln!(s, "steps (ms from /init's start; + since the step before):");
    let t0 = report.boottime_init_start;
    let mut before = t0;
    for st in steps {
        let _ = writeln!(
            s,
            "  {:<7} {:<13} {:>8.1} {:>+8.1}",
            st.process,
            st.step,
            (st.t - t0) * 1000.0,
            (st.t - before) * 1000.0
        );
        before = st.t;
    }
}

/// A tick step (1, 2 or 5 × 10^k ms) that gives about `want` ticks over `span`.
fn tick_step(span_ms: f64, want: f64) -> f64 {
    let raw = (span_ms / want).max(1e-3);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A stable hue per group name; dependencies (no chain) are grey-blue.
fn hue_of(group: &str) -> String {
    if group.is_empty() {
        return "hsl(215,15%,78%)".into();
    }
    let h = group.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    format!("hsl({},60%,72%)", (h % 24) * 15)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where a bar ended up on the page.
struct Placed {
    x0: f64,
    x1: f64,
    y: f64,
}

/// The SVG chart of `bars`. `edges` are (dependency, dependent) module
/// names; edges whose ends have no bar are skipped. `title` goes on top.
pub fn render_svg(title: &str, bars: &[Bar], edges: &[(String, String)]) -> String {
    let span_ms = bars
        .iter()
        .map(|b| b.end_ms)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let scale = PLOT_PX / span_ms;
    let x_of = |ms: f64| LEFT_PX + ms.max(0.0) * scale;

    // Rows in a stable order ("worker 2" before "worker 10").
    let mut rows: BTreeMap<(usize, String), Vec<&Bar>> = BTreeMap::new();
    for b in bars {
        let num = b
            .row
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        rows.entry((num, b.row.clone())).or_default().push(b);
    }

    let mut body = String::new();
    let mut placed: BTreeMap<&str, Placed> = BTreeMap::new();
    let mut y = TOP_PX;
    for ((_, row_name), row_bars) in rows.iter_mut() {
        row_bars.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        // Labels that do not fit in their bar go to lanes under the row,
        // greedily, so no two labels overlap.
        let mut lane_ends: Vec<f64> = Vec::new();
        let mut labels = String::new();
        for b in row_bars.iter() {
            let (x0, x1) = (x_of(b.start_ms), x_of(b.end_ms).max(x_of(b.start_ms) + 1.0));
            let hue = hue_of(&b.group);
            let _ = writeln!(
                body,
                r##"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{BAR_PX}" fill="{hue}" stroke="#335" stroke-width="0.5"><title>{} {:.1}–{:.1} ms</title></rect>"##,
                x1 - x0,
                escape(&b.name),
                b.start_ms,
                b.end_ms
            );
            let text_px = b.name.len() as f64 * CHAR_PX + 4.0;
            if text_px <= x1 - x0 {
                let _ = writeln!(
                    labels,
                    r#"<text x="{:.1}" y="{:.1}" class="in">{}</text>"#,
                    x0 + 2.0,
                    y + BAR_PX - 4.5,
                    escape(&b.name)
                );
            } else {
                let lane = match lane_ends.iter().position(|end| *end <= x0) {
                    Some(l) => l,
                    None => {
                        lane_ends.push(0.0);
                        lane_ends.len() - 1
                    }
                };
                lane_ends[lane] = x0 + text_px;
                let ly = y + BAR_PX + LANE_PX * (lane as f64 + 1.0) - 2.0;
                let _ = writeln!(
                    labels,
                    r##"<line x1="{x0:.1}" y1="{:.1}" x2="{x0:.1}" y2="{:.1}" stroke="#99a" stroke-width="0.5"/><text x="{:.1}" y="{ly:.1}" class="out">{}</text>"##,
                    y + BAR_PX,
                    ly - 7.0,
                    x0 + 1.5,
                    escape(&b.name)
                );
            }
            placed.insert(
                b.name.as_str(),
                Placed {
                    x0,
                    x1,
                    y: y + BAR_PX / 2.0,
                },
            );
        }
        body.push_str(&labels);
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{:.1}" class="row">{}</text>"#,
            LEFT_PX - 8.0,
            y + BAR_PX - 4.0,
            escape(row_name)
        );
        y += BAR_PX + LANE_PX * lane_ends.len() as f64 + ROW_GAP_PX;
    }
    let plot_bottom = y;

    let mut edge_svg = String::new();
    for (dep, dependent) in edges {
        if let (Some(a), Some(b)) = (placed.get(dep.as_str()), placed.get(dependent.as_str())) {
            let _ = writeln!(
                edge_svg,
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" class="edge"><title>{} → {}</title></line>"##,
                a.x1,
                a.y,
                b.x0,
                b.y,
                escape(dep),
                escape(dependent)
            );
        }
    }

    let mut axis = String::new();
    let step = tick_step(span_ms, 10.0);
    let mut t = 0.0;
    while t <= span_ms + 1e-9 {
        let x = x_of(t);
        let _ = writeln!(
            axis,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{plot_bottom:.1}" stroke="#ddd" stroke-width="0.5"/><text x="{x:.1}" y="{:.1}" class="tick">{}</text>"##,
            TOP_PX - 6.0,
            TOP_PX - 9.0,
            t.round()
        );
        t += step;
    }

    let width = LEFT_PX + PLOT_PX + RIGHT_PX;
    let height = plot_bottom + 24.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    out.push_str(
        "<style>.in{font-size:9px;fill:#112}.out{font-size:9px;fill:#334}\
         .row{font-size:11px;text-anchor:end;fill:#223}.tick{font-size:10px;text-anchor:middle;fill:#445}\
         .edge{stroke:#c33;stroke-width:0.6;stroke-opacity:0.55}</style>\n",
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r##"<text x="{LEFT_PX}" y="18" font-size="13" fill="#112">{}</text>"##,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#445">ms since load start</text>"##,
        LEFT_PX + PLOT_PX,
        height - 8.0
    );
    out.push_str(&axis);
    out.push_str(&body);
    out.push_str(&edge_svg);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn bar(name: &str, row: &str, s: f64, e: f64) -> Bar {
        Bar {
            name: name.into(),
            row: row.into(),
            group: String::new(),
            start_ms: s,
            end_ms: e,
        }
    }

    #[test]
    fn every_bar_is_drawn_and_labelled_and_edges_join_bar_ends_to_starts() {
        let bars = vec![
            bar("dep_a", "worker 0", 0.0, 100.0),
            bar("user_b", "worker 1", 100.0, 300.0),
            bar("tiny_module_with_long_name", "worker 0", 120.0, 121.0),
        ];
        let edges = vec![("dep_a".to_string(), "user_b".to_string())];
        let svg = render_svg("t", &bars, &edges);
        assert_eq!(svg.matches("<rect x=").count(), 3);
        for b in &bars {
            assert!(svg.contains(&format!(">{}</text>", b.name)), "{}", b.name);
        }
        // dep_a ends at 100 ms, user_b starts at 100 ms: same x, 1100 px / 300 ms.
        let x = LEFT_PX + 100.0 * PLOT_PX / 300.0;
        let edge = format!(r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}""#, TOP_PX + 8.0);
        assert!(svg.contains(&edge), "{svg}");
        assert!(svg.contains(r#"class="edge""#));
    }

    #[test]
    fn labels_that_do_not_fit_go_to_non_overlapping_lanes() {
        let bars = vec![
            bar("aaaaaaaaaaaa", "worker 0", 0.0, 1.0),
            bar("bbbbbbbbbbbb", "worker 0", 1.0, 2.0),
            bar("long_enough_bar", "worker 0", 2.0, 1000.0),
        ];
        let svg = render_svg("t", &bars, &[]);
        // Two outside labels a few px apart must land on different lanes.
        let ys: Vec<&str> = svg
            .lines()
            .filter(|l| l.contains(r#"class="out""#))
            .map(|l| l.split("y=\"").nth(1).unwrap().split('"').next().unwrap())
            .collect();
        assert_eq!(ys.len(), 2);
        assert_ne!(ys[0], ys[1]);
        assert_eq!(svg.matches(r#"class="in""#).count(), 1);
    }

    #[test]
    fn names_are_escaped_and_edges_to_unknown_modules_are_skipped() {
        let bars = vec![bar("a<b&c", "worker 0", 0.0, 10.0)];
        let svg = render_svg("x & y", &bars, &[("nope".into(), "a<b&c".into())]);
        assert!(svg.contains("a&lt;b&amp;c"));
        assert!(!svg.contains("a<b"));
        assert!(!svg.contains(r#"class="edge""#));
        assert!(svg.contains("x &amp; y"));
    }

    #[test]
    fn rows_sort_by_worker_number() {
        let bars = vec![
            bar("m10", "worker 10", 0.0, 10.0),
            bar("m2", "worker 2", 0.0, 10.0),
        ];
        let svg = render_svg("t", &bars, &[]);
        let p2 = svg.find(">worker 2<").unwrap();
        let p10 = svg.find(">worker 10<").unwrap();
        assert!(p2 < p10);
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(1000.0, 10.0), 100.0);
        assert_eq!(tick_step(1700.0, 10.0), 200.0);
        assert_eq!(tick_step(40.0, 10.0), 5.0);
    }

    const SMALL: &str = r#"{"version":1,"boottime_init_start":1.0,"boottime_load_start":2.0,
        "boottime_load_end":2.5,"boottime_exec":null,"cmdline":"","manifest":null,
        "notes":["n"],"errors":["e1"],"vm_hwm_kib":null,"loader":null,
        "load":{"boottime_load_start":2.0,"boottime_load_end":2.5,"jobs":1,"wall_s":0.5,
        "critical_path_s":0.5,"critical_path":["c","a"],"failed_required_chains":[],"modules":[
        {"name":"a","state":"loaded","params":"","error":null,"blocked_by":null,
         "start":2.25,"end":2.5,"worker":1,"chains":["disk"]},
        {"name":"b","state":"builtin","params":"","error":null,"blocked_by":null,
         "start":null,"end":null,"worker":null,"chains":[]},
        {"name":"c","state":"loaded","params":"","error":null,"blocked_by":null,
         "start":2.0,"end":2.25,"worker":0,"chains":[]},
        {"name":"p","state":"pending","params":"","error":null,"blocked_by":null,
         "start":2.4,"end":null,"worker":null,"chains":["disk"]}]}}"#;

    fn small() -> Report {
        serde_json::from_str(SMALL).unwrap()
    }

    #[test]
    fn bars_are_relative_to_load_start_and_skip_unrun_modules() {
        let r = small();
        let mut want = bar("a", "worker 1", 250.0, 500.0);
        want.group = "disk".into();
        assert_eq!(
            bars(&r),
            vec![want, bar("c", "worker 0", 0.0, 250.0)],
            "b made no call, p is still in the kernel"
        );
        assert_eq!(
            critical_path_edges(&r),
            vec![("c".to_string(), "a".to_string())]
        );
    }

    #[test]
    fn the_text_timeline_orders_by_start_and_says_what_is_left() {
        let text = render_text(&small());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("load phase 500.0 ms, 1 worker(s)"),
            "{text}"
        );
        // c (0 ms), a (250 ms), p (400 ms, still running), b (no call).
        let order: Vec<&str> = lines[2..6]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(order, ["c", "a", "p", "b"], "{text}");
        let c = lines[2];
        assert!(
            c.contains("     0.0    250.0   250.0      0  loaded"),
            "{c}"
        );
        // c fills the first half of the bar, a the second half.
        assert!(
            c.ends_with(&format!("|{}{}|", "#".repeat(24), " ".repeat(24))),
            "{c}"
        );
        assert!(lines[3].ends_with(&format!("|{}{}|", " ".repeat(24), "#".repeat(24))));
        assert!(
            lines[5].contains("-        -       -      -  builtin"),
            "{}",
            lines[5]
        );
        assert!(
            text.contains("load wall 500.0 ms, critical path 500.0 ms (c → a)"),
            "{text}"
        );
        assert!(
            text.contains("pending at the handover, not settled in this file: p"),
            "{text}"
        );
        assert!(
            text.contains("1 error(s), 1 note(s)\n  error: e1\n"),
            "{text}"
        );
    }

    #[test]
    fn steps_are_listed_in_time_order_with_their_gaps() {
        let mut r = small();
        r.steps = vec![
            kmodinit_report::Step::init("start", 1.0),
            kmodinit_report::Step::init("fork", 1.02),
            kmodinit_report::Step {
                process: "loader".into(),
                step: "index".into(),
                t: 1.015,
            },
        ];
        let text = render_text(&r);
        let at = text.find("steps (ms from").unwrap();
        let lines: Vec<&str> = text[at..].lines().skip(1).take(3).collect();
        assert_eq!(
            lines,
            [
                "  init    start              0.0     +0.0",
                "  loader  index             15.0    +15.0",
                "  init    fork              20.0     +5.0",
            ],
            "{text}"
        );
        assert!(
            !render_text(&small()).contains("steps (ms"),
            "no steps, no list"
        );
    }

    #[test]
    fn a_report_without_a_load_still_summarises() {
        let r = Report {
            errors: vec!["manifest: missing".into()],
            ..Report::default()
        };
        let text = render_text(&r);
        assert!(text.starts_with("no load phase"), "{text}");
        assert!(text.contains("error: manifest: missing"), "{text}");
        assert!(bars(&r).is_empty());
    }
}

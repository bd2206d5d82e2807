//! `kmodinit report` as a user runs it: the binary (not PID 1) on the
//! checked-in example, a real report.json from a 179-module boot cut at the
//! handover (`tests/data/report-example.json`), and its error exits.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kmodinit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmodinit"))
        .args(args)
        .output()
        .unwrap()
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/report-example.json")
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kmodinit-rcmd-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn renders_the_example_report_as_text_and_svg() {
    let d = temp_dir("ok");
    let svg = d.join("chart.svg");
    let out = kmodinit(&[
        "report",
        example().to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every module of the report has its line, with its state.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(example()).unwrap()).unwrap();
    let modules = report["load"]["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 179);
    for m in modules {
        let name = m["name"].as_str().unwrap();
        let state = m["state"].as_str().unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains(state)),
            "{name} {state} missing:\n{text}"
        );
    }
    assert!(text.contains("load wall 7997.4 ms"), "{text}");
    assert!(
        text.contains("pending at the handover, not settled in this file: sr_mod"),
        "{text}"
    );
    assert!(text.contains("0 error(s), 8 note(s)"), "{text}");
    assert!(text.contains(&format!("SVG chart written to {}", svg.display())));
    // One bar per module that made a finished kernel call.
    let chart = std::fs::read_to_string(&svg).unwrap();
    let ran = modules
        .iter()
        .filter(|m| m["start"].is_number() && m["end"].is_number() && m["worker"].is_number())
        .count();
    assert_eq!(chart.matches("<rect x=").count(), ran);
    assert!(chart.starts_with("<svg ") && chart.ends_with("</svg>\n"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_missing_or_invalid_report_exits_1_naming_the_file() {
    let d = temp_dir("bad");
    let missing = d.join("nope.json");
    let out = kmodinit(&["report", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("cannot read the report {}", missing.display())),
        "{err}"
    );

    let bad = d.join("bad.json");
    std::fs::write(&bad, "not json").unwrap();
    let out = kmodinit(&["report", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!(
            "the report {} is not a kmodinit report.json",
            bad.display()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["report", "--svg"][..],
        &["report", "a", "b"],
        &["--svg", "x.svg"],
    ] {
        let out = kmodinit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains("--help"),
            "clap's error and pointer to --help: {err}"
        );
    }
}

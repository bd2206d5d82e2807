//! report.json: the schema of init/REPORT.md, written atomically.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::*;
use kmodinit_init::kernel::FakeKernel;
use kmodinit_report::{Report, REPORT_VERSION};
use modules_manifest::Action;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kmodinit-report-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn the_report_is_written_with_its_directory_and_reads_back_as_documented() {
    let mut b = PlanBuilder::new();
    b.module("dep", &[]);
    b.module("bad", &["dep"]);
    b.module("top", &["bad"]);
    b.node("builtin_one", Action::Builtin, "", &[]);
    b.params("dep", "x=1");
    b.chain("storage", true, &["top"]);
    let plan = b.build();
    let k = FakeKernel::new().fail("bad", libc::ENODEV);
    let load = load_ok(&plan, &k, 2);
    // dep → bad → top is one path: the pool of 2 only ever starts 1 worker.
    assert_eq!(load.jobs, 1);
    let report = Report {
        boottime_init_start: 1.5,
        boottime_load_start: load.boottime_load_start,
        boottime_load_end: load.boottime_load_end,
        cmdline: "root=/dev/vda".into(),
        manifest: Some("/etc/kmodinit/manifest.json".into()),
        load: Some(load),
        notes: vec!["a note".into()],
        ..Default::default()
    };
    let dir = temp_dir("write");
    let path = dir.join("run/kmodinit/report.json");
    report.write(&path).unwrap();

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["version"], REPORT_VERSION);
    assert_eq!(v["boottime_init_start"], 1.5);
    assert!(v["boottime_exec"].is_null());
    assert_eq!(v["cmdline"], "root=/dev/vda");
    let load = &v["load"];
    assert_eq!(load["jobs"], 1);
    for key in [
        "wall_s",
        "critical_path_s",
        "boottime_load_start",
        "boottime_load_end",
    ] {
        assert!(load[key].is_f64(), "{key}");
    }
    let m = load["modules"].as_array().unwrap();
    let names: Vec<&str> = m.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dep", "bad", "top", "builtin_one"]);
    let states: Vec<&str> = m.iter().map(|m| m["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["loaded", "failed", "blocked", "builtin"]);
    assert_eq!(m[0]["params"], "x=1");
    assert!(m[0]["start"].is_f64() && m[0]["end"].is_f64() && m[0]["worker"].is_u64());
    assert!(m[1]["error"].as_str().unwrap().contains("ENODEV"));
    assert_eq!(m[2]["blocked_by"], "bad");
    assert!(m[2]["start"].is_null() && m[2]["worker"].is_null());
    assert_eq!(m[2]["chains"], serde_json::json!(["storage"]));
    // Every module has a reason (this hand-built plan gives none: "") and
    // an alternative (null: no alias with several matches).
    assert!(m
        .iter()
        .all(|m| m["reason"].is_string() && m["alternative"].is_null()));
    assert_eq!(
        load["failed_required_chains"],
        serde_json::json!([{"chain": "storage", "module": "bad", "error": m[1]["error"]}])
    );

    // Rewriting replaces it whole and leaves no temporary file behind.
    let mut again = report.clone();
    again.boottime_exec = Some(9.25);
    again.write(&path).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["boottime_exec"], 9.25);
    let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("report.json")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unwritable_report_path_is_an_error_not_a_panic() {
    let dir = temp_dir("unwritable");
    std::fs::create_dir_all(&dir).unwrap();
    // A file where the directory should be.
    let blocker = dir.join("run");
    std::fs::write(&blocker, "x").unwrap();
    assert!(Report::default()
        .write(&blocker.join("report.json"))
        .is_err());
    assert!(Report::default().write(std::path::Path::new("/")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_alternative_gets_a_note_naming_what_loaded() {
    use kmodinit_report::{note_alternatives, ModuleReport, ModuleState};
    let m = |n: &str, state: ModuleState, alt: Option<&str>| ModuleReport {
        name: name(n),
        state,
        params: String::new(),
        error: None,
        blocked_by: None,
        start: None,
        end: None,
        worker: None,
        chains: Vec::new(),
        warnings: Vec::new(),
        reason: "softdep of ext4".into(),
        alternative: alt.map(Into::into),
    };
    let mut ms = vec![
        m("crc32c_generic", ModuleState::Loaded, Some("crypto-crc32c")),
        m("crc32c_intel", ModuleState::Failed, Some("crypto-crc32c")),
        m("crc32_pclmul", ModuleState::Failed, Some("crc32")),
        m("crc32_generic", ModuleState::Failed, Some("crc32")),
        m("other", ModuleState::Failed, None),
    ];
    note_alternatives(&mut ms);
    note_alternatives(&mut ms);
    assert!(ms[0].warnings.is_empty() && ms[4].warnings.is_empty());
    assert_eq!(
        ms[1].warnings,
        ["one of the modules crypto-crc32c matched (crc32c_generic, crc32c_intel), all tried as \
          modprobe does; loaded: crc32c_generic"]
    );
    assert!(ms[2].warnings[0]
        .ends_with("(crc32_pclmul, crc32_generic), all tried as modprobe does; loaded: none"));
}

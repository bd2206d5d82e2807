//! PID 1 as a supervisor (issue 12), on the real kernel: module insertion
//! runs in a loader child; a module whose init hangs holds the boot only
//! until the deadline (optional chains) or the required timeout (required
//! chains); a loader that panics or is killed never takes PID 1 with it.
//! The hanging module is the fixture `kmi_d` with `delay_ms=60000`: its init
//! sleeps 60 s inside `finit_module`.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;

use kmodinit_e2e::{assert_init_never_died, boot, report_modules, report_state, Env, FATAL_BANNER};
use kmodinit_qemu::{Boot, RealInitRoot};
use serde_json::json;

/// The 60 s module init.
const HANG: &str = "delay_ms=60000";

fn assert_pid1_survived(b: &Boot) {
    assert_init_never_died(b);
    assert!(
        !b.console.contains("Kernel panic"),
        "the kernel panicked; tail:\n{}",
        b.console.tail(40)
    );
}

fn f64_of(v: &serde_json::Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_hung_optional_module_waits_only_until_the_deadline_then_loads_in_the_background() {
    let env = Env::get();
    let dir = env.scratch("supervisor-deadline");
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "base", "modules": ["kmi_e"], "required": true},
            {"name": "slow", "modules": [{"name": "kmi_d", "params": HANG}]}
        ],
        "deadline_ms": 2000,
        "on_failure": "poweroff"
    });
    // The real init prints the report at once, then again once the loader
    // (still running after the handover) has settled it.
    let init = RealInitRoot::new().late_report(100);
    let image = env.fixture_image_with(&dir, &manifest, &init);
    let b = boot(
        env.vm(&dir, &image)
            .timeout(std::time::Duration::from_secs(180)),
    );
    assert_pid1_survived(&b);
    let real_init = b
        .console
        .real_init()
        .unwrap_or_else(|| panic!("no real init; tail:\n{}", b.console.tail(40)));
    assert_eq!(real_init.pid, 1);

    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let load_start = f64_of(&report["boottime_load_start"], "boottime_load_start");
    // Started within deadline + 1 s of the load's start, not after 60 s.
    assert!(
        real_init.uptime_s <= load_start + 2.0 + 1.0,
        "real init at {} s, load started at {load_start} s",
        real_init.uptime_s
    );
    assert_eq!(report_state(&report, "kmi_e").as_deref(), Some("loaded"));
    let d = &report_modules(&report, "kmi_d")[0];
    assert_eq!(d["state"], "pending", "{d}");
    assert!(d["start"].as_f64().is_some(), "inside the kernel: {d}");
    assert_eq!(report["loader"]["pending_at_handover"], 1, "{report}");
    assert!(
        b.console
            .contains("still loading go on in the background: kmi_d"),
        "tail:\n{}",
        b.console.tail(40)
    );

    let late = b.console.late_report().unwrap_or_else(|e| panic!("{e}"));
    let d = &report_modules(&late, "kmi_d")[0];
    assert_eq!(d["state"], "loaded", "{late}");
    let (start, end) = (f64_of(&d["start"], "start"), f64_of(&d["end"], "end"));
    assert!(end - start >= 59.0, "kmi_d took {} s", end - start);
    assert!(
        late["loader"]["boottime_late_update"]
            .as_f64()
            .unwrap_or(0.0)
            >= end,
        "{late}"
    );
    // The reporter is not the loader's parent: it must not invent a status.
    let exit = late["loader"]["exit"].as_str().unwrap_or("");
    assert!(
        exit.is_empty() || exit == "ended; its status went to the real init",
        "{late}"
    );
    // PID 1's own fields stayed as it wrote them.
    assert_eq!(late["boottime_exec"], report["boottime_exec"]);
    assert_eq!(report_state(&late, "kmi_e").as_deref(), Some("loaded"));
    assert!(
        b.console.contains("kmodinit: loaded kmi_d in "),
        "the late load is logged; tail:\n{}",
        b.console.tail(40)
    );
    let names: Vec<String> = b
        .console
        .proc_modules()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(names.iter().any(|n| n == "kmi_d"), "{names:?}");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_hung_required_module_fails_its_chain_at_the_required_timeout() {
    let env = Env::get();
    let dir = env.scratch("supervisor-required-timeout");
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": [{"name": "kmi_d", "params": HANG}], "required": true},
            {"name": "fine", "modules": ["kmi_e"]}
        ],
        "required_timeout_ms": 3000,
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image));
    assert_pid1_survived(&b);
    let text = b.console.text();
    let at = text
        .find(FATAL_BANNER)
        .unwrap_or_else(|| panic!("no fatal-error banner; tail:\n{}", b.console.tail(40)));
    let why = &text[at..];
    for needle in [
        "required module chain(s) failed:",
        "chain \"storage\": module kmi_d failed: still inside the kernel after the required timeout of 3000 ms",
        "Now powering off.",
    ] {
        assert!(why.contains(needle), "no {needle:?} in:\n{why}");
    }
    assert!(b.powered_off(), "{:?}\n{}", b.end, b.console.tail(20));
    assert!(
        b.console.real_init().is_none(),
        "the real init must not run"
    );
    // Powered off long before the 60 s init would have returned.
    assert!(
        !b.console.contains("kmi_d: init delay_ms=60000"),
        "kmi_d's init returned: the boot waited for it; tail:\n{}",
        b.console.tail(40)
    );
}

/// The fault-injection build (`make init-faults`), as panics.rs uses it.
fn faults_env() -> &'static Env {
    Env::faults()
}

fn fault_image(name: &str, manifest: serde_json::Value) -> (kmodinit_e2e::Scratch, PathBuf) {
    let env = faults_env();
    let dir = env.scratch(name);
    let image = env.fixture_image(&dir, &manifest);
    (dir, image)
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_panicking_loader_never_takes_pid1_with_it() {
    // Optional chains only: the boot goes on without what the loader left
    // undecided. One worker: kmi_base, then kmi_a (its panic) in order.
    let (dir, image) = fault_image(
        "supervisor-loader-panic",
        json!({
            "version": 1,
            "chains": [
                {"name": "victim", "modules": ["kmi_c"]},
                {"name": "other", "modules": ["kmi_e"]}
            ],
            "jobs": 1,
            "on_failure": "poweroff"
        }),
    );
    let b = boot(
        faults_env()
            .vm(&dir, &image)
            .append("kmodinit.fault=panic-insert:kmi_a"),
    );
    assert_pid1_survived(&b);
    assert!(
        !b.console.contains(FATAL_BANNER),
        "no required chain: not fatal; tail:\n{}",
        b.console.tail(40)
    );
    assert_eq!(
        b.console.real_init().map(|i| i.pid),
        Some(1),
        "the real init did not run as PID 1; tail:\n{}",
        b.console.tail(40)
    );
    let hook = b
        .console
        .line_from("kmodinit: loader: panic in thread ")
        .unwrap_or_else(|| panic!("no panic line; tail:\n{}", b.console.tail(40)));
    assert!(hook.contains("panic while inserting kmi_a"), "{hook}");

    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report_state(&report, "kmi_base").as_deref(),
        Some("loaded"),
        "{report}"
    );
    let a = &report_modules(&report, "kmi_a")[0];
    assert_eq!(a["state"], "failed", "{a}");
    let error = a["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("loader died during this insertion: panic: ")
            && error.contains("injected fault (kmodinit.fault=panic-insert:kmi_a)"),
        "{error}"
    );
    // What the loader left undecided is failed with the cause, not lost.
    for m in report["load"]["modules"].as_array().unwrap() {
        let state = m["state"].as_str().unwrap_or("");
        assert!(state == "loaded" || state == "failed", "{m}");
        if state == "failed" {
            assert!(
                m["error"].as_str().unwrap_or("").starts_with("loader died"),
                "{m}"
            );
        }
    }
    assert_eq!(report_state(&report, "kmi_c").as_deref(), Some("failed"));
    assert!(report["loader"]["exit"].is_string(), "{report}");
    assert!(
        report["notes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n
                .as_str()
                .unwrap_or("")
                .starts_with("the loader died: panic: "))),
        "{report}"
    );
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_killed_loader_fails_the_required_chain_it_broke() {
    let (dir, image) = fault_image(
        "supervisor-loader-kill",
        json!({
            "version": 1,
            "chains": [
                {"name": "storage", "modules": ["kmi_a"], "required": true},
                {"name": "other", "modules": ["kmi_e"]}
            ],
            "on_failure": "poweroff"
        }),
    );
    let b = boot(
        faults_env()
            .vm(&dir, &image)
            .append("kmodinit.fault=kill-insert:kmi_a"),
    );
    assert_pid1_survived(&b);
    let text = b.console.text();
    let at = text
        .find(FATAL_BANNER)
        .unwrap_or_else(|| panic!("no fatal-error banner; tail:\n{}", b.console.tail(40)));
    let why = &text[at..];
    for needle in [
        "chain \"storage\": module kmi_a failed: loader died during this insertion: killed by SIGKILL",
        "the loader process was killed",
        "Now powering off.",
    ] {
        assert!(why.contains(needle), "no {needle:?} in:\n{why}");
    }
    assert!(b.powered_off(), "{:?}\n{}", b.end, b.console.tail(20));
    assert!(
        b.console.real_init().is_none(),
        "the real init must not run"
    );
}

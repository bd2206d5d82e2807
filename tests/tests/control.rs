//! Group: control without rebuilding (issue 15). The kernel command line
//! loads modules the image holds but no chain names (`kmodinit.load=`, and
//! dracut's `rd.driver.pre=` and systemd's `modules-load=` for it), skips a
//! chain or a module (`kmodinit.skip=`: a required chain broken only by the
//! user's skip does not run `on_failure`); dracut's `rd.driver.post=` loads
//! its module after every other module has ended, a failed one included; a
//! manifest softdep override
//! replaces the index's softdeps; a command-line parameter a module does not
//! have is a warning in the module's report entry.

#![allow(clippy::unwrap_used)] // tests may unwrap

use kmodinit_e2e::{assert_real_init_ran, boot, report_modules, report_state, Env};
use serde_json::{json, Value};

fn module<'a>(report: &'a Value, name: &str) -> &'a Value {
    let m = report_modules(report, name);
    assert_eq!(m.len(), 1, "{name} once in the report: {m:?}");
    m[0]
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn notes(report: &Value) -> String {
    report["notes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn load_and_skip_from_the_command_line_with_the_names_of_other_tools() {
    let env = Env::get();
    let dir = env.scratch("control-load-skip");
    // kmi_c needs kmi_a, kmi_b and kmi_base: all in the image. Skipping
    // chain "root" leaves kmi_a and kmi_b in the image but in no chain.
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "root", "modules": ["kmi_c"], "required": true},
            {"name": "other", "modules": ["kmi_e"]}
        ],
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image).append(
        "kmodinit.skip=root rd.driver.pre=kmi_a modules-load=kmi_b kmodinit.load=kmi_nope",
    ));
    assert_real_init_ran(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));

    let c = module(&report, "kmi_c");
    assert_eq!(c["state"], "skipped", "{c}");
    assert!(
        text(c, "error").contains("skipped on the command line (kmodinit.skip=root)"),
        "{c}"
    );
    for m in ["kmi_a", "kmi_b"] {
        let r = module(&report, m);
        assert_eq!(r["state"], "loaded", "{r}");
        assert!(
            r["chains"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "cmdline"),
            "{r}"
        );
    }
    assert_eq!(report_state(&report, "kmi_base").as_deref(), Some("loaded"));
    assert_eq!(report_state(&report, "kmi_e").as_deref(), Some("loaded"));
    let nope = module(&report, "kmi_nope");
    assert_eq!(nope["state"], "failed", "{nope}");
    assert!(
        text(nope, "error").contains("kmodinit.load=kmi_nope")
            && text(nope, "error").contains("not in the image"),
        "{nope}"
    );
    assert!(
        report["load"]["failed_required_chains"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{}",
        report["load"]
    );
    let n = notes(&report);
    assert!(n.contains("does not trigger on_failure"), "{n}");
    let loaded: Vec<String> = b
        .console
        .proc_modules()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(!loaded.iter().any(|m| m == "kmi_c"), "{loaded:?}");
    assert!(loaded.iter().any(|m| m == "kmi_a"), "{loaded:?}");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn skipping_a_module_a_required_chain_needs_blocks_it_without_on_failure() {
    let env = Env::get();
    let dir = env.scratch("control-skip-module");
    let manifest = json!({
        "version": 1,
        "chains": [{"name": "root", "modules": ["kmi_a", "kmi_c"], "required": true}],
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image).append("kmodinit.skip=kmi-b"));
    assert_real_init_ran(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let skipped = module(&report, "kmi_b");
    assert_eq!(skipped["state"], "skipped", "{skipped}");
    assert!(
        text(skipped, "error").contains("skipped on the command line (kmodinit.skip=kmi-b)"),
        "{skipped}"
    );
    let c = module(&report, "kmi_c");
    assert_eq!(c["state"], "blocked", "{c}");
    assert_eq!(c["blocked_by"], "kmi_b", "{c}");
    assert_eq!(report_state(&report, "kmi_a").as_deref(), Some("loaded"));
    assert!(notes(&report).contains("required chain \"root\" cannot complete"));
    assert!(
        b.console.contains("does not trigger on_failure"),
        "the log should say why the boot goes on; tail:\n{}",
        b.console.tail(40)
    );
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_manifest_softdep_override_loads_pre_before_and_post_after() {
    let env = Env::get();
    let dir = env.scratch("control-softdep");
    let manifest = json!({
        "version": 1,
        "chains": [{"name": "e", "modules": ["kmi_e"], "required": true}],
        "softdeps": {"kmi_e": {"pre": ["kmi_d"], "post": ["kmi_b"]}},
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image));
    assert_real_init_ran(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let (d, e, post) = (
        module(&report, "kmi_d"),
        module(&report, "kmi_e"),
        module(&report, "kmi_b"),
    );
    for m in [d, e, post] {
        assert_eq!(m["state"], "loaded", "{m}");
    }
    let t = |m: &Value, k: &str| m[k].as_f64().unwrap();
    assert!(t(d, "end") <= t(e, "start"), "pre: before: {d} {e}");
    assert!(t(post, "start") >= t(e, "end"), "post: after: {e} {post}");
    assert!(
        notes(&report).contains("softdep kmi_e: manifest override used"),
        "{}",
        notes(&report)
    );
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn an_unknown_command_line_parameter_is_a_warning_in_the_report() {
    let env = Env::get();
    let dir = env.scratch("control-unknown-param");
    let manifest = json!({
        "version": 1,
        "chains": [{"name": "a", "modules": ["kmi_a"], "required": true}],
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image).append("kmi_a.tag=hello kmi_a.bogus=1"));
    assert_real_init_ran(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let a = module(&report, "kmi_a");
    assert_eq!(a["state"], "loaded", "{a}");
    assert!(text(a, "params").contains("tag=hello"), "{a}");
    let warnings = a["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{a}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("kmi_a.bogus") && w.contains("delay_ms, tag"),
        "{w}"
    );
    assert!(
        b.console.contains("kmi_a has no parameter bogus"),
        "{}",
        b.console.tail(40)
    );
    // Modules without warnings still have the field, empty.
    assert_eq!(module(&report, "kmi_base")["warnings"], json!([]));
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn rd_driver_post_loads_after_every_other_module_even_a_failed_one() {
    let env = Env::get();
    let dir = env.scratch("control-driver-post");
    // x needs kmi_a, kmi_b, kmi_base; y fails; kmi_d comes from
    // rd.driver.pre=; kmi_e (no dependencies) from rd.driver.post=. Both
    // are in the image through chain z, which the command line skips.
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "x", "modules": ["kmi_c"], "required": true},
            {"name": "y", "modules": ["kmi_fail"]},
            {"name": "z", "modules": ["kmi_d", "kmi_e"]}
        ],
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(
        env.vm(&dir, &image)
            .append("kmodinit.skip=z rd.driver.post=kmi_e rd.driver.pre=kmi_d"),
    );
    assert_real_init_ran(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let post = module(&report, "kmi_e");
    assert_eq!(post["state"], "loaded", "{post}");
    assert_eq!(report_state(&report, "kmi_fail").as_deref(), Some("failed"));
    let t = |m: &Value, k: &str| m[k].as_f64();
    let start = t(post, "start").unwrap();
    let mut others = 0;
    for m in report["load"]["modules"].as_array().unwrap() {
        if m["name"] == "kmi_e" {
            continue;
        }
        let Some(end) = t(m, "end") else { continue };
        others += 1;
        assert!(
            end <= start,
            "kmi_e started before {} ended: {m} {post}",
            m["name"]
        );
    }
    // kmi_a, kmi_b, kmi_base, kmi_c, kmi_d and the failed kmi_fail.
    assert!(others >= 6, "{others} modules with an end: {report}");
}

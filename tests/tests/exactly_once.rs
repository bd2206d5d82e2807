//! Group 2: several chains sharing fixture dependencies; every module is
//! inserted once, with the parameters declared for it wherever it is pulled
//! in from, and the kernel command line wins.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;

use kmodinit_e2e::{assert_init_never_died, boot, report_modules, Env};
use serde_json::json;

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn shared_dependencies_load_once_with_their_declared_params() {
    let env = Env::get();
    let dir = env.scratch("exactly-once");
    // kmi_base is everybody's dependency but no chain names it; kmi_d is
    // in two chains; kmi_c needs kmi_a and kmi_b from two other chains.
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "left", "modules": ["kmi_a", {"name": "kmi_c", "params": "tag=c-chain"}]},
            {"name": "right", "modules": ["kmi_b", "kmi_d"]},
            {"name": "third", "modules": ["kmi_e", "kmi_d"]}
        ],
        "modules": {
            "kmi_base": {"params": "tag=from-modules delay_ms=30"},
            "kmi-a": {"params": "tag=a-manifest"}
        },
        "init": {"path": "/sbin/init", "args": []},
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(
        env.vm(&dir, &image)
            .append("kmi_a.tag=from-cmdline kmi-b.tag=cmd-b"),
    );
    let c = &b.console;
    assert_init_never_died(&b);
    assert_eq!(c.real_init().map(|i| i.pid), Some(1), "{}", c.tail(40));

    let fixtures = ["kmi_base", "kmi_a", "kmi_b", "kmi_c", "kmi_d", "kmi_e"];
    let proc_modules = c.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    for name in fixtures {
        let n = proc_modules.iter().filter(|m| m.name == name).count();
        assert_eq!(n, 1, "{name} is {n} times in /proc/modules");
    }
    let base = proc_modules.iter().find(|m| m.name == "kmi_base").unwrap();
    let mut users = base.used_by.clone();
    users.sort();
    assert_eq!(users, vec!["kmi_a", "kmi_b", "kmi_d"]);

    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    for name in fixtures {
        let m = report_modules(&report, name);
        assert_eq!(m.len(), 1, "{name} listed {} times in the report", m.len());
        assert_eq!(m[0]["state"], "loaded", "{name}: {}", m[0]);
    }

    let params: BTreeMap<String, String> = c.module_params().unwrap_or_else(|e| panic!("{e}"));
    let expect = [
        // Declared under `modules`, pulled in only as a dependency.
        ("kmi_base.tag", "from-modules"),
        ("kmi_base.delay_ms", "30"),
        // The command line is appended after the manifest's, so it wins.
        ("kmi_a.tag", "from-cmdline"),
        ("kmi_b.tag", "cmd-b"),
        // Declared in a chain entry.
        ("kmi_c.tag", "c-chain"),
        ("kmi_d.tag", "unset"),
        ("kmi_e.tag", "unset"),
    ];
    for (key, value) in expect {
        assert_eq!(
            params.get(key).map(String::as_str),
            Some(value),
            "{key}; all: {params:?}"
        );
    }
}

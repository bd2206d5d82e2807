//! The smallest `/init` (`make init-tiny`: pinned nightly, std rebuilt for
//! size without its backtrace symbolizer, `panic = "abort"`) boots like the
//! stable one and keeps PID 1's promise: the demo to the real init, a failed
//! required chain carried out as `on_failure` says, and with its
//! fault-injection twin (`make init-tiny-faults`) a panic in PID 1 explained
//! and carried out as `on_failure` says, and a panic in the loader child
//! reported by the child's hook while PID 1 boots on.
//! `$KMODINIT_INIT_TINY` / `$KMODINIT_INIT_TINY_FAULTS` override the paths.

#![allow(clippy::unwrap_used)] // tests may unwrap

use kmodinit_e2e::{
    assert_init_never_died, boot, report_modules, report_state, Env, DEMO_MODULES, FATAL_BANNER,
};
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::End;
use serde_json::json;

fn tiny() -> Env {
    Env::get().with_init("KMODINIT_INIT_TINY", "init-tiny")
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn tiny_boots_the_demo_to_the_real_init() {
    let env = tiny();
    let dir = env.scratch("tiny-demo");
    let (_fs, disk) = env.root_disk(&dir);
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true}
        ],
        "root": {"device": "/dev/vda", "fstype": "ext4", "flags": "ro"},
        "on_failure": "poweroff"
    });
    let image = env
        .mkimage(&dir, &manifest, None, &[], "xz")
        .unwrap_or_else(|e| panic!("{e}"));
    let b = boot(env.vm(&dir, &image).disk(&disk));
    assert_init_never_died(&b);
    assert_eq!(
        b.end,
        End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        b.console.tail(40)
    );
    assert_eq!(b.console.real_init().map(|i| i.pid), Some(1));
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    for m in DEMO_MODULES {
        assert_eq!(
            report_state(&report, m).as_deref(),
            Some("loaded"),
            "{m}: {report}"
        );
    }
    assert!(report["boottime_exec"].as_f64().is_some(), "{report}");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn tiny_carries_out_on_failure_for_a_failed_required_chain() {
    let env = tiny();
    let dir = env.scratch("tiny-required");
    let image = env.fixture_image(
        &dir,
        &json!({
            "version": 1,
            "chains": [{"name": "broken", "modules": ["kmi_fail_dep"], "required": true}],
            "on_failure": "poweroff"
        }),
    );
    let b = boot(env.vm(&dir, &image));
    assert_init_never_died(&b);
    let text = b.console.text();
    let at = text
        .find(FATAL_BANNER)
        .unwrap_or_else(|| panic!("no fatal-error banner; tail:\n{}", b.console.tail(40)));
    assert!(
        text[at..].contains("chain \"broken\": module kmi_fail failed"),
        "{}",
        &text[at..]
    );
    assert!(b.powered_off(), "{:?}\n{}", b.end, b.console.tail(20));
    assert!(b.console.real_init().is_none());
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn tiny_survives_a_panic_in_the_loader() {
    let env = Env::get().with_init("KMODINIT_INIT_TINY_FAULTS", "init-tiny-faults");
    let dir = env.scratch("tiny-loader-panic");
    let image = env.fixture_image(
        &dir,
        &json!({
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
        env.vm(&dir, &image)
            .append("kmodinit.fault=panic-insert:kmi_a"),
    );
    assert_init_never_died(&b);
    assert!(
        !b.console.contains("Kernel panic"),
        "{}",
        b.console.tail(40)
    );
    assert!(
        !b.console.contains(FATAL_BANNER),
        "no required chain: not fatal; tail:\n{}",
        b.console.tail(40)
    );
    assert_eq!(
        b.console.real_init().map(|i| i.pid),
        Some(1),
        "tail:\n{}",
        b.console.tail(40)
    );
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let a = &report_modules(&report, "kmi_a")[0];
    assert_eq!(a["state"], "failed", "{a}");
    // The child's hook told PID 1 what panicked before the child ended
    // (this build keeps no thread names or caller locations).
    assert!(
        b.console.contains("kmodinit: loader: panic in thread "),
        "{}",
        b.console.tail(40)
    );
    let error = a["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("loader died during this insertion: panic: ")
            && error.contains("kmodinit.fault=panic-insert:kmi_a"),
        "{error}"
    );
    assert_eq!(report_state(&report, "kmi_c").as_deref(), Some("failed"));
    let exit = report["loader"]["exit"].as_str().unwrap_or("");
    assert_eq!(exit, "exited with status 101", "{report}");
}

/// A panic in PID 1 itself (`kmodinit.fault=panic-boot`, after the manifest
/// is read): the hook explains it and carries out `on_failure` (here
/// poweroff), as in the stable build; the kernel never sees PID 1 die.
#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn tiny_carries_out_on_failure_for_a_panic_in_pid1() {
    let env = Env::get().with_init("KMODINIT_INIT_TINY_FAULTS", "init-tiny-faults");
    let dir = env.scratch("tiny-pid1-panic");
    let image = env.fixture_image(
        &dir,
        &json!({
            "version": 1,
            "chains": [{"name": "e", "modules": ["kmi_e"]}],
            "on_failure": "poweroff"
        }),
    );
    let b = boot(env.vm(&dir, &image).append("kmodinit.fault=panic-boot"));
    assert_init_never_died(&b);
    assert!(
        !b.console.contains("Kernel panic"),
        "{}",
        b.console.tail(40)
    );
    // Built with -Zlocation-detail=none: no file and line in the message.
    assert!(
        b.console.contains("kmodinit: panic in thread ")
            && b.console
                .contains("injected fault (kmodinit.fault=panic-boot)"),
        "{}",
        b.console.tail(40)
    );
    let text = b.console.text();
    let at = text
        .find(FATAL_BANNER)
        .unwrap_or_else(|| panic!("no fatal-error banner; tail:\n{}", b.console.tail(40)));
    for needle in ["internal error (panic):", "Now powering off."] {
        assert!(
            text[at..].contains(needle),
            "no {needle:?} in:\n{}",
            &text[at..]
        );
    }
    assert!(
        b.console.real_init().is_none(),
        "the real init must not run"
    );
    assert!(b.powered_off(), "{:?}\n{}", b.end, b.console.tail(20));
}

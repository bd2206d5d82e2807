//! Never die (issues 4 and 12), shown on the real kernel: real `panic!`s
//! injected into `/init` under QEMU, whose release build has `panic =
//! "abort"`. They need the test build `build/init-faults` (`make
//! init-faults`, cargo feature `fault-injection`; `$KMODINIT_INIT_FAULTS`
//! overrides the path), whose `kmodinit.fault=` option panics in PID 1's
//! boot sequence after the manifest is read (`panic-boot`) or inside the
//! loader child's worker that inserts one module (`panic-insert:MODULE`).
//! The product `/init` has no such option.
//!
//! A panic in PID 1 is a fatal error: its panic hook shows the panic and the
//! explanation, then carries out `on_failure` itself (the abort never
//! comes). A panic in the loader child kills the child only: PID 1 fails
//! what it left undecided (tests/supervisor.rs shows an optional chain
//! booting on); in a required chain, that chain's failure is fatal. Never
//! "Attempted to kill init", never a kernel panic.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;
use std::time::Duration;

use kmodinit_e2e::{assert_init_never_died, boot, Env, FATAL_BANNER};
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{Boot, End};
use serde_json::json;

/// The panic message of `kmodinit.fault=panic-boot` (init/src/fault.rs).
const BOOT_PANIC: &str =
    "injected fault (kmodinit.fault=panic-boot): panic in the boot sequence after reading the manifest";

/// The panic message of `kmodinit.fault=panic-insert:kmi_a`.
const INSERT_PANIC_KMI_A: &str =
    "injected fault (kmodinit.fault=panic-insert:kmi_a): panic while inserting kmi_a";

/// What PID 1's panic hook prints before the message (init/src/failure.rs).
const HOOK: &str = "kmodinit: panic in thread ";

/// What the loader child's panic hook prints (init/src/loader_process.rs).
const LOADER_HOOK: &str = "kmodinit: loader: panic in thread ";

/// The fixture environment, booting the fault-injection build as `/init`.
fn env() -> &'static Env {
    Env::faults()
}

/// PID 1 survived: it never returned to the kernel, and the kernel never
/// panicked.
fn assert_pid1_survived(b: &Boot) {
    assert_init_never_died(b);
    assert!(
        !b.console.contains("Kernel panic"),
        "the kernel panicked; tail:\n{}",
        b.console.tail(40)
    );
}

/// The console from the fatal-error banner on.
fn explanation(b: &Boot) -> &str {
    let text = b.console.text();
    let at = text
        .find(FATAL_BANNER)
        .unwrap_or_else(|| panic!("no fatal-error banner; tail:\n{}", b.console.tail(40)));
    &text[at..]
}

/// The panic hook's line for the panic whose message contains `msg`.
fn hook_line<'a>(b: &'a Boot, msg: &str) -> &'a str {
    b.console
        .text()
        .lines()
        .find(|l| (l.contains(HOOK) || l.contains(LOADER_HOOK)) && l.contains(msg))
        .unwrap_or_else(|| {
            panic!(
                "the panic hook did not show {msg:?}; tail:\n{}",
                b.console.tail(40)
            )
        })
}

/// A boot panic: the hook's line (main thread, with a source location), then
/// the multi-line explanation naming the panic and what happens next; the
/// modules were never loaded and the real init never ran.
fn assert_boot_panic_explained(b: &Boot, now: &str) {
    assert_pid1_survived(b);
    let hook = hook_line(b, BOOT_PANIC);
    assert!(hook.contains("panic in thread main at init/src/"), "{hook}");
    let why = explanation(b);
    for needle in [
        format!("internal error (panic): {BOOT_PANIC}"),
        "Details: /run/kmodinit/report.json".to_string(),
        "please report this bug with the console output".to_string(),
        format!("Now {now}."),
    ] {
        assert!(why.contains(&needle), "no {needle:?} in:\n{why}");
    }
    // Armed and announced, not rejected as an unknown option.
    assert!(b
        .console
        .contains("test build: fault injection armed: panic-boot"));
    assert!(!b
        .console
        .contains("kmodinit.fault: unknown kmodinit option"));
    assert!(!b.console.contains("loaded kmi_e"), "the panic came first");
    assert!(
        b.console.real_init().is_none(),
        "the real init must not run"
    );
}

fn boot_panic_image(dir: &std::path::Path, on_failure: &str) -> PathBuf {
    env().fixture_image(
        dir,
        &json!({
            "version": 1,
            "chains": [{"name": "e", "modules": ["kmi_e"]}],
            "on_failure": on_failure
        }),
    )
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn panic_in_the_boot_sequence_reboots() {
    let env = env();
    let dir = env.scratch("panic-boot-reboot");
    let image = boot_panic_image(&dir, "reboot");
    let b = boot(env.vm(&dir, &image).append("kmodinit.fault=panic-boot"));
    assert_boot_panic_explained(&b, "rebooting");
    assert!(
        b.console.contains("reboot: Restarting system"),
        "{:?}\n{}",
        b.end,
        b.console.tail(20)
    );
    assert!(matches!(b.end, End::Exited { .. }), "{:?}", b.end);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn panic_in_the_boot_sequence_powers_off_as_the_command_line_says() {
    let env = env();
    let dir = env.scratch("panic-boot-poweroff");
    // The manifest says reboot; kmodinit.on_failure= wins, as for any error.
    let image = boot_panic_image(&dir, "reboot");
    let b = boot(
        env.vm(&dir, &image)
            .append("kmodinit.fault=panic-boot kmodinit.on_failure=poweroff"),
    );
    assert_boot_panic_explained(&b, "powering off");
    assert!(b.powered_off(), "{:?}\n{}", b.end, b.console.tail(20));
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn panic_in_the_boot_sequence_starts_the_rescue_shell() {
    let env = env();
    let dir = env.scratch("panic-boot-rescue");
    let image = boot_panic_image(&dir, "rescue");
    // Once the failure is shown, the shell prints the report between the
    // markers the harness parses, then computes 42 (the echo of the typed
    // line alone cannot match the stop marker, nor a marker line).
    let typed = format!(
        "echo {}; /bin/busybox cat /run/kmodinit/report.json; echo; echo {}; echo KMI-RESCUE-$((6*7))\n",
        markers::REPORT_BEGIN,
        markers::REPORT_END
    );
    let b = boot(
        env.vm(&dir, &image)
            .append("kmodinit.fault=panic-boot")
            .send_when(FATAL_BANNER, typed)
            .stop_on("KMI-RESCUE-42")
            .timeout(Duration::from_secs(120)),
    );
    assert_boot_panic_explained(&b, "starting a rescue shell (/bin/sh) on the console");
    assert_eq!(b.end, End::Marker("KMI-RESCUE-42".into()));
    // The report the rescue shell reads records the panic as the error.
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        errors,
        [format!("internal error (panic): {BOOT_PANIC}")],
        "{report}"
    );
    assert!(report["load"].is_null(), "nothing was loaded: {report}");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn panic_in_a_worker_of_a_required_chain_is_fatal() {
    let env = env();
    let dir = env.scratch("panic-insert-required");
    let image = env.fixture_image(
        &dir,
        &json!({
            "version": 1,
            "chains": [
                {"name": "storage", "modules": ["kmi_a"], "required": true},
                {"name": "fine", "modules": ["kmi_e"]}
            ],
            "jobs": 2,
            "on_failure": "poweroff"
        }),
    );
    let b = boot(
        env.vm(&dir, &image)
            .append("kmodinit.fault=panic-insert:kmi_a"),
    );
    assert_pid1_survived(&b);
    let hook = hook_line(&b, INSERT_PANIC_KMI_A);
    assert!(
        hook.contains("kmodinit: loader: panic in thread kmodinit-load-"),
        "{hook}"
    );
    let why = explanation(&b);
    for needle in [
        "required module chain(s) failed:".to_string(),
        "chain \"storage\": module kmi_a failed: loader died during this insertion: panic: kmodinit-load-".to_string(),
        INSERT_PANIC_KMI_A.to_string(),
        // The hint says whose fault it is, not "look at dmesg".
        "a \"panic:\" reason is a bug in kmodinit".to_string(),
        "Now powering off.".to_string(),
    ] {
        assert!(why.contains(&needle), "no {needle:?} in:\n{why}");
    }
    // The loader died with it: what it left undecided (kmi_e, if it had not
    // loaded yet) failed with the cause, which is not this chain's failure.
    assert!(
        b.console.real_init().is_none(),
        "the real init must not run"
    );
    assert!(
        b.powered_off(),
        "on_failure=poweroff did not power off ({:?}); tail:\n{}",
        b.end,
        b.console.tail(40)
    );
}

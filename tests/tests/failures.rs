//! Group 4: failures. A missing module file, a module whose init fails
//! (`kmi_fail`, -ENODEV), a dependency the image's compiled index names
//! but does not hold (the planner fails that module alone), a compiled index
//! for another kernel release or format version, a malformed manifest, an unknown module, a root
//! device that never appears (each `on_failure` mode) and a wrong fstype:
//! the console explains, the machine does what `on_failure` says, and PID 1
//! never dies ("Attempted to kill init").

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use kmodinit_e2e::{
    assert_init_never_died, boot, edit_image, report_modules, report_state, Env, FATAL_BANNER,
    IMAGE_MANIFEST,
};
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{Boot, End};
use serde_json::json;

fn assert_real_init_ran(b: &Boot) {
    assert_init_never_died(b);
    assert_eq!(
        b.console.real_init().map(|i| i.pid),
        Some(1),
        "the real init did not run; tail:\n{}",
        b.console.tail(40)
    );
}

fn assert_fatal_then_power_off(b: &Boot) {
    assert_init_never_died(b);
    assert!(
        b.console.contains(FATAL_BANNER),
        "no fatal-error banner; tail:\n{}",
        b.console.tail(40)
    );
    assert!(
        b.powered_off(),
        "on_failure=poweroff did not power off ({:?}); tail:\n{}",
        b.end,
        b.console.tail(40)
    );
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn missing_module_file_fails_that_module_only() {
    let env = Env::get();
    let dir = env.scratch("fail-missing-file");
    let manifest = json!({
        "version": 1,
        "chains": [{"name": "a", "modules": ["kmi_a"]}, {"name": "e", "modules": ["kmi_e"]}],
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    edit_image(&image, |c| {
        let path = c.path_ending("/kmi_e.ko").expect("kmi_e.ko in the image");
        assert!(c.remove(&path));
    });
    let b = boot(env.vm(&dir, &image));
    assert_real_init_ran(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report_state(&report, "kmi_e").as_deref(), Some("failed"));
    let e = report_modules(&report, "kmi_e");
    let error = e[0]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("kmi_e"),
        "error should name the file: {error:?}"
    );
    assert_eq!(report_state(&report, "kmi_a").as_deref(), Some("loaded"));
    assert_eq!(report_state(&report, "kmi_base").as_deref(), Some("loaded"));
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn failing_init_blocks_its_dependents_and_nothing_else() {
    let env = Env::get();
    let dir = env.scratch("fail-enodev");
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "broken", "modules": ["kmi_fail_dep"]},
            {"name": "fine", "modules": ["kmi_a", "kmi_c"]}
        ],
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image));
    assert_real_init_ran(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report_state(&report, "kmi_fail").as_deref(), Some("failed"));
    let fail = report_modules(&report, "kmi_fail");
    let error = fail[0]["error"].as_str().unwrap_or("").to_lowercase();
    assert!(
        error.contains("enodev") || error.contains("no such device"),
        "{error:?}"
    );
    let dep = report_modules(&report, "kmi_fail_dep");
    assert_eq!(dep.len(), 1);
    assert_eq!(dep[0]["state"], "blocked", "{}", dep[0]);
    assert_eq!(dep[0]["blocked_by"], "kmi_fail", "{}", dep[0]);
    for m in ["kmi_base", "kmi_a", "kmi_b", "kmi_c"] {
        assert_eq!(report_state(&report, m).as_deref(), Some("loaded"), "{m}");
    }
    let names: Vec<String> = b
        .console
        .proc_modules()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(
        !names.iter().any(|n| n == "kmi_fail" || n == "kmi_fail_dep"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "kmi_c"), "{names:?}");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_dependency_missing_from_modules_dep_fails_only_its_optional_chain() {
    let env = Env::get();
    let dir = env.scratch("fail-unplannable-dep");
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "opt", "modules": ["kmi_a"]},
            {"name": "req", "modules": ["kmi_e"], "required": true}
        ],
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    // kmodinit build refuses to plan such an image, so break a good one:
    // in its compiled index kmi_a still names kmi_base, which loses its own
    // entry and its file, as in an image put together by hand.
    edit_image(&image, |c| {
        use modules_manifest::compiled;
        let base = c
            .path_ending("/kmi_base.ko")
            .expect("kmi_base.ko in the image");
        let index_path = c
            .path_ending(compiled::INDEX_FILE)
            .expect("the compiled index in the image");
        let mut index = compiled::decode(c.data(&index_path).expect("the index"), None).unwrap();
        let kmi_base = modules_manifest::ModuleName::new("kmi_base").unwrap();
        assert!(index.index.modules.remove(&kmi_base).is_some());
        let a = &index.index.modules[&modules_manifest::ModuleName::new("kmi_a").unwrap()];
        assert!(a.deps.contains(&kmi_base), "kmi_a no longer names kmi_base");
        c.file(&index_path, compiled::encode(&index), 0o644);
        assert!(c.remove(&base));
    });
    let b = boot(env.vm(&dir, &image));
    assert_real_init_ran(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let base = report_modules(&report, "kmi_base");
    assert_eq!(base.len(), 1, "{report}");
    assert_eq!(base[0]["state"], "failed", "{}", base[0]);
    assert_eq!(
        base[0]["error"],
        "module kmi_a depends on kmi_base (modules.dep), but kmi_base has no line of its own \
         in modules.dep",
        "{}",
        base[0]
    );
    let a = report_modules(&report, "kmi_a");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["state"], "blocked", "{}", a[0]);
    assert_eq!(a[0]["blocked_by"], "kmi_base", "{}", a[0]);
    assert_eq!(report_state(&report, "kmi_e").as_deref(), Some("loaded"));
    assert!(
        b.console.contains("kmi_base cannot be planned"),
        "the planner's note is not on the console; tail:\n{}",
        b.console.tail(40)
    );
}

/// What a test makes of a compiled index's bytes.
type IndexEdit = dyn Fn(Vec<u8>) -> Vec<u8>;

/// Replaces the image's compiled index by what `edit` makes of its bytes.
fn edit_compiled_index(image: &std::path::Path, edit: &IndexEdit) {
    edit_image(image, |c| {
        let path = c
            .path_ending(modules_manifest::compiled::INDEX_FILE)
            .expect("the compiled index in the image");
        let bytes = c.data(&path).expect("the index").to_vec();
        c.file(&path, edit(bytes), 0o644);
    });
}

/// The release and format checks of the compiled index at boot: an image
/// whose index was written for another kernel release, or in another
/// format version, stops the boot with a message naming both, and the
/// machine does what `on_failure` says; nothing is loaded from it.
#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn an_index_for_another_release_or_format_is_refused_by_name() {
    use modules_manifest::compiled;
    const OTHER: &str = "6.1.0-0-elsewhere";
    let env = Env::get();
    let running = env.kernel.release.clone();
    let manifest = json!({
        "version": 1,
        "chains": [{"name": "c", "modules": ["kmi_a"]}],
        "on_failure": "poweroff"
    });
    let other_release = |bytes: Vec<u8>| {
        let mut index = compiled::decode(&bytes, None).unwrap();
        assert_ne!(index.release, OTHER);
        index.release = OTHER.to_string();
        compiled::encode(&index)
    };
    // The format version is the u32 after the magic.
    let other_format = |mut bytes: Vec<u8>| {
        let at = compiled::MAGIC.len();
        bytes[at..at + 4].copy_from_slice(&(compiled::FORMAT_VERSION + 6).to_le_bytes());
        bytes
    };
    let cases: [(&str, &IndexEdit, String); 2] = [
        (
            "index-release",
            &other_release,
            format!(
                "compiled index is for kernel {OTHER}, but the running kernel is {running}: \
                 rebuild the image for {running}"
            ),
        ),
        (
            "index-format",
            &other_format,
            format!(
                "compiled index format version {}, but this /init reads version {}",
                compiled::FORMAT_VERSION + 6,
                compiled::FORMAT_VERSION
            ),
        ),
    ];
    for (name, edit, message) in cases {
        let dir = env.scratch(name);
        let image = env.fixture_image(&dir, &manifest);
        edit_compiled_index(&image, edit);
        let b = boot(env.vm(&dir, &image));
        assert_fatal_then_power_off(&b);
        assert_eq!(
            b.console.text().matches(message.as_str()).count(),
            // The loader's error line and the fatal banner's.
            2,
            "{name}: the console does not say {message:?} exactly twice; tail:\n{}",
            b.console.tail(40)
        );
        assert!(
            b.console.real_init().is_none(),
            "{name}: the real init must not run"
        );
        // The kernel says this at the first out-of-tree (fixture) module
        // it loads, as in the other failure boots' consoles.
        assert!(
            !b.console
                .contains("loading out-of-tree module taints kernel"),
            "{name}: a module was loaded from a refused index; tail:\n{}",
            b.console.tail(40)
        );
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn failing_required_chain_triggers_on_failure() {
    let env = Env::get();
    let dir = env.scratch("fail-required");
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "broken", "modules": ["kmi_fail_dep"], "required": true},
            {"name": "fine", "modules": ["kmi_e"]}
        ],
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image));
    assert_fatal_then_power_off(&b);
    assert!(
        b.console.real_init().is_none(),
        "the real init must not run"
    );
    let banner_at = b.console.text().find(FATAL_BANNER).unwrap_or(0);
    let explanation = &b.console.text()[banner_at..];
    assert!(
        explanation.contains("broken"),
        "the chain is not named:\n{explanation}"
    );
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn malformed_manifest_is_explained_with_its_line() {
    let env = Env::get();
    let dir = env.scratch("fail-malformed");
    // An image with modules: the loader child, forked before the manifest
    // is parsed, has an index to read and must still load nothing.
    let image = env.fixture_image(
        &dir,
        &json!({"version": 1, "chains": [{"name": "a", "modules": ["kmi_a"]}]}),
    );
    edit_image(&image, |c| {
        c.file(
            IMAGE_MANIFEST,
            b"{\"version\": 1,\n \"chains\": [ {\"name\": \"x\", \"modules\": [ } ]\n}\n".to_vec(),
            0o644,
        );
    });
    let b = boot(env.vm(&dir, &image).append("kmodinit.on_failure=poweroff"));
    assert_fatal_then_power_off(&b);
    let text = b.console.text();
    let at = text.find(FATAL_BANNER).unwrap_or(0);
    let explanation = &text[at..];
    // Reported once, by PID 1: the stopped loader says nothing.
    assert_eq!(text.matches(FATAL_BANNER).count(), 1, "{explanation}");
    assert!(explanation.contains("manifest"), "{explanation}");
    assert!(
        explanation.contains("line 2"),
        "no line number: {explanation}"
    );
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn unknown_module_is_named() {
    let env = Env::get();
    let dir = env.scratch("fail-unknown");
    let image = env.fixture_image(
        &dir,
        &json!({"version": 1, "chains": [{"name": "e", "modules": ["kmi_e"]}]}),
    );
    edit_image(&image, |c| {
        c.file(
            IMAGE_MANIFEST,
            br#"{"version": 1, "chains": [{"name": "ghost", "modules": ["kmi_nonexistent"], "required": true}], "on_failure": "poweroff"}"#.to_vec(),
            0o644,
        );
    });
    let b = boot(env.vm(&dir, &image));
    assert_init_never_died(&b);
    let mentions = b
        .console
        .text()
        .lines()
        .filter(|l| l.contains("kmi_nonexistent") && !l.contains("KMI-"))
        .count();
    assert!(
        mentions > 0,
        "the unknown module is not named; tail:\n{}",
        b.console.tail(40)
    );
    assert!(
        b.powered_off(),
        "a required chain with an unknown module must trigger on_failure=poweroff; tail:\n{}",
        b.console.tail(40)
    );
}

/// A manifest whose root never appears, with the given failure mode.
fn root_missing_image(env: &Env, dir: &std::path::Path, mode: &str) -> std::path::PathBuf {
    env.fixture_image(
        dir,
        &json!({
            "version": 1,
            "chains": [{"name": "e", "modules": ["kmi_e"]}],
            "root": {"device": "UUID=0badc0de-0000-4000-8000-000000000000", "fstype": "ext4", "wait_ms": 1500},
            "on_failure": mode
        }),
    )
}

fn assert_root_explained(b: &Boot) {
    assert_init_never_died(b);
    let text = b.console.text();
    let at = text
        .find(FATAL_BANNER)
        .unwrap_or_else(|| panic!("no fatal banner; tail:\n{}", b.console.tail(40)));
    assert!(
        text[at..].contains("0badc0de-0000-4000-8000-000000000000"),
        "the missing device is not named:\n{}",
        &text[at..]
    );
    assert!(b.console.real_init().is_none());
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn root_missing_poweroff() {
    let env = Env::get();
    let dir = env.scratch("root-missing-poweroff");
    let b = boot(env.vm(&dir, &root_missing_image(env, &dir, "poweroff")));
    assert_root_explained(&b);
    assert!(b.powered_off(), "{:?}\n{}", b.end, b.console.tail(20));
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn root_missing_reboot() {
    let env = Env::get();
    let dir = env.scratch("root-missing-reboot");
    let b = boot(env.vm(&dir, &root_missing_image(env, &dir, "reboot")));
    assert_root_explained(&b);
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
fn root_missing_halt() {
    let env = Env::get();
    let dir = env.scratch("root-missing-halt");
    let b = boot(
        env.vm(&dir, &root_missing_image(env, &dir, "halt"))
            .stop_on("reboot: System halted"),
    );
    assert_root_explained(&b);
    assert_eq!(b.end, End::Marker("reboot: System halted".into()));
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn root_missing_rescue_starts_a_shell_on_the_console() {
    let env = Env::get();
    let dir = env.scratch("root-missing-rescue");
    let b = boot(
        env.vm(&dir, &root_missing_image(env, &dir, "rescue"))
            // Typed once the failure is shown; the console tty keeps it
            // until the shell reads it. The shell computes 42: the echo of
            // the typed line alone cannot match the stop marker.
            .send_when(FATAL_BANNER, "echo KMI-RESCUE-$((6*7))\n")
            .stop_on("KMI-RESCUE-42")
            .timeout(Duration::from_secs(120)),
    );
    assert_root_explained(&b);
    assert_eq!(b.end, End::Marker("KMI-RESCUE-42".into()));
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn wrong_fstype_is_explained_and_on_failure_applies() {
    let env = Env::get();
    let dir = env.scratch("wrong-fstype");
    let (fs, disk) = env.root_disk(&dir);
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true}
        ],
        // ext4 serves ext2 too, but refuses this ext4 filesystem as ext2.
        "root": {"device": format!("UUID={}", fs.uuid), "fstype": "ext2", "flags": "ro"},
        "on_failure": "poweroff"
    });
    let image = env
        .mkimage(&dir, &manifest, None, &[], "gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    let b = boot(env.vm(&dir, &image).disk(&disk));
    assert_fatal_then_power_off(&b);
    let text = b.console.text();
    let at = text.find(FATAL_BANNER).unwrap_or(0);
    assert!(
        text[at..].contains("ext2"),
        "fstype not named:\n{}",
        &text[at..]
    );
    assert!(!text.contains(markers::REAL_INIT));
}

//! Softdeps and aliases resolved as kmod resolves them, on real boots
//! (issue 14's QEMU proofs 5, 6 and 7):
//!
//! - a `post:` softdep of the index (the fixture `kmi_post` declares
//!   `MODULE_SOFTDEP("post: kmi_after")`) loads after its module, which
//!   does not wait for it;
//! - ext4's `softdep pre: crypto-crc32c` resolves, as modprobe resolves
//!   it, to both `crc32c_generic` and `crc32c_intel`: under QEMU's default
//!   `qemu64` CPU (no SSE4.2) `crc32c_intel` refuses with ENODEV, which is a
//!   note, and the boot goes on with the generic one; with SSE4.2 both load;
//! - an f2fs root (`mkfs.f2fs` + `sload.f2fs`, found by `UUID=`) boots to
//!   the real init: f2fs's `softdep pre: crc32` names a builtin module
//!   (`lib/crc32`) and kmod's lookup order finds `crc32_generic` and
//!   `crc32_pclmul` in `modules.alias` first, the shash f2fs allocates when
//!   it mounts.

#![allow(clippy::unwrap_used)] // tests may unwrap

use kmodinit_e2e::{assert_init_never_died, boot, report_modules, report_state, Env};
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{Boot, F2fsImage, RealInitRoot};
use serde_json::json;

/// The report's entry for `name`, listed exactly once.
fn module<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let m = report_modules(report, name);
    assert_eq!(m.len(), 1, "{name} listed {} times", m.len());
    m[0]
}

/// The real init ran as PID 1 and no required chain failed.
fn check_reached_real_init(b: &Boot) -> serde_json::Value {
    let c = &b.console;
    assert_init_never_died(b);
    assert_eq!(
        b.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        c.tail(40)
    );
    assert_eq!(c.real_init().map(|i| i.pid), Some(1), "{}", c.tail(40));
    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report["load"]["failed_required_chains"],
        json!([]),
        "{}",
        c.tail(40)
    );
    report
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_post_softdep_loads_after_its_module() {
    let env = Env::get();
    let dir = env.scratch("kmod-post-softdep");
    // Only kmi_post is asked for; kmi_after comes from modules.softdep. The
    // delay keeps kmi_post in its init long enough that a kmi_after not
    // ordered after it would start inside that window.
    let manifest = json!({
        "version": 1,
        "chains": [{"name": "post", "modules": [{"name": "kmi_post", "params": "delay_ms=300"}],
                    "required": true}],
        "init": {"path": "/sbin/init", "args": []},
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image));
    let report = check_reached_real_init(&b);
    let proc_modules = b.console.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    for name in ["kmi_post", "kmi_after"] {
        let n = proc_modules.iter().filter(|m| m.name == name).count();
        assert_eq!(n, 1, "{name} is {n} times in /proc/modules");
    }
    let post = module(&report, "kmi_post");
    let after = module(&report, "kmi_after");
    assert_eq!(post["state"], "loaded", "{post}");
    assert_eq!(after["state"], "loaded", "{after}");
    assert_eq!(post["reason"], "chain:post");
    assert_eq!(after["reason"], "softdep of kmi_post");
    let post_end = post["end"].as_f64().unwrap();
    let after_start = after["start"].as_f64().unwrap();
    assert!(
        after_start >= post_end,
        "kmi_after started at {after_start}, before kmi_post ended at {post_end}"
    );
    // Listed after its module in the report (plan order is load order).
    let names: Vec<&str> = report["load"]["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("kmi_post") < pos("kmi_after"), "{names:?}");
}

/// The demo's ext4 root (virtio, root by UUID) on `cpu`, or QEMU's default.
fn boot_ext4(name: &str, cpu: Option<&str>) -> Boot {
    let env = Env::get();
    let dir = env.scratch(name);
    let (fs, disk) = env.root_disk(&dir);
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true}
        ],
        "root": {"fstype": "ext4", "flags": "ro", "wait_ms": 10000},
        "init": {"path": "/sbin/init", "args": []},
        "on_failure": "poweroff"
    });
    let image = env
        .mkimage(&dir, &manifest, None, &[], "gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vm = env
        .vm(&dir, &image)
        .disk(&disk)
        .append(format!("root=UUID={}", fs.uuid));
    if let Some(cpu) = cpu {
        vm = vm.cpu(cpu);
    }
    boot(vm)
}

/// Both matches of crypto-crc32c were planned as ext4's softdep, each an
/// alternative of that alias, before ext4.
fn check_crc32c_alternatives(report: &serde_json::Value) {
    for name in ["crc32c_generic", "crc32c_intel"] {
        let m = module(report, name);
        assert_eq!(m["alternative"], "crypto-crc32c", "{m}");
        assert_eq!(m["reason"], "softdep of ext4", "{m}");
        assert!(m["start"].as_f64().is_some(), "{name} was not tried: {m}");
        let ext4 = module(report, "ext4");
        assert!(m["end"].as_f64().unwrap() <= ext4["start"].as_f64().unwrap());
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn an_alias_with_a_provider_the_cpu_refuses_tries_both_and_boots() {
    // qemu64 has no SSE4.2: crc32c_intel's init answers ENODEV.
    let b = boot_ext4("kmod-crc32c-qemu64", None);
    let report = check_reached_real_init(&b);
    let c = &b.console;
    check_crc32c_alternatives(&report);
    assert_eq!(
        report_state(&report, "crc32c_generic").as_deref(),
        Some("loaded")
    );
    let intel = module(&report, "crc32c_intel");
    assert_eq!(intel["state"], "failed", "{intel}");
    assert!(
        intel["error"].as_str().unwrap().contains("ENODEV"),
        "{intel}"
    );
    assert_eq!(
        intel["warnings"],
        json!([
            "one of the modules crypto-crc32c matched (crc32c_generic, crc32c_intel), \
                all tried as modprobe does; loaded: crc32c_generic"
        ])
    );
    // On the console as a note, not an error.
    assert!(
        c.contains(
            "kmodinit: crc32c_intel, one of the modules crypto-crc32c matched, did not load"
        ),
        "{}",
        c.tail(60)
    );
    assert!(!c.contains("failed to load crc32c_intel"), "{}", c.tail(60));
    for name in ["ext4", "jbd2", "virtio_blk"] {
        assert_eq!(
            report_state(&report, name).as_deref(),
            Some("loaded"),
            "{name}"
        );
    }
    let proc_modules = c.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    assert!(proc_modules.iter().any(|m| m.name == "crc32c_generic"));
    assert!(!proc_modules.iter().any(|m| m.name == "crc32c_intel"));
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn with_sse4_2_both_providers_of_the_alias_load() {
    // SSE4.2 alone makes the host's busybox (glibc's ifuncs) use SSSE3,
    // SSE4.1 and POPCNT too; no cx16 (see CPU_WITHOUT_CX16).
    let b = boot_ext4(
        "kmod-crc32c-sse42",
        Some("qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt"),
    );
    let report = check_reached_real_init(&b);
    check_crc32c_alternatives(&report);
    for name in ["crc32c_generic", "crc32c_intel"] {
        let m = module(&report, name);
        assert_eq!(m["state"], "loaded", "{m}");
        assert_eq!(m["warnings"], json!([]), "{m}");
    }
    let proc_modules = b.console.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    for name in ["crc32c_generic", "crc32c_intel"] {
        assert!(proc_modules.iter().any(|m| m.name == name), "{name}");
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn an_f2fs_root_boots_to_the_real_init() {
    let env = Env::get();
    let dir = env.scratch("kmod-f2fs-root");
    let tree = dir.join("rootfs");
    RealInitRoot::new()
        .populate(&tree)
        .unwrap_or_else(|e| panic!("real-init root: {e}"));
    let fs = F2fsImage::new(128).unwrap_or_else(|e| panic!("uuid: {e}"));
    let disk = dir.join("root.img");
    fs.build(&tree, &disk)
        .unwrap_or_else(|e| panic!("f2fs root (f2fs-tools from make deps): {e}"));
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["f2fs"], "required": true}
        ],
        "root": {"fstype": "f2fs", "flags": "ro", "wait_ms": 10000},
        "init": {"path": "/sbin/init", "args": []},
        "on_failure": "poweroff"
    });
    let image = env
        .mkimage(&dir, &manifest, None, &[], "gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    let b = boot(
        env.vm(&dir, &image)
            .disk(&disk)
            .append(format!("root=UUID={}", fs.uuid)),
    );
    let c = &b.console;
    let report = check_reached_real_init(&b);
    let root = c.line_from(markers::ROOT).expect("root line");
    assert!(root.contains("/dev/vda / f2fs"), "{root}");
    assert!(!c.contains("Cannot load crc32 driver"), "{}", c.tail(60));
    assert_eq!(report_state(&report, "f2fs").as_deref(), Some("loaded"));
    // `crc32` is builtin, but modules.alias names it first: its matches
    // were tried as f2fs's softdep, and the generic one loaded (qemu64 has
    // no PCLMULQDQ, so crc32_pclmul may refuse: a note).
    let generic = module(&report, "crc32_generic");
    assert_eq!(generic["state"], "loaded", "{generic}");
    assert_eq!(generic["reason"], "softdep of f2fs");
    assert_eq!(generic["alternative"], "crc32");
    let pclmul = module(&report, "crc32_pclmul");
    assert_eq!(pclmul["alternative"], "crc32");
    assert!(pclmul["start"].as_f64().is_some(), "not tried: {pclmul}");
    assert!(report_modules(&report, "crc32").is_empty());
}

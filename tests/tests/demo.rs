//! Group 1, the demo: the real Debian `virtio_pci`, `virtio_blk`, `ext4`
//! loaded from the manifest, the root found by UUID, by `/dev/vda`, by
//! PARTUUID, the real init run as PID 1 with its arguments, and the report
//! surviving switch_root with every module loaded once.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::path::Path;

use kmodinit_e2e::{assert_init_never_died, boot, report_modules, Env, DEMO_MODULES};
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::Boot;
use serde_json::json;

/// The demo manifest; the root device comes from the command line.
fn demo_manifest(init_args: &[&str]) -> serde_json::Value {
    json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true}
        ],
        "root": {"fstype": "ext4", "flags": "ro", "wait_ms": 10000},
        "init": {"path": "/sbin/init", "args": init_args},
        "on_failure": "poweroff"
    })
}

fn boot_demo(dir: &Path, disk: &Path, append: &str, init_args: &[&str]) -> Boot {
    let env = Env::get();
    let image = env
        .mkimage(dir, &demo_manifest(init_args), None, &[], "gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    boot(env.vm(dir, &image).disk(disk).append(append))
}

/// What every demo boot must show.
fn check_demo_boot(b: &Boot, root_dev: &str) {
    let c = &b.console;
    assert_init_never_died(b);
    assert_eq!(
        b.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        c.tail(40)
    );
    let init = c.real_init().expect("real init marker");
    assert_eq!(init.pid, 1, "the real init must be PID 1");
    let root = c.line_from(markers::ROOT).expect("root line");
    assert!(root.contains(&format!("{root_dev} / ext4")), "{root}");

    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report["boottime_exec"].as_f64().is_some(),
        "no boottime_exec"
    );
    let modules = report["load"]["modules"].as_array().expect("load.modules");
    // Every module at most once in the report, and each demo module loaded.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for m in modules {
        *seen.entry(m["name"].as_str().unwrap_or("?")).or_default() += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "listed twice: {seen:?}");
    for name in DEMO_MODULES.iter().chain(["jbd2", "mbcache"].iter()) {
        let m = report_modules(&report, name);
        assert_eq!(m.len(), 1, "{name} not listed once");
        assert_eq!(m[0]["state"], "loaded", "{name}: {}", m[0]);
    }
    // What the report says was loaded is in the kernel, once.
    let proc_modules = c.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    for m in modules.iter().filter(|m| m["state"] == "loaded") {
        let name = m["name"].as_str().unwrap_or("?");
        let n = proc_modules.iter().filter(|p| p.name == name).count();
        assert_eq!(n, 1, "{name} in /proc/modules {n} times");
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_root_by_uuid_real_init_gets_its_arguments() {
    let env = Env::get();
    let dir = env.scratch("demo-uuid");
    let (fs, disk) = env.root_disk(&dir);
    let b = boot_demo(
        &dir,
        &disk,
        &format!("root=UUID={} single -- foo", fs.uuid),
        &["from-manifest"],
    );
    check_demo_boot(&b, "/dev/vda");
    let init = b.console.real_init().expect("real init marker");
    for arg in ["from-manifest", "single", "foo"] {
        assert!(
            init.args.iter().any(|a| a == arg),
            "argument {arg:?} did not reach the real init: {:?}",
            init.args
        );
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_root_by_dev_vda() {
    let env = Env::get();
    let dir = env.scratch("demo-vda");
    let (_, disk) = env.root_disk(&dir);
    let b = boot_demo(&dir, &disk, "root=/dev/vda", &[]);
    check_demo_boot(&b, "/dev/vda");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_root_by_partuuid_on_gpt() {
    let env = Env::get();
    let dir = env.scratch("demo-partuuid");
    let (gpt, disk) = env.gpt_root_disk(&dir);
    let b = boot_demo(
        &dir,
        &disk,
        &format!("root=PARTUUID={}", gpt.part_uuid),
        &[],
    );
    check_demo_boot(&b, "/dev/vda1");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_root_by_label_from_the_manifest() {
    let env = Env::get();
    let dir = env.scratch("demo-label");
    let (fs, disk) = env.root_disk(&dir);
    let mut manifest = demo_manifest(&[]);
    manifest["root"]["device"] = json!(format!("LABEL={}", fs.label));
    let image = env
        .mkimage(&dir, &manifest, None, &[], "zstd")
        .unwrap_or_else(|e| panic!("{e}"));
    let b = boot(env.vm(&dir, &image).disk(&disk));
    check_demo_boot(&b, "/dev/vda");
}

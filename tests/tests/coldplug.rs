//! Coldplug on the real Debian kernel: the manifest names only `ext4`; the
//! virtio disk's drivers are found by modalias (virtio_pci from the PCI
//! device the walk of /sys sees, virtio_blk from the virtio device that
//! appears only once virtio_pci has bound, through the uevent socket), and
//! a `deny` glob keeps a matched driver out with a note saying which glob.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;

use kmodinit_e2e::{assert_init_never_died, boot, report_modules, Env, BUSYBOX};
use kmodinit_qemu::rootfs::markers;
use serde_json::json;

/// The image carries the virtio and block drivers (none of them in a
/// chain) for coldplug to find.
const COLDPLUG_MODULES: &[&str] = &[
    "--coldplug-modules",
    "kernel/drivers/virtio",
    "kernel/drivers/block/virtio_blk.ko",
];

fn manifest(coldplug: serde_json::Value) -> serde_json::Value {
    json!({
        "version": 1,
        "chains": [{"name": "fs", "modules": ["ext4"], "required": true}],
        "coldplug": coldplug,
        "root": {"fstype": "ext4", "flags": "ro", "wait_ms": 10000},
        "on_failure": "poweroff"
    })
}

fn image(dir: &Path, m: &serde_json::Value) -> std::path::PathBuf {
    Env::get()
        .mkimage_with(dir, m, None, &[], "gzip", COLDPLUG_MODULES)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn one<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let m = report_modules(report, name);
    assert_eq!(m.len(), 1, "{name} not listed once: {m:?}");
    m[0]
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn coldplug_finds_the_virtio_disk_drivers_by_modalias() {
    let env = Env::get();
    let dir = env.scratch("coldplug-virtio");
    let (fs, disk) = env.root_disk(&dir);
    let img = image(&dir, &manifest(json!({"enabled": true})));
    let b = boot(
        env.vm(&dir, &img)
            .disk(&disk)
            .append(format!("root=UUID={}", fs.uuid)),
    );
    let c = &b.console;
    assert_init_never_died(&b);
    assert_eq!(
        b.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        c.tail(40)
    );
    let root = c.line_from(markers::ROOT).expect("root line");
    assert!(root.contains("/dev/vda / ext4"), "{root}");
    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    let pci = one(&report, "virtio_pci");
    assert_eq!(pci["state"], "loaded", "{pci}");
    let why = pci["reason"].as_str().unwrap_or("");
    assert!(why.starts_with("modalias:pci:v00001AF4"), "{pci}");
    // virtio_blk's device exists only after virtio_pci bound: found
    // through the uevent socket, not the walk.
    let blk = one(&report, "virtio_blk");
    assert_eq!(blk["state"], "loaded", "{blk}");
    let why = blk["reason"].as_str().unwrap_or("");
    assert!(why.starts_with("modalias:virtio:d00000002v"), "{blk}");
    // (Its uevent comes while virtio_pci's init still probes: the device is
    // added inside the probe, so virtio_blk may start before that ends.)
    assert!(
        blk["start"].as_f64().unwrap() > pci["start"].as_f64().unwrap(),
        "virtio_blk started before virtio_pci: {blk} {pci}"
    );
    let ext4 = one(&report, "ext4");
    assert_eq!(ext4["state"], "loaded", "{ext4}");
    // Each once in the kernel.
    let proc_modules = c.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    for name in ["virtio_pci", "virtio_blk", "ext4"] {
        let n = proc_modules.iter().filter(|p| p.name == name).count();
        assert_eq!(n, 1, "{name} in /proc/modules {n} times");
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_deny_glob_keeps_a_matched_driver_out_and_says_why() {
    let env = Env::get();
    let dir = env.scratch("coldplug-deny");
    let (_, disk) = env.root_disk(&dir);
    // No root: the real init runs inside the initramfs and prints the
    // report (the disk stays unmounted: its driver is denied).
    let mut m = manifest(json!({"enabled": true, "deny": ["virtio_b*"]}));
    m.as_object_mut().unwrap().remove("root");
    let script = env.real_init_script(&dir);
    let bb = Path::new(BUSYBOX);
    let img = env
        .mkimage_with(
            &dir,
            &m,
            None,
            &[
                (bb, "/bin/busybox"),
                (bb, "/bin/sh"),
                (&script, "/sbin/init"),
            ],
            "gzip",
            COLDPLUG_MODULES,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let b = boot(env.vm(&dir, &img).disk(&disk));
    let c = &b.console;
    assert_init_never_died(&b);
    assert_eq!(
        c.real_init().map(|i| i.pid),
        Some(1),
        "the real init did not run; tail:\n{}",
        c.tail(40)
    );
    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    // virtio_pci was still found and loaded (the glob names only _b*).
    let pci = one(&report, "virtio_pci");
    assert_eq!(pci["state"], "loaded", "{pci}");
    assert!(report_modules(&report, "virtio_blk").is_empty());
    let notes: Vec<&str> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert!(
        notes.iter().any(
            |n| n.contains("virtio_blk matches modalias virtio:d00000002v")
                && n.contains("deny glob \"virtio_b*\"")
        ),
        "no note saying which glob kept virtio_blk out: {notes:?}"
    );
    let proc_modules = c.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    assert!(!proc_modules.iter().any(|p| p.name == "virtio_blk"));
}

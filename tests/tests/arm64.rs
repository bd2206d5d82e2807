//! arm64: the `/init` of `make init ARCH=arm64` (and its fault-injection
//! twin, `make init-faults ARCH=arm64`) on Debian's arm64 kernel of the
//! same release as the x86 one (`make deps` extracts it under
//! `build/arm64/root`), QEMU's `virt` board, TCG. Debian's modules: the
//! demo to the real init on a virtio disk found by UUID,
//! coldplug finding the virtio drivers by modalias (PCI and the device
//! tree's `of:` aliases), a required chain that fails, a loader panic, and
//! the kernel's `fs-vfat` request through the helper; and the fixture
//! modules cross-built for arm64, a shared dependency loaded once with its
//! params.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::process::Command;
use std::sync::OnceLock;

use kmodinit_e2e::{
    assert_init_never_died, boot, edit_image, report_modules, report_state, vfat_disk, Env,
    FATAL_BANNER,
};
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{run_command, Arch, Boot, End, Ext4Image};
use serde_json::json;

/// The arm64 environment (`build/arm64/init`, the arm64 kernel, busybox).
fn env() -> &'static Env {
    Env::arm64()
}

/// The same with `build/arm64/init-faults`.
fn faults() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| env().with_init("KMODINIT_ARM64_INIT_FAULTS", "init-faults"))
}

/// The demo's chains; the root comes from the command line.
fn demo_manifest() -> serde_json::Value {
    json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true}
        ],
        "root": {"fstype": "ext4", "flags": "ro", "wait_ms": 10000},
        "init": {"path": "/sbin/init", "args": ["arm64"]},
        "on_failure": "poweroff"
    })
}

fn one<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let m = report_modules(report, name);
    assert_eq!(m.len(), 1, "{name} not listed once: {report}");
    m[0]
}

/// The boot reached the real init as PID 1 on this kernel and machine.
fn assert_real_init_on_arm64(b: &Boot) {
    assert_init_never_died(b);
    assert_eq!(
        b.end,
        End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        b.console.tail(40)
    );
    assert!(
        b.console.contains("Machine model: linux,dummy-virt"),
        "not QEMU's arm64 virt board; head:\n{}",
        b.console
            .text()
            .lines()
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(b.console.contains(&env().kernel.release));
    let init = b.console.real_init().expect("real init marker");
    assert_eq!(init.pid, 1, "the real init must be PID 1");
}

/// Each loaded module of the report is in `/proc/modules` once.
fn assert_loaded_once_in_the_kernel(b: &Boot, report: &serde_json::Value) {
    let proc_modules = b.console.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    for m in report["load"]["modules"].as_array().unwrap() {
        if m["state"] == "loaded" {
            let name = m["name"].as_str().unwrap();
            let n = proc_modules.iter().filter(|p| p.name == name).count();
            assert_eq!(n, 1, "{name} in /proc/modules {n} times");
        }
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_boots_the_real_init_from_a_virtio_disk_found_by_uuid() {
    let env = env();
    assert_eq!(env.arch, Arch::Arm64);
    let dir = env.scratch("arm64-demo");
    let (fs, disk) = env.root_disk(&dir);
    // The host tool on this x86-64 machine builds the arm64 image.
    let manifest = dir.join("manifest.json");
    std::fs::write(&manifest, demo_manifest().to_string()).unwrap();
    let image = dir.join("initrd.img");
    run_command(
        Command::new(&env.host_tool)
            .arg("build")
            .arg("--manifest")
            .arg(&manifest)
            .arg("--modules-root")
            .arg(env.kernel.modules_root().unwrap())
            .arg("--kernel-release")
            .arg(&env.kernel.release)
            .arg("--init")
            .arg(&env.init)
            .arg("--output")
            .arg(&image),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let b = boot(
        env.vm(&dir, &image)
            .disk(&disk)
            .append(format!("root=UUID={}", fs.uuid)),
    );
    assert_real_init_on_arm64(&b);
    let init = b.console.real_init().unwrap();
    assert!(init.args.iter().any(|a| a == "arm64"), "{:?}", init.args);
    let root = b.console.line_from(markers::ROOT).expect("root line");
    assert!(root.contains("/dev/vda / ext4"), "{root}");
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    for name in ["virtio_pci", "virtio_blk", "ext4", "jbd2", "mbcache"] {
        assert_eq!(one(&report, name)["state"], "loaded", "{name}: {report}");
    }
    assert!(report["boottime_exec"].as_f64().is_some(), "{report}");
    assert_loaded_once_in_the_kernel(&b, &report);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn coldplug_finds_the_virtio_drivers_by_pci_and_device_tree_aliases() {
    let env = env();
    let dir = env.scratch("arm64-coldplug");
    let (fs, disk) = env.root_disk(&dir);
    let manifest = json!({
        "version": 1,
        "chains": [{"name": "fs", "modules": ["ext4"], "required": true}],
        "coldplug": {"enabled": true},
        "root": {"fstype": "ext4", "flags": "ro", "wait_ms": 10000},
        "on_failure": "poweroff"
    });
    let image = env
        .mkimage_with(
            &dir,
            &manifest,
            None,
            &[],
            "gzip",
            &[
                "--coldplug-modules",
                "kernel/drivers/virtio",
                "kernel/drivers/block/virtio_blk.ko",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let b = boot(
        env.vm(&dir, &image)
            .disk(&disk)
            .append(format!("root=UUID={}", fs.uuid)),
    );
    assert_real_init_on_arm64(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    // The disk is a virtio-pci device on the virt board's PCIe host.
    let pci = one(&report, "virtio_pci");
    assert_eq!(pci["state"], "loaded", "{pci}");
    assert!(
        pci["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("modalias:pci:v00001AF4"),
        "{pci}"
    );
    let blk = one(&report, "virtio_blk");
    assert_eq!(blk["state"], "loaded", "{blk}");
    assert!(
        blk["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("modalias:virtio:d00000002v"),
        "{blk}"
    );
    // The board's virtio-mmio slots are device-tree nodes: matched through
    // the `of:` aliases of modules.alias.
    let mmio = one(&report, "virtio_mmio");
    assert_eq!(mmio["state"], "loaded", "{mmio}");
    let reason = mmio["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("modalias:of:N") && reason.contains("Cvirtio,mmio"),
        "{mmio}"
    );
    assert_loaded_once_in_the_kernel(&b, &report);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_failed_required_chain_carries_out_on_failure() {
    let env = env();
    let dir = env.scratch("arm64-required");
    let (fs, disk) = env.root_disk(&dir);
    let image = env
        .mkimage(&dir, &demo_manifest(), None, &[], "none")
        .unwrap_or_else(|e| panic!("{e}"));
    // The image the builder refused to make: virtio_blk.ko is gone.
    edit_image(&image, |c| {
        let path = c
            .path_ending("/virtio_blk.ko")
            .expect("virtio_blk.ko in the image");
        assert!(c.remove(&path));
    });
    let b = boot(
        env.vm(&dir, &image)
            .disk(&disk)
            .append(format!("root=UUID={}", fs.uuid)),
    );
    assert_init_never_died(&b);
    let text = b.console.text();
    let at = text
        .find(FATAL_BANNER)
        .unwrap_or_else(|| panic!("no fatal banner; tail:\n{}", b.console.tail(40)));
    let why = &text[at..];
    assert!(why.contains("chain \"storage\""), "{why}");
    assert!(why.contains("virtio_blk"), "{why}");
    assert!(why.contains("Now powering off."), "{why}");
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

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_loader_panic_fails_its_module_and_the_boot_goes_on() {
    let env = faults();
    let dir = env.scratch("arm64-loader-panic");
    // Optional chains only, the real init inside the initramfs; one worker.
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "victim", "modules": ["vfat"]},
            {"name": "other", "modules": ["loop"]}
        ],
        "jobs": 1,
        "init": {"path": "/sbin/init"},
        "on_failure": "poweroff"
    });
    let script = env.real_init_script(&dir);
    let bb = env.busybox.as_path();
    let image = env
        .mkimage(
            &dir,
            &manifest,
            None,
            &[
                (bb, "/bin/busybox"),
                (bb, "/bin/sh"),
                (&script, "/sbin/init"),
            ],
            "gzip",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let b = boot(
        env.vm(&dir, &image)
            .append("kmodinit.fault=panic-insert:vfat"),
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
    assert_eq!(b.console.real_init().map(|i| i.pid), Some(1));
    let hook = b
        .console
        .line_from("kmodinit: loader: panic in thread ")
        .unwrap_or_else(|| panic!("no panic line; tail:\n{}", b.console.tail(40)));
    assert!(hook.contains("panic while inserting vfat"), "{hook}");
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let vfat = one(&report, "vfat");
    assert_eq!(vfat["state"], "failed", "{vfat}");
    let error = vfat["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("loader died during this insertion: panic: ")
            && error.contains("injected fault (kmodinit.fault=panic-insert:vfat)"),
        "{error}"
    );
    // fat came first (vfat's dependency, one worker): loaded.
    assert_eq!(report_state(&report, "fat").as_deref(), Some("loaded"));
    for m in report["load"]["modules"].as_array().unwrap() {
        let state = m["state"].as_str().unwrap_or("");
        assert!(state == "loaded" || state == "failed", "{m}");
    }
    assert_loaded_once_in_the_kernel(&b, &report);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn the_kernels_fs_vfat_request_loads_through_the_helper() {
    let env = env();
    let dir = env.scratch("arm64-helper");
    let init = env.real_init().before_report(
        r#"if mount -t vfat /dev/vdb /tmp; then echo "KMI-VFAT mounted $(grep ' /tmp ' /proc/mounts)"; else echo "KMI-VFAT failed"; fi
i=0
while ! grep -q 'kernel request:fs-vfat' /run/kmodinit/report.json 2>/dev/null && [ $i -lt 120 ]; do
  sleep 1; i=$((i+1))
done"#,
    );
    let tree = dir.join("rootfs");
    init.populate(&tree).unwrap();
    let fs = Ext4Image::new(32).unwrap();
    let root = dir.join("root.img");
    fs.build(&tree, &root).unwrap();
    let fat = vfat_disk(&dir);
    let image = env
        .mkimage_with(
            &dir,
            &demo_manifest(),
            None,
            &[],
            "gzip",
            &["--extra-modules", "vfat,nls_cp437,nls_ascii"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let b = boot(env.vm(&dir, &image).disk(&root).disk(&fat).append(format!(
        "root=UUID={} kmodinit.helper_linger=600000",
        fs.uuid
    )));
    assert_real_init_on_arm64(&b);
    let mounted = b.console.line_from("KMI-VFAT ").unwrap_or("");
    assert!(
        mounted.starts_with("KMI-VFAT mounted /dev/vdb /tmp vfat"),
        "{mounted}\n{}",
        b.console.tail(40)
    );
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let vfat = one(&report, "vfat");
    assert_eq!(vfat["reason"], "kernel request:fs-vfat", "{vfat}");
    assert_eq!(vfat["state"], "loaded", "{vfat}");
    assert_eq!(report_state(&report, "fat").as_deref(), Some("loaded"));
    assert_loaded_once_in_the_kernel(&b, &report);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn cross_built_fixtures_load_once_with_their_params() {
    // The fixture modules, built for arm64 against its headers with
    // gcc-aarch64-linux-gnu: kmi_base is both chains' dependency.
    let env = env();
    let dir = env.scratch("arm64-fixtures");
    let fixtures = env.fixtures();
    let machine = Command::new("file")
        .arg(&fixtures.built[0].1)
        .output()
        .unwrap();
    let machine = String::from_utf8_lossy(&machine.stdout);
    assert!(machine.contains("ARM aarch64"), "{machine}");
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "left", "modules": ["kmi_a", {"name": "kmi_c", "params": "tag=c-chain"}]},
            {"name": "right", "modules": ["kmi_b"]}
        ],
        "modules": {"kmi_base": {"params": "tag=from-modules"}},
        "init": {"path": "/sbin/init", "args": []},
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image).append("kmi_b.tag=from-cmdline"));
    assert_real_init_on_arm64(&b);
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    for name in ["kmi_base", "kmi_a", "kmi_b", "kmi_c"] {
        assert_eq!(one(&report, name)["state"], "loaded", "{name}: {report}");
    }
    assert_loaded_once_in_the_kernel(&b, &report);
    let params = b.console.module_params().unwrap_or_else(|e| panic!("{e}"));
    for (key, value) in [
        ("kmi_base.tag", "from-modules"),
        ("kmi_b.tag", "from-cmdline"),
        ("kmi_c.tag", "c-chain"),
        ("kmi_a.tag", "unset"),
    ] {
        assert_eq!(
            params.get(key).map(String::as_str),
            Some(value),
            "{key}: {params:?}"
        );
    }
}

//! The kernel's module helper: `/init` answering `/proc/sys/kernel/modprobe`
//! (issue 14's QEMU proofs 3 and 4). Modules in the image that no chain
//! names (`kmodinit-mkimage --extra-modules`) load when the kernel asks for
//! them, through the loader child, each once, with the reason `kernel
//! request:NAME` in report.json; the kernel gets its own helper back when
//! the loader stops serving.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;

use kmodinit_e2e::{assert_init_never_died, boot, report_modules, vfat_disk, Env, BUSYBOX};
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{Ext4Image, RealInitRoot};
use serde_json::json;

/// The one reason a module brought in by the request `name` may carry.
fn reason_of(report: &serde_json::Value, module: &str) -> String {
    let m = report_modules(report, module);
    assert_eq!(m.len(), 1, "{module} not listed once: {report}");
    m[0]["reason"].as_str().unwrap_or("").to_owned()
}

/// Proof (3): vfat and fat are in the image but in no chain; the real init
/// (on an ext4 root) mounts a FAT disk, the kernel asks for `fs-vfat`, and
/// the loader (still serving after the handover) loads fat then vfat.
#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_filesystem_in_no_chain_mounts_from_the_real_init_through_the_helper() {
    let env = Env::get();
    let dir = env.scratch("helper-vfat");
    // Mount the FAT disk, then wait (bounded) until the reporter has added
    // what the request loaded, before the report is printed.
    let init = RealInitRoot::new().before_report(
        r#"if mount -t vfat /dev/vdb /tmp; then echo "KMI-VFAT mounted $(grep ' /tmp ' /proc/mounts)"; else echo "KMI-VFAT failed"; fi
echo "KMI-MODPROBE $(cat /proc/sys/kernel/modprobe)"
i=0
while ! grep -q 'kernel request:fs-vfat' /run/kmodinit/report.json 2>/dev/null && [ $i -lt 120 ]; do
  sleep 1; i=$((i+1))
done
L=$(cat /proc/sys/kernel/modprobe); L=${L#/proc/}; L=${L%/exe}
i=0
while [ -e /proc/$L/root/init ] && [ $i -lt 100 ]; do usleep 100000; i=$((i+1)); done
echo "KMI-OLDROOT [$(ls -A /proc/$L/root | tr '\n' ' ')]""#,
    );
    let tree = dir.join("rootfs");
    init.populate(&tree).unwrap();
    let fs = Ext4Image::new(32).unwrap();
    let root = dir.join("root.img");
    fs.build(&tree, &root).unwrap();
    let fat = vfat_disk(&dir);
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true}
        ],
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
            &["--extra-modules", "vfat,nls_cp437,nls_utf8,nls_ascii"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // A long linger: the real init's mount comes after the handover, and
    // the loader must still serve then (whatever the host's speed).
    let b = boot(env.vm(&dir, &image).disk(&root).disk(&fat).append(format!(
        "root=UUID={} kmodinit.helper_linger=600000",
        fs.uuid
    )));
    let c = &b.console;
    assert_init_never_died(&b);
    assert_eq!(
        b.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "tail:\n{}",
        c.tail(40)
    );
    let mounted = c.line_from("KMI-VFAT ").unwrap_or("");
    assert!(
        mounted.starts_with("KMI-VFAT mounted /dev/vdb /tmp vfat"),
        "{mounted}\n{}",
        c.tail(40)
    );
    // While the loader serves, the kernel's helper is ours: the loader's
    // executable, `/init` itself through /proc (no copy of it).
    let helper = c.line_from("KMI-MODPROBE ").unwrap_or("");
    let path = helper.trim_start_matches("KMI-MODPROBE ");
    assert!(
        path.strip_prefix("/proc/")
            .and_then(|p| p.strip_suffix("/exe"))
            .is_some_and(|pid| pid.parse::<u32>().is_ok_and(|n| n > 1)),
        "{helper}"
    );
    // The initramfs, still the loader's root, was emptied after the
    // handover (in the background, while the real init started).
    let old_root = c.line_from("KMI-OLDROOT ").unwrap_or("");
    assert!(old_root.starts_with("KMI-OLDROOT ["), "{old_root}");
    for gone in ["init", "lib", "etc"] {
        assert!(
            !old_root.split([' ', '[', ']']).any(|e| e == gone),
            "{gone} still in the initramfs: {old_root}"
        );
    }
    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason_of(&report, "vfat"), "kernel request:fs-vfat");
    let fat_reason = reason_of(&report, "fat");
    assert!(
        fat_reason == "dependency of vfat" || fat_reason == "kernel request:fs-vfat",
        "{fat_reason}"
    );
    for m in ["vfat", "fat"] {
        assert_eq!(report_modules(&report, m)[0]["state"], "loaded", "{report}");
    }
    // In no chain: the boot plan did not load them, the request did.
    assert!(report["load"]["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "vfat")
        .all(|m| m["chains"].as_array().is_none_or(|c| c.is_empty())));
    let proc_modules = c.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    for m in ["vfat", "fat"] {
        let n = proc_modules.iter().filter(|p| p.name == m).count();
        assert_eq!(n, 1, "{m} in /proc/modules {n} times");
    }
    assert!(
        c.contains("kernel request:fs-vfat"),
        "the request is logged; tail:\n{}",
        c.tail(40)
    );
}

/// Proof (4): kmi_crypto's init allocates wp512, which only wp512.ko (in
/// the image, no dependency of kmi_crypto, in no chain) provides; the
/// request comes while the boot's own load runs, and kmi_crypto loads.
/// After a short linger the kernel's own helper path is back; `/init` run
/// as `modprobe` then loads from the image itself.
#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_module_whose_init_requests_an_algorithm_loads_when_its_provider_is_in_the_image() {
    let env = Env::get();
    let dir = env.scratch("helper-crypto");
    // The loader restores the kernel's value as it stops, which may be a
    // moment after the exec: wait (bounded) for it.
    let init = RealInitRoot::new().before_report(
        r#"i=0
while case "$(cat /proc/sys/kernel/modprobe)" in /proc/*/exe) true;; *) false;; esac && [ $i -lt 60 ]; do
  sleep 1; i=$((i+1))
done
echo "KMI-MODPROBE $(cat /proc/sys/kernel/modprobe)"
echo "KMI-HELPER-FILES $(ls /run/kmodinit)"
ln -s /init /run/modprobe
/run/modprobe -q -- fs-vfat; echo "KMI-STANDALONE fs-vfat rc=$?"
/run/modprobe -q -- fs-vfat; echo "KMI-STANDALONE again rc=$?"
/run/modprobe -q -- no-such-module; echo "KMI-STANDALONE missing rc=$?"
/run/modprobe -q -- ../lib; echo "KMI-STANDALONE path rc=$?"
/run/modprobe -r vfat; echo "KMI-STANDALONE option rc=$?""#,
    );
    let script = env.real_init_script_of(&dir, &init);
    let manifest = json!({
        "version": 1,
        "chains": [{"name": "crypto", "modules": ["kmi_crypto"], "required": true}],
        "on_failure": "poweroff"
    });
    let bb = Path::new(BUSYBOX);
    let image = env
        .mkimage_with(
            &dir,
            &manifest,
            Some(&env.fixtures().stage),
            &[
                (bb, "/bin/busybox"),
                (bb, "/bin/sh"),
                (&script, "/sbin/init"),
            ],
            "none",
            &["--extra-modules", "wp512,vfat"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // A short linger: the loader serves a moment after the exec, then
    // gives the kernel its helper back (or PID 1 does, if the loader has
    // already ended at the exec); the script waits for it.
    let b = boot(env.vm(&dir, &image).append("kmodinit.helper_linger=1000"));
    let c = &b.console;
    assert_init_never_died(&b);
    assert_eq!(
        b.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "tail:\n{}",
        c.tail(40)
    );
    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    let k = &report_modules(&report, "kmi_crypto");
    assert_eq!(k.len(), 1, "{report}");
    assert_eq!(k[0]["state"], "loaded", "{}", k[0]);
    assert_eq!(reason_of(&report, "wp512"), "kernel request:crypto-wp512");
    assert_eq!(report_modules(&report, "wp512")[0]["state"], "loaded");
    assert!(c.contains("kmi_crypto: wp512 allocated"), "{}", c.tail(40));
    let proc_modules = c.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(proc_modules.iter().filter(|p| p.name == "wp512").count(), 1);
    // The kernel's own value is back (Debian's kernel: /sbin/modprobe,
    // which the initramfs does not have), the helper's files are gone.
    let helper = c.line_from("KMI-MODPROBE ").unwrap_or("");
    assert_eq!(helper, "KMI-MODPROBE /sbin/modprobe", "{}", c.tail(40));
    let files = c.line_from("KMI-HELPER-FILES ").unwrap_or("");
    assert!(
        !files.contains("modprobe") && !files.contains("helper.sock"),
        "{files}"
    );
    // No loader serves any more: the helper, run as a person would
    // (`/init` linked as `modprobe`), loads from the image itself, with
    // modprobe's exit statuses.
    for (what, rc) in [
        ("fs-vfat", 0),
        ("again", 0),
        ("missing", 1),
        ("path", 1),
        ("option", 1),
    ] {
        let line = c
            .line_from(&format!("KMI-STANDALONE {what} "))
            .unwrap_or("");
        assert_eq!(
            line,
            format!("KMI-STANDALONE {what} rc={rc}"),
            "{}",
            c.tail(40)
        );
    }
    for m in ["vfat", "fat"] {
        assert_eq!(
            proc_modules.iter().filter(|p| p.name == m).count(),
            1,
            "{m}"
        );
    }
}

//! The kernel reads our archives: the demo image, with a busybox script as
//! `/init`, boots under QEMU (TCG, never KVM) in every compression the
//! kernel accepts, and the script checks from inside the guest that the
//! unpacked files are the ones we packed.
//!
//! The kernel is the newest one with an image in `/boot` and a module tree
//! (`$KMODINIT_TEST_MODULES_ROOT` moves `/`), as the QEMU harness picks it.
//! When QEMU, that kernel or busybox-static is missing the tests fail under
//! `CI=true` and say they are skipped otherwise; `make deps` installs them
//! (modules-manifest/tests/support/prerequisites.rs).
#![allow(clippy::unwrap_used)] // tests may unwrap (BRIEF)

use std::fs;
use std::path::Path;
use std::process::Command;

#[path = "../../modules-manifest/tests/support/prerequisites.rs"]
mod prerequisites;

use prerequisites::{file, kernel, program, require, TestKernel};

const BIN: &str = env!("CARGO_BIN_EXE_kmodinit-mkimage");
const BUSYBOX: &str = "/bin/busybox";
/// Generous: TCG on a shared 2-core machine; a healthy boot takes ~10 s.
const QEMU_TIMEOUT_S: &str = "180";

const DEMO_MANIFEST: &str = r#"{
  "version": 1,
  "chains": [
    { "name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true },
    { "name": "fs", "modules": ["ext4"], "required": true }
  ],
  "root": { "device": "/dev/vda", "fstype": "ext4", "flags": "ro", "wait_ms": 10000 }
}"#;

/// Prints what the test compares, then powers off (PID 1 must not exit).
/// `@RELEASE@` is the booted kernel's release.
const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
M=/lib/modules/@RELEASE@
echo "MKIMAGE-BOOT-OK"
echo "KO-COUNT $($B find $M -name '*.ko' | $B wc -l)"
echo "EXT4-SHA $($B sha256sum $M/kernel/fs/ext4/ext4.ko | $B cut -d' ' -f1)"
echo "MANIFEST-SHA $($B sha256sum /etc/kmodinit/manifest.json | $B cut -d' ' -f1)"
echo "CONSOLE $($B stat -c '%f %t %T %u %g' /dev/console)"
echo "NULL $($B stat -c '%f %t %T' /dev/null)"
echo "ROOTDIR $($B stat -c '%a' /root)"
$B poweroff -f
"#;

/// The kernel to boot, or `None` (skipped) when a prerequisite is missing.
fn prerequisites() -> Option<TestKernel> {
    let kernel = require(kernel())?;
    require(file(BUSYBOX))?;
    require(program("qemu-system-x86_64", &["--version"]))?;
    Some(kernel)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn boot(compress: &str) {
    let Some(kernel) = prerequisites() else {
        return;
    };
    let vmlinuz = kernel.vmlinuz.as_deref().unwrap();
    let modules_root = kernel.modules_dir.ancestors().nth(3).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("demo.json");
    fs::write(&manifest, DEMO_MANIFEST).unwrap();
    let init = tmp.path().join("init.sh");
    fs::write(&init, INIT_SCRIPT.replace("@RELEASE@", &kernel.release)).unwrap();
    let img = tmp.path().join(format!("boot.{compress}"));
    let add = format!("{BUSYBOX}:/bin/busybox");
    let out = Command::new(BIN)
        .args(["--manifest", manifest.to_str().unwrap()])
        .args(["--kernel-release", &kernel.release])
        .args(["--modules-root", modules_root.to_str().unwrap()])
        .args(["--init", init.to_str().unwrap()])
        .args(["--add", &add])
        .args(["--compress", compress])
        .args(["--output", img.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8(out.stdout).unwrap();
    let count: usize = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("modules:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();

    let console = Command::new("timeout")
        .arg(QEMU_TIMEOUT_S)
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512", "-nographic", "-no-reboot"])
        .args(["-kernel", vmlinuz.to_str().unwrap()])
        .args(["-initrd", img.to_str().unwrap()])
        // loglevel=1: only KERN_EMERG (panics) reaches the console, so kernel
        // messages cannot split the lines the script prints. no_timer_check:
        // with four TCG guests on a loaded 2-core host the kernel's IO-APIC
        // timer check can miss its ticks and panic ("IO-APIC + timer doesn't
        // work!"), which has nothing to do with the archive under test.
        .args([
            "-append",
            "console=ttyS0 panic=-1 loglevel=1 no_timer_check",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&console.stdout).into_owned();
    let value = |key: &str| -> String {
        log.lines()
            .find_map(|l| l.trim_end_matches('\r').strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{compress}: no {key} line on the console:\n{log}"))
            .to_owned()
    };
    assert!(
        log.contains("MKIMAGE-BOOT-OK"),
        "{compress}: did not boot:\n{log}"
    );
    assert_eq!(value("KO-COUNT"), count.to_string());
    let host_ext4 = kernel.modules_dir.join("kernel/fs/ext4/ext4.ko");
    assert_eq!(value("EXT4-SHA"), sha256(&host_ext4));
    assert_eq!(value("MANIFEST-SHA"), sha256(&manifest));
    // st_mode in hex, major and minor in hex, owner.
    assert_eq!(value("CONSOLE"), "2180 5 1 0 0");
    assert_eq!(value("NULL"), "21b6 1 3");
    assert_eq!(value("ROOTDIR"), "700");
    assert!(!log.contains("Kernel panic"), "{compress}:\n{log}");
}

#[test]
fn boots_with_zstd() {
    boot("zstd");
}

#[test]
fn boots_with_gzip() {
    boot("gzip");
}

#[test]
fn boots_with_xz() {
    boot("xz");
}

#[test]
fn boots_uncompressed() {
    boot("none");
}

//! Group 5: the demo's real modules recompressed as `.ko.xz`, `.ko.zst`,
//! `.ko.gz` in a staged tree (depmod-indexed) still boot to the real init.
//! The Debian 6.1 kernel has no in-kernel decompression, so this proves the
//! user-space fallback (and that the boot log says so once).

#![allow(clippy::unwrap_used)] // tests may unwrap

use kmodinit_e2e::fixtures::{host_module_closure, stage_tree, Recompress};
use kmodinit_e2e::{assert_init_never_died, boot, report_state, Env, DEMO_MODULES};
use kmodinit_qemu::cpio::Cpio;
use kmodinit_qemu::rootfs::markers;
use serde_json::json;

fn boot_compressed(how: Recompress) {
    let env = Env::get();
    let ext = how.extension();
    let dir = env.scratch(&format!("compressed-{ext}"));
    // The demo modules, their dependencies and both crc32c providers of
    // ext4's `crypto-crc32c` softdep.
    let mut wanted: Vec<&str> = DEMO_MODULES.to_vec();
    wanted.extend(["crc32c_generic", "crc32c_intel"]);
    let paths = host_module_closure(&env.kernel, &wanted).unwrap_or_else(|e| panic!("{e}"));
    let recompress: Vec<(String, Recompress)> = paths.iter().map(|p| (p.clone(), how)).collect();
    let stage = dir.join("stage");
    stage_tree(&env.kernel, &stage, Some(&paths), &[], &recompress)
        .unwrap_or_else(|e| panic!("staging: {e}"));

    let (fs, disk) = env.root_disk(&dir);
    let manifest = json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true}
        ],
        "root": {"device": format!("UUID={}", fs.uuid), "fstype": "ext4", "flags": "ro"},
        "on_failure": "poweroff"
    });
    let image = env
        .mkimage(&dir, &manifest, Some(&stage), &[], "none")
        .unwrap_or_else(|e| panic!("{e}"));
    let cpio = Cpio::parse(&std::fs::read(&image).unwrap()).unwrap();
    let suffix = format!(".ko.{ext}");
    for m in DEMO_MODULES {
        assert!(
            cpio.paths()
                .iter()
                .any(|p| p.ends_with(&format!("/{m}{suffix}"))),
            "the image has no {m}{suffix}: {:?}",
            cpio.paths()
        );
    }

    let b = boot(env.vm(&dir, &image).disk(&disk));
    let c = &b.console;
    assert_init_never_died(&b);
    assert!(
        !c.contains(&format!("built without {} support", how.feature())),
        "build/init lacks the `{}` cargo feature (init/Cargo.toml), so it cannot load \
         .ko.{ext} on this kernel (no CONFIG_MODULE_DECOMPRESS), while DESIGN.md says \
         .ko.{ext} modules load; console tail:\n{}",
        how.feature(),
        c.tail(30)
    );
    assert_eq!(
        b.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        c.tail(40)
    );
    // The path this kernel takes, said once; tests/kernel_decompress.rs pins
    // the other one.
    assert_eq!(
        c.count(
            "kmodinit: the kernel does not decompress modules itself \
             (/sys/module/compression absent or empty): \
             compressed modules are decompressed in user space"
        ),
        1,
        "tail:\n{}",
        c.tail(40)
    );
    assert!(!c.contains("modules itself (/sys/module/compression)"));
    assert_eq!(c.real_init().map(|i| i.pid), Some(1));
    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    for m in DEMO_MODULES {
        assert_eq!(report_state(&report, m).as_deref(), Some("loaded"), "{m}");
    }
    let proc_modules = c.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    for m in DEMO_MODULES {
        assert!(proc_modules.iter().any(|p| p.name == *m), "{m} not loaded");
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_modules_as_ko_xz_boot() {
    boot_compressed(Recompress::Xz);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_modules_as_ko_zst_boot() {
    boot_compressed(Recompress::Zstd);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_modules_as_ko_gz_boot() {
    boot_compressed(Recompress::Gzip);
}

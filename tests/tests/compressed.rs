//! Group 5: the demo's real modules recompressed as `.ko.xz`, `.ko.zst`,
//! `.ko.gz` in a staged tree (depmod-indexed), as a distribution ships them.
//! kmodinit-mkimage stores them decompressed by default, byte for byte the
//! signed `.ko` files they came from, and the image boots to the real init
//! with a `/init` that has no decoder. Kept compressed
//! (`--module-compression keep`) on the Debian 6.1 kernel, which cannot
//! decompress modules itself, the same `/init` fails each such module with a
//! message naming the file and the way out.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;

use kmodinit_e2e::fixtures::{host_module_closure, stage_tree, Recompress};
use kmodinit_e2e::{assert_init_never_died, boot, report_state, Env, Scratch, DEMO_MODULES};
use kmodinit_qemu::cpio::Cpio;
use kmodinit_qemu::rootfs::markers;
use serde_json::json;

/// The line `RealKernel` logs once, at the first compressed module, on a
/// kernel without in-kernel decompression.
const USER_SPACE_LINE: &str = "kmodinit: the kernel does not decompress modules itself \
     (/sys/module/compression absent or empty): \
     compressed modules are decompressed in user space";

/// The signature marker at the end of a signed module (scripts/sign-file).
const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";

/// The demo modules, their dependencies and both crc32c providers of ext4's
/// `crypto-crc32c` softdep, recompressed with `how` into `dir/stage`; a root
/// disk and the demo manifest; the image built with `extra` arguments.
/// Returns the image, the disk and the staged relative paths.
fn compressed_image(
    env: &Env,
    how: Recompress,
    dir: &Scratch,
    extra: &[&str],
) -> (PathBuf, PathBuf, Vec<String>) {
    let mut wanted: Vec<&str> = DEMO_MODULES.to_vec();
    wanted.extend(["crc32c_generic", "crc32c_intel"]);
    let paths = host_module_closure(&env.kernel, &wanted).unwrap_or_else(|e| panic!("{e}"));
    let recompress: Vec<(String, Recompress)> = paths.iter().map(|p| (p.clone(), how)).collect();
    let stage = dir.join("stage");
    stage_tree(&env.kernel, &stage, Some(&paths), &[], &recompress)
        .unwrap_or_else(|e| panic!("staging: {e}"));

    let (fs, disk) = env.root_disk(dir);
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
        .mkimage_with(dir, &manifest, Some(&stage), &[], "none", extra)
        .unwrap_or_else(|e| panic!("{e}"));
    (image, disk, paths)
}

fn boot_decompressed(how: Recompress) {
    let env = Env::get();
    let ext = how.extension();
    let dir = env.scratch(&format!("compressed-{ext}"));
    let (image, disk, paths) = compressed_image(env, how, &dir, &[]);

    // Stored as .ko, each byte for byte the host's signed module.
    let cpio = Cpio::parse(&std::fs::read(&image).unwrap()).unwrap();
    assert!(
        !cpio.paths().iter().any(|p| p.contains(".ko.")),
        "a compressed module file is in the image: {:?}",
        cpio.paths()
    );
    let release = &env.kernel.release;
    for m in DEMO_MODULES {
        let rel = paths
            .iter()
            .find(|p| p.ends_with(&format!("/{m}.ko")))
            .unwrap_or_else(|| panic!("{m} not in the closure {paths:?}"));
        let stored = cpio
            .data(&format!("lib/modules/{release}/{rel}"))
            .unwrap_or_else(|| panic!("the image has no {rel}: {:?}", cpio.paths()));
        let host = std::fs::read(env.kernel.modules_dir.join(rel)).unwrap();
        assert!(
            stored == host.as_slice(),
            "{rel} in the image differs from the host's"
        );
        assert!(
            stored.ends_with(SIGNATURE_MAGIC),
            "{rel} lost its signature"
        );
    }

    let b = boot(env.vm(&dir, &image).disk(&disk));
    let c = &b.console;
    assert_init_never_died(&b);
    assert_eq!(
        b.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        c.tail(40)
    );
    // Nothing compressed reached /init.
    assert!(!c.contains(USER_SPACE_LINE), "tail:\n{}", c.tail(40));
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
fn demo_modules_from_ko_xz_boot() {
    boot_decompressed(Recompress::Xz);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_modules_from_ko_zst_boot() {
    boot_decompressed(Recompress::Zstd);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn demo_modules_from_ko_gz_boot() {
    boot_decompressed(Recompress::Gzip);
}

/// `--module-compression keep` on a kernel without
/// CONFIG_MODULE_DECOMPRESS, with `build/init` as `make init` builds it (no
/// decoders): each `.ko.xz` it tries (crc16, a leaf dependency of ext4, is
/// one) fails naming its file and the two ways out, the
/// required chains fail, `on_failure` powers off, PID 1 never dies.
#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn kept_ko_xz_without_a_decoder_fails_clearly() {
    let env = Env::get();
    let dir = env.scratch("compressed-kept-xz");
    let (image, disk, _) =
        compressed_image(env, Recompress::Xz, &dir, &["--module-compression", "keep"]);
    let cpio = Cpio::parse(&std::fs::read(&image).unwrap()).unwrap();
    assert!(
        cpio.paths()
            .iter()
            .any(|p| p.ends_with("/virtio_pci.ko.xz")),
        "{:?}",
        cpio.paths()
    );
    let b = boot(env.vm(&dir, &image).disk(&disk));
    let c = &b.console;
    assert_init_never_died(&b);
    if c.contains(USER_SPACE_LINE) && b.end == kmodinit_qemu::End::Marker(markers::DONE.into()) {
        // build/init was built with the xz feature: nothing to check here.
        eprintln!("build/init decodes xz itself (cargo feature xz): skipped");
        return;
    }
    assert_eq!(c.count(USER_SPACE_LINE), 1, "tail:\n{}", c.tail(40));
    assert!(
        c.contains(
            "kernel/lib/crc16.ko.xz: the kernel cannot decompress xz modules and this \
             /init has no xz decoder: rebuild the image with kmodinit-mkimage's default \
             `--module-compression none`"
        ),
        "no clear message naming the file; tail:\n{}",
        c.tail(40)
    );
    assert!(
        b.powered_off(),
        "the required chains failed, so on_failure=poweroff; tail:\n{}",
        c.tail(40)
    );
}

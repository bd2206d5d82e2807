//! Group 5b: the in-kernel decompression path. Debian's 6.1 kernel has no
//! `CONFIG_MODULE_DECOMPRESS` (tests/compressed.rs proves the user-space
//! fallback there); bookworm-backports' cloud kernel (6.12 today, fetched
//! by `make deps` → `make bpo-kernel` into `build/bpo-kernel/root`) has it,
//! and all its modules are `.ko.xz`. Booted with `build/init`, kmodinit must
//! hand each `.ko.xz` to `finit_module(MODULE_INIT_COMPRESSED_FILE)`: the
//! console says the kernel decompresses xz itself and never that it fell
//! back, the modules load in dependency order, the root is found and the
//! real init runs as PID 1. The image is built with
//! `--module-compression keep` (the tool decompresses by default), and
//! `build/init` has no decoder: only the kernel can have decompressed them.

#![allow(clippy::unwrap_used)] // tests may unwrap

use kmodinit_e2e::{
    assert_init_never_died, boot, report_modules, report_state, workspace_root, Env,
};
use kmodinit_qemu::cpio::Cpio;
use kmodinit_qemu::kernel::BPO_KERNEL_ROOT;
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{HostKernel, CPU_WITHOUT_CX16};
use serde_json::json;

/// The modules inserted from `.ko.xz` files, each after the ones before it
/// that it depends on (`modules.dep` of the 6.12 cloud kernel):
/// `xfs` → `libcrc32c`, `vfat` → `fat`; `virtio_blk` has no dependency.
const XZ_MODULES: &[&str] = &["virtio_blk", "libcrc32c", "xfs", "fat", "vfat"];
const DEPENDS: &[(&str, &str)] = &[("xfs", "libcrc32c"), ("vfat", "fat")];

/// The line `RealKernel` logs once when `/sys/module/compression` says xz.
const KERNEL_XZ_LINE: &str =
    "kmodinit: the kernel decompresses xz modules itself (/sys/module/compression)";

/// The bookworm-backports kernel, or a failure saying how to get it.
fn bpo_kernel() -> HostKernel {
    let root = workspace_root().join(BPO_KERNEL_ROOT);
    HostKernel::in_root(&root).unwrap_or_else(|e| {
        panic!(
            "the bookworm-backports kernel with in-kernel module decompression is \
             missing from {}: run `make deps` (or `make bpo-kernel`) first; {e}",
            root.display()
        )
    })
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn ko_xz_modules_are_decompressed_by_the_kernel() {
    let kernel = bpo_kernel();
    let modules_root = kernel.modules_root().unwrap().to_path_buf();
    let config = std::fs::read_to_string(
        modules_root
            .join("boot")
            .join(format!("config-{}", kernel.release)),
    )
    .unwrap();
    assert!(
        config.lines().any(|l| l == "CONFIG_MODULE_DECOMPRESS=y"),
        "{} has no CONFIG_MODULE_DECOMPRESS: this test needs a kernel that \
         decompresses modules itself",
        kernel.release
    );
    let dep = std::fs::read_to_string(kernel.modules_dir.join("modules.dep")).unwrap();
    for (module, needs) in DEPENDS {
        let line = dep
            .lines()
            .find(|l| l.contains(&format!("/{module}.ko.xz:")))
            .unwrap_or_else(|| panic!("no {module}.ko.xz in modules.dep"));
        assert!(line.contains(&format!("/{needs}.ko.xz")), "{line}");
    }

    // The shared environment (build/init, the image tool, build/e2e) with
    // the other kernel.
    let env = Env {
        kernel: kernel.clone(),
        ..Env::get().clone()
    };
    let dir = env.scratch("kernel-decompress");
    let (fs, disk) = env.root_disk(&dir);
    let manifest = json!({
        "version": 1,
        "chains": [
            // virtio_pci and ext4 are builtin in this kernel.
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true},
            {"name": "xfs", "modules": ["xfs"], "required": true},
            {"name": "vfat", "modules": ["vfat"], "required": true}
        ],
        "root": {"device": format!("UUID={}", fs.uuid), "fstype": "ext4", "flags": "ro"},
        "on_failure": "poweroff"
    });
    // kmodinit-mkimage decompresses modules by default; keep them as
    // .ko.xz so the kernel's own decompression is what loads them.
    let image = env
        .mkimage_with(
            &dir,
            &manifest,
            Some(&modules_root),
            &[],
            "none",
            &["--module-compression", "keep"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let cpio = Cpio::parse(&std::fs::read(&image).unwrap()).unwrap();
    for m in XZ_MODULES {
        assert!(
            cpio.paths()
                .iter()
                .any(|p| p.ends_with(&format!("/{m}.ko.xz"))),
            "the image has no {m}.ko.xz: {:?}",
            cpio.paths()
        );
    }

    // QEMU 7.2's TCG corrupts this kernel's SLUB with cmpxchg16b (see
    // CPU_WITHOUT_CX16); that is the emulator, not kmodinit. One CPU: in a
    // CI run on a loaded host this kernel died at 1.27 s, before /init,
    // with "Oops: int3" in sched_clock_cpu, a breakpoint of the kernel's
    // own code patching (text_poke_bp) seen by the other vCPU after the
    // patch was done (12 of 12 boots with -smp 2 on a quiet host were
    // clean). This test is about decompression, not parallel loading.
    let b = boot(
        env.vm(&dir, &image)
            .cpu(CPU_WITHOUT_CX16)
            .smp(1)
            .disk(&disk),
    );
    let c = &b.console;
    assert_init_never_died(&b);
    assert!(!c.contains("Kernel panic"), "tail:\n{}", c.tail(40));
    assert_eq!(
        b.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        c.tail(40)
    );
    assert!(
        c.contains(&format!("Linux version {}", kernel.release)),
        "not the {} kernel; head:\n{}",
        kernel.release,
        c.text().lines().take(5).collect::<Vec<_>>().join("\n")
    );
    // The in-kernel path, said once, and no fallback to user space.
    assert_eq!(c.count(KERNEL_XZ_LINE), 1, "tail:\n{}", c.tail(60));
    for fallback in ["refused to decompress", "decompressed in user space"] {
        assert!(
            !c.contains(fallback),
            "{:?}",
            c.line_from(fallback).unwrap_or_default()
        );
    }
    // Debian's signatures verify on the image the kernel decompressed.
    assert!(
        !c.contains("module verification failed"),
        "{:?}",
        c.line_from("module verification failed")
            .unwrap_or_default()
    );
    assert_eq!(c.real_init().map(|i| i.pid), Some(1));
    let root = c.line_from(markers::ROOT).expect("root line");
    assert!(root.contains("/dev/vda / ext4"), "{root}");

    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    for m in XZ_MODULES {
        assert_eq!(
            report_state(&report, m).as_deref(),
            Some("loaded"),
            "{m}: {:?}",
            report_modules(&report, m)
        );
    }
    for m in ["virtio_pci", "ext4"] {
        assert_eq!(report_state(&report, m).as_deref(), Some("builtin"), "{m}");
    }
    let at = |m: &str, key: &str| report_modules(&report, m)[0][key].as_f64().unwrap();
    for (module, needs) in DEPENDS {
        assert!(
            at(needs, "end") <= at(module, "start"),
            "{module} started before its dependency {needs} was loaded"
        );
    }
    for m in XZ_MODULES {
        eprintln!(
            "{m}.ko.xz: finit_module {:.1} ms",
            (at(m, "end") - at(m, "start")) * 1e3
        );
    }
    let proc_modules = c.proc_modules().unwrap_or_else(|e| panic!("{e}"));
    for m in XZ_MODULES {
        let n = proc_modules.iter().filter(|p| p.name == *m).count();
        assert_eq!(n, 1, "{m} in /proc/modules {n} times");
    }
}

//! `kmodinit manifest-from-host` inside a VM, and the manifest it writes
//! booting that VM.
//!
//! Boot 1: a kmodinit image (the demo's storage and fs chains, required,
//! plus `loop` and `virtio_net`, optional) switches to an ext4 root disk
//! that carries `/bin/kmodinit` (the host tool, `make host`, with the
//! shared libraries `ldd` names, as on an installed system) and the
//! kernel's depmod files (no `.ko`: the command reads only the index). Its `/sbin/init` runs `kmodinit manifest-from-host` and
//! prints the manifest and `/proc/modules` between markers.
//!
//! The test checks that manifest (root by the disk's UUID, the root's
//! modules required, the others optional), builds an image from it with
//! `kmodinit-mkimage`, and boots it with no `root=` on the command line:
//! the root is found by the UUID the manifest names, the real init runs as
//! PID 1, and the kernel holds the same modules as after boot 1.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kmodinit_e2e::{assert_init_never_died, boot, report_state, Env};
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{Ext4Image, GptDisk, RealInitRoot};
use serde_json::json;

const NOTES_BEGIN: &str = "KMI-FROMHOST-NOTES-BEGIN";
const NOTES_END: &str = "KMI-FROMHOST-NOTES-END";
const MANIFEST_BEGIN: &str = "KMI-MANIFEST-BEGIN";
const MANIFEST_END: &str = "KMI-MANIFEST-END";
/// The word on the kernel command line that makes `/sbin/init` run the
/// command instead of the harness's real init.
const FROM_HOST_WORD: &str = "kmifromhost";

/// `/sbin/init` of the root disk: with [`FROM_HOST_WORD`] on the command
/// line it runs `kmodinit manifest-from-host` and prints what it wrote;
/// otherwise it is the harness's real init (`/sbin/init.real`).
fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
export PATH=/bin:/sbin
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/module ] || mount -t sysfs sysfs /sys
case " $(cat /proc/cmdline) " in
*" {FROM_HOST_WORD} "*) ;;
*) exec /sbin/init.real "$@" ;;
esac
echo "{real_init}$$ args=[$*] uptime=$(cut -d' ' -f1 /proc/uptime) argc=$#"
echo {NOTES_BEGIN}
/bin/kmodinit manifest-from-host --output /run/manifest.json 2>&1
echo "KMI-FROMHOST-EXIT $?"
echo {NOTES_END}
echo {MANIFEST_BEGIN}
cat /run/manifest.json
echo {MANIFEST_END}
echo {modules_begin}
cat /proc/modules
echo {modules_end}
echo {done}
sync
poweroff -f
"#,
        real_init = markers::REAL_INIT,
        modules_begin = markers::MODULES_BEGIN,
        modules_end = markers::MODULES_END,
        done = markers::DONE,
    )
}

/// Copies the host tool to `tree/dst` with the shared libraries and the
/// loader `ldd` lists for it, at their paths.
fn install_with_libraries(bin: &Path, tree: &Path, dst: &str) {
    std::fs::copy(bin, tree.join(dst)).unwrap();
    let out = std::process::Command::new("ldd").arg(bin).output().unwrap();
    assert!(out.status.success(), "ldd {}", bin.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let libs: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .collect();
    assert!(libs.iter().any(|l| l.contains("libc.so")), "{text}");
    for lib in libs {
        let to = tree.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        // Dereferenced: the image holds the file itself.
        std::fs::copy(lib, &to).unwrap();
    }
}

/// The root disk: the harness's real-init tree, the wrapper above as
/// `/sbin/init`, `/bin/kmodinit`, and the depmod files of the kernel.
/// With `gpt`, the filesystem is partition 1 of a GPT disk (`/dev/vda1`),
/// else the whole disk (`/dev/vda`). Returns the filesystem, the image and
/// the root's device name.
fn root_disk(env: &Env, dir: &Path, gpt: bool) -> (Ext4Image, PathBuf, &'static str) {
    use std::os::unix::fs::PermissionsExt;
    let tree = dir.join("rootfs");
    RealInitRoot::new()
        .populate(&tree)
        .unwrap_or_else(|e| panic!("real-init root: {e}"));
    std::fs::rename(tree.join("sbin/init"), tree.join("sbin/init.real")).unwrap();
    std::fs::write(tree.join("sbin/init"), init_script()).unwrap();
    std::fs::set_permissions(
        tree.join("sbin/init"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    install_with_libraries(&env.host_tool, &tree, "bin/kmodinit");
    let mods = tree.join("lib/modules").join(&env.kernel.release);
    std::fs::create_dir_all(&mods).unwrap();
    for f in [
        "modules.dep",
        "modules.builtin",
        "modules.alias",
        "modules.softdep",
        "modules.builtin.modinfo",
    ] {
        let src = env.kernel.modules_dir.join(f);
        if src.is_file() {
            std::fs::copy(&src, mods.join(f)).unwrap();
        }
    }
    let img = dir.join("root.img");
    if gpt {
        let disk = GptDisk::new(64).unwrap_or_else(|e| panic!("uuid: {e}"));
        disk.build(&tree, &img)
            .unwrap_or_else(|e| panic!("GPT disk: {e}"));
        (disk.fs, img, "vda1")
    } else {
        let fs = Ext4Image::new(64).unwrap_or_else(|e| panic!("uuid: {e}"));
        fs.build(&tree, &img)
            .unwrap_or_else(|e| panic!("root disk: {e}"));
        (fs, img, "vda")
    }
}

fn chain_modules(m: &serde_json::Value, required: bool) -> BTreeSet<String> {
    m["chains"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["required"].as_bool().unwrap_or(false) == required)
        .flat_map(|c| c["modules"].as_array().unwrap().iter())
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

fn module_names(b: &kmodinit_qemu::Boot) -> BTreeSet<String> {
    b.console
        .proc_modules()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|m| m.name)
        .collect()
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_manifest_written_inside_the_vm_boots_it() {
    written_manifest_boots(false);
}

/// The same with the root on a GPT partition: the command finds the disk's
/// drivers above the partition, and the UUID on `/dev/vda1`.
#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_manifest_written_inside_the_vm_boots_it_from_a_partition() {
    written_manifest_boots(true);
}

fn written_manifest_boots(gpt: bool) {
    let env = Env::get();
    let tag = if gpt { "-gpt" } else { "" };
    // Two scratch directories, so that each boot's console.log stays.
    let dir = env.scratch(&format!("from-host-write{tag}"));
    let (fs, disk, dev) = root_disk(env, &dir, gpt);

    // Boot 1: the demo's modules and two optional ones, then the command.
    let first = json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true},
            {"name": "extras", "modules": ["loop", "virtio_net"]}
        ],
        "root": {"device": format!("UUID={}", fs.uuid), "fstype": "ext4", "wait_ms": 10000},
        "on_failure": "poweroff"
    });
    let boot1_dir: &Path = &dir;
    let image = env
        .mkimage(boot1_dir, &first, None, &[], "gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    let b1 = boot(env.vm(boot1_dir, &image).disk(&disk).append(FROM_HOST_WORD));
    assert_init_never_died(&b1);
    let c = &b1.console;
    let notes = c
        .section(NOTES_BEGIN, NOTES_END)
        .unwrap_or_else(|| panic!("no notes section; tail:\n{}", c.tail(40)))
        .join("\n");
    assert!(notes.contains("KMI-FROMHOST-EXIT 0"), "{notes}");
    assert!(
        notes.contains(&format!(
            "root: UUID={} read from the superblock of /dev/{dev}",
            fs.uuid
        )),
        "{notes}"
    );
    let text = c
        .section(MANIFEST_BEGIN, MANIFEST_END)
        .unwrap_or_else(|| panic!("no manifest section; tail:\n{}", c.tail(40)))
        .join("\n");
    let generated: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    std::fs::write(dir.join("generated.json"), &text).unwrap();

    // What it says: the root by UUID, its modules required, the rest not.
    assert_eq!(generated["root"]["device"], format!("UUID={}", fs.uuid));
    assert_eq!(generated["root"]["fstype"], "ext4");
    let required = chain_modules(&generated, true);
    let want: BTreeSet<String> = ["virtio_blk", "virtio_pci", "ext4"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(required, want, "{text}");
    let optional = chain_modules(&generated, false);
    for m in ["loop", "virtio_net"] {
        assert!(optional.contains(m), "{m} not an optional entry:\n{text}");
    }
    let chain_names: Vec<&str> = generated["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["root:fs", "root:drivers/block", "drivers/net"] {
        assert!(chain_names.contains(&name), "no chain {name}:\n{text}");
    }
    // Dependencies are not entries: the plan pulls them in.
    for dep in ["virtio_ring", "jbd2", "mbcache", "net_failover"] {
        assert!(
            !optional.contains(dep) && !required.contains(dep),
            "{dep} is an entry:\n{text}"
        );
    }
    let loaded1 = module_names(&b1);
    assert!(loaded1.contains("virtio_net") && loaded1.contains("jbd2"));

    // Boot 2: an image from that manifest, no root= on the command line.
    let boot2_dir = env.scratch(&format!("from-host-boot{tag}"));
    let image = env
        .mkimage(&boot2_dir, &generated, None, &[], "gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    let b2 = boot(env.vm(&boot2_dir, &image).disk(&disk));
    assert_init_never_died(&b2);
    let c = &b2.console;
    assert_eq!(
        b2.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        c.tail(40)
    );
    let init = c.real_init().expect("real init marker");
    assert_eq!(init.pid, 1, "the real init must be PID 1");
    let root = c.line_from(markers::ROOT).expect("root line");
    assert!(root.contains(&format!("/dev/{dev} / ext4")), "{root}");
    assert!(
        c.contains(&format!("UUID={}", fs.uuid)),
        "the console does not name the root's UUID; tail:\n{}",
        c.tail(40)
    );
    let report = c.report().unwrap_or_else(|e| panic!("{e}"));
    for m in required.iter().chain(&optional) {
        assert_eq!(
            report_state(&report, m).as_deref(),
            Some("loaded"),
            "{m} in report.json"
        );
    }
    // The kernel holds what it held when the manifest was written.
    assert_eq!(module_names(&b2), loaded1);
}

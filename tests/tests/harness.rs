//! The harness proves itself without kmodinit: a busybox-only initramfs
//! (built with the harness's own cpio writer) insmods the fixtures, or the
//! virtio + ext4 stack, and switch_roots into the real-init disk.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use kmodinit_e2e::fixtures::{self, host_module_closure, Fixtures};
use kmodinit_e2e::{workspace_root, Scratch, BUSYBOX};
use kmodinit_qemu::cpio::Cpio;
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{Ext4Image, GptDisk, HarnessError, HostKernel, RealInitRoot, Vm};

fn kernel() -> &'static HostKernel {
    static K: OnceLock<HostKernel> = OnceLock::new();
    K.get_or_init(|| HostKernel::find().unwrap())
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        fixtures::build(kernel(), &workspace_root().join("build/fixtures"), true).unwrap()
    })
}

fn scratch(name: &str) -> Scratch {
    Scratch::new(&workspace_root().join("build/e2e"), name)
}

/// An initramfs with busybox, the real-init tree, the given files, and an
/// `/init` that runs `body` then execs `/sbin/init` (the real-init script).
fn busybox_initramfs(dir: &Path, files: &[(PathBuf, String)], body: &str) -> PathBuf {
    let tree = dir.join("tree");
    RealInitRoot::new().populate(&tree).unwrap();
    let mut c = Cpio::new();
    c.host_tree(&tree, "").unwrap();
    c.char_dev("dev/console", 5, 1, 0o600);
    for (src, dst) in files {
        c.host_file(dst, src).unwrap();
    }
    let init = format!(
        "#!/bin/busybox sh\nexport PATH=/bin\nmount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs devtmpfs /dev\nmkdir -p /run/kmodinit\n{body}\n"
    );
    c.file("init", init, 0o755);
    let out = dir.join("initrd.cpio");
    c.write(&out).unwrap();
    out
}

/// `insmod` lines for host modules, dependencies first (modules.dep lists
/// them nearest-first, so each module's deps are inserted in reverse).
fn insmod_closure(names: &[&str]) -> (Vec<(PathBuf, String)>, String) {
    let k = kernel();
    let mut files = Vec::new();
    let mut script = String::new();
    for n in names {
        let closure = host_module_closure(k, &[n]).unwrap();
        for rel in closure.iter().rev() {
            let dst = format!("mods/{}", rel.rsplit('/').next().unwrap());
            if files.iter().any(|(_, d)| d == &dst) {
                continue;
            }
            files.push((k.modules_dir.join(rel), dst.clone()));
            script.push_str(&format!("insmod /{dst} || echo INSMOD-FAILED {dst}\n"));
        }
    }
    (files, script)
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn busybox_initramfs_loads_unsigned_fixtures_with_params() {
    let dir = scratch("harness-fixtures");
    let f = fixtures();
    let ko = |n: &str| f.built.iter().find(|(m, _)| m == n).unwrap().1.clone();
    let files = vec![
        (ko("kmi_base"), "mods/kmi_base.ko".to_string()),
        (ko("kmi_a"), "mods/kmi_a.ko".to_string()),
        (ko("kmi_fail"), "mods/kmi_fail.ko".to_string()),
    ];
    let body = "insmod /mods/kmi_base.ko\n\
                insmod /mods/kmi_a.ko tag=harness delay_ms=50\n\
                insmod /mods/kmi_fail.ko || echo KMI-FAIL-REFUSED\n\
                exec /sbin/init from-initramfs";
    let initrd = busybox_initramfs(&dir, &files, body);
    let boot = Vm::new(&kernel().vmlinuz)
        .initrd(&initrd)
        .log_file(dir.join("console.log"))
        .timeout(Duration::from_secs(120))
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let c = &boot.console;
    assert!(
        boot.powered_off(),
        "no power-off: {:?}\n{}",
        boot.end,
        c.tail(30)
    );
    let init = c.real_init().expect("real init marker");
    assert_eq!(init.pid, 1);
    assert_eq!(init.args, vec!["from-initramfs"]);
    let mods = c.proc_modules().unwrap();
    let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
    assert!(
        names.contains(&"kmi_base") && names.contains(&"kmi_a"),
        "{names:?}"
    );
    assert!(!names.contains(&"kmi_fail"), "{names:?}");
    assert!(c.contains("KMI-FAIL-REFUSED"));
    let base = mods.iter().find(|m| m.name == "kmi_base").unwrap();
    assert_eq!(base.used_by, vec!["kmi_a"]);
    let params = c.module_params().unwrap();
    assert_eq!(params["kmi_a.tag"], "harness");
    assert_eq!(params["kmi_a.delay_ms"], "50");
    assert_eq!(params["kmi_base.tag"], "unset");
    // Unsigned out-of-tree modules load, tainting the kernel with O (4096)
    // and E (8192): module.sig_enforce is off on the Debian kernel.
    let taint: u64 = c
        .line_from("KMI-TAINT ")
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("taint line");
    assert_eq!(taint & (4096 | 8192), 4096 | 8192, "taint {taint}");
}

fn switch_root_boot(name: &str, disk: &Path, dev: &str) -> kmodinit_qemu::Boot {
    let dir = scratch(name);
    let (files, mut body) = insmod_closure(&["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]);
    body.push_str(&format!(
        "mkdir -p /newroot\n\
         i=0; while [ ! -e {dev} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
         mount -t ext4 -o ro {dev} /newroot || echo KMI-MOUNT-FAILED\n\
         mount --move /dev /newroot/dev\n\
         mount --move /proc /newroot/proc\n\
         mount --move /sys /newroot/sys\n\
         exec switch_root /newroot /sbin/init single -- extra"
    ));
    let initrd = busybox_initramfs(&dir, &files, &body);
    Vm::new(&kernel().vmlinuz)
        .initrd(&initrd)
        .disk(disk)
        .log_file(dir.join("console.log"))
        .stop_on(markers::DONE)
        .timeout(Duration::from_secs(120))
        .run()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn busybox_switch_root_into_ext4_disk_runs_real_init_as_pid1() {
    let dir = scratch("harness-disk");
    let tree = dir.join("root");
    RealInitRoot::new().populate(&tree).unwrap();
    let fs = Ext4Image::new(32).unwrap();
    let img = dir.join("root.img");
    fs.build(&tree, &img).unwrap();
    let boot = switch_root_boot("harness-disk-boot", &img, "/dev/vda");
    let c = &boot.console;
    assert!(!c.contains("INSMOD-FAILED"), "{}", c.tail(40));
    let init = c
        .real_init()
        .unwrap_or_else(|| panic!("no real init:\n{}", c.tail(40)));
    assert_eq!(init.pid, 1);
    assert_eq!(init.args, vec!["single", "--", "extra"]);
    let root = c.line_from(markers::ROOT).unwrap();
    assert!(root.contains("/dev/vda / ext4"), "{root}");
    let names: Vec<String> = c
        .proc_modules()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    for m in ["virtio_pci", "virtio_blk", "ext4", "jbd2"] {
        assert!(names.iter().any(|n| n == m), "{m} not in {names:?}");
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn gpt_disk_partition_one_holds_the_root() {
    let dir = scratch("harness-gpt");
    let tree = dir.join("root");
    RealInitRoot::new().populate(&tree).unwrap();
    let disk = GptDisk::new(32).unwrap();
    let img = dir.join("gpt.img");
    disk.build(&tree, &img).unwrap();
    let boot = switch_root_boot("harness-gpt-boot", &img, "/dev/vda1");
    let c = &boot.console;
    let init = c
        .real_init()
        .unwrap_or_else(|| panic!("no real init:\n{}", c.tail(40)));
    assert_eq!(init.pid, 1);
    let root = c.line_from(markers::ROOT).unwrap();
    assert!(root.contains("/dev/vda1 / ext4"), "{root}");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn timeout_kills_qemu_and_shows_the_console_tail() {
    let dir = scratch("harness-timeout");
    let initrd = busybox_initramfs(
        &dir,
        &[],
        "echo KMI-WAITING-FOREVER\nwhile :; do sleep 1; done",
    );
    let log = dir.join("console.log");
    let err = Vm::new(&kernel().vmlinuz)
        .initrd(&initrd)
        .stop_on("never printed")
        .timeout(Duration::from_secs(20))
        .log_file(&log)
        .run()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("timed out after"), "{text}");
    assert!(text.contains(&log.display().to_string()), "{text}");
    // How far the guest got in 20 s depends on the host's load; the tail
    // shows whatever it printed last, which is also in the log file.
    let HarnessError::Timeout { tail, .. } = err else {
        panic!("not a timeout: {text}");
    };
    let last = tail.lines().last().unwrap_or("").trim();
    assert!(!last.is_empty(), "empty tail: {text}");
    let logged = std::fs::read_to_string(&log).unwrap().replace('\r', "");
    assert!(logged.contains(last), "{last:?} not in {}", log.display());
}

#[test]
fn initramfs_for_busybox_has_init_and_console() {
    let dir = scratch("harness-cpio");
    let out = busybox_initramfs(&dir, &[(PathBuf::from(BUSYBOX), "extra/bb".into())], "true");
    let c = Cpio::parse(&std::fs::read(out).unwrap()).unwrap();
    for p in [
        "init",
        "dev/console",
        "bin/busybox",
        "bin/sh",
        "sbin/init",
        "extra/bb",
    ] {
        assert!(c.has(p), "{p} missing");
    }
}

//! A verified root: device-mapper tables from the kernel command line, made
//! by kmodinit after it loaded `dm_mod` and `dm_verity` (modules on Debian's
//! kernel, so the kernel cannot run `dm-mod.create=` itself). The data disk
//! is the demo's ext4 root; `veritysetup format` (cryptsetup-bin, `make
//! deps`) writes its hash tree to a second disk, on files, no root needed.
//!
//! (1) `dm-mod.create=` with a verity table over two virtio disks and (2)
//! systemd's `roothash=` with its devices by `UUID=` boot to the real init;
//! (3) a byte of the real init's file changed after the format, and (4) a
//! wrong root hash, stop the boot with a message naming the verity device,
//! then `on_failure` (poweroff); (5) a `linear` table over a partition boots.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kmodinit_e2e::{assert_init_never_died, boot, Env, FATAL_BANNER};
use kmodinit_qemu::disk::random_uuid;
use kmodinit_qemu::rootfs::markers;
use kmodinit_qemu::{Boot, Ext4Image, RealInitRoot};
use serde_json::json;

/// A data disk (ext4 with the real init) and its hash disk.
struct VerityDisks {
    fs: Ext4Image,
    data: PathBuf,
    hash: PathBuf,
    /// The hash disk's superblock UUID (`TYPE="DM_verity_hash"`).
    hash_uuid: String,
    root_hash: String,
    salt: String,
    data_blocks: u64,
}

impl VerityDisks {
    fn new(dir: &Path) -> VerityDisks {
        let tree = dir.join("rootfs");
        RealInitRoot::new()
            .populate(&tree)
            .unwrap_or_else(|e| panic!("real-init root: {e}"));
        let fs = Ext4Image::new(32).unwrap_or_else(|e| panic!("uuid: {e}"));
        let data = dir.join("data.img");
        fs.build(&tree, &data)
            .unwrap_or_else(|e| panic!("data disk: {e}"));
        let hash = dir.join("hash.img");
        let hash_uuid = random_uuid().unwrap_or_else(|e| panic!("uuid: {e}"));
        let out = Command::new("veritysetup")
            .arg("format")
            .arg(format!("--uuid={hash_uuid}"))
            // The ext4 of a 32 MiB image has 1 KiB blocks: verity's data
            // blocks must not be larger than the filesystem's.
            .arg("--data-block-size=1024")
            .arg(&data)
            .arg(&hash)
            .output()
            .unwrap_or_else(|e| panic!("veritysetup (cryptsetup-bin; run make deps): {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "veritysetup format: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |name: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name:?} in veritysetup's output:\n{text}"))
        };
        VerityDisks {
            root_hash: field("Root hash:"),
            salt: field("Salt:"),
            data_blocks: field("Data blocks:").parse().unwrap(),
            fs,
            data,
            hash,
            hash_uuid,
        }
    }

    /// The kernel's verity table for data `/dev/vda`, hash `/dev/vdb`.
    fn table(&self, root_hash: &str) -> String {
        format!(
            "0 {} verity 1 /dev/vda /dev/vdb 1024 4096 {} 1 sha256 {root_hash} {}",
            self.data_blocks * 2,
            self.data_blocks,
            self.salt
        )
    }

    /// Changes one byte of `path`'s first block in the data disk, after the
    /// format (`debugfs` of e2fsprogs maps the file to its block).
    fn corrupt_file(&self, path: &str) {
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(format!("bmap {path} 0"))
            .arg(&self.data)
            .output()
            .unwrap_or_else(|e| panic!("debugfs: {e}"));
        let block: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("debugfs bmap {path}: {e}: {out:?}"));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.data)
            .unwrap();
        // Byte 20 of the script (1 KiB blocks): inside its comment line.
        let at = block * 1024 + 20;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x01], at).unwrap();
    }
}

/// The demo's modules plus a required chain for device-mapper.
fn manifest(dm_module: &str) -> serde_json::Value {
    json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true},
            {"name": "dm", "modules": [dm_module], "required": true}
        ],
        "root": {"fstype": "ext4", "flags": "ro", "wait_ms": 10000},
        "init": {"path": "/sbin/init"},
        "on_failure": "poweroff"
    })
}

fn boot_with(dir: &Path, manifest: &serde_json::Value, disks: &[&Path], append: &str) -> Boot {
    let env = Env::get();
    let image = env
        .mkimage(dir, manifest, None, &[], "gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vm = env.vm(dir, &image).append(append);
    for d in disks {
        vm = vm.disk(*d);
    }
    boot(vm)
}

/// The real init ran as PID 1 on `root_node`, which kmodinit mounted as
/// the device-mapper device `name`.
fn check_boots_on(b: &Boot, name: &str, root_node: &str) {
    let c = &b.console;
    assert_init_never_died(b);
    assert_eq!(
        b.end,
        kmodinit_qemu::End::Marker(markers::DONE.into()),
        "the real init did not finish; tail:\n{}",
        c.tail(40)
    );
    assert_eq!(c.real_init().expect("real init marker").pid, 1);
    assert!(
        c.contains(&format!(
            "device-mapper: created {name} (/dev/mapper/{name} = {root_node}"
        )),
        "{}",
        c.tail(40)
    );
    let mounted = c.line_from("mounted root ").expect("mounted root line");
    assert!(
        mounted.contains(&format!("= {root_node} (ext4)")),
        "{mounted}"
    );
    assert!(mounted.contains("read-only"), "{mounted}");
    let root = c.line_from(markers::ROOT).expect("root line");
    assert!(root.contains(&format!("{root_node} / ext4 ro")), "{root}");
    // dm-mod.create= is kmodinit's, never handed to dm_mod.
    assert!(!c.contains("unknown parameter"), "{}", c.tail(40));
}

/// The boot stopped on a verity failure of `what`, said so naming the
/// device, and carried out on_failure (poweroff) without running the real
/// init.
fn check_verity_stop(b: &Boot, what: &str) {
    let c = &b.console;
    assert_init_never_died(b);
    assert!(
        c.real_init().is_none(),
        "the real init ran:\n{}",
        c.tail(40)
    );
    let line = c
        .line_from("verity device root (/dev/mapper/root = /dev/dm-0")
        .unwrap_or_else(|| panic!("no message naming the verity device:\n{}", c.tail(40)));
    assert!(line.contains(&format!("{what} failed")), "{line}");
    assert!(
        line.contains("a block does not match the root hash"),
        "{line}"
    );
    assert!(c.contains(FATAL_BANNER), "{}", c.tail(40));
    assert!(b.powered_off(), "not powered off:\n{}", c.tail(40));
}

fn roothash_args(d: &VerityDisks, root_hash: &str) -> String {
    format!(
        "roothash={root_hash} systemd.verity_root_data=UUID={} systemd.verity_root_hash=UUID={}",
        d.fs.uuid, d.hash_uuid
    )
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn dm_mod_create_verity_over_two_disks_boots() {
    let dir = Env::get().scratch("verity-dm-mod-create");
    let d = VerityDisks::new(&dir);
    let b = boot_with(
        &dir,
        &manifest("dm_verity"),
        &[&d.data, &d.hash],
        &format!(
            "dm-mod.create=\"vroot,,,ro,{}\" root=/dev/mapper/vroot",
            d.table(&d.root_hash)
        ),
    );
    check_boots_on(&b, "vroot", "/dev/dm-0");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn roothash_with_devices_by_uuid_boots() {
    let dir = Env::get().scratch("verity-roothash");
    let d = VerityDisks::new(&dir);
    // The hash disk first: the devices are found by UUID, not by order.
    let b = boot_with(
        &dir,
        &manifest("dm_verity"),
        &[&d.hash, &d.data],
        &roothash_args(&d, &d.root_hash),
    );
    check_boots_on(&b, "root", "/dev/dm-0");
    assert!(b.console.contains(&format!(
        "verity root: data UUID={} (/dev/vdb), hash UUID={} (/dev/vda)",
        d.fs.uuid, d.hash_uuid
    )));
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_changed_block_of_the_real_init_stops_the_boot() {
    let dir = Env::get().scratch("verity-changed-init");
    let d = VerityDisks::new(&dir);
    d.corrupt_file("/sbin/init");
    let b = boot_with(
        &dir,
        &manifest("dm_verity"),
        &[&d.data, &d.hash],
        &roothash_args(&d, &d.root_hash),
    );
    // The mount itself is clean: the bad block is only read at exec.
    assert!(b.console.contains("mounted root /dev/mapper/root"));
    check_verity_stop(&b, "executing /sbin/init");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_wrong_root_hash_stops_the_boot() {
    let dir = Env::get().scratch("verity-wrong-hash");
    let d = VerityDisks::new(&dir);
    // The same hash with its last digit changed.
    let mut wrong = d.root_hash.clone();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    let b = boot_with(
        &dir,
        &manifest("dm_verity"),
        &[&d.data, &d.hash],
        &roothash_args(&d, &wrong),
    );
    check_verity_stop(&b, "mounting the root");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_linear_table_over_a_partition_boots() {
    let env = Env::get();
    let dir = env.scratch("dm-linear-partition");
    let (gpt, disk) = env.gpt_root_disk(&dir);
    let sectors = gpt.fs.size_mib * 2048;
    let b = boot_with(
        &dir,
        &manifest("dm_mod"),
        &[&disk],
        &format!(
            "dm-mod.create=\"lroot,,,ro,0 {sectors} linear /dev/vda1 0\" root=/dev/mapper/lroot"
        ),
    );
    check_boots_on(&b, "lroot", "/dev/dm-0");
}

/// The verity root (test 2's boot) against the same data disk mounted
/// directly, with the same manifest (the device-mapper modules load in
/// both) and with the demo's chains only: boots to the real init, in turn,
/// `KMODINIT_VERITY_BOOTS` times each (default 1); prints the medians of the
/// real init's start (`/proc/uptime`).
#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn verity_root_boot_time_against_the_plain_root() {
    let dir = Env::get().scratch("verity-boot-time");
    let d = VerityDisks::new(&dir);
    let n: usize = std::env::var("KMODINIT_VERITY_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut demo_only = manifest("dm_verity");
    demo_only["chains"].as_array_mut().unwrap().pop();
    let plain = format!("root=UUID={}", d.fs.uuid);
    let cases = [
        (
            "verity root",
            manifest("dm_verity"),
            roothash_args(&d, &d.root_hash),
        ),
        (
            "plain root, same manifest",
            manifest("dm_verity"),
            plain.clone(),
        ),
        ("plain root, demo chains only", demo_only, plain),
    ];
    let mut starts = vec![Vec::new(); cases.len()];
    for _ in 0..n {
        for (i, (name, m, append)) in cases.iter().enumerate() {
            let b = boot_with(&dir, m, &[&d.data, &d.hash], append);
            if i == 0 {
                check_boots_on(&b, "root", "/dev/dm-0");
            }
            let init = b
                .console
                .real_init()
                .unwrap_or_else(|| panic!("{name}: no real init:\n{}", b.console.tail(40)));
            assert_eq!(init.pid, 1, "{name}");
            starts[i].push(init.uptime_s);
        }
    }
    let mut medians = Vec::new();
    for (i, v) in starts.iter_mut().enumerate() {
        v.sort_by(f64::total_cmp);
        medians.push(v[v.len() / 2]);
        eprintln!("{}: median {:.3} s of {v:?}", cases[i].0, medians[i]);
    }
    eprintln!(
        "real init started (median of {n}): verity / plain with the same modules {:.3}, verity / demo chains only {:.3}",
        medians[0] / medians[1],
        medians[0] / medians[2]
    );
}

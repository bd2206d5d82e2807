//! A fixture machine's `proc`, `sys` and `dev` for
//! `kmodinit manifest-from-host --sysroot`: what `src/host_manifest.rs`
//! reads, written into a temporary directory.
//!
//! Included with `#[path]` by `src/host_manifest.rs`'s unit tests (a fixture
//! module tree beside it) and by `tests/manifest_from_host.rs` (the
//! installed Debian module tree): one builder, no crate of its own.
#![allow(dead_code)] // each includer uses a part
#![allow(clippy::unwrap_used)] // test fixtures may unwrap

use std::os::unix::fs::symlink;
use std::path::PathBuf;

/// A sysroot under a temporary directory, removed when dropped.
pub struct Sysroot {
    pub root: PathBuf,
}

/// The root's block device in [`Sysroot::virtio_root`]: `vda1`, 254:1.
pub const ROOT_PART: &str = "vda1";

/// What [`Sysroot::virtio_root`] mounts on `/`.
pub struct VirtioRoot<'a> {
    /// The mounted filesystem type; its superblock is ext4's (`ext2`,
    /// `ext3` and `ext4` share it).
    pub fstype: &'a str,
    /// The filesystem UUID written to the superblock.
    pub uuid: [u8; 16],
    /// The module of the disk's driver (`virtio_blk`), `None` for builtin
    /// (no `module` link in sysfs).
    pub blk_module: Option<&'a str>,
    /// The module of the PCI function's driver (`virtio_pci`), `None` for
    /// builtin.
    pub pci_module: Option<&'a str>,
}

impl Sysroot {
    /// An empty sysroot at `TMP/kmodinit-fromhost-PID-TAG`.
    pub fn new(tag: &str) -> Sysroot {
        let root =
            std::env::temp_dir().join(format!("kmodinit-fromhost-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Sysroot { root }
    }

    /// Writes `rel` (under the sysroot), making its directories.
    pub fn write(&self, rel: &str, text: impl AsRef<[u8]>) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Makes `rel` a symlink to `target`, replacing what was there.
    pub fn link(&self, rel: &str, target: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&p);
        symlink(target, p).unwrap();
    }

    /// `proc/sys/kernel/osrelease`.
    pub fn osrelease(&self, release: &str) {
        self.write("proc/sys/kernel/osrelease", format!("{release}\n"));
    }

    /// `proc/modules` listing `names` as loaded, in the kernel's format
    /// (`NAME SIZE REFCOUNT DEPS STATE ADDRESS`).
    pub fn proc_modules<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let text: String = names
            .into_iter()
            .map(|n| format!("{n} 16384 0 - Live 0x0000000000000000\n"))
            .collect();
        self.write("proc/modules", text);
    }

    /// A root on the virtio disk partition `vda1` (254:1): the mount in
    /// `proc/self/mountinfo`, sysfs from `sys/dev/block/254:1` through the
    /// disk `vda` and the virtio device `virtio1` (driver `virtio_blk`) to
    /// the PCI function `0000:00:04.0` (driver `virtio-pci`), and the
    /// partition's superblock in `dev/vda1`.
    pub fn virtio_root(&self, r: &VirtioRoot<'_>) {
        self.write(
            "proc/self/mountinfo",
            format!(
                "21 1 254:1 / / rw,relatime - {} /dev/{ROOT_PART} rw\n\
                 22 21 0:5 / /proc rw - proc proc rw\n",
                r.fstype
            ),
        );
        // sysfs: the partition under its disk under the virtio device
        // under the PCI function.
        let pci = "sys/devices/pci0000:00/0000:00:04.0";
        self.write(
            &format!("{pci}/virtio1/block/vda/{ROOT_PART}/partition"),
            "1\n",
        );
        self.link(
            "sys/dev/block/254:1",
            &format!("../../../{pci}/virtio1/block/vda/{ROOT_PART}"),
        );
        self.link(
            &format!("{pci}/virtio1/block/vda/device"),
            "../../../virtio1",
        );
        self.link(
            &format!("{pci}/virtio1/driver"),
            "../../../../bus/virtio/drivers/virtio_blk",
        );
        self.link(
            &format!("{pci}/driver"),
            "../../../bus/pci/drivers/virtio-pci",
        );
        std::fs::create_dir_all(self.root.join("sys/bus/virtio/drivers/virtio_blk")).unwrap();
        std::fs::create_dir_all(self.root.join("sys/bus/pci/drivers/virtio-pci")).unwrap();
        if let Some(m) = r.blk_module {
            self.write(&format!("sys/module/{m}/refcnt"), "1\n");
            self.link(
                "sys/bus/virtio/drivers/virtio_blk/module",
                &format!("../../../../module/{m}"),
            );
        }
        if let Some(m) = r.pci_module {
            self.write(&format!("sys/module/{m}/refcnt"), "0\n");
            self.link(
                "sys/bus/pci/drivers/virtio-pci/module",
                &format!("../../../../module/{m}"),
            );
        }
        // The partition's superblock: ext4 magic and UUID.
        let mut sb = vec![0u8; 4096];
        sb[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
        sb[1024 + 0x68..1024 + 0x78].copy_from_slice(&r.uuid);
        self.write(&format!("dev/{ROOT_PART}"), sb);
    }
}

/// `uuid` as text, `8-4-4-4-12` lower-case hex digits.
pub fn uuid_text(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Drop for Sysroot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

//! The sysfs scan: list `class/block`, create a missing device node, and
//! find the device a [`DeviceSpec`] names by probing what is on it.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::spec::DeviceSpec;
use crate::sys::Sys;
use kmodinit_blockdev::partition::{read_at, read_partition_table};
use kmodinit_blockdev::{probe_filesystem, FsInfo, PROBE_BYTES};

/// A block device listed in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Name in `/sys/class/block` (`vda1`, `cciss!c0d0`).
    pub name: String,
    pub major: u32,
    pub minor: u32,
    /// Partition number, for partitions.
    pub partition: Option<u32>,
    /// For a partition, the name of its disk.
    pub disk: Option<String>,
    /// Size in 512-byte sectors (0: no medium).
    pub sectors: u64,
}

/// A device that matched a [`DeviceSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDevice {
    pub device: BlockDevice,
    /// The node to mount (created if devtmpfs lacked it).
    pub node: PathBuf,
    /// The filesystem found on it, if recognised.
    pub fs: Option<FsInfo>,
}

/// Lists and probes block devices under a sysfs `class/block` directory and
/// a `/dev` directory, both given by the caller.
#[derive(Debug, Clone)]
pub struct BlockScanner {
    pub class_block: PathBuf,
    pub dev_dir: PathBuf,
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

impl BlockScanner {
    /// The devices of the sysfs mounted at `sysfs`, nodes in `dev`
    /// (`/sys` and `/dev` on the machine).
    pub fn at(sysfs: &Path, dev: &Path) -> BlockScanner {
        BlockScanner {
            class_block: sysfs.join("class/block"),
            dev_dir: dev.to_path_buf(),
        }
    }

    /// Every block device sysfs lists now, sorted by name (disks before
    /// their partitions). Entries that cannot be read are skipped.
    pub fn devices(&self) -> Vec<BlockDevice> {
        let Ok(dir) = std::fs::read_dir(&self.class_block) else {
            return Vec::new();
        };
        let mut out: Vec<BlockDevice> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| self.device(&e.file_name().to_string_lossy()))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn device(&self, name: &str) -> Option<BlockDevice> {
        let base = self.class_block.join(name);
        let dev = read_trimmed(&base.join("dev"))?;
        let (ma, mi) = dev.split_once(':')?;
        let partition = read_trimmed(&base.join("partition")).and_then(|p| p.parse().ok());
        // A partition's sysfs directory sits inside its disk's directory.
        let disk = partition.and_then(|_| {
            let real = std::fs::canonicalize(&base).ok()?;
            Some(real.parent()?.file_name()?.to_string_lossy().into_owned())
        });
        Some(BlockDevice {
            name: name.to_string(),
            major: ma.parse().ok()?,
            minor: mi.parse().ok()?,
            partition,
            disk,
            sectors: read_trimmed(&base.join("size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        })
    }

    /// The device node for `dev`, created (`mknod`, 0600) when devtmpfs
    /// does not have it yet.
    pub fn node(&self, sys: &impl Sys, dev: &BlockDevice) -> io::Result<PathBuf> {
        let path = self.dev_dir.join(dev.name.replace('!', "/"));
        if path.exists() {
            return Ok(path);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        sys.mknod_block(&path, dev.major, dev.minor)?;
        Ok(path)
    }

    fn read_head(node: &Path) -> Option<Vec<u8>> {
        let f = File::open(node).ok()?;
        read_at(&f, 0, PROBE_BYTES)
    }

    /// Looks once for the device `spec` names; `None` if it is not there
    /// (yet). Devices without a medium are not probed. Missing nodes are
    /// created through `sys`.
    pub fn find(&self, sys: &impl Sys, spec: &DeviceSpec) -> Option<FoundDevice> {
        let devices = self.devices();
        let found = |device: &BlockDevice| -> Option<FoundDevice> {
            let node = self.node(sys, device).ok()?;
            let fs = Self::read_head(&node).and_then(|b| probe_filesystem(&b));
            Some(FoundDevice {
                device: device.clone(),
                node,
                fs,
            })
        };
        match spec {
            DeviceSpec::Name(n) => devices.iter().find(|d| &d.name == n).and_then(found),
            DeviceSpec::Number { major, minor } => devices
                .iter()
                .find(|d| d.major == *major && d.minor == *minor)
                .and_then(found),
            DeviceSpec::Uuid(_) | DeviceSpec::Label(_) => {
                for d in devices.iter().filter(|d| d.sectors > 0) {
                    let Some(f) = found(d) else { continue };
                    let Some(fs) = &f.fs else { continue };
                    let hit = match spec {
                        DeviceSpec::Uuid(u) => fs
                            .uuid
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(u)),
                        _ => fs.label.as_deref() == Some(spec_value(spec)),
                    };
                    if hit {
                        return Some(f);
                    }
                }
                None
            }
            DeviceSpec::PartUuid(_) | DeviceSpec::PartLabel(_) => {
                for disk in devices
                    .iter()
                    .filter(|d| d.partition.is_none() && d.sectors > 0)
                {
                    let Ok(node) = self.node(sys, disk) else {
                        continue;
                    };
                    let Some(parts) = read_partition_table(&node) else {
                        continue;
                    };
                    let want = spec_value(spec);
                    let hit = parts.iter().find(|p| match spec {
                        DeviceSpec::PartUuid(_) => p.uuid.eq_ignore_ascii_case(want),
                        _ => p.name.as_deref() == Some(want),
                    });
                    let Some(p) = hit else { continue };
                    if let Some(part) = devices.iter().find(|d| {
                        d.disk.as_deref() == Some(disk.name.as_str())
                            && d.partition == Some(p.number)
                    }) {
                        return found(part);
                    }
                }
                None
            }
        }
    }
}

fn spec_value(spec: &DeviceSpec) -> &str {
    match spec {
        DeviceSpec::Uuid(v)
        | DeviceSpec::Label(v)
        | DeviceSpec::PartUuid(v)
        | DeviceSpec::PartLabel(v) => v,
        DeviceSpec::Name(v) => v,
        DeviceSpec::Number { .. } => "",
    }
}

/// Scanner tests on a fake sysfs tree whose device "nodes" are plain image
/// files in a temp directory (never host devices).
#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::sys::{FakeSys, SysCall};
    use std::process::Command;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir()
                .join(format!("kmodinit-blockdev-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// sysfs layout: devices/<disk>/<part>, class/block/<x> → symlink.
    fn add_dev(root: &Path, disk: &str, part: Option<(&str, u32)>, dev: &str, image: &[u8]) {
        let (dir, name) = match part {
            Some((p, _)) => (root.join("devices").join(disk).join(p), p),
            None => (root.join("devices").join(disk), disk),
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dev"), format!("{dev}\n")).unwrap();
        std::fs::write(dir.join("size"), format!("{}\n", image.len() / 512)).unwrap();
        if let Some((_, n)) = part {
            std::fs::write(dir.join("partition"), format!("{n}\n")).unwrap();
        }
        std::fs::create_dir_all(root.join("class/block")).unwrap();
        std::os::unix::fs::symlink(&dir, root.join("class/block").join(name)).unwrap();
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("dev").join(name), image).unwrap();
    }

    fn scanner(root: &Path) -> BlockScanner {
        BlockScanner {
            class_block: root.join("class/block"),
            dev_dir: root.join("dev"),
        }
    }

    #[test]
    fn finds_a_real_mkfs_ext4_image_by_uuid_label_and_name() {
        let t = TempDir::new("ext4");
        let img = t.0.join("root.img");
        let uuid = "5e1f0c1a-8d2b-4c8e-9a11-0123456789ab";
        let status = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-U", uuid, "-L", "kroot"])
            .arg(&img)
            .arg("4M")
            .status();
        let Ok(status) = status else {
            eprintln!("mkfs.ext4 not installed: skipping the real-image test");
            return;
        };
        assert!(status.success());
        let bytes = std::fs::read(&img).unwrap();
        add_dev(&t.0, "vda", None, "254:0", &[0u8; 1024]);
        add_dev(&t.0, "vdb", None, "254:16", &bytes);
        let s = scanner(&t.0);
        let fake = FakeSys::new();
        assert_eq!(s.devices().len(), 2);

        let by_uuid = s
            .find(&fake, &DeviceSpec::Uuid(uuid.to_uppercase()))
            .expect("by uuid");
        assert_eq!(by_uuid.device.name, "vdb");
        assert_eq!(by_uuid.node, t.0.join("dev/vdb"));
        let fs = by_uuid.fs.expect("probed");
        assert_eq!(fs.fstype, "ext4");
        assert_eq!(fs.label.as_deref(), Some("kroot"));

        assert_eq!(
            s.find(&fake, &DeviceSpec::Label("kroot".into()))
                .map(|f| f.device.name),
            Some("vdb".into())
        );
        assert_eq!(
            s.find(&fake, &DeviceSpec::Name("vdb".into()))
                .map(|f| f.device.minor),
            Some(16)
        );
        assert_eq!(
            s.find(
                &fake,
                &DeviceSpec::Number {
                    major: 254,
                    minor: 0
                }
            )
            .map(|f| f.device.name),
            Some("vda".into())
        );
        assert_eq!(s.find(&fake, &DeviceSpec::Label("other".into())), None);
        assert_eq!(s.find(&fake, &DeviceSpec::Name("sda".into())), None);
    }

    #[test]
    fn finds_a_real_mkfs_f2fs_image_by_uuid_and_label() {
        let t = TempDir::new("f2fs");
        let img = t.0.join("root.img");
        let uuid = "9b0e6a54-3c1d-4f2e-8a7b-6c5d4e3f2a1b";
        let made = std::fs::File::create(&img).and_then(|f| f.set_len(64 << 20));
        assert!(made.is_ok(), "{made:?}");
        let status = Command::new("mkfs.f2fs")
            .args(["-q", "-f", "-U", uuid, "-l", "kmif2fs"])
            .arg(&img)
            .status();
        let Ok(status) = status else {
            eprintln!("mkfs.f2fs not installed (f2fs-tools): skipping the real-image test");
            return;
        };
        assert!(status.success());
        // The probe needs only the first PROBE_BYTES.
        let mut head = std::fs::read(&img).unwrap();
        head.truncate(kmodinit_blockdev::PROBE_BYTES);
        add_dev(&t.0, "vda", None, "254:0", &head);
        let s = scanner(&t.0);
        let fake = FakeSys::new();
        let hit = s
            .find(&fake, &DeviceSpec::Uuid(uuid.into()))
            .expect("by uuid");
        let fs = hit.fs.expect("probed");
        assert_eq!((fs.fstype, fs.label.as_deref()), ("f2fs", Some("kmif2fs")));
        assert_eq!(
            s.find(&fake, &DeviceSpec::Label("kmif2fs".into()))
                .map(|f| f.device.name),
            Some("vda".into())
        );
    }

    #[test]
    fn finds_a_gpt_partition_by_partuuid_and_partlabel() {
        let t = TempDir::new("gpt");
        let guid = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        let disk = kmodinit_blockdev::partition::tests_support::gpt_disk(guid, "rootfs");
        add_dev(&t.0, "vda", None, "254:0", &disk);
        add_dev(&t.0, "vda", Some(("vda1", 1)), "254:1", &[0u8; 1024]);
        add_dev(&t.0, "vda", Some(("vda2", 2)), "254:2", &[0u8; 1024]);
        let s = scanner(&t.0);
        let fake = FakeSys::new();
        let devs = s.devices();
        assert_eq!(devs[1].disk.as_deref(), Some("vda"));
        let hit = s
            .find(
                &fake,
                &DeviceSpec::PartUuid("00112233-4455-6677-8899-AABBCCDDEEFF".into()),
            )
            .expect("partuuid");
        assert_eq!(hit.device.name, "vda2");
        assert_eq!(
            s.find(&fake, &DeviceSpec::PartLabel("rootfs".into()))
                .map(|f| f.device.name),
            Some("vda2".into())
        );
        assert_eq!(
            s.find(
                &fake,
                &DeviceSpec::PartUuid("00000000-0000-0000-0000-000000000000".into())
            ),
            None
        );
    }

    #[test]
    fn a_missing_node_is_made_with_mknod() {
        let t = TempDir::new("mknod");
        add_dev(&t.0, "vda", None, "254:0", &[0u8; 1024]);
        add_dev(
            &t.0,
            "cciss",
            Some(("cciss!c0d0", 1)),
            "104:1",
            &[0u8; 1024],
        );
        std::fs::remove_file(t.0.join("dev/cciss!c0d0")).unwrap();
        let s = scanner(&t.0);
        let fake = FakeSys::new();
        let hit = s
            .find(&fake, &DeviceSpec::Name("cciss!c0d0".into()))
            .expect("listed in sysfs");
        let node = t.0.join("dev/cciss/c0d0");
        assert_eq!(hit.node, node);
        assert_eq!(hit.fs, None, "the fake made no node to read");
        assert!(t.0.join("dev/cciss").is_dir(), "the parent directory");
        assert_eq!(
            fake.calls(),
            [SysCall::MknodBlock {
                path: node,
                major: 104,
                minor: 1
            }]
        );
        // An existing node is used as it is.
        s.find(&fake, &DeviceSpec::Name("vda".into())).unwrap();
        assert_eq!(fake.calls().len(), 1);
    }
}

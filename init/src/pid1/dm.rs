//! Step 5a: the device-mapper devices the command line asks for
//! (`dm-mod.create=`, or systemd's `roothash=` verity root), made once the
//! modules are loaded and before the root is looked for, since the root may
//! be one of them (`root=/dev/mapper/NAME`). `dm_mod` is a module on
//! distribution kernels, so the kernel cannot run `dm-mod.create=` itself.
//!
//! A verity device is only ever read through the kernel's checks: a block
//! that does not match the root hash reads as EIO. Such an error at the
//! root's mount or at the real init's exec becomes [`BootError::Verity`],
//! which names the verity device (the kernel's own message names only the
//! disk under it), and the boot ends in `on_failure`.

use std::os::unix::fs::FileExt;

use modules_manifest::dm::{self, DmDevice, VerityRoot, VeritySuperblock, VERITY_SB_BYTES};
use modules_manifest::KernelCmdline;

use super::{Boot, BootError};
use crate::clock::Fixed;
use crate::pid1::rootdev::{self, BlockScanner, DeviceSpec, FoundDevice, RealWaiter, RootWait};
use crate::sys::Sys;

/// What the command line asks for, and what was made of it.
#[derive(Debug, Default)]
pub(super) struct DeviceMapper {
    create: Vec<DmDevice>,
    verity_root: Option<VerityRoot>,
    made: Vec<MadeDevice>,
}

/// A device created by [`Boot::set_up_device_mapper`].
#[derive(Debug, Clone)]
struct MadeDevice {
    name: String,
    major: u32,
    minor: u32,
    verity: bool,
}

impl MadeDevice {
    /// Its name in `/sys/class/block` (the kernel names dm disks by minor).
    fn sysname(&self) -> String {
        format!("dm-{}", self.minor)
    }

    fn describe(&self) -> String {
        format!(
            "{} (/dev/mapper/{} = /dev/{}, {}:{})",
            self.name,
            self.name,
            self.sysname(),
            self.major,
            self.minor
        )
    }
}

fn dm_err(message: impl std::fmt::Display) -> BootError {
    BootError::DeviceMapper(message.to_string())
}

impl<S: Sys> Boot<S> {
    /// Step 2d: checks `dm-mod.create=` and `roothash=` with its
    /// `systemd.verity_root_*` options. A malformed one stops the boot
    /// with an error naming the option and field: booting on without the
    /// device the user asked for could only fail later, less clearly.
    pub fn read_device_mapper(&mut self, cmdline: &KernelCmdline) -> Result<(), BootError> {
        let o = &cmdline.dm;
        if let Some(v) = &o.create {
            self.dm.create = dm::parse_create(v).map_err(dm_err)?;
        }
        if let Some(v) = VerityRoot::from_cmdline(
            o.roothash.as_deref(),
            o.verity_root_data.as_deref(),
            o.verity_root_hash.as_deref(),
            o.verity_root_options.as_deref(),
        ) {
            if self
                .dm
                .create
                .iter()
                .any(|d| d.name == dm::VERITY_ROOT_NAME)
            {
                return Err(dm_err(
                    "roothash= and dm-mod.create= both create a device named root",
                ));
            }
            self.dm.verity_root = Some(v.map_err(dm_err)?);
        }
        Ok(())
    }

    /// Step 5a: waits (within `wait`, the root's budget) for the devices
    /// each table names, creates the devices, and makes the
    /// `/dev/mapper/NAME` nodes (devtmpfs has only `/dev/dm-N`).
    pub(super) fn set_up_device_mapper(&mut self, wait: RootWait) -> Result<(), BootError> {
        let mut devices = std::mem::take(&mut self.dm.create);
        if let Some(v) = self.dm.verity_root.take() {
            devices.push(self.resolve_verity_root(&v, wait)?);
        }
        if devices.is_empty() {
            return Ok(());
        }
        let control = self.paths.dev.join("mapper/control");
        for dev in &devices {
            for t in &dev.targets {
                for word in t.device_args() {
                    self.wait_for_table_device(&dev.name, word, wait)?;
                }
            }
            let (major, minor) = self.sys.dm_create(&control, dev).map_err(|e| {
                let why = if e.kind() == std::io::ErrorKind::NotFound && !control.exists() {
                    format!(" ({} is missing: is dm_mod loaded?)", control.display())
                } else {
                    String::new()
                };
                dm_err(format!("creating {}: {e}{why}", dev.name))
            })?;
            let made = MadeDevice {
                name: dev.name.clone(),
                major,
                minor,
                verity: dev.is_verity(),
            };
            let node = self.paths.dev.join("mapper").join(&dev.name);
            if !node.exists() {
                let made_node = std::fs::create_dir_all(self.paths.dev.join("mapper"))
                    .and_then(|()| self.sys.mknod_block(&node, major, minor));
                if let Err(e) = made_node {
                    log::warn!("cannot create {}: {e}", node.display());
                }
            }
            log::info!(
                "device-mapper: created {}, {} target(s): {}{}",
                made.describe(),
                dev.targets.len(),
                dev.targets
                    .iter()
                    .map(|t| t.target_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if dev.read_only { ", read-only" } else { "" }
            );
            self.dm.made.push(made);
        }
        self.step("device_mapper");
        Ok(())
    }

    /// Waits for the device `spec` (a `root=`-style spec) within `wait`;
    /// a wait longer than the first look is a note in the report naming the
    /// module whose driver brought the device.
    fn wait_for_dm_device(
        &mut self,
        who: &str,
        spec: &DeviceSpec,
        wait: RootWait,
    ) -> Result<FoundDevice, BootError> {
        let scanner = BlockScanner::at(&self.paths.sys, &self.paths.dev);
        if let Some(f) = scanner.find(&self.sys, spec) {
            return Ok(f);
        }
        let started = std::time::Instant::now();
        let found = rootdev::wait_for(
            wait,
            &mut RealWaiter::start(),
            || scanner.find(&self.sys, spec),
            |t| {
                log::warn!(
                    "{who}: still waiting for {spec} ({} s)",
                    Fixed(t.as_secs_f64(), 0)
                )
            },
        )
        .map_err(|waited| {
            dm_err(format!(
                "{who}: device {spec} not found after waiting {} s",
                Fixed(waited.as_secs_f64(), 1)
            ))
        })?;
        // Which module the wait was for: the driver of the disk that came.
        let driver = scanner
            .driver_module(&found.device)
            .map(|m| format!(", driven by {m}"))
            .unwrap_or_default();
        let note = format!(
            "{who}: waited {} s for {spec} ({}{driver})",
            Fixed(started.elapsed().as_secs_f64(), 3),
            found.node.display()
        );
        log::info!("{note}");
        self.report.notes.push(note);
        Ok(found)
    }

    fn wait_for_table_device(
        &mut self,
        name: &str,
        word: &str,
        wait: RootWait,
    ) -> Result<(), BootError> {
        let spec = DeviceSpec::parse(word)
            .map_err(|e| dm_err(format!("dm-mod.create: device {name:?}: {e}")))?;
        self.wait_for_dm_device(&format!("device-mapper {name}"), &spec, wait)
            .map(|_| ())
    }

    /// systemd's verity root: finds the data and hash devices, reads the
    /// superblock, and builds the table of `/dev/mapper/root`.
    fn resolve_verity_root(
        &mut self,
        v: &VerityRoot,
        wait: RootWait,
    ) -> Result<DmDevice, BootError> {
        let spec = |option: &str, s: &str| {
            DeviceSpec::parse(s).map_err(|e| dm_err(format!("{option}: {e}")))
        };
        let data_spec = spec("systemd.verity_root_data", &v.data)?;
        let hash_spec = spec("systemd.verity_root_hash", &v.hash)?;
        let data = self.wait_for_dm_device("verity root data", &data_spec, wait)?;
        let hash = self.wait_for_dm_device("verity root hash", &hash_spec, wait)?;
        let mut head = [0u8; VERITY_SB_BYTES];
        std::fs::File::open(&hash.node)
            .and_then(|f| f.read_exact_at(&mut head, v.hash_offset))
            .map_err(|e| {
                dm_err(format!(
                    "systemd.verity_root_hash: reading {}: {e}",
                    hash.node.display()
                ))
            })?;
        let sb = match VeritySuperblock::parse(&head) {
            Some(Ok(sb)) => sb,
            Some(Err(m)) => {
                return Err(dm_err(format!(
                    "systemd.verity_root_hash: the verity superblock of {}: {m}",
                    hash.node.display()
                )))
            }
            None => {
                return Err(dm_err(format!(
                    "systemd.verity_root_hash: no verity superblock at byte {} of {} ({})",
                    v.hash_offset,
                    hash.node.display(),
                    v.hash
                )))
            }
        };
        let number = |f: &FoundDevice| format!("{}:{}", f.device.major, f.device.minor);
        log::info!(
            "verity root: data {} ({}), hash {} ({}), {} blocks of {} bytes, {}",
            v.data,
            data.node.display(),
            v.hash,
            hash.node.display(),
            sb.data_blocks,
            sb.data_block_size,
            sb.algorithm
        );
        v.device(&number(&data), &number(&hash), &sb)
            .map_err(dm_err)
    }

    /// The error for a failed read of the root (`sysname` in
    /// `/sys/class/block`), or of the real init when `sysname` is `None`:
    /// a [`BootError::Verity`] naming the verity device if the read went
    /// through one, else `None`.
    pub(super) fn verity_failure(
        &self,
        sysname: Option<&str>,
        what: String,
        source: &dyn std::fmt::Display,
    ) -> Option<BootError> {
        let control = self.paths.dev.join("mapper/control");
        let status = |d: &MadeDevice| {
            self.sys
                .dm_status(&control, &d.name)
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let verity = self.dm.made.iter().filter(|d| d.verity);
        let (dev, status) = match sysname {
            Some(n) => {
                let d = verity.clone().find(|d| d.sysname() == n)?;
                (d, status(d))
            }
            // The exec: the device that saw a bad block, else the first.
            None => verity
                .clone()
                .map(|d| (d, status(d)))
                .find(|(_, s)| s.as_deref() == Some("C"))
                .or_else(|| verity.clone().next().map(|d| (d, status(d))))?,
        };
        Some(BootError::Verity {
            device: dev.describe(),
            what,
            status,
            // A mount error lists its attempts, each ending in ';'.
            source: source.to_string().trim_end_matches(';').to_owned(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::pid1::Paths;
    use crate::sys::{FakeSys, SysCall};

    struct Tree(PathBuf);

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A sysfs and /dev with `vda` (254:0) and `vdb` (254:16, its first
    /// bytes `hash_head`).
    fn tree(tag: &str, hash_head: &[u8]) -> (Tree, Paths) {
        let top = std::env::temp_dir().join(format!("kmodinit-dm-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let paths = Paths::under(&top);
        for (name, dev, bytes) in [
            ("vda", "254:0", &[0u8; 4096][..]),
            ("vdb", "254:16", hash_head),
        ] {
            let d = paths.sys.join("devices").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("dev"), format!("{dev}\n")).unwrap();
            std::fs::write(d.join("size"), "8\n").unwrap();
            std::fs::create_dir_all(paths.sys.join("class/block")).unwrap();
            std::os::unix::fs::symlink(&d, paths.sys.join("class/block").join(name)).unwrap();
            std::fs::create_dir_all(&paths.dev).unwrap();
            std::fs::write(paths.dev.join(name), bytes).unwrap();
        }
        (Tree(top), paths)
    }

    fn cmdline(line: &str) -> KernelCmdline {
        KernelCmdline::parse(line)
    }

    const NOW: RootWait = RootWait::Upto(std::time::Duration::ZERO);

    #[test]
    fn dm_mod_create_makes_each_device_and_its_mapper_node() {
        let (_t, paths) = tree("create", &[0u8; 4096]);
        let mut b = Boot::new(FakeSys::new(), paths.clone(), 0.0);
        b.read_device_mapper(&cmdline(
            "dm-mod.create=\"lin,,,rw,0 8 linear /dev/vda 0;two,,,ro,0 8 linear 254:16 0\"",
        ))
        .unwrap();
        b.set_up_device_mapper(NOW).unwrap();
        let calls = b.sys.calls();
        let created: Vec<&str> = calls
            .iter()
            .filter_map(|c| match c {
                SysCall::DmCreate(d) => Some(d.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(created, ["lin", "two"]);
        assert!(calls.contains(&SysCall::MknodBlock {
            path: paths.dev.join("mapper/two"),
            major: 253,
            minor: 1
        }));
        assert_eq!(
            b.report.steps.last().map(|s| s.step.as_str()),
            Some("device_mapper")
        );
        // Not verity: a failed read of it is not a verity failure.
        assert!(b.verity_failure(Some("dm-0"), "x".into(), &"EIO").is_none());
    }

    #[test]
    fn a_missing_table_device_is_an_error_naming_device_and_disk() {
        let (_t, paths) = tree("missing", &[0u8; 4096]);
        let mut b = Boot::new(FakeSys::new(), paths, 0.0);
        b.read_device_mapper(&cmdline("dm-mod.create=\"v,,,ro,0 8 linear /dev/vdz 0\""))
            .unwrap();
        let e = b.set_up_device_mapper(NOW).unwrap_err().to_string();
        assert_eq!(
            e,
            "device-mapper: device-mapper v: device /dev/vdz not found after waiting 0.0 s"
        );
        assert!(b.sys.calls().is_empty());
    }

    #[test]
    fn malformed_options_stop_the_boot_naming_the_field() {
        let (_t, paths) = tree("bad", &[0u8; 4096]);
        let mut b = Boot::new(FakeSys::new(), paths, 0.0);
        let e = b
            .read_device_mapper(&cmdline("dm-mod.create=\"v,,,rx,0 8 zero\""))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("dm-mod.create: device 1: \"v\": flags \"rx\""),
            "{e}"
        );
        let e = b
            .read_device_mapper(&cmdline("roothash=xyz systemd.verity_root_data=/dev/vda"))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("device-mapper: roothash: "),
            "{e}"
        );
    }

    fn superblock() -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[0..8].copy_from_slice(b"verity\0\0");
        h[8] = 1;
        h[12] = 1;
        h[16..32].copy_from_slice(&[0x11; 16]);
        h[32..38].copy_from_slice(b"sha256");
        h[64..68].copy_from_slice(&4096u32.to_le_bytes());
        h[68..72].copy_from_slice(&4096u32.to_le_bytes());
        h[72] = 2;
        h
    }

    #[test]
    fn roothash_reads_the_superblock_of_the_hash_device_found_by_uuid() {
        let (_t, paths) = tree("roothash", &superblock());
        let mut b = Boot::new(FakeSys::new().dm_status("C"), paths, 0.0);
        let hash = "ab".repeat(32);
        b.read_device_mapper(&cmdline(&format!(
            "roothash={hash} systemd.verity_root_data=/dev/vda \
             systemd.verity_root_hash=UUID=11111111-1111-1111-1111-111111111111"
        )))
        .unwrap();
        b.set_up_device_mapper(NOW).unwrap();
        let Some(SysCall::DmCreate(d)) = b.sys.calls().into_iter().next() else {
            panic!("no device created: {:?}", b.sys.calls());
        };
        assert_eq!(d.name, "root");
        assert!(d.read_only);
        assert_eq!(d.targets[0].length, 16);
        assert_eq!(
            d.targets[0].args,
            format!("1 254:0 254:16 4096 4096 2 1 sha256 {hash} -")
        );
        let e = b
            .verity_failure(Some("dm-0"), "mounting the root".into(), &"EIO")
            .unwrap()
            .to_string();
        assert!(
            e.starts_with(
                "verity device root (/dev/mapper/root = /dev/dm-0, 253:0): mounting the root failed: EIO; a block does not match the root hash"
            ),
            "{e}"
        );
        assert!(b
            .verity_failure(None, "executing /sbin/init".into(), &"EIO")
            .is_some());
    }

    #[test]
    fn a_hash_device_without_superblock_is_named() {
        let (_t, paths) = tree("nosb", &[0u8; 4096]);
        let mut b = Boot::new(FakeSys::new(), paths, 0.0);
        b.read_device_mapper(&cmdline(&format!(
            "roothash={} systemd.verity_root_data=/dev/vda systemd.verity_root_hash=/dev/vdb",
            "ab".repeat(32)
        )))
        .unwrap();
        let e = b.set_up_device_mapper(NOW).unwrap_err().to_string();
        assert!(
            e.contains("systemd.verity_root_hash: no verity superblock at byte 0 of"),
            "{e}"
        );
    }
}

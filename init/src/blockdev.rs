//! Finding the root block device without udev: `root=` names a device by
//! path, `MAJ:MIN`, `UUID=`, `LABEL=`, `PARTUUID=` or `PARTLABEL=`; we list
//! `/sys/class/block`, create missing device nodes, and read filesystem
//! superblocks and partition tables ourselves.
//!
//! The parsers (`probe_filesystem`, `gpt_header`, `gpt_entries`,
//! `mbr_partitions`) are pure functions over byte slices; the scanner takes
//! its sysfs and /dev directories as arguments, so tests run on fake trees
//! and image files.
#![allow(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bytes to read from the start of a device to probe every supported
/// filesystem (btrfs keeps its superblock at 64 KiB).
pub const PROBE_BYTES: usize = 64 * 1024 + 4096;

/// How `root=` names the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `/dev/NAME` (NAME as in `/sys/class/block`, `/` written as `!`).
    Name(String),
    /// `MAJ:MIN` in decimal.
    Number {
        major: u32,
        minor: u32,
    },
    /// Filesystem UUID (compared case-insensitively).
    Uuid(String),
    Label(String),
    /// GPT unique partition GUID, or MBR `SSSSSSSS-PP`.
    PartUuid(String),
    /// GPT partition name.
    PartLabel(String),
}

/// A `root=` value we cannot interpret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpecError {
    pub spec: String,
}

impl fmt::Display for DeviceSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "root device {:?} is not /dev/NAME, MAJ:MIN, UUID=, LABEL=, PARTUUID= or PARTLABEL=",
            self.spec
        )
    }
}

impl std::error::Error for DeviceSpecError {}

impl DeviceSpec {
    /// Parses a `root=` value. Quotes around the value are removed.
    pub fn parse(raw: &str) -> Result<DeviceSpec, DeviceSpecError> {
        let s = raw.trim().trim_matches('"');
        let err = || DeviceSpecError {
            spec: raw.to_string(),
        };
        let nonempty = |v: &str| {
            if v.is_empty() {
                Err(err())
            } else {
                Ok(v.to_string())
            }
        };
        if let Some(v) = s.strip_prefix("UUID=") {
            return nonempty(v).map(DeviceSpec::Uuid);
        }
        if let Some(v) = s.strip_prefix("LABEL=") {
            return nonempty(v).map(DeviceSpec::Label);
        }
        if let Some(v) = s.strip_prefix("PARTUUID=") {
            return nonempty(v).map(DeviceSpec::PartUuid);
        }
        if let Some(v) = s.strip_prefix("PARTLABEL=") {
            return nonempty(v).map(DeviceSpec::PartLabel);
        }
        if let Some(v) = s.strip_prefix("/dev/") {
            // No udev here, so /dev/disk/by-* links do not exist; map them
            // to the tag they stand for.
            if let Some(u) = v.strip_prefix("disk/by-uuid/") {
                return nonempty(u).map(DeviceSpec::Uuid);
            }
            if let Some(u) = v.strip_prefix("disk/by-label/") {
                return nonempty(u).map(DeviceSpec::Label);
            }
            if let Some(u) = v.strip_prefix("disk/by-partuuid/") {
                return nonempty(u).map(DeviceSpec::PartUuid);
            }
            if v.is_empty() || v.split('/').any(|c| c.is_empty() || c == "..") {
                return Err(err());
            }
            return Ok(DeviceSpec::Name(v.replace('/', "!")));
        }
        if let Some((ma, mi)) = s.split_once(':') {
            if let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) {
                return Ok(DeviceSpec::Number { major, minor });
            }
        }
        Err(err())
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Name(n) => write!(f, "/dev/{}", n.replace('!', "/")),
            DeviceSpec::Number { major, minor } => write!(f, "{major}:{minor}"),
            DeviceSpec::Uuid(u) => write!(f, "UUID={u}"),
            DeviceSpec::Label(l) => write!(f, "LABEL={l}"),
            DeviceSpec::PartUuid(u) => write!(f, "PARTUUID={u}"),
            DeviceSpec::PartLabel(l) => write!(f, "PARTLABEL={l}"),
        }
    }
}

/// What a superblock says about a filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// The kernel's name for the type (`ext4`, `xfs`, `btrfs`, `vfat`, …).
    pub fstype: &'static str,
    pub uuid: Option<String>,
    pub label: Option<String>,
}

impl FsInfo {
    /// Filesystem types worth trying in `mount(2)`, best first: an ext2 or
    /// ext3 volume mounts with the ext4 driver when the kernel has no
    /// separate ext2/ext3 registered.
    pub fn mount_types(&self) -> Vec<&'static str> {
        match self.fstype {
            "ext2" | "ext3" => vec![self.fstype, "ext4"],
            other => vec![other],
        }
    }
}

fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Formats 16 bytes as a UUID in on-disk byte order (ext4, xfs, btrfs).
pub fn format_uuid_be(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// Formats a GUID as stored by EFI: the first three fields little-endian.
pub fn format_guid_mixed(b: &[u8; 16]) -> String {
    let mut swapped = *b;
    swapped[0..4].reverse();
    swapped[4..6].reverse();
    swapped[6..8].reverse();
    format_uuid_be(&swapped)
}

fn uuid_at(b: &[u8], off: usize) -> Option<[u8; 16]> {
    b.get(off..off + 16)?.try_into().ok()
}

/// A NUL-padded label; `None` when empty.
fn label_at(b: &[u8], off: usize, len: usize) -> Option<String> {
    let raw = b.get(off..off + len)?;
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(&raw[..end]).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

fn nonzero_uuid(u: [u8; 16], fmt: fn(&[u8; 16]) -> String) -> Option<String> {
    (u != [0; 16]).then(|| fmt(&u))
}

/// Identifies the filesystem whose first bytes are `buf` (pass at least
/// [`PROBE_BYTES`] when the device is that large). Never panics; `None` for
/// anything it does not recognise.
pub fn probe_filesystem(buf: &[u8]) -> Option<FsInfo> {
    probe_ext(buf)
        .or_else(|| probe_xfs(buf))
        .or_else(|| probe_btrfs(buf))
        .or_else(|| probe_vfat(buf))
}

fn probe_ext(buf: &[u8]) -> Option<FsInfo> {
    const SB: usize = 1024;
    const EXT_MAGIC: u16 = 0xEF53;
    if le16(buf, SB + 56)? != EXT_MAGIC {
        return None;
    }
    let compat = le32(buf, SB + 92)?;
    let incompat = le32(buf, SB + 96)?;
    let ro_compat = le32(buf, SB + 100)?;
    const COMPAT_HAS_JOURNAL: u32 = 0x4;
    // Features only ext4 understands (extents, 64bit, flex_bg, …, and the
    // ro_compat ones huge_file, gdt_csum, dir_nlink, extra_isize, metadata_csum).
    const INCOMPAT_EXT4: u32 = 0x40 | 0x80 | 0x200 | 0x400 | 0x1000 | 0x8000 | 0x10000;
    const RO_COMPAT_EXT4: u32 = 0x8 | 0x10 | 0x20 | 0x40 | 0x400;
    let fstype = if incompat & INCOMPAT_EXT4 != 0 || ro_compat & RO_COMPAT_EXT4 != 0 {
        "ext4"
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    Some(FsInfo {
        fstype,
        uuid: nonzero_uuid(uuid_at(buf, SB + 104)?, format_uuid_be),
        label: label_at(buf, SB + 120, 16),
    })
}

fn probe_xfs(buf: &[u8]) -> Option<FsInfo> {
    if buf.get(0..4)? != b"XFSB" {
        return None;
    }
    Some(FsInfo {
        fstype: "xfs",
        uuid: nonzero_uuid(uuid_at(buf, 32)?, format_uuid_be),
        label: label_at(buf, 108, 12),
    })
}

fn probe_btrfs(buf: &[u8]) -> Option<FsInfo> {
    const SB: usize = 64 * 1024;
    if buf.get(SB + 64..SB + 72)? != b"_BHRfS_M" {
        return None;
    }
    Some(FsInfo {
        fstype: "btrfs",
        uuid: nonzero_uuid(uuid_at(buf, SB + 32)?, format_uuid_be),
        label: label_at(buf, SB + 0x12b, 256),
    })
}

fn probe_vfat(buf: &[u8]) -> Option<FsInfo> {
    if buf.get(510..512)? != [0x55, 0xAA] {
        return None;
    }
    // A plausible BIOS parameter block, so that an MBR partition table (which
    // shares the 0x55AA signature) is not taken for a FAT volume.
    let bytes_per_sector = le16(buf, 11)?;
    let sectors_per_cluster = *buf.get(13)?;
    let reserved = le16(buf, 14)?;
    let fats = *buf.get(16)?;
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        || !sectors_per_cluster.is_power_of_two()
        || reserved == 0
        || !matches!(fats, 1 | 2)
    {
        return None;
    }
    let fat_size_16 = le16(buf, 22)?;
    // FAT32 keeps its extended boot record further out than FAT12/16.
    let (sig_off, id_off, label_off, type_off) = if fat_size_16 == 0 {
        (66, 67, 71, 82)
    } else {
        (38, 39, 43, 54)
    };
    if !matches!(*buf.get(sig_off)?, 0x28 | 0x29) && buf.get(type_off..type_off + 3)? != b"FAT" {
        return None;
    }
    let serial = le32(buf, id_off)?;
    let label = label_at(buf, label_off, 11).filter(|l| l != "NO NAME");
    Some(FsInfo {
        fstype: "vfat",
        uuid: Some(format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff)),
        label,
    })
}

/// A partition as the partition table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionId {
    /// The kernel's partition number (`/sys/class/block/X/partition`).
    pub number: u32,
    /// GPT unique GUID (lowercase) or MBR `ssssssss-pp`.
    pub uuid: String,
    /// GPT partition name.
    pub name: Option<String>,
}

/// Where a GPT's partition entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptHeader {
    /// Byte offset of the entry array on the disk.
    pub entries_offset: u64,
    pub entry_count: u32,
    pub entry_size: u32,
}

impl GptHeader {
    /// Bytes the entry array takes, capped so a corrupt header cannot make
    /// us read megabytes.
    pub fn entries_len(&self) -> usize {
        const MAX_ENTRIES_BYTES: u64 = 1024 * 1024;
        (u64::from(self.entry_count) * u64::from(self.entry_size)).min(MAX_ENTRIES_BYTES) as usize
    }
}

/// Reads the GPT header at LBA 1 for the given sector size; `buf` starts at
/// byte 0 of the disk.
pub fn gpt_header(buf: &[u8], sector_size: usize) -> Option<GptHeader> {
    let h = buf.get(sector_size..sector_size + 92)?;
    if &h[0..8] != b"EFI PART" {
        return None;
    }
    let entries_lba = le64(h, 72)?;
    let entry_count = le32(h, 80)?;
    let entry_size = le32(h, 84)?;
    if entry_size < 128 || entry_count == 0 {
        return None;
    }
    Some(GptHeader {
        entries_offset: entries_lba.checked_mul(sector_size as u64)?,
        entry_count,
        entry_size,
    })
}

/// Parses the GPT entry array; unused entries (zero type GUID) are skipped
/// but still count for numbering, as the kernel numbers them.
pub fn gpt_entries(header: &GptHeader, entries: &[u8]) -> Vec<PartitionId> {
    let size = header.entry_size as usize;
    let mut out = Vec::new();
    for (i, e) in entries.chunks_exact(size).enumerate() {
        if i >= header.entry_count as usize {
            break;
        }
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let Some(unique) = uuid_at(e, 16) else {
            continue;
        };
        let name_units: Vec<u16> = e[56..128.min(e.len())]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16_lossy(&name_units);
        out.push(PartitionId {
            number: i as u32 + 1,
            uuid: format_guid_mixed(&unique),
            name: (!name.is_empty()).then_some(name),
        });
    }
    out
}

/// The four primary MBR partitions, `PARTUUID` as the kernel prints it
/// (`ssssssss-pp`). `None` without an MBR signature or for a GPT's
/// protective MBR.
pub fn mbr_partitions(buf: &[u8]) -> Option<Vec<PartitionId>> {
    if buf.get(510..512)? != [0x55, 0xAA] {
        return None;
    }
    let signature = le32(buf, 440)?;
    let mut out = Vec::new();
    for i in 0..4 {
        let e = buf.get(446 + 16 * i..446 + 16 * (i + 1))?;
        let kind = e[4];
        if kind == 0xEE {
            return None;
        }
        if kind == 0 || !matches!(e[0], 0x00 | 0x80) {
            continue;
        }
        out.push(PartitionId {
            number: i as u32 + 1,
            uuid: format!("{signature:08x}-{:02x}", i + 1),
            name: None,
        });
    }
    Some(out)
}

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
    /// The real system: `/sys/class/block` and `/dev`.
    pub fn system() -> BlockScanner {
        BlockScanner {
            class_block: PathBuf::from("/sys/class/block"),
            dev_dir: PathBuf::from("/dev"),
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
    pub fn node(&self, dev: &BlockDevice) -> io::Result<PathBuf> {
        let path = self.dev_dir.join(dev.name.replace('!', "/"));
        if path.exists() {
            return Ok(path);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(u64::from(dev.major), u64::from(dev.minor)),
        )?;
        Ok(path)
    }

    fn read_head(node: &Path) -> Option<Vec<u8>> {
        let f = File::open(node).ok()?;
        read_at(&f, 0, PROBE_BYTES)
    }

    /// Looks once for the device `spec` names; `None` if it is not there
    /// (yet). Devices without a medium are not probed.
    pub fn find(&self, spec: &DeviceSpec) -> Option<FoundDevice> {
        let devices = self.devices();
        let found = |device: &BlockDevice| -> Option<FoundDevice> {
            let node = self.node(device).ok()?;
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
                    let Ok(node) = self.node(disk) else { continue };
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

fn read_at(f: &File, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    buf.truncate(done);
    Some(buf)
}

/// The partitions of the disk at `node`: GPT (512- or 4096-byte sectors)
/// first, else MBR primaries.
pub fn read_partition_table(node: &Path) -> Option<Vec<PartitionId>> {
    let f = File::open(node).ok()?;
    let head = read_at(&f, 0, 8192)?;
    for sector in [512usize, 4096] {
        if let Some(h) = gpt_header(&head, sector) {
            let entries = read_at(&f, h.entries_offset, h.entries_len())?;
            return Some(gpt_entries(&h, &entries));
        }
    }
    mbr_partitions(&head)
}

/// How long to wait for the root device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootWait {
    /// `rootwait`: until it appears.
    Forever,
    /// At most this long.
    Upto(Duration),
}

impl fmt::Display for RootWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootWait::Forever => f.write_str("rootwait: no time limit"),
            RootWait::Upto(d) => write!(f, "up to {} s", crate::clock::Fixed(d.as_secs_f64(), 1)),
        }
    }
}

/// The first poll interval; doubled each round up to [`POLL_MAX`], so a
/// device that shows up quickly is found quickly and a slow one costs little.
pub const POLL_MIN: Duration = Duration::from_millis(10);
pub const POLL_MAX: Duration = Duration::from_millis(100);
/// How often a waiting boot says that it is still waiting.
pub const WAIT_LOG_EVERY: Duration = Duration::from_secs(5);

/// A clock and a sleep, injected so the wait loop is tested without time.
pub trait Waiter {
    /// Time since the wait started.
    fn elapsed(&self) -> Duration;
    fn sleep(&mut self, d: Duration);
}

/// The real clock.
#[derive(Debug)]
pub struct RealWaiter(std::time::Instant);

impl RealWaiter {
    pub fn start() -> RealWaiter {
        RealWaiter(std::time::Instant::now())
    }
}

impl Waiter for RealWaiter {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// Polls `probe` with a 10 ms → 100 ms backoff until it yields, or the wait
/// runs out (`Err(waited)`). Calls `still_waiting(elapsed)` about every
/// [`WAIT_LOG_EVERY`]. Blocking.
pub fn wait_for<T>(
    wait: RootWait,
    waiter: &mut impl Waiter,
    mut probe: impl FnMut() -> Option<T>,
    mut still_waiting: impl FnMut(Duration),
) -> Result<T, Duration> {
    let mut interval = POLL_MIN;
    let mut next_log = WAIT_LOG_EVERY;
    loop {
        if let Some(t) = probe() {
            return Ok(t);
        }
        let elapsed = waiter.elapsed();
        if let RootWait::Upto(limit) = wait {
            if elapsed >= limit {
                return Err(elapsed);
            }
        }
        if elapsed >= next_log {
            still_waiting(elapsed);
            next_log = elapsed + WAIT_LOG_EVERY;
        }
        waiter.sleep(interval);
        interval = (interval * 2).min(POLL_MAX);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn ext4_image() -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        b[1024 + 96..1024 + 100].copy_from_slice(&0x2c2u32.to_le_bytes());
        for (i, x) in b[1024 + 104..1024 + 120].iter_mut().enumerate() {
            *x = i as u8 * 17;
        }
        b[1024 + 120..1024 + 124].copy_from_slice(b"root");
        b
    }

    #[test]
    fn parses_device_specs() {
        assert_eq!(
            DeviceSpec::parse("/dev/vda1"),
            Ok(DeviceSpec::Name("vda1".into()))
        );
        assert_eq!(
            DeviceSpec::parse("/dev/cciss/c0d0"),
            Ok(DeviceSpec::Name("cciss!c0d0".into()))
        );
        assert_eq!(
            DeviceSpec::parse("UUID=ab-cd"),
            Ok(DeviceSpec::Uuid("ab-cd".into()))
        );
        assert_eq!(
            DeviceSpec::parse("\"LABEL=my root\""),
            Ok(DeviceSpec::Label("my root".into()))
        );
        assert_eq!(
            DeviceSpec::parse("PARTUUID=x"),
            Ok(DeviceSpec::PartUuid("x".into()))
        );
        assert_eq!(
            DeviceSpec::parse("PARTLABEL=p"),
            Ok(DeviceSpec::PartLabel("p".into()))
        );
        assert_eq!(
            DeviceSpec::parse("/dev/disk/by-uuid/1234"),
            Ok(DeviceSpec::Uuid("1234".into()))
        );
        assert_eq!(
            DeviceSpec::parse("254:1"),
            Ok(DeviceSpec::Number {
                major: 254,
                minor: 1
            })
        );
        for bad in [
            "",
            "UUID=",
            "vda",
            "/dev/",
            "/dev/../etc",
            "x:y",
            "/dev/a//b",
        ] {
            assert!(DeviceSpec::parse(bad).is_err(), "{bad:?} must not parse");
        }
        assert_eq!(
            DeviceSpec::parse("/dev/cciss/c0d0").map(|d| d.to_string()),
            Ok("/dev/cciss/c0d0".into())
        );
    }

    #[test]
    fn probes_synthetic_ext4() {
        let fs = probe_filesystem(&ext4_image()).expect("ext4");
        assert_eq!(fs.fstype, "ext4");
        assert_eq!(
            fs.uuid.as_deref(),
            Some("00112233-4455-6677-8899-aabbccddeeff")
        );
        assert_eq!(fs.label.as_deref(), Some("root"));
    }

    #[test]
    fn ext_flavour_follows_features() {
        let mut b = ext4_image();
        b[1024 + 96..1024 + 100].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(probe_filesystem(&b).map(|f| f.fstype), Some("ext2"));
        b[1024 + 92] = 0x4;
        let fs = probe_filesystem(&b).expect("ext3");
        assert_eq!(fs.fstype, "ext3");
        assert_eq!(fs.mount_types(), vec!["ext3", "ext4"]);
    }

    #[test]
    fn probes_synthetic_xfs_btrfs_vfat() {
        let mut x = vec![0u8; 512];
        x[0..4].copy_from_slice(b"XFSB");
        x[32..48].copy_from_slice(&[0xab; 16]);
        x[108..112].copy_from_slice(b"data");
        let fs = probe_filesystem(&x).expect("xfs");
        assert_eq!((fs.fstype, fs.label.as_deref()), ("xfs", Some("data")));
        assert_eq!(
            fs.uuid.as_deref(),
            Some("abababab-abab-abab-abab-abababababab")
        );

        let mut b = vec![0u8; PROBE_BYTES];
        let sb = 64 * 1024;
        b[sb + 32..sb + 48].copy_from_slice(&[1; 16]);
        b[sb + 64..sb + 72].copy_from_slice(b"_BHRfS_M");
        b[sb + 0x12b..sb + 0x12b + 3].copy_from_slice(b"btr");
        let fs = probe_filesystem(&b).expect("btrfs");
        assert_eq!((fs.fstype, fs.label.as_deref()), ("btrfs", Some("btr")));
        // btrfs' magic is beyond a short read: no match, no panic.
        assert_eq!(probe_filesystem(&b[..4096]), None);

        let mut v = vec![0u8; 512];
        v[11..13].copy_from_slice(&512u16.to_le_bytes());
        v[13] = 8;
        v[14..16].copy_from_slice(&32u16.to_le_bytes());
        v[16] = 2;
        v[66] = 0x29;
        v[67..71].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
        v[71..82].copy_from_slice(b"EFI        ");
        v[82..90].copy_from_slice(b"FAT32   ");
        v[510] = 0x55;
        v[511] = 0xAA;
        let fs = probe_filesystem(&v).expect("vfat");
        assert_eq!(fs.fstype, "vfat");
        assert_eq!(fs.uuid.as_deref(), Some("1234-ABCD"));
        assert_eq!(fs.label.as_deref(), Some("EFI"));
    }

    #[test]
    fn rejects_garbage_and_mbr() {
        assert_eq!(probe_filesystem(&[]), None);
        assert_eq!(probe_filesystem(&[0xff; 8192]), None);
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        assert_eq!(probe_filesystem(&mbr), None);
    }

    #[test]
    fn gpt_guid_is_mixed_endian() {
        let g = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            format_guid_mixed(&g),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        let d = super::tests_support::gpt_disk(g, "rootfs");
        assert_eq!(
            mbr_partitions(&d),
            None,
            "protective MBR is not an MBR table"
        );
        let h = gpt_header(&d, 512).expect("header");
        assert_eq!(gpt_header(&d, 4096), None);
        let start = h.entries_offset as usize;
        let parts = gpt_entries(&h, &d[start..start + h.entries_len().min(d.len() - start)]);
        assert_eq!(
            parts,
            vec![PartitionId {
                number: 2,
                uuid: "00112233-4455-6677-8899-aabbccddeeff".into(),
                name: Some("rootfs".into()),
            }]
        );
    }

    #[test]
    fn mbr_partuuid_format() {
        let mut d = vec![0u8; 512];
        d[440..444].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
        d[446 + 16 + 4] = 0x83;
        d[510] = 0x55;
        d[511] = 0xAA;
        let parts = mbr_partitions(&d).expect("mbr");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].number, 2);
        assert_eq!(parts[0].uuid, "deadbeef-02");
    }

    struct FakeWaiter {
        now: Duration,
        sleeps: Vec<Duration>,
    }

    impl Waiter for FakeWaiter {
        fn elapsed(&self) -> Duration {
            self.now
        }
        fn sleep(&mut self, d: Duration) {
            self.now += d;
            self.sleeps.push(d);
        }
    }

    #[test]
    fn wait_backs_off_and_gives_up() {
        let mut w = FakeWaiter {
            now: Duration::ZERO,
            sleeps: Vec::new(),
        };
        let mut logs = Vec::new();
        let r: Result<(), _> = wait_for(
            RootWait::Upto(Duration::from_secs(11)),
            &mut w,
            || None,
            |e| logs.push(e),
        );
        let waited = r.expect_err("never appears");
        assert!(waited >= Duration::from_secs(11));
        assert_eq!(&w.sleeps[..4], &[10, 20, 40, 80].map(Duration::from_millis));
        assert!(w.sleeps[4..].iter().all(|&s| s == POLL_MAX));
        assert_eq!(logs.len(), 2, "logged at about 5 s and 10 s: {logs:?}");
    }

    #[test]
    fn wait_returns_when_found() {
        let mut w = FakeWaiter {
            now: Duration::ZERO,
            sleeps: Vec::new(),
        };
        let mut polls = 0;
        let r = wait_for(
            RootWait::Forever,
            &mut w,
            || {
                polls += 1;
                (polls == 50).then_some(polls)
            },
            |_| {},
        );
        assert_eq!(r, Ok(50));
        assert_eq!(w.sleeps.len(), 49);
    }
}

/// Scanner tests on a fake sysfs tree whose device "nodes" are plain image
/// files in a temp directory (never host devices).
#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod scan_tests {
    use super::*;
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
        assert_eq!(s.devices().len(), 2);

        let by_uuid = s
            .find(&DeviceSpec::Uuid(uuid.to_uppercase()))
            .expect("by uuid");
        assert_eq!(by_uuid.device.name, "vdb");
        assert_eq!(by_uuid.node, t.0.join("dev/vdb"));
        let fs = by_uuid.fs.expect("probed");
        assert_eq!(fs.fstype, "ext4");
        assert_eq!(fs.label.as_deref(), Some("kroot"));

        assert_eq!(
            s.find(&DeviceSpec::Label("kroot".into()))
                .map(|f| f.device.name),
            Some("vdb".into())
        );
        assert_eq!(
            s.find(&DeviceSpec::Name("vdb".into()))
                .map(|f| f.device.minor),
            Some(16)
        );
        assert_eq!(
            s.find(&DeviceSpec::Number {
                major: 254,
                minor: 0
            })
            .map(|f| f.device.name),
            Some("vda".into())
        );
        assert_eq!(s.find(&DeviceSpec::Label("other".into())), None);
        assert_eq!(s.find(&DeviceSpec::Name("sda".into())), None);
    }

    #[test]
    fn finds_a_gpt_partition_by_partuuid_and_partlabel() {
        let t = TempDir::new("gpt");
        let guid = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        let disk = super::tests_support::gpt_disk(guid, "rootfs");
        add_dev(&t.0, "vda", None, "254:0", &disk);
        add_dev(&t.0, "vda", Some(("vda1", 1)), "254:1", &[0u8; 1024]);
        add_dev(&t.0, "vda", Some(("vda2", 2)), "254:2", &[0u8; 1024]);
        let s = scanner(&t.0);
        let devs = s.devices();
        assert_eq!(devs[1].disk.as_deref(), Some("vda"));
        let hit = s
            .find(&DeviceSpec::PartUuid(
                "00112233-4455-6677-8899-AABBCCDDEEFF".into(),
            ))
            .expect("partuuid");
        assert_eq!(hit.device.name, "vda2");
        assert_eq!(
            s.find(&DeviceSpec::PartLabel("rootfs".into()))
                .map(|f| f.device.name),
            Some("vda2".into())
        );
        assert_eq!(
            s.find(&DeviceSpec::PartUuid(
                "00000000-0000-0000-0000-000000000000".into()
            )),
            None
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests_support {
    /// A 40-sector disk with a protective MBR and a GPT whose second entry
    /// is used.
    pub fn gpt_disk(unique: [u8; 16], name: &str) -> Vec<u8> {
        let mut d = vec![0u8; 512 * 40];
        d[446 + 4] = 0xEE;
        d[510] = 0x55;
        d[511] = 0xAA;
        let h = 512;
        d[h..h + 8].copy_from_slice(b"EFI PART");
        d[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        d[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
        d[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 1024 + 128;
        d[e..e + 16].copy_from_slice(&[0x11; 16]);
        d[e + 16..e + 32].copy_from_slice(&unique);
        for (i, u) in name.encode_utf16().enumerate() {
            d[e + 56 + 2 * i..e + 58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        d
    }
}

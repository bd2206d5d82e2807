//! Filesystem superblock probes (ext2/3/4, xfs, btrfs, f2fs, vfat): pure
//! functions over the first bytes of a device, for `UUID=` and `LABEL=`.

/// Bytes to read from the start of a device to probe every supported
/// filesystem (btrfs keeps its superblock at 64 KiB).
pub const PROBE_BYTES: usize = 64 * 1024 + 4096;

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

pub(crate) fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

pub(crate) fn le64(b: &[u8], off: usize) -> Option<u64> {
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

pub(crate) fn uuid_at(b: &[u8], off: usize) -> Option<[u8; 16]> {
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
        .or_else(|| probe_f2fs(buf))
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

/// f2fs: `struct f2fs_super_block` at 1 KiB (`F2FS_SUPER_OFFSET`), magic
/// `0xF2F52010`, the UUID at 108 and the label at 124 as up to 512 UTF-16LE
/// units (`volume_name`), as blkid reads them.
fn probe_f2fs(buf: &[u8]) -> Option<FsInfo> {
    const SB: usize = 1024;
    const F2FS_MAGIC: u32 = 0xF2F5_2010;
    const LABEL_UNITS: usize = 512;
    if le32(buf, SB)? != F2FS_MAGIC {
        return None;
    }
    let units: Vec<u16> = (0..LABEL_UNITS)
        .map_while(|i| le16(buf, SB + 124 + 2 * i).filter(|&u| u != 0))
        .collect();
    let label = String::from_utf16_lossy(&units);
    Some(FsInfo {
        fstype: "f2fs",
        uuid: nonzero_uuid(uuid_at(buf, SB + 108)?, format_uuid_be),
        label: (!label.is_empty()).then_some(label),
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
    fn probes_synthetic_f2fs() {
        let mut b = vec![0u8; 4096];
        b[1024..1028].copy_from_slice(&0xF2F5_2010u32.to_le_bytes());
        b[1024 + 108..1024 + 124].copy_from_slice(&[
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ]);
        for (i, c) in "kmiröot".encode_utf16().enumerate() {
            b[1024 + 124 + 2 * i..1024 + 126 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        let fs = probe_filesystem(&b).expect("f2fs");
        assert_eq!(fs.fstype, "f2fs");
        assert_eq!(
            fs.uuid.as_deref(),
            Some("01234567-89ab-cdef-0123-456789abcdef")
        );
        assert_eq!(fs.label.as_deref(), Some("kmiröot"));
        assert_eq!(fs.mount_types(), vec!["f2fs"]);
        // No label, and a read that ends inside the label: no panic.
        b[1024 + 124..2048].fill(0);
        assert_eq!(probe_filesystem(&b).unwrap().label, None);
        assert_eq!(probe_filesystem(&b[..1024 + 120]), None);
        b[1024 + 124] = b'x';
        assert_eq!(
            probe_filesystem(&b[..1024 + 130]).unwrap().label.as_deref(),
            Some("x")
        );
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
}

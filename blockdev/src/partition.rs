//! Partition tables (GPT with 512- or 4096-byte sectors, MBR primaries):
//! pure parsers over a disk's bytes for `PARTUUID=` and `PARTLABEL=`, and
//! the read of a disk node that feeds them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::probe::{format_uuid_be, le32, le64, uuid_at};

/// Formats a GUID as stored by EFI: the first three fields little-endian.
pub fn format_guid_mixed(b: &[u8; 16]) -> String {
    let mut swapped = *b;
    swapped[0..4].reverse();
    swapped[4..6].reverse();
    swapped[6..8].reverse();
    format_uuid_be(&swapped)
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

pub fn read_at(f: &File, offset: u64, len: usize) -> Option<Vec<u8>> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

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
        let d = crate::partition::tests_support::gpt_disk(g, "rootfs");
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
}

/// Disk images for tests, here and in `/init`'s root finder (linked only
/// where used).
#[doc(hidden)]
pub mod tests_support {
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

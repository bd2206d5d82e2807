//! Arbitrary bytes as the start of a block device: the superblock probe, the
//! GPT header and entry parsers and the MBR parser that PID 1 uses to find
//! `root=UUID=/LABEL=/PARTUUID=` must answer or say "not this", never panic
//! or read out of bounds, and keep their documented bounds; the first line
//! as a `root=` device spec parses or is refused.
#![no_main]

use kmodinit_blockdev::{gpt_entries, gpt_header, mbr_partitions, probe_filesystem};
use kmodinit_init::pid1::rootdev::DeviceSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(fs) = probe_filesystem(data) {
        assert!(!fs.fstype.is_empty());
        assert!(!fs.mount_types().is_empty());
        for s in [&fs.uuid, &fs.label].into_iter().flatten() {
            assert!(!s.contains('\0'), "{s:?}");
        }
    }
    for sector in [512usize, 4096] {
        let Some(h) = gpt_header(data, sector) else {
            continue;
        };
        assert!(h.entry_size >= 128 && h.entry_count > 0);
        let len = h.entries_len();
        assert!(len <= 1 << 20);
        let start = usize::try_from(h.entries_offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let entries = &data[start..start.saturating_add(len).min(data.len())];
        let parts = gpt_entries(&h, entries);
        let mut last = 0;
        for p in &parts {
            assert!(p.number > last && p.number <= h.entry_count);
            last = p.number;
            assert_eq!(p.uuid.len(), 36, "{:?}", p.uuid);
        }
    }
    if let Some(parts) = mbr_partitions(data) {
        assert!(parts.len() <= 4);
        for p in &parts {
            assert!((1..=4).contains(&p.number));
        }
    }
    if let Some(line) = data.split(|&b| b == b'\n').next() {
        if let Ok(text) = std::str::from_utf8(line) {
            match DeviceSpec::parse(text) {
                // A device name is compared with sysfs names, never joined
                // to a path: it only has to be a non-empty name.
                Ok(DeviceSpec::Name(n)) => assert!(!n.is_empty() && !n.contains('/'), "{n:?}"),
                Ok(DeviceSpec::Uuid(v) | DeviceSpec::Label(v))
                | Ok(DeviceSpec::PartUuid(v) | DeviceSpec::PartLabel(v)) => assert!(!v.is_empty()),
                Ok(DeviceSpec::Number { .. }) => {}
                Err(e) => assert_eq!(e.spec, text),
            }
        }
    }
});

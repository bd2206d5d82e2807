#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::depmod::DepIndex;

fn n(s: &str) -> ModuleName {
    ModuleName::new(s).unwrap()
}

const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko.xz:
kernel/crypto/crc32c_generic.ko.zst:
kernel/arch/x86/crypto/crc32c-intel.ko.gz:
kernel/fs/f2fs/f2fs.ko:
";

const ALIAS: &str = "\
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias pci:v00001AF4d00001001sv*sd*bc*sc*i* virtio_blk
alias fs-ext4 ext4
alias acpi*:PNP0A0[38]:* pci_root
alias usb:v0B95p[1-7]*d* asix
";

fn sample() -> CompiledIndex {
    let mut index = DepIndex::parse(
        DEP,
        "kernel/lib/crc32c.ko\nkernel/lib/crc8.ko\n",
        "softdep ext4 pre: crc32c\nsoftdep f2fs pre: crypto-crc32c post: nothing-here\n",
        ALIAS,
    )
    .unwrap();
    index
        .add_builtin_modinfo(b"dh_generic.alias=crypto-dh\0", "modules.builtin.modinfo")
        .unwrap();
    let params = BTreeMap::from([(n("ext4"), BTreeSet::from(["debug".to_owned()]))]);
    CompiledIndex::compile("6.1.0-57-amd64", index, params, ["fs-ext4", "nope"])
}

#[test]
fn an_index_reads_back_as_it_was_written() {
    let c = sample();
    let bytes = encode(&c);
    assert_eq!(bytes, encode(&sample()), "the same index, the same bytes");
    let back = decode(&bytes, Some("6.1.0-57-amd64")).unwrap();
    assert_eq!(back.release, "6.1.0-57-amd64");
    assert_eq!(back.index.modules, c.index.modules);
    assert_eq!(back.index.builtin, c.index.builtin);
    assert_eq!(back.index.softdeps, c.index.softdeps);
    assert_eq!(back.index.resolved, c.index.resolved);
    assert_eq!(back.params, c.params);
    assert_eq!(back.index.aliases.len(), c.index.aliases.len());
    // The resolved table holds the softdep targets and the given names.
    assert_eq!(back.index.resolved["crc32c"], vec![n("crc32c_generic")]);
    assert_eq!(
        back.index.resolved["crypto-crc32c"],
        vec![n("crc32c_generic"), n("crc32c_intel")]
    );
    assert!(back.index.resolved["nothing-here"].is_empty());
    assert_eq!(back.index.resolved["fs-ext4"], vec![n("ext4")]);
    // Names only known at boot go through the patterns, as before.
    for probe in [
        "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
        "acpi:PNP0A08:",
        "usb:v0B95p7720d0001",
        "usb:v0B95p8720d0001",
        "crypto-dh",
        "crc8",
        "crypto_crc32c",
        "unknown",
    ] {
        assert_eq!(back.index.resolve(probe), c.index.resolve(probe), "{probe}");
    }
    assert_eq!(back.index.resolve("crypto-dh"), vec![n("dh_generic")]);
}

#[test]
fn the_header_is_checked_first_and_names_both_sides() {
    let bytes = encode(&sample());
    let e = decode(&bytes, Some("6.12.0-1-amd64")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "compiled index is for kernel 6.1.0-57-amd64, but the running kernel is \
         6.12.0-1-amd64: rebuild the image for 6.12.0-1-amd64"
    );
    let mut other = bytes.clone();
    other[8..12].copy_from_slice(&7u32.to_le_bytes());
    let e = decode(&other, Some("6.1.0-57-amd64")).unwrap_err();
    assert_eq!(
        e,
        CompiledError::Version {
            found: 7,
            expected: FORMAT_VERSION
        }
    );
    assert!(e
        .to_string()
        .contains("version 7, but this /init reads version 1"));
    let e = decode(b"modules.dep text", None).unwrap_err();
    assert_eq!(e, CompiledError::Magic);
    assert!(decode(b"", None).is_err());
}

#[test]
fn damage_anywhere_is_an_error_never_a_panic() {
    let bytes = encode(&sample());
    // Every truncation.
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len], None).is_err(), "truncated to {len}");
    }
    // Every flipped byte: the header's checks or the checksum catch it.
    for at in 0..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0x41;
        if let Ok(c) = decode(&b, None) {
            // Only a change of the release string itself can pass.
            assert_ne!(c.release, "6.1.0-57-amd64", "flip at {at} went unnoticed");
        }
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        decode(&long, None),
        Err(CompiledError::Truncated { .. })
    ));
}

#[test]
fn a_consistent_body_with_bad_contents_is_refused() {
    // Rewrite the body and fix its length and checksum: what only a
    // careless writer could make must still fail cleanly.
    let bytes = encode(&sample());
    let release_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let body_at = 16 + release_len + 4 + 8;
    let reseal = |body: &[u8]| {
        let mut out = bytes[..16 + release_len].to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&fnv1a(body).to_le_bytes());
        out.extend_from_slice(body);
        out
    };
    let body = &bytes[body_at..];
    assert!(decode(&reseal(body), None).is_ok());
    // A huge count is caught before anything is allocated.
    let mut b = body.to_vec();
    b[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode(&reseal(&b), None),
        Err(CompiledError::Truncated { .. })
    ));
    // A name the rules refuse (the first name's first byte made '/').
    let mut b = body.to_vec();
    b[8] = b'/';
    assert!(matches!(
        decode(&reseal(&b), None),
        Err(CompiledError::BadName(_))
    ));
    // Bytes past the last section.
    let mut b = body.to_vec();
    b.extend_from_slice(&[0, 0, 0, 0]);
    assert!(matches!(
        decode(&reseal(&b), None),
        Err(CompiledError::Trailing { .. })
    ));
}

//! User-space decompression against files made by the real xz, zstd and gzip
//! tools (fixtures in tests/data, the same 60 kB sample in each format).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::fs::File;
use std::path::PathBuf;

use kmodinit_init::decompress::{
    decompress, decompress_slice, DecompressError, MAX_DECOMPRESSED_BYTES,
};
use modules_manifest::Compression;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn sample() -> Vec<u8> {
    std::fs::read(data("sample.ko")).unwrap()
}

const ALL_FORMATS: [(Compression, &str); 3] = [
    (Compression::Xz, "xz"),
    (Compression::Zstd, "zst"),
    (Compression::Gzip, "gz"),
];

/// Whether this build has the decoder (cargo features `xz`, `zstd`, `gzip`).
fn built_in(c: Compression) -> bool {
    match c {
        Compression::Xz => cfg!(feature = "xz"),
        Compression::Zstd => cfg!(feature = "zstd"),
        Compression::Gzip => cfg!(feature = "gzip"),
        Compression::None => false,
    }
}

/// The formats this build decodes.
fn formats() -> impl Iterator<Item = (Compression, &'static str)> {
    ALL_FORMATS.into_iter().filter(|(c, _)| built_in(*c))
}

#[test]
fn a_format_left_out_of_the_build_says_so() {
    for (c, ext) in ALL_FORMATS.into_iter().filter(|(c, _)| !built_in(*c)) {
        let bytes = std::fs::read(data(&format!("sample.ko.{ext}"))).unwrap();
        let err = decompress_slice(c, &bytes, MAX_DECOMPRESSED_BYTES).unwrap_err();
        assert_eq!(err, DecompressError::Unsupported(c));
        // Both ways out: an image with decompressed modules, or the feature.
        let msg = err.to_string();
        assert!(
            msg.contains("rebuild the image with kmodinit-mkimage's default")
                && msg.contains(&format!("cargo feature {:?}", c.kernel_name().unwrap())),
            "{msg}"
        );
    }
}

#[test]
fn every_format_round_trips_the_sample() {
    for (c, ext) in formats() {
        let f = File::open(data(&format!("sample.ko.{ext}"))).unwrap();
        let out = decompress(c, f, MAX_DECOMPRESSED_BYTES).unwrap();
        assert_eq!(out, sample(), "{ext}");
    }
}

#[cfg(feature = "zstd")]
#[test]
fn zstd_files_with_several_frames_decode_whole() {
    let f = File::open(data("two-frames.ko.zst")).unwrap();
    assert_eq!(
        decompress(Compression::Zstd, f, MAX_DECOMPRESSED_BYTES).unwrap(),
        sample()
    );
}

#[test]
fn a_bomb_is_refused_at_the_limit() {
    // 100 MiB of zeros in each format, against the 64 MiB limit.
    for (c, ext) in formats() {
        let f = File::open(data(&format!("bomb.ko.{ext}"))).unwrap();
        let err = decompress(c, f, MAX_DECOMPRESSED_BYTES).unwrap_err();
        assert_eq!(
            err,
            DecompressError::TooLarge(MAX_DECOMPRESSED_BYTES),
            "{ext}"
        );
        assert!(err.to_string().contains("64 MiB"), "{err}");
    }
}

#[test]
fn output_one_byte_over_the_limit_is_refused_and_exactly_at_it_accepted() {
    let len = sample().len();
    for (c, ext) in formats() {
        let bytes = std::fs::read(data(&format!("sample.ko.{ext}"))).unwrap();
        assert_eq!(
            decompress_slice(c, &bytes, len).unwrap().len(),
            len,
            "{ext}"
        );
        assert_eq!(
            decompress_slice(c, &bytes, len - 1),
            Err(DecompressError::TooLarge(len - 1)),
            "{ext}"
        );
    }
}

#[test]
fn corrupt_and_truncated_data_are_errors_not_panics() {
    let plain = sample();
    for (c, ext) in formats() {
        let good = std::fs::read(data(&format!("sample.ko.{ext}"))).unwrap();
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        let truncated = &good[..good.len() / 3];
        for (what, bytes) in [
            ("flipped", &flipped[..]),
            ("truncated", truncated),
            ("empty", &[][..]),
            ("plain", &plain[..]),
            ("header only", &good[..12.min(good.len())]),
        ] {
            match decompress_slice(c, bytes, MAX_DECOMPRESSED_BYTES) {
                Err(DecompressError::Corrupt(got, msg)) => {
                    assert_eq!(got, c);
                    assert!(!msg.is_empty());
                }
                Ok(out) => panic!("{ext} {what}: decoded {} bytes", out.len()),
                Err(e) => panic!("{ext} {what}: unexpected {e:?}"),
            }
        }
    }
}

#[test]
fn uncompressed_is_not_decompressed() {
    assert_eq!(
        decompress_slice(Compression::None, b"x", 10),
        Err(DecompressError::NotCompressed)
    );
}

#[cfg(feature = "xz")]
#[test]
fn xz_with_the_default_crc64_check_decodes() {
    let f = File::open(data("sample-crc64.ko.xz")).unwrap();
    assert_eq!(
        decompress(Compression::Xz, f, MAX_DECOMPRESSED_BYTES).unwrap(),
        sample()
    );
}

#[cfg(feature = "xz")]
#[test]
fn xz_declaring_a_dictionary_over_64_mib_is_refused() {
    // The decoder would allocate what the header declares: refuse it.
    let f = File::open(data("bigdict.ko.xz")).unwrap();
    let err = decompress(Compression::Xz, f, MAX_DECOMPRESSED_BYTES).unwrap_err();
    assert!(
        matches!(err, DecompressError::Corrupt(Compression::Xz, _)),
        "{err:?}"
    );
    assert!(
        err.to_string().to_lowercase().contains("dictionary"),
        "{err}"
    );
}

//! User-space decompression against files made by the real xz, zstd and gzip
//! tools (fixtures in tests/data, the same 60 kB sample in each format).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::fs::File;
use std::path::PathBuf;

use kmodinit::decompress::{decompress, decompress_slice, DecompressError, MAX_DECOMPRESSED_BYTES};
use modules_manifest::Compression;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn sample() -> Vec<u8> {
    std::fs::read(data("sample.ko")).unwrap()
}

const FORMATS: [(Compression, &str); 3] = [
    (Compression::Xz, "xz"),
    (Compression::Zstd, "zst"),
    (Compression::Gzip, "gz"),
];

#[test]
fn every_format_round_trips_the_sample() {
    for (c, ext) in FORMATS {
        let f = File::open(data(&format!("sample.ko.{ext}"))).unwrap();
        let out = decompress(c, f, MAX_DECOMPRESSED_BYTES).unwrap();
        assert_eq!(out, sample(), "{ext}");
    }
}

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
    for (c, ext) in FORMATS {
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
    for (c, ext) in FORMATS {
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
    for (c, ext) in FORMATS {
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

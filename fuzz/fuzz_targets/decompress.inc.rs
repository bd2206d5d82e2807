// Shared body of the decompress_{xz,zstd,gzip} targets (included, not a
// module, so each target stays one file that cargo-fuzz lists by name).
//
// Arbitrary bytes as a compressed module file: `decompress` must return the
// data or an error, never panic, never produce more than the cap, and the cap
// must be exact: the same input fits a cap of exactly its output size and is
// refused with `TooLarge` one byte below. The targets use a 1 MiB cap instead
// of the 64 MiB boot cap (same code path, 64 times more executions).

use kmodinit_init::decompress::{decompress, decompress_slice, DecompressError};
use modules_manifest::Compression;

const CAP: usize = 1 << 20;

fn check(compression: Compression, data: &[u8]) {
    match decompress(compression, data, CAP) {
        Ok(out) => {
            assert!(out.len() <= CAP, "{} bytes over a {CAP}-byte cap", out.len());
            // The reader and the slice entry points agree.
            assert_eq!(decompress_slice(compression, data, CAP).as_ref(), Ok(&out));
            let again = decompress_slice(compression, data, out.len());
            assert_eq!(again.as_ref(), Ok(&out), "cap of exactly the output size");
            if !out.is_empty() {
                match decompress_slice(compression, data, out.len() - 1) {
                    Err(DecompressError::TooLarge(_)) => {}
                    other => panic!("cap one below the output: {other:?}"),
                }
            }
        }
        Err(DecompressError::TooLarge(limit)) => assert_eq!(limit, CAP),
        Err(e @ (DecompressError::NotCompressed
        | DecompressError::Unsupported(_)
        | DecompressError::InputTooLarge(_)
        | DecompressError::Read(_))) => panic!("{compression:?}, {} bytes: {e}", data.len()),
        Err(DecompressError::Corrupt(c, msg)) => {
            assert_eq!(c, compression);
            assert!(!msg.is_empty());
        }
    }
}

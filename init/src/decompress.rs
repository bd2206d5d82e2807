//! User-space decompression of `.ko.xz`, `.ko.zst` and `.ko.gz` module files,
//! for kernels that cannot decompress modules themselves.

use std::fmt;
use std::io::Read;

use modules_manifest::Compression;

/// The largest decompressed module image accepted (64 MiB). The biggest
/// in-tree modules are a few tens of MiB; anything larger is a corrupt file or
/// a decompression bomb, and early-boot memory is precious.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// Why a module file could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecompressError {
    /// The output would exceed the limit (bytes).
    TooLarge(usize),
    /// The file is not valid data of its format.
    Corrupt(Compression, String),
    /// The file is not compressed; nothing to do.
    NotCompressed,
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressError::TooLarge(limit) => write!(
                f,
                "decompressed module is larger than {} MiB: refusing (corrupt file or decompression bomb)",
                limit >> 20
            ),
            DecompressError::Corrupt(c, e) => write!(f, "bad {c:?} data: {e}"),
            DecompressError::NotCompressed => f.write_str("module file is not compressed"),
        }
    }
}

impl std::error::Error for DecompressError {}

/// Decompresses `input` in `compression`'s format, refusing output over
/// `limit` bytes.
pub fn decompress(
    compression: Compression,
    _input: impl Read,
    _limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    match compression {
        Compression::None => Err(DecompressError::NotCompressed),
        c => Err(DecompressError::Corrupt(c, "not yet supported".into())),
    }
}

//! User-space decompression of `.ko.xz`, `.ko.zst` and `.ko.gz` module files,
//! for kernels that cannot decompress modules themselves (no
//! `CONFIG_MODULE_DECOMPRESS`, or a format it was not built for).
//!
//! Every decoder is pure Rust and behind a cargo feature of the same name
//! (`xz`, `zstd`, `gzip`, all off by default: kmodinit-mkimage stores modules
//! decompressed unless told to keep them for a kernel that decompresses them
//! itself). Output is bounded: a module
//! that would decompress to more than the limit is refused, whatever its
//! headers claim.

use std::fmt;
use std::io::Read;

use modules_manifest::Compression;

/// The largest decompressed module image accepted (64 MiB). The biggest
/// in-tree modules are a few tens of MiB; anything larger is a corrupt file or
/// a decompression bomb, and early-boot memory is precious.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// The largest compressed module file read (also 64 MiB): a compressed file
/// is never bigger than its content in practice.
pub const MAX_COMPRESSED_BYTES: usize = 64 << 20;

/// Why a module file could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecompressError {
    /// The output would exceed this many bytes.
    TooLarge(usize),
    /// The compressed file itself is over [`MAX_COMPRESSED_BYTES`].
    InputTooLarge(usize),
    /// The data is not valid in its format.
    Corrupt(Compression, String),
    /// Reading the compressed file failed.
    Read(String),
    /// This build of kmodinit has no decoder for the format (cargo feature off).
    Unsupported(Compression),
    /// The file is not compressed; nothing to do.
    NotCompressed,
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressError::TooLarge(limit) => write!(
                f,
                "decompresses to more than {} MiB: refused (corrupt file or decompression bomb)",
                limit >> 20
            ),
            DecompressError::InputTooLarge(limit) => {
                write!(
                    f,
                    "compressed file is larger than {} MiB: refused",
                    limit >> 20
                )
            }
            DecompressError::Corrupt(c, e) => write!(f, "bad {} data: {e}", format_name(*c)),
            DecompressError::Read(e) => write!(f, "cannot read: {e}"),
            DecompressError::Unsupported(c) => write!(
                f,
                "the kernel cannot decompress {name} modules and this /init has no {name} \
                 decoder: rebuild the image with kmodinit-mkimage's default \
                 `--module-compression none` (modules stored decompressed), or build /init \
                 with the cargo feature {name:?}",
                name = format_name(*c)
            ),
            DecompressError::NotCompressed => f.write_str("module file is not compressed"),
        }
    }
}

impl std::error::Error for DecompressError {}

fn format_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "uncompressed",
        Compression::Xz => "xz",
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
    }
}

/// Decompresses `input` (a whole module file in `compression`'s format) into
/// memory, refusing output over `limit` bytes.
pub fn decompress(
    compression: Compression,
    input: impl Read,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    if compression == Compression::None {
        return Err(DecompressError::NotCompressed);
    }
    if !has_decoder(compression) {
        // Say so before reading a file that cannot be used.
        return Err(DecompressError::Unsupported(compression));
    }
    let mut data = Vec::new();
    input
        .take(MAX_COMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| DecompressError::Read(e.to_string()))?;
    if data.len() > MAX_COMPRESSED_BYTES {
        return Err(DecompressError::InputTooLarge(MAX_COMPRESSED_BYTES));
    }
    decompress_slice(compression, &data, limit)
}

/// Whether this build has the decoder for `compression` (cargo features
/// `xz`, `zstd`, `gzip`).
pub fn has_decoder(compression: Compression) -> bool {
    match compression {
        Compression::None => false,
        Compression::Xz => cfg!(feature = "xz"),
        Compression::Zstd => cfg!(feature = "zstd"),
        Compression::Gzip => cfg!(feature = "gzip"),
    }
}

/// [`decompress`] on bytes already in memory.
pub fn decompress_slice(
    compression: Compression,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    match compression {
        Compression::None => Err(DecompressError::NotCompressed),
        Compression::Xz => xz(data, limit),
        Compression::Zstd => zstd(data, limit),
        Compression::Gzip => gzip(data, limit),
    }
}

/// The largest xz dictionary accepted (64 MiB, what `xz -9` uses; the kernel
/// compresses modules with 1 MiB). The decoder allocates the dictionary the
/// file declares, so this bounds its memory whatever the file says.
#[cfg(feature = "xz")]
const MAX_XZ_DICT_BYTES: usize = 64 << 20;

/// Output is produced in chunks of this size, so the limit is checked every
/// 64 KiB rather than after a whole block.
#[cfg(feature = "xz")]
const CHUNK_BYTES: usize = 64 << 10;

#[cfg(feature = "xz")]
fn xz(data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    use xz4rust::{XzDecoder, XzNextBlockResult};
    let corrupt = |e: &dyn fmt::Display| DecompressError::Corrupt(Compression::Xz, e.to_string());
    let mut decoder = XzDecoder::with_alloc_dict_size(xz4rust::DICT_SIZE_MIN, MAX_XZ_DICT_BYTES);
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut out = Vec::new();
    let mut input = data;
    loop {
        let step = decoder.decode(input, &mut chunk).map_err(|e| match e {
            xz4rust::XzError::DictionaryTooLarge(n) => corrupt(&format_args!(
                "declares a {} MiB dictionary, over the {} MiB limit",
                n >> 20,
                MAX_XZ_DICT_BYTES >> 20
            )),
            e => corrupt(&e),
        })?;
        let (consumed, produced) = (step.input_consumed(), step.output_produced());
        if out.len() + produced > limit {
            return Err(DecompressError::TooLarge(limit));
        }
        out.extend_from_slice(&chunk[..produced]);
        input = &input[consumed.min(input.len())..];
        match step {
            XzNextBlockResult::EndOfStream(..) => {
                // Streams may be followed by zero padding or another stream.
                let next = input.iter().position(|&b| b != 0).unwrap_or(input.len());
                input = &input[next..];
                if input.is_empty() {
                    return Ok(out);
                }
                decoder.reset();
            }
            XzNextBlockResult::NeedMoreData(..) if consumed == 0 && produced == 0 => {
                return Err(corrupt(&"truncated file"));
            }
            XzNextBlockResult::NeedMoreData(..) => {}
        }
    }
}

#[cfg(not(feature = "xz"))]
fn xz(_data: &[u8], _limit: usize) -> Result<Vec<u8>, DecompressError> {
    Err(DecompressError::Unsupported(Compression::Xz))
}

#[cfg(feature = "zstd")]
fn zstd(data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |e: &dyn fmt::Display| DecompressError::Corrupt(Compression::Zstd, e.to_string());
    let mut out = Vec::new();
    let mut input = data;
    // A file may hold several frames back to back; decode them all.
    while !input.is_empty() {
        let decoder = ruzstd::StreamingDecoder::new(&mut input).map_err(|e| corrupt(&e))?;
        let room = (limit - out.len()) as u64;
        decoder
            .take(room + 1)
            .read_to_end(&mut out)
            .map_err(|e| corrupt(&e))?;
        if out.len() > limit {
            return Err(DecompressError::TooLarge(limit));
        }
    }
    if out.is_empty() && data.is_empty() {
        return Err(corrupt(&"empty file"));
    }
    Ok(out)
}

#[cfg(not(feature = "zstd"))]
fn zstd(_data: &[u8], _limit: usize) -> Result<Vec<u8>, DecompressError> {
    Err(DecompressError::Unsupported(Compression::Zstd))
}

/// gzip (RFC 1952): header, raw deflate, CRC-32 and size trailer. One member,
/// as `gzip` writes for a single file.
#[cfg(feature = "gzip")]
fn gzip(data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |e: &str| DecompressError::Corrupt(Compression::Gzip, e.to_owned());
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if data.len() < 18 || data[0] != 0x1f || data[1] != 0x8b {
        return Err(corrupt("not a gzip file"));
    }
    if data[2] != 8 {
        return Err(corrupt("unknown compression method"));
    }
    let flags = data[3];
    let mut pos = 10usize;
    let too_short = || corrupt("truncated header");
    if flags & FEXTRA != 0 {
        let len = data.get(pos..pos + 2).ok_or_else(too_short)?;
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = data
                .get(pos..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
                .ok_or_else(too_short)?;
            pos += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    let trailer_at = data.len() - 8;
    let body = data.get(pos..trailer_at).ok_or_else(too_short)?;
    let out = miniz_oxide::inflate::decompress_to_vec_with_limit(body, limit).map_err(|e| {
        if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput {
            DecompressError::TooLarge(limit)
        } else {
            corrupt(&e.to_string())
        }
    })?;
    let t = &data[trailer_at..];
    let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
    let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
    if size != out.len() as u32 || crc != crc32(&out) {
        return Err(corrupt("checksum mismatch (corrupt or multi-member file)"));
    }
    Ok(out)
}

#[cfg(not(feature = "gzip"))]
fn gzip(_data: &[u8], _limit: usize) -> Result<Vec<u8>, DecompressError> {
    Err(DecompressError::Unsupported(Compression::Gzip))
}

/// CRC-32 (IEEE 802.3, reflected), as gzip's trailer uses.
#[cfg(feature = "gzip")]
fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

//! Whole-image compression in the formats the kernel's initramfs unpacker
//! reads (`CONFIG_RD_GZIP`, `CONFIG_RD_ZSTD`, `CONFIG_RD_XZ`; Debian enables
//! all three).

use std::io::{self, Read, Write};

/// How the cpio archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    /// zstd level 19: about 10% larger than xz and 20% smaller than gzip,
    /// and the fastest to unpack (about 3.5x faster than xz). The choice
    /// when boot time matters more than the image's last 10%.
    Zstd,
    /// xz (LZMA2 preset 9e with the dictionary cut to the image size, CRC32
    /// check: the kernel's xz decoder does not support the default CRC64).
    /// The default: the smallest image, and the slowest to unpack
    /// (initramfs/README.md has the figures).
    Xz,
    /// gzip level 9: the most widely supported format, and the largest.
    Gzip,
    /// No compression: the largest image, no unpack cost.
    None,
}

/// zstd level: 19 is the highest level without `--ultra` windows, whose
/// >8 MiB windows would make the kernel allocate more while unpacking.
pub const ZSTD_LEVEL: i32 = 19;
/// xz preset: 9 with liblzma's "extreme" flag (`xz -9e`, LZMA_PRESET_EXTREME),
/// which searches harder at build time for about 0.2% less; unpacking
/// costs the same.
pub const XZ_PRESET: u32 = 9 | (1 << 31);
/// Smallest xz dictionary liblzma accepts.
pub const XZ_MIN_DICT_BYTES: u32 = 4096;

/// The xz dictionary for `len` input bytes: the preset's size (64 MiB for
/// preset 9) shrunk to the next power of two of the input. The kernel's
/// decoder allocates the dictionary size the header declares, so a 64 MiB
/// dictionary for a 3 MiB image would cost boot memory for nothing; a
/// dictionary larger than the input cannot compress better.
pub fn xz_dict_size(len: usize, preset_dict: u32) -> u32 {
    let want = u32::try_from(len)
        .unwrap_or(u32::MAX)
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX);
    want.clamp(XZ_MIN_DICT_BYTES, preset_dict.max(XZ_MIN_DICT_BYTES))
}

impl Compress {
    pub fn name(self) -> &'static str {
        match self {
            Compress::Zstd => "zstd",
            Compress::Xz => "xz",
            Compress::Gzip => "gzip",
            Compress::None => "none",
        }
    }

    /// Compresses `data` in one go. Deterministic: the same input gives the
    /// same output (no timestamps or file names in the headers).
    pub fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Compress::None => Ok(data.to_vec()),
            Compress::Gzip => {
                // GzBuilder writes mtime 0 and no file name.
                let mut enc =
                    flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
                enc.write_all(data)?;
                enc.finish()
            }
            Compress::Zstd => {
                let mut enc = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
                enc.include_checksum(true)?;
                enc.set_pledged_src_size(Some(data.len() as u64))?;
                enc.include_contentsize(true)?;
                enc.write_all(data)?;
                enc.finish()
            }
            Compress::Xz => {
                let mut opts =
                    xz2::stream::LzmaOptions::new_preset(XZ_PRESET).map_err(io::Error::other)?;
                let preset_dict = 64 << 20; // preset 9's dictionary (xz(1))
                opts.dict_size(xz_dict_size(data.len(), preset_dict));
                let mut filters = xz2::stream::Filters::new();
                filters.lzma2(&opts);
                let stream =
                    xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc32)
                        .map_err(io::Error::other)?;
                let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
                enc.write_all(data)?;
                enc.finish()
            }
        }
    }

    /// The inverse of [`Compress::compress`]: the whole decompressed data.
    /// The kernel unpacks images itself; this is for checking and measuring
    /// them on the host. An error if `data` is not in this format.
    pub fn decompress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Compress::None => out.extend_from_slice(data),
            Compress::Gzip => {
                flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
            }
            Compress::Zstd => out = zstd::decode_all(data)?,
            Compress::Xz => {
                xz2::read::XzDecoder::new(data).read_to_end(&mut out)?;
            }
        }
        Ok(out)
    }

    /// The format of `data` by its magic number; [`Compress::None`] for
    /// anything else (such as a plain cpio archive).
    pub fn detect(data: &[u8]) -> Compress {
        if data.starts_with(&[0x1f, 0x8b]) {
            Compress::Gzip
        } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compress::Zstd
        } else if data.starts_with(b"\xFD7zXZ\0") {
            Compress::Xz
        } else {
            Compress::None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (BRIEF)
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_format_round_trips_and_is_deterministic() {
        let data = sample();
        for c in [Compress::None, Compress::Gzip, Compress::Zstd, Compress::Xz] {
            let a = c.compress(&data).unwrap();
            let b = c.compress(&data).unwrap();
            assert_eq!(a, b, "{}", c.name());
            assert_eq!(c.decompress(&a).unwrap(), data, "{}", c.name());
            assert_eq!(Compress::detect(&a), c, "{}", c.name());
            if c != Compress::None {
                assert!(a.len() < data.len() / 4, "{} did not compress", c.name());
            }
        }
    }

    #[test]
    fn decompressing_the_wrong_format_is_an_error() {
        let gz = Compress::Gzip.compress(b"hello").unwrap();
        assert!(Compress::Zstd.decompress(&gz).is_err());
        assert!(Compress::Xz.decompress(&gz).is_err());
        assert!(Compress::Gzip.decompress(b"070701").is_err());
        assert_eq!(Compress::detect(b"070701"), Compress::None);
    }

    #[test]
    fn xz_uses_the_crc32_check_the_kernel_needs() {
        let xz = Compress::Xz.compress(b"hello").unwrap();
        // Stream header: 6-byte magic, then stream flags 0x00 0x01 (CRC32).
        assert_eq!(&xz[..6], b"\xFD7zXZ\0");
        assert_eq!(&xz[6..8], &[0x00, 0x01]);
    }

    #[test]
    fn xz_dictionary_follows_the_input_size() {
        assert_eq!(xz_dict_size(0, 64 << 20), XZ_MIN_DICT_BYTES);
        assert_eq!(xz_dict_size(3_000_000, 64 << 20), 4 << 20);
        assert_eq!(xz_dict_size(4 << 20, 64 << 20), 4 << 20);
        assert_eq!(xz_dict_size(500 << 20, 64 << 20), 64 << 20);
        assert_eq!(xz_dict_size(usize::MAX, 64 << 20), 64 << 20);
    }

    #[test]
    fn xz_header_declares_the_small_dictionary() {
        let xz = Compress::Xz.compress(&sample()).unwrap();
        // Block header after the 12-byte stream header: size byte, flags,
        // [sizes], filter id 0x21 (LZMA2), props size 1, dict byte. The
        // sample is 800 kB, so the dictionary is 1 MiB: byte 16
        // (2 | 16 & 1) << (16 / 2 + 11) = 2 << 19 = 1 MiB.
        let pos = xz[12..].windows(2).position(|w| w == [0x21, 0x01]).unwrap() + 12;
        assert_eq!(xz[pos + 2], 16);
    }

    #[test]
    fn gzip_header_has_no_timestamp() {
        let gz = Compress::Gzip.compress(b"hello").unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "MTIME must be 0");
    }
}

//! The dm-verity superblock that `veritysetup format` writes at the start
//! of the hash device: the parameters of the verity table (block sizes,
//! data blocks, algorithm, salt) and the UUID `blkid` reports as
//! `TYPE="DM_verity_hash"`. Pure, fuzzed with the device-mapper options.

/// Size of the superblock `veritysetup format` writes.
pub const VERITY_SB_BYTES: usize = 512;

/// The verity superblock `veritysetup format` writes at the start of the
/// hash device (cryptsetup's `struct verity_sb`, little-endian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeritySuperblock {
    /// 0: Chrome OS, 1: normal.
    pub hash_type: u32,
    pub uuid: [u8; 16],
    pub algorithm: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    pub salt: Vec<u8>,
}

fn block_size_ok(n: u32) -> bool {
    n.is_power_of_two() && (512..=1 << 20).contains(&n)
}

impl VeritySuperblock {
    /// Reads the superblock from the first bytes of a hash device (at
    /// least [`VERITY_SB_BYTES`]). `None` if there is none; `Err` if it is
    /// one that cannot be used (the message names the field).
    pub fn parse(b: &[u8]) -> Option<Result<VeritySuperblock, String>> {
        if b.get(0..8)? != b"verity\0\0" {
            return None;
        }
        Some(Self::parse_fields(b))
    }

    fn parse_fields(b: &[u8]) -> Result<VeritySuperblock, String> {
        let short = || format!("shorter than {VERITY_SB_BYTES} bytes");
        if b.len() < VERITY_SB_BYTES {
            return Err(short());
        }
        let le32 = |o: usize| -> Result<u32, String> {
            let s = b.get(o..o + 4).ok_or_else(short)?;
            Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        let version = le32(8)?;
        if version != 1 {
            return Err(format!("version {version}, only 1 is known"));
        }
        let hash_type = le32(12)?;
        if hash_type > 1 {
            return Err(format!("hash type {hash_type}: expected 0 or 1"));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(b.get(16..32).ok_or_else(short)?);
        let alg = b.get(32..64).ok_or_else(short)?;
        let end = alg.iter().position(|&c| c == 0).unwrap_or(alg.len());
        let algorithm = std::str::from_utf8(&alg[..end])
            .ok()
            .filter(|a| !a.is_empty() && a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
            .ok_or("the hash algorithm is not a name")?
            .to_ascii_lowercase();
        let data_block_size = le32(64)?;
        let hash_block_size = le32(68)?;
        for (what, n) in [("data", data_block_size), ("hash", hash_block_size)] {
            if !block_size_ok(n) {
                return Err(format!(
                    "{what} block size {n} is not a power of two from 512 to 1 MiB"
                ));
            }
        }
        let s = b.get(72..80).ok_or_else(short)?;
        let mut d = [0u8; 8];
        d.copy_from_slice(s);
        let data_blocks = u64::from_le_bytes(d);
        if data_blocks == 0 {
            return Err("0 data blocks".into());
        }
        let s = b.get(80..82).ok_or_else(short)?;
        let salt_size = usize::from(u16::from_le_bytes([s[0], s[1]]));
        if salt_size > 256 {
            return Err(format!("salt of {salt_size} bytes, at most 256"));
        }
        let salt = b.get(88..88 + salt_size).ok_or_else(short)?.to_vec();
        Ok(VeritySuperblock {
            hash_type,
            uuid,
            algorithm,
            data_block_size,
            hash_block_size,
            data_blocks,
            salt,
        })
    }

    /// The data area in 512-byte sectors, if it fits in 64 bits.
    pub fn data_sectors(&self) -> Option<u64> {
        self.data_blocks
            .checked_mul(u64::from(self.data_block_size / 512))
    }
}

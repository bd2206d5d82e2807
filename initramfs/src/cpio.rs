//! The "newc" cpio format (SVR4 portable ASCII, magic `070701`), the only
//! archive format the kernel's initramfs unpacker reads.
//!
//! Each member is a 110-byte ASCII header (the magic and 13 eight-digit hex
//! fields), the NUL-terminated name padded to a multiple of 4 bytes counted
//! from the start of the header, then the data padded to a multiple of 4.
//! The archive ends with a member named `TRAILER!!!`.
//!
//! [`Writer`] writes members exactly as given; ordering, inode numbers and
//! timestamps are the caller's policy (see [`crate::tree`]), which is what
//! makes images reproducible. [`read`] parses an archive back, for tests and
//! for inspecting images.

use std::io::{self, Read, Write};

/// The newc magic (no checksum variant).
pub const MAGIC: &[u8; 6] = b"070701";
/// Header length in bytes: magic plus 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = 6 + 13 * 8;
/// The name of the end-of-archive member.
pub const TRAILER: &str = "TRAILER!!!";

/// File-type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFCHR: u32 = 0o020_000;
pub const S_IFBLK: u32 = 0o060_000;
pub const S_IFIFO: u32 = 0o010_000;

/// The metadata of one archive member. Every numeric field must fit in 32
/// bits (the format stores 8 hex digits); [`Writer::append`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Path inside the archive, without a leading `/` (e.g. `dev/console`).
    pub name: String,
    pub ino: u32,
    /// Type and permission bits, as in `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    /// Seconds since the epoch.
    pub mtime: u32,
    /// Length of the data that follows (for a symlink: its target).
    pub size: u64,
    /// The device holding the file (`st_dev`); 0 in our images.
    pub dev_major: u32,
    pub dev_minor: u32,
    /// For device nodes: the device they stand for (`st_rdev`).
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

/// An archive member that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("cpio member {name:?}: {what}")]
    Invalid { name: String, what: String },
    #[error("cpio member {name:?}: the source gave {got} bytes, the header promised {want}")]
    SizeMismatch { name: String, want: u64, got: u64 },
    #[error("writing the cpio archive: {0}")]
    Io(#[from] io::Error),
}

/// Bytes of padding that bring `len` to a multiple of 4.
pub fn pad4(len: u64) -> u64 {
    (4 - len % 4) % 4
}

/// Writes newc members to `W`, tracking the offset for padding.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    offset: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out, offset: 0 }
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        const ZEROS: [u8; 3] = [0; 3];
        let n = pad4(self.offset) as usize;
        self.put(&ZEROS[..n])
    }

    /// Appends one member whose data is read from `data`; exactly
    /// `header.size` bytes must come out of it (a file that changed size
    /// between `stat` and read is an error, not a corrupt archive).
    pub fn append(&mut self, header: &Header, data: &mut dyn Read) -> Result<(), CpioError> {
        let invalid = |what: &str| CpioError::Invalid {
            name: header.name.clone(),
            what: what.to_owned(),
        };
        if header.name.is_empty() || header.name.as_bytes().contains(&0) {
            return Err(invalid("the name is empty or contains NUL"));
        }
        let size = u32::try_from(header.size)
            .map_err(|_| invalid("larger than 4 GiB, which newc cannot store"))?;
        let namesize =
            u32::try_from(header.name.len() + 1).map_err(|_| invalid("name too long"))?;

        let fields = [
            header.ino,
            header.mode,
            header.uid,
            header.gid,
            header.nlink,
            header.mtime,
            size,
            header.dev_major,
            header.dev_minor,
            header.rdev_major,
            header.rdev_minor,
            namesize,
            0, // check: only used by the "070702" crc variant
        ];
        let mut head = Vec::with_capacity(HEADER_LEN);
        head.extend_from_slice(MAGIC);
        for f in fields {
            // `{:08X}` of a u32 is always exactly 8 digits.
            head.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.put(&head)?;
        self.put(header.name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;

        let copied = io::copy(&mut data.take(header.size), &mut CountingWriter(self))?;
        if copied != header.size {
            return Err(CpioError::SizeMismatch {
                name: header.name.clone(),
                want: header.size,
                got: copied,
            });
        }
        // One more byte would mean the source grew since it was measured.
        let mut probe = [0u8; 1];
        if data.read(&mut probe)? != 0 {
            return Err(CpioError::SizeMismatch {
                name: header.name.clone(),
                want: header.size,
                got: header.size + 1,
            });
        }
        self.pad()?;
        Ok(())
    }

    /// Writes the `TRAILER!!!` member and returns the inner writer with the
    /// archive's total length. The kernel needs no padding beyond the
    /// members' own 4-byte alignment.
    pub fn finish(mut self) -> Result<(W, u64), CpioError> {
        let trailer = Header {
            name: TRAILER.to_owned(),
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            size: 0,
            dev_major: 0,
            dev_minor: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.append(&trailer, &mut io::empty())?;
        self.out.flush()?;
        Ok((self.out, self.offset))
    }
}

/// Lets `io::copy` write through the writer's offset accounting.
struct CountingWriter<'a, W: Write>(&'a mut Writer<W>);

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.out.write(buf)?;
        self.0.offset += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.out.flush()
    }
}

/// One member read back by [`read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub header: Header,
    pub data: Vec<u8>,
}

/// A byte string that is not a well-formed newc archive, with the offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid newc archive at byte {offset}: {what}")]
pub struct ReadError {
    pub offset: usize,
    pub what: String,
}

/// Parses a whole (uncompressed) newc archive, strictly: magic, hex fields,
/// NUL-terminated names, 4-byte padding filled with zeros, a trailer, and
/// nothing but zeros after it. Returns the members before the trailer.
pub fn read(bytes: &[u8]) -> Result<Vec<Member>, ReadError> {
    let mut members = Vec::new();
    let mut pos = 0usize;
    let err = |offset: usize, what: &str| ReadError {
        offset,
        what: what.to_owned(),
    };
    loop {
        if pos % 4 != 0 {
            return Err(err(pos, "member not aligned to 4 bytes"));
        }
        let head = bytes
            .get(pos..pos + HEADER_LEN)
            .ok_or_else(|| err(pos, "truncated header (no trailer?)"))?;
        if &head[..6] != MAGIC {
            return Err(err(pos, "bad magic"));
        }
        let mut f = [0u32; 13];
        for (i, slot) in f.iter_mut().enumerate() {
            let start = 6 + i * 8;
            let hex = std::str::from_utf8(&head[start..start + 8])
                .map_err(|_| err(pos + start, "non-ASCII header field"))?;
            *slot = u32::from_str_radix(hex, 16)
                .map_err(|_| err(pos + start, "header field is not hex"))?;
        }
        let namesize = f[11] as usize;
        let name_start = pos + HEADER_LEN;
        let name_bytes = bytes
            .get(name_start..name_start + namesize)
            .ok_or_else(|| err(name_start, "truncated name"))?;
        let (last, name) = name_bytes
            .split_last()
            .ok_or_else(|| err(name_start, "zero name size"))?;
        if *last != 0 || name.contains(&0) {
            return Err(err(name_start, "name is not NUL-terminated"));
        }
        let name =
            String::from_utf8(name.to_vec()).map_err(|_| err(name_start, "name is not UTF-8"))?;
        let mut p = name_start + namesize;
        let data_start = p + pad4(p as u64) as usize;
        check_zeros(bytes, p, data_start)?;
        let size = f[6] as usize;
        let data = bytes
            .get(data_start..data_start + size)
            .ok_or_else(|| err(data_start, "truncated data"))?;
        p = data_start + size;
        let next = p + pad4(p as u64) as usize;
        check_zeros(bytes, p, next)?;
        if f[12] != 0 {
            return Err(err(pos, "check field is not 0 in a 070701 archive"));
        }
        let header = Header {
            name,
            ino: f[0],
            mode: f[1],
            uid: f[2],
            gid: f[3],
            nlink: f[4],
            mtime: f[5],
            size: size as u64,
            dev_major: f[7],
            dev_minor: f[8],
            rdev_major: f[9],
            rdev_minor: f[10],
        };
        pos = next;
        if header.name == TRAILER {
            check_zeros(bytes, pos, bytes.len())?;
            return Ok(members);
        }
        members.push(Member {
            header,
            data: data.to_vec(),
        });
    }
}

fn check_zeros(bytes: &[u8], from: usize, to: usize) -> Result<(), ReadError> {
    let region = bytes.get(from..to).ok_or(ReadError {
        offset: from,
        what: "truncated padding".into(),
    })?;
    match region.iter().position(|b| *b != 0) {
        None => Ok(()),
        Some(i) => Err(ReadError {
            offset: from + i,
            what: "non-zero padding".into(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (BRIEF)
mod tests {
    use super::*;

    fn header(name: &str, mode: u32, size: u64) -> Header {
        Header {
            name: name.into(),
            ino: 7,
            mode,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 1_700_000_000,
            size,
            dev_major: 0,
            dev_minor: 0,
            rdev_major: 0,
            rdev_minor: 0,
        }
    }

    fn archive(members: &[(Header, &[u8])]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        for (h, data) in members {
            w.append(h, &mut &data[..]).unwrap();
        }
        let (bytes, len) = w.finish().unwrap();
        assert_eq!(len, bytes.len() as u64);
        bytes
    }

    #[test]
    fn header_fields_are_eight_upper_hex_digits_in_order() {
        let mut h = header("init", S_IFREG | 0o755, 3);
        h.rdev_major = 5;
        h.rdev_minor = 1;
        let bytes = archive(&[(h, b"abc")]);
        let head = std::str::from_utf8(&bytes[..HEADER_LEN]).unwrap();
        assert_eq!(
            head,
            concat!(
                "070701", "00000007", "000081ED", "00000000", "00000000", "00000001", "6553F100",
                "00000003", "00000000", "00000000", "00000005", "00000001", "00000005", "00000000"
            )
        );
        // Name "init\0" ends at 115; padded to 116; data 3 bytes + 1 pad.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..120], b"abc\0");
        assert_eq!(&bytes[120..126], b"070701");
    }

    #[test]
    fn every_member_and_the_end_are_four_byte_aligned() {
        for name_len in 1..9 {
            for data_len in 0..9 {
                let name = "n".repeat(name_len);
                let data = vec![0xAB; data_len];
                let bytes = archive(&[(header(&name, S_IFREG | 0o644, data_len as u64), &data)]);
                assert_eq!(bytes.len() % 4, 0, "name {name_len} data {data_len}");
                let data_start = (HEADER_LEN + name_len + 1).div_ceil(4) * 4;
                assert_eq!(&bytes[data_start..data_start + data_len], &data[..]);
                let next = (data_start + data_len).div_ceil(4) * 4;
                assert_eq!(&bytes[next..next + 6], MAGIC);
                let back = read(&bytes).unwrap();
                assert_eq!(back.len(), 1);
                assert_eq!(back[0].data, data);
            }
        }
    }

    #[test]
    fn ends_with_a_trailer_member() {
        let bytes = archive(&[]);
        let back = read(&bytes).unwrap();
        assert!(back.is_empty());
        assert_eq!(&bytes[..6], MAGIC);
        // namesize field is 11 ("TRAILER!!!" + NUL)
        assert_eq!(&bytes[94..102], b"0000000B");
        assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 11], b"TRAILER!!!\0");
        assert_eq!(bytes.len(), (HEADER_LEN + 11).div_ceil(4) * 4);
    }

    #[test]
    fn round_trips_all_member_kinds() {
        let mut dev = header("dev/console", S_IFCHR | 0o600, 0);
        dev.rdev_major = 5;
        dev.rdev_minor = 1;
        let members = vec![
            (header("dev", S_IFDIR | 0o755, 0), &b""[..]),
            (dev, &b""[..]),
            (header("bin/sh", S_IFLNK | 0o777, 7), &b"busybox"[..]),
            (header("init", S_IFREG | 0o755, 5), &b"hello"[..]),
        ];
        let bytes = archive(&members);
        let back = read(&bytes).unwrap();
        assert_eq!(back.len(), members.len());
        for (m, (h, d)) in back.iter().zip(&members) {
            assert_eq!(&m.header, h);
            assert_eq!(&m.data[..], *d);
        }
    }

    #[test]
    fn a_source_shorter_or_longer_than_promised_is_refused() {
        let mut w = Writer::new(Vec::new());
        let e = w
            .append(&header("short", S_IFREG, 5), &mut &b"abc"[..])
            .unwrap_err();
        assert!(
            matches!(
                e,
                CpioError::SizeMismatch {
                    want: 5,
                    got: 3,
                    ..
                }
            ),
            "{e}"
        );
        let mut w = Writer::new(Vec::new());
        let e = w
            .append(&header("long", S_IFREG, 2), &mut &b"abc"[..])
            .unwrap_err();
        assert!(e.to_string().contains("\"long\""), "{e}");
    }

    #[test]
    fn bad_names_are_refused() {
        let mut w = Writer::new(Vec::new());
        assert!(w.append(&header("", S_IFREG, 0), &mut io::empty()).is_err());
        assert!(w
            .append(&header("a\0b", S_IFREG, 0), &mut io::empty())
            .is_err());
    }

    #[test]
    fn reader_rejects_corruption() {
        let good = archive(&[(header("init", S_IFREG | 0o755, 3), b"abc")]);
        assert!(read(&good).is_ok());

        let mut bad_magic = good.clone();
        bad_magic[5] = b'7';
        assert_eq!(read(&bad_magic).unwrap_err().offset, 0);

        let truncated = &good[..good.len() - 8];
        assert!(read(truncated).is_err());

        let mut bad_pad = good.clone();
        bad_pad[119] = 1; // the padding byte after "abc"
        assert_eq!(read(&bad_pad).unwrap_err().offset, 119);

        let mut trailing_junk = good.clone();
        trailing_junk.extend_from_slice(b"junk");
        assert!(read(&trailing_junk).is_err());
    }

    #[test]
    fn pad4_values() {
        assert_eq!(
            (0..8).map(pad4).collect::<Vec<_>>(),
            vec![0, 3, 2, 1, 0, 3, 2, 1]
        );
    }
}

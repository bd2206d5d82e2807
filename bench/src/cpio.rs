//! A minimal newc cpio writer for the baseline images (busybox scripts with
//! modules). Entries carry fixed metadata so images are reproducible, and
//! device nodes are written without `mknod`, so no root is needed.

use std::io::{self, Write};

/// One archive member.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir {
        path: String,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    CharDev {
        path: String,
        major: u32,
        minor: u32,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path }
            | Entry::File { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::CharDev { path, .. } => path,
        }
    }
}

fn header(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    size: usize,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    let namesize = name.len() + 1;
    write!(
        out,
        "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{size:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
        0, 0, 1, 0, 0, 0, rdev.0, rdev.1, 0
    )?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    pad(out, 110 + namesize)
}

fn pad(out: &mut impl Write, len: usize) -> io::Result<()> {
    let extra = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..extra])
}

/// Writes `entries` (parents before children, as given) and the trailer.
pub fn write(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        let name = e.path().trim_start_matches('/');
        match e {
            Entry::Dir { .. } => header(out, ino, 0o040755, 0, (0, 0), name)?,
            Entry::File { mode, data, .. } => {
                header(
                    out,
                    ino,
                    0o100000 | (mode & 0o7777),
                    data.len(),
                    (0, 0),
                    name,
                )?;
                out.write_all(data)?;
                pad(out, data.len())?;
            }
            Entry::Symlink { target, .. } => {
                header(out, ino, 0o120777, target.len(), (0, 0), name)?;
                out.write_all(target.as_bytes())?;
                pad(out, target.len())?;
            }
            Entry::CharDev { major, minor, .. } => {
                header(out, ino, 0o020600, 0, (*major, *minor), name)?
            }
        }
    }
    header(out, 0, 0, 0, (0, 0), "TRAILER!!!")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn members_are_4_byte_aligned_and_the_trailer_ends_it() {
        let mut buf = Vec::new();
        let entries = vec![
            Entry::Dir {
                path: "/dev".into(),
            },
            Entry::CharDev {
                path: "/dev/console".into(),
                major: 5,
                minor: 1,
            },
            Entry::File {
                path: "/init".into(),
                mode: 0o755,
                data: b"#!/bin/sh\n".to_vec(),
            },
        ];
        write(&mut buf, &entries).unwrap();
        assert_eq!(buf.len() % 4, 0);
        assert!(buf.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("dev/console\0"));
        assert!(text.contains("#!/bin/sh\n"));
        assert!(text.contains("TRAILER!!!\0"));
        // "dev" takes 110 + 4 bytes, padded to 116: the console header follows.
        let console_hdr = &text[116..];
        assert!(console_hdr.starts_with("070701"));
        assert_eq!(&console_hdr[14..22], "00002180");
        assert_eq!(&console_hdr[78..86], "00000005");
        assert_eq!(&console_hdr[86..94], "00000001");
    }
}

//! Device modaliases (`/sys/devices/**/modalias`, a uevent's `MODALIAS=`):
//! validation and the bounded walk of sysfs, shared by `/init`'s coldplug
//! and `kmodinit-mkimage --coldplug host`. A modalias comes from a device
//! (a USB stick can claim any string): it is validated here, and only ever
//! matched against `modules.alias`, never used as a path.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The longest modalias accepted, in bytes (the longest of a Debian
/// machine's, DMI's, is about 200; the kernel allows a page).
pub const MAX_MODALIAS_BYTES: usize = 512;

/// How deep the walk descends below `/sys/devices` (a USB device behind
/// hubs on a PCI bridge is about 15 levels down).
pub const MAX_WALK_DEPTH: usize = 32;

/// The most directory entries the walk looks at (a large server has a few
/// tens of thousands under `/sys/devices`).
pub const MAX_WALK_ENTRIES: usize = 200_000;

/// `text` as a modalias if it is one: 1 to [`MAX_MODALIAS_BYTES`] bytes of
/// printable ASCII without blanks (a trailing newline, as sysfs writes it,
/// removed), starting with a bus name (`[a-z0-9_]+`) and `:`.
pub fn valid_modalias(text: &[u8]) -> Option<&str> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    if text.is_empty() || text.len() > MAX_MODALIAS_BYTES {
        return None;
    }
    if !text.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    let colon = text.iter().position(|&b| b == b':')?;
    if colon == 0
        || !text[..colon]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return None;
    }
    std::str::from_utf8(text).ok()
}

/// The modaliases under `devices` (`/sys/devices`): every regular file
/// named `modalias` at most [`MAX_WALK_DEPTH`] below it, symlinks not
/// followed, at most [`MAX_WALK_ENTRIES`] entries looked at, each file
/// read up to [`MAX_MODALIAS_BYTES`] + 1 bytes; invalid ones are counted,
/// not returned. In walk order, duplicates included.
pub fn walk(devices: &Path) -> Walk {
    let mut out = Walk::default();
    let mut stack: Vec<(PathBuf, usize)> = vec![(devices.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            out.entries += 1;
            if out.entries > MAX_WALK_ENTRIES {
                out.truncated = true;
                return out;
            }
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if depth < MAX_WALK_DEPTH {
                    stack.push((entry.path(), depth + 1));
                } else {
                    out.truncated = true;
                }
            } else if ft.is_file() && entry.file_name() == "modalias" {
                let mut buf = Vec::with_capacity(64);
                let read = std::fs::File::open(entry.path())
                    .and_then(|f| f.take(MAX_MODALIAS_BYTES as u64 + 1).read_to_end(&mut buf));
                match read.ok().and_then(|_| valid_modalias(&buf)) {
                    Some(a) => out.aliases.push(a.to_owned()),
                    // Many devices have an empty modalias: not worth a word.
                    None if buf.is_empty() || buf == b"\n" => {}
                    None => out.invalid += 1,
                }
            }
        }
    }
    out
}

/// What [`walk`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walk {
    pub aliases: Vec<String>,
    /// `modalias` files that were not a valid modalias.
    pub invalid: usize,
    pub entries: usize,
    /// A bound was hit: the walk is incomplete.
    pub truncated: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn modaliases_are_validated() {
        assert_eq!(
            valid_modalias(b"virtio:d00000002v00001AF4\n"),
            Some("virtio:d00000002v00001AF4")
        );
        assert_eq!(valid_modalias(b"acpi:PNP0A03:"), Some("acpi:PNP0A03:"));
        for bad in [
            &b""[..],
            b"\n",
            b"no-colon",
            b":nobus",
            b"PCI:upper bus",
            b"pci:has space",
            b"pci:\x01ctl",
            b"pci:\xc3\xa9",
        ] {
            assert_eq!(valid_modalias(bad), None, "{bad:?}");
        }
        let long = format!("pci:{}", "v".repeat(MAX_MODALIAS_BYTES));
        assert_eq!(valid_modalias(long.as_bytes()), None);
    }

    #[test]
    fn the_walk_finds_modaliases_and_skips_links_and_junk() {
        let dir = std::env::temp_dir().join(format!("kmodinit-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dev = dir.join("devices/pci0000:00/0000:00:04.0");
        std::fs::create_dir_all(dev.join("virtio1")).unwrap();
        std::fs::write(dev.join("modalias"), "pci:v00001AF4d00001001\n").unwrap();
        std::fs::write(dev.join("virtio1/modalias"), "virtio:d00000002v00001AF4\n").unwrap();
        std::fs::write(dir.join("devices/modalias"), "bad alias\n").unwrap();
        std::fs::write(dir.join("devices/pci0000:00/modalias"), "").unwrap();
        // A link back up must not be followed (sysfs is full of them).
        std::os::unix::fs::symlink(&dir, dev.join("subsystem")).unwrap();
        let w = walk(&dir.join("devices"));
        let mut got = w.aliases.clone();
        got.sort();
        assert_eq!(got, ["pci:v00001AF4d00001001", "virtio:d00000002v00001AF4"]);
        assert_eq!(w.invalid, 1);
        assert!(!w.truncated);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

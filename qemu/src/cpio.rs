//! An in-memory newc archive for the harness's own test images (a
//! busybox-only initramfs proves the harness without kmodinit) and for tests
//! that break an image on purpose. Encoding and decoding are the image
//! builder's (`kmodinit_mkimage::cpio`): one newc implementation in the
//! workspace. Device nodes are cpio entries, so no root privileges are needed.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{io_err, HarnessError};

use kmodinit_mkimage::cpio::{self as newc, Header, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};

#[derive(Debug, Clone)]
struct Entry {
    mode: u32,
    data: Vec<u8>,
    rdev: (u32, u32),
}

/// An in-memory newc archive; entries are written sorted by path, parents
/// first, with fixed mtime and uid/gid 0.
#[derive(Debug, Clone, Default)]
pub struct Cpio {
    entries: BTreeMap<String, Entry>,
}

impl Cpio {
    pub fn new() -> Cpio {
        Cpio::default()
    }

    /// Adds a directory (and its missing parents).
    pub fn dir(&mut self, path: &str) -> &mut Self {
        let path = path.trim_matches('/');
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.entries.entry(prefix.clone()).or_insert(Entry {
                mode: S_IFDIR | 0o755,
                data: Vec::new(),
                rdev: (0, 0),
            });
        }
        self
    }

    fn parent(&mut self, path: &str) -> String {
        let path = path.trim_matches('/').to_string();
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        path
    }

    /// Adds a regular file with the given permission bits.
    pub fn file(&mut self, path: &str, data: impl Into<Vec<u8>>, perm: u32) -> &mut Self {
        let path = self.parent(path);
        self.entries.insert(
            path,
            Entry {
                mode: S_IFREG | (perm & 0o7777),
                data: data.into(),
                rdev: (0, 0),
            },
        );
        self
    }

    /// Adds a host file's content (mode 0755 when executable, else 0644).
    pub fn host_file(&mut self, path: &str, src: &Path) -> Result<&mut Self, HarnessError> {
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::read(src).map_err(io_err("reading", src))?;
        let meta = std::fs::metadata(src).map_err(io_err("reading", src))?;
        let perm = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        Ok(self.file(path, data, perm))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let path = self.parent(path);
        self.entries.insert(
            path,
            Entry {
                mode: S_IFLNK | 0o777,
                data: target.as_bytes().to_vec(),
                rdev: (0, 0),
            },
        );
        self
    }

    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32, perm: u32) -> &mut Self {
        let path = self.parent(path);
        self.entries.insert(
            path,
            Entry {
                mode: S_IFCHR | (perm & 0o7777),
                data: Vec::new(),
                rdev: (major, minor),
            },
        );
        self
    }

    /// Reads an uncompressed newc archive (as `kmodinit-mkimage --compress
    /// none` writes it), so tests can remove or replace one file of an image.
    pub fn parse(bytes: &[u8]) -> Result<Cpio, HarnessError> {
        let members = newc::read(bytes).map_err(|e| HarnessError::Invalid(e.to_string()))?;
        let mut c = Cpio::new();
        for m in members {
            let name = m.header.name.trim_start_matches("./").trim_matches('/');
            if name.is_empty() || name == "." {
                continue;
            }
            c.entries.insert(
                name.to_string(),
                Entry {
                    mode: m.header.mode,
                    data: m.data,
                    rdev: (m.header.rdev_major, m.header.rdev_minor),
                },
            );
        }
        Ok(c)
    }

    /// Adds the tree under host directory `dir` at `prefix` in the archive
    /// (directories, regular files with their mode, symlinks).
    pub fn host_tree(&mut self, dir: &Path, prefix: &str) -> Result<&mut Self, HarnessError> {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![(dir.to_path_buf(), prefix.trim_matches('/').to_string())];
        while let Some((host, inside)) = stack.pop() {
            if !inside.is_empty() {
                self.dir(&inside);
            }
            for entry in std::fs::read_dir(&host).map_err(io_err("listing", &host))? {
                let entry = entry.map_err(io_err("listing", &host))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let at = if inside.is_empty() {
                    name
                } else {
                    format!("{inside}/{name}")
                };
                let meta = std::fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&path).map_err(io_err("reading", &path))?;
                    self.symlink(&at, &target.to_string_lossy());
                } else if meta.is_dir() {
                    stack.push((path, at));
                } else {
                    let data = std::fs::read(&path).map_err(io_err("reading", &path))?;
                    self.file(&at, data, meta.permissions().mode() & 0o7777);
                }
            }
        }
        Ok(self)
    }

    /// Removes one entry; true if it was there.
    pub fn remove(&mut self, path: &str) -> bool {
        self.entries.remove(path.trim_matches('/')).is_some()
    }

    /// True if the archive has an entry at `path`.
    pub fn has(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_matches('/'))
    }

    /// The contents of the regular file at `path`, if there is one.
    pub fn data(&self, path: &str) -> Option<&[u8]> {
        self.entries
            .get(path.trim_matches('/'))
            .filter(|e| e.mode & S_IFMT == S_IFREG)
            .map(|e| e.data.as_slice())
    }

    /// The paths of all entries, sorted.
    pub fn paths(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// The first path (in sorted order) that ends with `suffix`, e.g.
    /// `"/ext4.ko"` or `"kmodinit.index"`.
    pub fn path_ending(&self, suffix: &str) -> Option<String> {
        self.entries.keys().find(|p| p.ends_with(suffix)).cloned()
    }

    /// The archive bytes (uncompressed newc, with the trailer).
    pub fn to_bytes(&self) -> Result<Vec<u8>, HarnessError> {
        let mut w = newc::Writer::new(Vec::new());
        for (ino, (path, e)) in (1u32..).zip(self.entries.iter()) {
            let header = Header {
                name: path.clone(),
                ino,
                mode: e.mode,
                uid: 0,
                gid: 0,
                nlink: if e.mode & S_IFMT == S_IFDIR { 2 } else { 1 },
                mtime: 0,
                size: e.data.len() as u64,
                dev_major: 0,
                dev_minor: 0,
                rdev_major: e.rdev.0,
                rdev_minor: e.rdev.1,
            };
            w.append(&header, &mut e.data.as_slice())
                .map_err(|err| HarnessError::Invalid(err.to_string()))?;
        }
        w.finish()
            .map(|(bytes, _)| bytes)
            .map_err(|err| HarnessError::Invalid(err.to_string()))
    }

    /// Writes the archive to `path`.
    pub fn write(&self, path: &Path) -> Result<(), HarnessError> {
        std::fs::write(path, self.to_bytes()?).map_err(io_err("writing", path))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn path_ending_finds_the_first_sorted_match() {
        let mut c = Cpio::new();
        c.file("lib/modules/r/b/x.ko", Vec::new(), 0o644)
            .file("lib/modules/r/a/x.ko", Vec::new(), 0o644)
            .file("lib/modules/r/kmodinit.index", Vec::new(), 0o644);
        assert_eq!(
            c.path_ending("/x.ko").as_deref(),
            Some("lib/modules/r/a/x.ko")
        );
        assert_eq!(
            c.path_ending("kmodinit.index").as_deref(),
            Some("lib/modules/r/kmodinit.index")
        );
        assert_eq!(c.path_ending("/y.ko"), None);
    }

    #[test]
    fn entries_are_sorted_with_parents_and_aligned() {
        let mut c = Cpio::new();
        c.file("/sbin/init", b"#!/bin/sh\n".to_vec(), 0o755)
            .symlink("bin/sh", "busybox")
            .char_dev("dev/console", 5, 1, 0o600);
        let bytes = c.to_bytes().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        let order: Vec<usize> = [
            "bin\0",
            "bin/sh\0",
            "dev\0",
            "sbin\0",
            "sbin/init\0",
            "TRAILER!!!\0",
        ]
        .iter()
        .map(|n| text.find(n).unwrap_or_else(|| panic!("{n:?} missing")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // The console node carries its major:minor (5:1) in rdevmajor/rdevminor.
        let at = text.find("dev/console").unwrap() - 110;
        assert_eq!(&text[at + 78..at + 94], "0000000500000001");
        let back = Cpio::parse(&bytes).unwrap();
        assert_eq!(
            back.paths(),
            vec!["bin", "bin/sh", "dev", "dev/console", "sbin", "sbin/init"]
        );
        assert_eq!(back.to_bytes().unwrap(), bytes);
        assert!(Cpio::parse(&bytes[..50]).is_err());
    }
}

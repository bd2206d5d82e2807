//! [`ModuleName`]: the one normalised spelling of a kernel module name.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest module name the kernel accepts (`MODULE_NAME_LEN` is 64 bytes
/// on 64-bit, including the terminating NUL).
pub const MAX_MODULE_NAME_BYTES: usize = 63;

/// A kernel module name, normalised the way kmod does it: `-` and `_` are the
/// same character, stored as `_`. Construction validates that the name is a
/// plain module name (no path separators, no `..`, no whitespace, control
/// characters, `=` or `"`), so a `ModuleName` can be joined to paths and printed safely.
/// Cloning is cheap (a shared immutable string): the index and the plan hold
/// the same names many times.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleName(Arc<str>);

/// Why a string is not a module name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong(String),
    /// The offending character, and the raw name.
    BadChar(char, String),
    DotDot(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "empty module name"),
            NameError::TooLong(n) => write!(
                f,
                "module name {n:?} is longer than {MAX_MODULE_NAME_BYTES} bytes"
            ),
            NameError::BadChar(c, n) => {
                write!(
                    f,
                    "module name {n:?} contains {c:?}: not a plain module name"
                )
            }
            NameError::DotDot(n) => {
                write!(
                    f,
                    "module name {n:?} contains \"..\": not a plain module name"
                )
            }
        }
    }
}

impl std::error::Error for NameError {}

impl ModuleName {
    /// Validates and normalises `raw` (`virtio-blk` becomes `virtio_blk`).
    pub fn new(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > MAX_MODULE_NAME_BYTES {
            return Err(NameError::TooLong(raw.to_owned()));
        }
        if raw.contains("..") {
            return Err(NameError::DotDot(raw.to_owned()));
        }
        let bad = |c: char| {
            c == '/'
            || c == '\\'
            || c.is_whitespace()
            || c.is_control()
            || c == '='
            // A quote would change how the kernel splits `"name.param=…"`.
            || c == '"'
        };
        // Byte scan for the common ASCII case (the index parser calls this
        // tens of thousands of times); full char checks otherwise.
        let found = if raw.is_ascii() {
            raw.bytes().map(char::from).find(|&c| bad(c))
        } else {
            raw.chars().find(|&c| bad(c))
        };
        if let Some(c) = found {
            return Err(NameError::BadChar(c, raw.to_owned()));
        }
        if raw.contains('-') {
            Ok(ModuleName(Arc::from(raw.replace('-', "_"))))
        } else {
            Ok(ModuleName(Arc::from(raw)))
        }
    }

    /// The module name of a module file path, as depmod writes them:
    /// `kernel/fs/ext4/ext4.ko.xz` → `ext4`, `kernel/drivers/foo-bar.ko` → `foo_bar`.
    pub fn from_path(path: &str) -> Result<Self, NameError> {
        let file = path.rsplit('/').next().unwrap_or(path);
        let stem = match file.find(".ko") {
            Some(i) => &file[..i],
            None => file,
        };
        ModuleName::new(stem)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for ModuleName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for ModuleName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ModuleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ModuleName::new(&raw).map_err(serde::de::Error::custom)
    }
}

/// The modules a `/proc/modules` text lists (the first word of each
/// line); a name that is not a module name is skipped.
pub fn parse_proc_modules(text: &str) -> std::collections::BTreeSet<ModuleName> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| ModuleName::new(n).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_and_underscore_are_the_same_name() {
        assert_eq!(ModuleName::new("virtio-blk"), ModuleName::new("virtio_blk"));
        assert_eq!(
            ModuleName::new("a-b_c").map(|n| n.to_string()),
            Ok("a_b_c".into())
        );
    }

    #[test]
    fn path_like_names_are_refused() {
        assert!(matches!(
            ModuleName::new("../etc"),
            Err(NameError::DotDot(_))
        ));
        assert!(matches!(
            ModuleName::new("a/b"),
            Err(NameError::BadChar('/', _))
        ));
        assert!(matches!(
            ModuleName::new("a b"),
            Err(NameError::BadChar(' ', _))
        ));
        assert!(matches!(
            ModuleName::new("a\"b"),
            Err(NameError::BadChar('"', _))
        ));
        assert_eq!(ModuleName::new(""), Err(NameError::Empty));
        assert!(ModuleName::new(&"x".repeat(64)).is_err());
    }

    #[test]
    fn name_from_depmod_path() {
        for (p, n) in [
            ("kernel/fs/ext4/ext4.ko", "ext4"),
            ("kernel/lib/crc16.ko.xz", "crc16"),
            ("updates/foo-bar.ko.zst", "foo_bar"),
        ] {
            assert_eq!(
                ModuleName::from_path(p).map(|m| m.to_string()),
                Ok(n.into())
            );
        }
    }

    #[test]
    fn proc_modules_names() {
        let text = "ext4 1056768 1 - Live 0x0000000000000000\nvirtio-blk 20480 0 - Live 0x0\n\n";
        let names: Vec<String> = super::parse_proc_modules(text)
            .into_iter()
            .map(|n| n.as_str().to_string())
            .collect();
        assert_eq!(names, ["ext4", "virtio_blk"]);
    }
}

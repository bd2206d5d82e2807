//! The depmod index of one kernel's module directory: `modules.dep`,
//! `modules.builtin`, `modules.softdep`, `modules.alias`. SKELETON (issue 2).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::name::ModuleName;

/// How a module file is compressed, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    /// `foo.ko` → None, `foo.ko.xz` → Xz, `foo.ko.zst` → Zstd, `foo.ko.gz` →
    /// Gzip; anything else is not a module file.
    pub fn from_path(path: &str) -> Option<Compression> {
        if path.ends_with(".ko") {
            Some(Compression::None)
        } else if path.ends_with(".ko.xz") {
            Some(Compression::Xz)
        } else if path.ends_with(".ko.zst") {
            Some(Compression::Zstd)
        } else if path.ends_with(".ko.gz") {
            Some(Compression::Gzip)
        } else {
            None
        }
    }

    /// The name `/sys/module/compression` uses for this format.
    pub fn kernel_name(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Xz => Some("xz"),
            Compression::Zstd => Some("zstd"),
            Compression::Gzip => Some("gzip"),
        }
    }
}

/// One line of `modules.dep`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleEntry {
    pub name: ModuleName,
    /// Relative to the module directory, as written in `modules.dep`.
    pub path: String,
    pub compression: Compression,
    /// Direct and indirect dependencies as depmod lists them.
    pub deps: Vec<ModuleName>,
}

/// `softdep NAME pre: A B post: C` (names may be aliases).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SoftDep {
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

/// The parsed index. Lookups are by normalised [`ModuleName`].
#[derive(Debug, Clone, Default)]
pub struct DepIndex {
    pub modules: HashMap<ModuleName, ModuleEntry>,
    // builtin, softdeps, aliases: to be completed (issue 2)
}

/// A depmod file that cannot be used: file, line number and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

impl std::error::Error for IndexError {}

impl DepIndex {
    /// Reads the depmod files of `dir` (e.g. `/lib/modules/6.1.0-56-amd64`).
    /// `modules.dep` is required; the others are optional.
    pub fn load(_dir: &Path) -> Result<DepIndex, IndexError> {
        todo!("issue 2")
    }

    pub fn module(&self, name: &ModuleName) -> Option<&ModuleEntry> {
        self.modules.get(name)
    }
}

//! [`IndexError`]: a depmod file that cannot be used, with the file, the
//! line and an [`IndexErrorKind`] per failure.

use std::fmt;

use crate::name::{ModuleName, NameError};

use super::MAX_INDEX_FILE_BYTES;

/// A depmod file that cannot be used: file, line number (0: the whole file)
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexError {
    pub file: String,
    pub line: usize,
    pub kind: IndexErrorKind,
}

/// What is wrong with a depmod file, one variant per failure. Its Display is
/// the message after `FILE:LINE: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexErrorKind {
    /// The file could not be read (the I/O error's kind and message).
    Io {
        error: std::io::ErrorKind,
        message: String,
    },
    /// `modules.dep` does not exist.
    Missing,
    /// Over [`MAX_INDEX_FILE_BYTES`].
    TooLarge,
    NotUtf8,
    /// A `modules.dep` line without `:`.
    DepNoColon {
        line: String,
    },
    /// A module path starting with `/`.
    AbsolutePath {
        path: String,
    },
    /// A module path with a `..` component.
    ParentComponent {
        path: String,
    },
    NulInPath {
        path: String,
    },
    /// A path that does not end in `.ko`, `.ko.xz`, `.ko.zst` or `.ko.gz`.
    NotModuleFile {
        path: String,
    },
    /// A module path whose file name is no module name.
    BadPathName {
        path: String,
        error: NameError,
    },
    /// A bad path in the dependency list of `of`.
    Dependency {
        of: ModuleName,
        error: Box<IndexErrorKind>,
    },
    /// A `modules.softdep` line that starts with another keyword.
    SoftdepKeyword {
        found: String,
    },
    /// `softdep` alone.
    SoftdepNoName,
    /// A bad module name in `modules.softdep` or `modules.alias`.
    BadName(NameError),
    /// A `modules.alias` line that is not `alias PATTERN MODULE`.
    AliasLine {
        line: String,
    },
    /// An alias pattern with a `]` but no `[` (`missing` is `'['`) or the
    /// other way round.
    UnbalancedBracket {
        pattern: String,
        missing: char,
    },
    /// A `modules.builtin.modinfo` record without `.`.
    ModinfoRecord {
        record: String,
    },
    /// An `alias` record of `modules.builtin.modinfo` that is not UTF-8.
    ModinfoNotUtf8 {
        record: String,
    },
    /// An `alias` record whose value is empty or several words.
    ModinfoPattern {
        module: String,
        pattern: String,
    },
    /// An `alias` record whose module is no module name.
    ModinfoName(NameError),
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.kind)
        } else {
            write!(f, "{}: {}", self.file, self.kind)
        }
    }
}

impl std::error::Error for IndexError {}

impl fmt::Display for IndexErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use IndexErrorKind as K;
        match self {
            K::Io { message, .. } => f.write_str(message),
            K::Missing => f.write_str("missing (run depmod for this kernel)"),
            K::TooLarge => write!(
                f,
                "larger than {MAX_INDEX_FILE_BYTES} bytes: not a depmod index"
            ),
            K::NotUtf8 => f.write_str("not valid UTF-8"),
            K::DepNoColon { line } => write!(
                f,
                "expected \"path: dependencies\", found {line:?} (no ':')"
            ),
            K::AbsolutePath { path } => write!(
                f,
                "module path {path:?} is absolute; depmod paths are relative to the module directory"
            ),
            K::ParentComponent { path } => write!(
                f,
                "module path {path:?} has a \"..\" component; depmod paths stay inside the module directory"
            ),
            K::NulInPath { path } => write!(f, "module path {path:?} contains a NUL byte"),
            K::NotModuleFile { path } => write!(
                f,
                "{path:?} is not a module file (.ko, .ko.xz, .ko.zst or .ko.gz)"
            ),
            K::BadPathName { path, error } => write!(f, "{path:?}: {error}"),
            K::Dependency { of, error } => write!(f, "dependency of {of}: {error}"),
            K::SoftdepKeyword { found } => write!(
                f,
                "expected \"softdep NAME pre: … post: …\", found keyword {found:?}"
            ),
            K::SoftdepNoName => f.write_str("\"softdep\" without a module name"),
            K::BadName(e) => write!(f, "{e}"),
            K::AliasLine { line } => {
                write!(f, "expected \"alias PATTERN MODULE\", found {line:?}")
            }
            K::UnbalancedBracket { pattern, missing } => {
                let (has, lacks) = if *missing == '[' {
                    (']', '[')
                } else {
                    ('[', ']')
                };
                write!(f, "alias {pattern:?} has a '{has}' without '{lacks}'")
            }
            K::ModinfoRecord { record } => {
                write!(f, "record {record:?} is not MODULE.KEY=VALUE")
            }
            K::ModinfoNotUtf8 { record } => {
                write!(f, "alias record {record:?} is not valid UTF-8")
            }
            K::ModinfoPattern { module, pattern } => {
                write!(f, "alias of {module:?}: {pattern:?} is not one pattern")
            }
            K::ModinfoName(e) => write!(f, "alias record: {e}"),
        }
    }
}

impl IndexErrorKind {
    /// This failure at `line` of `file`.
    #[cfg(feature = "depmod-text")]
    pub(super) fn at(self, file: &str, line: usize) -> IndexError {
        IndexError {
            file: file.to_owned(),
            line,
            kind: self,
        }
    }
}

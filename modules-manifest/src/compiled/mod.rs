//! The compiled index: the module index of one image, resolved on the host
//! by `kmodinit build` and read by `/init` instead of the depmod text files.
//!
//! The image builder already reads the depmod files (`modules.dep`,
//! `modules.builtin`, `modules.softdep`, `modules.alias`,
//! `modules.builtin.modinfo`) and resolves every name as kmod would
//! ([`DepIndex::resolve`]); it writes the result as one binary file,
//! [`INDEX_FILE`] in the image's module directory. `/init` decodes it into
//! the same [`DepIndex`] the planner walks, so the boot plans by lookups in
//! tables built on the host, with no text parser and no sort:
//!
//! - every module with its file, compression and dependencies (names, as
//!   depmod lists them: all of them, direct or not);
//! - the builtin modules, and the aliases of builtin modules;
//! - the softdeps, every line of a module merged (as the text reader does);
//! - the alias table, exact aliases and glob patterns, the globs already in
//!   the order lookups binary-search (coldplug's modaliases, the kernel's
//!   requests and `kmodinit.load=` are only known at boot, so they are
//!   matched against the patterns then);
//! - resolved names: for every softdep target and every name the manifest
//!   gives (chain entries, softdep overrides), the modules kmod's lookup
//!   order gives it, so planning them at boot is one hash lookup
//!   ([`DepIndex::resolve`] answers from this table first);
//! - the parameters each module declares (from its `.modinfo`), which
//!   `/init` checks the command line's `module.param=` against.
//!
//! Format (all integers little-endian): a header, then the body.
//!
//! ```text
//! header: magic "KMIINDEX" · u32 format version · str kernel release
//!         · u32 body length · u64 FNV-1a of the body
//! body:   names:    u32 n, n × str               (module names, sorted)
//!         modules:  u32 n, n × (name, str path, u8 compression, names deps)
//!         builtin:  names
//!         softdeps: u32 n, n × (name, strs pre, strs post, strs ignored)
//!         aliases, builtin aliases: table
//!         resolved: u32 n, n × (str key, names)
//!         params:   u32 n, n × (name, strs)
//! table:  u32 n, n × (str alias, names)          (exact, sorted by alias)
//!         u32 n, n × (str pattern, name)         (globs, in lookup order)
//! str: u32 length, UTF-8 bytes · strs: u32 n, n × str
//! name: u32 into the names · names: u32 n, n × name
//! ```
//!
//! Maps are written sorted, so one image's index is always the same bytes.
//! The header is checked before anything else is read: another magic, a
//! format version other than [`FORMAT_VERSION`], a kernel release other than
//! the running one, a body whose length or checksum does not match, are
//! each a [`CompiledError`] naming what was found and what was expected.

mod decode;
mod encode;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::depmod::DepIndex;
use crate::name::{ModuleName, NameError};

pub use decode::decode;
pub use encode::{encode, resolve_keys};

/// The file name in the image's module directory (`lib/modules/RELEASE`).
pub const INDEX_FILE: &str = "kmodinit.index";

/// The first bytes of every compiled index.
pub const MAGIC: &[u8; 8] = b"KMIINDEX";

/// The version of the format this build writes and reads. A change of the
/// format is a new version: an `/init` never guesses at another's layout.
pub const FORMAT_VERSION: u32 = 1;

/// The largest index `/init` reads, in bytes: a whole Debian tree compiles
/// to about 3 MB; an image holds a fraction of it.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// The index of one image, as the host resolved it.
#[derive(Debug, Clone, Default)]
pub struct CompiledIndex {
    /// The kernel release the index was built for (`uname -r`).
    pub release: String,
    /// Modules, builtins, softdeps, aliases and resolved names.
    pub index: DepIndex,
    /// The parameters each module declares (`parm` records of its
    /// `.modinfo`); a module not listed here is not checked.
    pub params: BTreeMap<ModuleName, BTreeSet<String>>,
}

impl CompiledIndex {
    /// The index `kmodinit build` writes for an image: `index` (the image's
    /// pruned depmod files, modprobe.d aliases merged) with its softdep
    /// targets and `names` (the manifest's chain entries and softdep
    /// overrides) resolved by [`DepIndex::resolve`], and the parameters its
    /// modules declare.
    pub fn compile<'a>(
        release: &str,
        mut index: DepIndex,
        params: BTreeMap<ModuleName, BTreeSet<String>>,
        names: impl IntoIterator<Item = &'a str>,
    ) -> CompiledIndex {
        index.resolved.clear();
        let resolved = resolve_keys(&index, names);
        index.resolved = resolved.into_iter().collect();
        CompiledIndex {
            release: release.to_owned(),
            index,
            params,
        }
    }
}

/// Why a compiled index cannot be used. Its `Display` says what was found
/// and what was expected; the caller names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompiledError {
    /// The file does not start with [`MAGIC`].
    Magic,
    /// Written in another format version.
    Version { found: u32, expected: u32 },
    /// Written for another kernel release than the running one.
    Release { index: String, running: String },
    /// Over [`MAX_INDEX_BYTES`].
    TooLarge { bytes: u64 },
    /// The file ends inside a field, or the body's length is not the one
    /// the header gives.
    Truncated { at: usize },
    /// Bytes after the last section.
    Trailing { at: usize },
    /// The body's FNV-1a is not the header's.
    Checksum { found: u64, expected: u64 },
    /// A string that is not UTF-8.
    NotUtf8 { at: usize },
    /// A name reference past the end of the names.
    NameRef { at: usize, index: u32 },
    /// A module name the name rules refuse.
    BadName(NameError),
    /// A compression byte no format has.
    Compression { at: usize, byte: u8 },
    /// An alias pattern with unbalanced brackets.
    Pattern { pattern: String },
}

impl fmt::Display for CompiledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompiledError::Magic => write!(
                f,
                "not a kmodinit compiled index (no {:?} magic): rebuild the image with kmodinit build",
                String::from_utf8_lossy(MAGIC)
            ),
            CompiledError::Version { found, expected } => write!(
                f,
                "compiled index format version {found}, but this /init reads version {expected}: \
                 rebuild the image with the kmodinit that built this /init"
            ),
            CompiledError::Release { index, running } => write!(
                f,
                "compiled index is for kernel {index}, but the running kernel is {running}: \
                 rebuild the image for {running}"
            ),
            CompiledError::TooLarge { bytes } => {
                write!(f, "{bytes} bytes, over the {MAX_INDEX_BYTES}-byte limit")
            }
            CompiledError::Truncated { at } => write!(f, "truncated at byte {at}"),
            CompiledError::Trailing { at } => write!(f, "unexpected bytes from byte {at}"),
            CompiledError::Checksum { found, expected } => write!(
                f,
                "checksum {found:016x}, header says {expected:016x}: the file is damaged"
            ),
            CompiledError::NotUtf8 { at } => write!(f, "string at byte {at} is not UTF-8"),
            CompiledError::NameRef { at, index } => {
                write!(f, "name reference {index} at byte {at} is out of range")
            }
            CompiledError::BadName(e) => write!(f, "bad module name: {e}"),
            CompiledError::Compression { at, byte } => {
                write!(f, "unknown compression {byte} at byte {at}")
            }
            CompiledError::Pattern { pattern } => {
                write!(f, "alias pattern {pattern:?} has unbalanced brackets")
            }
        }
    }
}

impl std::error::Error for CompiledError {}

/// FNV-1a, 64 bits: catches a damaged file, not a forged one (the image's
/// integrity is the boot chain's job).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests;

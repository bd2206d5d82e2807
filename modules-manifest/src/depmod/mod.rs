//! The depmod index of one kernel's module directory: `modules.dep`,
//! `modules.builtin`, `modules.softdep`, `modules.alias`, and the aliases of
//! builtin modules from `modules.builtin.modinfo`.
//!
//! Parsing follows kmod's reading of the text files (not the `.bin` tries):
//!
//! - `modules.dep`: `path: dep-path dep-path…`, one module per line. Paths are
//!   relative to the module directory; an absolute path or a `..` component
//!   is refused (the loader joins these paths to the module directory). A
//!   module listed twice keeps its first line, as kmod's text lookup does.
//! - `modules.builtin`: one module path per line.
//! - `modules.softdep`: `softdep NAME [pre: A B…] [post: C…]`. Tokens before
//!   any `pre:`/`post:` keyword are ignored, as kmod ignores them (Debian 6.1
//!   ships `softdep cifs gcm` lines, a known upstream slip); they are kept in
//!   [`SoftDep::ignored`] so the plan can say so. Unlike kmod, which uses only
//!   the first `softdep` line of a module, all lines of a module are merged:
//!   depmod writes one line per `MODULE_SOFTDEP()` and the module author meant
//!   all of them. `weakdep` lines are tolerated and ignored.
//! - `modules.alias`: `alias PATTERN MODULE`. Patterns are normalised like
//!   kmod's `alias_normalize` (`-` → `_` outside `[…]`) and matched with
//!   fnmatch semantics (`*`, `?`, `[…]`, `[!…]`, `\` escapes).
//! - `modules.builtin.modinfo`: the `.modinfo` sections of the builtin
//!   modules, as the kernel build writes them: NUL-terminated
//!   `MODULE.KEY=VALUE` records. Only `alias` records are used: they are what
//!   depmod turns into `modules.builtin.alias.bin`, through which kmod
//!   resolves e.g. `crypto-dh` to a builtin `dh_generic` after
//!   `modules.alias` found nothing. Other records (descriptions, authors,
//!   parameters) are skipped unread and need not be UTF-8.
//!
//! `#` comment lines and blank lines are skipped in every file. Every other
//! malformed line is an [`IndexError`] naming the file and line.
//!
//! One file per depmod file: `dep.rs`, `builtin.rs`, `softdep.rs`,
//! `alias.rs` (with `fnmatch.rs`), `modinfo.rs`; `error.rs` holds
//! [`IndexError`]; `prune.rs` cuts the files down to an image's modules
//! ([`prune()`]) with the same line splitters. This file holds the index
//! they fill and its lookups.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::name::ModuleName;

mod alias;
#[cfg(feature = "depmod-text")]
mod builtin;
#[cfg(feature = "depmod-text")]
mod dep;
mod error;
mod fnmatch;
mod hash;
#[cfg(feature = "depmod-text")]
mod modinfo;
#[cfg(feature = "depmod-text")]
mod prune;
#[cfg(feature = "depmod-text")]
mod softdep;
#[cfg(feature = "depmod-text")]
mod text;

pub use alias::AliasTable;
pub use error::{IndexError, IndexErrorKind};
pub use fnmatch::fnmatch;
#[cfg(feature = "depmod-text")]
pub use modinfo::modinfo_alias;
#[cfg(feature = "depmod-text")]
pub use prune::{prune, PruneError, BUILTIN_WHOLE_MAX_BYTES};
#[cfg(feature = "depmod-text")]
use text::{content_lines, read_index_bytes, read_index_file};

/// The largest depmod file [`DepIndex::load`] reads, in bytes. Debian 6.1's
/// `modules.alias` is about 1.3 MB; anything this big is not an index.
pub const MAX_INDEX_FILE_BYTES: u64 = 64 * 1024 * 1024;

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
    /// Tokens that stood before any `pre:`/`post:` keyword. kmod ignores
    /// them, and so does the planner (it mentions them in its notes).
    pub ignored: Vec<String>,
}

/// The parsed index. Lookups are by normalised [`ModuleName`].
#[derive(Debug, Clone, Default)]
pub struct DepIndex {
    pub modules: HashMap<ModuleName, ModuleEntry>,
    /// `modules.builtin`: satisfied without loading anything.
    pub builtin: HashSet<ModuleName>,
    /// `modules.softdep`, all lines of a module merged.
    pub softdeps: HashMap<ModuleName, SoftDep>,
    /// `modules.alias`.
    pub aliases: AliasTable,
    /// The `alias` records of `modules.builtin.modinfo`: consulted only when
    /// `aliases` matches nothing, as kmod does.
    pub builtin_aliases: AliasTable,
    /// Names already resolved by [`DepIndex::resolve`] on the host (the
    /// compiled index's table, [`crate::compiled`]): answered from here
    /// first. Empty for an index read from the text files.
    pub resolved: HashMap<String, Vec<ModuleName>>,
}

impl DepIndex {
    /// The `modules.dep` entry of a module.
    pub fn module(&self, name: &ModuleName) -> Option<&ModuleEntry> {
        self.modules.get(name)
    }

    /// True if the module is built into the kernel (`modules.builtin`).
    pub fn is_builtin(&self, name: &ModuleName) -> bool {
        self.builtin.contains(name)
    }

    /// True if the module exists as a file (`modules.dep`) or is builtin.
    pub fn contains(&self, name: &ModuleName) -> bool {
        self.modules.contains_key(name) || self.builtin.contains(name)
    }

    /// The merged `softdep` lines of a module.
    pub fn softdep(&self, name: &ModuleName) -> Option<&SoftDep> {
        self.softdeps.get(name)
    }

    /// The direct dependencies of a module, in `modules.dep` order.
    /// `modules.dep` lists every module a module needs, directly or not; a
    /// listed dependency is direct unless another listed dependency lists
    /// it too (then it is only needed through that one). This is what a
    /// dependency drawing shows; loading needs the full list
    /// ([`ModuleEntry::deps`]). Empty for a module without a `modules.dep`
    /// line.
    pub fn direct_deps(&self, name: &ModuleName) -> Vec<ModuleName> {
        let Some(entry) = self.modules.get(name) else {
            return Vec::new();
        };
        entry
            .deps
            .iter()
            .filter(|d| {
                !entry.deps.iter().any(|other| {
                    other != *d && self.modules.get(other).is_some_and(|o| o.deps.contains(d))
                })
            })
            .cloned()
            .collect()
    }

    /// What `name_or_alias` means, in the order of kmod's
    /// `kmod_module_new_from_lookup`, stopping at the first source that
    /// knows it: a module of `modules.dep`; then EVERY module whose
    /// `modules.alias` patterns match (sorted, deduplicated; alias targets
    /// are returned even if the index has no file for them, so callers can
    /// tell "unknown" from "pruned"); then the builtin modules whose
    /// `modules.builtin.modinfo` aliases match; then a builtin module of
    /// that name (`modules.builtin`). So `crc32`, whose `lib/crc32` is
    /// builtin on Debian, means `crc32_generic` and `crc32_pclmul` (both
    /// alias `crc32`), as `modprobe crc32` loads them. kmod's other sources
    /// have no counterpart here: modprobe.d aliases go into the image's
    /// `modules.alias`, and no softdep names a `symbol:`. Empty if nothing
    /// matches. Exact aliases are a hash lookup; glob patterns are tested
    /// only when their literal prefix starts `name_or_alias`.
    pub fn resolve(&self, name_or_alias: &str) -> Vec<ModuleName> {
        if let Some(found) = self.resolved.get(name_or_alias) {
            return found.clone();
        }
        let name = ModuleName::new(name_or_alias).ok();
        if let Some(name) = name.as_ref().filter(|n| self.modules.contains_key(*n)) {
            return vec![name.clone()];
        }
        let found = self.aliases.lookup(name_or_alias);
        if !found.is_empty() {
            return found;
        }
        let found = self.builtin_aliases.lookup(name_or_alias);
        if !found.is_empty() {
            return found;
        }
        match name {
            Some(name) if self.builtin.contains(&name) => vec![name],
            _ => Vec::new(),
        }
    }
}

#[cfg(all(test, feature = "depmod-text"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(super) fn n(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    pub(super) const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko.xz:
kernel/crypto/crc32c_generic.ko.zst:
kernel/arch/x86/crypto/crc32c-intel.ko.gz:
";

    pub(super) const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias pci:v00001AF4d00001001sv*sd*bc*sc*i* virtio_blk
alias fs-ext4 ext4
alias acpi*:PNP0A0[38]:* pci_root
alias usb:v0B95p[1-7]*d* asix
";

    #[test]
    fn direct_deps_leave_out_what_another_dependency_brings() {
        // d needs c and b directly; c needs b and a (a through b); b needs a.
        let idx = DepIndex::parse(
            "d.ko: c.ko b.ko a.ko\nc.ko: b.ko a.ko\nb.ko: a.ko\na.ko:\ne.ko: b.ko a.ko\n",
            "",
            "",
            "",
        )
        .unwrap();
        assert_eq!(idx.direct_deps(&n("d")), vec![n("c")]);
        assert_eq!(idx.direct_deps(&n("c")), vec![n("b")]);
        assert_eq!(idx.direct_deps(&n("e")), vec![n("b")]);
        assert!(idx.direct_deps(&n("a")).is_empty());
        assert!(idx.direct_deps(&n("unknown")).is_empty());
        // Two independent dependencies are both direct, in file order.
        let idx = DepIndex::parse("x.ko: z.ko y.ko\ny.ko:\nz.ko:\n", "", "", "").unwrap();
        assert_eq!(idx.direct_deps(&n("x")), vec![n("z"), n("y")]);
    }

    #[test]
    fn resolve_follows_kmod_module_then_aliases_then_builtin() {
        let idx =
            DepIndex::parse(DEP, "kernel/lib/crc32c.ko\nkernel/lib/crc8.ko\n", "", ALIAS).unwrap();
        assert_eq!(idx.resolve("ext4"), vec![n("ext4")]);
        // "crc32c" is builtin here, but modules.alias comes first (kmod's
        // order; Debian's f2fs `pre: crc32` case).
        assert_eq!(idx.resolve("crc32c"), vec![n("crc32c_generic")]);
        // A builtin module no alias names is itself.
        assert_eq!(idx.resolve("crc8"), vec![n("crc8")]);
        // Both spellings of the alias; results sorted.
        assert_eq!(
            idx.resolve("crypto-crc32c"),
            vec![n("crc32c_generic"), n("crc32c_intel")]
        );
        assert_eq!(idx.resolve("crypto_crc32c"), idx.resolve("crypto-crc32c"));
        assert_eq!(idx.resolve("fs-ext4"), vec![n("ext4")]);
        assert!(idx.resolve("nothing-here").is_empty());
        assert_eq!(
            idx.resolve("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"),
            vec![n("virtio_blk")]
        );
        assert_eq!(idx.resolve("acpi:PNP0A08:"), vec![n("pci_root")]);
        assert_eq!(idx.resolve("acpiX:PNP0A03:yz"), vec![n("pci_root")]);
        assert!(idx.resolve("acpi:PNP0A05:").is_empty());
        assert_eq!(idx.resolve("usb:v0B95p7720d0001"), vec![n("asix")]);
        assert!(idx.resolve("usb:v0B95p8720d0001").is_empty());
        assert_eq!(idx.aliases.len(), 7);
    }

    #[test]
    fn load_reads_a_directory_and_names_missing_dep() {
        let dir = std::env::temp_dir().join(format!("kmodinit-depmod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = DepIndex::load(&dir.join("nope")).unwrap_err();
        assert!(e.file.ends_with("nope/modules.dep"), "{e}");
        assert_eq!(e.kind, IndexErrorKind::Missing);
        std::fs::write(dir.join("modules.dep"), DEP).unwrap();
        std::fs::write(dir.join("modules.alias"), ALIAS).unwrap();
        let idx = DepIndex::load(&dir).unwrap();
        assert_eq!(idx.modules.len(), 6);
        assert_eq!(idx.aliases.len(), 7);
        assert!(idx.builtin.is_empty());
        std::fs::write(dir.join("modules.softdep"), "softdep\n").unwrap();
        let e = DepIndex::load(&dir).unwrap_err();
        assert!(e.to_string().contains("modules.softdep:1:"), "{e}");
        std::fs::write(dir.join("modules.softdep"), b"softdep a pre: \xff\n").unwrap();
        let e = DepIndex::load(&dir).unwrap_err();
        assert_eq!(e.kind, IndexErrorKind::NotUtf8);
        assert_eq!(
            e.to_string(),
            format!(
                "{}:1: not valid UTF-8",
                dir.join("modules.softdep").display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! `modules.builtin.modinfo`: the `alias` records of the builtin modules.

use std::collections::HashSet;

use super::alias::AliasTable;
use super::{IndexError, IndexErrorKind};
use crate::name::ModuleName;

/// The module and pattern of one `modules.builtin.modinfo` record if it is
/// `MODULE.alias=PATTERN`; `None` for any other record. The module name is
/// what precedes the first `.` (module names have none; keys and values
/// may). Bytes, not text: other records need not be UTF-8.
pub fn modinfo_alias(record: &[u8]) -> Option<(&[u8], &[u8])> {
    let dot = record.iter().position(|&b| b == b'.')?;
    let pattern = record[dot + 1..].strip_prefix(b"alias=")?;
    Some((&record[..dot], pattern))
}

/// Adds the `alias` records of `modules.builtin.modinfo` (NUL-terminated
/// `MODULE.KEY=VALUE` records) to `aliases`, and their modules to `builtin`:
/// code built in with a `MODULE_ALIAS` is builtin even when `modules.builtin`
/// does not list it (Debian 6.1's `tracefs`, `debugfs`), as kmod treats it.
/// A record is identified in errors by its number (from 1) as the "line".
pub(super) fn parse_builtin_modinfo(
    bytes: &[u8],
    file: &str,
    aliases: &mut AliasTable,
    builtin: &mut HashSet<ModuleName>,
) -> Result<(), IndexError> {
    for (i, record) in bytes.split(|&b| b == 0).enumerate() {
        if record.is_empty() {
            continue;
        }
        let no = i + 1;
        // The module name is what precedes the first '.': module names have
        // none, keys (e.g. `parm`, `alias`) and values may.
        if !record.contains(&b'.') {
            return Err(IndexErrorKind::ModinfoRecord {
                record: String::from_utf8_lossy(record).into_owned(),
            }
            .at(file, no));
        }
        let Some((module, pattern)) = modinfo_alias(record) else {
            continue;
        };
        let (Ok(module), Ok(pattern)) = (std::str::from_utf8(module), std::str::from_utf8(pattern))
        else {
            return Err(IndexErrorKind::ModinfoNotUtf8 {
                record: String::from_utf8_lossy(record).into_owned(),
            }
            .at(file, no));
        };
        if pattern.is_empty() || pattern.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(IndexErrorKind::ModinfoPattern {
                module: module.to_owned(),
                pattern: pattern.to_owned(),
            }
            .at(file, no));
        }
        let module =
            ModuleName::new(module).map_err(|e| IndexErrorKind::ModinfoName(e).at(file, no))?;
        aliases
            .push(pattern, module.clone())
            .map_err(|k| k.at(file, no))?;
        builtin.insert(module);
    }
    aliases.sort_globs();
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::depmod::tests::{n, ALIAS, DEP};
    use crate::depmod::{DepIndex, IndexErrorKind as K};

    /// Records as the kernel build writes them, including a non-UTF-8
    /// author (skipped unread) and a parameter description with dots.
    const MODINFO: &[u8] = b"dh_generic.alias=crypto-dh\0dh_generic.alias=dh\0\
dh_generic.author=J\xf6rn\0crc32c_generic.alias=crypto-crc32c\0\
crc32c_generic.parm=x:a.b.c\0zbud.alias=zpool-zbud\0sha256_x86.alias=sha*\0";

    #[test]
    fn builtin_modinfo_aliases_resolve_after_modules_alias() {
        let mut idx = DepIndex::parse(
            DEP,
            "kernel/crypto/dh_generic.ko\nkernel/arch/x86/sha256-x86.ko\n",
            "",
            ALIAS,
        )
        .unwrap();
        assert!(idx.resolve("crypto-dh").is_empty());
        assert!(!idx.is_builtin(&n("zbud")));
        idx.add_builtin_modinfo(MODINFO, "modules.builtin.modinfo")
            .unwrap();
        assert_eq!(idx.builtin_aliases.len(), 5);
        assert_eq!(idx.resolve("crypto-dh"), vec![n("dh_generic")]);
        assert_eq!(idx.resolve("dh"), vec![n("dh_generic")]);
        // zbud has an alias record but no modules.builtin line: builtin.
        assert!(idx.is_builtin(&n("zbud")));
        assert_eq!(idx.resolve("zpool_zbud"), vec![n("zbud")]);
        assert_eq!(idx.resolve("sha256"), vec![n("sha256_x86")]);
        // modules.alias knows crypto-crc32c: the builtin alias is not used,
        // as kmod stops at the first source that matches.
        assert_eq!(
            idx.resolve("crypto-crc32c"),
            vec![n("crc32c_generic"), n("crc32c_intel")]
        );
        assert!(idx.resolve("crypto-nothing").is_empty());
    }

    #[test]
    fn builtin_modinfo_errors_name_the_record() {
        let parse = |b: &[u8]| {
            let mut idx = DepIndex::default();
            idx.add_builtin_modinfo(b, "modules.builtin.modinfo")
                .map(|()| idx.builtin_aliases.len())
        };
        assert_eq!(parse(b""), Ok(0));
        assert_eq!(parse(b"\0\0a.license=GPL\0"), Ok(0));
        let e = parse(b"a.alias=x\0no-dot-here\0").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("modules.builtin.modinfo", 2));
        assert_eq!(
            e.kind,
            K::ModinfoRecord {
                record: "no-dot-here".into()
            }
        );
        let e = parse(b"a.alias=x y\0").unwrap_err();
        assert!(matches!(e.kind, K::ModinfoPattern { .. }), "{e}");
        assert!(e.to_string().contains("not one pattern"), "{e}");
        let e = parse(b"a.alias=\0").unwrap_err();
        assert!(matches!(e.kind, K::ModinfoPattern { .. }), "{e}");
        let e = parse(b"a.alias=\xff\0").unwrap_err();
        assert!(matches!(e.kind, K::ModinfoNotUtf8 { .. }), "{e}");
        let e = parse(b"a/b.alias=x\0").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(matches!(e.kind, K::ModinfoName(_)), "{e}");
        let e = parse(b"a.alias=pci:[x\0").unwrap_err();
        assert!(matches!(e.kind, K::UnbalancedBracket { .. }), "{e}");
        assert!(
            e.to_string().starts_with("modules.builtin.modinfo:1: "),
            "{e}"
        );
    }
}

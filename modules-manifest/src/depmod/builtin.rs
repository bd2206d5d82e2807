//! `modules.builtin`: one module path per line, modules built into the
//! kernel.

use std::collections::HashSet;

use super::dep::{check_module_path, module_name_of_path};
use super::{content_lines, IndexError, IndexErrorKind};
use crate::name::ModuleName;

/// The module a `modules.builtin` line names.
pub(super) fn builtin_name(line: &str) -> Result<ModuleName, IndexErrorKind> {
    check_module_path(line).and_then(|()| module_name_of_path(line))
}

pub(super) fn parse_builtin(
    text: &str,
    file: &str,
    builtin: &mut HashSet<ModuleName>,
) -> Result<(), IndexError> {
    for (no, line) in content_lines(text) {
        let name = builtin_name(line).map_err(|k| k.at(file, no))?;
        builtin.insert(name);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::depmod::tests::n;
    use crate::depmod::{DepIndex, IndexErrorKind as K};

    #[test]
    fn builtin_lines_become_names() {
        let idx = DepIndex::parse(
            "",
            "kernel/arch/x86/crypto/libblake2s-x86_64.ko\nkernel/fs/ext4/ext4.ko\n",
            "",
            "",
        )
        .unwrap();
        assert!(idx.is_builtin(&n("libblake2s_x86_64")));
        assert!(idx.is_builtin(&n("ext4")));
        assert!(idx.contains(&n("ext4")));
        assert!(!idx.is_builtin(&n("xfs")));
        let e = DepIndex::parse("", "ok.ko\n/abs/x.ko\n", "", "").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("modules.builtin", 2));
        assert_eq!(
            e.kind,
            K::AbsolutePath {
                path: "/abs/x.ko".into()
            }
        );
    }
}

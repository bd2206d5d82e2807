//! `modules.dep`: `path: dep-path dep-path…`, and the checks every module
//! path of the index passes (relative, inside the module directory, a module
//! file).

use std::collections::HashMap;

use super::hash::FastMap;
use super::{content_lines, Compression, IndexError, IndexErrorKind, ModuleEntry};
use crate::name::ModuleName;

/// Refuses module paths that would escape the module directory when joined.
pub(super) fn check_module_path(path: &str) -> Result<(), IndexErrorKind> {
    if path.starts_with('/') {
        return Err(IndexErrorKind::AbsolutePath {
            path: path.to_owned(),
        });
    }
    if path.split('/').any(|c| c == "..") {
        return Err(IndexErrorKind::ParentComponent {
            path: path.to_owned(),
        });
    }
    if path.contains('\0') {
        return Err(IndexErrorKind::NulInPath {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Module name and compression of a `modules.dep` path.
fn module_of_path(path: &str) -> Result<(ModuleName, Compression), IndexErrorKind> {
    check_module_path(path)?;
    let compression =
        Compression::from_path(path).ok_or_else(|| IndexErrorKind::NotModuleFile {
            path: path.to_owned(),
        })?;
    let name = module_name_of_path(path)?;
    Ok((name, compression))
}

/// The module name of a (checked) module path.
pub(super) fn module_name_of_path(path: &str) -> Result<ModuleName, IndexErrorKind> {
    ModuleName::from_path(path).map_err(|error| IndexErrorKind::BadPathName {
        path: path.to_owned(),
        error,
    })
}

/// Parses `modules.dep` into `modules`; errors name `file` and the line.
/// A `modules.dep` line split into the module's path and its dependency
/// paths; `None` without the `:`.
pub(super) fn split_dep_line(line: &str) -> Option<(&str, std::str::SplitAsciiWhitespace<'_>)> {
    let (path, deps) = line.split_once(':')?;
    Some((path.trim(), deps.split_ascii_whitespace()))
}

pub(super) fn parse_dep(
    text: &str,
    file: &str,
    modules: &mut HashMap<ModuleName, ModuleEntry>,
) -> Result<(), IndexError> {
    // Each module appears as a dependency of many others: check and build
    // its name once per distinct path.
    let mut dep_names: FastMap<&str, ModuleName> = FastMap::default();
    for (no, line) in content_lines(text) {
        let Some((path, deps)) = split_dep_line(line) else {
            return Err(IndexErrorKind::DepNoColon {
                line: line.to_owned(),
            }
            .at(file, no));
        };
        let (name, compression) = module_of_path(path).map_err(|k| k.at(file, no))?;
        let mut dep_list = Vec::new();
        for d in deps {
            let dep = match dep_names.get(d) {
                Some(n) => n.clone(),
                None => {
                    let (n, _) = module_of_path(d).map_err(|k| {
                        IndexErrorKind::Dependency {
                            of: name.clone(),
                            error: Box::new(k),
                        }
                        .at(file, no)
                    })?;
                    dep_names.insert(d, n.clone());
                    n
                }
            };
            dep_list.push(dep);
        }
        let deps = dep_list;
        // First line wins, as kmod's text lookup stops at the first match.
        modules.entry(name.clone()).or_insert(ModuleEntry {
            name,
            path: path.to_owned(),
            compression,
            deps,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::depmod::tests::{n, DEP};
    use crate::depmod::{Compression, DepIndex, IndexErrorKind as K};

    #[test]
    fn dep_lines_give_paths_compression_and_deps() {
        let idx = DepIndex::parse(DEP, "", "", "").unwrap();
        assert_eq!(idx.modules.len(), 6);
        let ext4 = idx.module(&n("ext4")).unwrap();
        assert_eq!(ext4.path, "kernel/fs/ext4/ext4.ko");
        assert_eq!(ext4.compression, Compression::None);
        assert_eq!(ext4.deps, vec![n("crc16"), n("mbcache"), n("jbd2")]);
        assert_eq!(
            idx.module(&n("crc16")).unwrap().compression,
            Compression::Xz
        );
        assert_eq!(
            idx.module(&n("crc32c_generic")).unwrap().compression,
            Compression::Zstd
        );
        let intel = idx.module(&n("crc32c_intel")).unwrap();
        assert_eq!(intel.compression, Compression::Gzip);
        assert_eq!(intel.path, "kernel/arch/x86/crypto/crc32c-intel.ko.gz");
    }

    #[test]
    fn dep_line_without_colon_names_file_and_line() {
        let e = DepIndex::parse("a.ko:\n\nkernel/b.ko kernel/c.ko\n", "", "", "").unwrap_err();
        assert_eq!(e.file, "modules.dep");
        assert_eq!(e.line, 3);
        assert!(matches!(e.kind, K::DepNoColon { .. }), "{e}");
        assert!(e.to_string().starts_with("modules.dep:3: "), "{e}");
        assert!(e.to_string().ends_with("(no ':')"), "{e}");
    }

    #[test]
    fn dep_paths_that_escape_are_refused() {
        let e = DepIndex::parse("../../etc/evil.ko:\n", "", "", "").unwrap_err();
        assert_eq!(e.line, 1);
        assert_eq!(
            e.kind,
            K::ParentComponent {
                path: "../../etc/evil.ko".into()
            }
        );
        let e = DepIndex::parse("a.ko: /abs/b.ko\n", "", "", "").unwrap_err();
        assert_eq!(
            e.kind,
            K::Dependency {
                of: n("a"),
                error: Box::new(K::AbsolutePath {
                    path: "/abs/b.ko".into()
                })
            }
        );
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = DepIndex::parse("kernel/x/../y.ko:\n", "", "", "").unwrap_err();
        assert!(matches!(e.kind, K::ParentComponent { .. }), "{e}");
    }

    #[test]
    fn dep_non_module_file_and_bad_name_are_errors() {
        let e = DepIndex::parse("kernel/a.ko:\nkernel/readme.txt:\n", "", "", "").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(
            e.kind,
            K::NotModuleFile {
                path: "kernel/readme.txt".into()
            }
        );
        let e = DepIndex::parse("kernel/a b.ko:\n", "", "", "").unwrap_err();
        assert!(matches!(e.kind, K::BadPathName { .. }), "{e}");
        assert!(e.to_string().contains("a b"), "{e}");
    }

    #[test]
    fn first_dep_line_of_a_module_wins() {
        let idx = DepIndex::parse(
            "updates/a.ko:\nkernel/a.ko: kernel/b.ko\nkernel/b.ko:\n",
            "",
            "",
            "",
        )
        .unwrap();
        assert_eq!(idx.module(&n("a")).unwrap().path, "updates/a.ko");
    }
}

//! `modules.softdep`: `softdep NAME [pre: A B…] [post: C…]`, all lines of a
//! module merged.

use std::collections::HashMap;

use super::{content_lines, IndexError, IndexErrorKind, SoftDep};
use crate::name::ModuleName;

/// A `modules.softdep` line split into its module and the tokens after it;
/// `None` for a line to skip (`weakdep`), an error for one that is wrong.
pub(super) fn split_softdep_line(
    line: &str,
) -> Result<Option<(&str, std::str::SplitAsciiWhitespace<'_>)>, IndexErrorKind> {
    let mut tokens = line.split_ascii_whitespace();
    match tokens.next() {
        Some("softdep") => {}
        // kmod >= 33 writes weak dependencies here; they are hints for
        // image builders, not load-order edges, so they are skipped.
        Some("weakdep") | None => return Ok(None),
        Some(other) => {
            return Err(IndexErrorKind::SoftdepKeyword {
                found: other.to_owned(),
            })
        }
    }
    let module = tokens.next().ok_or(IndexErrorKind::SoftdepNoName)?;
    Ok(Some((module, tokens)))
}

pub(super) fn parse_softdep(
    text: &str,
    file: &str,
    softdeps: &mut HashMap<ModuleName, SoftDep>,
) -> Result<(), IndexError> {
    for (no, line) in content_lines(text) {
        let Some((raw_name, tokens)) = split_softdep_line(line).map_err(|k| k.at(file, no))? else {
            continue;
        };
        let name =
            ModuleName::new(raw_name).map_err(|e| IndexErrorKind::BadName(e).at(file, no))?;
        let entry = softdeps.entry(name).or_default();
        #[derive(Clone, Copy)]
        enum Mode {
            None,
            Pre,
            Post,
        }
        let mut mode = Mode::None;
        for token in tokens {
            match token {
                "pre:" => mode = Mode::Pre,
                "post:" => mode = Mode::Post,
                _ => match mode {
                    Mode::None => entry.ignored.push(token.to_owned()),
                    Mode::Pre => entry.pre.push(token.to_owned()),
                    Mode::Post => entry.post.push(token.to_owned()),
                },
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::depmod::tests::n;
    use crate::depmod::{DepIndex, IndexErrorKind as K};

    #[test]
    fn softdep_lines_merge_and_keep_kmod_quirks() {
        let text = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep btrfs pre: blake2b-256 sha256
softdep btrfs pre: crypto-crc32c post: xxhash64
softdep cifs gcm
weakdep foo bar
softdep vfio post: vfio_iommu_type1 pre: a
";
        let idx = DepIndex::parse("", "", text, "").unwrap();
        let btrfs = idx.softdep(&n("btrfs")).unwrap();
        assert_eq!(btrfs.pre, vec!["blake2b-256", "sha256", "crypto-crc32c"]);
        assert_eq!(btrfs.post, vec!["xxhash64"]);
        let cifs = idx.softdep(&n("cifs")).unwrap();
        assert!(cifs.pre.is_empty());
        assert_eq!(cifs.ignored, vec!["gcm"]);
        assert!(idx.softdep(&n("foo")).is_none());
        let vfio = idx.softdep(&n("vfio")).unwrap();
        assert_eq!(
            (vfio.pre.clone(), vfio.post.clone()),
            (vec!["a".to_owned()], vec!["vfio_iommu_type1".to_owned()])
        );
    }

    #[test]
    fn softdep_errors_name_the_line() {
        let e = DepIndex::parse("", "", "softdep a pre: b\nsoftdep\n", "").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("modules.softdep", 2));
        assert_eq!(e.kind, K::SoftdepNoName);
        assert!(e.to_string().contains("without a module name"), "{e}");
        let e = DepIndex::parse("", "", "options a b=1\n", "").unwrap_err();
        assert_eq!(
            e.kind,
            K::SoftdepKeyword {
                found: "options".into()
            }
        );
        let e = DepIndex::parse("", "", "softdep ../x pre: y\n", "").unwrap_err();
        assert!(matches!(e.kind, K::BadName(_)), "{e}");
        assert!(e.to_string().contains("../x"), "{e}");
    }
}

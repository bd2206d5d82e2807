//! `modules.alias`: the table of alias patterns and its parser.

use super::fnmatch::fnmatch;
use super::hash::FastMap;
use super::IndexErrorKind;
#[cfg(feature = "depmod-text")]
use super::{content_lines, IndexError};
use crate::name::ModuleName;

/// `modules.alias`: exact aliases in a hash map; glob patterns in a vector
/// sorted by their literal prefix (the text before the first `*`, `?`, `[`
/// or `\`), so a lookup binary-searches, for each prefix of the looked-up
/// name, the few patterns with exactly that literal prefix instead of
/// testing all of them (Debian 6.1 has 22,000 glob aliases).
#[derive(Debug, Clone, Default)]
pub struct AliasTable {
    exact: FastMap<String, Vec<ModuleName>>,
    /// Sorted by `pattern[..prefix_len]` (stable: file order within).
    globs: Vec<GlobAlias>,
    len: usize,
}

#[derive(Debug, Clone)]
struct GlobAlias {
    pattern: String,
    prefix_len: usize,
    /// The first 16 bytes of the prefix, big-endian, zero-padded: ordering
    /// by it agrees with ordering the prefixes (zero is the smallest byte),
    /// so sorting compares integers and falls back to bytes only on ties.
    sort_key: u128,
    module: ModuleName,
}

impl GlobAlias {
    fn prefix(&self) -> &[u8] {
        &self.pattern.as_bytes()[..self.prefix_len]
    }
}

impl AliasTable {
    /// Adds `alias PATTERN MODULE`. Fails (with the reason) on a pattern that
    /// kmod would refuse: an unbalanced `[`/`]`.
    pub fn insert(&mut self, pattern: &str, module: ModuleName) -> Result<(), IndexErrorKind> {
        if self.push(pattern, module)? {
            self.sort_globs();
        }
        Ok(())
    }

    /// Adds without restoring the glob order; true if a glob was added.
    /// Bulk loading pushes everything, then sorts once.
    pub(crate) fn push(
        &mut self,
        pattern: &str,
        module: ModuleName,
    ) -> Result<bool, IndexErrorKind> {
        let pattern = normalize_alias(pattern)?;
        self.len += 1;
        // Byte search: all four are ASCII, so the index is a char boundary.
        match pattern
            .bytes()
            .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        {
            None => {
                match self.exact.get_mut(&pattern) {
                    Some(v) => v.push(module),
                    None => {
                        self.exact.insert(pattern, vec![module]);
                    }
                }
                Ok(false)
            }
            Some(prefix_len) => {
                let mut key = [0u8; 16];
                let head = &pattern.as_bytes()[..prefix_len.min(16)];
                key[..head.len()].copy_from_slice(head);
                self.globs.push(GlobAlias {
                    pattern,
                    prefix_len,
                    sort_key: u128::from_be_bytes(key),
                    module,
                });
                Ok(true)
            }
        }
    }

    pub(crate) fn sort_globs(&mut self) {
        // Stable, and nearly linear on already sorted input.
        self.globs.sort_by(|a, b| {
            a.sort_key
                .cmp(&b.sort_key)
                .then_with(|| a.prefix().cmp(b.prefix()))
        });
    }

    /// Every module whose alias matches `name` (exact or glob), sorted and
    /// without duplicates. `name` is normalised like a pattern first.
    pub fn lookup(&self, name: &str) -> Vec<ModuleName> {
        let Ok(name) = normalize_alias(name) else {
            return Vec::new();
        };
        let mut out: Vec<ModuleName> = self.exact.get(&name).cloned().unwrap_or_default();
        let bytes = name.as_bytes();
        // Patterns whose literal prefix starts with name[..i] form one
        // contiguous run of the sorted vector, narrowing as i grows; those
        // whose prefix is exactly name[..i] open the run. Stop when the run
        // is empty: no pattern can match any more.
        let (mut lo, mut hi) = (0usize, self.globs.len());
        for i in 0..=bytes.len() {
            let p = &bytes[..i];
            let run = &self.globs[lo..hi];
            let key = |g: &GlobAlias| {
                let pre = g.prefix();
                pre[..pre.len().min(i)].cmp(p)
            };
            let a = run.partition_point(|g| key(g) == std::cmp::Ordering::Less);
            let b = run.partition_point(|g| key(g) != std::cmp::Ordering::Greater);
            (lo, hi) = (lo + a, lo + b);
            for g in self.globs[lo..hi].iter().take_while(|g| g.prefix_len == i) {
                if fnmatch(g.pattern.as_bytes(), bytes) {
                    out.push(g.module.clone());
                }
            }
            if lo == hi {
                break;
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The exact aliases and their modules, in no particular order.
    pub(crate) fn exact_entries(&self) -> impl Iterator<Item = (&str, &[ModuleName])> {
        self.exact.iter().map(|(a, m)| (a.as_str(), m.as_slice()))
    }

    /// The glob patterns (normalised) and their modules, in lookup order.
    pub(crate) fn glob_entries(&self) -> impl Iterator<Item = (&str, &ModuleName)> {
        self.globs.iter().map(|g| (g.pattern.as_str(), &g.module))
    }

    /// Number of `alias` lines.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// kmod's `alias_normalize`: `-` becomes `_` except inside `[…]`; an
/// unterminated `[` or a stray `]` is an error.
fn normalize_alias(raw: &str) -> Result<String, IndexErrorKind> {
    if !raw.bytes().any(|b| matches!(b, b'-' | b'[' | b']')) {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut in_bracket = false;
    for c in raw.chars() {
        match c {
            '[' if !in_bracket => {
                in_bracket = true;
                out.push(c);
            }
            ']' if in_bracket => {
                in_bracket = false;
                out.push(c);
            }
            ']' => {
                return Err(IndexErrorKind::UnbalancedBracket {
                    pattern: raw.to_owned(),
                    missing: '[',
                })
            }
            '-' if !in_bracket => out.push('_'),
            _ => out.push(c),
        }
    }
    if in_bracket {
        return Err(IndexErrorKind::UnbalancedBracket {
            pattern: raw.to_owned(),
            missing: ']',
        });
    }
    Ok(out)
}

#[cfg(feature = "depmod-text")]
/// The pattern and module of an `alias PATTERN MODULE` line; `None` for
/// any other shape.
pub(super) fn split_alias_line(line: &str) -> Option<(&str, &str)> {
    let mut tokens = line.split_ascii_whitespace();
    match (tokens.next(), tokens.next(), tokens.next(), tokens.next()) {
        (Some("alias"), Some(pattern), Some(module), None) => Some((pattern, module)),
        _ => None,
    }
}

#[cfg(feature = "depmod-text")]
pub(super) fn parse_alias(
    text: &str,
    file: &str,
    aliases: &mut AliasTable,
) -> Result<(), IndexError> {
    // ~4,000 distinct targets for 26,000 lines: share one name per target.
    let mut names: FastMap<&str, ModuleName> = FastMap::default();
    for (no, line) in content_lines(text) {
        let Some((pattern, module)) = split_alias_line(line) else {
            return Err(IndexErrorKind::AliasLine {
                line: line.to_owned(),
            }
            .at(file, no));
        };
        let module = match names.get(module) {
            Some(n) => n.clone(),
            None => {
                let n =
                    ModuleName::new(module).map_err(|e| IndexErrorKind::BadName(e).at(file, no))?;
                names.insert(module, n.clone());
                n
            }
        };
        aliases.push(pattern, module).map_err(|k| k.at(file, no))?;
    }
    aliases.sort_globs();
    Ok(())
}

#[cfg(all(test, feature = "depmod-text"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::depmod::{DepIndex, IndexErrorKind as K};

    #[test]
    fn alias_lines_must_have_three_fields() {
        let e = DepIndex::parse("", "", "", "alias a b\nalias only\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("modules.alias", 2));
        assert!(matches!(e.kind, K::AliasLine { .. }), "{e}");
        let e = DepIndex::parse("", "", "", "alias a b c\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = DepIndex::parse("", "", "", "alias x[ab mod\n").unwrap_err();
        assert_eq!(
            e.kind,
            K::UnbalancedBracket {
                pattern: "x[ab".into(),
                missing: ']'
            }
        );
        assert!(e.to_string().ends_with("has a '[' without ']'"), "{e}");
        let e = DepIndex::parse("", "", "", "alias x]ab mod\n").unwrap_err();
        assert!(e.to_string().ends_with("has a ']' without '['"), "{e}");
    }
}

//! fnmatch(3) on bytes, for `modules.alias` patterns.

/// fnmatch(3) with flags 0 on bytes: `*` any run, `?` one byte, `[…]` a set
/// (ranges, `!`/`^` negation, `]` first is literal), `\x` a literal `x`.
/// Iterative with single-star backtracking, so it is linear-ish and cannot
/// recurse deeply on hostile patterns.
pub fn fnmatch(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            if let Some(next) = match_one(pattern, p, text[t]) {
                p = next;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Matches the single pattern element at `p` (not `*`) against `c`; returns
/// the index after the element on a match.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => match match_bracket(pattern, p, c) {
            Some((true, next)) => Some(next),
            Some((false, _)) => None,
            // No closing `]`: the `[` is an ordinary character.
            None => (c == b'[').then_some(p + 1),
        },
        other => (other == c).then_some(p + 1),
    }
}

/// `pattern[p]` is `[`. Returns whether `c` is in the set and the index after
/// the closing `]`, or `None` if the set is not terminated.
fn match_bracket(pattern: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut q = p + 1;
    let negate = matches!(pattern.get(q), Some(b'!') | Some(b'^'));
    if negate {
        q += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &b = pattern.get(q)?;
        if b == b']' && !first {
            return Some((matched != negate, q + 1));
        }
        first = false;
        let (lo, after) = if b == b'\\' {
            (*pattern.get(q + 1)?, q + 2)
        } else {
            (b, q + 1)
        };
        if pattern.get(after) == Some(&b'-') && pattern.get(after + 1).is_some_and(|&e| e != b']') {
            let (hi, after_hi) = if pattern[after + 1] == b'\\' {
                (*pattern.get(after + 2)?, after + 3)
            } else {
                (pattern[after + 1], after + 2)
            };
            if lo <= c && c <= hi {
                matched = true;
            }
            q = after_hi;
        } else {
            if lo == c {
                matched = true;
            }
            q = after;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_matches_like_libc() {
        let m = |p: &str, t: &str| fnmatch(p.as_bytes(), t.as_bytes());
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("[!a-c]x", "dx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("x[", "x["));
        assert!(m("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(m("pci:v*d*sv*sd*bc01sc*i*", "pci:v1d2sv3sd4bc01sc00i00"));
    }
}

// Shared checks of the depmod_* targets (included, not a module, so each
// target stays one file that cargo-fuzz lists by name). Each target feeds
// arbitrary text as one file to `DepIndex::parse` (the pure twin of
// `DepIndex::load`) with the other three files empty: a parsed index or an
// error naming the file and line, never a panic.

use modules_manifest::depmod::{fnmatch, IndexError};
use modules_manifest::{Compression, DepIndex, ModuleName};

/// An error names the file the text was passed as, and a line that exists.
fn check_error(e: &IndexError, file: &str, text: &str) {
    assert_eq!(e.file, file);
    assert!(e.line >= 1 && e.line <= text.lines().count(), "line {} of {file}", e.line);
    assert!(!e.kind.to_string().is_empty());
}

/// A module path the loader may join to the module directory.
fn check_path(path: &str) {
    assert!(!path.starts_with('/'), "absolute path {path:?} accepted");
    assert!(!path.split('/').any(|c| c == ".."), "{path:?} escapes");
    assert!(!path.contains('\0'));
}

fn check_dep(text: &str) {
    let index = match DepIndex::parse(text, "", "", "") {
        Ok(i) => i,
        Err(e) => return check_error(&e, "modules.dep", text),
    };
    for (name, entry) in &index.modules {
        assert_eq!(name, &entry.name);
        check_path(&entry.path);
        assert_eq!(ModuleName::from_path(&entry.path).as_ref(), Ok(name));
        assert_eq!(Compression::from_path(&entry.path), Some(entry.compression));
        for d in &entry.deps {
            assert_eq!(ModuleName::new(d.as_str()).as_ref(), Ok(d));
        }
    }
    // Nothing invented: at most one module per content line.
    assert!(index.modules.len() <= text.lines().count());
}

fn check_builtin(text: &str) {
    let index = match DepIndex::parse("", text, "", "") {
        Ok(i) => i,
        Err(e) => return check_error(&e, "modules.builtin", text),
    };
    for name in &index.builtin {
        assert!(index.is_builtin(name));
        assert!(index.contains(name));
        assert_eq!(index.resolve(name.as_str()), vec![name.clone()]);
    }
}

fn check_softdep(text: &str) {
    let index = match DepIndex::parse("", "", text, "") {
        Ok(i) => i,
        Err(e) => return check_error(&e, "modules.softdep", text),
    };
    for (name, soft) in &index.softdeps {
        assert_eq!(ModuleName::new(name.as_str()).as_ref(), Ok(name));
        for t in soft.pre.iter().chain(&soft.post).chain(&soft.ignored) {
            // Tokens are split on ASCII whitespace, as the parser (and kmod,
            // on "\t ") does: a \v inside a token is part of a name that
            // then matches nothing, not a separator.
            assert!(!t.is_empty() && !t.contains(|c: char| c.is_ascii_whitespace()));
            assert!(t != "pre:" && t != "post:");
        }
    }
}

/// kmod's `alias_normalize`, restated: `-` → `_` outside `[…]`.
fn normalize(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut in_bracket = false;
    for c in raw.chars() {
        match c {
            '[' if !in_bracket => in_bracket = true,
            ']' if in_bracket => in_bracket = false,
            ']' => return None,
            _ => {}
        }
        out.push(if c == '-' && !in_bracket { '_' } else { c });
    }
    (!in_bracket).then_some(out)
}

/// The alias table's prefix-grouped lookup must find exactly what a linear
/// scan of every pattern with the same `fnmatch` finds.
fn check_alias(text: &str) {
    let index = match DepIndex::parse("", "", "", text) {
        Ok(i) => i,
        Err(e) => return check_error(&e, "modules.alias", text),
    };
    let mut table: Vec<(String, ModuleName)> = Vec::new();
    for line in text.lines().map(str::trim_ascii) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let t: Vec<&str> = line.split_ascii_whitespace().collect();
        assert_eq!(t.len(), 3, "accepted alias line {line:?}");
        let pattern = normalize(t[1]).expect("accepted pattern normalises");
        table.push((pattern, ModuleName::new(t[2]).expect("accepted module name")));
    }
    assert_eq!(index.aliases.len(), table.len());
    // Queries: each pattern as written, and with its wildcards filled in.
    let mut queries: Vec<String> = Vec::new();
    for (p, _) in table.iter().take(16) {
        queries.push(p.clone());
        queries.push(p.replace('*', "").replace('?', "x"));
        queries.push(p.replace('*', "ab-c").replace('?', "_"));
    }
    for q in &queries {
        let mut want: Vec<ModuleName> = match normalize(q) {
            Some(nq) => table
                .iter()
                .filter(|(p, _)| fnmatch(p.as_bytes(), nq.as_bytes()))
                .map(|(_, m)| m.clone())
                .collect(),
            None => Vec::new(),
        };
        want.sort();
        want.dedup();
        assert_eq!(index.aliases.lookup(q), want, "lookup {q:?}");
    }
}

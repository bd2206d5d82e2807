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

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::name::ModuleName;

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
}

/// A depmod file that cannot be used: file, line number and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

impl std::error::Error for IndexError {}

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

/// The alias maps hash tens of thousands of short strings from the image's
/// own index (trusted input, so no need for SipHash's flooding resistance):
/// an Fx-style multiply-rotate hash is several times faster.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[derive(Debug, Default, Clone, Copy)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl AliasTable {
    /// Adds `alias PATTERN MODULE`. Fails (with the reason) on a pattern that
    /// kmod would refuse: an unbalanced `[`/`]`.
    pub fn insert(&mut self, pattern: &str, module: ModuleName) -> Result<(), String> {
        if self.push(pattern, module)? {
            self.sort_globs();
        }
        Ok(())
    }

    /// Adds without restoring the glob order; true if a glob was added.
    /// Bulk loading pushes everything, then sorts once.
    fn push(&mut self, pattern: &str, module: ModuleName) -> Result<bool, String> {
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

    fn sort_globs(&mut self) {
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
fn normalize_alias(raw: &str) -> Result<String, String> {
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
            ']' => return Err(format!("alias {raw:?} has a ']' without '['")),
            '-' if !in_bracket => out.push('_'),
            _ => out.push(c),
        }
    }
    if in_bracket {
        return Err(format!("alias {raw:?} has a '[' without ']'"));
    }
    Ok(out)
}

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

/// Refuses module paths that would escape the module directory when joined.
fn check_module_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!(
            "module path {path:?} is absolute; depmod paths are relative to the module directory"
        ));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!(
            "module path {path:?} has a \"..\" component; depmod paths stay inside the module directory"
        ));
    }
    if path.contains('\0') {
        return Err(format!("module path {path:?} contains a NUL byte"));
    }
    Ok(())
}

/// Module name and compression of a `modules.dep` path.
fn module_of_path(path: &str) -> Result<(ModuleName, Compression), String> {
    check_module_path(path)?;
    let compression = Compression::from_path(path)
        .ok_or_else(|| format!("{path:?} is not a module file (.ko, .ko.xz, .ko.zst or .ko.gz)"))?;
    let name = ModuleName::from_path(path).map_err(|e| format!("{path:?}: {e}"))?;
    Ok((name, compression))
}

/// Lines worth reading: 1-based number and text, without blanks and comments.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let l = l.trim_ascii();
        (!l.is_empty() && !l.starts_with('#')).then_some((i + 1, l))
    })
}

fn parse_dep(
    text: &str,
    file: &str,
    modules: &mut HashMap<ModuleName, ModuleEntry>,
) -> Result<(), IndexError> {
    let err = |line: usize, message: String| IndexError {
        file: file.to_owned(),
        line,
        message,
    };
    // Each module appears as a dependency of many others: check and build
    // its name once per distinct path.
    let mut dep_names: FastMap<&str, ModuleName> = FastMap::default();
    for (no, line) in content_lines(text) {
        let Some((path, deps)) = line.split_once(':') else {
            return Err(err(
                no,
                format!("expected \"path: dependencies\", found {line:?} (no ':')"),
            ));
        };
        let path = path.trim();
        let (name, compression) = module_of_path(path).map_err(|m| err(no, m))?;
        let mut dep_list = Vec::new();
        for d in deps.split_ascii_whitespace() {
            let dep = match dep_names.get(d) {
                Some(n) => n.clone(),
                None => {
                    let (n, _) = module_of_path(d)
                        .map_err(|m| err(no, format!("dependency of {name}: {m}")))?;
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

fn parse_builtin(
    text: &str,
    file: &str,
    builtin: &mut HashSet<ModuleName>,
) -> Result<(), IndexError> {
    for (no, line) in content_lines(text) {
        let name = check_module_path(line)
            .and_then(|()| ModuleName::from_path(line).map_err(|e| format!("{line:?}: {e}")))
            .map_err(|message| IndexError {
                file: file.to_owned(),
                line: no,
                message,
            })?;
        builtin.insert(name);
    }
    Ok(())
}

fn parse_softdep(
    text: &str,
    file: &str,
    softdeps: &mut HashMap<ModuleName, SoftDep>,
) -> Result<(), IndexError> {
    let err = |line: usize, message: String| IndexError {
        file: file.to_owned(),
        line,
        message,
    };
    for (no, line) in content_lines(text) {
        let mut tokens = line.split_ascii_whitespace();
        match tokens.next() {
            Some("softdep") => {}
            // kmod >= 33 writes weak dependencies here; they are hints for
            // image builders, not load-order edges, so they are skipped.
            Some("weakdep") => continue,
            Some(other) => {
                return Err(err(
                    no,
                    format!("expected \"softdep NAME pre: … post: …\", found keyword {other:?}"),
                ))
            }
            None => continue,
        }
        let raw_name = tokens
            .next()
            .ok_or_else(|| err(no, "\"softdep\" without a module name".to_owned()))?;
        let name = ModuleName::new(raw_name).map_err(|e| err(no, e.to_string()))?;
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

fn parse_alias(text: &str, file: &str, aliases: &mut AliasTable) -> Result<(), IndexError> {
    let err = |line: usize, message: String| IndexError {
        file: file.to_owned(),
        line,
        message,
    };
    // ~4,000 distinct targets for 26,000 lines: share one name per target.
    let mut names: FastMap<&str, ModuleName> = FastMap::default();
    for (no, line) in content_lines(text) {
        let mut tokens = line.split_ascii_whitespace();
        let (Some("alias"), Some(pattern), Some(module), None) =
            (tokens.next(), tokens.next(), tokens.next(), tokens.next())
        else {
            return Err(err(
                no,
                format!("expected \"alias PATTERN MODULE\", found {line:?}"),
            ));
        };
        let module = match names.get(module) {
            Some(n) => n.clone(),
            None => {
                let n = ModuleName::new(module).map_err(|e| err(no, e.to_string()))?;
                names.insert(module, n.clone());
                n
            }
        };
        aliases.push(pattern, module).map_err(|m| err(no, m))?;
    }
    aliases.sort_globs();
    Ok(())
}

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
fn parse_builtin_modinfo(
    bytes: &[u8],
    file: &str,
    aliases: &mut AliasTable,
    builtin: &mut HashSet<ModuleName>,
) -> Result<(), IndexError> {
    let err = |record: usize, message: String| IndexError {
        file: file.to_owned(),
        line: record,
        message,
    };
    for (i, record) in bytes.split(|&b| b == 0).enumerate() {
        if record.is_empty() {
            continue;
        }
        let no = i + 1;
        // The module name is what precedes the first '.': module names have
        // none, keys (e.g. `parm`, `alias`) and values may.
        if !record.contains(&b'.') {
            return Err(err(
                no,
                format!(
                    "record {:?} is not MODULE.KEY=VALUE",
                    String::from_utf8_lossy(record)
                ),
            ));
        }
        let Some((module, pattern)) = modinfo_alias(record) else {
            continue;
        };
        let (Ok(module), Ok(pattern)) = (std::str::from_utf8(module), std::str::from_utf8(pattern))
        else {
            return Err(err(
                no,
                format!(
                    "alias record {:?} is not valid UTF-8",
                    String::from_utf8_lossy(record)
                ),
            ));
        };
        if pattern.is_empty() || pattern.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(err(
                no,
                format!("alias of {module:?}: {pattern:?} is not one pattern"),
            ));
        }
        let module = ModuleName::new(module).map_err(|e| err(no, format!("alias record: {e}")))?;
        aliases
            .push(pattern, module.clone())
            .map_err(|m| err(no, m))?;
        builtin.insert(module);
    }
    aliases.sort_globs();
    Ok(())
}

/// Reads `dir/name` (at most [`MAX_INDEX_FILE_BYTES`]); `Ok(None)` if it
/// does not exist.
fn read_index_bytes(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, IndexError> {
    let path = dir.join(name);
    let file_label = path.display().to_string();
    let io_err = |e: std::io::Error| IndexError {
        file: file_label.clone(),
        line: 0,
        message: e.to_string(),
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_INDEX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_INDEX_FILE_BYTES {
        return Err(IndexError {
            file: file_label,
            line: 0,
            message: format!("larger than {MAX_INDEX_FILE_BYTES} bytes: not a depmod index"),
        });
    }
    Ok(Some(bytes))
}

/// Reads `dir/name` as UTF-8 text; `Ok(None)` if it does not exist.
fn read_index_file(dir: &Path, name: &str) -> Result<Option<String>, IndexError> {
    let Some(bytes) = read_index_bytes(dir, name)? else {
        return Ok(None);
    };
    let file_label = dir.join(name).display().to_string();
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        IndexError {
            file: file_label.clone(),
            line,
            message: "not valid UTF-8".to_owned(),
        }
    })
}

impl DepIndex {
    /// Reads the depmod files of `dir` (e.g. `/lib/modules/6.1.0-56-amd64`).
    /// `modules.dep` is required; the others are optional. The only I/O of
    /// this crate.
    pub fn load(dir: &Path) -> Result<DepIndex, IndexError> {
        let dep = read_index_file(dir, "modules.dep")?.ok_or_else(|| IndexError {
            file: dir.join("modules.dep").display().to_string(),
            line: 0,
            message: "missing (run depmod for this kernel)".to_owned(),
        })?;
        let label = |n: &str| dir.join(n).display().to_string();
        let mut index = DepIndex::default();
        parse_dep(&dep, &label("modules.dep"), &mut index.modules)?;
        if let Some(text) = read_index_file(dir, "modules.builtin")? {
            parse_builtin(&text, &label("modules.builtin"), &mut index.builtin)?;
        }
        if let Some(text) = read_index_file(dir, "modules.softdep")? {
            parse_softdep(&text, &label("modules.softdep"), &mut index.softdeps)?;
        }
        if let Some(text) = read_index_file(dir, "modules.alias")? {
            parse_alias(&text, &label("modules.alias"), &mut index.aliases)?;
        }
        if let Some(bytes) = read_index_bytes(dir, "modules.builtin.modinfo")? {
            index.add_builtin_modinfo(&bytes, &label("modules.builtin.modinfo"))?;
        }
        Ok(index)
    }

    /// Adds the aliases of builtin modules from the bytes of
    /// `modules.builtin.modinfo` (the pure part of what [`DepIndex::load`]
    /// does with that file), and counts their modules as builtin; errors
    /// name the file as `file` and the record by its number.
    pub fn add_builtin_modinfo(&mut self, bytes: &[u8], file: &str) -> Result<(), IndexError> {
        parse_builtin_modinfo(bytes, file, &mut self.builtin_aliases, &mut self.builtin)
    }

    /// The pure twin of [`DepIndex::load`]: the texts of `modules.dep`,
    /// `modules.builtin`, `modules.softdep` and `modules.alias` (pass `""`
    /// for a missing file). Errors name the file by its base name.
    pub fn parse(
        dep: &str,
        builtin: &str,
        softdep: &str,
        alias: &str,
    ) -> Result<DepIndex, IndexError> {
        let mut index = DepIndex::default();
        parse_dep(dep, "modules.dep", &mut index.modules)?;
        parse_builtin(builtin, "modules.builtin", &mut index.builtin)?;
        parse_softdep(softdep, "modules.softdep", &mut index.softdeps)?;
        parse_alias(alias, "modules.alias", &mut index.aliases)?;
        Ok(index)
    }

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

    /// What `name_or_alias` means, in kmod's lookup order, stopping at the
    /// first source that knows it: a module of `modules.dep`, then a builtin
    /// module, then the modules whose `modules.alias` patterns match (sorted,
    /// deduplicated; alias targets are returned even if the index has no file
    /// for them, so callers can tell "unknown" from "pruned"), then the
    /// builtin modules whose `modules.builtin.modinfo` aliases match. Empty
    /// if nothing matches. Exact aliases are a hash lookup; glob patterns are
    /// tested only when their literal prefix starts `name_or_alias`.
    pub fn resolve(&self, name_or_alias: &str) -> Vec<ModuleName> {
        if let Ok(name) = ModuleName::new(name_or_alias) {
            if self.contains(&name) {
                return vec![name];
            }
        }
        let found = self.aliases.lookup(name_or_alias);
        if found.is_empty() {
            self.builtin_aliases.lookup(name_or_alias)
        } else {
            found
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko.xz:
kernel/crypto/crc32c_generic.ko.zst:
kernel/arch/x86/crypto/crc32c-intel.ko.gz:
";

    const ALIAS: &str = "\
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
        assert!(e.message.contains("no ':'"), "{e}");
        assert!(e.to_string().starts_with("modules.dep:3: "), "{e}");
    }

    #[test]
    fn dep_paths_that_escape_are_refused() {
        let e = DepIndex::parse("../../etc/evil.ko:\n", "", "", "").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("../../etc/evil.ko"), "{e}");
        let e = DepIndex::parse("a.ko: /abs/b.ko\n", "", "", "").unwrap_err();
        assert!(
            e.message.contains("/abs/b.ko") && e.message.contains("absolute"),
            "{e}"
        );
        let e = DepIndex::parse("kernel/x/../y.ko:\n", "", "", "").unwrap_err();
        assert!(e.message.contains(".."), "{e}");
    }

    #[test]
    fn dep_non_module_file_and_bad_name_are_errors() {
        let e = DepIndex::parse("kernel/a.ko:\nkernel/readme.txt:\n", "", "", "").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("readme.txt"), "{e}");
        let e = DepIndex::parse("kernel/a b.ko:\n", "", "", "").unwrap_err();
        assert!(e.message.contains("a b"), "{e}");
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
    }

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
        assert!(e.message.contains("without a module name"), "{e}");
        let e = DepIndex::parse("", "", "options a b=1\n", "").unwrap_err();
        assert!(e.message.contains("options"), "{e}");
        let e = DepIndex::parse("", "", "softdep ../x pre: y\n", "").unwrap_err();
        assert!(e.message.contains("../x"), "{e}");
    }

    #[test]
    fn alias_lines_must_have_three_fields() {
        let e = DepIndex::parse("", "", "", "alias a b\nalias only\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("modules.alias", 2));
        let e = DepIndex::parse("", "", "", "alias a b c\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = DepIndex::parse("", "", "", "alias x[ab mod\n").unwrap_err();
        assert!(e.message.contains("'['"), "{e}");
    }

    #[test]
    fn resolve_prefers_module_then_builtin_then_aliases() {
        let idx = DepIndex::parse(DEP, "kernel/fs/crc32c.ko\n", "", ALIAS).unwrap();
        assert_eq!(idx.resolve("ext4"), vec![n("ext4")]);
        // "crc32c" is builtin here, so the alias of that name is not consulted.
        assert_eq!(idx.resolve("crc32c"), vec![n("crc32c")]);
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
        assert!(e.message.contains("no-dot-here"), "{e}");
        let e = parse(b"a.alias=x y\0").unwrap_err();
        assert!(e.message.contains("not one pattern"), "{e}");
        let e = parse(b"a.alias=\0").unwrap_err();
        assert!(e.message.contains("not one pattern"), "{e}");
        let e = parse(b"a.alias=\xff\0").unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e}");
        let e = parse(b"a/b.alias=x\0").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse(b"a.alias=pci:[x\0").unwrap_err();
        assert!(
            e.to_string().starts_with("modules.builtin.modinfo:1: "),
            "{e}"
        );
    }

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

    #[test]
    fn load_reads_a_directory_and_names_missing_dep() {
        let dir = std::env::temp_dir().join(format!("kmodinit-depmod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = DepIndex::load(&dir.join("nope")).unwrap_err();
        assert!(e.file.ends_with("nope/modules.dep"), "{e}");
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
        assert!(e.message.contains("UTF-8"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

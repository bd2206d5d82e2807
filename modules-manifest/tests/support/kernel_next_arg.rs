//! The test oracle for kernel command-line splitting: the kernel's own
//! `next_arg()` (lib/cmdline.c), restated on bytes from the C source, and
//! what kmodinit must do with the module parameters it yields.
//!
//! Deliberately independent of the product's splitter
//! (`modules_manifest::cmdline`): tests compare the two, so this file must
//! not reuse any of its code. One copy, included with `#[path]` by
//! `modules-manifest/tests/fuzz_regressions.rs` (stable, replays findings)
//! and `fuzz/fuzz_targets/cmdline.rs` (nightly, the differential fuzzer);
//! it only uses `std`, so it builds in both.

/// The kernel's `isspace()` (lib/ctype.c): ASCII blanks and 0xA0.
pub fn kspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0)
}

/// One argument: the parameter and, after the first `=`, its value.
pub type Arg<'a> = (&'a [u8], Option<&'a [u8]>);

/// lib/cmdline.c `next_arg()`, transliterated: the first argument of `line`
/// (which must not start with a blank) and the rest after the blanks that
/// follow it.
///
/// The C function cuts the argument out of the line by writing NUL bytes
/// into it and hands back C strings; so does this one, on a copy whose
/// cells are `None` where C wrote a NUL (or past the end). A 0 byte in the
/// input stays an ordinary byte: the kernel's command line never holds one,
/// and the product treats it as one.
pub fn next_arg(line: &[u8]) -> (Arg<'_>, &[u8]) {
    let mut buf: Vec<Option<u8>> = line.iter().copied().map(Some).collect();
    let at = |buf: &[Option<u8>], k: usize| buf.get(k).copied().flatten();
    // `char *args`, as an index into `line`.
    let mut args = 0usize;
    let (mut in_quote, mut quoted) = (false, false);
    if at(&buf, args) == Some(b'"') {
        args += 1;
        in_quote = true;
        quoted = true;
    }
    let mut equals = 0usize;
    let mut i = 0usize;
    while let Some(c) = at(&buf, args + i) {
        if kspace(c) && !in_quote {
            break;
        }
        if equals == 0 && c == b'=' {
            equals = i;
        }
        if c == b'"' {
            in_quote = !in_quote;
        }
        i += 1;
    }
    let param = args;
    let val = if equals == 0 {
        None
    } else {
        buf[args + equals] = None;
        let mut val = args + equals + 1;
        // "Don't include quotes in value."
        if at(&buf, val) == Some(b'"') {
            val += 1;
            if at(&buf, args + i - 1) == Some(b'"') {
                buf[args + i - 1] = None;
            }
        }
        Some(val)
    };
    if quoted && i > 0 && at(&buf, args + i - 1) == Some(b'"') {
        buf[args + i - 1] = None;
    }
    let next = if at(&buf, args + i).is_some() {
        buf[args + i] = None;
        args + i + 1
    } else {
        args + i
    };
    // A C string: from `from` to the first NUL.
    let c_str = |from: usize| {
        let end = (from..line.len())
            .find(|&k| buf[k].is_none())
            .unwrap_or(line.len());
        &line[from.min(end)..end]
    };
    let arg = (c_str(param), val.map(c_str));
    let mut rest = &line[next.min(line.len())..];
    while rest.first().is_some_and(|&b| kspace(b)) {
        rest = &rest[1..];
    }
    (arg, rest)
}

/// `next_arg()` over a whole string after skipping leading blanks, as
/// `parse_args()` applies it both to the command line and to the parameter
/// string given to `init_module`.
pub fn split(line: &[u8]) -> Vec<Arg<'_>> {
    let mut rest = line;
    while rest.first().is_some_and(|&b| kspace(b)) {
        rest = &rest[1..];
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (arg, r) = next_arg(rest);
        out.push(arg);
        rest = r;
    }
    out
}

/// A `MODULE.KEY[=VALUE]` argument of the command line, as the kernel split it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleArg<'a> {
    /// The bytes before the first `.` (a module name holds no `.`, so this
    /// is the module even when the rest is not UTF-8).
    pub module: &'a str,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    /// Whether kmodinit hands it to the module. A key that holds a blank or
    /// a quote, or a key or value that is not UTF-8 (the kernel split a
    /// character at 0xA0), is dropped with a warning naming the module.
    pub kept: bool,
}

/// The module parameters of a command line, in order, per the kernel's
/// splitting: arguments before a bare `--` named `MODULE.KEY` with a UTF-8
/// module and a non-empty key, minus kmodinit's own options (`kmodinit.*`,
/// `modprobe.blacklist`, `dm-mod.create`, `systemd.verity_root_*`, `-` and
/// `_` alike in the key). The module name is
/// not validated here: callers normalise it as a module name.
pub fn module_args(line: &[u8]) -> Vec<ModuleArg<'_>> {
    let mut out = Vec::new();
    for (param, value) in split(line) {
        if param == b"--" && value.is_none() {
            break;
        }
        let Some(dot) = param.iter().position(|&b| b == b'.') else {
            continue;
        };
        let (module, key) = (&param[..dot], &param[dot + 1..]);
        let Ok(module) = std::str::from_utf8(module) else {
            continue;
        };
        let blacklist = module == "modprobe"
            && std::str::from_utf8(key).is_ok_and(|k| k.replace('-', "_") == "blacklist");
        // Device-mapper options are kmodinit's, not module parameters.
        let key_norm = std::str::from_utf8(key).map(|k| k.replace('-', "_"));
        let dm = match (module, key_norm.as_deref()) {
            ("dm-mod" | "dm_mod", Ok("create")) => true,
            ("systemd", Ok(k)) => {
                matches!(
                    k,
                    "verity_root_data" | "verity_root_hash" | "verity_root_options"
                )
            }
            _ => false,
        };
        if key.is_empty() || blacklist || dm || module == "kmodinit" {
            continue;
        }
        let kept = !key.iter().any(|&b| b == b'"' || kspace(b))
            && std::str::from_utf8(key).is_ok()
            && value.is_none_or(|v| std::str::from_utf8(v).is_ok());
        out.push(ModuleArg {
            module,
            key,
            value,
            kept,
        });
    }
    out
}

/// What kmodinit must hand to modules for `line`: the kept [`module_args`],
/// in order, as (module, key, value), the module named by `module_name`
/// (which normalises it; `None` skips an argument whose module part is not
/// a module name). Panics if a parameter kmodinit must drop has no warning
/// naming its module in `warnings`.
pub fn expected_params<N>(
    line: &[u8],
    warnings: &[String],
    module_name: impl Fn(&str) -> Option<N>,
) -> Vec<(N, Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for a in module_args(line) {
        let Some(m) = module_name(a.module) else {
            continue;
        };
        if !a.kept {
            assert!(
                warnings.iter().any(|w| w.contains(a.module)),
                "{:?}: {}.{:?} dropped without a warning naming it: {warnings:?}",
                String::from_utf8_lossy(line),
                a.module,
                String::from_utf8_lossy(a.key),
            );
            continue;
        }
        out.push((m, a.key.to_vec(), a.value.map(<[u8]>::to_vec)));
    }
    out
}

//! Arbitrary text as `/proc/cmdline`: `KernelCmdline::parse` never fails and
//! never panics, every field it fills holds a usable value, and the module
//! parameters it extracts are exactly what the kernel's own `next_arg()`
//! splitting gives — and survive being handed back to the kernel: each
//! `param=value` string, split again by `next_arg()` (as `init_module`'s
//! parameter parser does), is one argument with the same name and value.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use modules_manifest::cmdline::MAX_CMDLINE_BYTES;
use modules_manifest::manifest::MAX_JOBS;
use modules_manifest::{KernelCmdline, ModuleName};

/// The kernel's `isspace()` (lib/ctype.c): ASCII blanks and 0xA0.
fn kspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0)
}

/// lib/cmdline.c `next_arg()`, restated on bytes from the C source:
/// returns (param, value) and the rest after trailing blanks.
fn next_arg(args: &[u8]) -> ((&[u8], Option<&[u8]>), &[u8]) {
    let (args, mut in_quote, quoted) = match args.first() {
        Some(b'"') => (&args[1..], true, true),
        _ => (args, false, false),
    };
    let mut equals = 0usize;
    let mut i = 0;
    while i < args.len() {
        if kspace(args[i]) && !in_quote {
            break;
        }
        if equals == 0 && args[i] == b'=' {
            equals = i;
        }
        if args[i] == b'"' {
            in_quote = !in_quote;
        }
        i += 1;
    }
    let mut end = i; // exclusive end of the argument text
    let (param, value) = if equals == 0 {
        if quoted && i > 0 && args[i - 1] == b'"' {
            end = i - 1;
        }
        (&args[..end], None)
    } else {
        let mut v_start = equals + 1;
        let mut v_end = i;
        if args.get(v_start) == Some(&b'"') {
            v_start += 1;
            if i > 0 && args[i - 1] == b'"' {
                v_end = i - 1;
            }
        }
        if quoted && i > 0 && args[i - 1] == b'"' {
            v_end = v_end.min(i - 1);
        }
        (&args[..equals], Some(&args[v_start.min(v_end)..v_end]))
    };
    let mut rest = if i < args.len() {
        &args[i + 1..]
    } else {
        &[][..]
    };
    while let Some((&b, r)) = rest.split_first() {
        if !kspace(b) {
            break;
        }
        rest = r;
    }
    ((param, value), rest)
}

type Arg<'a> = (&'a [u8], Option<&'a [u8]>);

fn split(line: &[u8]) -> Vec<Arg<'_>> {
    let mut rest = line;
    while let Some((&b, r)) = rest.split_first() {
        if !kspace(b) {
            break;
        }
        rest = r;
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (arg, r) = next_arg(rest);
        out.push(arg);
        rest = r;
    }
    out
}

fuzz_target!(|line: &str| {
    let c = KernelCmdline::parse(line);
    assert_eq!(KernelCmdline::parse(line), c, "a pure function of the text");

    for s in [&c.root, &c.rootfstype, &c.rootflags, &c.init, &c.manifest]
        .into_iter()
        .flatten()
    {
        assert!(!s.is_empty());
    }
    assert!(c.jobs.is_none_or(|j| j <= MAX_JOBS));
    for name in c.module_params.keys().chain(c.blacklist.iter()) {
        assert_eq!(ModuleName::new(name.as_str()).as_ref(), Ok(name));
    }

    // Each parameter string handed to init_module is one kernel argument.
    let mut got: BTreeMap<ModuleName, Vec<(Vec<u8>, Option<Vec<u8>>)>> = BTreeMap::new();
    for (name, params) in &c.module_params {
        assert!(!params.is_empty());
        for p in params {
            let args = split(p.as_bytes());
            assert_eq!(
                args.len(),
                1,
                "{name}: {p:?} reads back as {} arguments",
                args.len()
            );
            let (k, v) = args[0];
            assert!(!k.is_empty(), "{name}: {p:?} has no parameter name");
            got.entry(name.clone())
                .or_default()
                .push((k.to_vec(), v.map(<[u8]>::to_vec)));
        }
    }

    // Differential: the kernel's own splitting of the line (on bytes, so
    // 0xA0 inside a UTF-8 character splits too). A parameter whose name is
    // empty or holds a blank or a quote, or whose name or value is not UTF-8
    // after that split, is dropped with a warning naming its module.
    if line.len() <= MAX_CMDLINE_BYTES {
        let mut want: BTreeMap<ModuleName, Vec<(Vec<u8>, Option<Vec<u8>>)>> = BTreeMap::new();
        for (param, value) in split(line.as_bytes()) {
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
            if key.is_empty() || blacklist || module == "kmodinit" {
                continue;
            }
            let Ok(m) = ModuleName::new(module) else {
                continue;
            };
            let kept = !key.iter().any(|&b| b == b'"' || kspace(b))
                && std::str::from_utf8(key).is_ok()
                && value.is_none_or(|v| std::str::from_utf8(v).is_ok());
            if !kept {
                assert!(
                    c.warnings.iter().any(|w| w.contains(module)),
                    "{module}.{:?} dropped without a warning naming it: {:?}",
                    String::from_utf8_lossy(key),
                    c.warnings
                );
                continue;
            }
            want.entry(m)
                .or_default()
                .push((key.to_vec(), value.map(<[u8]>::to_vec)));
        }
        assert_eq!(
            got, want,
            "module parameters differ from the kernel's splitting"
        );
    }
});

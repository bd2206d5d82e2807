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

// The kernel's `next_arg()` oracle, shared with the stable regression tests
// (modules-manifest/tests/fuzz_regressions.rs).
#[path = "../../modules-manifest/tests/support/kernel_next_arg.rs"]
mod kernel_next_arg;

use kernel_next_arg::{expected_params, split};

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
        for (m, key, value) in
            expected_params(line.as_bytes(), &c.warnings, |m| ModuleName::new(m).ok())
        {
            want.entry(m).or_default().push((key, value));
        }
        assert_eq!(
            got, want,
            "module parameters differ from the kernel's splitting"
        );
    }
});

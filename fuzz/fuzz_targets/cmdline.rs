//! Arbitrary text as `/proc/cmdline`: `KernelCmdline::parse` never fails and
//! never panics, and every field it fills holds a usable value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modules_manifest::{KernelCmdline, ModuleName};

fuzz_target!(|line: &str| {
    let c = KernelCmdline::parse(line);

    for name in c.module_params.keys().chain(c.blacklist.iter()) {
        assert_eq!(ModuleName::new(name.as_str()).as_ref(), Ok(name));
    }
    for (name, params) in &c.module_params {
        assert!(!params.is_empty(), "{name}: empty parameter list kept");
    }
    if let Some(jobs) = c.jobs {
        let _ = jobs;
    }

    // A pure function of the text.
    assert_eq!(KernelCmdline::parse(line), c);

    // /proc/cmdline ends with a newline; surrounding blanks must not change
    // the meaning (unless an open quote swallows them, as the kernel does).
    if line.matches('"').count() % 2 == 0 {
        assert_eq!(KernelCmdline::parse(&format!(" {line}\n")), c);
    }
});

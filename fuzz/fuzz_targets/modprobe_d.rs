//! Arbitrary bytes as a `modprobe.d/*.conf` file the image builder reads:
//! `ModprobeConfig::parse_file` returns settings or refuses an
//! `install`/`remove` line, never panics, and what it keeps is usable:
//! every origin's line is within the file, options carry parameters,
//! softdeps have only one-word names, and a refusal names a line that
//! starts with its command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modules_manifest::modprobe_d::{ModprobeConfig, Setting};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1);
    let mut c = ModprobeConfig::default();
    match c.parse_file(&text, "f.conf") {
        Ok(()) => {}
        Err(e) => {
            assert!(e.command == "install" || e.command == "remove");
            assert!(e.origin.line >= 1 && e.origin.line <= lines);
            assert!(e.text.starts_with(&e.command));
            assert!(e.to_string().contains("no shell"));
        }
    }
    for (s, o) in &c.settings {
        assert!(o.line >= 1 && o.line <= lines, "{o} of {lines}");
        match s {
            Setting::Options { params, .. } => assert!(!params.trim().is_empty()),
            Setting::Softdep { pre, post, .. } => {
                for w in pre.iter().chain(post) {
                    // Words split as the parser (and kmod) splits them: on
                    // ASCII blanks; a vertical tab or U+0085 is part of a word.
                    assert!(!w.is_empty() && !w.contains(|c: char| c.is_ascii_whitespace()));
                }
            }
            Setting::Alias { pattern, .. } => {
                assert!(!pattern.is_empty() && !pattern.contains(|c: char| c.is_ascii_whitespace()))
            }
            Setting::Blacklist { .. } => {}
        }
    }
});

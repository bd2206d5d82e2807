//! Arbitrary argument vectors for the kernel's module helper (`modprobe
//! -q -- NAME` as the kernel runs it, or anything a person or an attacker
//! who can make the kernel ask passes): `helper::args::parse` never panics,
//! is a pure function of its input, and a name it accepts is a plain name:
//! 1–63 bytes of the allowed ASCII set, no `/`, not starting with `-` or
//! `.`, so it can never become a path. Whatever it accepts also survives
//! the socket's request line (`check_name` on the same text).
#![no_main]

use libfuzzer_sys::fuzz_target;

use kmodinit_init::helper::args::{check_name, is_helper, parse, MAX_REQUEST_BYTES};

fuzz_target!(|data: &[u8]| {
    // argv entries are C strings: split on NUL; non-UTF-8 bytes become
    // U+FFFD as `main` does with `to_string_lossy`.
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let got = parse(&args);
    assert_eq!(parse(&args), got, "a pure function of the arguments");
    if let Some(first) = args.first() {
        assert!(!is_helper(first, 1), "PID 1 is never the helper");
    }
    if let Ok(req) = got {
        let name = req.name.as_str();
        assert!(
            !name.is_empty() && name.len() <= MAX_REQUEST_BYTES,
            "{name:?}"
        );
        assert!(name.is_ascii(), "{name:?}");
        assert!(!name.contains('/'), "{name:?}");
        assert!(!name.starts_with('-') && !name.starts_with('.'), "{name:?}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-,.:()+@".contains(&b)),
            "{name:?}"
        );
        assert_eq!(check_name(name), Ok(name));
        // The name is one of the arguments, the last one.
        assert_eq!(args.last().map(String::as_str), Some(name));
        // Every argument before it is `-q`, `--quiet` or one `--`.
        let before = &args[..args.len() - 1];
        assert!(
            before.iter().filter(|a| *a == "--").count() <= 1,
            "{args:?}"
        );
        assert!(
            before
                .iter()
                .all(|a| a == "-q" || a == "--quiet" || a == "--"),
            "{args:?}"
        );
    }
});

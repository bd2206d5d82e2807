//! The helper's face: is this process the kernel's module helper, and what
//! did it ask for (the name's rules are the socket's, [`crate::wire::helper`]). Pure (fuzzed: `fuzz/fuzz_targets/helper_args.rs`).
//!
//! The kernel runs `/proc/sys/kernel/modprobe` as `PATH -q -- NAME`
//! (`call_modprobe` in `kernel/kmod.c`), `NAME` at most 63 bytes (it
//! refuses a longer request with `ENAMETOOLONG` before running anything).
//! A person may type `modprobe NAME`, `modprobe -q NAME` or `modprobe --
//! NAME`. Anything else is refused with modprobe's usage status.

use std::fmt;

pub use crate::wire::helper::{
    check_name, is_helper_path, NameError, FACE_NAME, MAX_REQUEST_BYTES,
};

/// True if the process was started as the module helper: it is not PID 1
/// (PID 1 is always the boot, whatever its name), and `argv[0]` is the
/// path the kernel runs (`/proc/PID/exe`, [`is_helper_path`]) or ends in
/// `modprobe` (a person's link to `/init`).
pub fn is_helper(argv0: &str, pid: i32) -> bool {
    pid != 1 && (argv0.rsplit('/').next() == Some(FACE_NAME) || is_helper_path(argv0))
}

/// One request: a module name or alias, validated ([`check_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: String,
    /// `-q`: no message for a module that is not found (the kernel always
    /// passes it).
    pub quiet: bool,
}

/// Why the arguments are refused. modprobe exits 1 for each (its usage
/// errors included), so there is one status; the message names the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// No name after the options.
    NoName,
    /// An option other than `-q`.
    Option(String),
    /// More than one name (modprobe's `-a` is not offered).
    ExtraArgument(String),
    BadName(NameError),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::NoName => f.write_str("missing module name"),
            UsageError::Option(o) => {
                write!(f, "unsupported option {:?} (only -q and -- are)", lossy(o))
            }
            UsageError::ExtraArgument(a) => write!(
                f,
                "unexpected argument {:?}: one module name per request",
                lossy(a)
            ),
            UsageError::BadName(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UsageError {}

/// A name's first characters, for messages about hostile input.
fn lossy(s: &str) -> String {
    s.chars().take(MAX_REQUEST_BYTES).collect()
}

/// Parses the arguments after `argv[0]`: `-q` (any number of times),
/// optionally `--`, then exactly one name.
pub fn parse(args: &[String]) -> Result<Request, UsageError> {
    let mut quiet = false;
    let mut rest = args;
    while let Some((first, tail)) = rest.split_first() {
        match first.as_str() {
            "-q" | "--quiet" => {
                quiet = true;
                rest = tail;
            }
            "--" => {
                rest = tail;
                break;
            }
            o if o.starts_with('-') => return Err(UsageError::Option(o.to_owned())),
            _ => break,
        }
    }
    let (name, extra) = rest.split_first().ok_or(UsageError::NoName)?;
    if let Some(a) = extra.first() {
        return Err(UsageError::ExtraArgument(a.clone()));
    }
    check_name(name).map_err(UsageError::BadName)?;
    Ok(Request {
        name: name.clone(),
        quiet,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_face_is_the_name_modprobe_and_never_pid_1() {
        assert!(is_helper("/run/kmodinit/modprobe", 345));
        assert!(is_helper("modprobe", 2));
        assert!(!is_helper("/run/kmodinit/modprobe", 1));
        assert!(!is_helper("/init", 345));
        assert!(!is_helper("/sbin/modprobe.real", 345));
        assert!(!is_helper("", 345));
        assert!(is_helper("/proc/123/exe", 345));
        assert!(!is_helper("/proc/123/exe", 1));
        assert!(!is_helper("/proc/self/exe", 345));
        assert!(!is_helper("/proc//exe", 345));
        assert!(!is_helper("/proc/12/exe/x", 345));
    }

    #[test]
    fn what_the_kernel_passes_and_what_a_person_types() {
        let r = parse(&args(&["-q", "--", "fs-vfat"])).unwrap();
        assert_eq!(
            r,
            Request {
                name: "fs-vfat".into(),
                quiet: true
            }
        );
        assert!(!parse(&args(&["vfat"])).unwrap().quiet);
        assert_eq!(parse(&args(&["-q", "vfat"])).unwrap().name, "vfat");
        assert_eq!(parse(&args(&["--", "vfat"])).unwrap().name, "vfat");
        for name in [
            "fs-vfat",
            "crypto-sha256",
            "crypto-sha256-all",
            "net-pf-10",
            "char-major-10-229",
            "binfmt-0000",
            "nls_cp437",
            "crypto-cbc(aes)",
            "crypto-authenc(hmac(sha256),cbc(aes))-all",
            "symbol:nf_conntrack_helper",
            "devname:fuse",
        ] {
            assert_eq!(parse(&args(&["-q", "--", name])).unwrap().name, name);
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        assert_eq!(parse(&args(&[])), Err(UsageError::NoName));
        assert_eq!(parse(&args(&["-q", "--"])), Err(UsageError::NoName));
        assert_eq!(
            parse(&args(&["-r", "vfat"])),
            Err(UsageError::Option("-r".into()))
        );
        assert_eq!(
            parse(&args(&["-q", "--", "vfat", "fat"])),
            Err(UsageError::ExtraArgument("fat".into()))
        );
        // After `--` a dash is no option, but a name cannot start with one.
        assert_eq!(
            parse(&args(&["--", "-q"])),
            Err(UsageError::BadName(NameError::BadStart('-')))
        );
        for (name, err) in [
            ("", NameError::Empty),
            ("../../tmp/x", NameError::BadChar('/')),
            ("/tmp/evil.ko", NameError::BadChar('/')),
            ("..", NameError::BadStart('.')),
            ("a b", NameError::BadChar(' ')),
            ("pci:v*", NameError::BadChar('*')),
            ("x\u{e9}", NameError::BadChar('\u{e9}')),
            ("a\nb", NameError::BadChar('\n')),
        ] {
            assert_eq!(
                parse(&args(&["-q", "--", name])),
                Err(UsageError::BadName(err)),
                "{name:?}"
            );
        }
        let long = "a".repeat(MAX_REQUEST_BYTES + 1);
        assert_eq!(
            check_name(&long),
            Err(NameError::TooLong(MAX_REQUEST_BYTES + 1))
        );
        assert!(check_name(&long[1..]).is_ok());
        let e = parse(&args(&["-q", "--", "a/b"])).unwrap_err().to_string();
        assert!(e.contains("'/'"), "{e}");
    }
}

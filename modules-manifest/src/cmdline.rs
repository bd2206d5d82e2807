//! The kernel command line (`/proc/cmdline`).
//!
//! Tokens are split the way the kernel's `next_arg()` splits them: whitespace
//! separates arguments except inside double quotes; a quote opening an
//! argument or its value is dropped together with the argument's final quote
//! (`a.b="x y"` is module `a`, parameter `b`, value `x y`). Everything after a
//! lone `--` belongs to init (`init_args`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::manifest::{OnFailure, MAX_JOBS};
use crate::name::ModuleName;

/// The longest command line [`KernelCmdline::parse`] reads, in bytes; the
/// rest is ignored with a warning. The kernel's own `COMMAND_LINE_SIZE` is
/// 2048 (x86) to 4096 bytes, so this only bounds hostile input.
pub const MAX_CMDLINE_BYTES: usize = 64 * 1024;

/// What kmodinit takes from the kernel command line. Parsing never fails:
/// a value it cannot use is ignored and explained in `warnings`, because a
/// typo on the command line must not stop the boot.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct KernelCmdline {
    pub root: Option<String>,
    pub rootfstype: Option<String>,
    pub rootflags: Option<String>,
    /// `ro` → Some(true), `rw` → Some(false); the last one wins.
    pub read_only: Option<bool>,
    pub rootwait: bool,
    /// `rootdelay=` in seconds.
    pub rootdelay_s: Option<u64>,
    pub init: Option<String>,
    pub quiet: bool,
    /// `name.param=value` entries per module, in command-line order, each
    /// as the `param=value` text to hand to the kernel (a value with spaces
    /// is re-quoted: `b="x y"`, which the kernel's module parameter parser
    /// reads back as one value).
    pub module_params: BTreeMap<ModuleName, Vec<String>>,
    /// `modprobe.blacklist=a,b` (may repeat).
    pub blacklist: BTreeSet<ModuleName>,
    /// `kmodinit.manifest=PATH`.
    pub manifest: Option<String>,
    /// `kmodinit.jobs=N`.
    pub jobs: Option<usize>,
    /// `kmodinit.on_failure=…`.
    pub on_failure: Option<OnFailure>,
    /// `kmodinit.debug`.
    pub debug: bool,
    /// Entries that were recognised but unusable, with the reason.
    pub warnings: Vec<String>,
    /// The arguments after `--`, for the real init, in order.
    pub init_args: Vec<String>,
}

/// One argument as the kernel splits it: `param` and, after `=`, `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Arg<'a> {
    param: &'a str,
    value: Option<&'a str>,
}

/// The kernel's `next_arg()`: returns the argument at the start of `s`
/// (leading whitespace already skipped) and the rest of the line.
fn next_arg(s: &str) -> (Arg<'_>, &str) {
    let (mut args, mut in_quote, quoted) = match s.strip_prefix('"') {
        Some(rest) => (rest, true, true),
        None => (s, false, false),
    };
    let mut equals = None;
    let mut end = args.len();
    for (i, c) in args.char_indices() {
        if c.is_whitespace() && !in_quote {
            end = i;
            break;
        }
        if equals.is_none() && c == '=' {
            equals = Some(i);
        }
        if c == '"' {
            in_quote = !in_quote;
        }
    }
    let rest = &args[end..];
    args = &args[..end];
    // The argument's closing quote goes if the argument or its value opened one.
    let arg = match equals {
        None => {
            let param = if quoted {
                args.strip_suffix('"').unwrap_or(args)
            } else {
                args
            };
            Arg { param, value: None }
        }
        Some(eq) => {
            let param = &args[..eq];
            let mut value = &args[eq + 1..];
            if let Some(v) = value.strip_prefix('"') {
                value = v.strip_suffix('"').unwrap_or(v);
            } else if quoted {
                value = value.strip_suffix('"').unwrap_or(value);
            }
            Arg {
                param,
                value: Some(value),
            }
        }
    };
    (arg, rest)
}

/// All arguments of a line, in order.
fn split_args(line: &str) -> Vec<Arg<'_>> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let (arg, tail) = next_arg(rest);
        out.push(arg);
        rest = tail.trim_start();
    }
    out
}

/// `param=value` as the kernel's module parameter parser reads it back.
fn module_param_text(param: &str, value: Option<&str>) -> String {
    match value {
        None => param.to_owned(),
        Some(v) if v.chars().any(char::is_whitespace) => format!("{param}=\"{v}\""),
        Some(v) => format!("{param}={v}"),
    }
}

fn parse_on_failure(v: &str) -> Option<OnFailure> {
    match v {
        "rescue" => Some(OnFailure::Rescue),
        "reboot" => Some(OnFailure::Reboot),
        "poweroff" => Some(OnFailure::Poweroff),
        "halt" => Some(OnFailure::Halt),
        _ => None,
    }
}

impl KernelCmdline {
    /// Parses a command line, with double quotes as the kernel handles them
    /// (`a.b="x y"`). Never panics; see `warnings`.
    pub fn parse(line: &str) -> KernelCmdline {
        let mut out = KernelCmdline::default();
        let line = if line.len() > MAX_CMDLINE_BYTES {
            let mut cut = MAX_CMDLINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            out.warnings.push(format!(
                "command line is {} bytes; only the first {MAX_CMDLINE_BYTES} were read",
                line.len()
            ));
            &line[..cut]
        } else {
            line
        };
        let args = split_args(line);
        let mut iter = args.into_iter();
        for arg in iter.by_ref() {
            if arg.param == "--" && arg.value.is_none() {
                break;
            }
            out.apply(arg);
        }
        out.init_args = iter
            .map(|a| match a.value {
                None => a.param.to_owned(),
                Some(v) => format!("{}={v}", a.param),
            })
            .collect();
        out
    }

    fn apply(&mut self, arg: Arg<'_>) {
        let Arg { param, value } = arg;
        let needs_value = |out: &mut KernelCmdline, v: Option<&str>| -> Option<String> {
            match v {
                Some(v) if !v.is_empty() => Some(v.to_owned()),
                _ => {
                    out.warnings
                        .push(format!("{param}: needs a value ({param}=…); ignored"));
                    None
                }
            }
        };
        match param {
            "root" => {
                if let Some(v) = needs_value(self, value) {
                    self.root = Some(v);
                }
            }
            "rootfstype" => {
                if let Some(v) = needs_value(self, value) {
                    self.rootfstype = Some(v);
                }
            }
            "rootflags" => {
                if let Some(v) = needs_value(self, value) {
                    self.rootflags = Some(v);
                }
            }
            "init" => {
                if let Some(v) = needs_value(self, value) {
                    self.init = Some(v);
                }
            }
            "rootdelay" => {
                if let Some(v) = needs_value(self, value) {
                    match v.parse::<u64>() {
                        Ok(s) => self.rootdelay_s = Some(s),
                        Err(_) => self.warnings.push(format!(
                            "rootdelay={v}: not a whole number of seconds; ignored"
                        )),
                    }
                }
            }
            "ro" if value.is_none() => self.read_only = Some(true),
            "rw" if value.is_none() => self.read_only = Some(false),
            "rootwait" if value.is_none() => self.rootwait = true,
            "quiet" if value.is_none() => self.quiet = true,
            _ => {
                if let Some((module, key)) = param.split_once('.') {
                    self.apply_dotted(module, key, value);
                }
                // Anything else is for the kernel or for init; not ours.
            }
        }
    }

    fn apply_dotted(&mut self, module: &str, key: &str, value: Option<&str>) {
        // The kernel treats '-' and '_' alike in parameter names.
        let key_norm = key.replace('-', "_");
        match (module, key_norm.as_str()) {
            ("modprobe", "blacklist") => {
                for raw in value.unwrap_or("").split(',').filter(|s| !s.is_empty()) {
                    match ModuleName::new(raw) {
                        Ok(n) => {
                            self.blacklist.insert(n);
                        }
                        Err(e) => self
                            .warnings
                            .push(format!("modprobe.blacklist: {e}; ignored")),
                    }
                }
            }
            ("kmodinit", "manifest") => match value {
                Some(v) if !v.is_empty() => self.manifest = Some(v.to_owned()),
                _ => self
                    .warnings
                    .push("kmodinit.manifest: needs a path; ignored".to_owned()),
            },
            ("kmodinit", "jobs") => match value.map(str::parse::<usize>) {
                Some(Ok(n)) if n <= MAX_JOBS => self.jobs = Some(n),
                Some(Ok(n)) => self
                    .warnings
                    .push(format!("kmodinit.jobs={n}: more than {MAX_JOBS}; ignored")),
                _ => self.warnings.push(format!(
                    "kmodinit.jobs={}: not a number; ignored",
                    value.unwrap_or("")
                )),
            },
            ("kmodinit", "on_failure") => match value.and_then(parse_on_failure) {
                Some(f) => self.on_failure = Some(f),
                None => self.warnings.push(format!(
                    "kmodinit.on_failure={}: expected rescue, reboot, poweroff or halt; ignored",
                    value.unwrap_or("")
                )),
            },
            ("kmodinit", "debug") => match value {
                None | Some("1") | Some("y") | Some("yes") | Some("on") | Some("true") => {
                    self.debug = true
                }
                Some("0") | Some("n") | Some("no") | Some("off") | Some("false") => {
                    self.debug = false
                }
                Some(v) => self
                    .warnings
                    .push(format!("kmodinit.debug={v}: expected 0 or 1; ignored")),
            },
            ("kmodinit", _) => self
                .warnings
                .push(format!("kmodinit.{key}: unknown kmodinit option; ignored")),
            _ => {
                if key.is_empty() {
                    self.warnings
                        .push(format!("{module}.: empty parameter name; ignored"));
                    return;
                }
                match ModuleName::new(module) {
                    Ok(name) => self
                        .module_params
                        .entry(name)
                        .or_default()
                        .push(module_param_text(key, value)),
                    Err(e) => self.warnings.push(format!("{module}.{key}: {e}; ignored")),
                }
            }
        }
    }

    /// The command-line parameters of one module, space-separated, in order
    /// (empty if none).
    pub fn params_for(&self, name: &ModuleName) -> String {
        self.module_params
            .get(name)
            .map(|v| v.join(" "))
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    #[test]
    fn standard_root_parameters() {
        let c = KernelCmdline::parse(
            "BOOT_IMAGE=/vmlinuz root=UUID=1234-abcd rootfstype=ext4 rootflags=noatime,discard \
             ro rootwait rootdelay=5 init=/lib/systemd/systemd quiet console=ttyS0,115200\n",
        );
        assert_eq!(c.root.as_deref(), Some("UUID=1234-abcd"));
        assert_eq!(c.rootfstype.as_deref(), Some("ext4"));
        assert_eq!(c.rootflags.as_deref(), Some("noatime,discard"));
        assert_eq!(c.read_only, Some(true));
        assert!(c.rootwait && c.quiet);
        assert_eq!(c.rootdelay_s, Some(5));
        assert_eq!(c.init.as_deref(), Some("/lib/systemd/systemd"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(c.module_params.is_empty());
    }

    #[test]
    fn last_of_ro_rw_wins() {
        assert_eq!(KernelCmdline::parse("ro rw").read_only, Some(false));
        assert_eq!(KernelCmdline::parse("rw ro").read_only, Some(true));
        assert_eq!(KernelCmdline::parse("").read_only, None);
    }

    #[test]
    fn module_params_are_normalised_and_quoted() {
        let c = KernelCmdline::parse(
            r#"virtio-blk.queue_depth=64 a.b="x y" "c.d=p q" e.flag ext4.dyndbg=+p virtio_blk.x=1 ip=1.2.3.4"#,
        );
        assert_eq!(
            c.module_params.get(&n("virtio_blk")).unwrap(),
            &vec!["queue_depth=64".to_owned(), "x=1".to_owned()]
        );
        assert_eq!(c.params_for(&n("a")), r#"b="x y""#);
        assert_eq!(c.params_for(&n("c")), r#"d="p q""#);
        assert_eq!(c.params_for(&n("e")), "flag");
        assert_eq!(c.params_for(&n("ext4")), "dyndbg=+p");
        assert_eq!(c.params_for(&n("nothing")), "");
        // "ip=1.2.3.4": the dot is in the value, not a module parameter.
        assert_eq!(c.module_params.len(), 5);
    }

    #[test]
    fn blacklist_and_kmodinit_namespace() {
        let c = KernelCmdline::parse(
            "modprobe.blacklist=floppy,pcspkr modprobe.blacklist=nouveau kmodinit.manifest=/etc/m.json \
             kmodinit.jobs=8 kmodinit.on_failure=poweroff kmodinit.debug",
        );
        assert_eq!(
            c.blacklist.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            vec!["floppy", "nouveau", "pcspkr"]
        );
        assert_eq!(c.manifest.as_deref(), Some("/etc/m.json"));
        assert_eq!(c.jobs, Some(8));
        assert_eq!(c.on_failure, Some(OnFailure::Poweroff));
        assert!(c.debug);
        assert!(c.module_params.is_empty(), "{:?}", c.module_params);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn bad_values_are_warnings_not_failures() {
        let c = KernelCmdline::parse(
            "kmodinit.jobs=abc kmodinit.jobs=99999 kmodinit.on_failure=explode kmodinit.colour=red \
             rootdelay=soon root modprobe.blacklist=ok,a/b kmodinit.debug=maybe",
        );
        assert_eq!(c.jobs, None);
        assert_eq!(c.on_failure, None);
        assert_eq!(c.rootdelay_s, None);
        assert_eq!(c.root, None);
        assert!(!c.debug);
        assert_eq!(c.blacklist.len(), 1);
        let w = c.warnings.join("\n");
        for needle in [
            "kmodinit.jobs=abc",
            "kmodinit.jobs=99999",
            "kmodinit.on_failure=explode",
            "kmodinit.colour",
            "rootdelay=soon",
            "root: needs a value",
            "a/b",
            "kmodinit.debug=maybe",
        ] {
            assert!(w.contains(needle), "missing {needle:?} in {w}");
        }
        assert_eq!(c.warnings.len(), 8, "{w}");
    }

    #[test]
    fn double_dash_starts_init_args() {
        let c = KernelCmdline::parse(r#"root=/dev/vda quiet -- single "x y" a.b=c"#);
        assert_eq!(c.root.as_deref(), Some("/dev/vda"));
        assert_eq!(c.init_args, vec!["single", "x y", "a.b=c"]);
        assert!(c.module_params.is_empty());
    }

    #[test]
    fn quotes_follow_the_kernel() {
        let args = split_args(r#"a="x y" "b c" d=e"f g"h i"#);
        assert_eq!(
            args,
            vec![
                Arg {
                    param: "a",
                    value: Some("x y")
                },
                Arg {
                    param: "b c",
                    value: None
                },
                Arg {
                    param: "d",
                    value: Some("e\"f g\"h")
                },
                Arg {
                    param: "i",
                    value: None
                },
            ]
        );
        // An unterminated quote runs to the end of the line.
        let args = split_args(r#"a="x y z"#);
        assert_eq!(
            args,
            vec![Arg {
                param: "a",
                value: Some("x y z")
            }]
        );
        assert!(split_args("   \t\n ").is_empty());
    }

    #[test]
    fn oversized_lines_are_cut_with_a_warning() {
        let long = format!("quiet {}", "x".repeat(MAX_CMDLINE_BYTES * 2));
        let c = KernelCmdline::parse(&long);
        assert!(c.quiet);
        assert!(c.warnings[0].contains("only the first"), "{:?}", c.warnings);
        let multibyte = "é".repeat(MAX_CMDLINE_BYTES);
        let c = KernelCmdline::parse(&multibyte);
        assert_eq!(c.warnings.len(), 1);
    }
}

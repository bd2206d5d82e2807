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
    /// as the `param=value` text to hand to the kernel, written so that the
    /// kernel's parameter parser reads back exactly the name and value it
    /// split from the command line: a value with blanks is re-quoted
    /// (`b="x y"`), a value with quotes keeps its command-line text. An
    /// entry whose name is empty or holds a blank or a quote, or that is not
    /// UTF-8 once split at 0xA0, is left out with a warning.
    pub module_params: BTreeMap<ModuleName, Vec<String>>,
    /// `modprobe.blacklist=a,b` and dracut's `rd.driver.blacklist=a,b`
    /// (both may repeat).
    pub blacklist: BTreeSet<ModuleName>,
    /// Modules to load as an optional chain of their own (`cmdline`), in
    /// command-line order, each once: `kmodinit.load=a,b`, and the names
    /// users of other tools type, dracut's `rd.driver.pre=a,b` and
    /// systemd's `modules_load=a,b` / `modules-load=a,b` (all may repeat).
    pub load: Vec<CmdlineName<ModuleName>>,
    /// dracut's `rd.driver.post=a,b` (may repeat): modules to load after
    /// all the others, as an optional chain of their own (`cmdline-post`)
    /// whose modules start once every module of the other chains has
    /// finished (loaded, failed or blocked), each once, in command-line
    /// order.
    pub load_post: Vec<CmdlineName<ModuleName>>,
    /// `kmodinit.skip=NAME,…` (may repeat): chain names or module names,
    /// as typed (a chain name is matched exactly, a module name after
    /// normalisation by the planner).
    pub skip: Vec<CmdlineName<String>>,
    /// `kmodinit.manifest=PATH`.
    pub manifest: Option<String>,
    /// `kmodinit.jobs=N`.
    pub jobs: Option<usize>,
    /// `kmodinit.on_failure=…`.
    pub on_failure: Option<OnFailure>,
    /// `kmodinit.deadline=MS`.
    pub deadline_ms: Option<u64>,
    /// `kmodinit.required_timeout=MS`.
    pub required_timeout_ms: Option<u64>,
    /// `kmodinit.helper_linger=MS`: how long the loader keeps serving the
    /// kernel's module requests after its load and its last request.
    pub helper_linger_ms: Option<u64>,
    /// `kmodinit.coldplug=0|1`: turns coldplug off or on whatever the
    /// manifest says.
    pub coldplug: Option<bool>,
    /// `kmodinit.measure=PCR` (measure into that PCR) or `off`:
    /// `Some(None)` turns measuring off whatever the manifest says.
    pub measure: Option<Option<u32>>,
    /// `kmodinit.lock_modules=0|1`.
    pub lock_modules: Option<bool>,
    /// `kmodinit.debug`.
    pub debug: bool,
    /// Device-mapper options, as typed ([`DmOptions`]).
    pub dm: DmOptions,
    /// Entries that were recognised but unusable, with the reason.
    pub warnings: Vec<String>,
    /// The arguments after `--`, for the real init, in order.
    pub init_args: Vec<String>,
}

/// The device-mapper options, as typed (the last of each wins); checked
/// by [`crate::dm`] when the boot uses them, so that a malformed table is
/// an error naming its field rather than a warning.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DmOptions {
    /// `dm-mod.create=` (also `dm_mod.create=`): kmodinit's to run, not a
    /// parameter of the `dm_mod` module.
    pub create: Option<String>,
    /// systemd's `roothash=`.
    pub roothash: Option<String>,
    /// `systemd.verity_root_data=`, `systemd.verity_root_hash=`,
    /// `systemd.verity_root_options=`.
    pub verity_root_data: Option<String>,
    pub verity_root_hash: Option<String>,
    pub verity_root_options: Option<String>,
}

/// A name from a list option, with the option's text for messages
/// (`kmodinit.skip=ext4`, `rd.driver.pre=virtio_blk`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CmdlineName<T> {
    pub name: T,
    /// `OPTION=NAME` as the user could have typed it alone.
    pub option: String,
}

/// The kernel's `isspace()` (lib/ctype.c, Latin-1 table): the ASCII blanks
/// including `\v` and `\f`, and the byte 0xA0, which the kernel splits at
/// even in the middle of a UTF-8 character.
fn kspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0)
}

fn skip_kspace(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| kspace(b)).count();
    &s[n..]
}

/// One argument as the kernel splits it: `param` and, after `=`, `value`;
/// `raw` is the argument's text on the line, from its first byte (a leading
/// `"` included) up to the blank that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Arg<'a> {
    param: &'a str,
    value: Option<&'a str>,
    raw: &'a str,
}

/// [`Arg`] as bytes, before the UTF-8 check (splitting at 0xA0 can cut a
/// character in two).
struct RawArg<'a> {
    param: &'a [u8],
    value: Option<&'a [u8]>,
    raw: &'a [u8],
}

impl<'a> RawArg<'a> {
    fn to_str(&self) -> Option<Arg<'a>> {
        Some(Arg {
            param: std::str::from_utf8(self.param).ok()?,
            value: match self.value {
                Some(v) => Some(std::str::from_utf8(v).ok()?),
                None => None,
            },
            raw: std::str::from_utf8(self.raw).ok()?,
        })
    }
}

/// The kernel's `next_arg()` (lib/cmdline.c), byte for byte: returns the
/// argument at the start of `s` (leading blanks already skipped) and the
/// rest of the line after the blanks that follow it.
fn next_arg(s: &[u8]) -> (RawArg<'_>, &[u8]) {
    let (args, mut in_quote, quoted) = match s.first() {
        Some(b'"') => (&s[1..], true, true),
        _ => (s, false, false),
    };
    // As in the kernel, 0 means "no '='" (an '=' at offset 0 does not count).
    let mut equals = 0;
    let mut i = 0;
    while i < args.len() {
        let b = args[i];
        if kspace(b) && !in_quote {
            break;
        }
        if equals == 0 && b == b'=' {
            equals = i;
        }
        if b == b'"' {
            in_quote = !in_quote;
        }
        i += 1;
    }
    let raw = &s[..i + usize::from(quoted)];
    let rest = skip_kspace(args.get(i + 1..).unwrap_or_default());
    // The argument's closing quote goes if the argument or its value opened one.
    let closing = quoted && i > 0 && args[i - 1] == b'"';
    let arg = if equals == 0 {
        let end = if closing { i - 1 } else { i };
        RawArg {
            param: &args[..end],
            value: None,
            raw,
        }
    } else {
        let mut start = equals + 1;
        let mut end = i;
        if args.get(start) == Some(&b'"') {
            start += 1;
            if args[i - 1] == b'"' {
                end = i - 1;
            }
        }
        if closing {
            end = end.min(i - 1);
        }
        RawArg {
            param: &args[..equals],
            value: Some(&args[start.min(end)..end]),
            raw,
        }
    };
    (arg, rest)
}

/// All arguments of a line, in order; an argument that is not UTF-8 (the
/// kernel cut a character at its 0xA0 byte) is `Err` with its raw bytes.
fn split_args(line: &str) -> Vec<Result<Arg<'_>, &[u8]>> {
    let mut out = Vec::new();
    let mut rest = skip_kspace(line.as_bytes());
    while !rest.is_empty() {
        let (arg, tail) = next_arg(rest);
        out.push(arg.to_str().ok_or(arg.raw));
        rest = tail;
    }
    out
}

/// The parameter names of a module parameter string (`a=1 b="x y" c`),
/// split as the kernel's module loader splits it (`parse_args` with
/// `next_arg`); a name that is not UTF-8 is left out.
pub fn split_param_names(params: &str) -> Vec<String> {
    split_args(params)
        .into_iter()
        .filter_map(|a| a.ok().map(|a| a.param.to_owned()))
        .filter(|p| !p.is_empty())
        .collect()
}

/// `key=value` for a module parameter, written so that the kernel's
/// `next_arg()` reads back exactly `key` and `value` from it. `raw_key` is
/// the argument's raw text from the key on (the `module.` prefix removed,
/// any leading quote kept). `key` has no blank and no quote (checked by the
/// caller).
fn module_param_text(key: &str, value: Option<&str>, raw_key: &str) -> String {
    match value {
        None => key.to_owned(),
        // A value with quotes inside cannot be re-quoted in general; the
        // raw text is what the kernel itself parsed, so it parses the same.
        Some(v) if v.contains('"') => raw_key.to_owned(),
        Some(v) if v.bytes().any(kspace) => format!("{key}=\"{v}\""),
        Some(v) => format!("{key}={v}"),
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
            match arg {
                Ok(arg) if arg.param == "--" && arg.value.is_none() => break,
                Ok(arg) => out.apply(arg),
                Err(raw) => out.warnings.push(format!(
                    "'{}': not UTF-8 once split the kernel's way (it splits at byte 0xA0, \
                     even inside a character); ignored",
                    String::from_utf8_lossy(raw)
                )),
            }
        }
        out.init_args = iter
            .map(|a| match a {
                Ok(Arg {
                    param, value: None, ..
                }) => param.to_owned(),
                Ok(Arg {
                    param,
                    value: Some(v),
                    ..
                }) => format!("{param}={v}"),
                Err(raw) => String::from_utf8_lossy(raw).into_owned(),
            })
            .collect();
        out
    }

    fn apply(&mut self, arg: Arg<'_>) {
        let Arg { param, value, raw } = arg;
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
            "roothash" => self.dm.roothash = needs_value(self, value),
            "ro" if value.is_none() => self.read_only = Some(true),
            "rw" if value.is_none() => self.read_only = Some(false),
            "rootwait" if value.is_none() => self.rootwait = true,
            "quiet" if value.is_none() => self.quiet = true,
            // systemd-modules-load's names (both spellings are documented).
            "modules_load" | "modules-load" => self.add_load(param, value),
            _ => {
                if let Some((module, key)) = param.split_once('.') {
                    self.apply_dotted(module, key, value, raw);
                }
                // Anything else is for the kernel or for init; not ours.
            }
        }
    }

    /// `raw` is the whole argument's text (see [`Arg`]).
    /// A millisecond count for `key`, or `None` with a warning.
    fn parse_ms(&mut self, key: &str, value: Option<&str>) -> Option<u64> {
        match value.map(str::parse::<u64>) {
            Some(Ok(ms)) => Some(ms),
            _ => {
                self.warnings.push(format!(
                    "{key}={}: expected milliseconds (a whole number); ignored",
                    value.unwrap_or("")
                ));
                None
            }
        }
    }

    fn apply_dotted(&mut self, module: &str, key: &str, value: Option<&str>, raw: &str) {
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
            ("rd", "driver.blacklist") => {
                for raw in value.unwrap_or("").split(',').filter(|s| !s.is_empty()) {
                    match ModuleName::new(raw) {
                        Ok(n) => {
                            self.blacklist.insert(n);
                        }
                        Err(e) => self
                            .warnings
                            .push(format!("rd.driver.blacklist: {e}; ignored")),
                    }
                }
            }
            ("dm-mod" | "dm_mod", "create") => self.dm.create = value.map(str::to_owned),
            ("systemd", "verity_root_data") => self.dm.verity_root_data = value.map(str::to_owned),
            ("systemd", "verity_root_hash") => self.dm.verity_root_hash = value.map(str::to_owned),
            ("systemd", "verity_root_options") => {
                self.dm.verity_root_options = value.map(str::to_owned)
            }
            ("rd", "driver.pre") => self.add_load("rd.driver.pre", value),
            ("rd", "driver.post") => self.add_load("rd.driver.post", value),
            ("kmodinit", "load") => self.add_load("kmodinit.load", value),
            ("kmodinit", "skip") => {
                let mut any = false;
                for raw in value.unwrap_or("").split(',').filter(|s| !s.is_empty()) {
                    any = true;
                    let option = format!("kmodinit.skip={raw}");
                    if !self.skip.iter().any(|s| s.name == raw) {
                        self.skip.push(CmdlineName {
                            name: raw.to_owned(),
                            option,
                        });
                    }
                }
                if !any {
                    self.warnings.push(
                        "kmodinit.skip: needs a chain or module name (kmodinit.skip=NAME,…); ignored"
                            .to_owned(),
                    );
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
            ("kmodinit", "deadline") => {
                self.deadline_ms = self
                    .parse_ms("kmodinit.deadline", value)
                    .or(self.deadline_ms)
            }
            ("kmodinit", "helper_linger") => {
                self.helper_linger_ms = self
                    .parse_ms("kmodinit.helper_linger", value)
                    .or(self.helper_linger_ms)
            }
            ("kmodinit", "required_timeout") => {
                self.required_timeout_ms = self
                    .parse_ms("kmodinit.required_timeout", value)
                    .or(self.required_timeout_ms)
            }
            ("kmodinit", "coldplug") => match value {
                Some("1") => self.coldplug = Some(true),
                Some("0") => self.coldplug = Some(false),
                other => self.warnings.push(format!(
                    "kmodinit.coldplug={}: expected 0 or 1; ignored",
                    other.unwrap_or("")
                )),
            },
            ("kmodinit", "measure") => match value.map(|v| (v, v.parse::<u32>())) {
                Some((_, Ok(n))) if n <= crate::manifest::MAX_PCR => self.measure = Some(Some(n)),
                Some(("off", _)) => self.measure = Some(None),
                other => self.warnings.push(format!(
                    "kmodinit.measure={}: expected a PCR (0 to {}) or off; ignored",
                    other.map_or("", |(v, _)| v),
                    crate::manifest::MAX_PCR
                )),
            },
            ("kmodinit", "lock_modules") => match value {
                Some("1") => self.lock_modules = Some(true),
                Some("0") => self.lock_modules = Some(false),
                other => self.warnings.push(format!(
                    "kmodinit.lock_modules={}: expected 0 or 1; ignored",
                    other.unwrap_or("")
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
                // A parameter name is a C identifier: a blank or a quote in
                // it (possible inside quotes) is a typo, and a leading quote
                // would change how the kernel splits the rebuilt text.
                if key.bytes().any(|b| b == b'"' || kspace(b)) {
                    self.warnings.push(format!(
                        "{module}.{key:?}: parameter name with a blank or a quote; ignored"
                    ));
                    return;
                }
                match ModuleName::new(module) {
                    Ok(name) => {
                        // `raw` is `module.key…` or `"module.key…`; the
                        // module name has no quote, blank or '=', so cutting
                        // it out leaves the kernel's split unchanged.
                        let cut = module.len() + 1;
                        let raw_key = match raw.strip_prefix('"') {
                            Some(r) => format!("\"{}", r.get(cut..).unwrap_or_default()),
                            None => raw.get(cut..).unwrap_or_default().to_owned(),
                        };
                        self.module_params
                            .entry(name)
                            .or_default()
                            .push(module_param_text(key, value, &raw_key));
                    }
                    Err(e) => self.warnings.push(format!("{module}.{key}: {e}; ignored")),
                }
            }
        }
    }

    /// `OPTION=a,b`: modules to load (`kmodinit.load` and the names other
    /// tools use for it; `rd.driver.post` into [`Self::load_post`]). A name
    /// that is not a module name is a warning.
    fn add_load(&mut self, option: &str, value: Option<&str>) {
        let mut any = false;
        for raw in value.unwrap_or("").split(',').filter(|s| !s.is_empty()) {
            any = true;
            match ModuleName::new(raw) {
                Ok(name) => {
                    let list = if option == "rd.driver.post" {
                        &mut self.load_post
                    } else {
                        &mut self.load
                    };
                    if !list.iter().any(|l| l.name == name) {
                        list.push(CmdlineName {
                            name,
                            option: format!("{option}={raw}"),
                        });
                    }
                }
                Err(e) => self.warnings.push(format!("{option}={raw}: {e}; ignored")),
            }
        }
        if !any {
            self.warnings.push(format!(
                "{option}: needs module names ({option}=a,b); ignored"
            ));
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
        let c = KernelCmdline::parse(
            "kmodinit.deadline=2500 kmodinit.required_timeout=30000 kmodinit.deadline=soon",
        );
        assert_eq!(c.deadline_ms, Some(2500));
        assert_eq!(
            KernelCmdline::parse("kmodinit.helper_linger=600000").helper_linger_ms,
            Some(600_000)
        );
        assert_eq!(c.required_timeout_ms, Some(30000));
        assert_eq!(
            c.warnings,
            ["kmodinit.deadline=soon: expected milliseconds (a whole number); ignored"]
        );
        let c = KernelCmdline::parse("kmodinit.coldplug=1 kmodinit.coldplug=maybe");
        assert_eq!(c.coldplug, Some(true));
        assert_eq!(
            c.warnings,
            ["kmodinit.coldplug=maybe: expected 0 or 1; ignored"]
        );
        assert_eq!(
            KernelCmdline::parse("kmodinit.coldplug=0").coldplug,
            Some(false)
        );
        assert_eq!(KernelCmdline::parse("quiet").coldplug, None);
    }

    #[test]
    fn load_skip_and_the_names_of_other_tools() {
        let c = KernelCmdline::parse(
            "kmodinit.load=kmi-a,kmi_b rd.driver.pre=virtio_blk modules_load=kmi_a,loop \
             modules-load=dm_mod kmodinit.skip=storage,ext4 kmodinit.skip=ext4 \
             rd.driver.blacklist=nouveau,floppy modprobe.blacklist=pcspkr",
        );
        let load: Vec<(&str, &str)> = c
            .load
            .iter()
            .map(|l| (l.name.as_str(), l.option.as_str()))
            .collect();
        assert_eq!(
            load,
            [
                ("kmi_a", "kmodinit.load=kmi-a"),
                ("kmi_b", "kmodinit.load=kmi_b"),
                ("virtio_blk", "rd.driver.pre=virtio_blk"),
                ("loop", "modules_load=loop"),
                ("dm_mod", "modules-load=dm_mod"),
            ]
        );
        let skip: Vec<(&str, &str)> = c
            .skip
            .iter()
            .map(|s| (s.name.as_str(), s.option.as_str()))
            .collect();
        assert_eq!(
            skip,
            [
                ("storage", "kmodinit.skip=storage"),
                ("ext4", "kmodinit.skip=ext4")
            ]
        );
        assert_eq!(
            c.blacklist.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            vec!["floppy", "nouveau", "pcspkr"]
        );
        // None of them is a module parameter (module "rd" has none).
        assert!(c.module_params.is_empty(), "{:?}", c.module_params);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn rd_driver_post_is_its_own_list() {
        let c = KernelCmdline::parse(
            "rd.driver.post=kmi-c,loop rd.driver.pre=virtio_blk rd.driver.post=loop,kmi_d \
             rd.driver.post= rd.driver.post=a/b",
        );
        let post: Vec<(&str, &str)> = c
            .load_post
            .iter()
            .map(|l| (l.name.as_str(), l.option.as_str()))
            .collect();
        assert_eq!(
            post,
            [
                ("kmi_c", "rd.driver.post=kmi-c"),
                ("loop", "rd.driver.post=loop"),
                ("kmi_d", "rd.driver.post=kmi_d"),
            ]
        );
        // Not in the early list, which keeps only rd.driver.pre=.
        let load: Vec<&str> = c.load.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(load, ["virtio_blk"]);
        assert_eq!(
            c.warnings,
            [
                "rd.driver.post: needs module names (rd.driver.post=a,b); ignored",
                "rd.driver.post=a/b: module name \"a/b\" contains '/': not a plain module name; ignored"
            ]
        );
        assert!(c.module_params.is_empty(), "{:?}", c.module_params);
    }

    #[test]
    fn unusable_load_and_skip_values_are_warnings() {
        let c = KernelCmdline::parse(
            "kmodinit.load= kmodinit.load=a/b kmodinit.skip modules-load=,, rd.driver.pre=ok",
        );
        assert_eq!(c.load.len(), 1);
        assert!(c.skip.is_empty());
        let w = c.warnings.join("\n");
        for needle in [
            "kmodinit.load: needs",
            "kmodinit.load=a/b",
            "kmodinit.skip: needs",
            "modules-load: needs",
        ] {
            assert!(w.contains(needle), "missing {needle:?} in {w}");
        }
        assert_eq!(c.warnings.len(), 4, "{w}");
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

    /// (param, value) pairs of a line, as the kernel splits it.
    fn pairs(line: &str) -> Vec<(&str, Option<&str>)> {
        split_args(line)
            .into_iter()
            .map(|a| a.map(|a| (a.param, a.value)).unwrap())
            .collect()
    }

    #[test]
    fn quotes_follow_the_kernel() {
        assert_eq!(
            pairs(r#"a="x y" "b c" d=e"f g"h i"#),
            vec![
                ("a", Some("x y")),
                ("b c", None),
                ("d", Some("e\"f g\"h")),
                ("i", None)
            ]
        );
        let raws: Vec<&str> = split_args(r#"a="x y" "b c" d=e"f g"h i"#)
            .into_iter()
            .map(|a| a.unwrap().raw)
            .collect();
        assert_eq!(raws, vec![r#"a="x y""#, r#""b c""#, r#"d=e"f g"h"#, "i"]);
        // An unterminated quote runs to the end of the line.
        assert_eq!(pairs(r#"a="x y z"#), vec![("a", Some("x y z"))]);
        assert!(split_args("   \t\n ").is_empty());
        // The kernel's blanks: \v, \f and the byte 0xA0 too, which cuts
        // U+00A0 (C2 A0) after its first byte.
        let args = split_args("a\u{b}b\u{c}c\u{a0}d");
        assert_eq!(args.len(), 4);
        assert_eq!(
            args[0],
            Ok(Arg {
                param: "a",
                value: None,
                raw: "a"
            })
        );
        assert_eq!(args[1].as_ref().map(|a| a.param), Ok("b"));
        assert_eq!(args[2], Err(&b"c\xc2"[..]));
        assert_eq!(args[3].as_ref().map(|a| a.param), Ok("d"));
    }

    /// Every module parameter string of `line`, split again the way the
    /// kernel splits what `init_module` gets, must give back one argument
    /// each: the (name, value) the kernel split from the command line.
    fn resplit(line: &str, module: &str) -> Vec<Vec<(String, Option<String>)>> {
        let c = KernelCmdline::parse(line);
        c.module_params
            .get(&n(module))
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        pairs(p)
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn one(k: &str, v: Option<&str>) -> Vec<(String, Option<String>)> {
        vec![(k.to_owned(), v.map(str::to_owned))]
    }

    #[test]
    fn a_value_with_a_quote_reaches_the_module_whole() {
        // The kernel reads `m.p=x"y z` as one argument: the quote opens and
        // runs to the end of the line.
        assert_eq!(pairs(r#"m.p=x"y z"#), vec![("m.p", Some("x\"y z"))]);
        let line = r#"console=ttyS0 m.p=x"y z"#;
        assert_eq!(resplit(line, "m"), vec![one("p", Some("x\"y z"))]);
        assert_eq!(KernelCmdline::parse(line).params_for(&n("m")), r#"p=x"y z"#);
        // Quoted whole, quote inside the value.
        let line = r#""m.p=a"b c"" ro"#;
        let want = pairs(line)[0].1.map(str::to_owned);
        assert_eq!(resplit(line, "m"), vec![one("p", want.as_deref())]);
        assert_eq!(KernelCmdline::parse(line).read_only, Some(true));
        // Value opening with a quote and holding another.
        let line = r#"m.p="a"b" m.q="" m.r=""#;
        let c = KernelCmdline::parse(line);
        let want: Vec<_> = pairs(line)
            .into_iter()
            .map(|(k, v)| one(k.strip_prefix("m.").unwrap(), v))
            .collect();
        assert_eq!(resplit(line, "m"), want, "{:?}", c.module_params);
    }

    #[test]
    fn a_parameter_name_with_a_quote_or_blank_is_dropped_with_a_warning() {
        for line in [r#"c.""#, r#""c.a b=1""#, r#"c.a"b"=1"#, "\"c.x\u{a0}y\""] {
            let c = KernelCmdline::parse(line);
            assert!(
                c.module_params.is_empty(),
                "{line:?}: {:?}",
                c.module_params
            );
            assert!(
                c.warnings.iter().any(|w| w.contains("c.")),
                "{line:?}: {:?}",
                c.warnings
            );
        }
        // A quote later in the value is fine, and the name stays clean.
        assert_eq!(resplit(r#"c.a=1"#, "c"), vec![one("a", Some("1"))]);
    }

    #[test]
    fn byte_0xa0_splits_like_the_kernel() {
        // U+07A0 is DE A0 in UTF-8: the kernel splits at the A0 byte.
        let line = "m.p=\u{7a0} m.q=1";
        let c = KernelCmdline::parse(line);
        assert_eq!(resplit(line, "m"), vec![one("q", Some("1"))]);
        assert!(
            c.warnings.iter().any(|w| w.contains("m.p=")),
            "{:?}",
            c.warnings
        );
        // Inside quotes the byte is part of the value, re-quoted for the
        // kernel so it stays one value.
        let line = "m.p=\"a\u{7a0}b\"";
        assert_eq!(resplit(line, "m"), vec![one("p", Some("a\u{7a0}b"))]);
        assert_eq!(
            KernelCmdline::parse(line).params_for(&n("m")),
            "p=\"a\u{7a0}b\""
        );
        // \v and \f are blanks too.
        let c = KernelCmdline::parse("m.p=1\u{b}m.q=2\u{c}quiet");
        assert_eq!(c.params_for(&n("m")), "p=1 q=2");
        assert!(c.quiet);
    }

    #[test]
    fn device_mapper_options_are_kmodinits_not_module_parameters() {
        let c = KernelCmdline::parse(
            "dm-mod.create=\"vroot,,,ro,0 8 verity 1 /dev/vda /dev/vdb\" roothash=ab12 \
             systemd.verity_root_data=UUID=x systemd.verity-root-hash=/dev/vdb \
             systemd.verity_root_options=ignore-zero-blocks systemd.unit=x dm_mod.major=3",
        );
        assert_eq!(
            c.dm.create.as_deref(),
            Some("vroot,,,ro,0 8 verity 1 /dev/vda /dev/vdb")
        );
        assert_eq!(c.dm.roothash.as_deref(), Some("ab12"));
        assert_eq!(c.dm.verity_root_data.as_deref(), Some("UUID=x"));
        assert_eq!(c.dm.verity_root_hash.as_deref(), Some("/dev/vdb"));
        assert_eq!(
            c.dm.verity_root_options.as_deref(),
            Some("ignore-zero-blocks")
        );
        assert_eq!(c.params_for(&n("dm_mod")), "major=3");
        assert_eq!(c.params_for(&n("systemd")), "unit=x");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
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

//! `modprobe.d` configuration (`/etc/modprobe.d/*.conf`, `/lib/modprobe.d`),
//! as dracut and initramfs-tools honour it, for the image builder.
//!
//! Read: `options MODULE PARAMS…`, `softdep MODULE pre: … post: …`,
//! `blacklist MODULE`, `alias PATTERN MODULE`; `#` comments and `\` line
//! continuations as kmod reads them. Refused: `install` and `remove` (a
//! shell command run instead of loading: `/init` has no shell and runs no
//! commands). Anything else (`softdep` without keyword, `weakdep`, unknown
//! commands, a bad name) is a warning naming file and line, as kmod logs
//! them and goes on.
//!
//! Every setting keeps its origin (`file:line`) so the plan's notes can say
//! where it came from. The parser is bounded by its input and never panics
//! (fuzz target `modprobe_d`).

use crate::name::ModuleName;

/// Where a setting was read: `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One setting of a modprobe.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `options MODULE PARAMS…`: the parameters as one string.
    Options { module: ModuleName, params: String },
    /// `softdep MODULE pre: A B post: C`.
    Softdep {
        module: ModuleName,
        pre: Vec<String>,
        post: Vec<String>,
    },
    /// `blacklist MODULE`: its aliases are not used.
    Blacklist { module: ModuleName },
    /// `alias PATTERN MODULE`.
    Alias { pattern: String, module: ModuleName },
}

/// A `modprobe.d` command kmodinit will not carry: an error naming the
/// file and line, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedCommand {
    pub origin: Origin,
    pub command: String,
    pub text: String,
}

impl std::fmt::Display for RefusedCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: `{}`: kmodinit cannot honour `{}` commands: they run a shell command \
             instead of loading the module, and /init has no shell and runs no commands. \
             Remove the line, or build with --no-modprobe-d (or --modprobe-d with other \
             directories), or express it in the manifest",
            self.origin, self.text, self.command
        )
    }
}

impl std::error::Error for RefusedCommand {}

/// The settings of one or more files, in reading order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModprobeConfig {
    pub settings: Vec<(Setting, Origin)>,
    /// Lines that were skipped, with file:line and why.
    pub warnings: Vec<String>,
}

/// The longest logical line read (after joining continuations), in bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

impl ModprobeConfig {
    /// Parses one file's text; `file` names it in origins and messages.
    /// `install`/`remove` lines are an error (the first one found).
    pub fn parse_file(&mut self, text: &str, file: &str) -> Result<(), RefusedCommand> {
        let mut logical = String::new();
        let mut start = 0;
        for (i, raw) in text.lines().enumerate() {
            if logical.is_empty() {
                start = i + 1;
            }
            // kmod joins a line ending in a backslash with the next one.
            let (part, cont) = match raw.strip_suffix('\\') {
                Some(p) => (p, true),
                None => (raw, false),
            };
            if logical.len() + part.len() <= MAX_LINE_BYTES {
                logical.push_str(part);
            } else if !cont {
                self.warnings.push(format!(
                    "{file}:{start}: longer than {MAX_LINE_BYTES} bytes; ignored"
                ));
                logical.clear();
                continue;
            }
            if cont {
                logical.push(' ');
                continue;
            }
            let line = std::mem::take(&mut logical);
            self.parse_line(&line, file, start)?;
        }
        if !logical.is_empty() {
            let line = std::mem::take(&mut logical);
            self.parse_line(&line, file, start)?;
        }
        Ok(())
    }

    fn parse_line(&mut self, line: &str, file: &str, n: usize) -> Result<(), RefusedCommand> {
        let origin = Origin {
            file: file.to_owned(),
            line: n,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(());
        }
        let mut words = trimmed.split_ascii_whitespace();
        let Some(command) = words.next() else {
            return Ok(());
        };
        let warn = |w: &mut Vec<String>, why: String| w.push(format!("{origin}: {why}; ignored"));
        let module = |w: &mut Vec<String>, word: Option<&str>| -> Option<ModuleName> {
            match word.map(ModuleName::new) {
                Some(Ok(m)) => Some(m),
                Some(Err(e)) => {
                    w.push(format!("{origin}: `{command}`: {e}; ignored"));
                    None
                }
                None => {
                    w.push(format!(
                        "{origin}: `{command}` without a module name; ignored"
                    ));
                    None
                }
            }
        };
        let setting = match command {
            "install" | "remove" => {
                return Err(RefusedCommand {
                    origin,
                    command: command.to_owned(),
                    text: trimmed.chars().take(200).collect(),
                })
            }
            "options" => {
                let Some(m) = module(&mut self.warnings, words.next()) else {
                    return Ok(());
                };
                let params: Vec<&str> = words.collect();
                if params.is_empty() {
                    return Ok(());
                }
                Setting::Options {
                    module: m,
                    params: params.join(" "),
                }
            }
            "blacklist" => {
                let Some(m) = module(&mut self.warnings, words.next()) else {
                    return Ok(());
                };
                Setting::Blacklist { module: m }
            }
            "alias" => {
                let (Some(pattern), target) = (words.next(), words.next()) else {
                    warn(&mut self.warnings, "`alias` without a pattern".into());
                    return Ok(());
                };
                // `alias X off`: kmod's way to disable an alias; nothing to carry.
                if target == Some("off") {
                    return Ok(());
                }
                let Some(m) = module(&mut self.warnings, target) else {
                    return Ok(());
                };
                Setting::Alias {
                    pattern: pattern.to_owned(),
                    module: m,
                }
            }
            "softdep" => {
                let Some(m) = module(&mut self.warnings, words.next()) else {
                    return Ok(());
                };
                let (mut pre, mut post, mut loose) = (Vec::new(), Vec::new(), Vec::new());
                let mut into = 0; // 0 none, 1 pre, 2 post
                for w in words {
                    match w {
                        "pre:" => into = 1,
                        "post:" => into = 2,
                        _ if into == 1 => pre.push(w.to_owned()),
                        _ if into == 2 => post.push(w.to_owned()),
                        _ => loose.push(w),
                    }
                }
                if !loose.is_empty() {
                    warn(
                        &mut self.warnings,
                        format!(
                            "softdep {m}: {} before any pre:/post: keyword",
                            loose.join(" ")
                        ),
                    );
                }
                Setting::Softdep {
                    module: m,
                    pre,
                    post,
                }
            }
            other => {
                let shown: String = other.chars().take(40).collect();
                warn(
                    &mut self.warnings,
                    format!("`{shown}`: not a command kmodinit carries (options, softdep, blacklist, alias)"),
                );
                return Ok(());
            }
        };
        self.settings.push((setting, origin));
        Ok(())
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
    fn reads_the_four_commands_with_their_origin() {
        let mut c = ModprobeConfig::default();
        c.parse_file(
            "# comment\n\noptions snd-hda-intel power_save=1 \\\n  model=auto\n\
             softdep ext4 pre: crc32c_generic post: p1 p2\nblacklist pcspkr\n\
             alias my-nic e1000e\n  options kmi_a tag=x\nweakdep a b\nfoo bar\noptions\n",
            "/etc/modprobe.d/x.conf",
        )
        .unwrap();
        let s: Vec<(Setting, String)> = c
            .settings
            .iter()
            .map(|(s, o)| (s.clone(), o.to_string()))
            .collect();
        assert_eq!(
            s,
            [
                (
                    Setting::Options {
                        module: n("snd_hda_intel"),
                        params: "power_save=1 model=auto".into()
                    },
                    "/etc/modprobe.d/x.conf:3".into()
                ),
                (
                    Setting::Softdep {
                        module: n("ext4"),
                        pre: vec!["crc32c_generic".into()],
                        post: vec!["p1".into(), "p2".into()]
                    },
                    "/etc/modprobe.d/x.conf:5".into()
                ),
                (
                    Setting::Blacklist {
                        module: n("pcspkr")
                    },
                    "/etc/modprobe.d/x.conf:6".into()
                ),
                (
                    Setting::Alias {
                        pattern: "my-nic".into(),
                        module: n("e1000e")
                    },
                    "/etc/modprobe.d/x.conf:7".into()
                ),
                (
                    Setting::Options {
                        module: n("kmi_a"),
                        params: "tag=x".into()
                    },
                    "/etc/modprobe.d/x.conf:8".into()
                ),
            ]
        );
        let w = c.warnings.join("\n");
        assert!(w.contains("x.conf:9: `weakdep`"), "{w}");
        assert!(w.contains("x.conf:10: `foo`"), "{w}");
        assert!(
            w.contains("x.conf:11: `options` without a module name"),
            "{w}"
        );
    }

    #[test]
    fn install_and_remove_are_refused_with_the_reason() {
        for line in [
            "install nouveau /bin/false",
            "remove foo /sbin/modprobe -r bar",
        ] {
            let mut c = ModprobeConfig::default();
            let e = c
                .parse_file(&format!("options a b=1\n{line}\n"), "f.conf")
                .unwrap_err();
            assert_eq!(e.origin.to_string(), "f.conf:2");
            let msg = e.to_string();
            assert!(msg.contains("no shell") && msg.contains(line), "{msg}");
        }
    }

    proptest::proptest! {
        /// The stable twin of the `modprobe_d` fuzz target.
        #[test]
        fn modprobe_d_text_never_panics(text in "[a-z_: \\\\#\n-]{0,200}") {
            let mut c = ModprobeConfig::default();
            let _ = c.parse_file(&text, "f.conf");
        }
    }

    #[test]
    fn odd_input_never_panics() {
        for text in [
            "\\",
            "options \\",
            "softdep",
            "alias",
            "alias x",
            "blacklist a/b",
            "options é x=1",
            "\u{0}\u{0}",
        ] {
            let mut c = ModprobeConfig::default();
            let _ = c.parse_file(text, "f");
        }
        let mut c = ModprobeConfig::default();
        c.parse_file(&"x\\\n".repeat(40_000), "big").unwrap();
    }
}

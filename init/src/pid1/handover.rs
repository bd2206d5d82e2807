//! Handing the machine over: which init to run, with which arguments and
//! environment. The `execve` itself is [`crate::sys::Sys::exec`].

use std::fmt;
use std::path::Path;

use crate::pid1::config::InitConfig;

/// Tried in order when neither `init=` nor a manifest init exists, as the
/// kernel does.
pub const FALLBACK_INITS: &[&str] = &["/sbin/init", "/etc/init", "/bin/init", "/bin/sh"];

/// The environment the real init starts with: nothing of ours leaks.
pub const CLEAN_ENV: &[&str] = &[
    "HOME=/",
    "TERM=linux",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
];

pub use crate::sys::InitCommand;

/// No program to hand over to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoInit {
    /// Every path looked at, in order.
    pub tried: Vec<String>,
    /// True when `init=` named it (no fallback then).
    pub explicit: bool,
}

impl fmt::Display for NoInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.explicit {
            write!(
                f,
                "init={} does not exist or is not executable",
                self.tried.join(", ")
            )
        } else {
            write!(f, "no executable init among {}", self.tried.join(", "))
        }
    }
}

impl std::error::Error for NoInit {}

/// Picks the init: `init=` alone if given; else the manifest's `init.path`,
/// then [`FALLBACK_INITS`]; the first for which `exists` says yes.
///
/// Arguments: the manifest's `init.args` (only when its own init is the one
/// chosen), then `kernel_args`, the arguments the kernel gave `/init`
/// (`single`, `emergency`, words after `--`). The manifest's come first
/// because they are the image's fixed invocation (e.g. `-c script` for a
/// shell) and the per-boot words are additions to it.
pub fn choose_init(
    cfg: &InitConfig,
    kernel_args: &[String],
    exists: impl Fn(&str) -> bool,
) -> Result<InitCommand, NoInit> {
    let mut tried = Vec::new();
    let candidates: Vec<&str> = match &cfg.explicit {
        Some(p) => vec![p.as_str()],
        None => std::iter::once(cfg.manifest_path.as_str())
            .chain(FALLBACK_INITS.iter().copied())
            .collect(),
    };
    for c in candidates {
        if tried.iter().any(|t| t == c) {
            continue;
        }
        tried.push(c.to_string());
        if !exists(c) {
            continue;
        }
        let mut argv = vec![c.to_string()];
        if cfg.explicit.is_none() && c == cfg.manifest_path {
            argv.extend(cfg.manifest_args.iter().cloned());
        }
        argv.extend(kernel_args.iter().cloned());
        return Ok(InitCommand {
            path: c.to_string(),
            argv,
            env: CLEAN_ENV.iter().map(|s| s.to_string()).collect(),
        });
    }
    Err(NoInit {
        tried,
        explicit: cfg.explicit.is_some(),
    })
}

/// Resolves `path` as seen from inside `root` (before chroot): symlinks,
/// absolute or relative, are followed within `root`. `None` for a loop or a
/// dangling link.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<std::path::PathBuf> {
    use std::path::{Component, PathBuf};
    // Symlink hops allowed, as the kernel's MAXSYMLINKS.
    const MAX_LINKS: usize = 40;
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut inside = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                inside.pop();
                continue;
            }
            _ => {}
        }
        let candidate = inside.join(&c);
        let full = root.join(&candidate);
        let meta = std::fs::symlink_metadata(&full).ok()?;
        if !meta.file_type().is_symlink() {
            inside = candidate;
            continue;
        }
        hops += 1;
        if hops > MAX_LINKS {
            return None;
        }
        let target = std::fs::read_link(&full).ok()?;
        if target.is_absolute() {
            inside = PathBuf::new();
        }
        let parts: Vec<String> = target
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        pending.extend(parts.into_iter().rev());
    }
    Some(root.join(inside))
}

/// True if `path`, resolved inside `root` (symlinks followed within it, as
/// they will be after chroot), is an executable regular file.
pub fn is_executable(root: &Path, path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    resolve_in_root(root, path)
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn cfg(explicit: Option<&str>) -> InitConfig {
        InitConfig {
            explicit: explicit.map(String::from),
            manifest_path: "/sbin/init".into(),
            manifest_args: vec!["--from-manifest".into()],
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn manifest_init_gets_both_argument_sets() {
        let c = choose_init(&cfg(None), &args(&["single"]), |_| true).unwrap();
        assert_eq!(c.path, "/sbin/init");
        assert_eq!(c.argv, args(&["/sbin/init", "--from-manifest", "single"]));
        assert!(c.env.contains(&"HOME=/".to_string()));
        assert!(c.env.contains(&"TERM=linux".to_string()));
        assert!(c.env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin:")));
        assert_eq!(c.env.len(), 3);
    }

    #[test]
    fn falls_back_in_kernel_order_without_manifest_args() {
        let c = choose_init(&cfg(None), &args(&["emergency"]), |p| p == "/bin/sh").unwrap();
        assert_eq!(c.argv, args(&["/bin/sh", "emergency"]));
        let e = choose_init(&cfg(None), &[], |_| false).unwrap_err();
        assert_eq!(
            e.tried,
            args(&["/sbin/init", "/etc/init", "/bin/init", "/bin/sh"])
        );
        assert!(!e.explicit);
    }

    #[test]
    fn explicit_init_has_no_fallback() {
        let c = choose_init(&cfg(Some("/bin/busybox")), &args(&["a"]), |_| true).unwrap();
        assert_eq!(c.argv, args(&["/bin/busybox", "a"]));
        let e = choose_init(&cfg(Some("/nope")), &[], |p| p != "/nope").unwrap_err();
        assert!(e.explicit);
        assert_eq!(
            e.to_string(),
            "init=/nope does not exist or is not executable"
        );
    }

    #[test]
    fn executable_check_on_a_temp_tree() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("kmodinit-exec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sbin")).unwrap();
        std::fs::write(d.join("sbin/init"), "#!/bin/sh\n").unwrap();
        assert!(!is_executable(&d, "/sbin/init"));
        std::fs::set_permissions(d.join("sbin/init"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert!(is_executable(&d, "/sbin/init"));
        // Links resolve inside the root, as they will after chroot.
        std::fs::create_dir_all(d.join("lib/systemd")).unwrap();
        std::fs::copy(d.join("sbin/init"), d.join("lib/systemd/systemd")).unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", d.join("sbin/abs")).unwrap();
        assert!(is_executable(&d, "/sbin/abs"));
        std::os::unix::fs::symlink("../lib/systemd/systemd", d.join("sbin/rel")).unwrap();
        assert!(is_executable(&d, "/sbin/rel"));
        std::os::unix::fs::symlink("/nonexistent/systemd", d.join("sbin/dangling")).unwrap();
        assert!(!is_executable(&d, "/sbin/dangling"));
        std::os::unix::fs::symlink("/sbin/loop", d.join("sbin/loop")).unwrap();
        assert!(!is_executable(&d, "/sbin/loop"));
        assert_eq!(
            resolve_in_root(&d, "/sbin/../sbin/abs"),
            Some(d.join("lib/systemd/systemd"))
        );
        assert!(!is_executable(&d, "/bin/sh"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

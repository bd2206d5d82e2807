//! The kernel the guest boots: the host's Debian `linux-image-amd64`.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::error::HarnessError;

/// A kernel image with its module tree, both from the host's package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKernel {
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// `/boot/vmlinuz-RELEASE`.
    pub vmlinuz: PathBuf,
    /// `/lib/modules/RELEASE`.
    pub modules_dir: PathBuf,
}

impl HostKernel {
    /// The newest `/boot/vmlinuz-*` that has a `/lib/modules/*/modules.dep`.
    /// `$KVER`, when set, picks that release instead (the Makefile's KVER).
    pub fn find() -> Result<HostKernel, HarnessError> {
        Self::find_in(Path::new("/boot"), Path::new("/lib/modules"))
    }

    /// [`HostKernel::find`] with the two directories passed in (for tests).
    pub fn find_in(boot: &Path, modules: &Path) -> Result<HostKernel, HarnessError> {
        let wanted = std::env::var("KVER").ok().filter(|v| !v.is_empty());
        let entries = std::fs::read_dir(boot)
            .map_err(|e| HarnessError::NoKernel(format!("cannot list {}: {e}", boot.display())))?;
        let mut found: Vec<HostKernel> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let release = name.strip_prefix("vmlinuz-")?.to_string();
                let modules_dir = modules.join(&release);
                modules_dir
                    .join("modules.dep")
                    .is_file()
                    .then(|| HostKernel {
                        vmlinuz: e.path(),
                        modules_dir,
                        release,
                    })
            })
            .filter(|k| wanted.as_deref().is_none_or(|w| w == k.release))
            .collect();
        found.sort_by(|a, b| version_cmp(&a.release, &b.release));
        found.pop().ok_or_else(|| {
            HarnessError::NoKernel(match wanted {
                Some(w) => format!(
                    "KVER={w} but no {}/vmlinuz-{w} with {}/{w}/modules.dep (run `make deps`)",
                    boot.display(),
                    modules.display()
                ),
                None => format!(
                    "no {}/vmlinuz-* with a matching {}/*/modules.dep (run `make deps`)",
                    boot.display(),
                    modules.display()
                ),
            })
        })
    }

    /// The kernel's build tree, for building the fixture modules.
    pub fn build_dir(&self) -> PathBuf {
        self.modules_dir.join("build")
    }
}

/// Compares release strings as version numbers: digit runs numerically.
fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digits = false;
        for c in s.chars() {
            if !cur.is_empty() && c.is_ascii_digit() != digits {
                out.push(finish(&cur, digits));
                cur.clear();
            }
            digits = c.is_ascii_digit();
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(finish(&cur, digits));
        }
        out
    }
    fn finish(s: &str, digits: bool) -> Result<u64, String> {
        if digits {
            s.parse::<u64>().map_err(|_| s.to_string())
        } else {
            Err(s.to_string())
        }
    }
    chunks(a).cmp(&chunks(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            version_cmp("6.1.0-56-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(version_cmp("6.10.0", "6.9.2"), Ordering::Greater);
        assert_eq!(version_cmp("6.1.0", "6.1.0"), Ordering::Equal);
    }

    #[test]
    fn finds_newest_kernel_with_modules() {
        let t = std::env::temp_dir().join(format!("kmq-kernel-{}", std::process::id()));
        let boot = t.join("boot");
        let mods = t.join("modules");
        std::fs::create_dir_all(&boot).unwrap();
        for r in ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.2.0-1-amd64"] {
            std::fs::write(boot.join(format!("vmlinuz-{r}")), b"").unwrap();
        }
        // 6.2 has no modules tree: it must not be chosen.
        for r in ["6.1.0-9-amd64", "6.1.0-56-amd64"] {
            std::fs::create_dir_all(mods.join(r)).unwrap();
            std::fs::write(mods.join(r).join("modules.dep"), b"").unwrap();
        }
        if std::env::var_os("KVER").is_none() {
            let k = HostKernel::find_in(&boot, &mods).unwrap();
            assert_eq!(k.release, "6.1.0-56-amd64");
            assert_eq!(k.vmlinuz, boot.join("vmlinuz-6.1.0-56-amd64"));
        }
        std::fs::remove_dir_all(&t).unwrap();
        let err = HostKernel::find_in(&t.join("none"), &mods).unwrap_err();
        assert!(err.to_string().contains("cannot list"), "{err}");
    }
}

//! Builds the baseline initramfs images: a busybox `/init` script plus the
//! same module files kmodinit's image carries, with a `modules.dep` made by
//! the host's `depmod -b` on a scratch copy (it never touches the host's
//! module tree).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cpio::Entry;
use crate::moddep::ModDep;

/// Where busybox-static puts its binary on Debian.
pub const BUSYBOX: &str = "/bin/busybox";

/// A baseline image under construction.
#[derive(Debug)]
pub struct Image {
    pub entries: Vec<Entry>,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: cannot run: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Image {
    /// The skeleton every baseline shares: `/dev/console`, the mount points,
    /// and busybox.
    pub fn busybox() -> Result<Image, String> {
        let busybox = std::fs::read(BUSYBOX).map_err(|e| format!("{BUSYBOX}: {e}"))?;
        let mut entries: Vec<Entry> = ["/bin", "/dev", "/proc", "/sys", "/run", "/newroot", "/etc"]
            .iter()
            .map(|p| Entry::Dir {
                path: p.to_string(),
            })
            .collect();
        entries.push(Entry::CharDev {
            path: "/dev/console".into(),
            major: 5,
            minor: 1,
        });
        entries.push(Entry::CharDev {
            path: "/dev/null".into(),
            major: 1,
            minor: 3,
        });
        entries.push(Entry::File {
            path: "/bin/busybox".into(),
            mode: 0o755,
            data: busybox,
        });
        entries.push(Entry::Symlink {
            path: "/bin/sh".into(),
            target: "busybox".into(),
        });
        Ok(Image { entries })
    }

    pub fn add_file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) {
        self.entries.push(Entry::File {
            path: path.into(),
            mode,
            data: data.into(),
        });
    }

    /// Adds `modules` (names, with their dependency closure already in the
    /// list) from `modules_root/lib/modules/release`, and a fresh depmod
    /// index for exactly those.
    pub fn add_modules(
        &mut self,
        modules_root: &Path,
        release: &str,
        index: &ModDep,
        modules: &[String],
        scratch: &Path,
    ) -> Result<(), String> {
        let src = modules_root.join("lib/modules").join(release);
        let stage = scratch.join("stage");
        let _ = std::fs::remove_dir_all(&stage);
        let dst = stage.join("lib/modules").join(release);
        std::fs::create_dir_all(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        for name in modules {
            let Some((rel, _)) = index.modules.get(name) else {
                return Err(format!(
                    "module {name}: not in {}/modules.dep",
                    src.display()
                ));
            };
            let to = dst.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::copy(src.join(rel), &to)
                .map_err(|e| format!("{}: {e}", src.join(rel).display()))?;
        }
        for f in [
            "modules.builtin",
            "modules.builtin.modinfo",
            "modules.order",
        ] {
            if src.join(f).exists() {
                std::fs::copy(src.join(f), dst.join(f)).map_err(|e| format!("{f}: {e}"))?;
            }
        }
        run(Command::new("depmod").arg("-b").arg(&stage).arg(release))?;
        self.add_tree(&stage, &stage)
    }

    fn add_tree(&mut self, base: &Path, dir: &Path) -> Result<(), String> {
        let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        children.sort();
        for p in children {
            let rel = format!(
                "/{}",
                p.strip_prefix(base).map_err(|e| e.to_string())?.display()
            );
            if p.is_dir() {
                self.entries.push(Entry::Dir { path: rel });
                self.add_tree(base, &p)?;
            } else {
                let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                self.add_file(&rel, 0o644, data);
            }
        }
        Ok(())
    }

    /// Writes the image; `compress` is `none` or `zstd` (what Debian uses).
    pub fn write(&self, out: &Path, compress: &str) -> Result<u64, String> {
        let mut parents = std::collections::BTreeSet::new();
        let mut entries = Vec::new();
        // newc wants parents before children: add any missing directories.
        for e in &self.entries {
            let path = match e {
                Entry::Dir { path }
                | Entry::File { path, .. }
                | Entry::Symlink { path, .. }
                | Entry::CharDev { path, .. } => path.clone(),
            };
            let mut acc = String::new();
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            for part in &parts[..parts.len().saturating_sub(1)] {
                acc = format!("{acc}/{part}");
                if parents.insert(acc.clone()) {
                    entries.push(Entry::Dir { path: acc.clone() });
                }
            }
            if matches!(e, Entry::Dir { .. }) {
                if parents.insert(path.clone()) {
                    entries.push(e.clone());
                }
            } else {
                entries.push(e.clone());
            }
        }
        let mut raw = Vec::new();
        crate::cpio::write(&mut raw, &entries).map_err(|e| e.to_string())?;
        let tmp = out.with_extension("cpio");
        std::fs::write(&tmp, &raw).map_err(|e| format!("{}: {e}", tmp.display()))?;
        match compress {
            "none" => std::fs::rename(&tmp, out).map_err(|e| e.to_string())?,
            "zstd" => {
                run(Command::new("zstd")
                    .args(["-q", "-f", "-19", "-T0", "-o"])
                    .arg(out)
                    .arg(&tmp))?;
                let _ = std::fs::remove_file(&tmp);
            }
            other => return Err(format!("unknown compression {other}")),
        }
        std::fs::metadata(out)
            .map(|m| m.len())
            .map_err(|e| format!("{}: {e}", out.display()))
    }
}

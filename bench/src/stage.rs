//! Builds the baseline initramfs images: a busybox `/init` script plus the
//! same module files kmodinit's image carries, with a `modules.dep` made by
//! the host's `depmod -b` on a scratch copy (it never touches the host's
//! module tree).

use std::path::Path;
use std::process::Command;

use kmodinit_qemu::cpio::Cpio;

/// Where busybox-static puts its binary on Debian.
pub const BUSYBOX: &str = "/bin/busybox";

/// A baseline image under construction.
#[derive(Debug, Clone)]
pub struct Image {
    pub cpio: Cpio,
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
        Image::busybox_from(Path::new(BUSYBOX))
    }

    /// [`Image::busybox`] with another busybox (another architecture's).
    pub fn busybox_from(path: &Path) -> Result<Image, String> {
        let busybox = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut cpio = Cpio::new();
        for dir in ["bin", "dev", "proc", "sys", "run", "newroot", "etc"] {
            cpio.dir(dir);
        }
        cpio.char_dev("dev/console", 5, 1, 0o600)
            .char_dev("dev/null", 1, 3, 0o666)
            .file("bin/busybox", busybox, 0o755)
            .symlink("bin/sh", "busybox");
        Ok(Image { cpio })
    }

    pub fn add_file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) {
        self.cpio.file(path, data, mode);
    }

    /// Adds the module `files` (relative to `modules_root/lib/modules/release`,
    /// their dependency closure already in the list), and a fresh depmod
    /// index for exactly those.
    pub fn add_modules(
        &mut self,
        modules_root: &Path,
        release: &str,
        files: &[&str],
        scratch: &Path,
    ) -> Result<(), String> {
        let src = modules_root.join("lib/modules").join(release);
        let stage = scratch.join("stage");
        let _ = std::fs::remove_dir_all(&stage);
        let dst = stage.join("lib/modules").join(release);
        std::fs::create_dir_all(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        for rel in files {
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
        self.cpio
            .host_tree(&stage, "/")
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Writes the image; `compress` is `none` or `zstd` (what Debian uses).
    pub fn write(&self, out: &Path, compress: &str) -> Result<u64, String> {
        let raw = self.cpio.to_bytes().map_err(|e| e.to_string())?;
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

//! The kernel the guest boots: the host's Debian `linux-image-amd64`, or a
//! kernel package extracted into a directory (`make bpo-kernel`).

use std::path::{Path, PathBuf};

use crate::error::HarnessError;

/// Where `make bpo-kernel` (run by `make deps`) extracts bookworm-backports'
/// cloud kernel, relative to the workspace root: `boot/vmlinuz-RELEASE` and
/// `lib/modules/RELEASE` with `modules.dep`. Its modules are `.ko.xz` and it
/// decompresses them itself (`CONFIG_MODULE_DECOMPRESS`).
pub const BPO_KERNEL_ROOT: &str = "build/bpo-kernel/root";

/// A kernel image with its module tree, from the host's package or from a
/// package extracted into a directory.
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
        Self::find_release(boot, modules, wanted)
    }

    /// The newest kernel of a package extracted under `root` (as `dpkg-deb
    /// -x` leaves it, indexed with `depmod -b ROOT RELEASE`):
    /// `root/boot/vmlinuz-RELEASE` with `root/lib/modules/RELEASE/modules.dep`.
    /// `$KVER` is not consulted: it names the host's kernel.
    pub fn in_root(root: &Path) -> Result<HostKernel, HarnessError> {
        Self::find_release(&root.join("boot"), &root.join("lib/modules"), None)
    }

    /// A kernel given by its image and its module tree
    /// (`…/lib/modules/RELEASE`, holding `modules.dep`); the release is the
    /// tree's directory name.
    pub fn from_paths(vmlinuz: &Path, modules_dir: &Path) -> Result<HostKernel, HarnessError> {
        if !vmlinuz.is_file() {
            return Err(HarnessError::NoKernel(format!(
                "no kernel image {}",
                vmlinuz.display()
            )));
        }
        if !modules_dir.join("modules.dep").is_file() {
            return Err(HarnessError::NoKernel(format!(
                "no {}/modules.dep (run `depmod -b ROOT RELEASE`)",
                modules_dir.display()
            )));
        }
        let release = modules_dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                HarnessError::NoKernel(format!(
                    "{} does not end in a release name",
                    modules_dir.display()
                ))
            })?
            .to_string();
        Ok(HostKernel {
            release,
            vmlinuz: vmlinuz.to_path_buf(),
            modules_dir: modules_dir.to_path_buf(),
        })
    }

    /// The root the module tree hangs from (`modules_dir` without
    /// `lib/modules/RELEASE`): `--modules-root` of `kmodinit-mkimage`, `-b` of
    /// depmod. `None` when `modules_dir` is not laid out that way.
    pub fn modules_root(&self) -> Option<&Path> {
        let lib_modules = self.modules_dir.parent()?;
        let lib = lib_modules.parent()?;
        (lib_modules.file_name()? == "modules" && lib.file_name()? == "lib")
            .then(|| lib.parent())
            .flatten()
    }

    fn find_release(
        boot: &Path,
        modules: &Path,
        wanted: Option<String>,
    ) -> Result<HostKernel, HarnessError> {
        let release =
            modules_manifest::release::newest_installed(modules, Some(boot), wanted.as_deref())
                .map_err(|e| {
                    HarnessError::NoKernel(format!("cannot list {}: {e}", boot.display()))
                })?;
        let release = release.ok_or_else(|| {
            HarnessError::NoKernel(match &wanted {
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
        })?;
        Ok(HostKernel {
            vmlinuz: boot.join(format!("vmlinuz-{release}")),
            modules_dir: modules.join(&release),
            release,
        })
    }

    /// The kernel's build tree, for building the fixture modules.
    pub fn build_dir(&self) -> PathBuf {
        self.modules_dir.join("build")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

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

    #[test]
    fn finds_an_extracted_package_tree() {
        let root = std::env::temp_dir().join(format!("kmq-kernel-root-{}", std::process::id()));
        let rel = "6.12.95+deb12-cloud-amd64";
        let mods = root.join("lib/modules").join(rel);
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::create_dir_all(&mods).unwrap();
        std::fs::write(root.join("boot").join(format!("vmlinuz-{rel}")), b"").unwrap();
        std::fs::write(root.join("boot/vmlinuz-7.0.0-unindexed"), b"").unwrap();
        std::fs::write(mods.join("modules.dep"), b"").unwrap();

        // $KVER names the host's kernel and must not hide this one.
        let k = HostKernel::in_root(&root).unwrap();
        assert_eq!(k.release, rel);
        assert_eq!(k.modules_dir, mods);
        assert_eq!(k.modules_root(), Some(root.as_path()));
        let same = HostKernel::from_paths(&k.vmlinuz, &mods).unwrap();
        assert_eq!(same, k);

        let err = HostKernel::from_paths(&root.join("boot/vmlinuz-x"), &mods).unwrap_err();
        assert!(err.to_string().contains("vmlinuz-x"), "{err}");
        let err = HostKernel::from_paths(&k.vmlinuz, &root.join("lib")).unwrap_err();
        assert!(err.to_string().contains("modules.dep"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
        let err = HostKernel::in_root(&root).unwrap_err();
        assert!(err.to_string().contains("cannot list"), "{err}");
    }
}

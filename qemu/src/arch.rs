//! The guest's architecture: which QEMU, which machine, which serial
//! console, and where `make deps` puts that architecture's kernel and
//! busybox when it is not the building machine's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::HarnessError;
use crate::kernel::HostKernel;

/// An architecture the harness boots. The default is the building
/// machine's own (x86-64), whose kernel and busybox come from the host's
/// packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    #[default]
    X86_64,
    /// QEMU's `virt` board with a Cortex-A72: Debian's arm64 kernel boots
    /// it to `/init` in about 1.5 s under TCG, where `-cpu max` (pointer
    /// authentication emulated in full) takes 8–10 s.
    Arm64,
}

impl Arch {
    /// The name `make ARCH=` and Debian use for it (`x86_64`, `arm64`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The QEMU system emulator for this architecture.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    /// Machine arguments before any `-cpu` the caller sets (x86-64: QEMU's
    /// default PC).
    pub fn machine_args(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[],
            Arch::Arm64 => &["-M", "virt"],
        }
    }

    /// The `-cpu` used when the caller sets none (`None`: QEMU's default).
    pub fn default_cpu(self) -> Option<&'static str> {
        match self {
            Arch::X86_64 => None,
            Arch::Arm64 => Some("cortex-a72"),
        }
    }

    /// The kernel's name of the first serial port, for `console=`.
    pub fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        }
    }

    /// The ELF machine of this architecture's binaries, as `file` prints it.
    pub fn elf_machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64",
            Arch::Arm64 => "ARM aarch64",
        }
    }

    /// What `make -C KERNEL/build` needs to build external modules for this
    /// architecture on the x86-64 build machine (Debian's cross compiler).
    pub fn kbuild_args(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[],
            Arch::Arm64 => &["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"],
        }
    }

    /// Where `/init` of this architecture is built, relative to the
    /// workspace: `build` for x86-64, `build/arm64` for arm64 (`make init
    /// ARCH=arm64`).
    pub fn build_dir(self) -> &'static str {
        match self {
            Arch::X86_64 => "build",
            Arch::Arm64 => "build/arm64",
        }
    }

    /// Where `make arm64-kernel` extracts a foreign architecture's kernel
    /// and busybox (`boot/`, `lib/modules/`, `bin/busybox`), relative to the
    /// workspace; `None` for the host's own.
    pub fn extracted_root(self) -> Option<&'static str> {
        match self {
            Arch::X86_64 => None,
            Arch::Arm64 => Some("build/arm64/root"),
        }
    }

    /// This architecture's kernel: the host's (see [`HostKernel::find`]) or
    /// the one extracted under `workspace`'s [`Arch::extracted_root`].
    pub fn kernel(self, workspace: &Path) -> Result<HostKernel, HarnessError> {
        match self.extracted_root() {
            None => HostKernel::find(),
            Some(root) => HostKernel::in_root(&workspace.join(root)).map_err(|e| {
                HarnessError::NoKernel(format!("{e}; `make deps` extracts the {self} kernel"))
            }),
        }
    }

    /// The static busybox of this architecture (the real init's shell).
    pub fn busybox(self, workspace: &Path) -> PathBuf {
        match self.extracted_root() {
            None => PathBuf::from(crate::rootfs::HOST_BUSYBOX),
            Some(root) => workspace.join(root).join("bin/busybox"),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = HarnessError;

    /// `x86_64` (or `amd64`, or empty: the default) and `arm64` (or
    /// `aarch64`).
    fn from_str(s: &str) -> Result<Arch, HarnessError> {
        match s {
            "" | "x86_64" | "amd64" => Ok(Arch::X86_64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(HarnessError::Invalid(format!(
                "architecture {other:?}: expected x86_64 or arm64"
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_ones_are_refused() {
        for a in [Arch::X86_64, Arch::Arm64] {
            assert_eq!(a.name().parse::<Arch>().unwrap(), a);
        }
        assert_eq!("aarch64".parse::<Arch>().unwrap(), Arch::Arm64);
        assert_eq!("".parse::<Arch>().unwrap(), Arch::X86_64);
        let err = "riscv64".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("\"riscv64\""), "{err}");
    }

    #[test]
    fn arm64_kernel_and_busybox_live_under_build() {
        let ws = Path::new("/ws");
        assert_eq!(
            Arch::Arm64.busybox(ws),
            PathBuf::from("/ws/build/arm64/root/bin/busybox")
        );
        assert_eq!(
            Arch::X86_64.busybox(ws),
            PathBuf::from(crate::rootfs::HOST_BUSYBOX)
        );
        let err = Arch::Arm64
            .kernel(Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("make deps"), "{err}");
        assert!(err.contains("/nonexistent/build/arm64/root"), "{err}");
    }
}

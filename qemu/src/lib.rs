//! The QEMU harness of kmodinit: find the host's Debian kernel, build root
//! disks with a tiny real init, boot an image under QEMU (TCG, never KVM),
//! capture the serial console and read what the guest printed.
//!
//! Used by the end-to-end tests (`tests/`), the benchmarks and `make demo`.
//! Nothing here touches the host's modules or mounts: disks are image files
//! built by `mkfs.ext4 -d` and `sgdisk`, without root privileges.

pub mod arch;
pub mod console;
pub mod cpio;
pub mod disk;
mod error;
pub mod kernel;
pub mod rootfs;
pub mod tpm;
pub mod vm;

pub use arch::Arch;
pub use console::{Console, RunInit};
pub use disk::{Ext4Image, F2fsImage, GptDisk};
pub use error::run as run_command;
pub use error::HarnessError;
pub use kernel::HostKernel;
pub use rootfs::RealInitRoot;
pub use tpm::SwTpm;
pub use vm::{scratch_dir, Boot, End, Vm, CPU_WITHOUT_CX16};

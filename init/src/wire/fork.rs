//! What PID 1 hands the loader child at the fork: the inputs it has read
//! so far, and the descriptors the child inherits.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use modules_manifest::KernelCmdline;

/// What the child needs from PID 1 at the fork: the command line it has
/// read and the manifest's path (the manifest itself, the width of the
/// pool and the deadline come with the go, [`super::go`]).
#[derive(Debug, Clone, Copy)]
pub struct LoadInput<'a> {
    /// The manifest PID 1 reads and validates meanwhile; the child reads
    /// it again after the go.
    pub manifest_path: &'a Path,
    pub cmdline: &'a KernelCmdline,
    /// `/proc` (the loaded modules, the kernel release).
    pub proc_dir: &'a Path,
    /// `/` of the initramfs (holds `lib/modules`).
    pub root: &'a Path,
    /// `/sys` (coldplug walks its `devices`).
    pub sys_dir: &'a Path,
    /// The kernel's module requests, served by the loader while it lives
    /// (`None`: the helper is not installed).
    pub helper: Option<HelperInput<'a>>,
}

/// What the loader needs to serve the kernel's module requests.
#[derive(Debug, Clone, Copy)]
pub struct HelperInput<'a> {
    /// The request socket PID 1 bound (inherited across the fork).
    pub listener: &'a UnixListener,
    /// The kernel's own `/proc/sys/kernel/modprobe`, to put back.
    pub kernel_value: &'a str,
    /// `/run/kmodinit`.
    pub run_dir: &'a Path,
    /// How long to go on serving after the load and the last request.
    pub linger: Duration,
}

/// The child's two pipes: its events to PID 1, PID 1's go to it.
#[derive(Debug)]
pub struct ChildPipes {
    pub events: OwnedFd,
    pub go: OwnedFd,
}

/// The loader child's entry point, run in the forked child; returns its
/// exit status. `main.rs` hands the loader's to PID 1, so PID 1's side
/// never names the loader's.
pub type LoaderEntry = fn(LoadInput<'_>, ChildPipes) -> i32;

//! kmodinit's `/init`: the one program that runs at boot, as three
//! processes that share leaves and never import each other.
//!
//! - [`pid1`]: PID 1, the single-threaded supervisor. It mounts, reads the
//!   command line and the manifest, forks the loader child, supervises it,
//!   finds and mounts the root, switches to it and execs the real init, and
//!   carries out `on_failure`.
//! - [`loader`]: the loader child. It reads the module index, plans, loads
//!   on its pool (coldplug and the kernel's module requests included) and
//!   streams events to PID 1.
//! - [`helper`]: the kernel's module helper (`modprobe -q -- NAME`): it asks
//!   the loader over a socket, or loads from the image itself.
//!
//! The leaves they share: [`wire`] (what crosses between the processes),
//! [`sys`] and [`kernel`] (the syscall boundary, with recording fakes),
//! [`inputs`] (reading the manifest and finding the module tree),
//! [`report`], [`kmsg`], [`clock`], [`uevent`], [`decompress`]. `main.rs`
//! picks the process by how it was started and wires them together (it is
//! the only place that names both PID 1's side and the loader's); the
//! module graph has no cycle (`tests/layout.rs`, run by `make lint`).

pub mod clock;
pub mod decompress;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod helper;
pub mod inputs;
pub mod kernel;
pub mod kmsg;
pub mod loader;
pub mod pid1;
pub use kmodinit_report as report;
pub mod sys;
pub mod uevent;
pub mod wire;

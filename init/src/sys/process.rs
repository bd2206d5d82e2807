#![allow(unsafe_code)]
//! Processes: the fork of the loader child and of the reporter, and the
//! immediate exit that ends a forked child or a panicking loader. The only
//! `unsafe` of process handling is here; waiting for children and polling
//! pipes go through nix's safe calls where they are used.

use std::io;

use nix::unistd::{ForkResult, Pid};

/// Forks. In the child, runs `child` and ends the process with its status
/// ([`exit_now`]), so the child never returns into the caller's stack;
/// the parent gets the child's pid.
///
/// Call it only while the calling process has one thread (PID 1 never
/// starts one): the child's copy of the address space then holds no lock
/// another thread owned.
pub fn fork(child: impl FnOnce() -> i32) -> io::Result<Pid> {
    // SAFETY: the caller is single-threaded (documented above; PID 1 and
    // the reporter never start a thread), so the child inherits no lock
    // held by another thread; it runs ordinary Rust and ends in `_exit`.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => exit_now(child()),
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Ends this process at once with `status`: no atexit handlers, no
/// flushing of buffers a forked child shares with its parent, no unwinding
/// (what `panic = "abort"` would do after a panic hook, with a status of
/// our choosing).
pub fn exit_now(status: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(status) }
}

/// The stack of every thread the loader child starts (the pool's workers,
/// the load, coldplug, measuring, the helper server and its requests):
/// what they run needs a few KiB, and a mapping smaller than a huge page
/// can never be backed by one. Rust's default is 2 MiB, and a 2 MiB stack
/// mapping that happens to hold an aligned 2 MiB range gets a transparent
/// huge page on its first touch (Debian's kernels: THP `always`), which
/// adds 2 MiB to the process's resident memory for a few KiB of stack.
pub const THREAD_STACK_BYTES: usize = 256 * 1024;

/// A builder for a thread named `name` with a [`THREAD_STACK_BYTES`]
/// stack.
pub fn thread(name: &str) -> std::thread::Builder {
    std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(THREAD_STACK_BYTES)
}

/// Keeps transparent huge pages out of this process's memory (and of the
/// children it forks; the flag survives exec, so PID 1, whose exec starts
/// the real init, never sets it). For the loader child: its memory is a
/// few hundred KiB in many small mappings, and one huge page would add up
/// to 2 MiB to its resident size.
pub fn refuse_huge_pages() -> io::Result<()> {
    nix::sys::prctl::set_thp_disable(true).map_err(io::Error::from)
}

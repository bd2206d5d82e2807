//! The boundary between the loader and the kernel's module syscalls.
//!
//! The loader only ever talks to a [`Kernel`]. [`RealKernel`] makes the
//! syscalls (`finit_module`, `init_module`) and is the only code in kmodinit's
//! loader that is `unsafe`; [`FakeKernel`] records every call so the engine is
//! tested on the host without touching the host's modules.

use std::fmt;
use std::path::Path;

use modules_manifest::{Compression, ModuleName};

mod claims;
mod fake;
mod real;
pub mod tpm;

pub use claims::{Claims, SharedKernel};
pub use fake::{FakeCall, FakeKernel, FakeOutcome};
pub use real::RealKernel;

/// Inserts one module into the kernel.
///
/// Implementations must be callable from several threads at once (`Sync`):
/// the loader calls `insert` concurrently for independent modules. The loader
/// guarantees it calls `insert` at most once per module name per load; an
/// implementation need not deduplicate.
pub trait Kernel: Sync {
    /// Inserts the module `req` describes, blocking until the module's init
    /// function returned. `Ok(Inserted::AlreadyLoaded)` when the kernel
    /// already had it (`EEXIST`).
    fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError>;

    /// The module file at `path`, to read what `insert` would insert (the
    /// measurement hashes it): by default opened by path; [`RealKernel`]
    /// gives its descriptor opened ahead, which still reads after
    /// switch_root has deleted the initramfs.
    fn module_file(&self, path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::File::open(path)
    }
}

/// A shared kernel (the loader child's loads share one through
/// [`Claims`]; tests keep a handle on the fake they pass).
impl<K: Kernel + Send + ?Sized> Kernel for std::sync::Arc<K> {
    fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
        (**self).insert(req)
    }
}

/// One module to insert.
#[derive(Debug, Clone, Copy)]
pub struct InsertRequest<'a> {
    pub name: &'a ModuleName,
    /// Absolute path of the module file (`modules_dir` joined with the plan's
    /// relative path).
    pub path: &'a Path,
    pub compression: Compression,
    /// The parameter string passed verbatim to the kernel (`a=1 b=x`).
    pub params: &'a str,
}

/// A successful insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The kernel loaded and initialised the module.
    Loaded,
    /// The kernel already had the module (`EEXIST`): counts as success.
    AlreadyLoaded,
}

/// A failed insertion: the errno when a syscall gave one, and a message that
/// says in plain words what went wrong (and names the file when it is the
/// file that is missing or bad).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertError {
    pub errno: Option<i32>,
    pub message: String,
}

impl InsertError {
    /// An error that did not come from a syscall.
    pub fn other(message: impl Into<String>) -> Self {
        InsertError {
            errno: None,
            message: message.into(),
        }
    }

    /// The clear message for `errno` returned by a module syscall on `path`
    /// with parameters `params`.
    pub fn from_errno(errno: i32, syscall: &str, path: &Path, params: &str) -> Self {
        InsertError {
            errno: Some(errno),
            message: format!(
                "{syscall}: {} [{}]",
                describe_errno(errno, path, params),
                errno_name(errno)
            ),
        }
    }
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InsertError {}

/// What a module syscall's errno means for the person reading the boot log.
fn describe_errno(errno: i32, path: &Path, params: &str) -> String {
    let path = path.display();
    match errno {
        libc::ENOEXEC => format!(
            "{path} is not a valid module for this kernel (bad ELF, wrong architecture or kernel version)"
        ),
        // The kernel ignores unknown parameters (with a dmesg warning); a
        // bad value for a known one fails the load with EINVAL.
        libc::EINVAL if !params.is_empty() => format!(
            "bad parameter value in {params:?}, or an invalid module (see dmesg for which)"
        ),
        libc::EINVAL => "invalid module (see dmesg for why)".to_owned(),
        libc::ENOENT => {
            "unknown symbol (a dependency is not loaded?), or the module's init did not find what it needs (see dmesg)".to_owned()
        }
        libc::EKEYREJECTED | libc::EBADMSG => {
            format!("module signature of {path} rejected by the kernel")
        }
        libc::ENOKEY => format!("{path} is signed with a key the kernel does not have"),
        libc::ENODEV | libc::ENXIO => "no such device: the hardware is not present".to_owned(),
        libc::ENOMEM => "out of memory".to_owned(),
        libc::EPERM => {
            "operation not permitted (needs CAP_SYS_MODULE; module loading may be disabled)"
                .to_owned()
        }
        libc::EBUSY => "device or resource busy".to_owned(),
        libc::ETIMEDOUT => "module init timed out".to_owned(),
        libc::ENOSPC => "no space left for the module".to_owned(),
        libc::EFBIG => format!("{path} is too large"),
        libc::EOPNOTSUPP => "operation not supported by this kernel".to_owned(),
        libc::ENOSYS => "module loading is not supported by this kernel".to_owned(),
        libc::EACCES => format!("permission denied opening {path}"),
        libc::EIO => format!("I/O error reading {path}"),
        libc::EEXIST => "module already loaded".to_owned(),
        other => std::io::Error::from_raw_os_error(other).to_string(),
    }
}

/// The symbolic name of the errnos module syscalls return, for grepping.
fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::ENOEXEC => "ENOEXEC",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ENOSYS => "ENOSYS",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EBADMSG => "EBADMSG",
        libc::ENOKEY => "ENOKEY",
        libc::EKEYREJECTED => "EKEYREJECTED",
        other => return format!("errno {other}"),
    };
    name.to_owned()
}

/// Which of the pool's workers are on a CPU: the adaptive pool's signal.
///
/// A module's init runs in the worker's thread: signature checks and
/// relocation keep it runnable, `msleep` and firmware waits put it to sleep
/// (task state `D` or `S`). Only the coordinator calls
/// [`WorkerProbe::on_cpu`]; every worker calls [`WorkerProbe::register`] on
/// its own thread as it starts. Thread-safe.
pub trait WorkerProbe: Sync {
    /// Worker number `worker` has started, on the calling thread.
    fn register(&self, worker: usize);
    /// How many of the workers `0..started` are running or waiting for a
    /// CPU (not asleep). A worker that has not registered yet counts as
    /// running; so does one the probe cannot see (then the pool stays at
    /// about one worker per CPU). `busy` of them hold a job (the pool's
    /// count; it takes at most that many): a job sent to an idle worker
    /// makes it runnable at once, before it is seen inside the kernel.
    fn on_cpu(&self, started: usize, busy: usize) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_messages_are_specific() {
        let p = Path::new("/lib/modules/x/foo.ko");
        let e = InsertError::from_errno(libc::ENOEXEC, "finit_module", p, "");
        assert!(e.to_string().contains("not a valid module"), "{e}");
        assert!(e.to_string().contains("ENOEXEC"), "{e}");
        let e = InsertError::from_errno(libc::EINVAL, "finit_module", p, "bogus=1");
        assert!(e.to_string().contains("\"bogus=1\""), "{e}");
        assert!(e.to_string().contains("dmesg"), "{e}");
        let e = InsertError::from_errno(libc::ENOENT, "finit_module", p, "");
        assert!(e.to_string().contains("unknown symbol"), "{e}");
        let e = InsertError::from_errno(libc::EKEYREJECTED, "finit_module", p, "");
        assert!(e.to_string().contains("signature"), "{e}");
        let e = InsertError::from_errno(libc::ENODEV, "finit_module", p, "");
        assert!(e.to_string().contains("hardware"), "{e}");
        assert_eq!(e.errno, Some(libc::ENODEV));
        let e = InsertError::from_errno(4242, "init_module", p, "");
        assert!(e.to_string().contains("errno 4242"), "{e}");
    }
}

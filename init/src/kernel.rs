//! The boundary between the loader and the kernel's module syscalls.
//!
//! The loader only ever talks to a [`Kernel`]. [`RealKernel`] makes the
//! syscalls (`finit_module`, `init_module`) and is the only code in kmodinit's
//! loader that is `unsafe`; [`FakeKernel`] records every call so the engine is
//! tested on the host without touching the host's modules.

use std::fmt;
use std::path::Path;

use modules_manifest::{Compression, ModuleName};

mod fake;
mod real;

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

/// Fault injection for the end-to-end tests: compiled only with the cargo
/// feature `fault-injection` (`make init-faults` → `build/init-faults`),
/// never into the product `/init`.
///
/// `kmodinit.fault=panic-boot` panics in the boot sequence right after
/// planning; `kmodinit.fault=panic-insert:MODULE` panics inside the loader
/// worker that inserts `MODULE` (through [`PanickingKernel`]). The option may
/// repeat. Both are real `panic!`s, so the QEMU tests show what PID 1 does
/// with a bug it did not foresee: the boot's `catch_unwind` makes the first a
/// fatal error, the loader's makes the second that module's failure.
#[cfg(feature = "fault-injection")]
pub mod fault {
    use std::collections::BTreeSet;
    use std::fmt;

    use modules_manifest::{KernelCmdline, ModuleName};

    use super::{InsertError, InsertRequest, Inserted, Kernel};

    /// The command-line key, beside the product's `kmodinit.*` options.
    pub const OPTION: &str = "kmodinit.fault";

    /// The faults a command line asks for.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Faults {
        /// `panic-boot`.
        pub panic_boot: bool,
        /// `panic-insert:MODULE`, normalised names.
        pub panic_insert: BTreeSet<ModuleName>,
        /// Values that are not a fault, each with the reason it is ignored.
        pub warnings: Vec<String>,
    }

    impl Faults {
        /// Reads every `kmodinit.fault=VALUE` word of the raw command line
        /// (the product parser does not know the option). Never fails: an
        /// unknown value is a warning.
        pub fn from_cmdline(text: &str) -> Faults {
            let mut f = Faults::default();
            let prefix = format!("{OPTION}=");
            for value in text
                .split_ascii_whitespace()
                .filter_map(|w| w.strip_prefix(prefix.as_str()))
            {
                if value == "panic-boot" {
                    f.panic_boot = true;
                } else if let Some(m) = value.strip_prefix("panic-insert:") {
                    match ModuleName::new(m) {
                        Ok(name) => {
                            f.panic_insert.insert(name);
                        }
                        Err(e) => f.warnings.push(format!("{OPTION}={value}: {e}; ignored")),
                    }
                } else {
                    f.warnings.push(format!(
                        "{OPTION}={value}: expected panic-boot or panic-insert:MODULE; ignored"
                    ));
                }
            }
            f
        }

        /// True when some fault will fire.
        pub fn armed(&self) -> bool {
            self.panic_boot || !self.panic_insert.is_empty()
        }

        /// Panics if `panic-boot` was asked for; `after` names the step just
        /// done, for the message.
        pub fn boot_point(&self, after: &str) {
            if self.panic_boot {
                panic!(
                    "injected fault ({OPTION}=panic-boot): panic in the boot sequence after {after}"
                );
            }
        }

        /// `inner`, panicking for the `panic-insert` modules.
        pub fn kernel<K: Kernel>(&self, inner: K) -> PanickingKernel<K> {
            PanickingKernel {
                inner,
                panic_on: self.panic_insert.clone(),
            }
        }
    }

    /// `panic-boot, panic-insert:a` (what is armed, for the log).
    impl fmt::Display for Faults {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut sep = "";
            if self.panic_boot {
                f.write_str("panic-boot")?;
                sep = ", ";
            }
            for m in &self.panic_insert {
                write!(f, "{sep}panic-insert:{m}")?;
                sep = ", ";
            }
            Ok(())
        }
    }

    /// Drops the product parser's "unknown kmodinit option" warning for
    /// `kmodinit.fault`: in this build the option is known.
    pub fn accept_option(mut cmdline: KernelCmdline) -> KernelCmdline {
        let unknown = format!("{OPTION}: ");
        cmdline
            .warnings
            .retain(|w| !w.starts_with(unknown.as_str()));
        cmdline
    }

    /// A [`Kernel`] decorator that panics, instead of inserting, for the
    /// modules it was given, and passes every other module to `inner`.
    #[derive(Debug)]
    pub struct PanickingKernel<K> {
        inner: K,
        panic_on: BTreeSet<ModuleName>,
    }

    impl<K: Kernel> Kernel for PanickingKernel<K> {
        fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
            if self.panic_on.contains(req.name) {
                panic!(
                    "injected fault ({OPTION}=panic-insert:{0}): panic while inserting {0}",
                    req.name
                );
            }
            self.inner.insert(req)
        }
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)] // tests may unwrap
    mod tests {
        use std::path::Path;

        use modules_manifest::Compression;

        use super::super::{FakeKernel, FakeOutcome};
        use super::*;

        #[test]
        fn parses_every_fault_word_and_warns_on_the_rest() {
            let f = Faults::from_cmdline(
                "root=/dev/vda kmodinit.fault=panic-insert:kmi-a quiet \
                 kmodinit.fault=panic-boot kmodinit.fault=explode kmodinit.fault=panic-insert:",
            );
            assert!(f.panic_boot);
            assert_eq!(
                f.panic_insert
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>(),
                ["kmi_a"]
            );
            assert_eq!(f.warnings.len(), 2, "{:?}", f.warnings);
            assert!(f.warnings[0].contains("explode"), "{:?}", f.warnings);
            assert!(f.warnings[1].contains("panic-insert:"), "{:?}", f.warnings);
            assert_eq!(f.to_string(), "panic-boot, panic-insert:kmi_a");
            assert!(f.armed());
            let none = Faults::from_cmdline("root=/dev/vda kmodinit.faulty=panic-boot");
            assert!(!none.armed() && none.warnings.is_empty());
        }

        #[test]
        fn boot_point_panics_only_when_asked() {
            Faults::default().boot_point("planning");
            let f = Faults::from_cmdline("kmodinit.fault=panic-boot");
            let err = std::panic::catch_unwind(|| f.boot_point("planning")).unwrap_err();
            let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
            assert_eq!(
                msg,
                "injected fault (kmodinit.fault=panic-boot): panic in the boot sequence after planning"
            );
        }

        #[test]
        fn the_decorator_panics_for_its_modules_and_delegates_the_rest() {
            let fake = FakeKernel::new();
            let k = Faults::from_cmdline("kmodinit.fault=panic-insert:kmi_a").kernel(fake);
            fn req(name: &ModuleName) -> InsertRequest<'_> {
                InsertRequest {
                    name,
                    path: Path::new("/lib/modules/x/m.ko"),
                    compression: Compression::None,
                    params: "",
                }
            }
            let b = ModuleName::new("kmi_b").unwrap();
            assert_eq!(k.insert(&req(&b)), Ok(Inserted::Loaded));
            let a = ModuleName::new("kmi_a").unwrap();
            let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = k.insert(&req(&a));
            }))
            .unwrap_err();
            let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains("panic while inserting kmi_a"), "{msg}");
            let calls = k.inner.calls();
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].name, b);
            assert_eq!(calls[0].outcome, FakeOutcome::Load);
        }

        #[test]
        fn only_the_fault_warning_is_dropped() {
            let c = accept_option(KernelCmdline::parse(
                "kmodinit.fault=panic-boot kmodinit.colour=red",
            ));
            assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
            assert!(c.warnings[0].starts_with("kmodinit.colour"));
        }
    }
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

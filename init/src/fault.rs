//! Fault injection for the end-to-end tests: compiled only with the cargo
//! feature `fault-injection` (`make init-faults` → `build/init-faults`),
//! never into the product `/init`.
//!
//! `kmodinit.fault=panic-boot` panics in PID 1's boot sequence after the
//! manifest is read; `kmodinit.fault=panic-insert:MODULE` panics inside the
//! loader worker that inserts `MODULE`, and `kmodinit.fault=kill-insert:MODULE`
//! sends the loader process SIGKILL there (through [`PanickingKernel`]). The
//! option may repeat. They are real `panic!`s and a real signal, so the QEMU
//! tests show what PID 1 does with a bug it did not foresee: its panic hook
//! carries out `on_failure` for the first; the loader child dies of the
//! others, and PID 1 fails the modules it left undecided.

use std::collections::BTreeSet;
use std::fmt;

use modules_manifest::{KernelCmdline, ModuleName};

use crate::kernel::{InsertError, InsertRequest, Inserted, Kernel};

/// The command-line key, beside the product's `kmodinit.*` options.
pub const OPTION: &str = "kmodinit.fault";

/// The faults a command line asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// `panic-boot`.
    pub panic_boot: bool,
    /// `panic-insert:MODULE`, normalised names.
    pub panic_insert: BTreeSet<ModuleName>,
    /// `kill-insert:MODULE`, normalised names.
    pub kill_insert: BTreeSet<ModuleName>,
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
            } else if let Some((kind, m)) = value
                .split_once(':')
                .filter(|(k, _)| *k == "panic-insert" || *k == "kill-insert")
            {
                match ModuleName::new(m) {
                    Ok(name) if kind == "panic-insert" => {
                        f.panic_insert.insert(name);
                    }
                    Ok(name) => {
                        f.kill_insert.insert(name);
                    }
                    Err(e) => f.warnings.push(format!("{OPTION}={value}: {e}; ignored")),
                }
            } else {
                f.warnings.push(format!(
                    "{OPTION}={value}: expected panic-boot, panic-insert:MODULE or kill-insert:MODULE; ignored"
                ));
            }
        }
        f
    }

    /// True when some fault will fire.
    pub fn armed(&self) -> bool {
        self.panic_boot || !self.panic_insert.is_empty() || !self.kill_insert.is_empty()
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
            kill_on: self.kill_insert.clone(),
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
        for m in &self.kill_insert {
            write!(f, "{sep}kill-insert:{m}")?;
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

/// A [`Kernel`] decorator that panics (or kills its own process with
/// SIGKILL), instead of inserting, for the modules it was given, and passes
/// every other module to `inner`.
#[derive(Debug)]
pub struct PanickingKernel<K> {
    inner: K,
    panic_on: BTreeSet<ModuleName>,
    kill_on: BTreeSet<ModuleName>,
}

impl<K: Kernel> Kernel for PanickingKernel<K> {
    fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
        if self.panic_on.contains(req.name) {
            panic!(
                "injected fault ({OPTION}=panic-insert:{0}): panic while inserting {0}",
                req.name
            );
        }
        if self.kill_on.contains(req.name) {
            log::warn!(
                "injected fault ({OPTION}=kill-insert:{}): SIGKILL to the loader",
                req.name
            );
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGKILL);
        }
        self.inner.insert(req)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::path::Path;

    use modules_manifest::Compression;

    use super::*;
    use crate::kernel::{FakeKernel, FakeOutcome};

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

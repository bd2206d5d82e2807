//! The kernel command line (`/proc/cmdline`). SKELETON (issue 2).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::manifest::OnFailure;
use crate::name::ModuleName;

/// What kmodinit takes from the kernel command line. Parsing never fails:
/// a value it cannot use is ignored and explained in `warnings`, because a
/// typo on the command line must not stop the boot.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct KernelCmdline {
    pub root: Option<String>,
    pub rootfstype: Option<String>,
    pub rootflags: Option<String>,
    /// `ro` → Some(true), `rw` → Some(false); the last one wins.
    pub read_only: Option<bool>,
    pub rootwait: bool,
    /// `rootdelay=` in seconds.
    pub rootdelay_s: Option<u64>,
    pub init: Option<String>,
    pub quiet: bool,
    /// `name.param=value` entries per module, in command-line order.
    pub module_params: BTreeMap<ModuleName, Vec<String>>,
    /// `modprobe.blacklist=a,b` (may repeat).
    pub blacklist: BTreeSet<ModuleName>,
    /// `kmodinit.manifest=PATH`.
    pub manifest: Option<String>,
    /// `kmodinit.jobs=N`.
    pub jobs: Option<usize>,
    /// `kmodinit.on_failure=…`.
    pub on_failure: Option<OnFailure>,
    /// `kmodinit.debug`.
    pub debug: bool,
    /// Entries that were recognised but unusable, with the reason.
    pub warnings: Vec<String>,
}

impl KernelCmdline {
    /// Parses a command line, with double quotes as the kernel handles them
    /// (`a.b="x y"`). Never panics; see `warnings`.
    pub fn parse(_line: &str) -> KernelCmdline {
        todo!("issue 2")
    }
}

//! The manifest, JSON version 1 (see DESIGN.md). SKELETON: the types are the
//! contract other crates build against; parsing and validation are to be
//! completed (issue 2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::name::ModuleName;

/// A parsed, schema-checked manifest. Semantic checks against a module index
/// (unknown module, cycles, blocklist conflicts) happen in [`crate::plan()`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub version: u32,
    pub chains: Vec<ChainSpec>,
    /// Per-module parameters, however the module is pulled in.
    pub modules: BTreeMap<ModuleName, ModuleSpec>,
    pub blocklist: Vec<ModuleName>,
    /// Worker-pool width; 0 means automatic.
    pub jobs: usize,
    pub root: Option<RootSpec>,
    pub init: InitSpec,
    /// `None`: rescue if the image has a shell, else halt.
    pub on_failure: Option<OnFailure>,
}

/// One ordered chain: each module starts after its predecessor succeeded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainSpec {
    pub name: String,
    pub modules: Vec<ChainEntry>,
    /// A required chain that cannot complete triggers `on_failure`.
    pub required: bool,
}

/// A chain entry: `"name"` or `{"name": …, "params": …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainEntry {
    pub name: ModuleName,
    pub params: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ModuleSpec {
    pub params: Option<String>,
}

/// Where the real root lives; the kernel command line overrides each field.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RootSpec {
    /// `/dev/…`, `UUID=…`, `LABEL=…`, `PARTUUID=…`.
    pub device: Option<String>,
    pub fstype: Option<String>,
    /// Mount options, e.g. `ro` or `rw,noatime`.
    pub flags: Option<String>,
    /// How long to wait for the device to appear, in milliseconds.
    pub wait_ms: Option<u64>,
}

/// The program PID 1 hands over to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitSpec {
    pub path: String,
    pub args: Vec<String>,
}

impl Default for InitSpec {
    fn default() -> Self {
        InitSpec {
            path: "/sbin/init".into(),
            args: Vec::new(),
        }
    }
}

/// What PID 1 does after a fatal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Exec `/bin/sh` if the image has one (else halt).
    Rescue,
    Reboot,
    Poweroff,
    Halt,
}

/// A manifest that cannot be used, with the JSON path (`chains[1].modules[0]`)
/// and, for syntax and type errors, the line and column.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "manifest")?;
        if !self.path.is_empty() {
            write!(f, " at {}", self.path)?;
        }
        if self.line > 0 {
            write!(f, " (line {}, column {})", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    /// Parses and schema-checks a manifest. Never panics on any input.
    pub fn from_json(_bytes: &[u8]) -> Result<Manifest, ManifestError> {
        todo!("issue 2")
    }
}

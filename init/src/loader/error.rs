//! Why the loader child could not load anything: its own errors, with
//! their sources, and the typed form they take on the pipe to PID 1
//! ([`LoaderFailure`]).

use std::fmt;
use std::io;
use std::path::PathBuf;

use modules_manifest::plan::PlanError;

use crate::inputs::{IndexReadError, ManifestReadError};
use crate::wire::events::LoaderFailure;

/// A failure that leaves the loader nothing to plan.
#[derive(Debug)]
pub enum LoaderError {
    /// `/proc/sys/kernel/osrelease` could not be read.
    KernelRelease(io::Error),
    /// The image's compiled module index could not be used (`file`).
    Index {
        file: PathBuf,
        source: IndexReadError,
    },
    /// The manifest PID 1 validated could not be read again.
    Manifest(ManifestReadError),
    /// The manifest PID 1 validated is gone.
    ManifestGone(PathBuf),
    /// Nothing of the manifest can be planned.
    Plan(PlanError),
    /// Measured loading is required and cannot start (no TPM, …).
    Measure(String),
}

impl fmt::Display for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoaderError::KernelRelease(e) => write!(
                f,
                "cannot read the kernel release from /proc/sys/kernel/osrelease: {e}"
            ),
            LoaderError::Index { file, source } => write!(
                f,
                "cannot use the module index {}: {source}",
                file.display()
            ),
            LoaderError::Manifest(e) => e.fmt(f),
            LoaderError::ManifestGone(path) => write!(
                f,
                "the manifest {} was removed during the boot",
                path.display()
            ),
            LoaderError::Plan(e) => {
                write!(f, "the manifest does not plan against the modules: {e}")
            }
            LoaderError::Measure(why) => write!(f, "measured loading is required, and {why}"),
        }
    }
}

impl std::error::Error for LoaderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoaderError::KernelRelease(e) => Some(e),
            LoaderError::Index { source, .. } => Some(source),
            LoaderError::Manifest(e) => Some(e),
            LoaderError::ManifestGone(_) | LoaderError::Measure(_) => None,
            LoaderError::Plan(e) => Some(e),
        }
    }
}

impl LoaderError {
    /// The error as it goes up the pipe: its kind, what it names, and the
    /// message with its causes.
    pub fn to_wire(&self) -> LoaderFailure {
        let what = match self {
            LoaderError::Index { file, .. } => file.display().to_string(),
            LoaderError::Manifest(
                ManifestReadError::Read { path, .. } | ManifestReadError::Invalid { path, .. },
            )
            | LoaderError::ManifestGone(path) => path.display().to_string(),
            LoaderError::KernelRelease(_) | LoaderError::Plan(_) | LoaderError::Measure(_) => {
                String::new()
            }
        };
        let kind = match self {
            LoaderError::KernelRelease(_) => crate::wire::events::FailureKind::KernelRelease,
            LoaderError::Index { .. } => crate::wire::events::FailureKind::Index,
            LoaderError::Manifest(_) | LoaderError::ManifestGone(_) => {
                crate::wire::events::FailureKind::Manifest
            }
            LoaderError::Plan(_) => crate::wire::events::FailureKind::Plan,
            LoaderError::Measure(_) => crate::wire::events::FailureKind::Measure,
        };
        LoaderFailure {
            kind,
            what,
            message: self.to_string(),
        }
    }
}

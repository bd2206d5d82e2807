//! Reading the boot's inputs, shared by every process of `/init`: the
//! manifest file (bounded, validated), where it is, the module tree of the
//! running kernel and its compiled index. The command line is parsed by
//! `modules_manifest`.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use modules_manifest::compiled::{self, CompiledError, CompiledIndex, MAX_INDEX_BYTES};
use modules_manifest::manifest::{ManifestError, MAX_MANIFEST_BYTES};
use modules_manifest::{KernelCmdline, Manifest};

/// Where the image builder installs the manifest.
pub const DEFAULT_MANIFEST: &str = "/etc/kmodinit/manifest.json";

/// The manifest the boot reads: `kmodinit.manifest=` or the default.
pub fn manifest_path(cmdline: &KernelCmdline) -> &str {
    cmdline.manifest.as_deref().unwrap_or(DEFAULT_MANIFEST)
}

/// Why the manifest could not be read; each names the file.
#[derive(Debug)]
pub enum ManifestReadError {
    /// It exists but cannot be read.
    Read { path: PathBuf, source: io::Error },
    /// It is not a valid manifest.
    Invalid {
        path: PathBuf,
        source: ManifestError,
    },
}

impl fmt::Display for ManifestReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestReadError::Read { path, source } => {
                write!(f, "cannot read the manifest {}: {source}", path.display())
            }
            ManifestReadError::Invalid { path, source } => {
                write!(f, "the manifest {} is invalid: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for ManifestReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManifestReadError::Read { source, .. } => Some(source),
            ManifestReadError::Invalid { source, .. } => Some(source),
        }
    }
}

/// The manifest at `path`: `None` if there is no such file. At most
/// [`MAX_MANIFEST_BYTES`] are read (a longer file is refused by the
/// parser).
pub fn read_manifest(path: &Path) -> Result<Option<Manifest>, ManifestReadError> {
    let read_error = |source| ManifestReadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(read_error(source)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Manifest::from_json(&bytes)
        .map(Some)
        .map_err(|source| ManifestReadError::Invalid {
            path: path.to_path_buf(),
            source,
        })
}

/// `/lib/modules/<release>` under `root`, the release read from
/// `<proc>/sys/kernel/osrelease` (what `uname -r` prints).
pub fn modules_dir(root: &Path, proc: &Path) -> io::Result<PathBuf> {
    let release = std::fs::read_to_string(proc.join("sys/kernel/osrelease"))?;
    Ok(root.join("lib/modules").join(release.trim()))
}

/// Why the image's compiled index could not be used.
#[derive(Debug)]
pub enum IndexReadError {
    /// The image has no module directory for the running kernel; the
    /// releases it has modules for.
    NoModules {
        running: String,
        present: Vec<String>,
    },
    /// The module directory has no compiled index.
    Missing,
    /// It exists but cannot be read.
    Read(io::Error),
    /// Its header or contents are refused (another format version or
    /// kernel release, damaged).
    Compiled(CompiledError),
}

impl fmt::Display for IndexReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexReadError::NoModules { running, present } => write!(
                f,
                "the image holds no modules for the running kernel {running} ({}): \
                 build the image for {running}",
                if present.is_empty() {
                    "it holds none".to_owned()
                } else {
                    format!("it holds modules for {}", present.join(", "))
                }
            ),
            IndexReadError::Missing => {
                f.write_str("no such file: build the image with kmodinit build, which writes it")
            }
            IndexReadError::Read(e) => e.fmt(f),
            IndexReadError::Compiled(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for IndexReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IndexReadError::NoModules { .. } | IndexReadError::Missing => None,
            IndexReadError::Read(e) => Some(e),
            IndexReadError::Compiled(e) => Some(e),
        }
    }
}

/// The compiled index of `modules_dir` (`lib/modules/<release>`, as
/// [`modules_dir`] gives it: the index must be for that release), read
/// whole, at most [`MAX_INDEX_BYTES`], and decoded.
pub fn read_index(modules_dir: &Path) -> Result<CompiledIndex, IndexReadError> {
    let file = match std::fs::File::open(modules_dir.join(compiled::INDEX_FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !modules_dir.is_dir() => {
            return Err(no_modules(modules_dir))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(IndexReadError::Missing),
        Err(e) => return Err(IndexReadError::Read(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(IndexReadError::Read)?;
    let release = modules_dir.file_name().and_then(|r| r.to_str());
    compiled::decode(&bytes, release).map_err(IndexReadError::Compiled)
}

/// `modules_dir` does not exist: which releases its parent has instead.
fn no_modules(modules_dir: &Path) -> IndexReadError {
    let running = modules_dir
        .file_name()
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut present: Vec<String> = modules_dir
        .parent()
        .and_then(|p| std::fs::read_dir(p).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    IndexReadError::NoModules { running, present }
}

/// What `<proc>/modules` lists now (empty if unreadable).
pub fn loaded_modules(proc: &Path) -> std::collections::BTreeSet<modules_manifest::ModuleName> {
    std::fs::read_to_string(proc.join("modules"))
        .map(|t| modules_manifest::parse_proc_modules(&t))
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn an_index_for_another_kernel_or_none_is_refused_naming_both() {
        use modules_manifest::{CompiledIndex, DepIndex};
        let d = std::env::temp_dir().join(format!("kmodinit-inputs-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let built = d.join("lib/modules/6.1.0-56-amd64");
        std::fs::create_dir_all(&built).unwrap();
        // No module directory for the running kernel.
        let e = read_index(&d.join("lib/modules/6.1.0-57-amd64")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the image holds no modules for the running kernel 6.1.0-57-amd64 (it holds \
             modules for 6.1.0-56-amd64): build the image for 6.1.0-57-amd64"
        );
        // A directory without the file.
        assert!(matches!(read_index(&built), Err(IndexReadError::Missing)));
        // An index written for another release, copied into this one's place.
        let index = DepIndex::parse("kernel/a.ko:\n", "", "", "").unwrap();
        let c = CompiledIndex::compile("6.1.0-55-amd64", index, Default::default(), []);
        std::fs::write(built.join(compiled::INDEX_FILE), compiled::encode(&c)).unwrap();
        let e = read_index(&built).unwrap_err().to_string();
        assert!(
            e.contains("for kernel 6.1.0-55-amd64")
                && e.contains("running kernel is 6.1.0-56-amd64"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn manifest_path_follows_the_command_line() {
        assert_eq!(manifest_path(&KernelCmdline::default()), DEFAULT_MANIFEST);
        let c = KernelCmdline {
            manifest: Some("/m.json".into()),
            ..Default::default()
        };
        assert_eq!(manifest_path(&c), "/m.json");
    }

    #[test]
    fn a_missing_manifest_is_none_and_a_bad_one_names_the_file() {
        assert!(
            read_manifest(Path::new("/nonexistent/kmodinit/manifest.json"))
                .unwrap()
                .is_none()
        );
        let d = std::env::temp_dir().join(format!("kmodinit-inputs-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("m.json");
        std::fs::write(&p, b"{\"version\": 2}").unwrap();
        let e = read_manifest(&p).unwrap_err();
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn modules_dir_from_osrelease() {
        let d = std::env::temp_dir().join(format!("kmodinit-osrel-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sys/kernel")).unwrap();
        std::fs::write(d.join("sys/kernel/osrelease"), "6.1.0-56-amd64\n").unwrap();
        assert_eq!(
            modules_dir(Path::new("/"), &d).unwrap(),
            PathBuf::from("/lib/modules/6.1.0-56-amd64")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}

//! Assembling the image: manifest + module tree + `/init` + extra files →
//! [`Tree`] → cpio → compression → the output file, atomically.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use modules_manifest::{modinfo, Manifest};

use crate::compress::Compress;
use crate::elf::Machine;
use crate::firmware::FirmwareSelection;
use crate::modprobe;
use crate::modules::{self, ModuleCompression, ModulesError, Selection};
use crate::tree::{Conflict, Content, ImagePath, Kind, Node, PathError, Tree, WriteError};

/// Where PID 1 reads its manifest (DESIGN.md, boot step 2).
pub const MANIFEST_PATH: &str = "etc/kmodinit/manifest.json";

/// Mount points and home PID 1 expects, with their permission bits.
pub const BASE_DIRS: [(&str, u32); 5] = [
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("run", 0o755),
    ("root", 0o700),
];

/// Device nodes the kernel needs before devtmpfs is mounted (it opens
/// `/dev/console` for PID 1's stdio): (path, major, minor, perm).
pub const DEVICE_NODES: [(&str, u32, u32, u32); 2] =
    [("dev/console", 5, 1, 0o600), ("dev/null", 1, 3, 0o666)];

/// `--add SRC:DST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddSpec {
    pub src: PathBuf,
    /// `None`: DST is `/`, and SRC must be a directory whose contents are
    /// laid over the image root.
    pub dst: Option<ImagePath>,
}

/// Why an `--add` argument is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddSpecError {
    #[error("--add {0:?}: expected SRC:DST (DST an absolute path inside the image)")]
    NoColon(String),
    #[error("--add {spec:?}: {source}")]
    Dst {
        spec: String,
        #[source]
        source: PathError,
    },
}

impl std::str::FromStr for AddSpec {
    type Err = AddSpecError;

    /// Splits at the last `:`, so SRC may contain colons and DST may not.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (src, dst) = spec
            .rsplit_once(':')
            .filter(|(s, d)| !s.is_empty() && !d.is_empty())
            .ok_or_else(|| AddSpecError::NoColon(spec.to_owned()))?;
        let dst = match ImagePath::absolute(dst) {
            Ok(p) => Some(p),
            Err(PathError::Root(_)) => None,
            Err(source) => {
                return Err(AddSpecError::Dst {
                    spec: spec.to_owned(),
                    source,
                })
            }
        };
        Ok(AddSpec {
            src: PathBuf::from(src),
            dst,
        })
    }
}

/// Everything a build needs; `main` fills it from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub manifest: PathBuf,
    pub kernel_release: String,
    pub output: PathBuf,
    /// The module tree lives at `modules_root/lib/modules/RELEASE`.
    pub modules_root: PathBuf,
    pub init: PathBuf,
    pub add: Vec<AddSpec>,
    pub compress: Compress,
    /// Decompress compressed module files into the image, or keep them.
    pub module_compression: ModuleCompression,
    /// The mtime of every member (`SOURCE_DATE_EPOCH`, else 0).
    pub mtime: u32,
    /// modprobe.d directories to carry into the image (empty: none).
    pub modprobe_dirs: Vec<PathBuf>,
    /// Declared parameters a module does not have are warnings, not errors.
    pub allow_unknown_params: bool,
    /// Modules for `/init`'s coldplug, beyond the manifest's plan.
    pub coldplug: crate::coldplug::ImageColdplug,
    /// Modules (names or aliases) the image holds, with what they need,
    /// though no chain loads them (`--extra-modules`): for the kernel's
    /// requests through `/init`'s module helper.
    pub extra_modules: Vec<String>,
    /// The modules' firmware files (`--firmware`, `--firmware-dir`).
    pub firmware: crate::firmware::FirmwareOptions,
    /// `--microcode`.
    pub microcode: crate::microcode::MicrocodeMode,
    /// The building machine's CPU vendor, when the image is for the
    /// running kernel (`--microcode auto` uses it).
    pub host_vendor: Option<crate::microcode::Vendor>,
    /// Also write the pruned depmod text files and `modules.params` into the
    /// image (`--depmod-text`), beside the compiled index `/init` reads.
    pub depmod_text: bool,
}

/// What was built, for the summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub output: PathBuf,
    pub compress: Compress,
    /// Module files in the image.
    pub modules: usize,
    /// Plan nodes satisfied without a file (builtin).
    pub builtin: usize,
    /// Module files decompressed into the image (`.ko.xz` → `.ko`…).
    pub decompressed: usize,
    pub entries: usize,
    pub uncompressed_bytes: u64,
    pub compressed_bytes: u64,
    pub largest: Vec<(ImagePath, u64)>,
    /// The planner's notes (softdep choices…).
    pub notes: Vec<String>,
    /// Things that will probably go wrong at boot, but need not.
    pub warnings: Vec<String>,
    /// Firmware files under /lib/firmware, and their bytes.
    pub firmware_files: usize,
    pub firmware_bytes: u64,
    /// The early microcode archive: (path, source files, bytes) per
    /// vendor, and the archive's length (0: none).
    pub microcode: Vec<(String, usize, u64)>,
    pub microcode_bytes: u64,
}

/// A build that failed; nothing was written to the output path.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading manifest {path}: {source}")]
    ReadManifest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: modules_manifest::manifest::ManifestError,
    },
    #[error(transparent)]
    Modules(#[from] ModulesError),
    #[error(transparent)]
    Modprobe(#[from] modprobe::ModprobeError),
    #[error(transparent)]
    Coldplug(#[from] crate::coldplug::ColdplugError),
    #[error(transparent)]
    Firmware(#[from] crate::firmware::FirmwareError),
    #[error(transparent)]
    Microcode(#[from] crate::microcode::MicrocodeError),
    #[error("--init {path}: {source}")]
    Init {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    ExtraModule(String),
    #[error("--init {path} is not a regular file")]
    InitNotFile { path: PathBuf },
    #[error(
        "--init {init} is built for {init_machine}, but the modules of {release} are for \
         {module_machine} ({module}): give an /init built for {module_machine} \
         (`make init ARCH=NAME` builds one in build/NAME/init)"
    )]
    InitMachine {
        init: PathBuf,
        init_machine: Machine,
        release: String,
        module: PathBuf,
        module_machine: Machine,
    },
    #[error("--add {src}: {source}")]
    AddSource {
        src: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--add {src}: {what}")]
    AddUnsupported { src: PathBuf, what: String },
    #[error(transparent)]
    Conflict(#[from] Conflict),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("compressing with {compress}: {source}")]
    Compress {
        compress: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Builds the image tree without writing anything: validates the manifest
/// against the module tree, resolves every source file.
pub fn assemble(
    opts: &Options,
) -> Result<(Tree, Selection, Manifest, FirmwareSelection), BuildError> {
    let manifest_bytes = fs::read(&opts.manifest).map_err(|source| BuildError::ReadManifest {
        path: opts.manifest.clone(),
        source,
    })?;
    let manifest = Manifest::from_json(&manifest_bytes).map_err(|source| BuildError::Manifest {
        path: opts.manifest.clone(),
        source,
    })?;
    let dir = modules::module_dir(&opts.modules_root, &opts.kernel_release)?;
    let (manifest, manifest_bytes, selection) =
        select_with_modprobe_d(opts, manifest, manifest_bytes, &dir)?;

    let mut tree = Tree::new();
    for (dir, perm) in BASE_DIRS {
        tree.insert(ImagePath::relative(dir)?, dir_node(perm))?;
    }
    for (path, major, minor, perm) in DEVICE_NODES {
        tree.insert(
            ImagePath::relative(path)?,
            Node {
                kind: Kind::CharDev { major, minor },
                perm,
            },
        )?;
    }

    let init_meta = fs::metadata(&opts.init).map_err(|source| BuildError::Init {
        path: opts.init.clone(),
        source,
    })?;
    if !init_meta.is_file() {
        return Err(BuildError::InitNotFile {
            path: opts.init.clone(),
        });
    }
    // Not ELF (a script): nothing to compare.
    let init_machine = Machine::of_file(&opts.init).map_err(|source| BuildError::Init {
        path: opts.init.clone(),
        source,
    })?;
    tree.insert(
        ImagePath::relative("init")?,
        Node {
            kind: Kind::File(Content::HostFile {
                path: opts.init.clone(),
                size: init_meta.len(),
            }),
            perm: 0o755,
        },
    )?;
    tree.insert(
        ImagePath::relative(MANIFEST_PATH)?,
        file_node(manifest_bytes),
    )?;

    let mod_dir = ImagePath::relative("lib/modules")?.join(&opts.kernel_release)?;
    tree.insert(mod_dir.clone(), dir_node(0o755))?;
    // The first module stored as ELF (a `.ko` `keep` left compressed is
    // not) says the kernel's machine.
    let mut machine_checked = init_machine.is_none();
    for f in &selection.files {
        let content = if f.decompress.is_some() {
            Content::Bytes(modules::decompressed_module(f)?)
        } else {
            Content::HostFile {
                path: f.source.clone(),
                size: f.size,
            }
        };
        if let (false, Some(init_machine)) = (machine_checked, init_machine) {
            let module_machine = match &content {
                Content::Bytes(bytes) => Machine::from_header(bytes),
                // Unreadable here, it fails below with the path named.
                Content::HostFile { path, .. } => Machine::of_file(path).ok().flatten(),
            };
            if let Some(module_machine) = module_machine {
                if module_machine != init_machine {
                    return Err(BuildError::InitMachine {
                        init: opts.init.clone(),
                        init_machine,
                        release: opts.kernel_release.clone(),
                        module: f.source.clone(),
                        module_machine,
                    });
                }
                machine_checked = true;
            }
        }
        tree.insert(
            mod_dir.join(&f.image_rel)?,
            Node {
                kind: Kind::File(content),
                perm: f.perm,
            },
        )?;
    }
    for (name, bytes) in &selection.index {
        tree.insert(mod_dir.join(name)?, file_node(bytes.clone()))?;
    }
    let firmware = crate::firmware::select(&selection.files, &opts.firmware)?;
    firmware.insert_into(&mut tree)?;
    let firmware_index = firmware.index_file();
    if !firmware_index.is_empty() {
        tree.insert(
            mod_dir.join(modules_manifest::firmware::FIRMWARE_FILE)?,
            file_node(firmware_index),
        )?;
    }

    for add in &opts.add {
        match &add.dst {
            Some(dst) => add_host_path(&mut tree, &add.src, dst, true)?,
            None => add_dir_contents(&mut tree, &add.src, None)?,
        }
    }
    Ok((tree, selection, manifest, firmware))
}

/// Plans the manifest, merges the modprobe.d settings for the modules of
/// that plan (the manifest wins) and plans the result, prunes the index,
/// checks every module's parameters and records them in `modules.params`.
/// Returns the manifest the image holds and its bytes (the file as given
/// when modprobe.d changed nothing).
fn select_with_modprobe_d(
    opts: &Options,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    dir: &Path,
) -> Result<(Manifest, Vec<u8>, Selection), BuildError> {
    let config = modprobe::read_dirs(&opts.modprobe_dirs)?;
    let mut index = modules::load_index(dir)?;
    let mut aliases = Vec::new();
    for (pattern, module, origin) in modprobe::aliases(&config) {
        index
            .aliases
            .insert(&pattern, module.clone())
            .map_err(|why| ModulesError::BadAlias {
                pattern: pattern.clone(),
                module: module.clone(),
                origin: origin.to_string(),
                why: why.to_string(),
            })?;
        aliases.push((pattern, module));
    }
    let (mut coldplug, mut coldplug_notes) = opts.coldplug.modules(&index)?;
    for raw in &opts.extra_modules {
        let found = index.resolve(raw);
        if found.is_empty() {
            return Err(BuildError::ExtraModule(format!(
                "--extra-modules {raw:?}: no module or alias of that name in {}",
                dir.display()
            )));
        }
        coldplug_notes.push(format!(
            "--extra-modules {raw}: {}",
            found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ));
        coldplug.extend(found.into_iter().filter(|m| !index.is_builtin(m)));
    }
    let first = modules::select_in(
        &manifest,
        dir,
        &index,
        &aliases,
        &coldplug,
        opts.module_compression,
    )?;
    let (merged, mut notes) = modprobe::merge(&manifest, &config, &first.plan);
    let (manifest, manifest_bytes, mut selection) = if merged == manifest {
        (manifest, manifest_bytes, first)
    } else {
        let selection = modules::select_in(
            &merged,
            dir,
            &index,
            &aliases,
            &coldplug,
            opts.module_compression,
        )?;
        let bytes = merged.to_json();
        (merged, bytes, selection)
    };
    for (pattern, module) in &aliases {
        if selection.plan.node(module).is_some() {
            notes.push(format!(
                "modprobe.d: alias {pattern} {module} → the image's modules.alias"
            ));
        }
    }
    let params = modules::module_params(&selection)?;
    let mut warnings: Vec<String> = config
        .warnings
        .iter()
        .map(|w| format!("modprobe.d: {w}"))
        .collect();
    warnings.extend(modules::check_params(
        &manifest,
        &selection.plan,
        &params,
        opts.allow_unknown_params,
    )?);
    selection.index.push((
        modinfo::PARAMS_FILE,
        modinfo::write_params_file(&params.0).into_bytes(),
    ));
    modules::verify_pruned(&manifest, &selection)?;
    // Resolved once, here: /init reads only this file.
    let compiled =
        crate::index::compile(&opts.kernel_release, &manifest, &selection.index, &params.0)?;
    if !opts.depmod_text {
        selection.index.clear();
    }
    selection
        .index
        .push((modules_manifest::compiled::INDEX_FILE, compiled));
    notes.extend(coldplug_notes);
    warnings.append(&mut selection.warnings);
    selection.notes = notes;
    selection.warnings = warnings;
    Ok((manifest, manifest_bytes, selection))
}

/// Builds the image and writes it to `opts.output` atomically (temporary
/// file in the same directory, fsync, rename): on any error the output
/// path is untouched.
pub fn build(opts: &Options) -> Result<Summary, BuildError> {
    let (tree, selection, manifest, firmware) = assemble(opts)?;
    let (cpio, uncompressed) = tree.write_cpio(opts.mtime, Vec::new())?;
    let compressed = opts
        .compress
        .compress(&cpio)
        .map_err(|source| BuildError::Compress {
            compress: opts.compress.name(),
            source,
        })?;
    drop(cpio);
    let (vendors, mut microcode_notes) =
        crate::microcode::vendors(opts.microcode, opts.host_vendor, &opts.init);
    let microcode = crate::microcode::build(&vendors, &opts.firmware.dirs, opts.mtime)?;
    microcode_notes.extend(microcode.notes.iter().cloned());
    // The early archive first, uncompressed: the kernel's microcode
    // loaders read it before anything else; the unpacker reads both.
    let image = if microcode.archive.is_empty() {
        compressed
    } else {
        let mut image = microcode.archive.clone();
        image.extend_from_slice(&compressed);
        image
    };
    write_atomically(&opts.output, &image)?;

    let mut warnings = selection.warnings.clone();
    warnings.extend(firmware.warnings.iter().cloned());
    if manifest.root.is_none() {
        let present = ImagePath::absolute(&manifest.init.path)
            .ok()
            .is_some_and(|p| tree.get(&p).is_some());
        if !present {
            warnings.push(format!(
                "the manifest has no root and its init {:?} is not in the image: \
                 the boot needs root= on the kernel command line (or --add the init)",
                manifest.init.path
            ));
        }
    }
    let counts = modules::summary_counts(&selection);
    Ok(Summary {
        output: opts.output.clone(),
        compress: opts.compress,
        modules: selection.files.len(),
        builtin: counts.get("builtin").copied().unwrap_or(0),
        decompressed: selection
            .files
            .iter()
            .filter(|f| f.decompress.is_some())
            .count(),
        entries: tree.len(),
        uncompressed_bytes: uncompressed,
        compressed_bytes: (image.len() - microcode.archive.len()) as u64,
        largest: tree.largest_files(5),
        notes: selection
            .notes
            .iter()
            .chain(&selection.plan.notes)
            .chain(&firmware.notes)
            .chain(&microcode_notes)
            .cloned()
            .collect(),
        warnings,
        firmware_files: firmware.files,
        firmware_bytes: firmware.bytes,
        microcode: microcode.blobs,
        microcode_bytes: microcode.archive.len() as u64,
    })
}

fn dir_node(perm: u32) -> Node {
    Node {
        kind: Kind::Dir,
        perm,
    }
}

fn file_node(bytes: Vec<u8>) -> Node {
    Node {
        kind: Kind::File(Content::Bytes(bytes)),
        perm: 0o644,
    }
}

/// Linux's `dev_t` encoding (glibc `gnu_dev_major`/`gnu_dev_minor`).
fn dev_major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Copies a host path into the tree at `dst`. The top-level `src` is
/// followed if it is a symlink (so `--add /bin/sh:/bin/sh` copies the shell,
/// as `cp -H` would); inside a directory, symlinks are kept as symlinks with
/// their target unchanged.
fn add_host_path(
    tree: &mut Tree,
    src: &Path,
    dst: &ImagePath,
    top: bool,
) -> Result<(), BuildError> {
    let io_err = |source| BuildError::AddSource {
        src: src.to_owned(),
        source,
    };
    let meta = if top {
        fs::metadata(src)
    } else {
        fs::symlink_metadata(src)
    }
    .map_err(io_err)?;
    let perm = meta.permissions().mode() & 0o7777;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        tree.insert(dst.clone(), dir_node(perm))?;
        return add_dir_contents(tree, src, Some(dst));
    } else if ft.is_file() {
        Kind::File(Content::HostFile {
            path: src.to_owned(),
            size: meta.len(),
        })
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io_err)?;
        let target = target
            .to_str()
            .ok_or_else(|| BuildError::AddUnsupported {
                src: src.to_owned(),
                what: "symlink target is not valid UTF-8".into(),
            })?
            .to_owned();
        tree.insert(
            dst.clone(),
            Node {
                kind: Kind::Symlink(target),
                perm: 0o777,
            },
        )?;
        return Ok(());
    } else if ft.is_char_device() || ft.is_block_device() {
        let (major, minor) = dev_major_minor(meta.rdev());
        if ft.is_char_device() {
            Kind::CharDev { major, minor }
        } else {
            Kind::BlockDev { major, minor }
        }
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        return Err(BuildError::AddUnsupported {
            src: src.to_owned(),
            what: "sockets cannot go into an image".into(),
        });
    };
    tree.insert(dst.clone(), Node { kind, perm })?;
    Ok(())
}

/// Adds the entries of the host directory `src` below `dst` (the image root
/// when `None`), recursively, symlinks kept.
fn add_dir_contents(
    tree: &mut Tree,
    src: &Path,
    dst: Option<&ImagePath>,
) -> Result<(), BuildError> {
    let io_err = |source| BuildError::AddSource {
        src: src.to_owned(),
        source,
    };
    if dst.is_none() && !fs::metadata(src).map_err(io_err)?.is_dir() {
        return Err(BuildError::AddUnsupported {
            src: src.to_owned(),
            what: "only a directory can be added at /".into(),
        });
    }
    let mut children = Vec::new();
    for entry in fs::read_dir(src).map_err(io_err)? {
        children.push(entry.map_err(io_err)?.file_name());
    }
    children.sort();
    for name in children {
        let child_src = src.join(&name);
        let name = name.to_str().ok_or_else(|| BuildError::AddUnsupported {
            src: child_src.clone(),
            what: "file name is not valid UTF-8".into(),
        })?;
        let child_dst = match dst {
            Some(d) => d.join(name)?,
            None => ImagePath::relative(name)?,
        };
        add_host_path(tree, &child_src, &child_dst, false)?;
    }
    Ok(())
}

/// Writes `bytes` to a temporary file next to `output`, syncs it and renames
/// it over `output`. The temporary file is removed on any failure.
pub fn write_atomically(output: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let out_err = |source| BuildError::Output {
        path: output.to_owned(),
        source,
    };
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".kmodinit-mkimage.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(out_err)?;
    tmp.write_all(bytes).map_err(out_err)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(out_err)?;
    tmp.as_file().sync_all().map_err(out_err)?;
    tmp.persist(output).map_err(|e| out_err(e.error))?;
    Ok(())
}

/// The image path of a module file (its `modules.dep` path in the image),
/// for callers that list the image.
pub fn module_image_path(release: &str, rel: &str) -> Result<ImagePath, PathError> {
    ImagePath::relative("lib/modules")?.join(release)?.join(rel)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (BRIEF)
mod tests {
    use super::*;

    #[test]
    fn add_spec_parses_and_refuses() {
        let a: AddSpec = "/bin/busybox:/bin/busybox".parse().unwrap();
        assert_eq!(a.src, PathBuf::from("/bin/busybox"));
        assert_eq!(a.dst.unwrap().as_str(), "bin/busybox");
        let a: AddSpec = "odd:name:/x".parse().unwrap();
        assert_eq!(a.src, PathBuf::from("odd:name"));

        assert!(matches!(
            "nocolon".parse::<AddSpec>(),
            Err(AddSpecError::NoColon(_))
        ));
        assert!(matches!(
            ":/x".parse::<AddSpec>(),
            Err(AddSpecError::NoColon(_))
        ));
        let e = "a:relative/dst".parse::<AddSpec>().unwrap_err();
        assert!(e.to_string().contains("not absolute"), "{e}");
        let e = "a:/bin/../etc/passwd".parse::<AddSpec>().unwrap_err();
        assert!(e.to_string().contains("\"..\""), "{e}");
        assert_eq!("overlay:/".parse::<AddSpec>().unwrap().dst, None);
    }

    #[test]
    fn dev_t_decoding_matches_linux() {
        // makedev(5, 1) and makedev(259, 65536) as glibc encodes them.
        assert_eq!(dev_major_minor(0x501), (5, 1));
        let (maj, min) = (259u64, 65536u64);
        let big =
            ((maj & 0xfff) << 8) | ((maj & !0xfff) << 32) | (min & 0xff) | ((min & !0xff) << 12);
        assert_eq!(dev_major_minor(big), (259, 65536));
    }
}

//! Firmware in the image: the files the image's modules name in their
//! `.modinfo` (`firmware=`, from `MODULE_FIRMWARE`), found as the kernel's
//! firmware loader finds them, copied under `/lib/firmware` at the place
//! they were found, and `modules.firmware` (module → its firmware names)
//! for `/init`, which names the module behind a request the kernel could
//! not satisfy.
//!
//! The kernel's order (drivers/base/firmware_loader/main.c, `fw_path`):
//! for each suffix it decompresses (none first, then `.zst`, then `.xz`,
//! as its configuration allows), `updates/RELEASE`, `updates`, `RELEASE`,
//! then the directory itself. A name found nowhere is a warning naming the
//! module and the file, never an error: firmware often lives in non-free
//! packages a build host may lack.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use modules_manifest::firmware::{self as fw, ModuleFirmware};
use modules_manifest::ModuleName;

use crate::modules::{ModuleFile, ModulesError};
use crate::params::elf_of_file;
use crate::tree::{Conflict, Content, ImagePath, Kind, Node, PathError, Tree};

/// `--firmware`: carry the modules' firmware files or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FirmwareMode {
    /// The files the image's modules name, from the firmware directories.
    Auto,
    /// No firmware file (the image still lists which module names which
    /// firmware, so a failed request names its module at boot).
    None,
}

/// Where the firmware files go in the image.
pub const IMAGE_DIR: &str = "lib/firmware";

/// The largest firmware file decompressed to be re-compressed (bytes).
const MAX_FIRMWARE_BYTES: u64 = 256 << 20;

/// The compressed variants the kernel reads besides the plain file, in
/// its order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFirmware {
    /// e.g. `[".zst", ".xz"]`; empty: plain files only.
    pub suffixes: Vec<&'static str>,
    /// Where that came from, for the summary.
    pub origin: String,
}

impl KernelFirmware {
    /// From the kernel's configuration (`boot/config-RELEASE` text):
    /// `CONFIG_FW_LOADER_COMPRESS_ZSTD=y` adds `.zst`,
    /// `CONFIG_FW_LOADER_COMPRESS_XZ=y` adds `.xz`, and so does
    /// `CONFIG_FW_LOADER_COMPRESS=y` alone (kernels before 5.19 had only xz).
    pub fn from_config(text: &str, origin: &str) -> KernelFirmware {
        let set = |key: &str| text.lines().any(|l| l.trim() == format!("{key}=y"));
        let mentioned = |key: &str| text.lines().any(|l| l.contains(key));
        let mut suffixes = Vec::new();
        if set("CONFIG_FW_LOADER_COMPRESS") {
            if set("CONFIG_FW_LOADER_COMPRESS_ZSTD") {
                suffixes.push(".zst");
            }
            if set("CONFIG_FW_LOADER_COMPRESS_XZ") || !mentioned("CONFIG_FW_LOADER_COMPRESS_XZ") {
                suffixes.push(".xz");
            }
        }
        KernelFirmware {
            suffixes,
            origin: origin.to_owned(),
        }
    }

    /// `MODULES_ROOT/boot/config-RELEASE` if it exists, else xz (what
    /// Debian's and most distributions' kernels read).
    pub fn for_kernel(modules_root: &Path, release: &str) -> KernelFirmware {
        let config = modules_root.join("boot").join(format!("config-{release}"));
        match fs::read_to_string(&config) {
            Ok(text) => KernelFirmware::from_config(&text, &config.display().to_string()),
            Err(_) => KernelFirmware {
                suffixes: vec![".xz"],
                origin: format!("no {}: assuming xz", config.display()),
            },
        }
    }
}

/// What the build needs to know.
#[derive(Debug, Clone)]
pub struct FirmwareOptions {
    pub mode: FirmwareMode,
    /// Searched in order (`--firmware-dir`, default `MODULES_ROOT/lib/firmware`).
    pub dirs: Vec<PathBuf>,
    pub release: String,
    pub kernel: KernelFirmware,
}

/// Why firmware could not be added (a missing file is only a warning).
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error(transparent)]
    Module(#[from] ModulesError),
    #[error("firmware file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Conflict(#[from] Conflict),
}

/// The firmware part of an image.
#[derive(Debug, Clone, Default)]
pub struct FirmwareSelection {
    /// Members under [`IMAGE_DIR`]: files, and symlinks to them.
    pub members: BTreeMap<ImagePath, Node>,
    /// Every module of the image that names firmware, with its names.
    pub declared: BTreeMap<ModuleName, BTreeSet<String>>,
    /// Regular files added and their bytes.
    pub files: usize,
    pub bytes: u64,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

impl FirmwareSelection {
    /// `modules.firmware` (empty when no module names firmware).
    pub fn index_file(&self) -> Vec<u8> {
        fw::write_firmware_file(&self.declared).into_bytes()
    }

    /// Adds the members to the image.
    pub fn insert_into(&self, tree: &mut Tree) -> Result<(), Conflict> {
        for (path, node) in &self.members {
            tree.insert(path.clone(), node.clone())?;
        }
        Ok(())
    }
}

/// Reads every module file's `firmware=` records and, unless the mode is
/// [`FirmwareMode::None`], finds each name and prepares its members.
pub fn select(
    files: &[ModuleFile],
    opts: &FirmwareOptions,
) -> Result<FirmwareSelection, FirmwareError> {
    let mut out = FirmwareSelection::default();
    // firmware name → the modules naming it, in plan order.
    let mut wanted: BTreeMap<String, Vec<ModuleName>> = BTreeMap::new();
    for f in files {
        let elf = elf_of_file(&f.source)?;
        // A file without a readable .modinfo names no firmware; the
        // parameter check already warns about it.
        let Ok(info) = fw::module_firmware(&elf) else {
            continue;
        };
        let module = info
            .name
            .clone()
            .or_else(|| name_from_path(&f.rel))
            .ok_or_else(|| ModulesError::ModuleParams {
                path: f.source.clone(),
                why: "no module name in .modinfo nor in the file name".into(),
            })?;
        note_refused(&mut out, &module, &info);
        if info.firmware.is_empty() {
            continue;
        }
        for name in &info.firmware {
            wanted.entry(name.clone()).or_default().push(module.clone());
        }
        out.declared
            .entry(module)
            .or_default()
            .extend(info.firmware.iter().cloned());
    }
    if opts.mode == FirmwareMode::None {
        if !wanted.is_empty() {
            out.notes.push(format!(
                "--firmware none: {} firmware file(s) named by the image's modules left out",
                wanted.len()
            ));
        }
        return Ok(out);
    }
    let dirs = canonical_dirs(&opts.dirs);
    // module → the names it lacks: one warning per module (iwlwifi names
    // dozens of files, one per hardware revision).
    let mut missing: BTreeMap<&ModuleName, Vec<&str>> = BTreeMap::new();
    for (name, modules) in &wanted {
        match lookup(name, &dirs, opts) {
            Some(found) => add_found(&mut out, name, &found, modules)?,
            None => {
                for m in modules {
                    missing.entry(m).or_default().push(name);
                }
            }
        }
    }
    for (module, names) in missing {
        out.warnings
            .push(missing_warning(module, &names, &dirs, opts));
    }
    Ok(out)
}

fn note_refused(out: &mut FirmwareSelection, module: &ModuleName, info: &ModuleFirmware) {
    for r in &info.refused {
        out.warnings.push(format!(
            "module {module}: firmware name {r:?} is not a plain relative path; not carried"
        ));
    }
}

/// `kernel/drivers/net/foo-bar.ko.xz` → `foo_bar`.
fn name_from_path(rel: &str) -> Option<ModuleName> {
    let base = rel.rsplit('/').next()?;
    ModuleName::new(base.split(".ko").next()?).ok()
}

/// Each directory with its canonical path (symlinks in it are resolved
/// against that); a directory that does not exist is kept, to be named in
/// warnings, and finds nothing.
fn canonical_dirs(dirs: &[PathBuf]) -> Vec<(PathBuf, Option<PathBuf>)> {
    dirs.iter()
        .map(|d| (d.clone(), fs::canonicalize(d).ok()))
        .collect()
}

/// A firmware file found on the host.
#[derive(Debug)]
struct Found {
    /// The path the kernel would open, relative to its firmware directory
    /// (e.g. `updates/x.bin.xz`).
    rel: String,
    /// The firmware directory's canonical path.
    dir: PathBuf,
    /// The file itself, all symlinks resolved.
    real: PathBuf,
}

/// The kernel's search, over every directory of `dirs` in turn.
fn lookup(
    name: &str,
    dirs: &[(PathBuf, Option<PathBuf>)],
    opts: &FirmwareOptions,
) -> Option<Found> {
    let subdirs = [
        format!("updates/{}/", opts.release),
        "updates/".to_owned(),
        format!("{}/", opts.release),
        String::new(),
    ];
    for suffix in std::iter::once("").chain(opts.kernel.suffixes.iter().copied()) {
        for (_, canonical) in dirs {
            let Some(dir) = canonical else { continue };
            for sub in &subdirs {
                let rel = format!("{sub}{name}{suffix}");
                let path = dir.join(&rel);
                // The kernel follows symlinks; a dangling one is no file.
                if !fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                    continue;
                }
                let real = fs::canonicalize(&path).unwrap_or(path);
                return Some(Found {
                    rel,
                    dir: dir.clone(),
                    real,
                });
            }
        }
    }
    None
}

fn missing_warning(
    module: &ModuleName,
    names: &[&str],
    dirs: &[(PathBuf, Option<PathBuf>)],
    opts: &FirmwareOptions,
) -> String {
    let where_: Vec<String> = dirs
        .iter()
        .map(|(d, c)| {
            if c.is_some() {
                d.display().to_string()
            } else {
                format!("{} (missing)", d.display())
            }
        })
        .collect();
    let mut variants = String::from("as is");
    for s in &opts.kernel.suffixes {
        variants.push_str(&format!(", {s}"));
    }
    let (files, it) = if names.len() == 1 {
        ("", "it")
    } else {
        ("files ", "them")
    };
    let mut w = format!(
        "module {module}: firmware {files}{} not found in {} (looked for {variants} in \
         updates/{rel}, updates, {rel} and the directory itself): the image is built without \
         {it}, and the driver may fail to probe at boot",
        names.join(", "),
        where_.join(", "),
        rel = opts.release,
    );
    // A variant this kernel does not decompress is worth a hint.
    for name in names {
        for (_, c) in dirs {
            let Some(dir) = c else { continue };
            for s in [".zst", ".xz"] {
                if !opts.kernel.suffixes.contains(&s) && dir.join(format!("{name}{s}")).is_file() {
                    w.push_str(&format!(
                        "; {name}{s} exists but this kernel does not read {s} firmware ({})",
                        opts.kernel.origin
                    ));
                }
            }
        }
    }
    w
}

/// Adds a found file: as a regular file at the place it was found, or, if
/// that path is a symlink to a file inside the firmware directory, as the
/// target file and a relative symlink to it (firmware trees share files
/// between names this way). A `.xz` file whose integrity check the
/// kernel's decoder does not take is re-compressed with CRC32.
fn add_found(
    out: &mut FirmwareSelection,
    name: &str,
    found: &Found,
    modules: &[ModuleName],
) -> Result<(), FirmwareError> {
    let at = ImagePath::relative(IMAGE_DIR)?.join(&found.rel)?;
    let target_rel = found
        .real
        .strip_prefix(&found.dir)
        .ok()
        .and_then(Path::to_str)
        .filter(|r| *r != found.rel && fw::is_plain_name(r))
        .map(str::to_owned);
    let file_at = match &target_rel {
        Some(t) => {
            let link = relative_link(&found.rel, t);
            out.members.entry(at.clone()).or_insert(Node {
                kind: Kind::Symlink(link),
                perm: 0o777,
            });
            ImagePath::relative(IMAGE_DIR)?.join(t)?
        }
        None => at.clone(),
    };
    if out.members.contains_key(&file_at) {
        return Ok(());
    }
    let content = content_of(out, &found.real, &found.rel, modules, name)?;
    out.files += 1;
    out.bytes += content.size();
    out.members.insert(
        file_at,
        Node {
            kind: Kind::File(content),
            perm: 0o644,
        },
    );
    Ok(())
}

/// The symlink at `from` (relative to the firmware directory) that points
/// at `to` (also relative to it): `a/b/x` → `c/y` is `../../c/y`.
fn relative_link(from: &str, to: &str) -> String {
    let depth = from.matches('/').count();
    let mut link = "../".repeat(depth);
    link.push_str(to);
    link
}

/// The bytes to store for `real`: the file itself, or for an `.xz` whose
/// check the kernel's decoder refuses (CRC64, SHA-256), the same data
/// re-compressed with CRC32.
fn content_of(
    out: &mut FirmwareSelection,
    real: &Path,
    rel: &str,
    modules: &[ModuleName],
    name: &str,
) -> Result<Content, FirmwareError> {
    let read_err = |source| FirmwareError::Read {
        path: real.to_owned(),
        source,
    };
    let size = fs::metadata(real).map_err(read_err)?.len();
    if !rel.ends_with(".xz") {
        return Ok(Content::HostFile {
            path: real.to_owned(),
            size,
        });
    }
    let mut head = [0u8; 12];
    let n = fs::File::open(real)
        .and_then(|mut f| f.read(&mut head))
        .map_err(read_err)?;
    match xz_check(&head[..n]) {
        Some(XZ_CHECK_NONE | XZ_CHECK_CRC32) => Ok(Content::HostFile {
            path: real.to_owned(),
            size,
        }),
        check => {
            let what = match check {
                Some(XZ_CHECK_CRC64) => "CRC64".to_owned(),
                Some(XZ_CHECK_SHA256) => "SHA-256".to_owned(),
                Some(other) => format!("check type {other}"),
                None => "no xz header".to_owned(),
            };
            let raw = fs::read(real).map_err(read_err)?;
            match recompress_crc32(&raw) {
                Ok(bytes) => {
                    out.notes.push(format!(
                        "firmware {rel} ({}): re-compressed with CRC32 (the file has {what}, \
                         which the kernel's xz decoder refuses)",
                        module_list(modules)
                    ));
                    Ok(Content::Bytes(bytes))
                }
                Err(e) => {
                    out.warnings.push(format!(
                        "module {}: firmware {name}: {} ({what}) cannot be re-compressed ({e}); \
                         stored as is, the kernel will likely fail to decompress it",
                        module_list(modules),
                        real.display()
                    ));
                    Ok(Content::HostFile {
                        path: real.to_owned(),
                        size,
                    })
                }
            }
        }
    }
}

fn module_list(modules: &[ModuleName]) -> String {
    modules
        .iter()
        .map(ModuleName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// xz's integrity check types (xz file format, 2.1.1.2).
pub const XZ_CHECK_NONE: u8 = 0;
pub const XZ_CHECK_CRC32: u8 = 1;
pub const XZ_CHECK_CRC64: u8 = 4;
pub const XZ_CHECK_SHA256: u8 = 10;

/// The check type of an xz stream header (`None`: not an xz stream).
pub fn xz_check(head: &[u8]) -> Option<u8> {
    if head.len() < 8 || &head[..6] != b"\xFD7zXZ\0" || head[6] != 0 {
        return None;
    }
    Some(head[7] & 0x0f)
}

/// Decompresses an xz stream (at most [`MAX_FIRMWARE_BYTES`]) and
/// compresses it again, LZMA2 preset 6, CRC32 check. Deterministic.
pub fn recompress_crc32(xz: &[u8]) -> io::Result<Vec<u8>> {
    let mut plain = Vec::new();
    xz2::read::XzDecoder::new(xz)
        .take(MAX_FIRMWARE_BYTES + 1)
        .read_to_end(&mut plain)?;
    if plain.len() as u64 > MAX_FIRMWARE_BYTES {
        return Err(io::Error::other(format!(
            "decompresses to more than {MAX_FIRMWARE_BYTES} bytes"
        )));
    }
    let stream = xz2::stream::Stream::new_easy_encoder(6, xz2::stream::Check::Crc32)
        .map_err(io::Error::other)?;
    let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    enc.write_all(&plain)?;
    enc.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn kernel_config_decides_the_suffixes() {
        let debian_61 = "CONFIG_FW_LOADER_COMPRESS=y\nCONFIG_FW_LOADER_COMPRESS_XZ=y\n\
                         # CONFIG_FW_LOADER_COMPRESS_ZSTD is not set\n";
        assert_eq!(
            KernelFirmware::from_config(debian_61, "c").suffixes,
            [".xz"]
        );
        let bpo = "CONFIG_FW_LOADER_COMPRESS=y\nCONFIG_FW_LOADER_COMPRESS_XZ=y\n\
                   CONFIG_FW_LOADER_COMPRESS_ZSTD=y\n";
        assert_eq!(
            KernelFirmware::from_config(bpo, "c").suffixes,
            [".zst", ".xz"]
        );
        let old = "CONFIG_FW_LOADER_COMPRESS=y\n";
        assert_eq!(KernelFirmware::from_config(old, "c").suffixes, [".xz"]);
        let zstd_only = "CONFIG_FW_LOADER_COMPRESS=y\n# CONFIG_FW_LOADER_COMPRESS_XZ is not set\n\
                         CONFIG_FW_LOADER_COMPRESS_ZSTD=y\n";
        assert_eq!(
            KernelFirmware::from_config(zstd_only, "c").suffixes,
            [".zst"]
        );
        let none = "# CONFIG_FW_LOADER_COMPRESS is not set\n";
        assert!(KernelFirmware::from_config(none, "c").suffixes.is_empty());
    }

    #[test]
    fn xz_checks_and_recompression() {
        let data = b"firmware bytes ".repeat(100);
        let mut crc64 = Vec::new();
        let stream = xz2::stream::Stream::new_easy_encoder(6, xz2::stream::Check::Crc64).unwrap();
        let mut enc = xz2::write::XzEncoder::new_stream(&mut crc64, stream);
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        assert_eq!(xz_check(&crc64), Some(XZ_CHECK_CRC64));
        let fixed = recompress_crc32(&crc64).unwrap();
        assert_eq!(xz_check(&fixed), Some(XZ_CHECK_CRC32));
        assert_eq!(recompress_crc32(&crc64).unwrap(), fixed, "deterministic");
        let mut back = Vec::new();
        xz2::read::XzDecoder::new(&fixed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(xz_check(b"plain data"), None);
        assert!(recompress_crc32(b"\xFD7zXZ\0\0\x04garbage").is_err());
    }

    #[test]
    fn links_and_names() {
        assert_eq!(relative_link("a.bin", "b.bin"), "b.bin");
        assert_eq!(relative_link("v/a.bin", "w/b.bin"), "../w/b.bin");
        assert_eq!(relative_link("updates/v/a.bin", "b.bin"), "../../b.bin");
        assert_eq!(
            name_from_path("kernel/drivers/net/foo-bar.ko.xz")
                .unwrap()
                .as_str(),
            "foo_bar"
        );
    }
}

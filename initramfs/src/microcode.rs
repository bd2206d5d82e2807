//! Early microcode: an uncompressed newc archive placed before the
//! compressed image, holding `kernel/x86/microcode/GenuineIntel.bin` and
//! `AuthenticAMD.bin`. The kernel's x86 microcode loaders look for them
//! there before anything else runs (Documentation/arch/x86/microcode.rst),
//! so CPU errata are fixed before the first instruction of user space;
//! the initramfs unpacker then reads this archive and the compressed one
//! after it.
//!
//! The sources are the layout of Debian's `intel-microcode` and
//! `amd64-microcode` packages under a firmware directory:
//! `intel-ucode/FF-MM-SS` (every file, concatenated as the Intel loader
//! scans them) and `amd-ucode/*.bin` (containers, concatenated: the AMD
//! loader walks one container after another).
//!
//! x86 only. arm64 has no early microcode: its CPU errata are worked
//! around by the firmware (TF-A) before the kernel starts and by the
//! kernel's own errata code (`arm64_errata`), so an arm64 image gets no
//! such archive.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::tree::{Content, ImagePath, Kind, Node, Tree, WriteError};

/// `--microcode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MicrocodeMode {
    /// The building machine's CPU vendor when the image is for the
    /// running kernel (same release, `--modules-root /`), else none.
    Auto,
    /// Both vendors.
    All,
    /// No microcode archive.
    None,
}

/// A CPU vendor with an early microcode loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vendor {
    Intel,
    Amd,
}

impl Vendor {
    /// The `vendor_id` of `/proc/cpuinfo`.
    pub fn id(self) -> &'static str {
        match self {
            Vendor::Intel => "GenuineIntel",
            Vendor::Amd => "AuthenticAMD",
        }
    }

    /// The file the kernel reads from the early archive.
    pub fn image_path(self) -> String {
        format!("kernel/x86/microcode/{}.bin", self.id())
    }

    /// The package directory under a firmware directory, and which of its
    /// files count.
    fn source(self) -> (&'static str, fn(&str) -> bool, &'static str) {
        match self {
            Vendor::Intel => ("intel-ucode", |_| true, "intel-microcode"),
            Vendor::Amd => ("amd-ucode", |n| n.ends_with(".bin"), "amd64-microcode"),
        }
    }
}

/// The vendor named by `/proc/cpuinfo`'s first `vendor_id` line.
pub fn vendor_in_cpuinfo(cpuinfo: &str) -> Option<Vendor> {
    let id = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("vendor_id"))?
        .trim_start()
        .strip_prefix(':')?
        .trim();
    [Vendor::Intel, Vendor::Amd]
        .into_iter()
        .find(|v| v.id() == id)
}

/// ELF `e_machine` of x86 (`EM_386`, `EM_X86_64`).
const X86_MACHINES: [u16; 2] = [3, 62];

/// Whether `init` (the image's `/init`) is an x86 program: the image is
/// for an x86 machine. A file that is not ELF counts as x86 (a script
/// `/init` in tests).
pub fn init_is_x86(init: &Path) -> io::Result<bool> {
    let mut head = [0u8; 20];
    let n = io::Read::read(&mut fs::File::open(init)?, &mut head)?;
    if n < 20 || &head[..4] != b"\x7fELF" {
        return Ok(true);
    }
    let machine = if head[5] == 2 {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    Ok(X86_MACHINES.contains(&machine))
}

/// The vendors `mode` asks for, and a note when that is none for a
/// reason the user may not expect. `host`: the building machine's vendor
/// when the image is for the running kernel. An `init` that is not x86
/// gets none (see the module doc for arm64).
pub fn vendors(
    mode: MicrocodeMode,
    host: Option<Vendor>,
    init: &Path,
) -> (Vec<Vendor>, Vec<String>) {
    let wanted = match mode {
        MicrocodeMode::None => return (Vec::new(), Vec::new()),
        MicrocodeMode::All => vec![Vendor::Intel, Vendor::Amd],
        MicrocodeMode::Auto => host.into_iter().collect(),
    };
    if wanted.is_empty() {
        return (Vec::new(), Vec::new());
    }
    if !init_is_x86(init).unwrap_or(true) {
        return (
            Vec::new(),
            vec![format!(
                "--microcode: {} is not an x86 program, so no early microcode archive: \
                 only x86 kernels load microcode from the initramfs (arm64's errata are \
                 handled by its firmware and the kernel)",
                init.display()
            )],
        );
    }
    (wanted, Vec::new())
}

/// The early archive, once built.
#[derive(Debug, Clone, Default)]
pub struct Microcode {
    /// The uncompressed newc archive (empty: none).
    pub archive: Vec<u8>,
    /// (image path, source files, bytes) per vendor included.
    pub blobs: Vec<(String, usize, u64)>,
    pub notes: Vec<String>,
}

/// Why the archive could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MicrocodeError {
    #[error("microcode file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Tree(#[from] crate::tree::Conflict),
    #[error(transparent)]
    Path(#[from] crate::tree::PathError),
}

/// Builds the early archive for `vendors` from the firmware directories
/// (the first directory holding a file name wins). A vendor without files
/// is a note; no file at all means no archive.
pub fn build(
    vendors: &[Vendor],
    dirs: &[PathBuf],
    mtime: u32,
) -> Result<Microcode, MicrocodeError> {
    let mut out = Microcode::default();
    let mut tree = Tree::new();
    for &vendor in vendors {
        let (sub, wanted, package) = vendor.source();
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for dir in dirs {
            let Ok(entries) = fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let path = e.path();
                if wanted(&name)
                    && fs::metadata(&path).is_ok_and(|m| m.is_file())
                    && !files.iter().any(|(n, _)| *n == name)
                {
                    files.push((name, path));
                }
            }
        }
        files.sort();
        if files.is_empty() {
            let where_: Vec<String> = dirs
                .iter()
                .map(|d| d.join(sub).display().to_string())
                .collect();
            out.notes.push(format!(
                "no {} microcode in {} (Debian's {package} package installs it): no early \
                 microcode for {} CPUs",
                vendor.id(),
                where_.join(", "),
                vendor.id()
            ));
            continue;
        }
        let mut blob = Vec::new();
        for (_, path) in &files {
            let bytes = fs::read(path).map_err(|source| MicrocodeError::Read {
                path: path.clone(),
                source,
            })?;
            blob.extend_from_slice(&bytes);
        }
        out.blobs
            .push((vendor.image_path(), files.len(), blob.len() as u64));
        tree.insert(
            ImagePath::relative(&vendor.image_path())?,
            Node {
                kind: Kind::File(Content::Bytes(blob)),
                perm: 0o644,
            },
        )?;
    }
    if !tree.is_empty() {
        out.archive = tree.write_cpio(mtime, Vec::new())?.0;
    }
    Ok(out)
}

/// The length of the uncompressed newc archive at the start of `image`
/// (through its trailer, 4-byte aligned), `None` if `image` does not start
/// with one: how the kernel's early loaders and tests find the microcode.
pub fn early_archive_len(image: &[u8]) -> Option<usize> {
    const HEADER: usize = 110;
    let hex = |at: usize| -> Option<usize> {
        let field = std::str::from_utf8(image.get(at..at + 8)?).ok()?;
        usize::from_str_radix(field, 16).ok()
    };
    let align = |n: usize| n.checked_add(3).map(|n| n & !3);
    let mut pos = 0usize;
    loop {
        if image.get(pos..pos + 6)? != b"070701" {
            return None;
        }
        let size = hex(pos + 54)?;
        let namesize = hex(pos + 94)?;
        let name_at = pos + HEADER;
        let name = image.get(name_at..name_at.checked_add(namesize)?.checked_sub(1)?)?;
        let data_at = align(name_at + namesize)?;
        pos = align(data_at.checked_add(size)?)?;
        if name == b"TRAILER!!!" {
            return Some(pos.min(image.len()));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn vendor_from_cpuinfo() {
        let intel = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n";
        assert_eq!(vendor_in_cpuinfo(intel), Some(Vendor::Intel));
        let amd = "processor\t: 0\nvendor_id\t: AuthenticAMD\n";
        assert_eq!(vendor_in_cpuinfo(amd), Some(Vendor::Amd));
        assert_eq!(vendor_in_cpuinfo("vendor_id : HygonGenuine\n"), None);
        assert_eq!(
            vendor_in_cpuinfo("processor : 0\nCPU implementer : 0x41\n"),
            None
        );
    }

    #[test]
    fn archive_concatenates_in_name_order_and_skips_what_the_kernel_skips() {
        let d = tempfile::tempdir().unwrap();
        let fw = d.path();
        fs::create_dir_all(fw.join("intel-ucode")).unwrap();
        fs::create_dir_all(fw.join("amd-ucode")).unwrap();
        fs::write(fw.join("intel-ucode/06-9e-0a"), b"SECOND").unwrap();
        fs::write(fw.join("intel-ucode/06-8e-09"), b"FIRST-").unwrap();
        fs::write(fw.join("amd-ucode/microcode_amd.bin"), b"AMD1").unwrap();
        fs::write(fw.join("amd-ucode/microcode_amd.bin.asc"), b"SIG").unwrap();
        let m = build(&[Vendor::Intel, Vendor::Amd], &[fw.to_owned()], 7).unwrap();
        let members = crate::cpio::read(&m.archive).unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.header.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kernel",
                "kernel/x86",
                "kernel/x86/microcode",
                "kernel/x86/microcode/AuthenticAMD.bin",
                "kernel/x86/microcode/GenuineIntel.bin",
            ]
        );
        assert_eq!(members[3].data, b"AMD1");
        assert_eq!(members[4].data, b"FIRST-SECOND");
        assert!(members.iter().all(|m| m.header.mtime == 7));
        assert_eq!(early_archive_len(&m.archive), Some(m.archive.len()));
        let mut image = m.archive.clone();
        image.extend_from_slice(b"\xFD7zXZ\0rest");
        assert_eq!(early_archive_len(&image), Some(m.archive.len()));
        assert_eq!(early_archive_len(b"\xFD7zXZ\0"), None);

        let none = build(&[Vendor::Amd], &[d.path().join("nowhere")], 0).unwrap();
        assert!(none.archive.is_empty());
        assert!(
            none.notes[0].contains("amd64-microcode"),
            "{:?}",
            none.notes
        );
    }

    #[test]
    fn init_machine() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("init");
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[18] = 62;
        fs::write(&p, &elf).unwrap();
        assert!(init_is_x86(&p).unwrap());
        elf[18] = 183; // EM_AARCH64
        fs::write(&p, &elf).unwrap();
        assert!(!init_is_x86(&p).unwrap());
        fs::write(&p, b"#!/bin/sh\n").unwrap();
        assert!(init_is_x86(&p).unwrap());
    }
}

//! [`RealKernel`]: the module syscalls. The only `unsafe` code of the loader.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use modules_manifest::Compression;

use super::{InsertError, InsertRequest, Inserted, Kernel};
use crate::decompress::{self, MAX_DECOMPRESSED_BYTES};

/// `MODULE_INIT_COMPRESSED_FILE` from `<linux/module.h>` (Linux ≥ 5.17): the
/// kernel decompresses the file itself.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// How many decompressed module images may be in memory at once. Modules are
/// a few MiB at most and early-boot RAM can be tight; two keeps a second
/// decompression overlapping a slow module init without letting a wide pool
/// hold dozens of images.
pub const DECOMPRESSED_IMAGES_IN_MEMORY: usize = 2;

/// The real kernel: `finit_module(2)`, falling back to user-space
/// decompression and `init_module(2)`. Thread-safe.
#[derive(Debug)]
pub struct RealKernel {
    compression_file: PathBuf,
    /// The formats the kernel decompresses itself, read once on first use.
    kernel_formats: OnceLock<Vec<String>>,
    slots: Slots,
    max_decompressed: usize,
    /// Module files opened ahead of the load ([`RealKernel::open_ahead`]).
    opened: HashMap<PathBuf, File>,
}

impl Default for RealKernel {
    fn default() -> Self {
        RealKernel::new()
    }
}

impl RealKernel {
    /// The real kernel, asking `/sys/module/compression` which formats it
    /// decompresses itself.
    pub fn new() -> Self {
        RealKernel::with_compression_file("/sys/module/compression")
    }

    /// As [`RealKernel::new`], reading the kernel's decompression format from
    /// `path` instead (tests).
    pub fn with_compression_file(path: impl Into<PathBuf>) -> Self {
        RealKernel {
            compression_file: path.into(),
            kernel_formats: OnceLock::new(),
            slots: Slots::new(DECOMPRESSED_IMAGES_IN_MEMORY),
            max_decompressed: MAX_DECOMPRESSED_BYTES,
            opened: HashMap::new(),
        }
    }

    /// Opens every module file in `paths` now and inserts from these
    /// descriptors later instead of opening by path. A loader that outlives
    /// the handover needs this: switch_root unlinks the initramfs, and an
    /// open descriptor keeps its file readable. A path that cannot be opened
    /// now is left out: `insert` then opens it by path and reports why that
    /// fails. Returns how many files were opened.
    pub fn open_ahead<'a>(&mut self, paths: impl IntoIterator<Item = &'a Path>) -> usize {
        for p in paths {
            if let Ok(f) = File::open(p) {
                self.opened.insert(p.to_path_buf(), f);
            }
        }
        self.opened.len()
    }

    /// The module file at `path`: a duplicate of the descriptor opened
    /// ahead (rewound: duplicates share their offset), else opened now.
    fn open(&self, path: &Path) -> Result<File, InsertError> {
        if let Some(f) = self.opened.get(path) {
            let dup = f.try_clone().and_then(|mut d| {
                d.seek(SeekFrom::Start(0))?;
                Ok(d)
            });
            return dup.map_err(|e| InsertError {
                errno: e.raw_os_error(),
                message: format!("cannot reuse module file {}: {e}", path.display()),
            });
        }
        open(path)
    }

    /// Refuses modules that decompress to more than `bytes` (default
    /// [`MAX_DECOMPRESSED_BYTES`], 64 MiB).
    pub fn max_decompressed(mut self, bytes: usize) -> Self {
        self.max_decompressed = bytes;
        self
    }

    /// True when the kernel says it decompresses `compression` itself.
    fn kernel_decompresses(&self, compression: Compression) -> bool {
        let Some(name) = compression.kernel_name() else {
            return false;
        };
        self.kernel_formats
            .get_or_init(|| {
                // Absent on kernels without CONFIG_MODULE_DECOMPRESS: that
                // simply means "decompress in user space".
                let formats = std::fs::read_to_string(&self.compression_file)
                    .map(|s| parse_formats(&s))
                    .unwrap_or_default();
                // Once per boot, and only when a compressed module is
                // loaded: which path the boot takes, for whoever reads the log.
                log::info!("{}", formats_message(&self.compression_file, &formats));
                formats
            })
            .iter()
            .any(|f| f == name)
    }

    fn insert_decompressed(
        &self,
        req: &InsertRequest<'_>,
        file: File,
        params: &CString,
    ) -> Result<Inserted, InsertError> {
        let _slot = self.slots.acquire();
        let image = decompress::decompress(req.compression, file, self.max_decompressed)
            .map_err(|e| InsertError::other(format!("{}: {e}", req.path.display())))?;
        init_module(&image, params, req)
    }
}

impl Kernel for RealKernel {
    fn module_file(&self, path: &Path) -> std::io::Result<File> {
        match self.opened.get(path) {
            // A duplicate shares the offset: readers use pread.
            Some(f) => f.try_clone(),
            None => File::open(path),
        }
    }

    fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
        let params = CString::new(req.params).map_err(|_| {
            InsertError::other(format!("parameters {:?} contain a NUL byte", req.params))
        })?;
        let file = self.open(req.path)?;

        if req.compression == Compression::None {
            return match finit_module(&file, &params, 0) {
                Err(libc::ENOSYS) => {
                    // No finit_module (very old kernels): the only case where
                    // an uncompressed module is read into memory.
                    let image = read_bounded(file, req.path, MAX_DECOMPRESSED_BYTES)?;
                    init_module(&image, &params, req)
                }
                r => finish(r, "finit_module", req),
            };
        }

        if self.kernel_decompresses(req.compression) {
            match finit_module(&file, &params, MODULE_INIT_COMPRESSED_FILE) {
                // The kernel refused the flag or the format after all: fall
                // back to user space like kmod does, and say so (it costs
                // boot time, and it means /sys/module/compression lied).
                Err(errno @ (libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)) => {
                    log::warn!("{}", fallback_message(req, errno));
                }
                r => return finish(r, "finit_module", req),
            }
            let file = self.open(req.path)?;
            return self.insert_decompressed(req, file, &params);
        }
        self.insert_decompressed(req, file, &params)
    }
}

/// The format names in the text of `/sys/module/compression` (`xz\n`).
fn parse_formats(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// The boot-log line saying who decompresses modules, given the formats
/// read from `file` (none: the file is absent or empty).
fn formats_message(file: &Path, formats: &[String]) -> String {
    if formats.is_empty() {
        format!(
            "the kernel does not decompress modules itself ({} absent or empty): \
             compressed modules are decompressed in user space",
            file.display()
        )
    } else {
        format!(
            "the kernel decompresses {} modules itself ({})",
            formats.join("/"),
            file.display()
        )
    }
}

/// The warning when `finit_module(MODULE_INIT_COMPRESSED_FILE)` fails with
/// `errno` and the module is decompressed in user space instead.
fn fallback_message(req: &InsertRequest<'_>, errno: i32) -> String {
    format!(
        "{}: finit_module refused to decompress {} in the kernel ({}); \
         decompressing it in user space",
        req.name.as_str(),
        req.path.display(),
        super::errno_name(errno)
    )
}

fn open(path: &Path) -> Result<File, InsertError> {
    File::open(path).map_err(|e| {
        let errno = e.raw_os_error();
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            format!("module file {} does not exist", path.display())
        } else {
            format!("cannot open module file {}: {e}", path.display())
        };
        InsertError { errno, message }
    })
}

fn read_bounded(file: File, path: &Path, limit: usize) -> Result<Vec<u8>, InsertError> {
    let mut image = Vec::new();
    let limit_plus_one = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit_plus_one)
        .read_to_end(&mut image)
        .map_err(|e| InsertError {
            errno: e.raw_os_error(),
            message: format!("cannot read module file {}: {e}", path.display()),
        })?;
    if image.len() > limit {
        return Err(InsertError::other(format!(
            "module file {} is larger than {} MiB",
            path.display(),
            limit >> 20
        )));
    }
    Ok(image)
}

/// Turns a syscall result into the trait's answer: `EEXIST` is success.
fn finish(
    r: Result<(), i32>,
    syscall: &str,
    req: &InsertRequest<'_>,
) -> Result<Inserted, InsertError> {
    match r {
        Ok(()) => Ok(Inserted::Loaded),
        Err(libc::EEXIST) => Ok(Inserted::AlreadyLoaded),
        Err(errno) => Err(InsertError::from_errno(
            errno, syscall, req.path, req.params,
        )),
    }
}

fn init_module(
    image: &[u8],
    params: &CString,
    req: &InsertRequest<'_>,
) -> Result<Inserted, InsertError> {
    // SAFETY: `image` is a live slice for the whole call and the kernel only
    // reads `image.len()` bytes from it; `params` is a NUL-terminated string
    // that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len() as libc::c_ulong,
            params.as_ptr(),
        )
    };
    finish(check(rc), "init_module", req)
}

fn finit_module(file: &File, params: &CString, flags: libc::c_uint) -> Result<(), i32> {
    // SAFETY: the fd is owned by `file`, open for the whole call; `params` is
    // a NUL-terminated string that outlives the call; the kernel reads both
    // and writes nothing into our memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    check(rc)
}

fn check(rc: libc::c_long) -> Result<(), i32> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// A counting semaphore bounding the decompressed images in memory.
#[derive(Debug)]
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(PoisonError::into_inner);
        *free += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn slots_bound_how_many_holders_run_at_once() {
        let slots = Slots::new(2);
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let _slot = slots.acquire();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert_eq!(
            *slots.free.lock().unwrap_or_else(PoisonError::into_inner),
            2
        );
    }

    #[test]
    fn a_module_file_opened_ahead_reads_after_its_path_is_gone() {
        let dir = std::env::temp_dir().join(format!("kmodinit-ahead-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let (kept, other) = (dir.join("kept.ko"), dir.join("other.ko"));
        std::fs::write(&kept, b"kept bytes").unwrap_or_else(|e| panic!("{e}"));
        let mut k = RealKernel::new();
        assert_eq!(k.open_ahead([kept.as_path()]), 1);
        std::fs::remove_file(&kept).unwrap_or_else(|e| panic!("{e}"));
        let mut text = String::new();
        let f = k.module_file(&kept).unwrap_or_else(|e| panic!("{e}"));
        (&f).read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "kept bytes");
        // One not opened ahead is opened by path, and its absence is the error.
        assert!(k.module_file(&other).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn formats_are_parsed_and_named_in_the_boot_log() {
        let file = Path::new("/sys/module/compression");
        assert_eq!(parse_formats("xz\n"), ["xz"]);
        assert_eq!(parse_formats(" zstd  xz \n"), ["zstd", "xz"]);
        assert!(parse_formats("\n").is_empty());
        assert_eq!(
            formats_message(file, &parse_formats("xz\n")),
            "the kernel decompresses xz modules itself (/sys/module/compression)"
        );
        let none = formats_message(file, &[]);
        assert!(
            none.contains("/sys/module/compression absent or empty"),
            "{none}"
        );
        assert!(none.contains("decompressed in user space"), "{none}");
    }

    #[test]
    fn the_fallback_warning_names_module_file_and_errno() {
        let name =
            modules_manifest::ModuleName::new("virtio_blk").unwrap_or_else(|e| panic!("{e}"));
        let path = Path::new("/lib/modules/r/kernel/virtio_blk.ko.xz");
        let req = InsertRequest {
            name: &name,
            path,
            compression: Compression::Xz,
            params: "",
        };
        let w = fallback_message(&req, libc::EOPNOTSUPP);
        assert!(w.starts_with("virtio_blk: "), "{w}");
        assert!(w.contains("/lib/modules/r/kernel/virtio_blk.ko.xz"), "{w}");
        assert!(w.contains("EOPNOTSUPP"), "{w}");
        assert!(w.contains("user space"), "{w}");
    }

    #[test]
    fn kernel_formats_come_from_the_compression_file() {
        let dir = std::env::temp_dir().join(format!("kmodinit-cf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let file = dir.join("compression");
        std::fs::write(&file, "zstd\n").unwrap_or_default();
        let k = RealKernel::with_compression_file(&file);
        assert!(k.kernel_decompresses(Compression::Zstd));
        assert!(!k.kernel_decompresses(Compression::Xz));
        assert!(!k.kernel_decompresses(Compression::None));
        let none = RealKernel::with_compression_file(dir.join("absent"));
        assert!(!none.kernel_decompresses(Compression::Zstd));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

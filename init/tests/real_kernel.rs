//! The real kernel's checks that come before any syscall. Every case here
//! fails before `finit_module`/`init_module` is reached, so the host's kernel
//! is never asked to load anything (these tests may run as root).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};

use kmodinit_init::kernel::{InsertRequest, Kernel, RealKernel};
use modules_manifest::{Compression, ModuleName};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A kernel that never decompresses in-kernel (the compression file does not
/// exist), so compressed modules take the user-space path.
fn kernel() -> RealKernel {
    RealKernel::with_compression_file("/nonexistent/kmodinit-test/compression")
}

fn req<'a>(
    name: &'a ModuleName,
    path: &'a Path,
    c: Compression,
    params: &'a str,
) -> InsertRequest<'a> {
    InsertRequest {
        name,
        path,
        compression: c,
        params,
    }
}

#[test]
fn a_missing_module_file_is_named() {
    let name = ModuleName::new("ghost").unwrap();
    let path = Path::new("/nonexistent/kmodinit-test/ghost.ko");
    for c in [Compression::None, Compression::Xz] {
        let err = kernel().insert(&req(&name, path, c, "")).unwrap_err();
        assert_eq!(err.errno, Some(libc::ENOENT));
        assert!(
            err.message.contains("/nonexistent/kmodinit-test/ghost.ko"),
            "{err}"
        );
        assert!(err.message.contains("does not exist"), "{err}");
    }
}

#[test]
fn params_with_a_nul_byte_are_refused() {
    let name = ModuleName::new("sample").unwrap();
    let path = data("sample.ko");
    let err = kernel()
        .insert(&req(&name, &path, Compression::None, "a=1\0b=2"))
        .unwrap_err();
    assert!(err.message.contains("NUL"), "{err}");
    assert_eq!(err.errno, None);
}

#[test]
fn a_decompression_bomb_is_refused_before_the_kernel_sees_it() {
    let name = ModuleName::new("bomb").unwrap();
    for (c, ext, built) in [
        (Compression::Xz, "xz", cfg!(feature = "xz")),
        (Compression::Zstd, "zst", cfg!(feature = "zstd")),
        (Compression::Gzip, "gz", cfg!(feature = "gzip")),
    ] {
        let path = data(&format!("bomb.ko.{ext}"));
        // A 4 MiB limit keeps the debug-build test fast; the 64 MiB default
        // is covered by tests/decompress.rs.
        let k = kernel().max_decompressed(4 << 20);
        let err = k.insert(&req(&name, &path, c, "")).unwrap_err();
        // Without the decoder it is refused all the same, for that reason.
        let expect = if built {
            "4 MiB"
        } else {
            "decoder: rebuild the image"
        };
        assert!(err.message.contains(expect), "{err}");
        assert!(err.message.contains(&format!("bomb.ko.{ext}")), "{err}");
    }
}

#[test]
fn a_file_that_is_not_in_its_format_is_refused_with_its_path() {
    let name = ModuleName::new("sample").unwrap();
    // The plain sample, claimed to be gzip.
    let path = data("sample.ko");
    let err = kernel()
        .insert(&req(&name, &path, Compression::Gzip, ""))
        .unwrap_err();
    let expect = if cfg!(feature = "gzip") {
        "bad gzip data"
    } else {
        "decoder: rebuild the image"
    };
    assert!(err.message.contains(expect), "{err}");
    assert!(err.message.contains("sample.ko"), "{err}");
}

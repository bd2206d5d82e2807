//! Reading a hostile manifest path: whatever
//! `kmodinit.manifest=` points at, reading stops just past the 1 MiB bound
//! and the error names the file; nothing unbounded is allocated.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;

use kmodinit_init::inputs::{read_manifest, ManifestReadError};

#[test]
fn an_endless_manifest_is_refused_at_the_size_bound() {
    // /dev/zero never ends: before the bound, this read exhausted memory.
    let e = read_manifest(Path::new("/dev/zero")).unwrap_err();
    let m = e.to_string();
    eprintln!("[kmodinit.manifest=/dev/zero] {m}");
    assert!(matches!(e, ManifestReadError::Invalid { .. }), "{m}");
    assert!(m.contains("/dev/zero") && m.contains("limit"), "{m}");
}

#[test]
fn a_directory_as_manifest_is_a_read_error_naming_it() {
    let e = read_manifest(Path::new("/")).unwrap_err();
    let m = e.to_string();
    eprintln!("[kmodinit.manifest=/] {m}");
    assert!(matches!(e, ManifestReadError::Read { .. }), "{m}");
    assert!(m.contains("cannot read the manifest /"), "{m}");
}

#[test]
fn a_missing_manifest_is_no_manifest() {
    assert!(
        read_manifest(Path::new("/nonexistent/kmodinit/manifest.json"))
            .unwrap()
            .is_none()
    );
}

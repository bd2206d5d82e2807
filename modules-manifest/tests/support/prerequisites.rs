//! What the tests that use the host's kernel, QEMU or busybox need, found
//! one way, and the one rule for a missing prerequisite (tests/README.md):
//!
//! - with `CI=true` (where `make deps` installed everything) the test fails,
//!   naming what is missing;
//! - otherwise it prints `skipped: WHAT; run make deps` to stderr and
//!   returns, so a machine without QEMU still runs the rest.
//!
//! Included with `#[path]` (like `kernel_next_arg.rs`) by the tests of
//! modules-manifest and kmodinit-mkimage and by modules-manifest's
//! benchmark: one copy, no crate of its own. The release choice itself is
//! `modules_manifest::release::newest_installed`, the same one the QEMU
//! harness (`kmodinit_qemu::HostKernel::find`) makes.
#![allow(dead_code)] // each includer uses a part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Overrides the root whose `lib/modules/*` and `boot/vmlinuz-*` the tests
/// use (default `/`): `build/bpo-kernel/root` for the extracted backports
/// kernel, or a missing directory to see what a bare machine does.
pub const MODULES_ROOT_VAR: &str = "KMODINIT_TEST_MODULES_ROOT";

/// A kernel found on this machine.
#[derive(Debug, Clone)]
pub struct TestKernel {
    /// `uname -r` of the kernel.
    pub release: String,
    /// `ROOT/lib/modules/RELEASE`, with `modules.dep`.
    pub modules_dir: PathBuf,
    /// `ROOT/boot/vmlinuz-RELEASE` (only from [`kernel`]).
    pub vmlinuz: Option<PathBuf>,
}

/// True when running under CI (`CI=true`): a missing prerequisite fails.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `found`, or `None` after saying the test is skipped; panics instead
/// under `CI=true`. Use as `let Some(x) = require(kernel()) else { return };`.
pub fn require<T>(found: Result<T, String>) -> Option<T> {
    match found {
        Ok(v) => Some(v),
        Err(missing) if in_ci() => {
            panic!("missing test prerequisite with CI=true: {missing}; run make deps")
        }
        Err(missing) => {
            // Straight to the stderr descriptor, not `eprintln!`: the test
            // harness captures the macros, and a skip must be seen.
            let _ = writeln!(std::io::stderr(), "skipped: {missing}; run make deps");
            None
        }
    }
}

/// `$KMODINIT_TEST_MODULES_ROOT`, or `/`.
pub fn modules_root() -> PathBuf {
    std::env::var_os(MODULES_ROOT_VAR)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// `$KVER` when set (the Makefile's), as `HostKernel::find` reads it.
fn wanted_release() -> Option<String> {
    std::env::var("KVER").ok().filter(|v| !v.is_empty())
}

/// The newest module tree `ROOT/lib/modules/*` with a `modules.dep`.
pub fn module_tree() -> Result<TestKernel, String> {
    find(None)
}

/// The newest kernel with both `ROOT/boot/vmlinuz-R` and
/// `ROOT/lib/modules/R/modules.dep` (the one QEMU boots).
pub fn kernel() -> Result<TestKernel, String> {
    find(Some(&modules_root().join("boot")))
}

fn find(boot: Option<&Path>) -> Result<TestKernel, String> {
    let lib_modules = modules_root().join("lib/modules");
    let wanted = wanted_release();
    let what = || {
        let tree = format!(
            "{}/{}/modules.dep",
            lib_modules.display(),
            wanted.as_deref().unwrap_or("*")
        );
        match boot {
            Some(b) => format!("no kernel image {}/vmlinuz-* with {tree}", b.display()),
            None => format!("no module tree {tree}"),
        }
    };
    let release =
        modules_manifest::release::newest_installed(&lib_modules, boot, wanted.as_deref())
            .map_err(|e| format!("{} ({e})", what()))?
            .ok_or_else(what)?;
    Ok(TestKernel {
        vmlinuz: boot.map(|b| b.join(format!("vmlinuz-{release}"))),
        modules_dir: lib_modules.join(&release),
        release,
    })
}

/// `path`, if it is a file.
pub fn file(path: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("no {path}"))
    }
}

/// `program` on `$PATH`, answering `program ARGS` successfully.
pub fn program(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{program} (`{program} {}` failed: {})",
            args.join(" "),
            o.status
        )),
        Err(e) => Err(format!("no {program} ({e})")),
    }
}

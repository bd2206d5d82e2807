//! The kernel's module helper: the same `/init` binary, run by the kernel
//! as `/proc/sys/kernel/modprobe -q -- NAME` when it needs a module
//! (`request_module("fs-vfat")`, `crypto-*`, `net-pf-*`, …).
//!
//! [`run`] is the helper process itself: [`args`] checks what it was asked
//! (fuzzed); it hands the request to the loader child over the socket of
//! [`crate::wire::helper`] if one serves (each module inserted once across
//! the boot's load, coldplug and every request), else loads it from the
//! image itself ([`standalone_in`]: the compiled index of the initramfs'
//! `/lib/modules/RELEASE`; a root without one, as the real root after the
//! handover, has nothing of ours to load). PID 1 installs it
//! (`pid1::helper_install`).

use std::path::Path;
use std::process::ExitCode;

use modules_manifest::{KernelCmdline, Manifest};

pub mod args;

use crate::kernel::SharedKernel;
use crate::loader::engine::LoaderOptions;
use crate::loader::open_world::{Inputs, OpenWorld};
use crate::loader::requests;
use crate::wire::helper::{ask, is_helper_path, Outcome, SOCKET_PATH};

/// The helper process: `argv[1..]` are the kernel's (or a person's)
/// arguments. Exit status as modprobe's: 0 loaded (or already in, or
/// builtin), 1 not found, failed or refused.
pub fn run(args: &[String]) -> ExitCode {
    stdio_on_dev_null();
    let req = match args::parse(args) {
        Ok(r) => r,
        Err(e) => {
            say(&format!("modprobe: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let outcome = match ask(Path::new(SOCKET_PATH), &req.name) {
        Ok((Outcome::NotFound, fallback)) => fall_through(&fallback, &req.name),
        Ok((o, _)) => o,
        // No loader serves (it ended, or none ran): load it ourselves.
        Err(_) => standalone(&req.name),
    };
    match outcome {
        Outcome::Loaded => ExitCode::SUCCESS,
        Outcome::NotFound => {
            if !req.quiet {
                say(&format!(
                    "modprobe: module {} not found in the image",
                    req.name
                ));
            }
            ExitCode::FAILURE
        }
        Outcome::Failed(why) => {
            say(&format!("modprobe: {}: {why}", req.name));
            ExitCode::FAILURE
        }
    }
}

/// Not in the image: the kernel's own helper (the real root's
/// `/sbin/modprobe` after the handover) gets the same request, so the
/// modules of the installed system still load while ours serves. Returns
/// only if there is none or it cannot be run.
fn fall_through(fallback: &str, name: &str) -> Outcome {
    use std::os::unix::process::CommandExt;
    if fallback.starts_with('/') && !is_helper_path(fallback) && Path::new(fallback).is_file() {
        let e = std::process::Command::new(fallback)
            .args(["-q", "--", name])
            .exec();
        say(&format!("modprobe: cannot run {fallback}: {e}"));
    }
    Outcome::NotFound
}

/// (b): no loader serves: resolve and load from `/lib/modules/RELEASE` of
/// the root we run in, as [`standalone_in`] does, with the real kernel.
fn standalone(name: &str) -> Outcome {
    standalone_in(
        Box::new(crate::kernel::RealKernel::new()),
        Path::new("/"),
        Path::new("/proc"),
        name,
    )
}

/// Loads `name` from `root`'s `lib/modules/RELEASE` (the release from
/// `proc`) through a one-request open world (its events go nowhere: no
/// report is open), as the boot would: the kernel command line of `proc`
/// (`modprobe.blacklist=`, `rd.driver.blacklist=` and the blocklist keep
/// a module out whoever asks; `name.param=` is appended), the manifest it
/// names under `root` if it is there (params, blocklist, softdeps), what
/// `proc/modules` lists counted as loaded.
pub fn standalone_in(kernel: SharedKernel, root: &Path, proc: &Path, name: &str) -> Outcome {
    let dir = match crate::inputs::modules_dir(root, proc) {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(format!("kernel release: {e}")),
    };
    // Only an image kmodinit built has one: the real root's own modules
    // are its modprobe's, which the kernel runs again once the loader ends.
    let index = match crate::inputs::read_index(&dir) {
        Ok(c) => c.index,
        Err(crate::inputs::IndexReadError::Missing) => return Outcome::NotFound,
        Err(e) => {
            return Outcome::Failed(format!(
                "{}: {e}",
                dir.join(modules_manifest::compiled::INDEX_FILE).display()
            ))
        }
    };
    let cmdline =
        KernelCmdline::parse(&std::fs::read_to_string(proc.join("cmdline")).unwrap_or_default());
    let manifest_path = root.join(crate::inputs::manifest_path(&cmdline).trim_start_matches('/'));
    let manifest = match crate::inputs::read_manifest(&manifest_path) {
        Ok(Some(m)) => m,
        // Not there (the real root after the handover): no manifest of
        // ours applies; the command line still does.
        Ok(None) => empty_manifest(),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let world = OpenWorld::new(
        kernel,
        Inputs {
            index,
            manifest,
            cmdline,
            loaded: crate::inputs::loaded_modules(proc),
            opts: LoaderOptions {
                modules_dir: dir,
                jobs: 1,
                ..Default::default()
            },
        },
        Box::new(|_| {}),
    );
    requests::serve(&world, name)
}

/// A manifest with nothing in it (no params, no blocklist).
fn empty_manifest() -> Manifest {
    Manifest {
        version: 1,
        chains: Vec::new(),
        modules: Default::default(),
        blocklist: Vec::new(),
        jobs: 0,
        root: None,
        init: Default::default(),
        on_failure: None,
        deadline_ms: None,
        required_timeout_ms: None,
        softdeps: Default::default(),
        coldplug: None,
        measure: None,
        lock_modules: false,
    }
}

/// The kernel runs the helper without fds 0–2: the first descriptors it
/// opens (the socket, a module file) would take their numbers, and a
/// message to "stderr" would land in them. Fill them with `/dev/null`.
fn stdio_on_dev_null() {
    use std::os::fd::IntoRawFd;
    for _ in 0..3 {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            Ok(f) => {
                let fd = f.into_raw_fd();
                if fd > 2 {
                    // 0–2 are open now; this one was not needed.
                    let _ = nix::unistd::close(fd);
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A message for a person: the kernel log (where it reads `kmodinit:
/// modprobe: …`; run by the kernel, the helper has no console) and
/// stderr.
fn say(msg: &str) {
    crate::kmsg::announce(Path::new("/dev"), Path::new("/proc"), &format!("{msg}\n"));
    eprintln!("kmodinit {msg}");
}

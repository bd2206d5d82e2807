//! The kernel's module helper: the same `/init` binary, run by the kernel
//! as `/proc/sys/kernel/modprobe -q -- NAME` when it needs a module
//! (`request_module("fs-vfat")`, `crypto-*`, `net-pf-*`, …).
//!
//! - [`args`]: the face (`argv[0]` named `modprobe`, not PID 1) and the
//!   strict parsing and validation of the request (fuzzed).
//! - [`channel`]: the socket between the helper and the loader child that
//!   serves it while it lives (bounded, deduplicated).
//! - [`request`]: a request through the open world
//!   ([`crate::open_world`]), each module inserted once across the boot's
//!   load, coldplug and every request.
//! - [`install`]: PID 1's side: the helper's path, the kernel's value kept
//!   and put back.
//!
//! [`run`] is the helper process itself: hand the request to the loader
//! child if one serves, else load it from the image itself (the initramfs'
//! `/lib/modules/RELEASE`, or after the handover the real root's, as
//! modprobe would).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use modules_manifest::{DepIndex, Manifest, ModuleName};

pub mod args;
pub mod channel;
pub mod install;
pub mod request;

use crate::open_world::{Inputs, OpenWorld};
use request::Outcome;

/// Where PID 1 installs the helper (a copy of `/init`): under `/run`, so
/// the same path works before and after switch_root.
pub const HELPER_PATH: &str = "/run/kmodinit/modprobe";

/// How long the loader keeps serving after its load and its last request
/// (`kmodinit.helper_linger=MS`): long enough for the real init's first
/// mounts (a filesystem whose module is only in the image), short enough
/// that the image's module files (kept open, so in memory) and the loader
/// go soon. 0: it stops with its load, and PID 1 restores before exec.
pub const DEFAULT_LINGER: std::time::Duration = std::time::Duration::from_secs(30);

/// The socket the loader child serves requests on.
pub const SOCKET_PATH: &str = "/run/kmodinit/helper.sock";

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
    let outcome = match channel::ask(Path::new(SOCKET_PATH), &req.name) {
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
    if fallback.starts_with('/') && fallback != HELPER_PATH && Path::new(fallback).is_file() {
        let e = std::process::Command::new(fallback)
            .args(["-q", "--", name])
            .exec();
        say(&format!("modprobe: cannot run {fallback}: {e}"));
    }
    Outcome::NotFound
}

/// (b): no loader serves: resolve and load from `/lib/modules/RELEASE` of
/// the root we run in, what `/proc/modules` shows skipped, with the
/// image's manifest for params and blocklist if it is there, through a
/// one-request open world (its events go nowhere: no report is open).
fn standalone(name: &str) -> Outcome {
    let dir = match crate::boot::modules_dir(Path::new("/"), Path::new("/proc")) {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(format!("kernel release: {e}")),
    };
    let Ok(index) = DepIndex::load(&dir) else {
        return Outcome::NotFound;
    };
    let Some(manifest) = std::fs::read(crate::boot_config::DEFAULT_MANIFEST)
        .ok()
        .and_then(|b| Manifest::from_json(&b).ok())
        .or_else(empty_manifest)
    else {
        return Outcome::Failed("no manifest".to_owned());
    };
    let world = OpenWorld::new(
        Box::new(crate::kernel::RealKernel::new()),
        Inputs {
            index,
            manifest,
            cmdline: modules_manifest::KernelCmdline::default(),
            loaded: proc_modules(),
            opts: crate::loader::LoaderOptions {
                modules_dir: dir,
                jobs: 1,
                ..Default::default()
            },
        },
        Box::new(|_| {}),
    );
    request::serve(&world, name)
}

/// A manifest with nothing in it (no params, no blocklist).
pub fn empty_manifest() -> Option<Manifest> {
    Manifest::from_json(br#"{"version":1,"chains":[]}"#).ok()
}

/// What `/proc/modules` lists now (empty if unreadable).
pub fn proc_modules() -> BTreeSet<ModuleName> {
    std::fs::read_to_string("/proc/modules")
        .map(|t| modules_manifest::parse_proc_modules(&t))
        .unwrap_or_default()
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

//! `kmodinit manifest-from-host`, the binary as a user runs it: it writes a
//! manifest, `kmodinit plan` plans it, and every loaded module that is not
//! builtin is in the plan. Two machines:
//!
//! - a fixture sysroot over the installed module tree (the newest
//!   `lib/modules/R` with `modules.dep`, `prerequisites::module_tree()`,
//!   moved by `KMODINIT_TEST_MODULES_ROOT`): `proc/modules` lists every
//!   module of the tree as loaded, the root is ext4 on a virtio disk whose
//!   sysfs chain names the tree's `virtio_blk` and `virtio_pci`, with a
//!   superblock holding a known UUID (`tests/support/sysroot.rs`, the
//!   builder the unit tests share). Needs only what `make deps` installs:
//!   without the tree it fails under `CI=true` and is skipped otherwise
//!   (`require()`). Always runs, on any kernel;
//! - this machine itself, when it has loaded modules (`/proc/modules`, not
//!   empty) and their tree (`lib/modules/$(uname -r)/modules.dep`). A
//!   container on a kernel without module support has neither; that is not
//!   a missing prerequisite (`make deps` cannot load modules), so the case
//!   says on stderr that it did not run and passes: the QEMU test
//!   `tests/tests/from_host.rs` covers a real running kernel.
//!
//! The rules one by one, on a small fixture tree, are
//! `src/host_manifest.rs`'s unit tests.

#![allow(clippy::unwrap_used)] // tests may unwrap

#[path = "../../modules-manifest/tests/support/prerequisites.rs"]
mod prerequisites;
#[path = "support/sysroot.rs"]
mod sysroot;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use kmodinit::from_host::{manifest_from_host, HostPaths};
use modules_manifest::{plan, DepIndex, KernelCmdline, Manifest, ModuleName, Plan, PlanInput};
use prerequisites::{module_tree, modules_root, require};
use sysroot::{uuid_text, Sysroot, VirtioRoot, ROOT_PART};

/// The running kernel's loaded modules and its module directory.
fn running_kernel() -> Result<(String, PathBuf, Vec<ModuleName>), String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_err(|e| format!("no /proc/sys/kernel/osrelease ({e})"))?
        .trim()
        .to_owned();
    let text = std::fs::read_to_string("/proc/modules").map_err(|e| {
        format!("no /proc/modules ({e}): a kernel without loadable modules cannot be described")
    })?;
    let loaded: Vec<ModuleName> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| ModuleName::new(n).ok())
        .collect();
    if loaded.is_empty() {
        return Err("no module loaded in /proc/modules".into());
    }
    let dir = modules_root().join("lib/modules").join(&release);
    if !dir.join("modules.dep").is_file() {
        return Err(format!(
            "no module tree {}/modules.dep for the running kernel",
            dir.display()
        ));
    }
    Ok((release, dir, loaded))
}

#[test]
fn the_hosts_manifest_plans_and_covers_every_loaded_module() {
    // Not `require()`: no `make deps` gives a container loaded modules.
    let (release, dir, loaded) = match running_kernel() {
        Ok(found) => found,
        Err(why) => {
            // Straight to the descriptor: the harness captures `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "not run on this machine: {why}; the sysroot case of this file and \
                 the QEMU test tests/tests/from_host.rs cover manifest-from-host"
            );
            return;
        }
    };
    let tmp = std::env::temp_dir().join(format!("kmodinit-fromhost-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let out_file = tmp.join("manifest.json");
    let root = modules_root();
    let exe = env!("CARGO_BIN_EXE_kmodinit");

    // The command as a user runs it.
    let out = Command::new(exe)
        .args(["manifest-from-host", "--output"])
        .arg(&out_file)
        .arg("--modules-root")
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "manifest-from-host failed: {stderr}");
    assert!(out.stdout.is_empty(), "--output given, yet stdout has text");
    assert!(stderr.contains("manifest written to"), "{stderr}");
    let text = std::fs::read(&out_file).unwrap();
    let manifest = Manifest::from_json(&text).unwrap_or_else(|e| panic!("{e}"));

    // `kmodinit plan` accepts it.
    let plan_out = Command::new(exe)
        .args(["plan", "--manifest"])
        .arg(&out_file)
        .arg("--modules-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        plan_out.status.success(),
        "kmodinit plan failed: {}",
        String::from_utf8_lossy(&plan_out.stderr)
    );

    // Every loaded module that is not builtin is a node of the plan.
    let index = DepIndex::load(&dir).unwrap();
    let p = plan_empty_cmdline(&manifest, &index);
    let planned: BTreeSet<&ModuleName> = p.nodes.iter().map(|n| &n.name).collect();
    let missing: Vec<&ModuleName> = loaded
        .iter()
        .filter(|m| !index.is_builtin(m) && index.module(m).is_some())
        .filter(|m| !planned.contains(m))
        .collect();
    assert!(missing.is_empty(), "loaded but not planned: {missing:?}");
    // Loaded modules the index does not know are named in the notes.
    for m in loaded
        .iter()
        .filter(|m| !index.is_builtin(m) && index.module(m).is_none())
    {
        assert!(
            stderr.contains(&format!("{m}: loaded but not in")),
            "{stderr}"
        );
    }

    // The library says the same, with the release it read.
    let lib = manifest_from_host(&HostPaths {
        sysroot: "/".into(),
        modules_root: Some(root.clone()),
        kernel_release: None,
    })
    .unwrap();
    assert_eq!(lib.manifest, manifest);
    assert_eq!(lib.modules_dir, root.join("lib/modules").join(&release));
    // Where the root is a block device, the manifest names it.
    if let Some(r) = &manifest.root {
        assert!(r.fstype.is_some());
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The required chains' entries of `manifest`.
fn required(manifest: &Manifest) -> BTreeSet<&str> {
    manifest
        .chains
        .iter()
        .filter(|c| c.required)
        .flat_map(|c| c.modules.iter().map(|e| e.name.as_str()))
        .collect()
}

#[test]
fn a_sysroot_loading_the_whole_installed_tree_plans_and_covers_every_module() {
    let Some(tree) = require(module_tree()) else {
        return;
    };
    let started = Instant::now();
    let index = DepIndex::load(&tree.modules_dir).unwrap_or_else(|e| panic!("{e}"));
    // Every module of the tree is "loaded", in name order.
    let loaded: BTreeSet<&ModuleName> = index.modules.keys().collect();
    assert!(
        loaded.len() > 100,
        "{} lists {} modules: not a distribution tree",
        tree.modules_dir.display(),
        loaded.len()
    );
    let module = |name: &'static str| {
        let n = ModuleName::new(name).unwrap();
        index.module(&n).is_some().then_some(name)
    };
    let blk = module("virtio_blk");
    let pci = module("virtio_pci");
    let ext4 = module("ext4");

    let sys = Sysroot::new("installed-tree");
    sys.osrelease(&tree.release);
    sys.proc_modules(loaded.iter().map(|m| m.as_str()));
    let uuid = [
        0x6b, 0x6d, 0x6f, 0x64, 0x69, 0x6e, 0x69, 0x74, 0x2d, 0x73, 0x79, 0x73, 0x72, 0x6f, 0x6f,
        0x74,
    ];
    sys.virtio_root(&VirtioRoot {
        fstype: "ext4",
        uuid,
        blk_module: blk,
        pci_module: pci,
    });
    let out_file = sys.root.join("manifest.json");
    let exe = env!("CARGO_BIN_EXE_kmodinit");

    let out = Command::new(exe)
        .arg("manifest-from-host")
        .arg("--sysroot")
        .arg(&sys.root)
        .arg("--modules-root")
        .arg(modules_root())
        .args(["--kernel-release", &tree.release, "--output"])
        .arg(&out_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "manifest-from-host failed: {stderr}");
    assert!(out.stdout.is_empty(), "--output given, yet stdout has text");
    assert!(stderr.contains("manifest written to"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} loaded module(s) of {}",
            loaded.len(),
            tree.release
        )),
        "{stderr}"
    );
    let manifest =
        Manifest::from_json(&std::fs::read(&out_file).unwrap()).unwrap_or_else(|e| panic!("{e}"));

    // `kmodinit plan` accepts it.
    let plan_out = Command::new(exe)
        .args(["plan", "--manifest"])
        .arg(&out_file)
        .arg("--modules-dir")
        .arg(&tree.modules_dir)
        .output()
        .unwrap();
    assert!(
        plan_out.status.success(),
        "kmodinit plan failed: {}",
        String::from_utf8_lossy(&plan_out.stderr)
    );

    // Every listed module is a node of the plan (none is builtin: they
    // come from modules.dep).
    let p = plan_empty_cmdline(&manifest, &index);
    let planned: BTreeSet<&ModuleName> = p.nodes.iter().map(|n| &n.name).collect();
    let missing: Vec<&&ModuleName> = loaded.iter().filter(|m| !planned.contains(*m)).collect();
    assert!(missing.is_empty(), "listed but not planned: {missing:?}");

    // The root: its filesystem's module and the disk's drivers are
    // required (those the tree has as modules; builtin ones are not
    // loaded), the device is the UUID of the superblock written.
    let required = required(&manifest);
    for (what, m) in [
        ("filesystem", ext4),
        ("disk driver", blk),
        ("disk driver", pci),
    ] {
        if let Some(m) = m {
            assert!(
                required.contains(m),
                "{what} {m} not required: {required:?}"
            );
        }
    }
    assert!(
        !required.is_empty(),
        "ext4, virtio_blk and virtio_pci are all builtin in {}: nothing to require",
        tree.release
    );
    for c in manifest.chains.iter().filter(|c| c.required) {
        assert!(c.name.starts_with("root:"), "required chain {}", c.name);
    }
    let root = manifest.root.as_ref().unwrap();
    assert_eq!(
        root.device.as_deref(),
        Some(&*format!("UUID={}", uuid_text(&uuid)))
    );
    assert_eq!(root.fstype.as_deref(), Some("ext4"));
    assert!(
        stderr.contains(&format!("superblock of /dev/{ROOT_PART}")),
        "{stderr}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{} modules of {} listed, {} planned, {} required, in {:?}",
        loaded.len(),
        tree.release,
        planned.len(),
        required.len(),
        started.elapsed()
    );
}

/// The manifest's plan with nothing on the command line and nothing loaded,
/// as the image builder and a first boot make it.
fn plan_empty_cmdline(manifest: &Manifest, index: &DepIndex) -> Plan {
    plan(PlanInput {
        manifest,
        index,
        cmdline: &KernelCmdline::default(),
        loaded: &BTreeSet::new(),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

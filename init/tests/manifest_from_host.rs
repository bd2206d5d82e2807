//! `kmodinit manifest-from-host` on this machine's own modules: the binary
//! writes a manifest, `kmodinit plan` plans it against the running kernel's
//! index, and every loaded module that is not builtin is in the plan.
//!
//! Needs a kernel with loaded modules (`/proc/modules`) and its module tree
//! (`/lib/modules/$(uname -r)/modules.dep`, moved by
//! `KMODINIT_TEST_MODULES_ROOT`): without them the test fails under
//! `CI=true` and is skipped otherwise (`require()`). A fixture-tree version
//! of every rule is in `src/host_manifest.rs`'s unit tests; the QEMU one in
//! `tests/tests/from_host.rs`.

#![cfg(feature = "host-tools")]
#![allow(clippy::unwrap_used)] // tests may unwrap

#[path = "../../modules-manifest/tests/support/prerequisites.rs"]
mod prerequisites;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use kmodinit::host_manifest::{manifest_from_host, HostPaths};
use modules_manifest::{plan, DepIndex, KernelCmdline, Manifest, ModuleName, PlanInput};
use prerequisites::{modules_root, require};

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
    let Some((release, dir, loaded)) = require(running_kernel()) else {
        return;
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
    let p = plan(PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline: &KernelCmdline::default(),
        loaded: &BTreeSet::new(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
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

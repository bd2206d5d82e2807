//! The loader on plans made by the real planner (`modules_manifest::plan`,
//! and `plan_at_boot` for modules that cannot be planned) from a manifest, a
//! depmod index and a command line.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;
use kmodinit_init::kernel::FakeKernel;
use kmodinit_init::report::ModuleState;
use modules_manifest::{
    plan, plan_at_boot, Action, DepIndex, KernelCmdline, Manifest, Plan, PlanInput,
};

/// A slice of a Debian 6.1 index: the contract's virtio + ext4 example, plus
/// a softdep resolved through an alias, a builtin module and a compressed one.
const DEP: &str = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/block/virtio_blk.ko.xz:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
";
const BUILTIN: &str = "kernel/drivers/virtio/virtio.ko\n";
const SOFTDEP: &str = "softdep ext4 pre: crc32c\n";
const ALIAS: &str = "alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\n";

fn plan_for(manifest: &str, cmdline: &str) -> Plan {
    let manifest = Manifest::from_json(manifest.as_bytes()).unwrap();
    let index = DepIndex::parse(DEP, BUILTIN, SOFTDEP, ALIAS).unwrap();
    let cmdline = KernelCmdline::parse(cmdline);
    let loaded = BTreeSet::new();
    plan(PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline: &cmdline,
        loaded: &loaded,
    })
    .unwrap()
}

const MANIFEST: &str = r#"{
  "version": 1,
  "chains": [
    { "name": "storage", "modules": ["virtio_pci", {"name": "virtio-blk", "params": "queue_depth=128"}], "required": true },
    { "name": "fs", "modules": ["ext4"], "required": true },
    { "name": "tune", "modules": [{"name": "crc16", "params": "poly=1"}] },
    { "name": "usb", "modules": ["vfat"] }
  ],
  "modules": { "jbd2": { "params": "journal=quick" } }
}"#;

#[test]
fn the_planned_example_loads_each_module_once_with_its_declared_params() {
    let plan = plan_for(MANIFEST, "root=/dev/vda jbd2.extra=1 quiet");
    for jobs in [1, 4, 32] {
        let k = FakeKernel::new().default_delay(Duration::from_micros(200));
        let r = load_ok(&plan, &k, jobs);
        check_load(&plan, &k, &HashMap::new(), &r, jobs).unwrap();
        // Declared under `modules`, pulled in as ext4's dependency; the
        // command line appends its own.
        assert_eq!(k.calls_for("jbd2")[0].params, "journal=quick extra=1");
        // Declared in chain "tune", also a dependency of ext4 in "fs".
        assert_eq!(k.call_count("crc16"), 1);
        assert_eq!(k.calls_for("crc16")[0].params, "poly=1");
        assert_eq!(k.calls_for("virtio_blk")[0].params, "queue_depth=128");
        assert_eq!(
            k.calls_for("virtio_blk")[0].path,
            std::path::Path::new("/lib/modules/test/kernel/drivers/block/virtio_blk.ko.xz")
        );
        assert_eq!(
            k.calls_for("virtio_blk")[0].compression,
            modules_manifest::Compression::Xz
        );
        // The softdep, resolved through the alias, loads before ext4.
        let crc32c = &k.calls_for("crc32c_generic")[0];
        assert!(crc32c.end_seq < k.calls_for("ext4")[0].start_seq);
        assert!(r.failed_required_chains.is_empty());
        assert!(r.modules.iter().all(|m| m.state == ModuleState::Loaded));
    }
}

#[test]
fn a_failing_dependency_blocks_its_chain_and_is_named_as_the_cause() {
    let plan = plan_for(MANIFEST, "");
    let k = FakeKernel::new().fail("mbcache", libc::ENOMEM);
    let r = load_ok(&plan, &k, 8);
    let outcomes = [(
        "mbcache".to_owned(),
        kmodinit_init::kernel::FakeOutcome::Fail(libc::ENOMEM),
    )]
    .into();
    check_load(&plan, &k, &outcomes, &r, 8).unwrap();
    assert_eq!(r.module("ext4").unwrap().state, ModuleState::Blocked);
    assert_eq!(
        r.module("ext4")
            .unwrap()
            .blocked_by
            .as_ref()
            .unwrap()
            .as_str(),
        "mbcache"
    );
    let fs: Vec<_> = r
        .failed_required_chains
        .iter()
        .map(|f| (f.chain.as_str(), f.module.as_str()))
        .collect();
    assert_eq!(fs, vec![("fs", "mbcache")]);
    // Everything not behind mbcache loaded.
    for m in [
        "virtio_pci",
        "virtio_blk",
        "jbd2",
        "crc16",
        "vfat",
        "fat",
        "crc32c_generic",
    ] {
        assert_eq!(r.module(m).unwrap().state, ModuleState::Loaded, "{m}");
    }
}

#[test]
fn a_command_line_blacklist_skips_and_blocks_through_the_real_planner() {
    let plan = plan_for(MANIFEST, "modprobe.blacklist=fat");
    let k = FakeKernel::new();
    let r = load_ok(&plan, &k, 4);
    check_load(&plan, &k, &HashMap::new(), &r, 4).unwrap();
    assert_eq!(r.module("fat").unwrap().state, ModuleState::Skipped);
    assert_eq!(r.module("vfat").unwrap().state, ModuleState::Blocked);
    assert_eq!(k.call_count("fat") + k.call_count("vfat"), 0);
    // "usb" is optional: not a required failure.
    assert!(r.failed_required_chains.is_empty());
}

#[test]
fn the_reported_critical_path_agrees_with_the_planners() {
    let plan = plan_for(MANIFEST, "");
    let k = FakeKernel::new()
        .default_delay(Duration::from_micros(300))
        .delay("jbd2", Duration::from_millis(4))
        .delay("virtio_pci_modern_dev", Duration::from_millis(2));
    let r = load_ok(&plan, &k, 4);
    let cp = plan.critical_path(|n| r.modules[n.id].duration());
    assert!(
        (cp.cost - r.critical_path_s).abs() < 1e-9,
        "{} vs {}",
        cp.cost,
        r.critical_path_s
    );
    let ours: Vec<usize> = r
        .critical_path
        .iter()
        .map(|n| plan.nodes.iter().position(|p| &p.name == n).unwrap())
        .collect();
    // Same cost; the path itself may differ only between equally long ones.
    let cost_of = |path: &[usize]| path.iter().map(|&i| r.modules[i].duration()).sum::<f64>();
    assert!((cost_of(&ours) - cost_of(&cp.nodes)).abs() < 1e-9);
}

/// `plan_at_boot` of [`MANIFEST`] (and `extra_chains`, JSON chain objects)
/// against [`DEP`] without the line of `missing`.
fn plan_at_boot_without(missing: &str, extra_chains: &str) -> Plan {
    let dep: String = DEP
        .lines()
        .filter(|l| !l.starts_with(&format!("{missing}:")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(dep.len(), DEP.len(), "{missing} has no line in DEP");
    let manifest = MANIFEST.replacen("\"chains\": [", &format!("\"chains\": [{extra_chains}"), 1);
    let manifest = Manifest::from_json(manifest.as_bytes()).unwrap();
    let index = DepIndex::parse(&dep, BUILTIN, SOFTDEP, ALIAS).unwrap();
    let cmdline = KernelCmdline::default();
    let loaded = BTreeSet::new();
    let input = PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline: &cmdline,
        loaded: &loaded,
    };
    // The image builder's strict plan refuses this index.
    assert!(plan(input).is_err());
    plan_at_boot(input).unwrap()
}

fn planner_message(plan: &Plan, module: &str) -> String {
    match &plan
        .nodes
        .iter()
        .find(|n| n.name.as_str() == module)
        .unwrap()
        .action
    {
        Action::Unplannable { error } => error.to_string(),
        other => panic!("{module}: {other:?}"),
    }
}

#[test]
fn an_unplannable_module_in_an_optional_chain_fails_alone() {
    // vfat (chain "usb", optional) depends on fat, which has no line; and
    // chain "extra" names a module nobody has.
    let plan = plan_at_boot_without(
        "kernel/fs/fat/fat.ko",
        r#"{ "name": "extra", "modules": ["crc16", "no_such_module"] },"#,
    );
    let fat_error = planner_message(&plan, "fat");
    assert_eq!(
        fat_error,
        "module vfat depends on fat (modules.dep), but fat has no line of its own in modules.dep"
    );
    for jobs in [1, 4, 32] {
        let k = FakeKernel::new().default_delay(Duration::from_micros(100));
        let r = load_ok(&plan, &k, jobs);
        check_load(&plan, &k, &HashMap::new(), &r, jobs).unwrap();
        let fat = r.module("fat").unwrap();
        assert_eq!(fat.state, ModuleState::Failed);
        assert_eq!(fat.error.as_deref(), Some(fat_error.as_str()));
        let vfat = r.module("vfat").unwrap();
        assert_eq!(vfat.state, ModuleState::Blocked);
        assert_eq!(vfat.blocked_by.as_ref().unwrap().as_str(), "fat");
        let unknown = r.module("no_such_module").unwrap();
        assert_eq!(unknown.state, ModuleState::Failed);
        assert!(
            unknown
                .error
                .as_deref()
                .unwrap()
                .contains("no such module or alias"),
            "{unknown:?}"
        );
        assert_eq!(k.call_count("fat") + k.call_count("vfat"), 0);
        assert_eq!(k.call_count("no_such_module"), 0);
        // Both required chains and the rest of the optional ones loaded.
        assert!(r.failed_required_chains.is_empty(), "{r:?}");
        for m in ["virtio_pci", "virtio_blk", "ext4", "jbd2", "crc16"] {
            assert_eq!(r.module(m).unwrap().state, ModuleState::Loaded, "{m}");
        }
    }
}

#[test]
fn an_unplannable_module_in_a_required_chain_fails_that_chain() {
    // ext4 (chain "fs", required) depends on mbcache, which has no line.
    let plan = plan_at_boot_without("kernel/fs/mbcache.ko", "");
    let message = planner_message(&plan, "mbcache");
    assert!(
        plan.notes.iter().any(|n| n.contains(&message)),
        "{:?}",
        plan.notes
    );
    let k = FakeKernel::new();
    let r = load_ok(&plan, &k, 4);
    check_load(&plan, &k, &HashMap::new(), &r, 4).unwrap();
    assert_eq!(r.module("mbcache").unwrap().state, ModuleState::Failed);
    assert_eq!(r.module("ext4").unwrap().state, ModuleState::Blocked);
    let failed: Vec<_> = r
        .failed_required_chains
        .iter()
        .map(|f| (f.chain.as_str(), f.module.as_str(), f.error.as_str()))
        .collect();
    assert_eq!(failed, vec![("fs", "mbcache", message.as_str())]);
    assert_eq!(r.module("virtio_blk").unwrap().state, ModuleState::Loaded);
    assert_eq!(r.module("vfat").unwrap().state, ModuleState::Loaded);
}

#[test]
fn an_alternative_the_kernel_refuses_is_a_note_and_blocks_nothing() {
    // ext4's softdep alias has two matches, as on Debian; the CPU lacks
    // SSE4.2, so crc32c_intel's init answers ENODEV.
    let dep = format!("{DEP}kernel/arch/x86/crypto/crc32c-intel.ko:\n");
    let index = DepIndex::parse(
        &dep,
        BUILTIN,
        "softdep ext4 pre: crypto-crc32c post: fat\n",
        "alias crypto-crc32c crc32c_generic\nalias crypto-crc32c crc32c_intel\n",
    )
    .unwrap();
    let manifest = Manifest::from_json(
        br#"{"version": 1, "chains": [{"name": "fs", "modules": ["ext4"], "required": true}]}"#,
    )
    .unwrap();
    let loaded = BTreeSet::new();
    let plan = plan(PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline: &KernelCmdline::parse(""),
        loaded: &loaded,
    })
    .unwrap();
    let k = FakeKernel::new().fail("crc32c_intel", libc::ENODEV);
    let r = load_ok(&plan, &k, 4);
    let outcomes = [(
        "crc32c_intel".to_owned(),
        kmodinit_init::kernel::FakeOutcome::Fail(libc::ENODEV),
    )]
    .into();
    check_load(&plan, &k, &outcomes, &r, 4).unwrap();
    // Both tried; the refusal fails no chain and blocks nothing.
    assert_eq!(k.call_count("crc32c_generic"), 1);
    assert_eq!(k.call_count("crc32c_intel"), 1);
    assert!(r.required_ok(), "{:?}", r.failed_required_chains);
    let intel = r.module("crc32c_intel").unwrap();
    assert_eq!(intel.state, ModuleState::Failed);
    assert_eq!(intel.alternative.as_deref(), Some("crypto-crc32c"));
    assert_eq!(intel.reason, "softdep of ext4");
    assert_eq!(
        intel.warnings,
        vec![
            "one of the modules crypto-crc32c matched (crc32c_generic, crc32c_intel), all tried \
             as modprobe does; loaded: crc32c_generic"
                .to_owned()
        ]
    );
    for (m, reason) in [
        ("crc32c_generic", "softdep of ext4"),
        ("ext4", "chain:fs"),
        ("jbd2", "dependency of ext4"),
        ("fat", "softdep of ext4"),
    ] {
        let m = r.module(m).unwrap();
        assert_eq!(m.state, ModuleState::Loaded, "{}", m.name);
        assert_eq!(m.reason, reason, "{}", m.name);
    }
    // The post: softdep went in after its module.
    let (ext4, fat) = (
        k.calls_for("ext4")[0].clone(),
        k.calls_for("fat")[0].clone(),
    );
    assert!(ext4.end_seq < fat.start_seq, "{ext4:?} {fat:?}");
}

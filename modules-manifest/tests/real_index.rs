//! The example manifests planned against the real Debian module index that
//! `make deps` installs: the newest `/lib/modules/*` with a `modules.dep`
//! (`$KMODINIT_TEST_MODULES_ROOT` moves `/`). The expectations are those of
//! Debian's amd64 kernel (virtio and ext4 as modules). Without such a tree
//! the tests fail under `CI=true` and say they are skipped otherwise
//! (support/prerequisites.rs).
#![allow(clippy::unwrap_used)]

#[path = "support/prerequisites.rs"]
mod prerequisites;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use modules_manifest::{
    plan, Action, DepIndex, EdgeKind, KernelCmdline, Manifest, ModuleName, Plan, PlanError,
    PlanInput,
};

/// The host's index and the directory it was read from.
fn real_index() -> Option<(DepIndex, PathBuf)> {
    let tree = prerequisites::require(prerequisites::module_tree())?;
    let idx = DepIndex::load(&tree.modules_dir).unwrap();
    Some((idx, tree.modules_dir))
}

fn example(name: &str) -> Manifest {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    Manifest::from_json(&std::fs::read(&path).unwrap()).unwrap()
}

fn plan_of(m: &Manifest, idx: &DepIndex, cmdline: &str) -> Plan {
    let loaded = BTreeSet::new();
    plan(PlanInput {
        manifest: m,
        index: idx,
        cmdline: &KernelCmdline::parse(cmdline),
        loaded: &loaded,
    })
    .unwrap()
}

fn n(s: &str) -> ModuleName {
    ModuleName::new(s).unwrap()
}

/// Every module exactly once, edges forward, succs mirror preds, every
/// modules.dep dependency of an inserted module present and earlier.
fn check_plan(p: &Plan, idx: &DepIndex, dir: &Path) {
    let mut seen = BTreeSet::new();
    for (i, node) in p.nodes.iter().enumerate() {
        assert_eq!(node.id, i);
        assert!(seen.insert(node.name.clone()), "{} twice", node.name);
        for e in &node.preds {
            assert!(e.from < i);
            assert!(p.nodes[e.from].succs.contains(&i));
        }
        if let Action::Insert { path, .. } = &node.action {
            let entry = idx.module(&node.name).unwrap();
            assert_eq!(&entry.path, path);
            assert!(dir.join(path).exists(), "{path} missing");
            for dep in &entry.deps {
                let d = p
                    .node(dep)
                    .unwrap_or_else(|| panic!("{dep} (dep of {}) missing", node.name));
                assert!(node
                    .preds
                    .iter()
                    .any(|e| e.from == d.id && e.kind == EdgeKind::Dependency));
            }
        }
    }
}

#[test]
fn index_parses_completely() {
    let Some((idx, _)) = real_index() else { return };
    assert!(idx.modules.len() > 4000, "{}", idx.modules.len());
    assert!(idx.aliases.len() > 26000, "{}", idx.aliases.len());
    assert!(!idx.builtin.is_empty());
    assert!(idx.softdep(&n("ext4")).is_some());
    let crc = idx.resolve("crypto-crc32c");
    assert!(
        crc.contains(&n("crc32c_generic")) && crc.contains(&n("crc32c_intel")),
        "{crc:?}"
    );
    // A real PCI modalias of a virtio block device resolves by glob.
    assert!(idx
        .resolve("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00")
        .contains(&n("virtio_pci")));
    assert_eq!(
        idx.resolve("virtio:d00000002v00001AF4"),
        vec![n("virtio_blk")]
    );
    // Aliases of builtin modules come from modules.builtin.modinfo, as
    // `modprobe crypto-dh` finds the builtin dh_generic.
    assert!(
        idx.builtin_aliases.len() >= 50,
        "{}",
        idx.builtin_aliases.len()
    );
    assert_eq!(idx.resolve("crypto-dh"), vec![n("dh_generic")]);
    assert!(idx.is_builtin(&n("dh_generic")));
}

#[test]
fn an_alias_of_a_builtin_module_plans_as_builtin() {
    let Some((idx, _)) = real_index() else { return };
    let m = Manifest::from_json(
        br#"{"version": 1, "chains": [{"name": "x", "required": true,
             "modules": ["crypto-dh", "fs-tracefs", "virtio_blk"]}]}"#,
    )
    .unwrap();
    let p = plan_of(&m, &idx, "");
    let action = |name: &str| {
        let node = p.nodes.iter().find(|x| x.name == n(name));
        node.map(|x| x.action.clone())
    };
    assert_eq!(action("dh_generic"), Some(Action::Builtin), "{p:#?}");
    assert_eq!(action("tracefs"), Some(Action::Builtin), "{p:#?}");
    assert!(matches!(action("virtio_blk"), Some(Action::Insert { .. })));
}

#[test]
fn demo_plans_to_the_virtio_ext4_modules_in_order() {
    let Some((idx, dir)) = real_index() else {
        return;
    };
    let m = example("demo.json");
    let p = plan_of(&m, &idx, "");
    check_plan(&p, &idx, &dir);
    print!("{}", p.render_text());
    for name in [
        "virtio_ring",
        "virtio",
        "virtio_pci_legacy_dev",
        "virtio_pci_modern_dev",
        "virtio_pci",
        "virtio_blk",
        "crc16",
        "mbcache",
        "jbd2",
        "crc32c_generic",
        "crc32c_intel",
        "ext4",
    ] {
        let node = p
            .node(&n(name))
            .unwrap_or_else(|| panic!("{name} not planned"));
        // Both chains are required; the softdep's matches may fail without
        // blocking them, so they are not required.
        assert_eq!(node.required, !name.starts_with("crc32c_"), "{name}");
        assert!(matches!(node.action, Action::Insert { .. }), "{name}");
    }
    assert!(p.nodes.len() >= 11);
    let id = |s: &str| p.node(&n(s)).unwrap().id;
    assert!(id("virtio_ring") < id("virtio") && id("virtio") < id("virtio_pci"));
    assert!(id("virtio_pci") < id("virtio_blk"));
    assert!(id("jbd2") < id("ext4") && id("crc16") < id("ext4") && id("mbcache") < id("ext4"));
    assert!(id("crc32c_generic") < id("jbd2") && id("crc32c_intel") < id("jbd2"));
    // Every match of the alias, as modprobe loads them; the crypto API
    // picks crc32c_intel by priority where the CPU has SSE4.2.
    assert!(p.notes.iter().any(|t| t
        .contains("softdep ext4 pre: crypto-crc32c → crc32c_generic, crc32c_intel (all loaded")));
    let alt = p
        .node(&n("crc32c_intel"))
        .unwrap()
        .alternative
        .clone()
        .unwrap();
    assert_eq!(alt.alias, "crypto-crc32c");
    assert_eq!(alt.providers, vec![n("crc32c_generic"), n("crc32c_intel")]);
}

#[test]
fn server_and_full_examples_plan() {
    let Some((idx, dir)) = real_index() else {
        return;
    };
    let server = example("server.json");
    let entries: usize = server.chains.iter().map(|c| c.modules.len()).sum();
    assert!(entries >= 90, "{entries}");
    let p = plan_of(&server, &idx, "loop.max_part=8");
    check_plan(&p, &idx, &dir);
    assert!(p.nodes.len() > entries);
    assert_eq!(p.node(&n("loop")).unwrap().params, "max_loop=16 max_part=8");
    assert_eq!(p.node(&n("virtio_blk")).unwrap().params, "queue_depth=128");

    let full = example("full.json");
    assert!(full.root.is_some() && full.on_failure.is_some() && !full.init.args.is_empty());
    let p = plan_of(&full, &idx, "");
    check_plan(&p, &idx, &dir);
    assert!(p.node(&n("crc32c_intel")).is_none());
    assert_eq!(p.node(&n("virtio_pci")).unwrap().params, "force_legacy=0");
}

#[test]
fn every_mistake_in_a_manifest_is_refused_with_a_clear_message() {
    let Some((idx, _)) = real_index() else { return };
    type Kind = fn(&PlanError) -> bool;
    let cases: &[(&str, Kind, &[&str])] = &[
        (
            r#"{"version": 1, "chains": [{"name": "fs", "modules": ["ext4", "ext5"]}]}"#,
            |e| matches!(e, PlanError::UnknownEntry { position: 1, .. }),
            &["\"fs\"", "entry 1", "ext5"],
        ),
        (
            r#"{"version": 1, "chains": [{"name": "s", "modules": ["virtio_pci", "virtio_ring"]}]}"#,
            |e| matches!(e, PlanError::Cycle { links } if links.len() == 2),
            &["cycle", "virtio_pci", "virtio_ring", "chain \"s\""],
        ),
        (
            r#"{"version": 1, "chains": [{"name": "fs", "modules": ["ext4"]}], "blocklist": ["jbd2"]}"#,
            |e| matches!(e, PlanError::Blocklisted { chain: Some(c), .. } if c == "fs"),
            &["jbd2", "blocklist", "\"fs\"", "ext4"],
        ),
    ];
    for (json, kind, needles) in cases {
        let m = Manifest::from_json(json.as_bytes()).unwrap();
        let loaded = BTreeSet::new();
        let e = plan(PlanInput {
            manifest: &m,
            index: &idx,
            cmdline: &KernelCmdline::default(),
            loaded: &loaded,
        })
        .unwrap_err();
        assert!(kind(&e), "{e:?}");
        let message = e.to_string();
        for needle in *needles {
            assert!(message.contains(needle), "{needle:?} not in {e}");
        }
    }
}

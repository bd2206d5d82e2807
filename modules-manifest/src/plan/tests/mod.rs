//! Unit tests of the planner through its public entry points: helpers, the
//! strict [`plan()`](super::plan) rules, the critical path and the listing.
//! `cmdline` and `at_boot` hold the command-line and boot-time cases.

#![allow(clippy::unwrap_used)]

mod at_boot;
mod cmdline;

use super::*;
use crate::manifest::Manifest;

fn n(s: &str) -> ModuleName {
    ModuleName::new(s).unwrap()
}

/// `deps` is `"a: b c; b: c; c"`: module a depends on b and c, …
fn dep_text(deps: &str) -> String {
    deps.split(';')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (m, ds) = l.split_once(':').unwrap_or((l, ""));
            let ds: Vec<String> = ds.split_whitespace().map(|d| format!("k/{d}.ko")).collect();
            format!("k/{}.ko: {}\n", m.trim(), ds.join(" "))
        })
        .collect()
}

fn index(deps: &str, builtin: &str, softdep: &str, alias: &str) -> DepIndex {
    let builtin: String = builtin
        .split_whitespace()
        .map(|b| format!("kernel/{b}.ko\n"))
        .collect();
    DepIndex::parse(&dep_text(deps), &builtin, softdep, alias).unwrap()
}

fn manifest(json: &str) -> Manifest {
    Manifest::from_json(json.as_bytes()).unwrap()
}

fn run(m: &Manifest, idx: &DepIndex, cmdline: &str, loaded: &[&str]) -> Result<Plan, PlanError> {
    let cmdline = KernelCmdline::parse(cmdline);
    let loaded: BTreeSet<ModuleName> = loaded.iter().map(|s| n(s)).collect();
    plan(PlanInput {
        manifest: m,
        index: idx,
        cmdline: &cmdline,
        loaded: &loaded,
    })
}

fn id(p: &Plan, name: &str) -> NodeId {
    p.node(&n(name))
        .unwrap_or_else(|| panic!("{name} not in plan"))
        .id
}

fn pred_kind(p: &Plan, from: &str, to: &str) -> Option<EdgeKind> {
    let f = id(p, from);
    p.nodes[id(p, to)]
        .preds
        .iter()
        .find(|e| e.from == f)
        .map(|e| e.kind)
}

fn check_invariants(p: &Plan) {
    let mut names = BTreeSet::new();
    for (i, node) in p.nodes.iter().enumerate() {
        assert_eq!(node.id, i);
        assert!(names.insert(node.name.clone()), "{} twice", node.name);
        for e in &node.preds {
            assert!(e.from < i, "edge {} → {} goes backwards", e.from, i);
            assert!(p.nodes[e.from].succs.contains(&i));
        }
        for &s in &node.succs {
            assert!(p.nodes[s].preds.iter().any(|e| e.from == i));
        }
    }
}

#[test]
fn dependencies_come_first_and_chain_order_is_an_edge() {
    let idx = index("a: b c; b: c; c; d: c; e", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "one", "modules": ["a", "d"], "required": true},
                                      {"name": "two", "modules": ["e"]}]}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    check_invariants(&p);
    let names: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names.len(), 5);
    assert!(id(&p, "c") < id(&p, "b") && id(&p, "b") < id(&p, "a"));
    assert!(id(&p, "a") < id(&p, "d"));
    assert_eq!(pred_kind(&p, "b", "a"), Some(EdgeKind::Dependency));
    assert_eq!(pred_kind(&p, "c", "a"), Some(EdgeKind::Dependency));
    assert_eq!(pred_kind(&p, "a", "d"), Some(EdgeKind::Chain));
    assert_eq!(pred_kind(&p, "a", "e"), None);
    assert!(p.nodes[id(&p, "e")].preds.is_empty());
    assert_eq!(p.chains[0].nodes, vec![id(&p, "a"), id(&p, "d")]);
    assert_eq!(p.chains[1].nodes, vec![id(&p, "e")]);
    assert!(p.nodes[id(&p, "c")].required);
    assert!(!p.nodes[id(&p, "e")].required);
    assert!(p.nodes[id(&p, "c")]
        .reasons
        .contains(&Reason::DependencyOf { module: n("a") }));
    assert!(p.nodes[id(&p, "c")]
        .reasons
        .contains(&Reason::DependencyOf { module: n("d") }));
    assert_eq!(
        p.nodes[id(&p, "a")].action,
        Action::Insert {
            path: "k/a.ko".into(),
            compression: Compression::None
        }
    );
    assert_eq!(p.module_files().count(), 5);
}

#[test]
fn a_dependency_keeps_its_declared_params_however_it_is_reached() {
    // u-root's bug: "b" is declared with params in chain "two", but chain
    // "one" pulls it in first as a dependency of "a".
    let idx = index("a: b; b", "", "", "");
    let m = manifest(
        r#"{"version": 1,
            "chains": [{"name": "one", "modules": ["a"]},
                       {"name": "two", "modules": [{"name": "b", "params": "x=1"}]}],
            "modules": {"a": {"params": "y=2 z=\"q r\""}}}"#,
    );
    let p = run(&m, &idx, "b.w=3 a.y=4 other.v=1", &[]).unwrap();
    assert_eq!(p.nodes[id(&p, "b")].params, "x=1 w=3");
    assert_eq!(p.nodes[id(&p, "a")].params, "y=2 z=\"q r\" y=4");
    let p = run(&m, &idx, "", &[]).unwrap();
    assert_eq!(p.nodes[id(&p, "b")].params, "x=1");
}

#[test]
fn required_flows_to_everything_a_required_chain_waits_for() {
    // x is only in an optional chain, but y (in a required chain) waits
    // for it through chain "opt"'s order.
    let idx = index("x; y; z: w; w", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "opt", "modules": ["x", "y"]},
                                      {"name": "req", "modules": ["y"], "required": true},
                                      {"name": "opt2", "modules": ["z"]}]}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    assert!(p.nodes[id(&p, "x")].required);
    assert!(p.nodes[id(&p, "y")].required);
    assert!(!p.nodes[id(&p, "z")].required);
    assert!(!p.nodes[id(&p, "w")].required);
}

#[test]
fn builtin_loaded_and_blacklisted_nodes() {
    let idx = index("a: b c; b: d; c; d", "bi", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "s", "modules": ["a", "bi", "e"], "required": true}]}"#,
    );
    let p = run(&m, &idx, "modprobe.blacklist=b", &["c", "e"]).unwrap();
    check_invariants(&p);
    assert_eq!(p.nodes[id(&p, "bi")].action, Action::Builtin);
    assert_eq!(p.nodes[id(&p, "c")].action, Action::AlreadyLoaded);
    assert_eq!(p.nodes[id(&p, "e")].action, Action::AlreadyLoaded);
    assert_eq!(p.nodes[id(&p, "b")].action, Action::Blacklisted);
    // A blacklisted module is not loaded, so its own deps are not needed.
    assert!(p.node(&n("d")).is_none());
    assert!(
        p.notes
            .iter()
            .any(|t| t.contains("b is blacklisted") && t.contains("(s)")),
        "{:?}",
        p.notes
    );
    assert_eq!(p.module_files().collect::<Vec<_>>(), vec!["k/a.ko"]);
}

#[test]
fn params_that_cannot_be_applied_are_noted() {
    let idx = index("a", "bi", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "s", "modules": [{"name": "bi", "params": "x=1"}, {"name": "a", "params": "y=2"}]}]}"#,
    );
    let p = run(&m, &idx, "", &["a"]).unwrap();
    let notes = p.notes.join("\n");
    assert!(
        notes.contains("bi is builtin: parameters \"x=1\""),
        "{notes}"
    );
    assert!(notes.contains("bi.PARAM=VALUE"), "{notes}");
    assert!(
        notes.contains("a is already loaded: parameters \"y=2\""),
        "{notes}"
    );
}

#[test]
fn unknown_module_names_chain_and_entry() {
    let idx = index("a", "", "", "");
    let m = manifest(r#"{"version": 1, "chains": [{"name": "fs", "modules": ["a", "ext5"]}]}"#);
    let e = run(&m, &idx, "", &[]).unwrap_err();
    assert_eq!(
        e,
        PlanError::UnknownEntry {
            chain: "fs".into(),
            position: 1,
            name: n("ext5")
        }
    );
    let msg = e.to_string();
    assert!(msg.contains("\"fs\"") && msg.contains("entry 1"), "{e}");
    assert!(msg.contains("ext5"), "{e}");
}

#[test]
fn missing_dependency_line_is_named() {
    let idx = DepIndex::parse("k/a.ko: k/ghost.ko\n", "", "", "").unwrap();
    let m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
    let e = run(&m, &idx, "", &[]).unwrap_err();
    assert_eq!(
        e,
        PlanError::MissingDependency {
            module: n("a"),
            dependency: n("ghost")
        }
    );
    assert!(e.to_string().contains("a depends on ghost"), "{e}");
}

#[test]
fn blocklisted_module_that_a_chain_needs_is_an_error() {
    let idx = index("a: floppy; floppy; b", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["b"]}, {"name": "storage", "modules": ["a"]}],
            "blocklist": ["floppy"]}"#,
    );
    let e = run(&m, &idx, "", &[]).unwrap_err();
    assert!(
        matches!(&e, PlanError::Blocklisted { module, chain: Some(c), .. }
            if *module == n("floppy") && c == "storage"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("floppy"), "{e}");
    assert!(msg.contains("\"storage\""), "{e}");
    assert!(msg.contains("dep of a"), "{e}");
    // Not needed by any chain: fine.
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["b"]}], "blocklist": ["floppy"]}"#,
    );
    run(&m, &idx, "", &[]).unwrap();
}

#[test]
fn chain_order_against_dependencies_is_a_cycle() {
    let idx = index("virtio_pci: virtio_ring; virtio_ring", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "storage", "modules": ["virtio_pci", "virtio_ring"]}]}"#,
    );
    let e = run(&m, &idx, "", &[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("virtio_pci → virtio_ring → virtio_pci")
            || e.to_string()
                .contains("virtio_ring → virtio_pci → virtio_ring"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("chain \"storage\" lists virtio_ring after virtio_pci"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("virtio_pci needs virtio_ring (modules.dep)"),
        "{e}"
    );
}

#[test]
fn dependency_and_self_cycles() {
    let idx = index("a: b; b: c; c: a", "", "", "");
    let m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
    let e = run(&m, &idx, "", &[]).unwrap_err();
    assert!(
        matches!(&e, PlanError::Cycle { links } if links.len() == 3
            && links.iter().all(|l| l.kind == EdgeKind::Dependency)),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("dependency cycle: "), "{e}");
    for x in ["a", "b", "c"] {
        assert!(e.to_string().contains(&format!("{x} →")), "{e}");
    }
    let idx = index("a: a", "", "", "");
    let e = run(&m, &idx, "", &[]).unwrap_err();
    assert_eq!(e, PlanError::SelfDependency { module: n("a") });
    assert!(e.to_string().contains("a → a"), "{e}");
}

#[test]
fn softdep_cycle_is_an_error() {
    let idx = index("a; b", "", "softdep a pre: b\nsoftdep b pre: a\n", "");
    let m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
    let e = run(&m, &idx, "", &[]).unwrap_err();
    assert!(
        e.to_string().contains("a → b → a") || e.to_string().contains("b → a → b"),
        "{e}"
    );
    assert!(e.to_string().contains("has softdep pre:"), "{e}");
}

const CRC_ALIASES: &str = "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n\
                           alias crypto-crc32c crc32c_pruned\n";

#[test]
fn a_softdep_alias_loads_every_match_as_alternatives() {
    let idx = index(
        "ext4: jbd2; jbd2; crc32c_generic; crc32c_intel; other",
        "",
        "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c nothing-at-all\n",
        CRC_ALIASES,
    );
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "fs", "modules": ["ext4"], "required": true}]}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    check_invariants(&p);
    let both = Alternative {
        alias: "crypto-crc32c".into(),
        providers: vec![n("crc32c_generic"), n("crc32c_intel")],
    };
    for crc in ["crc32c_generic", "crc32c_intel"] {
        assert_eq!(pred_kind(&p, crc, "ext4"), Some(EdgeKind::Softdep));
        assert_eq!(pred_kind(&p, crc, "jbd2"), Some(EdgeKind::Softdep));
        let node = &p.nodes[id(&p, crc)];
        assert_eq!(node.alternative.as_ref(), Some(&both));
        // Neither blocks the required chain.
        assert!(!node.required, "{crc}");
        assert_eq!(node.reason().unwrap().to_string(), "softdep of ext4");
    }
    assert!(p.nodes[id(&p, "ext4")].alternative.is_none());
    let listing = p.render_text();
    assert!(
        listing.contains("one of crypto-crc32c: crc32c_generic crc32c_intel"),
        "{listing}"
    );
    let notes = p.notes.join("\n");
    assert!(
        notes.contains(
            "softdep ext4 pre: crypto-crc32c → crc32c_generic, crc32c_intel (all loaded, as \
             modprobe loads every match; not used: crc32c_pruned: not in the index)"
        ),
        "{notes}"
    );
    assert!(
        notes.contains("softdep jbd2 pre: nothing-at-all skipped"),
        "{notes}"
    );
    assert!(p.nodes[id(&p, "crc32c_generic")]
        .reasons
        .contains(&Reason::SoftdepOf {
            module: n("ext4"),
            alias: "crypto-crc32c".into()
        }));

    // Blocklisted or blacklisted matches are passed over; one left is no
    // alternative.
    let m3 = manifest(
        r#"{"version": 1, "chains": [{"name": "fs", "modules": ["ext4"]}], "blocklist": ["crc32c_generic"]}"#,
    );
    let p = run(&m3, &idx, "", &[]).unwrap();
    assert!(p.node(&n("crc32c_generic")).is_none());
    assert!(p.nodes[id(&p, "crc32c_intel")].alternative.is_none());
    assert!(p
        .notes
        .join("\n")
        .contains("crc32c_generic: on the manifest blocklist"));
    let p = run(
        &m,
        &idx,
        "modprobe.blacklist=crc32c_generic,crc32c_intel",
        &[],
    )
    .unwrap();
    assert!(p.node(&n("crc32c_generic")).is_none() && p.node(&n("crc32c_intel")).is_none());
    assert!(p
        .notes
        .join("\n")
        .contains("softdep ext4 pre: crypto-crc32c skipped"));

    // An already loaded match is still one of them (it costs nothing).
    let p = run(&m, &idx, "", &["crc32c_intel"]).unwrap();
    assert_eq!(
        p.nodes[id(&p, "crc32c_intel")].action,
        Action::AlreadyLoaded
    );
    assert!(p.node(&n("crc32c_generic")).is_some());
}

#[test]
fn a_softdep_name_that_is_builtin_looks_in_modules_alias_first() {
    // Debian: lib/crc32 is builtin, and `softdep f2fs pre: crc32` means the
    // two shash modules that alias `crc32` (kmod's lookup order).
    let idx = index(
        "f2fs; crc32_generic; crc32_pclmul",
        "crc32 crc8",
        "softdep f2fs pre: crc32 crc8\n",
        "alias crc32 crc32_generic\nalias crc32 crc32_pclmul\nalias crypto-crc32 crc32_generic\n",
    );
    let m = manifest(r#"{"version": 1, "chains": [{"name": "root", "modules": ["f2fs"]}]}"#);
    let p = run(&m, &idx, "", &[]).unwrap();
    check_invariants(&p);
    assert_eq!(
        pred_kind(&p, "crc32_generic", "f2fs"),
        Some(EdgeKind::Softdep)
    );
    assert_eq!(
        pred_kind(&p, "crc32_pclmul", "f2fs"),
        Some(EdgeKind::Softdep)
    );
    assert!(p.node(&n("crc32")).is_none());
    // A builtin no alias names is the builtin module itself.
    assert_eq!(p.nodes[id(&p, "crc8")].action, Action::Builtin);

    // The same for a chain entry: every match, the first the chain's own.
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "c", "modules": ["crc32", "f2fs"], "required": true}]}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    check_invariants(&p);
    assert_eq!(
        p.chains[0].nodes,
        vec![id(&p, "crc32_generic"), id(&p, "f2fs")]
    );
    let own = &p.nodes[id(&p, "crc32_generic")];
    let other = &p.nodes[id(&p, "crc32_pclmul")];
    assert!(own.required && !other.required);
    assert_eq!(own.alternative, other.alternative);
    assert_eq!(own.reason().unwrap().to_string(), "chain:c");
    assert_eq!(other.reason().unwrap().to_string(), "chain:c");
    assert!(matches!(other.reason(), Some(Reason::ChainAlias { alias, .. }) if alias == "crc32"));
    // The chain's order holds for the other match, without blocking.
    assert_eq!(
        pred_kind(&p, "crc32_generic", "f2fs"),
        Some(EdgeKind::Chain)
    );
    assert_eq!(
        pred_kind(&p, "crc32_pclmul", "f2fs"),
        Some(EdgeKind::Softdep)
    );
    let notes = p.notes.join("\n");
    assert!(
        notes.contains("entry 0: alias crc32 → crc32_generic, crc32_pclmul (all loaded"),
        "{notes}"
    );
}

#[test]
fn reasons_render_as_the_report_shows_them_strongest_first() {
    let idx = index(
        "a: d; b; d; s",
        "",
        "softdep a pre: s\nsoftdep b pre: d\n",
        "",
    );
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}, {"name": "y", "modules": ["b"]}]}"#,
    );
    let p = run(&m, &idx, "kmodinit.load=s", &[]).unwrap();
    let shown = |name: &str| p.nodes[id(&p, name)].reason().unwrap().to_string();
    assert_eq!(shown("a"), "chain:x");
    // d: a dependency of a and a softdep of b: the dependency is stronger.
    assert_eq!(shown("d"), "dependency of a");
    // s: a softdep of a and asked for on the command line.
    assert_eq!(shown("s"), "cmdline");
    assert!(p.nodes[id(&p, "s")].reasons.contains(&Reason::Cmdline));
    let only_soft = index("a; s", "", "softdep a pre: s\n", "");
    let m = manifest(r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}]}"#);
    let p = run(&m, &only_soft, "", &[]).unwrap();
    assert_eq!(shown_in(&p, "s"), "softdep of a");
}

fn shown_in(p: &Plan, name: &str) -> String {
    p.nodes[id(p, name)].reason().unwrap().to_string()
}

#[test]
fn a_softdep_of_a_required_chain_is_not_required() {
    let idx = index("a: b; b; s; t", "", "softdep b pre: s\n", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true}]}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    assert!(p.nodes[id(&p, "a")].required && p.nodes[id(&p, "b")].required);
    assert!(!p.nodes[id(&p, "s")].required);
    assert!(id(&p, "s") < id(&p, "b"));
}

#[test]
fn softdep_by_plain_module_name_needs_no_note_and_post_loads_after() {
    let idx = index(
        "a; b; c",
        "",
        "softdep a pre: b post: c\nsoftdep b junk\n",
        "",
    );
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true}]}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    check_invariants(&p);
    assert_eq!(pred_kind(&p, "b", "a"), Some(EdgeKind::Softdep));
    // The index's post: softdep loads after its module and blocks nothing.
    assert_eq!(pred_kind(&p, "a", "c"), Some(EdgeKind::Softdep));
    assert!(id(&p, "a") < id(&p, "c"));
    assert!(!p.nodes[id(&p, "c")].required);
    assert_eq!(shown_in(&p, "c"), "softdep of a");
    let notes = p.notes.join("\n");
    assert!(!notes.contains("pre: b →"), "{notes}");
    assert!(!notes.contains("post: c"), "{notes}");
    assert!(notes.contains("softdep b: junk ignored"), "{notes}");
}

#[test]
fn a_softdep_against_a_dependency_is_dropped_not_a_cycle() {
    // a post: b, but a depends on b; c pre: d, but d depends on c.
    let idx = index(
        "a: b; b; c; d: c",
        "",
        "softdep a post: b\nsoftdep c pre: d\n",
        "",
    );
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a", "c"], "required": true}]}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    check_invariants(&p);
    // Loaded where modules.dep puts them, as kmod does.
    assert_eq!(pred_kind(&p, "b", "a"), Some(EdgeKind::Dependency));
    assert_eq!(pred_kind(&p, "c", "d"), Some(EdgeKind::Dependency));
    assert_eq!(shown_in(&p, "d"), "softdep of c");
    let notes = p.notes.join("\n");
    assert!(
        notes.contains(
            "softdep a post: b not ordered post a: modules.dep orders them the other way"
        ),
        "{notes}"
    );
    assert!(
        notes.contains("softdep c pre: d not ordered pre c"),
        "{notes}"
    );
}

#[test]
fn plan_rechecks_a_manifest_built_in_code() {
    let idx = index("a", "", "", "");
    let mut m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
    m.chains.push(m.chains[0].clone());
    let e = run(&m, &idx, "", &[]).unwrap_err();
    assert!(matches!(e, PlanError::Manifest(_)), "{e:?}");
    assert!(!e.is_per_module());
    assert!(e.to_string().contains("used twice"), "{e}");
}

#[test]
fn critical_path_follows_the_costliest_chain() {
    let idx = index("a: b c; b; c: d; d; e", "", "", "");
    let m = manifest(r#"{"version": 1, "chains": [{"name": "x", "modules": ["a", "e"]}]}"#);
    let p = run(&m, &idx, "", &[]).unwrap();
    let cost = |node: &PlanNode| match node.name.as_str() {
        "d" => 5.0,
        "b" => 1.0,
        "c" => 1.0,
        "a" => 1.0,
        "e" => 0.5,
        _ => 0.0,
    };
    let cp = p.critical_path(cost);
    let names: Vec<&str> = cp.nodes.iter().map(|&i| p.nodes[i].name.as_str()).collect();
    assert_eq!(names, vec!["d", "c", "a", "e"]);
    assert!((cp.cost - 7.5).abs() < 1e-9);
    let empty = Plan {
        nodes: vec![],
        chains: vec![],
        notes: vec![],
    };
    assert_eq!(empty.critical_path(|_| 1.0).nodes, Vec::<NodeId>::new());
}

#[test]
fn render_text_lists_every_node() {
    let idx = index("a: b; b", "c", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "s", "modules": [{"name": "a", "params": "p=1"}, "c"], "required": true}]}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    let t = p.render_text();
    assert!(
        t.starts_with("plan: 3 modules (2 to insert, 1 satisfied), 1 chains\n"),
        "{t}"
    );
    assert!(t.contains("chain s (required): a → c"), "{t}");
    assert!(
        t.contains("k/a.ko params: p=1 after: b why: chain s #0"),
        "{t}"
    );
    assert!(
        t.contains("(builtin) params: - after: a (chain) why: chain s #1"),
        "{t}"
    );
    assert_eq!(t.lines().count(), 2 + 3);
}

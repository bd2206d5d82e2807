//! The command line's part in the plan: `kmodinit.load=`, `kmodinit.skip=`,
//! softdep overrides and aliased chain entries.

use super::*;

fn cmd_boot_plan(m: &Manifest, idx: &DepIndex, cmdline: &str) -> Plan {
    let cmdline = KernelCmdline::parse(cmdline);
    plan_at_boot(PlanInput {
        manifest: m,
        index: idx,
        cmdline: &cmdline,
        loaded: &BTreeSet::new(),
    })
    .unwrap()
}

#[test]
fn command_line_load_adds_an_unordered_optional_chain() {
    let idx = index("a: b; b; c; d", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true}]}"#,
    );
    let p = run(
        &m,
        &idx,
        "kmodinit.load=c rd.driver.pre=b modules-load=d,c",
        &[],
    )
    .unwrap();
    let chain = p.chains.iter().find(|c| c.name == CMDLINE_CHAIN).unwrap();
    assert!(!chain.required);
    let names: Vec<&str> = chain
        .nodes
        .iter()
        .map(|&i| p.nodes[i].name.as_str())
        .collect();
    assert_eq!(names, ["c", "b", "d"]);
    // Independent: no chain edge between them.
    assert_eq!(pred_kind(&p, "c", "b"), None);
    assert_eq!(pred_kind(&p, "b", "d"), None);
    // b stays required for chain x.
    assert!(p.nodes[id(&p, "b")].required && !p.nodes[id(&p, "c")].required);
    check_invariants(&p);
    // A manifest chain called "cmdline" keeps its name.
    let m2 = manifest(r#"{"version": 1, "chains": [{"name": "cmdline", "modules": ["a"]}]}"#);
    let p = run(&m2, &idx, "kmodinit.load=c", &[]).unwrap();
    assert!(p.chains.iter().any(|c| c.name == "cmdline-2"));
}

#[test]
fn rd_driver_post_loads_after_every_other_module() {
    // x: a ← b; y: c; post: d (← e), f; g is needed by x and asked for post.
    let idx = index("a: b; b; c; d: e; e; f; g", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [
            {"name": "x", "modules": ["a", "g"], "required": true},
            {"name": "y", "modules": ["c"]}]}"#,
    );
    let p = run(
        &m,
        &idx,
        "rd.driver.post=d,f,g rd.driver.pre=b kmodinit.load=c",
        &[],
    )
    .unwrap();
    let chain = p
        .chains
        .iter()
        .find(|c| c.name == CMDLINE_POST_CHAIN)
        .unwrap();
    assert!(!chain.required);
    let names: Vec<&str> = chain
        .nodes
        .iter()
        .map(|&i| p.nodes[i].name.as_str())
        .collect();
    assert_eq!(names, ["d", "f", "g"]);
    // d and f come after every module of x, y and cmdline, without being
    // blocked by them (Softdep edges), and not after each other.
    for post in ["d", "f"] {
        for other in ["a", "b", "c", "g"] {
            assert_eq!(
                pred_kind(&p, other, post),
                Some(EdgeKind::Softdep),
                "{post} after {other}"
            );
        }
        assert!(!p.nodes[id(&p, post)].required);
    }
    assert_eq!(pred_kind(&p, "d", "f"), None);
    assert_eq!(pred_kind(&p, "f", "d"), None);
    // d's own dependency is not held back, and still comes before d.
    assert_eq!(pred_kind(&p, "e", "d"), Some(EdgeKind::Dependency));
    assert_eq!(pred_kind(&p, "a", "e"), None);
    // g is x's: it loads with x, not after it, and the notes say so.
    assert_eq!(pred_kind(&p, "a", "g"), Some(EdgeKind::Chain));
    assert_eq!(pred_kind(&p, "c", "g"), None);
    assert!(p.nodes[id(&p, "g")].required);
    assert!(
        p.notes.iter().any(|x| x
            == "rd.driver.post=g: chain x needs it, so it loads with that chain, \
                    not after the others"),
        "{:?}",
        p.notes
    );
    let order: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
    let pos = |s: &str| order.iter().position(|o| *o == s).unwrap();
    assert!(pos("d") > pos("c") && pos("f") > pos("a"), "{order:?}");
    check_invariants(&p);
}

#[test]
fn rd_driver_post_of_a_module_others_depend_on_makes_no_cycle() {
    // b is posted but a (chain x) depends on it: no edge a → b.
    let idx = index("a: b; b; c", "", "", "");
    let m = manifest(r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}]}"#);
    let p = run(&m, &idx, "rd.driver.post=b,c", &[]).unwrap();
    assert_eq!(pred_kind(&p, "b", "a"), Some(EdgeKind::Dependency));
    assert_eq!(pred_kind(&p, "a", "b"), None);
    assert_eq!(pred_kind(&p, "a", "c"), Some(EdgeKind::Softdep));
    assert_eq!(pred_kind(&p, "b", "c"), Some(EdgeKind::Softdep));
    check_invariants(&p);
    // A skipped chain naming the posted module does not count as needing
    // it: c still comes after a.
    let m3 = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}, {"name": "z", "modules": ["c"]}]}"#,
    );
    let p = run(&m3, &idx, "rd.driver.post=c kmodinit.skip=z", &[]).unwrap();
    assert_eq!(pred_kind(&p, "a", "c"), Some(EdgeKind::Softdep));
    assert!(matches!(
        p.node(&n("c")).unwrap().action,
        Action::Insert { .. }
    ));
    check_invariants(&p);
    // A manifest chain called cmdline-post keeps its name.
    let m2 = manifest(r#"{"version": 1, "chains": [{"name": "cmdline-post", "modules": ["a"]}]}"#);
    let p = run(&m2, &idx, "rd.driver.post=c", &[]).unwrap();
    assert!(p.chains.iter().any(|c| c.name == "cmdline-post-2"));
    // Not in the image: fails alone, named by the option.
    let p = cmd_boot_plan(&m, &idx, "rd.driver.post=nope");
    let Action::Unplannable { error } = &p.node(&n("nope")).unwrap().action else {
        panic!()
    };
    assert!(error.to_string().contains("rd.driver.post=nope"), "{error}");
}

#[test]
fn loading_a_module_not_in_the_image_fails_it_alone() {
    let idx = index("a; b", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true}]}"#,
    );
    let p = cmd_boot_plan(&m, &idx, "kmodinit.load=nope,b");
    let node = p.node(&n("nope")).unwrap();
    let Action::Unplannable { error } = &node.action else {
        panic!("{:?}", node.action)
    };
    assert!(matches!(error, PlanError::NotInImage { .. }));
    let msg = error.to_string();
    assert!(
        msg.contains("kmodinit.load=nope") && msg.contains("not in the image"),
        "{msg}"
    );
    assert!(!node.required);
    assert!(matches!(
        p.node(&n("b")).unwrap().action,
        Action::Insert { .. }
    ));
    assert!(
        p.notes.iter().any(|x| x.contains("not in the image")),
        "{:?}",
        p.notes
    );
    check_invariants(&p);
}

#[test]
fn skipping_a_module_blocks_its_dependents_and_excuses_the_required_chain() {
    let idx = index("a: b; b: c; c; e", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "root", "modules": ["a"], "required": true},
            {"name": "other", "modules": ["e"], "required": true}]}"#,
    );
    let p = cmd_boot_plan(&m, &idx, "kmodinit.skip=b");
    assert_eq!(
        p.node(&n("b")).unwrap().action,
        Action::Skipped {
            option: "kmodinit.skip=b".into()
        }
    );
    // b's own dependency c is not planned; a waits for b (blocked).
    assert!(p.node(&n("c")).is_none());
    assert_eq!(pred_kind(&p, "b", "a"), Some(EdgeKind::Dependency));
    let root = p.chains.iter().find(|c| c.name == "root").unwrap();
    assert!(!root.required, "a user's skip does not make on_failure run");
    assert!(!p.nodes[id(&p, "a")].required);
    assert!(
        p.chains
            .iter()
            .find(|c| c.name == "other")
            .unwrap()
            .required
    );
    assert!(p.nodes[id(&p, "e")].required);
    let notes = p.notes.join("\n");
    assert!(
        notes.contains("required chain \"root\" cannot complete")
            && notes.contains("does not trigger on_failure"),
        "{notes}"
    );
    check_invariants(&p);
}

#[test]
fn skipping_a_chain_skips_its_entries_but_not_what_others_need() {
    let idx = index("a: b; b; c; d", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true},
            {"name": "y", "modules": ["c", "b", "d"], "required": true}]}"#,
    );
    let p = cmd_boot_plan(&m, &idx, "kmodinit.skip=y kmodinit.skip=nothing");
    assert!(matches!(
        p.node(&n("c")).unwrap().action,
        Action::Skipped { .. }
    ));
    assert!(matches!(
        p.node(&n("d")).unwrap().action,
        Action::Skipped { .. }
    ));
    assert!(matches!(
        p.node(&n("b")).unwrap().action,
        Action::Insert { .. }
    ));
    let y = p.chains.iter().find(|c| c.name == "y").unwrap();
    assert_eq!(y.nodes.len(), 3);
    assert!(!y.required);
    assert!(p.chains.iter().find(|c| c.name == "x").unwrap().required);
    let notes = p.notes.join("\n");
    assert!(notes.contains("loads anyway"), "{notes}");
    assert!(
        notes.contains("kmodinit.skip=nothing: no chain or planned module"),
        "{notes}"
    );
    check_invariants(&p);
}

#[test]
fn softdep_override_replaces_the_index_and_loads_post_after() {
    let idx = index(
        "a; crc_generic; crc_intel; p",
        "",
        "softdep a pre: crypto-crc\n",
        "alias crypto-crc crc_intel\nalias crypto-crc crc_generic\n",
    );
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"], "required": true}],
            "softdeps": {"a": {"pre": ["crc_intel"], "post": ["p"]}}}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    assert!(p.node(&n("crc_generic")).is_none());
    assert_eq!(pred_kind(&p, "crc_intel", "a"), Some(EdgeKind::Softdep));
    assert_eq!(pred_kind(&p, "a", "p"), Some(EdgeKind::Softdep));
    assert!(!p.nodes[id(&p, "p")].required);
    assert!(
        p.notes
            .iter()
            .any(|x| x.contains("softdep a: manifest override used")),
        "{:?}",
        p.notes
    );
    check_invariants(&p);
    // An empty override removes them.
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}], "softdeps": {"a": {}}}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    assert_eq!(p.nodes.len(), 1);
}

#[test]
fn a_softdep_override_naming_an_unknown_module_fails_the_build_not_the_boot() {
    let idx = index("a", "", "", "");
    for json in [
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}], "softdeps": {"ghost": {"pre": ["a"]}}}"#,
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["a"]}], "softdeps": {"a": {"pre": ["ghost"]}}}"#,
    ] {
        let m = manifest(json);
        let e = run(&m, &idx, "", &[]).unwrap_err();
        assert!(
            matches!(e, PlanError::UnknownSoftdepOverride { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("ghost"), "{e}");
        let p = cmd_boot_plan(&m, &idx, "");
        assert!(p.notes.iter().any(|x| x.contains("ghost")), "{:?}", p.notes);
        assert!(matches!(
            p.node(&n("a")).unwrap().action,
            Action::Insert { .. }
        ));
    }
}

#[test]
fn chain_entry_alias_resolves_with_a_note_and_params_follow() {
    let idx = index("ext4: jbd2; jbd2", "", "", "alias fs-ext4 ext4\n");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "fs", "modules": [{"name": "fs-ext4", "params": "a=1"}]}]}"#,
    );
    let p = run(&m, &idx, "", &[]).unwrap();
    assert_eq!(p.nodes[id(&p, "ext4")].params, "a=1");
    assert!(
        p.notes.iter().any(|t| t.contains("alias fs_ext4 → ext4")),
        "{:?}",
        p.notes
    );
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "fs", "modules": [{"name": "fs-ext4", "params": "a=1"}]}],
            "modules": {"ext4": {"params": "a=2"}}}"#,
    );
    let e = run(&m, &idx, "", &[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("module ext4 has two different parameter strings"),
        "{e}"
    );
}

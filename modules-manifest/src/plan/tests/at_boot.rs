//! [`plan_at_boot()`](super::super::plan_at_boot): a module that cannot be
//! planned fails alone.

use super::*;

fn run_at_boot(m: &Manifest, idx: &DepIndex) -> Result<Plan, PlanError> {
    let cmdline = KernelCmdline::default();
    let loaded = BTreeSet::new();
    plan_at_boot(PlanInput {
        manifest: m,
        index: idx,
        cmdline: &cmdline,
        loaded: &loaded,
    })
}

fn unplannable(p: &Plan, name: &str) -> PlanError {
    match &p.nodes[id(p, name)].action {
        Action::Unplannable { error } => error.clone(),
        other => panic!("{name}: {other:?}, not unplannable"),
    }
}

fn is_insert(p: &Plan, name: &str) -> bool {
    matches!(p.nodes[id(p, name)].action, Action::Insert { .. })
}

#[test]
fn at_boot_a_missing_dependency_line_fails_only_that_dependency() {
    let idx = DepIndex::parse(
        "k/a.ko: k/x/ghost.ko\nk/c.ko:\nk/r.ko: k/s.ko\nk/s.ko:\n",
        "",
        "",
        "",
    )
    .unwrap();
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "opt", "modules": ["a", "c"]},
                                      {"name": "req", "modules": ["r"], "required": true}]}"#,
    );
    let strict = run(&m, &idx, "", &[]).unwrap_err();
    assert_eq!(
        strict.to_string(),
        "module a depends on ghost (modules.dep), but ghost has no line of its own in \
         modules.dep"
    );
    let p = run_at_boot(&m, &idx).unwrap();
    check_invariants(&p);
    assert_eq!(unplannable(&p, "ghost"), strict);
    assert_eq!(strict.modules(), vec![n("ghost")]);
    assert!(strict.is_per_module());
    // Its dependent and the rest of its chain are planned as usual, and
    // wait for it, so the loader blocks them.
    assert!(is_insert(&p, "a") && is_insert(&p, "c"));
    assert_eq!(pred_kind(&p, "ghost", "a"), Some(EdgeKind::Dependency));
    assert_eq!(pred_kind(&p, "a", "c"), Some(EdgeKind::Chain));
    assert!(p.nodes[id(&p, "ghost")]
        .reasons
        .contains(&Reason::DependencyOf { module: n("a") }));
    // The required chain is untouched.
    assert!(is_insert(&p, "r") && is_insert(&p, "s"));
    assert!(p.nodes[id(&p, "r")].required && !p.nodes[id(&p, "ghost")].required);
    assert_eq!(p.chains[0].nodes, vec![id(&p, "a"), id(&p, "c")]);
    assert!(
        p.notes
            .iter()
            .any(|t| t.starts_with("ghost cannot be planned") && t.contains(&strict.to_string())),
        "{:?}",
        p.notes
    );
    assert!(
        p.render_text()
            .contains("(cannot be planned: module a depends on ghost"),
        "{}",
        p.render_text()
    );
    assert_eq!(p.module_files().count(), 4);
}

#[test]
fn at_boot_an_unknown_entry_fails_in_its_chain() {
    let idx = index("a; c; r", "", "", "alias fs-pruned pruned\n");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "opt", "modules": ["a", "ext5", "c"]},
                                      {"name": "opt2", "modules": ["fs-pruned"]},
                                      {"name": "req", "modules": ["r"], "required": true}]}"#,
    );
    let strict = run(&m, &idx, "", &[]).unwrap_err();
    assert_eq!(
        strict.to_string(),
        "chain \"opt\" entry 1 (ext5): no such module or alias in modules.dep, \
         modules.builtin or modules.alias"
    );
    let p = run_at_boot(&m, &idx).unwrap();
    check_invariants(&p);
    assert_eq!(unplannable(&p, "ext5"), strict);
    let alias = unplannable(&p, "fs_pruned");
    assert_eq!(
        alias,
        PlanError::AliasWithoutFile {
            chain: "opt2".into(),
            position: 0,
            name: n("fs_pruned"),
            candidates: vec![n("pruned")],
        }
    );
    assert_eq!(
        alias.to_string(),
        "chain \"opt2\" entry 0 (fs_pruned): the alias matches pruned but the index has \
         no file for any of them"
    );
    assert_eq!(pred_kind(&p, "a", "ext5"), Some(EdgeKind::Chain));
    assert_eq!(pred_kind(&p, "ext5", "c"), Some(EdgeKind::Chain));
    assert!(is_insert(&p, "a") && is_insert(&p, "c") && is_insert(&p, "r"));
    assert_eq!(
        p.chains[0].nodes,
        vec![id(&p, "a"), id(&p, "ext5"), id(&p, "c")]
    );
    assert_eq!(p.chains[1].nodes, vec![id(&p, "fs_pruned")]);
    assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
}

#[test]
fn at_boot_every_module_of_a_cycle_fails_and_what_needs_it_stays() {
    let idx = index("a: b; b: c; c: a; d: a; e", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "opt", "modules": ["d"]},
                                      {"name": "req", "modules": ["e"], "required": true}]}"#,
    );
    let strict = run(&m, &idx, "", &[]).unwrap_err();
    assert_eq!(
        strict.to_string(),
        "dependency cycle: c → b → a → c (b needs c (modules.dep); a needs b \
         (modules.dep); c needs a (modules.dep))"
    );
    let p = run_at_boot(&m, &idx).unwrap();
    check_invariants(&p);
    for x in ["a", "b", "c"] {
        assert_eq!(unplannable(&p, x), strict, "{x}");
    }
    let mut in_cycle = strict.modules();
    in_cycle.sort();
    assert_eq!(in_cycle, vec![n("a"), n("b"), n("c")]);
    // The edges inside the cycle are gone, the one out of it stays.
    for (x, y) in [("b", "a"), ("c", "b"), ("a", "c")] {
        assert_eq!(pred_kind(&p, x, y), None, "{x} → {y}");
    }
    assert_eq!(pred_kind(&p, "a", "d"), Some(EdgeKind::Dependency));
    assert!(is_insert(&p, "d") && is_insert(&p, "e"));
    assert_eq!(p.notes.len(), 3, "{:?}", p.notes);

    // A module that depends on itself; a chain listed against its
    // dependencies, in a required chain.
    let idx = index("a: a; d: a; v: w; w; e", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "opt", "modules": ["d"]},
                                      {"name": "req", "modules": ["v", "w"], "required": true},
                                      {"name": "ok", "modules": ["e"]}]}"#,
    );
    let p = run_at_boot(&m, &idx).unwrap();
    check_invariants(&p);
    assert_eq!(
        unplannable(&p, "a"),
        PlanError::SelfDependency { module: n("a") }
    );
    assert_eq!(pred_kind(&p, "a", "d"), Some(EdgeKind::Dependency));
    let vw = unplannable(&p, "v");
    assert_eq!(unplannable(&p, "w"), vw);
    assert!(
        matches!(&vw, PlanError::Cycle { links } if links.iter().any(|l|
            l.kind == EdgeKind::Chain && l.chain.as_deref() == Some("req"))),
        "{vw:?}"
    );
    assert!(p.nodes[id(&p, "v")].required && p.nodes[id(&p, "w")].required);
    assert!(is_insert(&p, "d") && is_insert(&p, "e"));
}

#[test]
fn at_boot_conflicting_params_fail_that_module() {
    let idx = index("ext4: jbd2; jbd2; a", "", "", "alias fs-ext4 ext4\n");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "fs", "modules": [{"name": "fs-ext4", "params": "a=1"}]},
                                      {"name": "other", "modules": ["a"], "required": true}],
            "modules": {"ext4": {"params": "a=2"}}}"#,
    );
    let strict = run(&m, &idx, "", &[]).unwrap_err();
    assert_eq!(
        strict.to_string(),
        "module ext4 has two different parameter strings: \"a=1\" at \
         chains[0].modules[0].params and \"a=2\" at modules.ext4.params; parameters belong \
         to the module, declare them once"
    );
    let p = run_at_boot(&m, &idx).unwrap();
    check_invariants(&p);
    assert_eq!(
        unplannable(&p, "ext4"),
        PlanError::ConflictingParams {
            module: n("ext4"),
            first: "a=1".into(),
            first_at: "chains[0].modules[0].params".into(),
            second: "a=2".into(),
            second_at: "modules.ext4.params".into(),
        }
    );
    // Not loaded, so its dependencies are not needed.
    assert!(p.node(&n("jbd2")).is_none());
    assert!(is_insert(&p, "a"));
    assert_eq!(p.module_files().collect::<Vec<_>>(), vec!["k/a.ko"]);
}

#[test]
fn at_boot_a_blocklisted_module_a_chain_needs_fails_alone() {
    let idx = index("a: floppy; floppy; b", "", "", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "x", "modules": ["b"]}, {"name": "storage", "modules": ["a"]}],
            "blocklist": ["floppy"]}"#,
    );
    let strict = run(&m, &idx, "", &[]).unwrap_err();
    let p = run_at_boot(&m, &idx).unwrap();
    check_invariants(&p);
    assert_eq!(unplannable(&p, "floppy"), strict);
    assert_eq!(
        strict.to_string(),
        "module floppy is on the manifest's blocklist, but chain \"storage\" needs it \
         (dep of a)"
    );
    assert!(is_insert(&p, "a") && is_insert(&p, "b"));
    assert!(!p.module_files().any(|f| f.contains("floppy")));
}

#[test]
fn at_boot_equals_plan_when_plan_succeeds_and_manifest_errors_stay() {
    let idx = index("a: b c; b: c; c; d: c; e", "bi", "softdep a pre: e\n", "");
    let m = manifest(
        r#"{"version": 1, "chains": [{"name": "one", "modules": ["a", "bi"], "required": true},
                                      {"name": "two", "modules": [{"name": "d", "params": "x=1"}]}]}"#,
    );
    assert_eq!(run_at_boot(&m, &idx), run(&m, &idx, "", &[]));
    let mut m = m;
    m.chains.push(m.chains[0].clone());
    let e = run_at_boot(&m, &idx).unwrap_err();
    assert!(matches!(e, PlanError::Manifest(_)), "{e:?}");
    assert!(e.modules().is_empty());
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn an_unplannable_node_serializes_with_its_message() {
    let idx = DepIndex::parse("k/a.ko: k/ghost.ko\n", "", "", "").unwrap();
    let m = manifest(r#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#);
    let p = run_at_boot(&m, &idx).unwrap();
    let json = serde_json::to_value(&p.nodes[id(&p, "ghost")].action).unwrap();
    assert_eq!(json["kind"], "unplannable");
    assert_eq!(
        json["error"],
        "module a depends on ghost (modules.dep), but ghost has no line of its own in \
         modules.dep"
    );
}

//! The planner end to end: a fuzzed small depmod index (rendered as the text
//! files depmod writes and parsed by `DepIndex::parse`), a fuzzed manifest
//! (rendered as JSON and parsed by `Manifest::from_json`), a fuzzed command
//! line and set of loaded modules → `plan()` → a plan or an error. When a
//! plan comes out, its contract holds: every module once, every predecessor
//! id below the node's id, `succs` the exact mirror of `preds`, each
//! `modules.dep` dependency a direct `Dependency` predecessor, chains in
//! order, actions as the index says, params as declared with the command
//! line appended. `plan_at_boot()` on the same input: see `check_at_boot`.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use modules_manifest::{
    plan, plan_at_boot, Action, DepIndex, EdgeKind, KernelCmdline, Manifest, ModuleName, Plan,
    PlanError, PlanInput, Reason,
};

/// `plan_at_boot`: deterministic; the strict plan when that succeeds; with a
/// per-module error, a plan (a DAG, every module once) in which the modules
/// the error names are unplannable; a manifest error stays one.
fn check_at_boot(pin: PlanInput<'_>, strict: &Result<Plan, PlanError>) {
    let boot = plan_at_boot(pin);
    assert_eq!(plan_at_boot(pin), boot, "plan_at_boot is deterministic");
    let p = match (strict, boot) {
        (Ok(s), Ok(b)) => {
            assert_eq!(*s, b, "plan_at_boot differs from a plan that succeeded");
            return;
        }
        (Err(e), Err(b)) => {
            assert!(
                !e.is_per_module(),
                "{e}: per-module, yet plan_at_boot failed"
            );
            assert_eq!(*e, b);
            return;
        }
        (Err(e), Ok(b)) => {
            assert!(e.is_per_module(), "{e}");
            for m in e.modules() {
                let node = b
                    .node(&m)
                    .unwrap_or_else(|| panic!("{m} ({e}) not in the plan"));
                assert!(
                    matches!(node.action, Action::Unplannable { .. }),
                    "{m} ({e}): {:?}",
                    node.action
                );
            }
            b
        }
        (Ok(_), Err(b)) => panic!("plan_at_boot failed ({b}) where plan() did not"),
    };
    let mut seen = BTreeSet::new();
    for (i, node) in p.nodes.iter().enumerate() {
        assert_eq!(node.id, i);
        assert!(seen.insert(&node.name), "{} twice", node.name);
        for e in &node.preds {
            assert!(e.from < i, "{}: pred {} not earlier", node.name, e.from);
            assert!(p.nodes[e.from].succs.contains(&i));
        }
        if let Action::Unplannable { error } = &node.action {
            assert!(error.is_per_module(), "{error}");
            assert!(
                p.notes.iter().any(|t| t.contains(&error.to_string())),
                "{}: no note",
                node.name
            );
        }
    }
}

/// Module names: few, so that edges collide and cycles happen. Index 2 and 3
/// differ only by `-`/`_` in their written form.
const NAMES: [&str; 8] = ["ma", "mb", "m_c", "m-c", "md", "me", "mf", "mg"];
const EXT: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];
const ALIASES: [&str; 4] = ["crypto-x", "fs-y", "pci:v1*", "ma"];
const PARAMS: [&str; 5] = ["", "a=1", " b=2 c=3 ", "a=2", "q=\"x y\""];

#[derive(Arbitrary, Debug)]
struct Module {
    name: u8,
    ext: u8,
    deps: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    /// Below 8: a module name; above: an alias.
    name: u8,
    params: Option<u8>,
    object: bool,
}

#[derive(Arbitrary, Debug)]
struct Chain {
    entries: Vec<Entry>,
    required: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    modules: Vec<Module>,
    builtin: Vec<u8>,
    softdeps: Vec<(u8, Vec<u8>, Vec<u8>)>,
    aliases: Vec<(u8, u8)>,
    chains: Vec<Chain>,
    section: Vec<(u8, u8)>,
    blocklist: Vec<u8>,
    cmdline_params: Vec<(u8, u8)>,
    cmdline_blacklist: Vec<u8>,
    loaded: Vec<u8>,
}

fn name(i: u8) -> &'static str {
    NAMES[usize::from(i) % NAMES.len()]
}

/// A module name or, for larger values, an alias.
fn name_or_alias(i: u8) -> &'static str {
    let i = usize::from(i) % (NAMES.len() + ALIASES.len());
    if i < NAMES.len() {
        NAMES[i]
    } else {
        ALIASES[i - NAMES.len()]
    }
}

fn params(i: u8) -> &'static str {
    PARAMS[usize::from(i) % PARAMS.len()]
}

fn path(i: u8, ext: u8) -> String {
    format!(
        "kernel/d{}/{}{}",
        i % 3,
        name(i),
        EXT[usize::from(ext) % EXT.len()]
    )
}

fn n(s: &str) -> ModuleName {
    ModuleName::new(s).unwrap()
}

fn render(input: &Input) -> (String, String, String, String, serde_json::Value, String) {
    let mut dep = String::new();
    for m in input.modules.iter().take(12) {
        dep.push_str(&path(m.name, m.ext));
        dep.push(':');
        for &d in m.deps.iter().take(6) {
            dep.push(' ');
            dep.push_str(&path(d, 0));
        }
        dep.push('\n');
    }
    let builtin: String = input
        .builtin
        .iter()
        .take(4)
        .map(|&b| format!("{}\n", path(b, 0)))
        .collect();
    let mut softdep = String::new();
    for (m, pre, post) in input.softdeps.iter().take(6) {
        softdep.push_str(&format!("softdep {}", name(*m)));
        if !pre.is_empty() {
            softdep.push_str(" pre:");
            for &p in pre.iter().take(4) {
                softdep.push(' ');
                softdep.push_str(name_or_alias(p));
            }
        }
        if !post.is_empty() {
            softdep.push_str(" post:");
            for &p in post.iter().take(2) {
                softdep.push(' ');
                softdep.push_str(name_or_alias(p));
            }
        }
        softdep.push('\n');
    }
    let alias: String = input
        .aliases
        .iter()
        .take(8)
        .map(|&(a, m)| {
            format!(
                "alias {} {}\n",
                ALIASES[usize::from(a) % ALIASES.len()],
                name(m)
            )
        })
        .collect();

    let chains: Vec<serde_json::Value> = input
        .chains
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, c)| {
            let modules: Vec<serde_json::Value> = c
                .entries
                .iter()
                .take(5)
                .map(|e| match (e.object, e.params) {
                    (false, _) => serde_json::json!(name_or_alias(e.name)),
                    (true, None) => serde_json::json!({ "name": name_or_alias(e.name) }),
                    (true, Some(p)) => {
                        serde_json::json!({ "name": name_or_alias(e.name), "params": params(p) })
                    }
                })
                .collect();
            serde_json::json!({ "name": format!("c{i}"), "modules": modules, "required": c.required })
        })
        .collect();
    let mut section = serde_json::Map::new();
    for &(m, p) in input.section.iter().take(4) {
        section.insert(
            name(m).to_owned(),
            serde_json::json!({ "params": params(p) }),
        );
    }
    let blocklist: Vec<&str> = input.blocklist.iter().take(2).map(|&b| name(b)).collect();
    let manifest = serde_json::json!({
        "version": 1,
        "chains": chains,
        "modules": section,
        "blocklist": blocklist,
    });

    let mut cmdline = String::from("root=/dev/vda1 ");
    for &(m, p) in input.cmdline_params.iter().take(4) {
        cmdline.push_str(&format!("{}.k{}={} ", name(m), p % 3, p));
    }
    if !input.cmdline_blacklist.is_empty() {
        let list: Vec<&str> = input
            .cmdline_blacklist
            .iter()
            .take(3)
            .map(|&b| name(b))
            .collect();
        cmdline.push_str(&format!("modprobe.blacklist={}", list.join(",")));
    }
    (dep, builtin, softdep, alias, manifest, cmdline)
}

fuzz_target!(|input: Input| {
    let (dep, builtin, softdep, alias, manifest_json, cmdline) = render(&input);
    let Ok(index) = DepIndex::parse(&dep, &builtin, &softdep, &alias) else {
        return;
    };
    let Ok(manifest) = Manifest::from_json(manifest_json.to_string().as_bytes()) else {
        return;
    };
    let cmdline = KernelCmdline::parse(&cmdline);
    let loaded: BTreeSet<ModuleName> = input.loaded.iter().take(3).map(|&l| n(name(l))).collect();
    let pin = PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline: &cmdline,
        loaded: &loaded,
    };
    let result = plan(pin);
    assert_eq!(plan(pin), result, "the planner is deterministic");
    check_at_boot(pin, &result);
    let p = match result {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };

    // Every module once; ids are positions.
    let mut seen = BTreeMap::new();
    for (i, node) in p.nodes.iter().enumerate() {
        assert_eq!(node.id, i);
        assert!(seen.insert(&node.name, i).is_none(), "{} twice", node.name);
        assert!(
            !node.reasons.is_empty(),
            "{} is in the plan for no reason",
            node.name
        );
    }

    // Alternatives: every match of an alias with several is planned, and
    // one that nothing needs through a dependency or a chain's own entry
    // blocks nothing (only Softdep edges leave it), so its failure is a
    // note, not a chain failure.
    for node in &p.nodes {
        let Some(alt) = &node.alternative else {
            continue;
        };
        assert!(alt.providers.len() > 1, "{}: alternative of one", node.name);
        assert!(
            alt.providers.contains(&node.name),
            "{}: not among its alternatives",
            node.name
        );
        assert!(
            alt.providers.windows(2).all(|w| w[0] < w[1]),
            "providers unsorted"
        );
        for m in &alt.providers {
            assert!(
                seen.contains_key(m),
                "{m}: a match of {} not planned",
                alt.alias
            );
        }
        let hard = node
            .reasons
            .iter()
            .any(|r| matches!(r, Reason::Chain { .. } | Reason::DependencyOf { .. }));
        if !hard {
            assert!(
                !node.required,
                "{}: a mere alternative is required",
                node.name
            );
            for &s in &node.succs {
                let kind = p.nodes[s]
                    .preds
                    .iter()
                    .find(|e| e.from == node.id)
                    .map(|e| e.kind);
                assert_eq!(
                    kind,
                    Some(EdgeKind::Softdep),
                    "{} blocks {}",
                    node.name,
                    p.nodes[s].name
                );
            }
        }
    }

    // Topological order, and succs mirror preds exactly.
    let mut mirror: Vec<Vec<usize>> = vec![Vec::new(); p.nodes.len()];
    for node in &p.nodes {
        let mut froms = BTreeSet::new();
        for e in &node.preds {
            assert!(
                e.from < node.id,
                "{}: pred {} not earlier",
                node.name,
                e.from
            );
            assert!(
                froms.insert(e.from),
                "{}: two edges from {}",
                node.name,
                e.from
            );
            mirror[e.from].push(node.id);
        }
    }
    for node in &p.nodes {
        let mut succs = node.succs.clone();
        succs.sort_unstable();
        assert_eq!(
            succs, mirror[node.id],
            "{}: succs do not mirror preds",
            node.name
        );
    }

    // Actions as the index, /proc/modules and the command line say; each
    // modules.dep dependency of an inserted module is a direct hard edge.
    for node in &p.nodes {
        let expected_kind = if index.is_builtin(&node.name) {
            "builtin"
        } else if loaded.contains(&node.name) {
            "loaded"
        } else if cmdline.blacklist.contains(&node.name) {
            "blacklisted"
        } else {
            "insert"
        };
        match &node.action {
            Action::Builtin => assert_eq!(expected_kind, "builtin"),
            Action::AlreadyLoaded => assert_eq!(expected_kind, "loaded"),
            Action::Blacklisted => assert_eq!(expected_kind, "blacklisted"),
            Action::Unplannable { error } => {
                panic!("{}: unplannable in plan(): {error}", node.name)
            }
            // The fuzzed command line has no kmodinit.skip.
            Action::Skipped { option } => {
                panic!("{}: skipped ({option}) without a skip", node.name)
            }
            Action::Insert { path, compression } => {
                assert_eq!(expected_kind, "insert");
                let entry = index
                    .module(&node.name)
                    .expect("inserted module in the index");
                assert_eq!(path, &entry.path);
                assert_eq!(*compression, entry.compression);
                for d in &entry.deps {
                    let &did = seen.get(d).expect("dependency in the plan");
                    assert!(
                        node.preds
                            .iter()
                            .any(|e| e.from == did && e.kind == EdgeKind::Dependency),
                        "{} -> {d}: not a Dependency edge",
                        node.name
                    );
                }
            }
        }
        assert!(
            !manifest.blocklist.contains(&node.name),
            "{} is blocklisted",
            node.name
        );
    }

    // Chains: one plan chain per manifest chain, entries in order, each
    // after the previous one.
    assert_eq!(p.chains.len(), manifest.chains.len());
    let mut declared: BTreeMap<ModuleName, String> = BTreeMap::new();
    for (pc, mc) in p.chains.iter().zip(&manifest.chains) {
        assert_eq!(pc.name, mc.name);
        assert_eq!(pc.required, mc.required);
        assert_eq!(pc.nodes.len(), mc.modules.len());
        for (j, (&id, entry)) in pc.nodes.iter().zip(&mc.modules).enumerate() {
            if j > 0 {
                let prev = pc.nodes[j - 1];
                assert!(
                    p.nodes[id].preds.iter().any(|e| e.from == prev),
                    "chain {}: {} does not wait for {}",
                    pc.name,
                    p.nodes[id].name,
                    p.nodes[prev].name
                );
            }
            if pc.required {
                assert!(p.nodes[id].required);
            }
            if let Some(params) = entry
                .params
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let resolved = p.nodes[id].name.clone();
                let prev = declared.insert(resolved, params.to_owned());
                assert!(prev.is_none() || prev.as_deref() == Some(params));
            }
        }
    }
    for (m, spec) in &manifest.modules {
        if let Some(params) = spec
            .params
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let prev = declared.insert(m.clone(), params.to_owned());
            assert!(prev.is_none() || prev.as_deref() == Some(params));
        }
    }

    // Params: as declared (however the module is pulled in), then the
    // command line's, in order.
    for node in &p.nodes {
        let mut parts: Vec<String> = Vec::new();
        if let Some(d) = declared.get(&node.name) {
            parts.push(d.clone());
        }
        let extra = cmdline.params_for(&node.name);
        if !extra.is_empty() {
            parts.push(extra);
        }
        assert_eq!(node.params, parts.join(" "), "params of {}", node.name);
    }

    // Critical path under unit costs: a real path along edges, as long as
    // the longest one.
    let cp = p.critical_path(|_| 1.0);
    let mut depth = vec![0usize; p.nodes.len()];
    for node in &p.nodes {
        depth[node.id] = 1 + node.preds.iter().map(|e| depth[e.from]).max().unwrap_or(0);
    }
    let longest = depth.iter().copied().max().unwrap_or(0);
    assert_eq!(cp.cost, longest as f64);
    assert_eq!(cp.nodes.len(), longest);
    for w in cp.nodes.windows(2) {
        assert!(p.nodes[w[1]].preds.iter().any(|e| e.from == w[0]));
    }
});

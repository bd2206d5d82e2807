//! Property tests: random module graphs and manifests against an oracle.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use modules_manifest::{
    plan, plan_at_boot, Action, DepIndex, EdgeKind, KernelCmdline, Manifest, ModuleName, PlanError,
    PlanInput,
};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
struct Case {
    /// deps[i]: the modules.dep dependencies of module i.
    deps: Vec<Vec<usize>>,
    /// (entries, required, which entries spell out their params)
    chains: Vec<(Vec<usize>, bool, Vec<bool>)>,
    /// The one parameter string each module may have.
    params: Vec<Option<String>>,
    /// Modules whose params are (also) in the `modules` section.
    in_section: Vec<bool>,
}

fn name(i: usize) -> String {
    format!("m{i}")
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..10).prop_flat_map(|n| {
        // Mostly forward edges (j < i) so most graphs are acyclic; a few
        // backward or self edges make cycles.
        let deps = prop::collection::vec(
            prop::collection::vec((0..n, prop::bool::weighted(0.08)), 0..4),
            n,
        )
        .prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(|(i, row)| {
                    let mut v: Vec<usize> = row
                        .into_iter()
                        .filter(|&(j, back)| j < i || back)
                        .map(|(j, _)| j)
                        .collect();
                    v.sort();
                    v.dedup();
                    v
                })
                .collect::<Vec<_>>()
        });
        let chain = (
            prop::sample::subsequence((0..n).collect::<Vec<_>>(), 1..=n.min(4)).prop_shuffle(),
            any::<bool>(),
            prop::collection::vec(any::<bool>(), 4),
        );
        let chains = prop::collection::vec(chain, 1..4);
        let params = prop::collection::vec(prop::option::weighted(0.5, 0u8..5), n).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, p)| p.map(|p| format!("p{i}={p}")))
                .collect::<Vec<_>>()
        });
        let in_section = prop::collection::vec(any::<bool>(), n);
        (deps, chains, params, in_section).prop_map(|(deps, chains, params, in_section)| Case {
            deps,
            chains,
            params,
            in_section,
        })
    })
}

fn dep_text(c: &Case) -> String {
    c.deps
        .iter()
        .enumerate()
        .map(|(i, ds)| {
            let ds: Vec<String> = ds
                .iter()
                .map(|&d| format!("kernel/{}.ko", name(d)))
                .collect();
            format!("kernel/{}.ko: {}\n", name(i), ds.join(" "))
        })
        .collect()
}

fn manifest_json(c: &Case) -> String {
    let chains: Vec<_> = c
        .chains
        .iter()
        .enumerate()
        .map(|(ci, (entries, required, spell))| {
            let modules: Vec<_> = entries
                .iter()
                .enumerate()
                .map(|(k, &m)| match (&c.params[m], spell[k]) {
                    (Some(p), true) => json!({"name": name(m), "params": p}),
                    _ => json!(name(m)),
                })
                .collect();
            json!({"name": format!("c{ci}"), "modules": modules, "required": required})
        })
        .collect();
    let section: serde_json::Map<String, serde_json::Value> = (0..c.deps.len())
        .filter(|&m| c.in_section[m])
        .map(|m| (name(m), json!({"params": c.params[m]})))
        .collect();
    json!({"version": 1, "chains": chains, "modules": section}).to_string()
}

/// Declared params of module m: set if any place spells them out.
fn declared(c: &Case, m: usize) -> String {
    let spelled_in_chain = c
        .chains
        .iter()
        .any(|(entries, _, spell)| entries.iter().enumerate().any(|(k, &e)| e == m && spell[k]));
    match &c.params[m] {
        Some(p) if spelled_in_chain || c.in_section[m] => p.clone(),
        _ => String::new(),
    }
}

struct Oracle {
    needed: BTreeSet<usize>,
    /// (before, after) edges among needed modules.
    edges: BTreeSet<(usize, usize)>,
    acyclic: bool,
    required: BTreeSet<usize>,
}

impl Oracle {
    /// Modules on a cycle: those that reach themselves along `edges`.
    fn in_cycle(&self) -> BTreeSet<usize> {
        self.needed
            .iter()
            .copied()
            .filter(|&v| {
                let mut seen = BTreeSet::new();
                let mut stack = vec![v];
                while let Some(x) = stack.pop() {
                    for &(a, b) in &self.edges {
                        if a == x && seen.insert(b) {
                            stack.push(b);
                        }
                    }
                }
                seen.contains(&v)
            })
            .collect()
    }
}

fn oracle(c: &Case) -> Oracle {
    let mut needed = BTreeSet::new();
    let mut stack: Vec<usize> = c
        .chains
        .iter()
        .flat_map(|ch| ch.0.iter().copied())
        .collect();
    while let Some(m) = stack.pop() {
        if needed.insert(m) {
            stack.extend(c.deps[m].iter().copied());
        }
    }
    let mut edges = BTreeSet::new();
    for &m in &needed {
        for &d in &c.deps[m] {
            edges.insert((d, m));
        }
    }
    for (entries, _, _) in &c.chains {
        for w in entries.windows(2) {
            edges.insert((w[0], w[1]));
        }
    }
    // Cycle check: repeatedly remove nodes without incoming edges.
    let mut left: BTreeSet<usize> = needed.clone();
    loop {
        let free: Vec<usize> = left
            .iter()
            .copied()
            .filter(|&v| !edges.iter().any(|&(a, b)| b == v && left.contains(&a)))
            .collect();
        if free.is_empty() {
            break;
        }
        for v in free {
            left.remove(&v);
        }
    }
    let acyclic = left.is_empty();
    let mut required = BTreeSet::new();
    let mut stack: Vec<usize> = c
        .chains
        .iter()
        .filter(|ch| ch.1)
        .flat_map(|ch| ch.0.iter().copied())
        .collect();
    while let Some(m) = stack.pop() {
        if required.insert(m) {
            stack.extend(edges.iter().filter(|&&(_, b)| b == m).map(|&(a, _)| a));
        }
    }
    Oracle {
        needed,
        edges,
        acyclic,
        required,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plan_matches_the_oracle(c in case()) {
        let idx = DepIndex::parse(&dep_text(&c), "", "", "").unwrap();
        let m = Manifest::from_json(manifest_json(&c).as_bytes()).unwrap();
        let o = oracle(&c);
        let loaded = BTreeSet::new();
        let result = plan(PlanInput {
            manifest: &m,
            index: &idx,
            cmdline: &KernelCmdline::default(),
            loaded: &loaded,
        });
        prop_assert_eq!(result.is_ok(), o.acyclic, "{:?}", result.as_ref().err());
        // At boot: the same plan when there is no cycle; with one, every
        // needed module is still there, exactly the modules of a cycle are
        // unplannable, and the plan is a DAG.
        let boot = plan_at_boot(PlanInput {
            manifest: &m,
            index: &idx,
            cmdline: &KernelCmdline::default(),
            loaded: &loaded,
        })
        .unwrap();
        if let Ok(p) = &result {
            prop_assert_eq!(&boot, p);
        }
        let in_cycle = o.in_cycle();
        let boot_names: BTreeSet<String> = boot.nodes.iter().map(|n| n.name.to_string()).collect();
        prop_assert_eq!(boot_names, o.needed.iter().map(|&i| name(i)).collect::<BTreeSet<_>>());
        for (i, node) in boot.nodes.iter().enumerate() {
            let mi: usize = node.name.as_str()[1..].parse().unwrap();
            prop_assert_eq!(
                matches!(node.action, Action::Unplannable { .. }),
                in_cycle.contains(&mi),
                "{}: {:?}", node.name, node.action
            );
            for e in &node.preds {
                prop_assert!(e.from < i);
            }
        }
        let p = match result {
            Ok(p) => p,
            Err(e) => {
                prop_assert!(
                    matches!(e, PlanError::Cycle { .. } | PlanError::SelfDependency { .. }),
                    "{:?}",
                    e
                );
                prop_assert!(e.to_string().contains("cycle"), "{}", e);
                return Ok(());
            }
        };
        // Every needed module exactly once, nothing else.
        let names: Vec<String> = p.nodes.iter().map(|n| n.name.to_string()).collect();
        let unique: BTreeSet<&String> = names.iter().collect();
        prop_assert_eq!(unique.len(), names.len());
        let want: BTreeSet<String> = o.needed.iter().map(|&i| name(i)).collect();
        prop_assert_eq!(names.iter().cloned().collect::<BTreeSet<_>>(), want);
        let id_of: BTreeMap<String, usize> = names.iter().cloned().enumerate().map(|(i, n)| (n, i)).collect();
        for (i, node) in p.nodes.iter().enumerate() {
            prop_assert_eq!(node.id, i);
            for e in &node.preds {
                prop_assert!(e.from < i);
                prop_assert!(p.nodes[e.from].succs.contains(&i));
            }
            let mut succs = node.succs.clone();
            succs.sort();
            succs.dedup();
            prop_assert_eq!(succs.len(), node.succs.len());
            let m: usize = node.name.as_str()[1..].parse().unwrap();
            // Params belong to the module, however it was reached.
            prop_assert_eq!(&node.params, &declared(&c, m));
            prop_assert_eq!(node.required, o.required.contains(&m));
        }
        // Every dependency and chain-order edge is there, pointing forward.
        for &(a, b) in &o.edges {
            let (ia, ib) = (id_of[&name(a)], id_of[&name(b)]);
            prop_assert!(ia < ib);
            let e = p.nodes[ib].preds.iter().find(|e| e.from == ia);
            prop_assert!(e.is_some(), "edge {} → {} missing", a, b);
            if c.deps[b].contains(&a) {
                prop_assert_eq!(e.map(|e| e.kind), Some(EdgeKind::Dependency));
            }
        }
        // And no edge the graph does not have.
        for node in &p.nodes {
            for e in &node.preds {
                let a: usize = p.nodes[e.from].name.as_str()[1..].parse().unwrap();
                let b: usize = node.name.as_str()[1..].parse().unwrap();
                prop_assert!(o.edges.contains(&(a, b)));
            }
        }
        // Deterministic.
        let again = plan(PlanInput { manifest: &m, index: &idx, cmdline: &KernelCmdline::default(), loaded: &loaded }).unwrap();
        prop_assert_eq!(again, p);
    }

    #[test]
    fn alias_lookup_equals_a_full_scan(
        aliases in prop::collection::vec(("[ab:*?]{0,6}", 0usize..4), 0..40),
        names in prop::collection::vec("[ab:]{0,6}", 1..10),
    ) {
        let mut table = modules_manifest::AliasTable::default();
        for (pattern, m) in &aliases {
            table.insert(pattern, ModuleName::new(&name(*m)).unwrap()).unwrap();
        }
        for q in &names {
            let mut want: Vec<ModuleName> = aliases
                .iter()
                .filter(|(p, _)| modules_manifest::depmod::fnmatch(p.as_bytes(), q.as_bytes()))
                .map(|(_, m)| ModuleName::new(&name(*m)).unwrap())
                .collect();
            want.sort();
            want.dedup();
            prop_assert_eq!(table.lookup(q), want, "{}", q);
        }
    }

    #[test]
    fn cmdline_module_params_round_trip(
        module in "[a-z][a-z0-9_]{0,10}",
        key in "[a-z][a-z0-9_]{0,10}",
        value in "[a-z0-9 ,=:]{0,12}",
    ) {
        let line = format!("quiet {module}.{key}=\"{value}\" ro");
        let c = KernelCmdline::parse(&line);
        prop_assert!(c.quiet);
        prop_assert_eq!(c.read_only, Some(true));
        let got = c.params_for(&ModuleName::new(&module).unwrap());
        let want = if value.contains(' ') { format!("{key}=\"{value}\"") } else { format!("{key}={value}") };
        if module != "kmodinit" && !(module == "modprobe" && key == "blacklist") {
            prop_assert_eq!(got, want);
        }
    }
}

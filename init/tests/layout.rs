//! The layout rule of `/init`, held by a check: the top-level modules of
//! `src/` (one folder per process, `pid1/`, `loader/`, `helper/`, and the
//! leaves they share) import each other without a cycle, and PID 1's side
//! and the loader's side never import each other. `main.rs` is the one
//! place that wires them together; tests may reach anywhere. `make lint`
//! runs this file.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its `#[cfg(test)]` module and comments.
fn product_code(text: &str) -> String {
    let end = text.find("\n#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names through `crate::`: `crate::a::…`
/// and each `a` of `crate::{a::…, b}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut refs = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            refs.extend(group.split(',').map(|p| ident(p.trim())));
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.retain(|r| !r.is_empty() && r.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    refs
}

/// Top-level module → the top-level modules its product code imports.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.trim_end_matches(".rs").to_owned();
        if top == "main" || top == "lib" {
            continue;
        }
        let mut refs = crate_refs(&product_code(&std::fs::read_to_string(&f).unwrap()));
        refs.remove(&top);
        refs.remove("self");
        graph.entry(top).or_default().extend(refs);
    }
    graph
}

/// A cycle through `node`, if any (depth-first).
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|p| p == node) {
        let mut c = path[at..].to_vec();
        c.push(node.to_owned());
        return Some(c);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(c) = cycle_from(graph, next, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

#[test]
fn the_modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    assert!(
        graph.contains_key("pid1") && graph.contains_key("loader"),
        "{graph:?}"
    );
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = cycle_from(&graph, node, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}\n{graph:#?}", c.join(" → "));
        }
    }
}

#[test]
fn pid1_and_the_loader_never_import_each_other() {
    let graph = module_graph();
    for (a, b) in [("pid1", "loader"), ("loader", "pid1")] {
        assert!(
            !graph[a].contains(b),
            "{a} imports {b}: what both need belongs in a shared leaf (wire, inputs, …)"
        );
    }
}

#[test]
fn the_check_sees_imports_and_cycles() {
    assert_eq!(
        crate_refs("use crate::{a::B, c};\nlet x = crate::d::e();"),
        ["a", "c", "d"].map(String::from).into_iter().collect()
    );
    assert_eq!(
        product_code("use crate::a;\n// crate::b\n#[cfg(test)]\nuse crate::c;"),
        "use crate::a;"
    );
    let g: BTreeMap<String, BTreeSet<String>> = [("x", "y"), ("y", "z"), ("z", "x")]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), BTreeSet::from([b.to_owned()])))
        .collect();
    let c = cycle_from(&g, "x", &mut Vec::new(), &mut BTreeSet::new()).unwrap();
    assert_eq!(c, ["x", "y", "z", "x"]);
}

//! What the benchmark needs from a manifest, read through kmodinit's own
//! core: the manifest is parsed by `Manifest::from_json`, the module index by
//! `DepIndex::load`, and both are planned by `modules_manifest::plan` (empty
//! command line, nothing loaded, as on a fresh boot). So the busybox baselines
//! insert exactly the modules kmodinit's plan inserts (same softdep choices),
//! and the physical limit of the load phase is the plan's longest path,
//! weighted by each module's `delay_ms` parameter.

use std::collections::BTreeSet;
use std::path::Path;

use modules_manifest::{
    plan, Action, DepIndex, EdgeKind, KernelCmdline, Manifest, ModuleName, Plan, PlanInput,
    PlanNode,
};

/// A manifest planned against one module index.
#[derive(Debug, Clone)]
pub struct Spec {
    pub index: DepIndex,
    pub plan: Plan,
}

/// The `delay_ms=N` of a parameter string (0 without one).
fn delay_ms_of(params: &str) -> u64 {
    params
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("delay_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn is_insert(node: &PlanNode) -> bool {
    matches!(node.action, Action::Insert { .. })
}

impl Spec {
    /// Plans `manifest` (a version-1 manifest) against `index`; the error
    /// names what is wrong (JSON path, module, chain).
    pub fn new(manifest: &serde_json::Value, index: DepIndex) -> Result<Spec, String> {
        let bytes = serde_json::to_vec(manifest).map_err(|e| format!("manifest: {e}"))?;
        let manifest = Manifest::from_json(&bytes).map_err(|e| e.to_string())?;
        let cmdline = KernelCmdline::parse("");
        let loaded = BTreeSet::new();
        let plan = plan(PlanInput {
            manifest: &manifest,
            index: &index,
            cmdline: &cmdline,
            loaded: &loaded,
        })
        .map_err(|e| format!("plan: {e}"))?;
        Ok(Spec { index, plan })
    }

    /// Reads the index of `modules_dir` (`…/lib/modules/RELEASE`) and plans
    /// `manifest` against it.
    pub fn load(manifest: &serde_json::Value, modules_dir: &Path) -> Result<Spec, String> {
        let index = DepIndex::load(modules_dir).map_err(|e| e.to_string())?;
        Spec::new(manifest, index)
    }

    /// The modules to insert, dependencies before dependents (plan order),
    /// with their paths relative to the module directory. Builtin modules
    /// are left out.
    pub fn inserts(&self) -> impl Iterator<Item = (&ModuleName, &str)> {
        self.plan.nodes.iter().filter_map(|n| match &n.action {
            Action::Insert { path, .. } => Some((&n.name, path.as_str())),
            _ => None,
        })
    }

    /// The module files to insert, in plan order.
    pub fn module_files(&self) -> Vec<&str> {
        self.plan.module_files().collect()
    }

    /// Every planned module with a parameter string, and that string.
    pub fn params(&self) -> impl Iterator<Item = (&ModuleName, &str)> {
        self.plan
            .nodes
            .iter()
            .filter(|n| !n.params.is_empty())
            .map(|n| (&n.name, n.params.as_str()))
    }

    /// A module's `delay_ms` parameter (0 without one or outside the plan).
    pub fn delay_ms(&self, name: &ModuleName) -> u64 {
        self.plan.node(name).map_or(0, |n| delay_ms_of(&n.params))
    }

    /// The edges worth drawing between modules to insert, as (earlier,
    /// later) names: direct dependencies (not the transitive closure that
    /// `modules.dep` spells out), pre-softdeps and chain order.
    pub fn edges(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for node in self.plan.nodes.iter().filter(|n| is_insert(n)) {
            let direct = self.index.direct_deps(&node.name);
            for e in &node.preds {
                let from = &self.plan.nodes[e.from];
                if is_insert(from)
                    && (e.kind != EdgeKind::Dependency || direct.contains(&from.name))
                {
                    out.push((from.name.to_string(), node.name.to_string()));
                }
            }
        }
        out
    }

    /// The heaviest path through the plan by `delay_ms` (ms, and its modules
    /// first to last). Modules that are not inserted cost nothing.
    pub fn longest_delay_path(&self) -> (u64, Vec<String>) {
        let path = self.plan.critical_path(|n| {
            if is_insert(n) {
                delay_ms_of(&n.params) as f64
            } else {
                0.0
            }
        });
        let names = path
            .nodes
            .iter()
            .map(|&i| self.plan.nodes[i].name.to_string())
            .collect();
        // A sum of whole milliseconds: exact in f64.
        (path.cost.round() as u64, names)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    fn farm_index() -> DepIndex {
        DepIndex::parse("lib.ko:\na.ko: lib.ko\nb.ko:\nc.ko:\nb-x.ko:\n", "", "", "").unwrap()
    }

    /// ext4 on a Debian-like index: transitive deps, a builtin one, and a
    /// softdep alias with two candidates.
    fn ext4_index() -> DepIndex {
        DepIndex::parse(
            "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
             kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\n\
             kernel/crypto/crc32c_generic.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\n",
            "kernel/lib/crc16.ko\n",
            "softdep ext4 pre: crypto-crc32c\n",
            "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n",
        )
        .unwrap()
    }

    fn ext4_spec() -> Spec {
        let m = serde_json::json!({"version": 1, "chains": [{"name": "fs", "modules": ["ext4"]}]});
        Spec::new(&m, ext4_index()).unwrap()
    }

    #[test]
    fn reads_params_from_chain_entries_and_the_modules_section() {
        let m = serde_json::json!({"version": 1,
            "chains":[{"name":"x","modules":["a",{"name":"b-x","params":"delay_ms=5"}]}],
            "modules":{"lib":{"params":"delay_ms=7 other=1"}}});
        let s = Spec::new(&m, farm_index()).unwrap();
        assert_eq!(s.delay_ms(&n("b_x")), 5);
        assert_eq!(s.delay_ms(&n("lib")), 7);
        assert_eq!(s.delay_ms(&n("a")), 0);
        assert_eq!(s.delay_ms(&n("c")), 0);
        let params: Vec<(String, &str)> = s.params().map(|(m, p)| (m.to_string(), p)).collect();
        assert!(params.contains(&("lib".into(), "delay_ms=7 other=1")));
        assert!(params.contains(&("b_x".into(), "delay_ms=5")));
        assert_eq!(params.len(), 2);
    }

    #[test]
    fn longest_path_follows_deps_and_chain_order() {
        // chain1: a (10) then b (10); a needs lib (50). chain2: c (55).
        let m = serde_json::json!({"version": 1, "chains":[
            {"name":"1","modules":[{"name":"a","params":"delay_ms=10"},{"name":"b","params":"delay_ms=10"}]},
            {"name":"2","modules":[{"name":"c","params":"delay_ms=55"}]}],
            "modules":{"lib":{"params":"delay_ms=50"}}});
        let s = Spec::new(&m, farm_index()).unwrap();
        let (cost, path) = s.longest_delay_path();
        assert_eq!(cost, 70);
        assert_eq!(path, vec!["lib", "a", "b"]);
    }

    #[test]
    fn inserts_put_deps_and_softdeps_first_and_skip_builtins() {
        let s = ext4_spec();
        let names: Vec<String> = s.inserts().map(|(m, _)| m.to_string()).collect();
        // crc16 is builtin; both crc32c matches are planned, as modprobe
        // loads every match (crc32c_intel refuses on a CPU without SSE4.2).
        assert_eq!(names.len(), 5, "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("ext4"));
        for m in ["crc32c_generic", "crc32c_intel", "jbd2", "mbcache"] {
            assert!(names.iter().any(|x| x == m), "{m} missing: {names:?}");
        }
        assert_eq!(s.module_files().last(), Some(&"kernel/fs/ext4/ext4.ko"));
        assert_eq!(s.module_files().len(), 5);
    }

    #[test]
    fn edges_are_direct_deps_softdeps_and_chain_order() {
        let s = ext4_spec();
        let mut edges = s.edges();
        edges.sort();
        let want: Vec<(String, String)> = [
            ("crc32c_generic", "ext4"),
            ("crc32c_intel", "ext4"),
            ("jbd2", "ext4"),
            ("mbcache", "ext4"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(edges, want);
        // A transitive dependency is not drawn; chain order is.
        let idx =
            DepIndex::parse("a.ko: b.ko c.ko\nb.ko: c.ko\nc.ko:\nd.ko:\n", "", "", "").unwrap();
        let m = serde_json::json!({"version": 1, "chains": [{"name": "x", "modules": ["a", "d"]}]});
        let mut edges = Spec::new(&m, idx).unwrap().edges();
        edges.sort();
        let want: Vec<(String, String)> = [("a", "d"), ("b", "a"), ("c", "b")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(edges, want);
    }

    #[test]
    fn unknown_modules_and_bad_manifests_are_named() {
        let m = serde_json::json!({"version": 1, "chains": [{"name": "x", "modules": ["nope"]}]});
        let err = Spec::new(&m, farm_index()).unwrap_err();
        assert!(err.contains("nope"), "{err}");
        let err = Spec::new(
            &serde_json::json!({"version": 1, "chains": 3}),
            farm_index(),
        )
        .unwrap_err();
        assert!(err.contains("chains"), "{err}");
    }
}

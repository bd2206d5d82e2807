//! What the benchmark needs from a manifest: its chains, every module's
//! parameters, and the physical limit of the load phase (the longest path
//! through the dependency + chain graph, weighted by each module's
//! `delay_ms` parameter).

use std::collections::BTreeMap;

use crate::moddep::{module_name, ModDep};

/// A manifest's chains and parameters, names normalised.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub chains: Vec<(String, Vec<String>)>,
    pub params: BTreeMap<String, String>,
}

impl Spec {
    /// Reads the parts of a version-1 manifest the benchmark needs.
    pub fn from_manifest(m: &serde_json::Value) -> Result<Spec, String> {
        let mut spec = Spec::default();
        let chains = m["chains"]
            .as_array()
            .ok_or("manifest: \"chains\" is not an array")?;
        for (i, c) in chains.iter().enumerate() {
            let name = c["name"].as_str().unwrap_or("chain").to_string();
            let mut mods = Vec::new();
            let entries = c["modules"]
                .as_array()
                .ok_or(format!("manifest: chains[{i}].modules is not an array"))?;
            for (j, e) in entries.iter().enumerate() {
                let (n, p) = match e {
                    serde_json::Value::String(s) => (s.as_str(), None),
                    _ => (
                        e["name"]
                            .as_str()
                            .ok_or(format!("manifest: chains[{i}].modules[{j}] has no name"))?,
                        e["params"].as_str(),
                    ),
                };
                let n = module_name(n);
                if let Some(p) = p {
                    spec.params.insert(n.clone(), p.to_string());
                }
                mods.push(n);
            }
            spec.chains.push((name, mods));
        }
        if let Some(modules) = m["modules"].as_object() {
            for (n, v) in modules {
                if let Some(p) = v["params"].as_str() {
                    spec.params.insert(module_name(n), p.to_string());
                }
            }
        }
        Ok(spec)
    }

    /// Every chain entry, in chain order.
    pub fn roots(&self) -> Vec<String> {
        self.chains.iter().flat_map(|(_, c)| c.clone()).collect()
    }

    /// A module's `delay_ms` parameter (0 without one).
    pub fn delay_ms(&self, name: &str) -> u64 {
        self.params
            .get(name)
            .and_then(|p| {
                p.split_whitespace()
                    .find_map(|kv| kv.strip_prefix("delay_ms="))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Predecessors of each planned module: its dependencies, its pre-
    /// softdeps and the entry before it in each chain.
    pub fn preds(&self, index: &ModDep) -> Result<BTreeMap<String, Vec<String>>, String> {
        let mut preds: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in index.closure(&self.roots())? {
            let mut p: Vec<String> = index
                .modules
                .get(&name)
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            p.extend(index.softdeps.get(&name).cloned().unwrap_or_default());
            p.retain(|d| !index.builtin.contains(d));
            preds.insert(name, p);
        }
        for (_, chain) in &self.chains {
            for w in chain.windows(2) {
                if let Some(p) = preds.get_mut(&w[1]) {
                    p.push(w[0].clone());
                }
            }
        }
        Ok(preds)
    }

    /// The heaviest path by `delay_ms` (ms, and its modules first to last).
    pub fn longest_delay_path(&self, index: &ModDep) -> Result<(u64, Vec<String>), String> {
        let preds = self.preds(index)?;
        let mut best: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
        fn visit(
            n: &str,
            spec: &Spec,
            preds: &BTreeMap<String, Vec<String>>,
            best: &mut BTreeMap<String, (u64, Option<String>)>,
            depth: usize,
        ) -> Result<u64, String> {
            if let Some((c, _)) = best.get(n) {
                return Ok(*c);
            }
            if depth > 512 {
                return Err(format!("cycle through {n}"));
            }
            let mut top = (0, None);
            for p in preds.get(n).into_iter().flatten() {
                let c = visit(p, spec, preds, best, depth + 1)?;
                if c > top.0 || top.1.is_none() {
                    top = (c, Some(p.clone()));
                }
            }
            let cost = top.0 + spec.delay_ms(n);
            best.insert(n.to_string(), (cost, top.1));
            Ok(cost)
        }
        for n in preds.keys() {
            visit(n, self, &preds, &mut best, 0)?;
        }
        let Some((end, (cost, _))) = best.iter().max_by_key(|(_, (c, _))| *c) else {
            return Ok((0, Vec::new()));
        };
        let mut path = vec![end.clone()];
        let mut cur = best.get(end).and_then(|(_, p)| p.clone());
        while let Some(p) = cur {
            cur = best.get(&p).and_then(|(_, q)| q.clone());
            path.push(p);
        }
        path.reverse();
        Ok((*cost, path))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn index() -> ModDep {
        let mut m = ModDep::default();
        for (n, d) in [
            ("lib", vec![]),
            ("a", vec!["lib"]),
            ("b", vec![]),
            ("c", vec![]),
        ] {
            m.modules.insert(
                n.into(),
                (format!("{n}.ko"), d.into_iter().map(String::from).collect()),
            );
        }
        m
    }

    #[test]
    fn reads_chains_and_params_from_both_places() {
        let m = serde_json::json!({"chains":[{"name":"x","modules":["a",{"name":"b-x","params":"delay_ms=5"}]}],
            "modules":{"lib":{"params":"delay_ms=7 other=1"}}});
        let s = Spec::from_manifest(&m).unwrap();
        assert_eq!(s.chains[0].1, vec!["a", "b_x"]);
        assert_eq!(s.delay_ms("b_x"), 5);
        assert_eq!(s.delay_ms("lib"), 7);
        assert_eq!(s.delay_ms("a"), 0);
    }

    #[test]
    fn longest_path_follows_deps_and_chain_order() {
        // chain1: a (10) then b (10); a needs lib (50). chain2: c (55).
        let m = serde_json::json!({"chains":[
            {"name":"1","modules":[{"name":"a","params":"delay_ms=10"},{"name":"b","params":"delay_ms=10"}]},
            {"name":"2","modules":[{"name":"c","params":"delay_ms=55"}]}],
            "modules":{"lib":{"params":"delay_ms=50"}}});
        let s = Spec::from_manifest(&m).unwrap();
        let (cost, path) = s.longest_delay_path(&index()).unwrap();
        assert_eq!(cost, 70);
        assert_eq!(path, vec!["lib", "a", "b"]);
    }

    #[test]
    fn a_manifest_without_chains_is_an_error() {
        assert!(Spec::from_manifest(&serde_json::json!({"chains": 3})).is_err());
    }
}

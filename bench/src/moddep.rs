//! Just enough of a depmod index to build the baseline images: which file a
//! module lives in, what it depends on (`modules.dep`), and `pre:` softdeps
//! resolved through `modules.alias`. The product's own index lives in
//! `modules_manifest::DepIndex`; this copy only serves the benchmark's
//! busybox baselines and the physical-limit computation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Normalises a module name or file path to the kernel's name (`-` → `_`).
pub fn module_name(path_or_name: &str) -> String {
    let base = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let base = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(base);
    base.replace('-', "_")
}

/// A module index read from `DIR/lib/modules/RELEASE`.
#[derive(Debug, Clone, Default)]
pub struct ModDep {
    /// name → (relative path, dependency names).
    pub modules: BTreeMap<String, (String, Vec<String>)>,
    /// name → `pre:` softdep names (already resolved through aliases).
    pub softdeps: BTreeMap<String, Vec<String>>,
    /// builtin module names.
    pub builtin: BTreeSet<String>,
}

impl ModDep {
    /// Reads `modules.dep` (required), `modules.softdep`, `modules.alias` and
    /// `modules.builtin` (optional) from `dir`.
    pub fn load(dir: &Path) -> Result<ModDep, String> {
        let read = |f: &str| std::fs::read_to_string(dir.join(f));
        let dep = read("modules.dep").map_err(|e| format!("{}/modules.dep: {e}", dir.display()))?;
        let mut out = ModDep::default();
        for (n, line) in dep.lines().enumerate() {
            let Some((path, deps)) = line.split_once(':') else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(format!(
                    "{}/modules.dep line {}: no ':'",
                    dir.display(),
                    n + 1
                ));
            };
            let deps = deps.split_whitespace().map(module_name).collect();
            out.modules
                .insert(module_name(path), (path.trim().to_string(), deps));
        }
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in read("modules.alias").unwrap_or_default().lines() {
            let mut w = line.split_whitespace();
            if let (Some("alias"), Some(a), Some(m)) = (w.next(), w.next(), w.next()) {
                aliases
                    .entry(a.to_string())
                    .or_default()
                    .push(module_name(m));
            }
        }
        for line in read("modules.softdep").unwrap_or_default().lines() {
            let mut w = line.split_whitespace();
            let (Some("softdep"), Some(m)) = (w.next(), w.next()) else {
                continue;
            };
            let mut pre = Vec::new();
            let mut in_pre = false;
            for word in w {
                match word {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    dep if in_pre => {
                        if let Some(found) = out.resolve(dep, &aliases) {
                            pre.push(found);
                        }
                    }
                    _ => {}
                }
            }
            out.softdeps.insert(module_name(m), pre);
        }
        for line in read("modules.builtin").unwrap_or_default().lines() {
            out.builtin.insert(module_name(line.trim()));
        }
        Ok(out)
    }

    /// A softdep target: the module itself, else an alias target, preferring
    /// a `_generic` implementation (it loads on any CPU, also under TCG).
    fn resolve(&self, dep: &str, aliases: &BTreeMap<String, Vec<String>>) -> Option<String> {
        let name = module_name(dep);
        if self.modules.contains_key(&name) {
            return Some(name);
        }
        let targets = aliases.get(dep)?;
        targets
            .iter()
            .find(|t| t.ends_with("_generic") && self.modules.contains_key(*t))
            .or_else(|| targets.iter().find(|t| self.modules.contains_key(*t)))
            .cloned()
    }

    /// Every module `roots` need, dependencies (and pre-softdeps) before
    /// dependents, each once; builtin ones left out. Unknown names are errors.
    pub fn closure(&self, roots: &[String]) -> Result<Vec<String>, String> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for r in roots {
            self.visit(&module_name(r), &mut seen, &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        if seen.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        if depth > 64 {
            return Err(format!("dependency loop through {name}"));
        }
        let (_, deps) = self
            .modules
            .get(name)
            .ok_or_else(|| format!("module {name} is not in modules.dep"))?;
        let soft = self.softdeps.get(name).cloned().unwrap_or_default();
        for d in soft.iter().chain(deps.iter().rev()) {
            self.visit(d, seen, order, depth + 1)?;
        }
        seen.insert(name.to_string());
        order.push(name.to_string());
        Ok(())
    }

    /// Direct dependencies of `name` (modules.dep lists the transitive set;
    /// keep only those not reachable through another listed dependency).
    pub fn direct_deps(&self, name: &str) -> Vec<String> {
        let Some((_, deps)) = self.modules.get(name) else {
            return Vec::new();
        };
        deps.iter()
            .filter(|d| {
                !deps.iter().any(|other| {
                    other != *d
                        && self
                            .modules
                            .get(other)
                            .is_some_and(|(_, od)| od.contains(d))
                })
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn index() -> ModDep {
        // One directory per call: tests run in parallel, and one test's
        // clean-up must not remove another's files.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kmb-moddep-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
             kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n\
             kernel/crypto/crc32c_generic.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.softdep"),
            "softdep ext4 pre: crypto-crc32c\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.alias"),
            "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n",
        )
        .unwrap();
        std::fs::write(dir.join("modules.builtin"), "kernel/lib/crc16.ko\n").unwrap();
        let m = ModDep::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        m
    }

    #[test]
    fn closure_puts_deps_and_generic_softdeps_first_and_skips_builtins() {
        let m = index();
        let order = m.closure(&["ext4".into()]).unwrap();
        assert_eq!(order, vec!["crc32c_generic", "jbd2", "mbcache", "ext4"]);
    }

    #[test]
    fn unknown_modules_are_named() {
        let err = index().closure(&["nope".into()]).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(module_name("kernel/x/crc32c-intel.ko.zst"), "crc32c_intel");
        assert_eq!(module_name("virtio-blk"), "virtio_blk");
    }

    #[test]
    fn direct_deps_drop_transitive_ones() {
        let mut m = ModDep::default();
        m.modules.insert("a".into(), ("a.ko".into(), vec![]));
        m.modules
            .insert("b".into(), ("b.ko".into(), vec!["a".into()]));
        m.modules
            .insert("c".into(), ("c.ko".into(), vec!["b".into(), "a".into()]));
        assert_eq!(m.direct_deps("c"), vec!["b".to_string()]);
    }
}

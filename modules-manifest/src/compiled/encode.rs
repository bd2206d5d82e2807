//! Writing a compiled index (the host's side: `kmodinit build`).

use std::collections::{BTreeMap, BTreeSet};

use super::{fnv1a, CompiledIndex, FORMAT_VERSION, MAGIC};
use crate::depmod::{Compression, DepIndex};
use crate::name::ModuleName;

/// What kmod's lookup gives every softdep target of `index` and every name
/// of `names` (the manifest's chain entries and softdep overrides), as
/// [`DepIndex::resolve`] answers on the host: the table `/init` answers
/// those names from without matching a pattern.
pub fn resolve_keys<'a>(
    index: &DepIndex,
    names: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Vec<ModuleName>> {
    let mut keys: BTreeSet<&str> = names.into_iter().collect();
    for sd in index.softdeps.values() {
        keys.extend(sd.pre.iter().chain(&sd.post).map(String::as_str));
    }
    keys.into_iter()
        .map(|k| (k.to_owned(), index.resolve(k)))
        .collect()
}

/// The bytes of `compiled` (the format of [`super`]). Deterministic: the
/// same index always gives the same bytes.
pub fn encode(compiled: &CompiledIndex) -> Vec<u8> {
    let index = &compiled.index;
    let names = Names::of(compiled);
    let mut b = Body::default();

    b.u32(names.sorted.len());
    for n in &names.sorted {
        b.str(n.as_str());
    }

    let modules: BTreeMap<_, _> = index.modules.iter().collect();
    b.u32(modules.len());
    for (name, entry) in modules {
        b.name(&names, name);
        b.str(&entry.path);
        b.0.push(compression_byte(entry.compression));
        b.names(&names, &entry.deps);
    }

    let builtin: BTreeSet<_> = index.builtin.iter().cloned().collect();
    b.names(&names, &builtin.into_iter().collect::<Vec<_>>());

    let softdeps: BTreeMap<_, _> = index.softdeps.iter().collect();
    b.u32(softdeps.len());
    for (name, sd) in softdeps {
        b.name(&names, name);
        b.strs(&sd.pre);
        b.strs(&sd.post);
        b.strs(&sd.ignored);
    }

    for table in [&index.aliases, &index.builtin_aliases] {
        let exact: BTreeMap<_, _> = table.exact_entries().collect();
        b.u32(exact.len());
        for (alias, modules) in exact {
            b.str(alias);
            b.names(&names, modules);
        }
        let globs: Vec<_> = table.glob_entries().collect();
        b.u32(globs.len());
        for (pattern, module) in globs {
            b.str(pattern);
            b.name(&names, module);
        }
    }

    let resolved: BTreeMap<_, _> = index.resolved.iter().collect();
    b.u32(resolved.len());
    for (key, modules) in resolved {
        b.str(key);
        b.names(&names, modules);
    }

    b.u32(compiled.params.len());
    for (name, params) in &compiled.params {
        b.name(&names, name);
        b.u32(params.len());
        for p in params {
            b.str(p);
        }
    }

    let mut out = Vec::with_capacity(b.0.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let mut header = Body::default();
    header.str(&compiled.release);
    header.u32(b.0.len());
    out.extend_from_slice(&header.0);
    out.extend_from_slice(&fnv1a(&b.0).to_le_bytes());
    out.extend_from_slice(&b.0);
    out
}

fn compression_byte(c: Compression) -> u8 {
    match c {
        Compression::None => 0,
        Compression::Xz => 1,
        Compression::Zstd => 2,
        Compression::Gzip => 3,
    }
}

/// Every module name the index mentions, sorted, and each one's number.
struct Names {
    sorted: Vec<ModuleName>,
    number: BTreeMap<ModuleName, u32>,
}

impl Names {
    fn of(c: &CompiledIndex) -> Names {
        let i = &c.index;
        let mut all: BTreeSet<ModuleName> = BTreeSet::new();
        for (name, entry) in &i.modules {
            all.insert(name.clone());
            all.extend(entry.deps.iter().cloned());
        }
        all.extend(i.builtin.iter().cloned());
        all.extend(i.softdeps.keys().cloned());
        for table in [&i.aliases, &i.builtin_aliases] {
            for (_, ms) in table.exact_entries() {
                all.extend(ms.iter().cloned());
            }
            all.extend(table.glob_entries().map(|(_, m)| m.clone()));
        }
        for ms in i.resolved.values() {
            all.extend(ms.iter().cloned());
        }
        all.extend(c.params.keys().cloned());
        let sorted: Vec<ModuleName> = all.into_iter().collect();
        let number = sorted
            .iter()
            .enumerate()
            .map(|(k, n)| (n.clone(), k as u32))
            .collect();
        Names { sorted, number }
    }
}

#[derive(Default)]
struct Body(Vec<u8>);

impl Body {
    fn u32(&mut self, v: usize) {
        // Every count and length is bounded far below 4 GiB by the index's
        // own size limit; a saturated value would fail the reader's checks.
        let v = u32::try_from(v).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.u32(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn strs(&mut self, list: &[String]) {
        self.u32(list.len());
        for s in list {
            self.str(s);
        }
    }

    fn name(&mut self, names: &Names, n: &ModuleName) {
        // Names::of collected every name this writer is given.
        let k = names.number.get(n).copied().unwrap_or(u32::MAX);
        self.0.extend_from_slice(&k.to_le_bytes());
    }

    fn names(&mut self, names: &Names, list: &[ModuleName]) {
        self.u32(list.len());
        for n in list {
            self.name(names, n);
        }
    }
}

//! Arbitrary bytes as `/etc/kmodinit/manifest.json`: `Manifest::from_json`
//! must return a manifest or an error, never panic, and what it accepts must
//! satisfy the schema rules the planner and PID 1 rely on; what it accepts
//! also survives a round trip through its own serialisation.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use modules_manifest::manifest::{MAX_CHAIN_NAME_BYTES, MAX_JOBS, MAX_MANIFEST_BYTES};
use modules_manifest::{Manifest, ModuleName};

fuzz_target!(|data: &[u8]| {
    let m = match Manifest::from_json(data) {
        Ok(m) => m,
        Err(e) => {
            assert!(!e.message.is_empty());
            return;
        }
    };
    assert!(data.len() <= MAX_MANIFEST_BYTES);
    assert_eq!(m.version, 1, "only version 1 exists");
    assert!(m.jobs <= MAX_JOBS);
    assert!(m.init.path.starts_with('/'));
    assert!(!m.init.path.contains('\0') && !m.init.args.iter().any(|a| a.contains('\0')));
    if let Some(root) = &m.root {
        for s in [&root.device, &root.fstype].into_iter().flatten() {
            assert!(!s.trim().is_empty() && !s.contains('\0'));
        }
    }

    // Every name the manifest hands on is a valid, already-normalised name.
    let names = m
        .chains
        .iter()
        .flat_map(|c| c.modules.iter().map(|e| &e.name))
        .chain(m.modules.keys())
        .chain(m.blocklist.iter());
    for name in names {
        assert_eq!(ModuleName::new(name.as_str()).as_ref(), Ok(name));
    }

    // Chains: unique, printable names; a module at most once per chain.
    let mut chain_names = BTreeSet::new();
    for c in &m.chains {
        assert!(!c.name.trim().is_empty() && c.name.len() <= MAX_CHAIN_NAME_BYTES);
        assert!(!c.name.chars().any(char::is_control));
        assert!(chain_names.insert(&c.name), "chain {:?} twice", c.name);
        let mut seen = BTreeSet::new();
        for e in &c.modules {
            assert!(
                seen.insert(&e.name),
                "{} twice in chain {:?}",
                e.name,
                c.name
            );
        }
    }

    // Parameters belong to the module: one trimmed, non-empty string per
    // module, or the manifest must have been refused.
    let mut declared: BTreeMap<&ModuleName, &str> = BTreeMap::new();
    let entries = m
        .chains
        .iter()
        .flat_map(|c| c.modules.iter().map(|e| (&e.name, e.params.as_deref())))
        .chain(m.modules.iter().map(|(n, s)| (n, s.params.as_deref())));
    for (name, params) in entries {
        if let Some(p) = params {
            assert!(!p.is_empty() && p.trim() == p && !p.contains('\0'));
            if let Some(prev) = declared.insert(name, p) {
                assert_eq!(prev, p, "{name}: two parameter strings accepted");
            }
        }
    }

    // A pure function of the bytes, and its own JSON reads back the same.
    assert_eq!(Manifest::from_json(data).as_ref(), Ok(&m));
    let json = serde_json::to_vec(&m).expect("a manifest serialises");
    if json.len() <= MAX_MANIFEST_BYTES {
        assert_eq!(Manifest::from_json(&json).as_ref(), Ok(&m), "round trip");
    }
});

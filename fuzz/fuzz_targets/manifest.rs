//! Arbitrary bytes as `/etc/kmodinit/manifest.json`: `Manifest::from_json`
//! must return a manifest or an error, never panic, and what it accepts must
//! satisfy the schema rules that the planner relies on.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use modules_manifest::{Manifest, ModuleName};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::from_json(data) else {
        return;
    };
    assert_eq!(m.version, 1, "only version 1 exists");

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

    // Parameters belong to the module: one parameter string per module, or
    // the manifest must have been refused.
    let mut declared: BTreeMap<&ModuleName, &str> = BTreeMap::new();
    let entries = m
        .chains
        .iter()
        .flat_map(|c| c.modules.iter().map(|e| (&e.name, e.params.as_deref())))
        .chain(m.modules.iter().map(|(n, s)| (n, s.params.as_deref())));
    for (name, params) in entries {
        if let Some(p) = params {
            if let Some(prev) = declared.insert(name, p) {
                assert_eq!(prev, p, "{name}: two parameter strings accepted");
            }
        }
    }

    // Parsing is a pure function of the bytes.
    assert_eq!(Manifest::from_json(data).as_ref(), Ok(&m));
});

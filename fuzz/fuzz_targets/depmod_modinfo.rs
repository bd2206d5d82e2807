//! Arbitrary bytes as `modules.builtin.modinfo` (NUL-terminated
//! `MODULE.KEY=VALUE` records, not necessarily UTF-8): the aliases of
//! builtin modules or an error naming the file and a record that exists,
//! never a panic. When it parses, every alias record became exactly one
//! alias of a module now counted as builtin, and an alias written without
//! wildcards looks up (at least) its module.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modules_manifest::{DepIndex, ModuleName};

const FILE: &str = "modules.builtin.modinfo";

fuzz_target!(|data: &[u8]| {
    let mut index = DepIndex::default();
    let records = data.split(|&b| b == 0).count();
    if let Err(e) = index.add_builtin_modinfo(data, FILE) {
        assert_eq!(e.file, FILE);
        assert!(
            e.line >= 1 && e.line <= records,
            "record {} of {records}",
            e.line
        );
        assert!(!e.kind.to_string().is_empty());
        return;
    }
    // Restated independently: a record is an alias record when the text
    // after its first '.' starts with "alias=".
    let mut aliases = 0;
    for record in data.split(|&b| b == 0) {
        let Some(dot) = record.iter().position(|&b| b == b'.') else {
            assert!(record.is_empty(), "record without '.' accepted: {record:?}");
            continue;
        };
        let Some(pattern) = record[dot + 1..].strip_prefix(b"alias=") else {
            continue;
        };
        aliases += 1;
        let module = std::str::from_utf8(&record[..dot]).expect("accepted module is UTF-8");
        let module = ModuleName::new(module).expect("accepted module name");
        assert!(
            index.is_builtin(&module),
            "{module} has an alias but is not builtin"
        );
        let pattern = std::str::from_utf8(pattern).expect("accepted pattern is UTF-8");
        if !pattern.contains(['*', '?', '[', '\\']) {
            assert!(
                index.builtin_aliases.lookup(pattern).contains(&module),
                "{pattern:?} does not resolve to {module}"
            );
        }
    }
    assert_eq!(index.builtin_aliases.len(), aliases);
});

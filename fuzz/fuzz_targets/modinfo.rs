//! Arbitrary bytes as a module file whose parameters the image builder
//! reads (`modinfo::module_params`: the ELF `.modinfo` section): an error
//! or a set of names, never a panic or an out-of-bounds read; every name is
//! non-empty, blank-free and written with `_`. The same bytes as a
//! `modules.params` file (what `/init` reads) parse without panic too.
//! The same for firmware: the `firmware=` records
//! (`firmware::module_firmware`, every kept name plain) and a lookup in
//! the bytes as a `modules.firmware` file (`firmware::modules_naming`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use modules_manifest::{firmware, modinfo};

fuzz_target!(|data: &[u8]| {
    if let Ok(names) = modinfo::module_params(data) {
        for n in &names {
            assert!(!n.is_empty() && !n.contains('-'));
            assert!(!n.bytes().any(|b| b.is_ascii_whitespace()));
        }
    }
    // The section reader alone, on a name that usually exists.
    let _ = modinfo::elf_section(data, ".shstrtab");
    let text = String::from_utf8_lossy(data);
    for (_, params) in modinfo::parse_params_file(&text) {
        for p in params {
            assert!(!p.is_empty() && !p.contains('='));
        }
    }
    if let Ok(fw) = firmware::module_firmware(data) {
        assert!(fw.firmware.iter().all(|n| firmware::is_plain_name(n)));
    }
    for name in text.split_ascii_whitespace().take(4) {
        let _ = firmware::modules_naming(&text, name);
    }
});

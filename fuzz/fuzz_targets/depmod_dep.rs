//! Arbitrary text as `modules.dep`: see `depmod.inc.rs`.
#![no_main]
#![allow(dead_code)] // the included checks of the other depmod files

use libfuzzer_sys::fuzz_target;

include!("depmod.inc.rs");

fuzz_target!(|text: &str| check_dep(text));

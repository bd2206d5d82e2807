//! Arbitrary bytes as a `.ko.xz` file: see `decompress.inc.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("decompress.inc.rs");

fuzz_target!(|data: &[u8]| check(Compression::Xz, data));

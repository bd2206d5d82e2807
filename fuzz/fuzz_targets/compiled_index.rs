//! The compiled index (`kmodinit.index`), the one index file `/init`
//! reads, on hostile bytes: `decode` never panics and never allocates
//! beyond what the bytes can hold; an index it accepts encodes again to
//! bytes that decode to the same tables. And from the other side: any
//! depmod text the host parser accepts compiles, encodes and decodes to the
//! same modules, builtins, softdeps and lookups.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use modules_manifest::compiled::{decode, encode};
use modules_manifest::{CompiledIndex, DepIndex};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    bytes: &'a [u8],
    dep: &'a str,
    softdep: &'a str,
    alias: &'a str,
    probes: Vec<&'a str>,
}

fn same(a: &DepIndex, b: &DepIndex, probes: &[&str]) {
    assert_eq!(a.modules, b.modules);
    assert_eq!(a.builtin, b.builtin);
    assert_eq!(a.softdeps, b.softdeps);
    assert_eq!(a.resolved, b.resolved);
    assert_eq!(a.aliases.len(), b.aliases.len());
    for p in probes {
        assert_eq!(a.resolve(p), b.resolve(p), "{p:?}");
    }
}

fuzz_target!(|input: Input<'_>| {
    if let Ok(c) = decode(input.bytes, None) {
        let again = decode(&encode(&c), Some(&c.release)).expect("its own encoding");
        same(&c.index, &again.index, &input.probes);
        assert_eq!(c.params, again.params);
    }
    let Ok(text) = DepIndex::parse(input.dep, "", input.softdep, input.alias) else {
        return;
    };
    let c = CompiledIndex::compile(
        "6.1.0-fuzz",
        text.clone(),
        Default::default(),
        input.probes.iter().copied(),
    );
    let back = decode(&encode(&c), Some("6.1.0-fuzz")).expect("a compiled index decodes");
    assert_eq!(back.index.modules, text.modules);
    assert_eq!(back.index.softdeps, text.softdeps);
    for p in &input.probes {
        assert_eq!(back.index.resolve(p), text.resolve(p), "{p:?}");
    }
});

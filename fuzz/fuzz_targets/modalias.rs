//! The coldplug matcher on hostile input: a uevent datagram (or a sysfs
//! `modalias` file's bytes) from a device, matched against an arbitrary
//! `modules.alias` with arbitrary `allow`/`deny` globs. Never a panic; an
//! accepted modalias is bounded, printable and starts with a bus name; the
//! matches are exactly what a linear fnmatch scan of every pattern finds,
//! and each verdict is what the globs say.
#![no_main]
#![allow(dead_code)] // the included checks of the depmod targets

use arbitrary::Arbitrary;
use kmodinit_init::loader::coldplug::{
    matches, uevent_modalias, valid_modalias, Settings, Verdict,
};
use libfuzzer_sys::fuzz_target;

include!("depmod.inc.rs");

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// A uevent datagram, or a modalias file's contents.
    device: &'a [u8],
    alias_text: &'a str,
    allow: Vec<&'a str>,
    deny: Vec<&'a str>,
}

fn check_alias_bytes(a: &str) {
    assert!(!a.is_empty() && a.len() <= kmodinit_init::loader::coldplug::MAX_MODALIAS_BYTES);
    assert!(a.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{a:?}");
    let (bus, _) = a.split_once(':').expect("a bus prefix");
    assert!(!bus.is_empty() && !bus.contains('/'));
}

fuzz_target!(|input: Input<'_>| {
    let mut aliases = Vec::new();
    if let Some(a) = uevent_modalias(input.device) {
        check_alias_bytes(a);
        aliases.push(a.to_owned());
    }
    if let Some(a) = valid_modalias(input.device) {
        check_alias_bytes(a);
        aliases.push(a.to_owned());
    }
    let Ok(index) = DepIndex::parse("", "", "", input.alias_text) else {
        return;
    };
    let settings = Settings {
        enabled: true,
        allow: input.allow.iter().map(|s| s.to_string()).collect(),
        deny: input.deny.iter().map(|s| s.to_string()).collect(),
    };
    let table: Vec<(String, ModuleName)> = input
        .alias_text
        .lines()
        .map(str::trim_ascii)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let t: Vec<&str> = l.split_ascii_whitespace().collect();
            Some((normalize(t.get(1)?)?, ModuleName::new(t.get(2)?).ok()?))
        })
        .collect();
    // Modaliases the table's own patterns match, so matching is exercised
    // beyond what random device bytes reach.
    for (p, _) in table.iter().take(8) {
        let filled = p.replace('*', "").replace('?', "x");
        if let Some(a) = valid_modalias(filled.as_bytes()) {
            aliases.push(a.to_owned());
        }
    }
    for a in &aliases {
        let got = matches(&index, &settings, a);
        let mut want: Vec<ModuleName> = match normalize(a) {
            Some(n) => table
                .iter()
                .filter(|(p, _)| fnmatch(p.as_bytes(), n.as_bytes()))
                .map(|(_, m)| m.clone())
                .collect(),
            None => Vec::new(),
        };
        want.sort();
        want.dedup();
        let names: Vec<ModuleName> = got.iter().map(|(m, _)| m.clone()).collect();
        assert_eq!(names, want, "modalias {a:?}");
        for (m, v) in &got {
            let name = m.as_str().as_bytes();
            let denied = settings.deny.iter().find(|g| fnmatch(g.as_bytes(), name));
            let expect = match denied {
                Some(g) => Verdict::Denied(g.clone()),
                None if !settings.allow.is_empty()
                    && !settings.allow.iter().any(|g| fnmatch(g.as_bytes(), name)) =>
                {
                    Verdict::NotAllowed
                }
                None => Verdict::Load,
            };
            assert_eq!(v, &expect, "{m}");
        }
    }
});

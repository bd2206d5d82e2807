//! The boot planner on the compiled index against the full host planner,
//! over the installed module tree (support/prerequisites.rs): random
//! manifests (chains of module names and aliases, params, blocklists,
//! softdep overrides), random kernel command lines (`kmodinit.load=`,
//! `rd.driver.post=`, `modprobe.blacklist=`, `kmodinit.skip=`,
//! `module.param=`) and random already-loaded modules. The index is
//! compiled as `kmodinit build` compiles it (the manifests' names resolved,
//! here a pool of them; names outside the pool take the alias patterns, as
//! `kmodinit.load=` does at boot), encoded and decoded as `/init` decodes it.
//! [`plan_at_boot`] on the decoded index must equal [`plan_at_boot`] on the
//! text index, node for node (names, actions, params, edges, reasons,
//! warnings, alternatives) and note for note, and the strict [`plan`]
//! whenever that succeeds.
#![allow(clippy::unwrap_used)]

#[path = "support/prerequisites.rs"]
mod prerequisites;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use modules_manifest::{
    compiled, plan, plan_at_boot, CompiledIndex, DepIndex, KernelCmdline, Manifest, ModuleName,
    PlanInput,
};
use proptest::prelude::*;
use serde_json::json;

/// Aliases that name real modules on a Debian kernel, and some that do not.
const ALIASES: &[&str] = &[
    "fs-ext4",
    "fs-vfat",
    "fs-btrfs",
    "crypto-crc32c",
    "crc32c",
    "crc32",
    "crypto-sha256",
    "crypto-dh",
    "net-pf-10",
    "block-major-8",
    "char-major-10-229",
    "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
    "virtio:d00000002v00001AF4",
    "no-such-alias",
];

/// Names only the boot knows (not compiled into the resolved table).
const BOOT_ONLY: &[&str] = &["fs-xfs", "crypto-aes", "virtio:d00000001v00001AF4", "nope"];

struct Fixture {
    host: DepIndex,
    boot: DepIndex,
    /// Module names of the tree, sorted, and the alias pool.
    modules: Vec<String>,
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let tree = prerequisites::require(prerequisites::module_tree())?;
        let host = DepIndex::load(&tree.modules_dir).unwrap();
        let mut modules: Vec<String> = host.modules.keys().map(|m| m.to_string()).collect();
        modules.sort();
        let pool: Vec<&str> = modules
            .iter()
            .map(String::as_str)
            .chain(ALIASES.iter().copied())
            .collect();
        let c = CompiledIndex::compile(&tree.release, host.clone(), BTreeMap::new(), pool);
        let boot = compiled::decode(&compiled::encode(&c), Some(&tree.release))
            .unwrap()
            .index;
        Some(Fixture {
            host,
            boot,
            modules,
        })
    })
    .as_ref()
}

/// A name the generator picks: a module of the tree (by its rank), an alias
/// of the pool, or a name only the boot knows.
#[derive(Debug, Clone)]
enum Pick {
    Module(usize),
    Alias(usize),
    BootOnly(usize),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => any::<usize>().prop_map(Pick::Module),
        3 => (0..ALIASES.len()).prop_map(Pick::Alias),
        1 => (0..BOOT_ONLY.len()).prop_map(Pick::BootOnly),
    ]
}

fn spell(f: &Fixture, p: &Pick) -> String {
    match p {
        Pick::Module(i) => f.modules[i % f.modules.len()].clone(),
        Pick::Alias(i) => ALIASES[*i].to_owned(),
        Pick::BootOnly(i) => BOOT_ONLY[*i].to_owned(),
    }
}

#[derive(Debug, Clone)]
struct Case {
    chains: Vec<(Vec<Pick>, bool)>,
    params: Vec<(usize, u8)>,
    blocklist: Vec<usize>,
    softdeps: Vec<(usize, Vec<Pick>, Vec<Pick>)>,
    load: Vec<Pick>,
    post: Vec<Pick>,
    blacklist: Vec<usize>,
    skip: Vec<Pick>,
    cmdline_params: Vec<(usize, u8)>,
    loaded: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    let idx = || prop::collection::vec(any::<usize>(), 0..3);
    let picks = |n| prop::collection::vec(pick(), 0..n);
    (
        prop::collection::vec((prop::collection::vec(pick(), 1..5), any::<bool>()), 1..4),
        prop::collection::vec((any::<usize>(), 0u8..3), 0..3),
        idx(),
        prop::collection::vec((any::<usize>(), picks(3), picks(2)), 0..2),
        picks(3),
        picks(2),
        idx(),
        picks(2),
        prop::collection::vec((any::<usize>(), 0u8..3), 0..3),
        idx(),
    )
        .prop_map(
            |(chains, params, blocklist, softdeps, load, post, blacklist, skip, cp, loaded)| Case {
                chains,
                params,
                blocklist,
                softdeps,
                load,
                post,
                blacklist,
                skip,
                cmdline_params: cp,
                loaded,
            },
        )
}

fn module(f: &Fixture, i: usize) -> &str {
    &f.modules[i % f.modules.len()]
}

fn manifest(f: &Fixture, c: &Case) -> Option<Manifest> {
    let chains: Vec<_> = c
        .chains
        .iter()
        .enumerate()
        .map(|(k, (entries, required))| {
            json!({
                "name": format!("c{k}"),
                "modules": entries.iter().map(|p| spell(f, p)).collect::<Vec<_>>(),
                "required": required,
            })
        })
        .collect();
    let modules: serde_json::Map<String, serde_json::Value> = c
        .params
        .iter()
        .map(|(i, v)| {
            (
                module(f, *i).to_owned(),
                json!({"params": format!("p{v}=1")}),
            )
        })
        .collect();
    let softdeps: serde_json::Map<String, serde_json::Value> = c
        .softdeps
        .iter()
        .map(|(i, pre, post)| {
            (
                module(f, *i).to_owned(),
                json!({
                    "pre": pre.iter().map(|p| spell(f, p)).collect::<Vec<_>>(),
                    "post": post.iter().map(|p| spell(f, p)).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    let blocklist: Vec<&str> = c.blocklist.iter().map(|i| module(f, *i)).collect();
    let m = json!({
        "version": 1,
        "chains": chains,
        "modules": modules,
        "softdeps": softdeps,
        "blocklist": blocklist,
    });
    // A generated manifest the schema refuses (a chain entry that is no
    // module name) is no case for the planner.
    Manifest::from_json(m.to_string().as_bytes()).ok()
}

fn cmdline(f: &Fixture, c: &Case) -> String {
    let list = |v: &[Pick]| v.iter().map(|p| spell(f, p)).collect::<Vec<_>>().join(",");
    let mut parts = vec!["quiet".to_owned()];
    if !c.load.is_empty() {
        parts.push(format!("kmodinit.load={}", list(&c.load)));
    }
    if !c.post.is_empty() {
        parts.push(format!("rd.driver.post={}", list(&c.post)));
    }
    if !c.skip.is_empty() {
        parts.push(format!("kmodinit.skip={}", list(&c.skip)));
    }
    if !c.blacklist.is_empty() {
        let names: Vec<&str> = c.blacklist.iter().map(|i| module(f, *i)).collect();
        parts.push(format!("modprobe.blacklist={}", names.join(",")));
    }
    for (i, v) in &c.cmdline_params {
        parts.push(format!("{}.q{v}=2", module(f, *i)));
    }
    parts.join(" ")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_boot_plans_on_the_compiled_index_as_the_host_on_the_text(c in case()) {
        let Some(f) = fixture() else { return Ok(()); };
        let Some(m) = manifest(f, &c) else { return Ok(()); };
        let cmdline = KernelCmdline::parse(&cmdline(f, &c));
        let loaded: BTreeSet<ModuleName> = c
            .loaded
            .iter()
            .map(|i| ModuleName::new(module(f, *i)).unwrap())
            .collect();
        let input = |index| PlanInput { manifest: &m, index, cmdline: &cmdline, loaded: &loaded };
        let host = plan_at_boot(input(&f.host));
        let boot = plan_at_boot(input(&f.boot));
        match (&host, &boot) {
            (Ok(h), Ok(b)) => {
                prop_assert_eq!(h, b);
                if let Ok(strict) = plan(input(&f.host)) {
                    prop_assert_eq!(&strict, b);
                }
            }
            (Err(h), Err(b)) => prop_assert_eq!(h.to_string(), b.to_string()),
            _ => prop_assert!(false, "host {:?} but boot {:?}", host.is_ok(), boot.is_ok()),
        }
    }
}

/// Not a property: the fixture itself must exist under CI, and the two
/// indexes must agree on the tree's size.
#[test]
fn the_compiled_tree_holds_what_the_text_holds() {
    let Some(f) = fixture() else { return };
    assert_eq!(f.boot.modules, f.host.modules);
    assert_eq!(f.boot.builtin, f.host.builtin);
    assert_eq!(f.boot.softdeps, f.host.softdeps);
    assert_eq!(f.boot.aliases.len(), f.host.aliases.len());
    assert_eq!(f.boot.builtin_aliases.len(), f.host.builtin_aliases.len());
    assert!(f.modules.len() > 100, "{} modules", f.modules.len());
}

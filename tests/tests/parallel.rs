//! Group 3: the benchmark farm (6 chains of 5 slow modules over 3 shared
//! roots). Its sequential sum is several times its critical path; the report
//! must show loads that overlap in time, each after its dependencies and
//! its chain predecessor ended. No wall-time threshold: only the order and
//! the overlap of the reported intervals.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;

use kmodinit_e2e::fixtures::{farm_chains, farm_shared, FARM_SHARED};
use kmodinit_e2e::{assert_init_never_died, boot, load_intervals, max_overlap, Env};
use serde_json::json;

/// Each farm module sleeps this long in its init.
const DELAY_MS: u32 = 200;

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn farm_chains_load_concurrently_in_dependency_order() {
    let env = Env::get();
    let dir = env.scratch("parallel");
    let chains = farm_chains();
    let mut modules = serde_json::Map::new();
    let all: Vec<String> = chains
        .iter()
        .flatten()
        .cloned()
        .chain((0..FARM_SHARED).map(farm_shared))
        .collect();
    for m in &all {
        modules.insert(m.clone(), json!({"params": format!("delay_ms={DELAY_MS}")}));
    }
    let manifest = json!({
        "version": 1,
        "chains": chains.iter().enumerate().map(|(i, c)| json!({"name": format!("farm{i}"), "modules": c})).collect::<Vec<_>>(),
        "modules": modules,
        "jobs": 0,
        "init": {"path": "/sbin/init", "args": []},
        "on_failure": "poweroff"
    });
    let image = env.fixture_image(&dir, &manifest);
    let b = boot(env.vm(&dir, &image));
    let c = &b.console;
    assert_init_never_died(&b);
    let report = c.report().unwrap_or_else(|e| panic!("{e}\n{}", c.tail(40)));
    let intervals = load_intervals(&report);
    let by_name: BTreeMap<&str, (f64, f64)> = intervals
        .iter()
        .map(|(n, s, e)| (n.as_str(), (*s, *e)))
        .collect();
    for m in &all {
        assert!(by_name.contains_key(m.as_str()), "{m} has no load interval");
        let state = kmodinit_e2e::report_state(&report, m);
        assert_eq!(state.as_deref(), Some("loaded"), "{m}");
    }

    // Order: every module starts after its chain predecessor and its
    // dependencies (from depmod's graph) ended.
    let deps = farm_dependencies(env);
    for (m, ds) in &deps {
        let (start, _) = by_name[m.as_str()];
        for d in ds {
            let (_, dep_end) = by_name[d.as_str()];
            assert!(
                dep_end <= start,
                "{m} started at {start} before its dependency {d} ended at {dep_end}"
            );
        }
    }
    for chain in &chains {
        for w in chain.windows(2) {
            let (_, prev_end) = by_name[w[0].as_str()];
            let (start, _) = by_name[w[1].as_str()];
            assert!(prev_end <= start, "{} started before {} ended", w[1], w[0]);
        }
    }

    // Overlap: with 6 independent chains of sleeping modules, every worker
    // of the pool is busy at once (at least 2, at most 3 demanded).
    let farm: Vec<_> = intervals
        .iter()
        .filter(|(n, _, _)| all.contains(n))
        .cloned()
        .collect();
    let jobs = report["load"]["jobs"].as_u64().unwrap_or(0) as usize;
    let overlap = max_overlap(&farm);
    assert!(jobs >= 2, "the automatic pool has {jobs} worker(s)");
    assert!(
        overlap >= jobs.min(3),
        "at most {overlap} farm modules loaded at the same time with {jobs} workers; intervals: {farm:?}"
    );
    let sum: f64 = farm.iter().map(|(_, s, e)| e - s).sum();
    let wall = report["load"]["wall_s"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "farm: {} modules, sum of load times {sum:.2} s, load wall {wall:.2} s, max overlap {overlap}",
        farm.len()
    );
}

/// `name → its dependencies` for the farm, from the staged `modules.dep`.
fn farm_dependencies(env: &Env) -> BTreeMap<String, Vec<String>> {
    let dep = env.fixtures().modules_dir().join("modules.dep");
    let text = std::fs::read_to_string(&dep).unwrap();
    let name = |p: &str| {
        p.rsplit('/')
            .next()
            .unwrap_or(p)
            .trim_end_matches(".ko")
            .to_string()
    };
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(p, _)| p.contains("kmi_farm_"))
        .map(|(p, ds)| (name(p), ds.split_whitespace().map(name).collect()))
        .collect()
}

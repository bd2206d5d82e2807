//! The loader against a fake kernel whose modules sleep (or burn CPU), for
//! several graph shapes and pool widths: wall time against the critical path
//! (the least any schedule can do) and against loading one after the other.
//!
//! `cargo bench -p kmodinit --bench loader` (add `-- quick` for fewer runs,
//! `-- cpu` for the CPU-bound shapes only). CPU-bound shapes cannot beat
//! sequential / CPUs, whatever their critical path.
//! Prints a markdown table of medians; the numbers behind `auto_jobs`.

#![allow(clippy::unwrap_used)] // a benchmark may unwrap

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::PlanBuilder;
use kmodinit_init::kernel::FakeKernel;
use kmodinit_init::loader::engine::{auto_jobs, load, LoaderOptions};
use modules_manifest::{EdgeKind, Plan};

struct Shape {
    name: &'static str,
    plan: Plan,
    /// Per node, the scripted delay.
    delays: Vec<Duration>,
    cpu_bound: bool,
}

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

fn shape(name: &'static str, b: PlanBuilder, delays: &[(&str, Duration)], cpu: bool) -> Shape {
    let plan = b.build();
    let delays = plan
        .nodes
        .iter()
        .map(|n| {
            delays
                .iter()
                .find(|(d, _)| *d == n.name.as_str())
                .map_or(Duration::ZERO, |(_, t)| *t)
        })
        .collect();
    Shape {
        name,
        plan,
        delays,
        cpu_bound: cpu,
    }
}

fn wide(cpu: bool) -> Shape {
    let mut b = PlanBuilder::new();
    let names: Vec<String> = (0..32).map(|i| format!("w{i}")).collect();
    for n in &names {
        b.module(n, &[]);
    }
    let d: Vec<(&str, Duration)> = names.iter().map(|n| (n.as_str(), ms(10))).collect();
    shape(if cpu { "wide32 cpu" } else { "wide32" }, b, &d, cpu)
}

fn deep() -> Shape {
    let mut b = PlanBuilder::new();
    let names: Vec<String> = (0..16).map(|i| format!("d{i}")).collect();
    for n in &names {
        b.module(n, &[]);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    b.chain("deep", true, &refs);
    let d: Vec<(&str, Duration)> = names.iter().map(|n| (n.as_str(), ms(5))).collect();
    shape("deep16", b, &d, false)
}

fn design() -> Shape {
    let mut b = PlanBuilder::new();
    b.module("virtio_pci_modern_dev", &[]);
    b.module("virtio_pci", &["virtio_pci_modern_dev"]);
    b.module("virtio_blk", &[]);
    b.module("crc16", &[]);
    b.module("mbcache", &[]);
    b.module("jbd2", &[]);
    b.module("crc32c_generic", &[]);
    b.module("ext4", &["crc16", "mbcache", "jbd2"]);
    b.edge("crc32c_generic", "ext4", EdgeKind::Softdep);
    b.chain("storage", true, &["virtio_pci", "virtio_blk"]);
    b.chain("fs", true, &["ext4"]);
    let d = [
        ("virtio_pci_modern_dev", ms(5)),
        ("virtio_pci", ms(30)),
        ("virtio_blk", ms(40)),
        ("crc16", ms(5)),
        ("mbcache", ms(5)),
        ("jbd2", ms(10)),
        ("crc32c_generic", ms(5)),
        ("ext4", ms(20)),
    ];
    shape("design", b, &d, false)
}

/// 6 shared base modules and 6 chains of 4 entries, each entry needing two
/// of the bases: 30 modules.
fn farm(cpu: bool) -> Shape {
    let mut b = PlanBuilder::new();
    let mut d: Vec<(String, Duration)> = Vec::new();
    for i in 0..6u64 {
        let n = format!("base{i}");
        b.module(&n, &[]);
        d.push((n, ms(5 + 2 * i)));
    }
    for c in 0..6u64 {
        let mut entries = Vec::new();
        for j in 0..4u64 {
            let n = format!("c{c}_{j}");
            let b1 = format!("base{}", (c + j) % 6);
            let b2 = format!("base{}", (c * j + 1) % 6);
            b.module(&n, &[&b1, &b2]);
            d.push((n.clone(), ms(5 + (7 * c + 3 * j) % 20)));
            entries.push(n);
        }
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        b.chain(&format!("chain{c}"), true, &refs);
    }
    let d: Vec<(&str, Duration)> = d.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    shape(if cpu { "farm30 cpu" } else { "farm30" }, b, &d, cpu)
}

fn critical_path(s: &Shape) -> Duration {
    let cp = s.plan.critical_path(|n| s.delays[n.id].as_secs_f64());
    Duration::from_secs_f64(cp.cost)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median wall time and pool width per `jobs` value. Runs are interleaved
/// (1, 2, 4, …, 1, 2, 4, …) so drifting machine load hits every width alike.
fn run(s: &Shape, jobs: &[usize], runs: usize) -> Vec<(Duration, usize)> {
    let mut k = FakeKernel::new().cpu_bound(s.cpu_bound);
    for (n, d) in s.plan.nodes.iter().zip(&s.delays) {
        k = k.delay(n.name.as_str(), *d);
    }
    let mut walls = vec![Vec::new(); jobs.len()];
    let mut used = vec![0; jobs.len()];
    for _ in 0..runs {
        for (i, &j) in jobs.iter().enumerate() {
            let opts = LoaderOptions {
                modules_dir: "/lib/modules/bench".into(),
                jobs: j,
                ..LoaderOptions::default()
            };
            k.reset();
            let t = Instant::now();
            let r = load(&s.plan, &k, &opts);
            walls[i].push(t.elapsed());
            used[i] = r.jobs;
            assert!(k.duplicates().is_empty());
        }
    }
    walls.into_iter().map(median).zip(used).collect()
}

/// Coordinator overhead: many modules that return at once.
fn overhead(runs: usize) {
    let mut b = PlanBuilder::new();
    for i in 0..2000 {
        let deps: Vec<String> = if i >= 10 {
            vec![format!("m{}", i - 10)]
        } else {
            vec![]
        };
        let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
        b.module(&format!("m{i}"), &refs);
    }
    let plan = b.build();
    println!("\n| overhead: 2000 instant modules, 10 wide | jobs | median µs per module |");
    println!("|---|---:|---:|");
    for jobs in [1, 4, 16] {
        let k = FakeKernel::new();
        let mut walls = Vec::new();
        for _ in 0..runs {
            k.reset();
            let t = Instant::now();
            load(
                &plan,
                &k,
                &LoaderOptions {
                    modules_dir: "/".into(),
                    jobs,
                    ..LoaderOptions::default()
                },
            );
            walls.push(t.elapsed());
        }
        let per = median(walls).as_secs_f64() * 1e6 / 2000.0;
        println!("| | {jobs} | {per:.1} |");
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let runs = if quick { 3 } else { 7 };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!("loader benchmark: {cpus} CPUs, median of {runs} runs; ratios are wall / critical path and wall / sequential\n");
    println!("| shape | seq ms | cp ms | jobs | wall ms | wall/cp | wall/seq |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let shapes = if std::env::args().any(|a| a == "cpu") {
        vec![wide(true), farm(true)]
    } else {
        vec![
            wide(false),
            deep(),
            design(),
            farm(false),
            wide(true),
            farm(true),
        ]
    };
    for s in &shapes {
        let seq: Duration = s.delays.iter().sum();
        let cp = critical_path(s);
        let jobs = [1, 2, 4, 8, 16, 32, 0];
        for (&j, (wall, used)) in jobs.iter().zip(run(s, &jobs, runs)) {
            let label = if j == 0 {
                format!("auto={used}")
            } else {
                j.to_string()
            };
            println!(
                "| {} | {:.0} | {:.0} | {} | {:.1} | {:.2} | {:.2} |",
                s.name,
                seq.as_secs_f64() * 1e3,
                cp.as_secs_f64() * 1e3,
                label,
                wall.as_secs_f64() * 1e3,
                wall.as_secs_f64() / cp.as_secs_f64(),
                wall.as_secs_f64() / seq.as_secs_f64(),
            );
        }
    }
    overhead(runs);
    println!(
        "\nauto_jobs(32, {cpus}) = {}",
        auto_jobs(32, cpus),
        cpus = kmodinit_init::loader::engine::available_cpus()
    );
}

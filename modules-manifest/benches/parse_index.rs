//! Parse time of the host's full depmod index (the newest
//! `/lib/modules/*`; Debian 6.1's has 4,023 modules, 26,000 aliases) and plan
//! time of the server example. A plain timer (no
//! criterion: the machine is shared, so it prints medians of N runs rather
//! than asserting anything). Run: `cargo bench -p modules-manifest`.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use modules_manifest::{plan, DepIndex, KernelCmdline, Manifest, PlanInput};

#[path = "../tests/support/prerequisites.rs"]
mod prerequisites;

const RUNS: usize = 31;

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// This thread's on-CPU time (first field of `/proc/thread-self/schedstat`,
/// nanoseconds): on a shared, loaded machine it is the steadier figure.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Median (and min/max) wall time and median on-CPU time of `RUNS` calls.
fn time<T>(label: &str, mut f: impl FnMut() -> T) {
    let mut wall = Vec::with_capacity(RUNS);
    let mut cpu = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let c0 = cpu_ns();
        let start = Instant::now();
        black_box(f());
        wall.push(start.elapsed());
        if let (Some(a), Some(b)) = (c0, cpu_ns()) {
            cpu.push(Duration::from_nanos(b.saturating_sub(a)));
        }
    }
    wall.sort();
    cpu.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let cpu_median = cpu
        .get(cpu.len() / 2)
        .map(|d| format!("{:.3} ms", ms(*d)))
        .unwrap_or_else(|| "n/a".into());
    println!(
        "{label:<44} wall median {:>8.3} ms (min {:.3}, max {:.3}); cpu median {cpu_median}; {RUNS} runs",
        ms(wall[RUNS / 2]),
        ms(wall[0]),
        ms(wall[RUNS - 1]),
    );
}

fn main() {
    let Some(tree) = prerequisites::require(prerequisites::module_tree()) else {
        return;
    };
    let dir = tree.modules_dir.as_path();
    println!("module tree: {}", dir.display());
    let dep = read(dir, "modules.dep");
    let builtin = read(dir, "modules.builtin");
    let softdep = read(dir, "modules.softdep");
    let alias = read(dir, "modules.alias");
    let index = match DepIndex::parse(&dep, &builtin, &softdep, &alias) {
        Ok(i) => i,
        Err(e) => {
            println!("index does not parse: {e}");
            return;
        }
    };
    println!(
        "index: {} modules, {} builtin, {} softdep modules, {} aliases",
        index.modules.len(),
        index.builtin.len(),
        index.softdeps.len(),
        index.aliases.len()
    );
    time("DepIndex::parse (all four files)", || {
        DepIndex::parse(&dep, &builtin, &softdep, &alias)
    });
    time("DepIndex::parse (modules.dep only)", || {
        DepIndex::parse(&dep, "", "", "")
    });
    time("DepIndex::load (read + parse)", || DepIndex::load(dir));
    let probes = [
        "crypto-crc32c",
        "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
        "usb:v046DpC52Bd1201dc00dsc00dp00ic03isc01ip01in00",
        "fs-ext4",
        "no-such-alias",
    ];
    time("resolve x1000 (5 names: exact, glob, miss)", || {
        let mut total = 0;
        for _ in 0..200 {
            for p in probes {
                total += index.resolve(p).len();
            }
        }
        total
    });
    let server = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/server.json"))
        .ok()
        .and_then(|b| Manifest::from_json(&b).ok());
    if let Some(m) = server {
        let cmdline = KernelCmdline::default();
        let loaded = BTreeSet::new();
        let input = PlanInput {
            manifest: &m,
            index: &index,
            cmdline: &cmdline,
            loaded: &loaded,
        };
        if let Ok(p) = plan(input) {
            println!("server.json plan: {} nodes", p.nodes.len());
        }
        time("plan(server.json)", || plan(input));
    }
}

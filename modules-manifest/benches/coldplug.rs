//! The cost of coldplug's host side on the full index: the walk of this
//! machine's `/sys/devices` for `modalias` files, and matching every
//! modalias found against the newest `/lib/modules/*`'s `modules.alias`
//! (Debian 6.1: ~26,000 aliases), by `AliasTable::lookup` (prefix-sorted,
//! binary search, fnmatch on the candidates) and, for comparison, by a
//! linear fnmatch scan of every pattern (what a naive matcher does). Medians
//! of N runs, nothing asserted (shared machine). Run: `cargo bench -p
//! modules-manifest --bench coldplug`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use modules_manifest::depmod::fnmatch;
use modules_manifest::{modalias, DepIndex};

#[path = "../tests/support/prerequisites.rs"]
mod prerequisites;

const RUNS: usize = 21;

fn median<T>(label: &str, mut f: impl FnMut() -> T) -> Duration {
    let mut wall: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    wall.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<48} median {:>9.3} ms (min {:.3}, max {:.3}); {RUNS} runs",
        ms(wall[RUNS / 2]),
        ms(wall[0]),
        ms(wall[RUNS - 1])
    );
    wall[RUNS / 2]
}

fn main() {
    let Some(tree) = prerequisites::require(prerequisites::module_tree()) else {
        return;
    };
    let dir = tree.modules_dir.as_path();
    let alias_text = std::fs::read_to_string(dir.join("modules.alias")).unwrap_or_default();
    let index = match DepIndex::parse("", "", "", &alias_text) {
        Ok(i) => i,
        Err(e) => {
            println!("modules.alias does not parse: {e}");
            return;
        }
    };
    let patterns: Vec<(String, String)> = alias_text
        .lines()
        .filter_map(|l| {
            let mut t = l.split_ascii_whitespace();
            (t.next()? == "alias").then_some(())?;
            Some((t.next()?.replace('-', "_"), t.next()?.to_owned()))
        })
        .collect();
    println!(
        "module tree: {} ({} aliases)",
        dir.display(),
        index.aliases.len()
    );
    let sys = Path::new("/sys/devices");
    let walked = modalias::walk(sys);
    let mut aliases = walked.aliases.clone();
    aliases.sort();
    aliases.dedup();
    println!(
        "{}: {} entries, {} modalias files, {} distinct",
        sys.display(),
        walked.entries,
        walked.aliases.len(),
        aliases.len()
    );
    median("walk /sys/devices", || modalias::walk(sys));
    let matched: usize = aliases.iter().map(|a| index.aliases.lookup(a).len()).sum();
    println!("matches: {matched} (module, modalias) pairs");
    let fast = median("match all (AliasTable::lookup)", || {
        aliases
            .iter()
            .map(|a| index.aliases.lookup(a).len())
            .sum::<usize>()
    });
    let slow = median("match all (linear fnmatch scan)", || {
        aliases
            .iter()
            .map(|a| {
                let a = a.replace('-', "_");
                patterns
                    .iter()
                    .filter(|(p, _)| fnmatch(p.as_bytes(), a.as_bytes()))
                    .count()
            })
            .sum::<usize>()
    });
    if !aliases.is_empty() {
        println!(
            "per modalias: {:.1} µs indexed, {:.1} µs linear ({:.0}x)",
            fast.as_secs_f64() * 1e6 / aliases.len() as f64,
            slow.as_secs_f64() * 1e6 / aliases.len() as f64,
            slow.as_secs_f64() / fast.as_secs_f64().max(1e-9)
        );
    }
}

//! Case 1's input: the shared fixture farm (`kmodinit_e2e::fixtures`, what
//! `make fixtures` builds) and a manifest that gives each farm module its
//! init delay. Chain modules get 40–200 ms, spread so the chains differ in
//! length; shared roots get theirs under `modules`, so they carry it however
//! they are pulled in.

use std::path::{Path, PathBuf};

use kmodinit_e2e::fixtures;

/// Init delay of farm module `j` of chain `i`, in ms.
fn chain_delay_ms(i: usize, j: usize) -> u32 {
    40 + ((i * 7 + j * 13) % 9) as u32 * 20
}

/// Init delay of shared root `s`, in ms.
fn shared_delay_ms(s: usize) -> u32 {
    [120, 60, 90][s % 3]
}

/// The farm manifest: one required chain per farm chain.
pub fn manifest() -> serde_json::Value {
    let chains: Vec<serde_json::Value> = fixtures::farm_chains()
        .iter()
        .enumerate()
        .map(|(i, chain)| {
            let entries: Vec<serde_json::Value> = chain
                .iter()
                .enumerate()
                .map(|(j, name)| {
                    serde_json::json!({"name": name, "params": format!("delay_ms={}", chain_delay_ms(i, j))})
                })
                .collect();
            serde_json::json!({"name": format!("farm{i}"), "modules": entries, "required": true})
        })
        .collect();
    let shared: serde_json::Map<String, serde_json::Value> = (0..fixtures::FARM_SHARED)
        .map(|s| {
            (
                fixtures::farm_shared(s),
                serde_json::json!({"params": format!("delay_ms={}", shared_delay_ms(s))}),
            )
        })
        .collect();
    serde_json::json!({"version": 1, "chains": chains, "modules": shared, "jobs": 0})
}

/// Builds (or reuses) the fixtures with the farm under `out`; returns the
/// modules root for images (`ROOT/lib/modules/RELEASE`).
pub fn build(out: &Path) -> Result<PathBuf, String> {
    let kernel = kmodinit_qemu::HostKernel::find().map_err(|e| e.to_string())?;
    // Kbuild needs an absolute M= directory.
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let out = std::fs::canonicalize(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let f = fixtures::build(&kernel, &out, true).map_err(|e| e.to_string())?;
    Ok(f.stage)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_farm_module_gets_a_delay_and_every_chain_is_required() {
        let m = manifest();
        let chains = m["chains"].as_array().unwrap();
        assert_eq!(chains.len(), fixtures::FARM_CHAINS);
        let mut n = 0;
        for c in chains {
            assert_eq!(c["required"], true);
            for e in c["modules"].as_array().unwrap() {
                let p = e["params"].as_str().unwrap();
                let ms: u32 = p.strip_prefix("delay_ms=").unwrap().parse().unwrap();
                assert!((40..=200).contains(&ms), "{p}");
                n += 1;
            }
        }
        n += m["modules"].as_object().unwrap().len();
        assert!(n >= 30, "{n} modules");
    }
}

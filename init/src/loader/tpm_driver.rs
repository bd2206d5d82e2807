//! Measured loading when the TPM's own driver is a module: nothing can
//! measure it before the device exists, so the plan's TPM drivers (modules
//! named `tpm` or `tpm_*`, with the modules they depend on) are inserted
//! first, in plan order, before the pool starts; the measurement starts
//! once the device node appears. They are measured in their plan place all
//! the same (their files are hashed and extended with the rest, so the PCR
//! does not depend on whether the driver was built in), and the plan later
//! finds them loaded.

use std::path::Path;
use std::time::{Duration, Instant};

use modules_manifest::{Action, Plan};

use crate::kernel::{InsertRequest, Kernel};

/// How long to wait for `/dev/tpmrm0` or `/dev/tpm0` after the driver
/// loaded (the TPM's probe and devtmpfs' node come a moment later).
pub const DEVICE_WAIT: Duration = Duration::from_secs(5);

/// True for the name of a TPM driver module (`tpm`, `tpm_tis`,
/// `tpm_tis_core`, `tpm_crb`, `tpm_tis_spi`, …).
pub fn is_tpm_driver(name: &str) -> bool {
    name == "tpm" || name.starts_with("tpm_")
}

/// The plan's nodes to insert before the TPM exists: every TPM driver the
/// plan inserts and what it depends on, in plan order (dependencies
/// first). Empty when the plan has no TPM driver module.
pub fn nodes_first(plan: &Plan) -> Vec<usize> {
    let mut wanted = vec![false; plan.nodes.len()];
    let mut stack: Vec<usize> = plan
        .nodes
        .iter()
        .filter(|n| is_tpm_driver(n.name.as_str()))
        .map(|n| n.id)
        .collect();
    while let Some(id) = stack.pop() {
        let Some(node) = plan.nodes.get(id) else {
            continue;
        };
        if std::mem::replace(&mut wanted[id], true) {
            continue;
        }
        stack.extend(
            node.preds
                .iter()
                .filter(|e| e.kind == modules_manifest::EdgeKind::Dependency)
                .map(|e| e.from),
        );
    }
    (0..plan.nodes.len())
        .filter(|&i| wanted[i] && matches!(plan.nodes[i].action, Action::Insert { .. }))
        .collect()
}

/// True if `dev` has a TPM device node.
pub fn device_exists(dev: &Path) -> bool {
    ["tpmrm0", "tpm0"].iter().any(|n| dev.join(n).exists())
}

/// Inserts the plan's TPM drivers ([`nodes_first`]) through `kernel` and
/// waits up to `wait` for the device under `dev`. Returns the names loaded
/// (for the log and the report), or why the device did not come.
pub fn load_first(
    plan: &Plan,
    modules_dir: &Path,
    kernel: &dyn Kernel,
    dev: &Path,
    wait: Duration,
) -> Result<Vec<String>, String> {
    let mut loaded = Vec::new();
    for id in nodes_first(plan) {
        let node = &plan.nodes[id];
        let Action::Insert { path, compression } = &node.action else {
            continue;
        };
        let path = modules_dir.join(path);
        kernel
            .insert(&InsertRequest {
                name: &node.name,
                path: &path,
                compression: *compression,
                params: &node.params,
            })
            .map_err(|e| format!("the TPM driver {} did not load: {e}", node.name))?;
        loaded.push(node.name.to_string());
    }
    let started = Instant::now();
    while !device_exists(dev) {
        if started.elapsed() >= wait {
            return Err(format!(
                "no TPM device in {} within {} ms of loading {}",
                dev.display(),
                wait.as_millis(),
                if loaded.is_empty() {
                    "nothing".to_owned()
                } else {
                    loaded.join(", ")
                }
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(loaded)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::kernel::{InsertError, Inserted};
    use modules_manifest::{DepIndex, KernelCmdline, Manifest, PlanInput};
    use std::sync::Mutex;

    /// `tpm_tis` needs `tpm_tis_core` needs `tpm` (needs `rng_core`);
    /// `ext4` has nothing to do with it.
    fn plan() -> Plan {
        let dep = "kernel/rng_core.ko:\nkernel/tpm.ko: kernel/rng_core.ko\n\
                   kernel/tpm_tis_core.ko: kernel/tpm.ko kernel/rng_core.ko\n\
                   kernel/tpm_tis.ko: kernel/tpm_tis_core.ko kernel/tpm.ko kernel/rng_core.ko\n\
                   kernel/ext4.ko:\n";
        let index = DepIndex::parse(dep, "", "", "").unwrap();
        let manifest = Manifest::from_json(
            br#"{"version": 1, "chains": [{"name": "fs", "modules": ["ext4"]},
                {"name": "tpm", "modules": [{"name": "tpm_tis", "params": "interrupts=0"}]}]}"#,
        )
        .unwrap();
        modules_manifest::plan_at_boot(PlanInput {
            manifest: &manifest,
            index: &index,
            cmdline: &KernelCmdline::default(),
            loaded: &Default::default(),
        })
        .unwrap()
    }

    fn names(plan: &Plan, ids: &[usize]) -> Vec<String> {
        ids.iter()
            .map(|&i| plan.nodes[i].name.to_string())
            .collect()
    }

    #[test]
    fn the_tpm_drivers_and_their_dependencies_come_first_in_plan_order() {
        let p = plan();
        assert_eq!(
            names(&p, &nodes_first(&p)),
            ["rng_core", "tpm", "tpm_tis_core", "tpm_tis"]
        );
        assert!(is_tpm_driver("tpm_crb") && is_tpm_driver("tpm") && !is_tpm_driver("tpmx"));
    }

    /// A kernel whose `tpm_tis` makes the device node appear.
    struct Tpm {
        dev: std::path::PathBuf,
        calls: Mutex<Vec<(String, String)>>,
    }

    impl Kernel for Tpm {
        fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
            self.calls
                .lock()
                .unwrap()
                .push((req.name.to_string(), req.params.to_owned()));
            if req.name.as_str() == "tpm_tis" {
                std::fs::write(self.dev.join("tpm0"), b"").unwrap();
            }
            Ok(Inserted::Loaded)
        }
    }

    #[test]
    fn the_driver_loads_with_its_params_and_the_device_is_waited_for() {
        let dev = std::env::temp_dir().join(format!("kmodinit-tpmdrv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dev);
        std::fs::create_dir_all(&dev).unwrap();
        let p = plan();
        let k = Tpm {
            dev: dev.clone(),
            calls: Mutex::new(Vec::new()),
        };
        assert!(!device_exists(&dev));
        let loaded = load_first(&p, Path::new("/m"), &k, &dev, DEVICE_WAIT).unwrap();
        assert_eq!(loaded, ["rng_core", "tpm", "tpm_tis_core", "tpm_tis"]);
        let calls = k.calls.lock().unwrap().clone();
        assert_eq!(
            calls.last().unwrap(),
            &("tpm_tis".to_owned(), "interrupts=0".to_owned())
        );
        assert!(device_exists(&dev));

        // A driver that brings no device: an error naming what loaded.
        std::fs::remove_file(dev.join("tpm0")).unwrap();
        let k = Tpm {
            dev: dev.join("elsewhere"),
            calls: Mutex::new(Vec::new()),
        };
        std::fs::create_dir_all(dev.join("elsewhere")).unwrap();
        let e = load_first(&p, Path::new("/m"), &k, &dev, Duration::from_millis(50)).unwrap_err();
        assert!(e.contains("no TPM device") && e.contains("tpm_tis"), "{e}");
        let _ = std::fs::remove_dir_all(&dev);
    }
}

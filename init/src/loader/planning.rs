//! The loader child's planning: the manifest read again, the plan made as
//! the boot makes it (`plan_at_boot`, with the command line's unknown
//! parameters as warnings), the `planned` event PID 1 receives, and the
//! module files to open before the load.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use modules_manifest::{CompiledIndex, DepIndex, KernelCmdline, Manifest, ModuleName, PlanInput};

use super::error::LoaderError;
use crate::wire::events::{LoaderEvent, PlannedChain, PlannedModule};
use crate::wire::fork::LoadInput;

/// The most module files the child opens ahead. PID 1 (and so the child)
/// starts with the kernel's default of 1,024 descriptors; this leaves room
/// for the pool, the pipe and the uevent socket.
pub const MAX_OPEN_AHEAD: usize = 768;

/// The module files to open before the load: the plan's, then the image's
/// other modules (coldplug and the kernel's requests may need any of them
/// after switch_root has unlinked the initramfs), at most
/// [`MAX_OPEN_AHEAD`] in all; the rest are opened when inserted.
pub(super) fn open_ahead_list(
    plan: &modules_manifest::Plan,
    index: &DepIndex,
    modules_dir: &Path,
) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = plan
        .nodes
        .iter()
        .filter_map(|n| match &n.action {
            modules_manifest::Action::Insert { path, .. } => Some(modules_dir.join(path)),
            _ => None,
        })
        .collect();
    let planned: BTreeSet<&str> = plan.module_files().collect();
    let mut others: Vec<&str> = index
        .modules
        .values()
        .map(|m| m.path.as_str())
        .filter(|p| !planned.contains(p))
        .collect();
    others.sort_unstable();
    let room = MAX_OPEN_AHEAD.saturating_sub(files.len());
    files.extend(others.into_iter().take(room).map(|p| modules_dir.join(p)));
    files
}

/// The manifest PID 1 has read and validated, read again by the child.
pub(super) fn read_manifest_again(path: &Path) -> Result<Manifest, LoaderError> {
    match crate::inputs::read_manifest(path) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(LoaderError::ManifestGone(path.to_path_buf())),
        Err(e) => Err(LoaderError::Manifest(e)),
    }
}

/// The plan: only what leaves nothing to plan stops the boot (the child
/// says so with `fatal`); a module that cannot be planned fails alone
/// (`plan_at_boot`).
pub(super) fn make_plan(
    input: &LoadInput<'_>,
    manifest: &Manifest,
    compiled: &CompiledIndex,
    loaded: &BTreeSet<modules_manifest::ModuleName>,
) -> Result<modules_manifest::Plan, LoaderError> {
    let mut plan = modules_manifest::plan_at_boot(PlanInput {
        manifest,
        index: &compiled.index,
        cmdline: input.cmdline,
        loaded,
    })
    .map_err(LoaderError::Plan)?;
    warn_unknown_cmdline_params(&mut plan, input.cmdline, &compiled.params);
    for note in &plan.notes {
        log::info!("plan: {note}");
    }
    Ok(plan)
}

/// A command-line `name.param=value` whose module does not declare
/// `param` (per the compiled index's parameter lists, written by the image
/// builder from each module's `.modinfo`) is a warning in the log and on
/// the module's report entry; it is still passed on (the kernel ignores an
/// unknown parameter itself, and a stale list must not drop a real one).
/// A module the index lists no parameters for is not checked.
fn warn_unknown_cmdline_params(
    plan: &mut modules_manifest::Plan,
    cmdline: &KernelCmdline,
    known: &BTreeMap<ModuleName, BTreeSet<String>>,
) {
    use modules_manifest::modinfo;
    if cmdline.module_params.is_empty() {
        return;
    }
    for node in &mut plan.nodes {
        let (Some(given), Some(declared)) =
            (cmdline.module_params.get(&node.name), known.get(&node.name))
        else {
            continue;
        };
        for p in modinfo::unknown_params(&given.join(" "), declared) {
            let list: Vec<&str> = declared.iter().map(String::as_str).collect();
            let w = format!(
                "{name}.{p} on the kernel command line: {name} has no parameter {p} \
                 (its parameters: {}); the kernel will ignore it",
                if list.is_empty() {
                    "none".to_owned()
                } else {
                    list.join(", ")
                },
                name = node.name
            );
            log::warn!("kmodinit: {w}");
            node.warnings.push(w);
        }
    }
}

/// The `planned` event of `plan`, the load starting at `t`.
pub(super) fn planned_event(plan: &modules_manifest::Plan, t: f64) -> LoaderEvent {
    let mut chains_of: Vec<Vec<String>> = vec![Vec::new(); plan.nodes.len()];
    for c in &plan.chains {
        for &id in &c.nodes {
            if let Some(list) = chains_of.get_mut(id) {
                if !list.contains(&c.name) {
                    list.push(c.name.clone());
                }
            }
        }
    }
    LoaderEvent::Planned {
        modules: plan
            .nodes
            .iter()
            .zip(chains_of)
            .map(|(n, chains)| {
                let (reason, alternative) = crate::report::plan_facts(n);
                PlannedModule {
                    name: n.name.clone(),
                    params: n.params.clone(),
                    chains,
                    required: n.required,
                    warnings: n.warnings.clone(),
                    reason,
                    alternative,
                }
            })
            .collect(),
        chains: plan
            .chains
            .iter()
            .map(|c| PlannedChain {
                name: c.name.clone(),
                required: c.required,
                nodes: c.nodes.clone(),
            })
            .collect(),
        notes: plan.notes.clone(),
        boottime_load_start: t,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn the_plans_files_open_first_then_the_images_others_up_to_the_cap() {
        let mut dep = String::from("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n");
        for i in 0..MAX_OPEN_AHEAD + 10 {
            dep.push_str(&format!("kernel/x{i:04}.ko:\n"));
        }
        let index = DepIndex::parse(&dep, "", "", "").unwrap();
        let manifest =
            Manifest::from_json(br#"{"version": 1, "chains": [{"name": "c", "modules": ["a"]}]}"#)
                .unwrap();
        let plan = modules_manifest::plan_at_boot(PlanInput {
            manifest: &manifest,
            index: &index,
            cmdline: &KernelCmdline::default(),
            loaded: &BTreeSet::new(),
        })
        .unwrap();
        let files = open_ahead_list(&plan, &index, Path::new("/m"));
        assert_eq!(files.len(), MAX_OPEN_AHEAD);
        assert_eq!(files[0], Path::new("/m/kernel/b.ko"));
        assert_eq!(files[1], Path::new("/m/kernel/a.ko"));
        assert_eq!(files[2], Path::new("/m/kernel/x0000.ko"));
        let distinct: BTreeSet<_> = files.iter().collect();
        assert_eq!(distinct.len(), files.len());
    }
}

//! The planner against kmod itself, over the whole installed module tree
//! (the newest `/lib/modules/R` with a `modules.dep`; see
//! support/prerequisites.rs): for every module M of `modules.dep`, the
//! plan of a manifest whose only chain is `[M]` (no modprobe.d, no
//! overrides) must hold exactly the modules that
//! `modprobe -C /nonexistent -d ROOT -S R --show-depends M` prints
//! (`insmod PATH` and `builtin NAME` lines), and every edge of the plan
//! (dependency before dependent, `pre:` softdep before, `post:` softdep
//! after) must agree with the order kmod prints them in (a module kmod
//! prints twice counts where it first appears: that is when it loads).
//!
//! One deliberate difference, modelled rather than allowed: kmod uses only
//! the first `softdep` line of a module, while the index merges all of
//! them (depmod writes one line per `MODULE_SOFTDEP()`, and the author
//! meant all of them: ksmbd's 12 lines, btrfs's 4). So the comparison with
//! kmod plans against the index with only the first line of each module,
//! and a second check proves the merged plans differ from those only by
//! adding the later lines' modules.
//!
//! The plans compared are the boot's: the host's index is compiled as
//! `kmodinit build` compiles it, written to bytes and read back as `/init`
//! reads it, and planned by [`plan_at_boot`] on that; each must also equal
//! the host's strict [`plan`] on the text index (nodes, edges, params,
//! reasons, notes), so the compiled path changes nothing.
//!
//! Without a module tree or `modprobe` the test fails under `CI=true` and
//! says it is skipped otherwise. modprobe runs once per module, on as many
//! threads as there are CPUs (about 2.5 ms each).
#![allow(clippy::unwrap_used)]

#[path = "support/prerequisites.rs"]
mod prerequisites;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use modules_manifest::{
    compiled, plan, plan_at_boot, Action, CompiledIndex, DepIndex, KernelCmdline, Manifest,
    ModuleName, Plan, PlanInput, SoftDep,
};

/// The softdeps of `modules.softdep` as kmod reads them: the first line of
/// each module only, tokens before any `pre:`/`post:` ignored.
fn first_line_softdeps(text: &str) -> HashMap<ModuleName, SoftDep> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut t = line.split_ascii_whitespace();
        if t.next() != Some("softdep") {
            continue;
        }
        let Some(name) = t.next().and_then(|m| ModuleName::new(m).ok()) else {
            continue;
        };
        if out.contains_key(&name) {
            continue;
        }
        let mut soft = SoftDep::default();
        let mut side: Option<&mut Vec<String>> = None;
        for tok in t {
            match tok {
                "pre:" => side = Some(&mut soft.pre),
                "post:" => side = Some(&mut soft.post),
                _ => match side.as_deref_mut() {
                    Some(list) => list.push(tok.to_owned()),
                    None => soft.ignored.push(tok.to_owned()),
                },
            }
        }
        out.insert(name, soft);
    }
    out
}

/// The modules `modprobe --show-depends` printed, in the order of their
/// first appearance.
fn parse_show_depends(out: &str) -> Result<Vec<ModuleName>, String> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for line in out.lines() {
        let name = if let Some(rest) = line.strip_prefix("insmod ") {
            let path = rest.split_ascii_whitespace().next().unwrap_or("");
            ModuleName::from_path(path).map_err(|e| format!("{line:?}: {e}"))?
        } else if let Some(rest) = line.strip_prefix("builtin ") {
            ModuleName::new(rest.trim()).map_err(|e| format!("{line:?}: {e}"))?
        } else {
            return Err(format!("unexpected line {line:?}"));
        };
        if seen.insert(name.clone()) {
            order.push(name);
        }
    }
    Ok(order)
}

/// kmod's answer for every module, run on one thread per CPU.
fn kmod_answers(
    root: &Path,
    release: &str,
    modules: &[ModuleName],
) -> BTreeMap<ModuleName, Result<Vec<ModuleName>, String>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = modules.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = modules
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|m| {
                            let out = Command::new("modprobe")
                                .arg("-C")
                                .arg("/nonexistent")
                                .arg("-d")
                                .arg(root)
                                .arg("-S")
                                .arg(release)
                                .arg("--show-depends")
                                .arg(m.as_str())
                                .output();
                            let answer = match out {
                                Ok(o) if o.status.success() => {
                                    parse_show_depends(&String::from_utf8_lossy(&o.stdout))
                                }
                                Ok(o) => Err(format!(
                                    "modprobe failed ({}): {}",
                                    o.status,
                                    String::from_utf8_lossy(&o.stderr).trim()
                                )),
                                Err(e) => Err(format!("cannot run modprobe: {e}")),
                            };
                            (m.clone(), answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// `idx` through the image's path: compiled on the host, encoded, decoded
/// as `/init` decodes it (release checked).
fn through_the_image(idx: &DepIndex, release: &str) -> DepIndex {
    let c = CompiledIndex::compile(release, idx.clone(), BTreeMap::new(), []);
    compiled::decode(&compiled::encode(&c), Some(release))
        .unwrap()
        .index
}

/// The boot's plan of the chain `[m]` on the compiled index `boot`, after
/// checking it equals the host's strict plan on the text index `host`.
fn plan_one(host: &DepIndex, boot: &DepIndex, m: &ModuleName) -> Result<Plan, String> {
    let manifest = Manifest::from_json(
        format!(r#"{{"version": 1, "chains": [{{"name": "m", "modules": ["{m}"]}}]}}"#).as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let loaded = BTreeSet::new();
    let cmdline = KernelCmdline::parse("");
    let input = |index| PlanInput {
        manifest: &manifest,
        index,
        cmdline: &cmdline,
        loaded: &loaded,
    };
    let at_boot = plan_at_boot(input(boot)).map_err(|e| e.to_string())?;
    let on_host = plan(input(host)).map_err(|e| e.to_string())?;
    if at_boot != on_host {
        return Err(format!(
            "the boot's plan on the compiled index differs from the host's: {at_boot:?} against {on_host:?}"
        ));
    }
    Ok(at_boot)
}

/// The modules of a plan: inserted or builtin (nothing is loaded on the
/// host's behalf here).
fn plan_modules(p: &Plan) -> BTreeSet<ModuleName> {
    p.nodes
        .iter()
        .filter(|n| matches!(n.action, Action::Insert { .. } | Action::Builtin))
        .map(|n| n.name.clone())
        .collect()
}

/// What differs between our plan of `m` and kmod's list; empty if nothing.
fn divergence(p: &Plan, kmod: &[ModuleName]) -> Vec<String> {
    let ours = plan_modules(p);
    let theirs: BTreeSet<ModuleName> = kmod.iter().cloned().collect();
    let mut out = Vec::new();
    let only_ours: Vec<&str> = ours.difference(&theirs).map(|n| n.as_str()).collect();
    let only_kmod: Vec<&str> = theirs.difference(&ours).map(|n| n.as_str()).collect();
    if !only_ours.is_empty() {
        out.push(format!("only kmodinit loads {}", only_ours.join(" ")));
    }
    if !only_kmod.is_empty() {
        out.push(format!("only kmod loads {}", only_kmod.join(" ")));
    }
    let pos: HashMap<&ModuleName, usize> = kmod.iter().enumerate().map(|(i, m)| (m, i)).collect();
    for node in &p.nodes {
        for e in &node.preds {
            let from = &p.nodes[e.from].name;
            if let (Some(a), Some(b)) = (pos.get(from), pos.get(&node.name)) {
                if a > b {
                    out.push(format!(
                        "{from} must load before {} ({:?} edge), kmod loads it after",
                        node.name, e.kind
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn every_module_plans_as_kmod_resolves_it() {
    let Some(tree) = prerequisites::require(prerequisites::module_tree()) else {
        return;
    };
    let Some(()) = prerequisites::require(prerequisites::program("modprobe", &["--version"]))
    else {
        return;
    };
    let merged = DepIndex::load(&tree.modules_dir).unwrap();
    let mut kmod_like = merged.clone();
    let softdep_text =
        std::fs::read_to_string(tree.modules_dir.join("modules.softdep")).unwrap_or_default();
    kmod_like.softdeps = first_line_softdeps(&softdep_text);
    let boot_merged = through_the_image(&merged, &tree.release);
    let boot_kmod_like = through_the_image(&kmod_like, &tree.release);

    let mut modules: Vec<ModuleName> = merged.modules.keys().cloned().collect();
    modules.sort();
    assert!(!modules.is_empty());
    let answers = kmod_answers(&prerequisites::modules_root(), &tree.release, &modules);

    let mut divergences = Vec::new();
    let mut merged_differs = Vec::new();
    for m in &modules {
        let kmod = match &answers[m] {
            Ok(k) => k,
            Err(e) => {
                divergences.push(format!("{m}: {e}"));
                continue;
            }
        };
        let ours = match plan_one(&kmod_like, &boot_kmod_like, m) {
            Ok(p) => p,
            Err(e) => {
                divergences.push(format!("{m}: kmodinit cannot plan it: {e}"));
                continue;
            }
        };
        let d = divergence(&ours, kmod);
        if !d.is_empty() {
            divergences.push(format!("{m}: {}", d.join("; ")));
        }
        // The merged softdep lines only ever add modules, and the merged
        // plan keeps kmod's order for those both have.
        let full = match plan_one(&merged, &boot_merged, m) {
            Ok(p) => p,
            Err(e) => {
                divergences.push(format!("{m}: the merged index cannot plan it: {e}"));
                continue;
            }
        };
        let (a, b) = (plan_modules(&ours), plan_modules(&full));
        if !a.is_subset(&b) {
            divergences.push(format!(
                "{m}: merging softdep lines dropped {:?}",
                a.difference(&b).collect::<Vec<_>>()
            ));
        }
        if a != b {
            merged_differs.push(m.as_str().to_owned());
        }
        let kmod_order_of_shared: Vec<ModuleName> =
            kmod.iter().filter(|k| b.contains(*k)).cloned().collect();
        let order = divergence(&full, &kmod_order_of_shared);
        let order: Vec<&String> = order.iter().filter(|d| d.contains("must load")).collect();
        if !order.is_empty() {
            divergences.push(format!("{m} (merged softdeps): {order:?}"));
        }
    }
    eprintln!(
        "kmod differential over {} ({} modules): {} divergences; merged softdep lines add \
         modules for {} of them ({})",
        tree.modules_dir.display(),
        modules.len(),
        divergences.len(),
        merged_differs.len(),
        merged_differs.join(" ")
    );
    assert!(
        divergences.is_empty(),
        "{} modules plan differently from `modprobe --show-depends`:\n{}",
        divergences.len(),
        divergences.join("\n")
    );
}

#[test]
fn show_depends_output_is_read_as_kmod_prints_it() {
    let out = "insmod /lib/modules/R/kernel/drivers/char/ipmi/ipmi_msghandler.ko \n\
               insmod /lib/modules/R/kernel/drivers/char/ipmi/ipmi_msghandler.ko \n\
               builtin crc32c\n\
               insmod /lib/modules/R/kernel/arch/x86/crypto/crc32c-intel.ko.xz opt=1\n";
    let names: Vec<String> = parse_show_depends(out)
        .unwrap()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, ["ipmi_msghandler", "crc32c", "crc32c_intel"]);
    assert!(parse_show_depends("rmmod x\n").is_err());
    let soft =
        first_line_softdeps("softdep a pre: b\nsoftdep a pre: c post: d\nsoftdep e f post: g\n");
    let a = &soft[&ModuleName::new("a").unwrap()];
    assert_eq!(
        (a.pre.clone(), a.post.clone()),
        (vec!["b".to_owned()], vec![])
    );
    let e = &soft[&ModuleName::new("e").unwrap()];
    assert_eq!(
        (e.ignored.clone(), e.post.clone()),
        (vec!["f".to_owned()], vec!["g".to_owned()])
    );
}

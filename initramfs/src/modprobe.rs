//! The host's `modprobe.d`, carried into the image as dracut and
//! initramfs-tools carry it: `options` become the manifest's `modules`
//! params, `softdep` its `softdeps` overrides, `blacklist` its `blocklist`,
//! and `alias` lines go into the image's `modules.alias` (see
//! [`crate::modules::select_in`]). The image holds a manifest, not a
//! modprobe.d, so `/init` reads one format; the builder's notes say where
//! each setting came from (`file:line`). The manifest wins on conflict.
//! `install`/`remove` are refused by the parser
//! ([`modules_manifest::modprobe_d`]).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use modules_manifest::modprobe_d::{ModprobeConfig, Origin, RefusedCommand, Setting};
use modules_manifest::{Manifest, ModuleName, ModuleSpec, Plan, SoftdepSpec};

/// The host's directories, read when building for the running kernel
/// (kmod reads these and more; these two are where packages and the
/// administrator put their files).
pub const HOST_DIRS: [&str; 2] = ["/etc/modprobe.d", "/lib/modprobe.d"];

/// Why the modprobe.d configuration cannot be carried.
#[derive(Debug, thiserror::Error)]
pub enum ModprobeError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Refused(#[from] RefusedCommand),
}

/// Reads the `*.conf` files of `dirs` as kmod does: sorted by file name
/// across all directories, a name in an earlier directory hiding the same
/// name in a later one. A directory that does not exist is skipped.
pub fn read_dirs(dirs: &[PathBuf]) -> Result<ModprobeConfig, ModprobeError> {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ModprobeError::Read {
                    path: dir.clone(),
                    source,
                })
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| ModprobeError::Read {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") && !name.starts_with('.') {
                files.entry(name).or_insert_with(|| entry.path());
            }
        }
    }
    let mut config = ModprobeConfig::default();
    for path in files.values() {
        let text = read_text(path)?;
        config.parse_file(&text, &path.display().to_string())?;
    }
    Ok(config)
}

fn read_text(path: &Path) -> Result<String, ModprobeError> {
    let bytes = fs::read(path).map_err(|source| ModprobeError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The aliases of `config`, to add to the index before planning.
pub fn aliases(config: &ModprobeConfig) -> Vec<(String, ModuleName, Origin)> {
    config
        .settings
        .iter()
        .filter_map(|(s, o)| match s {
            Setting::Alias { pattern, module } => {
                Some((pattern.clone(), module.clone(), o.clone()))
            }
            _ => None,
        })
        .collect()
}

/// `manifest` with `config`'s options, softdeps and blacklists merged in,
/// for the modules `plan` (the manifest's plan without them) holds, and the
/// notes saying what was carried from where and what was not. The manifest
/// wins: a module it declares params or a softdep override for keeps them;
/// a blacklisted module the plan needs stays.
pub fn merge(manifest: &Manifest, config: &ModprobeConfig, plan: &Plan) -> (Manifest, Vec<String>) {
    let mut out = manifest.clone();
    let mut notes = Vec::new();
    let declared = manifest.declared_params().unwrap_or_default();
    let in_plan = |m: &ModuleName| plan.node(m).is_some();
    let mut options: BTreeMap<ModuleName, Vec<(String, Origin)>> = BTreeMap::new();
    let mut softdeps: BTreeMap<ModuleName, (SoftdepSpec, Vec<Origin>)> = BTreeMap::new();
    for (setting, origin) in &config.settings {
        match setting {
            Setting::Options { module, params } => {
                if !in_plan(module) {
                    continue;
                }
                if let Some(d) = declared.get(module) {
                    notes.push(format!(
                        "modprobe.d: options {module} {params} ({origin}) not used: the manifest \
                         declares parameters for {module} at {} (the manifest wins)",
                        d.path
                    ));
                    continue;
                }
                options
                    .entry(module.clone())
                    .or_default()
                    .push((params.clone(), origin.clone()));
            }
            Setting::Softdep { module, pre, post } => {
                if !in_plan(module) {
                    continue;
                }
                if manifest.softdeps.contains_key(module) {
                    notes.push(format!(
                        "modprobe.d: softdep {module} ({origin}) not used: the manifest's softdeps \
                         override {module} (the manifest wins)"
                    ));
                    continue;
                }
                let slot = softdeps.entry(module.clone()).or_default();
                slot.0.pre.extend(pre.iter().cloned());
                slot.0.post.extend(post.iter().cloned());
                slot.1.push(origin.clone());
            }
            Setting::Blacklist { module } => {
                if in_plan(module) {
                    notes.push(format!(
                        "modprobe.d: blacklist {module} ({origin}) not applied: the manifest's plan \
                         needs {module} (the manifest wins)"
                    ));
                } else if !out.blocklist.contains(module) {
                    out.blocklist.push(module.clone());
                    notes.push(format!(
                        "modprobe.d: blacklist {module} ({origin}) → blocklist (not chosen for an alias)"
                    ));
                }
            }
            // Carried into modules.alias by the module selection.
            Setting::Alias { .. } => {}
        }
    }
    for (module, list) in options {
        let params: Vec<&str> = list.iter().map(|(p, _)| p.as_str()).collect();
        let origins: Vec<String> = list.iter().map(|(_, o)| o.to_string()).collect();
        let joined = params.join(" ");
        notes.push(format!(
            "modprobe.d: options {module} {joined} ({}) → modules.{module}.params",
            origins.join(", ")
        ));
        out.modules.insert(
            module,
            ModuleSpec {
                params: Some(joined),
            },
        );
    }
    for (module, (spec, origins)) in softdeps {
        let origins: Vec<String> = origins.iter().map(Origin::to_string).collect();
        notes.push(format!(
            "modprobe.d: softdep {module} pre: {} post: {} ({}) → softdeps.{module}",
            spec.pre.join(" "),
            spec.post.join(" "),
            origins.join(", ")
        ));
        out.softdeps.insert(module, spec);
    }
    (out, notes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use modules_manifest::{plan, DepIndex, KernelCmdline, PlanInput};
    use std::collections::BTreeSet;

    fn n(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    fn plan_of(m: &Manifest, idx: &DepIndex) -> Plan {
        plan(PlanInput {
            manifest: m,
            index: idx,
            cmdline: &KernelCmdline::default(),
            loaded: &BTreeSet::new(),
        })
        .unwrap()
    }

    #[test]
    fn carries_settings_and_the_manifest_wins() {
        let idx =
            DepIndex::parse("k/a.ko:\nk/b.ko:\nk/c.ko:\nk/y.ko:\nk/z.ko:\n", "", "", "").unwrap();
        let m = Manifest::from_json(
            br#"{"version": 1, "chains": [{"name": "x", "modules": ["a", {"name": "b", "params": "p=1"}, "c"]}],
                 "softdeps": {"c": {"pre": []}}}"#,
        )
        .unwrap();
        let mut cfg = ModprobeConfig::default();
        cfg.parse_file(
            "options a q=1\noptions a r=2\noptions b p=2\noptions z s=1\n\
             softdep a pre: z\nsoftdep c pre: z\nblacklist c\nblacklist y\nalias foo a\n",
            "/etc/modprobe.d/t.conf",
        )
        .unwrap();
        let p = plan_of(&m, &idx);
        let (merged, notes) = merge(&m, &cfg, &p);
        assert_eq!(merged.modules[&n("a")].params.as_deref(), Some("q=1 r=2"));
        assert!(!merged.modules.contains_key(&n("b")));
        assert!(!merged.modules.contains_key(&n("z")), "not in the plan");
        assert_eq!(merged.softdeps[&n("a")].pre, ["z"]);
        assert!(merged.softdeps[&n("c")].pre.is_empty());
        assert_eq!(merged.blocklist, [n("y")]);
        let notes = notes.join("\n");
        for needle in [
            "options a q=1 r=2 (/etc/modprobe.d/t.conf:1, /etc/modprobe.d/t.conf:2) → modules.a.params",
            "options b p=2 (/etc/modprobe.d/t.conf:3) not used: the manifest declares parameters for b at chains[0].modules[1].params",
            "softdep c (/etc/modprobe.d/t.conf:6) not used",
            "softdep a pre: z post:  (/etc/modprobe.d/t.conf:5) → softdeps.a",
            "blacklist c (/etc/modprobe.d/t.conf:7) not applied",
            "blacklist y (/etc/modprobe.d/t.conf:8) → blocklist",
        ] {
            assert!(notes.contains(needle), "missing {needle:?} in\n{notes}");
        }
        // The merged manifest plans (z now loads before a).
        let p2 = plan_of(&merged, &idx);
        assert!(p2.node(&n("z")).is_some());
        assert_eq!(aliases(&cfg)[0].0, "foo");
    }

    #[test]
    fn files_sort_by_name_and_etc_hides_lib() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc");
        let lib = t.path().join("lib");
        fs::create_dir_all(&etc).unwrap();
        fs::create_dir_all(&lib).unwrap();
        fs::write(etc.join("b.conf"), "options a from=etc\n").unwrap();
        fs::write(lib.join("b.conf"), "options a from=lib\n").unwrap();
        fs::write(lib.join("a.conf"), "blacklist x\n").unwrap();
        fs::write(lib.join("c.txt"), "install a /bin/false\n").unwrap();
        let cfg = read_dirs(&[etc.clone(), lib.clone(), t.path().join("none")]).unwrap();
        let got: Vec<String> = cfg.settings.iter().map(|(_, o)| o.to_string()).collect();
        assert_eq!(
            got,
            [
                format!("{}:1", lib.join("a.conf").display()),
                format!("{}:1", etc.join("b.conf").display())
            ]
        );
        fs::write(etc.join("d.conf"), "install a /bin/false\n").unwrap();
        let e = read_dirs(&[etc]).unwrap_err();
        assert!(e.to_string().contains("d.conf:1"), "{e}");
    }
}

//! `--coldplug host|none` and `--coldplug-modules SUBTREE...`: which
//! modules the image carries for `/init`'s coldplug beyond the manifest's
//! plan (with their dependencies, pruned index as for the plan).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use modules_manifest::{modalias, DepIndex, ModuleName};

/// `--coldplug`: where the drivers to carry come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColdplugSource {
    /// None beyond the manifest's plan (the default).
    #[default]
    None,
    /// The drivers of the running machine's devices: its `/sys/devices`
    /// modaliases matched against the module tree's `modules.alias`.
    Host,
}

/// What the image carries for coldplug.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageColdplug {
    pub source: ColdplugSource,
    /// Where `Host` reads devices (`/sys`; tests pass a fake tree).
    pub sys: PathBuf,
    /// Subtrees of the module directory whose every module is carried
    /// (`kernel/drivers/virtio`), relative, without `..`.
    pub subtrees: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ColdplugError {
    #[error("--coldplug-modules {0:?}: {1}")]
    BadSubtree(String, &'static str),
    #[error(
        "--coldplug-modules {0:?}: no module of the tree is under it (paths are relative to lib/modules/RELEASE, e.g. kernel/drivers/virtio)"
    )]
    EmptySubtree(String),
}

/// Checks a `--coldplug-modules` argument: relative, no `..`, not empty.
/// Returns it without trailing slashes.
pub fn check_subtree(s: &str) -> Result<String, ColdplugError> {
    let bad = |why| ColdplugError::BadSubtree(s.to_owned(), why);
    let t = s.trim_end_matches('/');
    if t.is_empty() {
        return Err(bad("empty"));
    }
    for c in Path::new(t).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(bad("contains \"..\"")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad(
                    "is absolute; give a path relative to lib/modules/RELEASE",
                ))
            }
        }
    }
    Ok(t.trim_start_matches("./").to_owned())
}

impl ImageColdplug {
    /// The modules to carry, and notes for the summary.
    pub fn modules(
        &self,
        index: &DepIndex,
    ) -> Result<(BTreeSet<ModuleName>, Vec<String>), ColdplugError> {
        let mut out = BTreeSet::new();
        let mut notes = Vec::new();
        for sub in &self.subtrees {
            let sub = check_subtree(sub)?;
            let prefix = format!("{sub}/");
            let under: Vec<&ModuleName> = index
                .modules
                .values()
                .filter(|m| m.path == sub || m.path.starts_with(&prefix))
                .map(|m| &m.name)
                .collect();
            if under.is_empty() {
                return Err(ColdplugError::EmptySubtree(sub));
            }
            notes.push(format!("coldplug: {} module(s) under {sub}", under.len()));
            out.extend(under.into_iter().cloned());
        }
        if self.source == ColdplugSource::Host {
            let walked = modalias::walk(&self.sys.join("devices"));
            let mut found = BTreeSet::new();
            let mut seen = BTreeSet::new();
            for alias in &walked.aliases {
                if !seen.insert(alias.as_str()) {
                    continue;
                }
                found.extend(
                    index
                        .aliases
                        .lookup(alias)
                        .into_iter()
                        .filter(|m| index.modules.contains_key(m)),
                );
            }
            notes.push(format!(
                "coldplug host: {} device modalias(es) in {}, {} driver module(s): {}",
                seen.len(),
                self.sys.join("devices").display(),
                found.len(),
                found
                    .iter()
                    .map(ModuleName::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            out.extend(found);
        }
        Ok((out, notes))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subtrees_are_relative_and_stay_inside() {
        assert_eq!(
            check_subtree("kernel/drivers/virtio/").unwrap(),
            "kernel/drivers/virtio"
        );
        for bad in ["", "/", "/lib/modules", "kernel/../../etc", ".."] {
            assert!(check_subtree(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_and_subtrees_pick_their_modules() {
        let index = DepIndex::parse(
            "kernel/drivers/virtio/virtio_pci.ko:\nkernel/drivers/block/virtio_blk.ko:\nkernel/fs/ext4.ko:\n",
            "",
            "",
            "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias virtio:d00000002v* virtio_blk\nalias pci:v00008086d* gone\n",
        )
        .unwrap();
        let sys = std::env::temp_dir().join(format!("mkimage-coldplug-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        let dev = sys.join("devices/pci0000:00/0000:00:04.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(
            dev.join("modalias"),
            "pci:v00001AF4d00001001sv1sd2bc01sc00i00\n",
        )
        .unwrap();
        std::fs::write(sys.join("devices/modalias"), "pci:v00008086d00001237\n").unwrap();
        let c = ImageColdplug {
            source: ColdplugSource::Host,
            sys: sys.clone(),
            subtrees: vec!["kernel/drivers/block/virtio_blk.ko".into()],
        };
        let (m, notes) = c.modules(&index).unwrap();
        let names: Vec<&str> = m.iter().map(ModuleName::as_str).collect();
        // `gone` matches but has no file: not carried.
        assert_eq!(names, ["virtio_blk", "virtio_pci"]);
        assert!(notes.iter().any(|n| n.contains("virtio_pci")), "{notes:?}");
        let c = ImageColdplug {
            subtrees: vec!["kernel/sound".into()],
            ..ImageColdplug::default()
        };
        assert!(matches!(
            c.modules(&index),
            Err(ColdplugError::EmptySubtree(_))
        ));
        let _ = std::fs::remove_dir_all(&sys);
    }
}

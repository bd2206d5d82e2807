//! The PCR value an image and a command line give, predicted on the host:
//! the image is unpacked into a temporary directory, its manifest and
//! module index are read and planned exactly as `/init` does at boot (no
//! module loaded yet), and the extends of
//! [`modules_manifest::measure`] are replayed from the initial value. A
//! verifier computes the golden value without booting.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use modules_manifest::measure::{self, head_events, module_events, plan_order, Digest, Event};
use modules_manifest::{compiled, KernelCmdline, Manifest, PlanInput};

use kmodinit_mkimage::compress::Compress;
use kmodinit_mkimage::cpio;

/// Where `/init` reads its manifest when the command line names none.
pub const DEFAULT_MANIFEST: &str = "etc/kmodinit/manifest.json";

/// Why no prediction could be made.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("the image is not a (compressed) newc archive: {0}")]
    Archive(String),
    #[error("the image holds no manifest at /{0}")]
    NoManifest(String),
    #[error("the image's manifest /{path}: {message}")]
    Manifest { path: String, message: String },
    #[error("the image holds {0} module trees (lib/modules/*/kmodinit.index); expected one")]
    Releases(usize),
    #[error("the image's module index: {0}")]
    Index(String),
    #[error("the image's manifest does not plan: {0}")]
    Plan(String),
    #[error("neither the image's manifest (\"measure\") nor the command line (kmodinit.measure=PCR) turns measuring on")]
    NotMeasured,
    #[error("the image lacks the module file /{0}")]
    MissingModule(String),
    #[error("unpacking the image: {0}")]
    Io(#[from] std::io::Error),
}

/// The prediction: which PCR, every extend in order, and its value after
/// them from `initial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    pub pcr: u32,
    pub kernel_release: String,
    pub initial: Digest,
    pub events: Vec<Event>,
    pub final_value: Digest,
}

impl Prediction {
    /// The report's `measure` object (`pcr`, `bank`, `initial`, `events`,
    /// `final`), so a verifier compares like with like.
    pub fn render_json(&self) -> String {
        let events: Vec<serde_json::Value> = self
            .events
            .iter()
            .map(|e| serde_json::json!({"digest": measure::hex(&e.digest), "what": e.what}))
            .collect();
        let v = serde_json::json!({
            "pcr": self.pcr,
            "bank": "sha256",
            "initial": measure::hex(&self.initial),
            "events": events,
            "final": measure::hex(&self.final_value),
        });
        let mut out = serde_json::to_string_pretty(&v).unwrap_or_default();
        out.push('\n');
        out
    }

    /// One line per extend, then the final value alone on the last line.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "PCR {} (sha256), kernel {}, from {}:\n",
            self.pcr,
            self.kernel_release,
            measure::hex(&self.initial)
        );
        for e in &self.events {
            out.push_str(&format!("  {}  {}\n", measure::hex(&e.digest), e.what));
        }
        out.push_str(&measure::hex(&self.final_value));
        out.push('\n');
        out
    }
}

/// Predicts the PCR value `image` (the bytes of an image file, compressed
/// or not) gives on a boot with `cmdline` (the kernel command line's
/// text), from `initial` (zero for PCRs 8–16 and 23 at power-on; the
/// firmware's and the EFI stub's extends come before ours).
pub fn predict(image: &[u8], cmdline: &str, initial: Digest) -> Result<Prediction, PredictError> {
    let raw = decompress(image)?;
    let members = cpio::read(&raw).map_err(|e| PredictError::Archive(e.to_string()))?;
    let tmp = tempfile::tempdir()?;
    for m in &members {
        // Regular files only: the manifest, the index and the modules.
        if m.header.mode & 0o170000 != 0o100000 {
            continue;
        }
        let Some(rel) = safe_relative(&m.header.name) else {
            return Err(PredictError::Archive(format!(
                "member {:?} leaves the archive's root",
                m.header.name
            )));
        };
        let path = tmp.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &m.data)?;
    }
    let cmdline = KernelCmdline::parse(cmdline);
    let manifest_rel = cmdline
        .manifest
        .as_deref()
        .map_or(DEFAULT_MANIFEST, |p| p.trim_start_matches('/'))
        .to_owned();
    let manifest_bytes = std::fs::read(tmp.path().join(&manifest_rel))
        .map_err(|_| PredictError::NoManifest(manifest_rel.clone()))?;
    let manifest = Manifest::from_json(&manifest_bytes).map_err(|e| PredictError::Manifest {
        path: manifest_rel.clone(),
        message: e.to_string(),
    })?;
    let spec = measure::settings(Some(&manifest), &cmdline).ok_or(PredictError::NotMeasured)?;
    let (release, modules_dir) = module_tree(tmp.path())?;
    // The compiled index /init reads, so the plan is the boot's.
    let bytes = std::fs::read(modules_dir.join(compiled::INDEX_FILE))
        .map_err(|e| PredictError::Index(e.to_string()))?;
    let index = compiled::decode(&bytes, Some(&release))
        .map_err(|e| PredictError::Index(e.to_string()))?
        .index;
    let plan = modules_manifest::plan_at_boot(PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline: &cmdline,
        loaded: &BTreeSet::new(),
    })
    .map_err(|e| PredictError::Plan(e.to_string()))?;
    let mut events: Vec<Event> = head_events(&manifest_bytes, &cmdline).to_vec();
    for m in plan_order(&plan) {
        let file = modules_dir.join(m.path);
        let bytes = std::fs::read(&file).map_err(|_| {
            PredictError::MissingModule(format!("lib/modules/{release}/{}", m.path))
        })?;
        events.extend(module_events(m.name, measure::sha256(&bytes), m.params));
    }
    let final_value = measure::replay(initial, events.iter().map(|e| &e.digest));
    Ok(Prediction {
        pcr: spec.pcr,
        kernel_release: release,
        initial,
        events,
        final_value,
    })
}

/// The archive, decompressed by its magic (gzip, zstd, xz) or as is.
fn decompress(image: &[u8]) -> Result<Vec<u8>, PredictError> {
    let format = if image.starts_with(&[0x1f, 0x8b]) {
        Compress::Gzip
    } else if image.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compress::Zstd
    } else if image.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compress::Xz
    } else {
        Compress::None
    };
    format
        .decompress(image)
        .map_err(|e| PredictError::Archive(format!("{}: {e}", format.name())))
}

/// The one `lib/modules/RELEASE` holding a compiled index.
fn module_tree(root: &Path) -> Result<(String, PathBuf), PredictError> {
    let mut found = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(root.join("lib/modules")) {
        for d in dirs.flatten() {
            if d.path().join(compiled::INDEX_FILE).is_file() {
                found.push((d.file_name().to_string_lossy().into_owned(), d.path()));
            }
        }
    }
    if found.len() != 1 {
        return Err(PredictError::Releases(found.len()));
    }
    Ok(found.remove(0))
}

/// `name` as a relative path with no `..`, `None` otherwise.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let p = Path::new(name.trim_start_matches('/'));
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| p.to_path_buf())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A small image: two modules (b depends on a), a manifest measuring
    /// into PCR 12, a command line param for b.
    fn image(compress: Compress) -> Vec<u8> {
        use kmodinit_mkimage::tree::{Content, ImagePath, Kind, Node, Tree};
        let mut t = Tree::new();
        let r = "lib/modules/6.1.0-test";
        let index = modules_manifest::DepIndex::parse(
            "kernel/a.ko:\nkernel/b.ko: kernel/a.ko\n",
            "",
            "",
            "",
        )
        .unwrap();
        let index = compiled::encode(&modules_manifest::CompiledIndex::compile(
            "6.1.0-test",
            index,
            Default::default(),
            [],
        ));
        let files: [(String, &[u8]); 4] = [
            (format!("{r}/{}", compiled::INDEX_FILE), &index),
            (format!("{r}/kernel/a.ko"), b"module a"),
            (format!("{r}/kernel/b.ko"), b"module b"),
            (
                DEFAULT_MANIFEST.to_owned(),
                br#"{"version": 1, "chains": [{"name": "c", "modules": ["b"]}], "measure": {"pcr": 12}}"#,
            ),
        ];
        for (path, bytes) in files {
            let node = Node {
                kind: Kind::File(Content::Bytes(bytes.to_vec())),
                perm: 0o644,
            };
            t.insert(ImagePath::relative(&path).unwrap(), node).unwrap();
        }
        let (raw, _) = t.write_cpio(0, Vec::new()).unwrap();
        compress.compress(&raw).unwrap()
    }

    #[test]
    fn the_prediction_replays_manifest_cmdline_then_modules_in_plan_order() {
        let p = predict(&image(Compress::Zstd), "console=ttyS0 b.tag=x", [0; 32]).unwrap();
        assert_eq!(p.pcr, 12);
        assert_eq!(p.kernel_release, "6.1.0-test");
        let what: Vec<&str> = p.events.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(what[0], "manifest");
        assert!(what[1].starts_with("cmdline "), "{what:?}");
        assert_eq!(&what[2..], ["module a", "module b", "params b: tag=x"]);
        assert_eq!(p.events[2].digest, measure::sha256(b"module a"));
        let mut v = [0u8; 32];
        for e in &p.events {
            v = measure::extend(&v, &e.digest);
        }
        assert_eq!(p.final_value, v);
        assert!(p
            .render_text()
            .ends_with(&format!("\n{}\n", measure::hex(&v))));
        let j: serde_json::Value = serde_json::from_str(&p.render_json()).unwrap();
        assert_eq!(j["final"], measure::hex(&v));
        assert_eq!(j["events"][4]["what"], "params b: tag=x");
        // The same for every compression, and another param gives another value.
        assert_eq!(
            predict(&image(Compress::None), "b.tag=x", [0; 32])
                .unwrap()
                .final_value,
            v
        );
        assert_eq!(
            predict(&image(Compress::Gzip), "b.tag=x", [0; 32])
                .unwrap()
                .final_value,
            v
        );
        assert_ne!(
            predict(&image(Compress::Xz), "b.tag=y", [0; 32])
                .unwrap()
                .final_value,
            v
        );
        // The command line picks the PCR; the initial value is the start.
        let q = predict(
            &image(Compress::None),
            "b.tag=x kmodinit.measure=14",
            [0xff; 32],
        )
        .unwrap();
        assert_eq!(q.pcr, 14);
        assert_ne!(q.final_value, v);
    }

    #[test]
    fn what_cannot_be_predicted_says_why() {
        let e = predict(&image(Compress::None), "kmodinit.measure=off", [0; 32]).unwrap_err();
        assert!(matches!(e, PredictError::NotMeasured), "{e}");
        let e = predict(b"not an image", "", [0; 32]).unwrap_err();
        assert!(e.to_string().contains("newc"), "{e}");
        let e = predict(
            &image(Compress::None),
            "kmodinit.manifest=/etc/other.json",
            [0; 32],
        )
        .unwrap_err();
        assert!(e.to_string().contains("/etc/other.json"), "{e}");
        assert_eq!(safe_relative("../etc/x"), None);
        assert_eq!(safe_relative("/etc/x"), Some(PathBuf::from("etc/x")));
    }
}

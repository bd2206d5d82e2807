//! The manifest, JSON version 1 (see DESIGN.md).
//!
//! [`Manifest::from_json`] does the schema-level checks: unknown fields,
//! wrong types, `version` other than 1, names that are not plain module
//! names, empty or duplicate chain names, a module listed twice in one chain,
//! and one module declared with two different parameter strings. Errors carry
//! the JSON path and, for syntax and type errors, the line and column.
//! Checks that need the module index (unknown module, cycles, blocklist) are
//! [`crate::plan()`]'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::name::ModuleName;

mod wire;
use wire::*;

/// A parsed, schema-checked manifest. Semantic checks against a module index
/// (unknown module, cycles, blocklist conflicts) happen in [`crate::plan()`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub version: u32,
    pub chains: Vec<ChainSpec>,
    /// Per-module parameters, however the module is pulled in.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<ModuleName, ModuleSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocklist: Vec<ModuleName>,
    /// Worker-pool width; 0 means automatic.
    #[serde(skip_serializing_if = "is_zero")]
    pub jobs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<RootSpec>,
    #[serde(skip_serializing_if = "InitSpec::is_default")]
    pub init: InitSpec,
    /// `None`: rescue if the image has a shell, else halt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// How long optional chains may hold the boot after the load phase
    /// starts (ms); `None`: the boot's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// How long a required chain may take before it counts as failed (ms);
    /// `None`: the boot's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_timeout_ms: Option<u64>,
    /// Softdep overrides: each replaces the index's softdeps of its module
    /// (empty lists remove them). Names may be aliases, as in
    /// `modules.softdep`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub softdeps: BTreeMap<ModuleName, SoftdepSpec>,
    /// `"coldplug": {"enabled": bool, "allow": [glob], "deny": [glob]}`:
    /// load the drivers of the devices present (their `modalias` matched
    /// against `modules.alias`). `None`: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coldplug: Option<ColdplugSpec>,
    /// `"measure": {"pcr": N, "required": bool}`: extend every module
    /// inserted (file and parameters) into a TPM PCR first. `None`: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measure: Option<MeasureSpec>,
    /// `"lock_modules": true`: write 1 to `/proc/sys/kernel/modules_disabled`
    /// once the load and the module helper's service are over.
    #[serde(skip_serializing_if = "is_false")]
    pub lock_modules: bool,
}

/// The PCR extended when `"measure"` names none: 9, where the kernel's EFI
/// stub (and grub) measure the initrd, so that what the initrd brings into
/// the kernel follows the initrd itself (init/PID1.md says why not another).
pub const DEFAULT_MEASURE_PCR: u32 = 9;

/// The highest PCR index of a PC client TPM.
pub const MAX_PCR: u32 = 23;

/// `"measure": {"pcr": N, "required": bool}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MeasureSpec {
    /// 0..=23; default [`DEFAULT_MEASURE_PCR`].
    pub pcr: u32,
    /// No module loads unmeasured: without a TPM (or when an extend fails)
    /// the boot stops and `on_failure` decides. Default false: the boot
    /// goes on and the report says nothing was measured.
    pub required: bool,
}

/// Coldplug: which matched drivers may load. A module matched by a
/// device's modalias loads if `allow` is empty or one of its globs matches
/// the module's name, and no `deny` glob does (fnmatch over module names,
/// `-` read as `_`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ColdplugSpec {
    /// Defaults to true when the object is given.
    pub enabled: bool,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// `"softdeps": {"MODULE": {"pre": [..], "post": [..]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SoftdepSpec {
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

/// One ordered chain: each module starts after its predecessor succeeded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainSpec {
    pub name: String,
    pub modules: Vec<ChainEntry>,
    /// A required chain that cannot complete triggers `on_failure`.
    #[serde(skip_serializing_if = "is_false")]
    pub required: bool,
}

/// A chain entry: `"name"` or `{"name": …, "params": …}`, written back
/// in the same two forms.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainEntry {
    pub name: ModuleName,
    pub params: Option<String>,
}

impl Serialize for ChainEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match &self.params {
            None => self.name.serialize(s),
            Some(p) => {
                let mut st = s.serialize_struct("ChainEntry", 2)?;
                st.serialize_field("name", &self.name)?;
                st.serialize_field("params", p)?;
                st.end()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ModuleSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
}

// What `to_json` leaves out: what a reader takes as the default anyway,
// so a written manifest holds only what was set.
fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where the real root lives; the kernel command line overrides each field.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RootSpec {
    /// `/dev/…`, `UUID=…`, `LABEL=…`, `PARTUUID=…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    /// Mount options, e.g. `ro` or `rw,noatime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    /// How long to wait for the device to appear, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// The program PID 1 hands over to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitSpec {
    pub path: String,
    pub args: Vec<String>,
}

impl Default for InitSpec {
    fn default() -> Self {
        InitSpec {
            path: "/sbin/init".into(),
            args: Vec::new(),
        }
    }
}

impl InitSpec {
    fn is_default(&self) -> bool {
        *self == InitSpec::default()
    }
}

/// What PID 1 does after a fatal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Exec `/bin/sh` if the image has one (else halt).
    Rescue,
    Reboot,
    Poweroff,
    Halt,
}

/// A manifest that cannot be used, with the JSON path (`chains[1].modules[0]`)
/// and, for syntax and type errors, the line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "manifest")?;
        if !self.path.is_empty() {
            write!(f, " at {}", self.path)?;
        }
        if self.line > 0 {
            write!(f, " (line {}, column {})", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// The largest manifest [`Manifest::from_json`] accepts, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// The widest worker pool a manifest may ask for (`jobs`).
pub const MAX_JOBS: usize = 1024;

/// The longest chain name, in bytes (it is printed in logs and reports).
pub const MAX_CHAIN_NAME_BYTES: usize = 255;

impl ManifestError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError {
            path: path.into(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }
}

/// Where a module's parameters were declared, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsSource {
    /// JSON path of the `params` value, e.g. `chains[0].modules[1].params`.
    pub path: String,
    pub params: String,
}

impl Manifest {
    /// Parses and schema-checks a manifest. Never panics on any input.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::at(
                "",
                format!(
                    "the manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES} bytes (1 MiB)",
                    bytes.len()
                ),
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        #[cfg(feature = "json-paths")]
        let raw: RawManifest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = match e.path().to_string() {
                p if p == "." => String::new(),
                p => p,
            };
            json_error(path, e.inner())
        })?;
        // Without the feature: line and column only.
        #[cfg(not(feature = "json-paths"))]
        let raw = RawManifest::deserialize(&mut de).map_err(|e| json_error(String::new(), &e))?;
        de.end().map_err(|e| json_error(String::new(), &e))?;
        let manifest = Manifest {
            version: raw.version.0,
            chains: raw
                .chains
                .into_iter()
                .map(|c| ChainSpec {
                    name: c.name.0,
                    modules: c.modules,
                    required: c.required,
                })
                .collect(),
            modules: raw.modules.0,
            blocklist: raw.blocklist,
            jobs: raw.jobs.0,
            root: raw.root.map(|r| RootSpec {
                device: r.device.map(|s| s.0),
                fstype: r.fstype.map(|s| s.0),
                flags: r.flags.map(|s| s.0),
                wait_ms: r.wait_ms,
            }),
            init: raw
                .init
                .map(|i| InitSpec {
                    path: i.path.0,
                    args: i.args.into_iter().map(|a| a.0).collect(),
                })
                .unwrap_or_default(),
            on_failure: raw.on_failure,
            deadline_ms: raw.deadline_ms,
            required_timeout_ms: raw.required_timeout_ms,
            softdeps: raw.softdeps.0,
            coldplug: raw.coldplug.map(|c| ColdplugSpec {
                enabled: c.enabled,
                allow: c.allow.into_iter().map(|g| g.0.replace('-', "_")).collect(),
                deny: c.deny.into_iter().map(|g| g.0.replace('-', "_")).collect(),
            }),
            measure: raw.measure.map(|m| MeasureSpec {
                pcr: m.pcr.0,
                required: m.required,
            }),
            lock_modules: raw.lock_modules,
        };
        manifest.check()?;
        Ok(manifest)
    }

    /// The manifest as JSON that [`Manifest::from_json`] reads back equal
    /// (the image builder writes a manifest it merged from several sources).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// The cross-field checks of [`Manifest::from_json`], for a manifest
    /// built in code: duplicate or empty chain names, a module twice in one
    /// chain, conflicting parameter strings.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.version != 1 {
            return Err(ManifestError::at(
                "version",
                format!(
                    "unsupported manifest version {}; this kmodinit reads version 1",
                    self.version
                ),
            ));
        }
        let mut chain_names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, chain) in self.chains.iter().enumerate() {
            let path = format!("chains[{i}].name");
            check_chain_name(&chain.name).map_err(|m| ManifestError::at(&path, m))?;
            if let Some(first) = chain_names.insert(&chain.name, i) {
                return Err(ManifestError::at(
                    path,
                    format!(
                        "chain name {:?} is used twice (chains[{first}] and chains[{i}]); chain names must be unique",
                        chain.name
                    ),
                ));
            }
            let mut seen: BTreeMap<&ModuleName, usize> = BTreeMap::new();
            for (j, entry) in chain.modules.iter().enumerate() {
                if let Some(first) = seen.insert(&entry.name, j) {
                    return Err(ManifestError::at(
                        format!("chains[{i}].modules[{j}]"),
                        format!(
                            "module {} appears twice in chain {:?} (entries {first} and {j}); a chain loads each module once",
                            entry.name, chain.name
                        ),
                    ));
                }
            }
        }
        self.declared_params().map(|_| ())
    }

    /// The parameters each module is declared with (chain entries and the
    /// `modules` section), with where they were declared. Two different
    /// strings for one module are an error naming the module and both places:
    /// parameters belong to the module, not to the place that names it.
    pub fn declared_params(&self) -> Result<BTreeMap<ModuleName, ParamsSource>, ManifestError> {
        let mut out: BTreeMap<ModuleName, ParamsSource> = BTreeMap::new();
        let sections = self.modules.iter().map(|(name, spec)| {
            (
                name,
                spec.params.as_deref(),
                format!("modules.{name}.params"),
            )
        });
        let entries = self.chains.iter().enumerate().flat_map(|(i, c)| {
            c.modules.iter().enumerate().map(move |(j, e)| {
                (
                    &e.name,
                    e.params.as_deref(),
                    format!("chains[{i}].modules[{j}].params"),
                )
            })
        });
        // Chain entries first, so an error points at the `modules` section
        // only when that is where the second declaration is.
        let mut all: Vec<_> = entries.collect();
        all.extend(sections);
        for (name, params, path) in all {
            let Some(params) = params.map(str::trim).filter(|p| !p.is_empty()) else {
                continue;
            };
            if params.contains('\0') {
                return Err(ManifestError::at(path, "parameters contain a NUL byte"));
            }
            match out.get(name) {
                Some(prev) if prev.params != params => {
                    return Err(ManifestError::at(
                        &path,
                        format!(
                            "module {name} has two different parameter strings: {:?} at {} and {params:?} at {path}; \
                             parameters belong to the module, declare them once",
                            prev.params, prev.path
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    out.insert(
                        name.clone(),
                        ParamsSource {
                            path,
                            params: params.to_owned(),
                        },
                    );
                }
            }
        }
        Ok(out)
    }
}

fn check_chain_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("empty chain name".to_owned());
    }
    if name.len() > MAX_CHAIN_NAME_BYTES {
        return Err(format!(
            "chain name {name:?} is longer than {MAX_CHAIN_NAME_BYTES} bytes"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("chain name {name:?} contains a control character"));
    }
    Ok(())
}

/// A serde_json error as a [`ManifestError`]. serde_json appends
/// "at line L column C" to its messages; that part goes into the fields.
fn json_error(path: String, e: &serde_json::Error) -> ManifestError {
    let mut message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    if let Some(stripped) = message.strip_suffix(&suffix) {
        message = stripped.to_owned();
    }
    ManifestError {
        path,
        line: e.line(),
        column: e.column(),
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    fn err(json: &str) -> ManifestError {
        Manifest::from_json(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn measure_and_lock_modules_are_checked_and_default_off() {
        let m = Manifest::from_json(br#"{"version": 1}"#).unwrap();
        assert_eq!((m.measure, m.lock_modules), (None, false));
        let m = Manifest::from_json(
            br#"{"version": 1, "measure": {"required": true}, "lock_modules": true}"#,
        )
        .unwrap();
        assert_eq!(
            m.measure,
            Some(MeasureSpec {
                pcr: DEFAULT_MEASURE_PCR,
                required: true
            })
        );
        assert!(m.lock_modules);
        let m = Manifest::from_json(br#"{"version": 1, "measure": {"pcr": 23}}"#).unwrap();
        assert_eq!(m.measure.map(|s| (s.pcr, s.required)), Some((23, false)));
        let e = err(r#"{"version": 1, "measure": {"pcr": 24}}"#);
        assert!(e.path.starts_with("measure.pcr"), "{e}");
        assert!(e.to_string().contains("expected 0 to 23"), "{e}");
        let e = err(r#"{"version": 1, "measure": {"bank": "sha1"}}"#);
        assert!(e.to_string().contains("bank"), "{e}");
        let e = err(r#"{"version": 1, "lock_modules": 1}"#);
        assert!(e.path.starts_with("lock_modules"), "{e}");
        // Written back and read again: the same.
        let m =
            Manifest::from_json(br#"{"version": 1, "measure": {"pcr": 12}, "lock_modules": true}"#)
                .unwrap();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn coldplug_is_checked_and_defaults_to_on_when_given() {
        let m = Manifest::from_json(
            br#"{"version": 1, "coldplug": {"deny": ["virtio-b*"], "allow": ["virtio_*", "e1000[ef]"]}}"#,
        )
        .unwrap();
        let c = m.coldplug.unwrap();
        assert!(c.enabled);
        assert_eq!(c.deny, ["virtio_b*"]);
        assert_eq!(c.allow, ["virtio_*", "e1000[ef]"]);
        let m = Manifest::from_json(br#"{"version": 1, "coldplug": {"enabled": false}}"#).unwrap();
        assert!(!m.coldplug.unwrap().enabled);
        assert_eq!(
            Manifest::from_json(br#"{"version": 1}"#).unwrap().coldplug,
            None
        );
        let e = err(r#"{"version": 1, "coldplug": {"deny": ["ok", "e1000[ef"]}}"#);
        assert!(e.path.starts_with("coldplug.deny"), "{e}");
        assert!(e.message.contains("']'"), "{e}");
        let e = err(r#"{"version": 1, "coldplug": {"allow": ["two words"]}}"#);
        assert!(e.path.starts_with("coldplug.allow"), "{e}");
        let e = err(r#"{"version": 1, "coldplug": {"enabled": "yes"}}"#);
        assert!(e.path.starts_with("coldplug.enabled"), "{e}");
        let e = err(r#"{"version": 1, "coldplug": {"on": true}}"#);
        assert!(e.message.contains("on"), "{e}");
    }

    #[test]
    fn to_json_reads_back_equal() {
        let m = Manifest::from_json(
            br#"{"version": 1, "chains": [{"name": "s", "modules": ["a", {"name": "b", "params": "x=1"}], "required": true}],
                 "modules": {"c": {"params": "y=\"p q\""}, "d": {}}, "blocklist": ["e"], "jobs": 3,
                 "root": {"device": "LABEL=r", "wait_ms": 5}, "init": {"path": "/sbin/init", "args": ["-s"]},
                 "on_failure": "halt", "deadline_ms": 7, "softdeps": {"a": {"pre": ["b"], "post": []}}}"#,
        )
        .unwrap();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        // Written as a person would: entries as names unless they carry
        // params, and what a reader defaults left out.
        let plain = Manifest::from_json(br#"{"version": 1, "chains": [{"name": "s", "modules": ["a", {"name": "b", "params": "x=1"}]}]}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&plain.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"version": 1, "chains": [{"name": "s", "modules": ["a", {"name": "b", "params": "x=1"}]}]})
        );
    }

    #[test]
    fn softdep_overrides_parse_and_refuse_unknown_fields() {
        let m = Manifest::from_json(
            br#"{"version": 1, "softdeps": {"ext4": {"pre": ["crc32c_generic"], "post": []},
                 "virtio-blk": {}}}"#,
        )
        .unwrap();
        assert_eq!(m.softdeps[&n("ext4")].pre, ["crc32c_generic"]);
        assert!(m.softdeps[&n("virtio_blk")].pre.is_empty());
        let e = err(r#"{"version": 1, "softdeps": {"ext4": {"pre": [], "weak": []}}}"#);
        assert!(e.path.starts_with("softdeps.ext4"), "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = err(r#"{"version": 1, "softdeps": {"ext4": {"pre": ["a b"]}}}"#);
        assert!(e.message.contains("softdep name"), "{e}");
        let e = err(r#"{"version": 1, "softdeps": {"virtio_blk": {}, "virtio-blk": {}}}"#);
        assert!(e.message.contains("twice"), "{e}");
    }

    #[test]
    fn the_design_example_parses() {
        let m = Manifest::from_json(
            br#"{
  "version": 1,
  "chains": [
    { "name": "storage", "modules": ["virtio_pci", {"name": "virtio_blk", "params": "queue_depth=128"}], "required": true },
    { "name": "fs", "modules": ["ext4"] }
  ],
  "modules": { "driver_common": { "params": "opt=b" } },
  "blocklist": ["floppy"],
  "jobs": 0,
  "root": { "device": "UUID=1234", "fstype": "ext4", "flags": "ro", "wait_ms": 10000 },
  "init": { "path": "/sbin/init", "args": [] },
  "on_failure": "rescue"
}"#,
        )
        .unwrap();
        assert_eq!(m.chains.len(), 2);
        assert_eq!(m.chains[0].modules[1].name, n("virtio_blk"));
        assert_eq!(
            m.chains[0].modules[1].params.as_deref(),
            Some("queue_depth=128")
        );
        assert!(m.chains[0].required && !m.chains[1].required);
        assert_eq!(
            m.modules[&n("driver_common")].params.as_deref(),
            Some("opt=b")
        );
        assert_eq!(m.blocklist, vec![n("floppy")]);
        assert_eq!(m.root.as_ref().unwrap().wait_ms, Some(10000));
        assert_eq!(m.on_failure, Some(OnFailure::Rescue));
    }

    #[test]
    fn defaults() {
        let m = Manifest::from_json(br#"{"version": 1}"#).unwrap();
        assert!(m.chains.is_empty() && m.modules.is_empty() && m.blocklist.is_empty());
        assert_eq!(m.jobs, 0);
        assert_eq!(m.root, None);
        assert_eq!(m.init, InitSpec::default());
        assert_eq!(m.init.path, "/sbin/init");
        assert_eq!(m.on_failure, None);
        let m = Manifest::from_json(
            br#"{"version": 1, "chains": [{"name": "c", "modules": ["virtio-blk"]}], "init": {"args": ["x"]}}"#,
        )
        .unwrap();
        assert!(!m.chains[0].required);
        assert_eq!(m.chains[0].modules[0].name.as_str(), "virtio_blk");
        assert_eq!(m.init.path, "/sbin/init");
        assert_eq!(m.init.args, vec!["x"]);
    }

    #[test]
    fn unknown_field_names_path_line_and_column() {
        let e = err("{\"version\": 1,\n \"chains\": [{\"name\": \"a\", \"modules\": [], \"requird\": true}]}");
        assert_eq!(e.path, "chains[0].requird");
        assert_eq!(e.line, 2);
        assert!(e.column > 0);
        assert!(e.message.contains("requird"), "{e}");
        assert!(!e.message.contains("at line"), "{e}");
        assert!(e.to_string().contains("line 2, column"), "{e}");
        let e = err(r#"{"version": 1, "colour": "red"}"#);
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_path() {
        let e = err(
            r#"{"version": 1, "chains": [{"name": "a", "modules": ["x"]}, {"name": "b", "modules": [{"name": "y", "params": 7}]}]}"#,
        );
        assert_eq!(e.path, "chains[1].modules[0].params");
        assert!(e.message.contains("integer"), "{e}");
        let e = err(r#"{"version": 1, "jobs": "four"}"#);
        assert_eq!(e.path, "jobs");
        let e = err(r#"{"version": 1, "chains": [{"name": "a", "modules": [3]}]}"#);
        assert_eq!(e.path, "chains[0].modules[0]");
        assert!(e.message.contains("module name"), "{e}");
        let e = err(
            r#"{"version": 1, "chains": [{"name": "a", "modules": [{"name": "x", "parms": "a=1"}]}]}"#,
        );
        assert_eq!(e.path, "chains[0].modules[0].parms");
        let e = err(r#"{"version": 1, "on_failure": "explode"}"#);
        assert_eq!(e.path, "on_failure");
        assert!(e.message.contains("explode"), "{e}");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = err("{\"version\": 1,\n\n  \"chains\": [,]}");
        assert_eq!(e.line, 3);
        assert!(e.column > 0);
        let e = err(r#"{"version": 1} trailing"#);
        assert_eq!(e.line, 1);
        assert!(e.message.contains("trailing"), "{e}");
        let e = err("");
        assert!(e.message.contains("EOF"), "{e}");
    }

    #[test]
    fn version_must_be_1() {
        let e = err(r#"{"version": 2}"#);
        assert_eq!(e.path, "version");
        assert!(e.message.contains("version 2"), "{e}");
        assert!(e.line > 0);
        let e = err(r#"{"chains": []}"#);
        assert!(e.message.contains("version"), "{e}");
    }

    #[test]
    fn path_like_module_names_are_refused_with_their_place() {
        let e =
            err(r#"{"version": 1, "chains": [{"name": "a", "modules": ["ok", "../../etc/x"]}]}"#);
        assert_eq!(e.path, "chains[0].modules[1]");
        assert!(e.message.contains("../../etc/x"), "{e}");
        let e = err(r#"{"version": 1, "chains": [{"name": "a", "modules": [{"name": "a/b"}]}]}"#);
        assert_eq!(e.path, "chains[0].modules[0].name");
        let e = err(r#"{"version": 1, "blocklist": ["fine", "x/y"]}"#);
        assert_eq!(e.path, "blocklist[1]");
        let e = err(r#"{"version": 1, "modules": {"a/b": {}}}"#);
        assert!(e.path.starts_with("modules"), "{e}");
        assert!(e.message.contains("a/b"), "{e}");
    }

    #[test]
    fn conflicting_params_name_module_and_both_places() {
        let e = err(r#"{"version": 1,
                "chains": [{"name": "a", "modules": [{"name": "virtio_blk", "params": "q=1"}]},
                           {"name": "b", "modules": [{"name": "virtio-blk", "params": "q=2"}]}]}"#);
        assert!(e.message.contains("virtio_blk"), "{e}");
        assert!(e.message.contains("chains[0].modules[0].params"), "{e}");
        assert!(e.message.contains("chains[1].modules[0].params"), "{e}");
        assert_eq!(e.path, "chains[1].modules[0].params");
        let e = err(r#"{"version": 1,
                "chains": [{"name": "a", "modules": [{"name": "x", "params": "q=1"}]}],
                "modules": {"x": {"params": "q=3"}}}"#);
        assert!(e.message.contains("modules.x.params"), "{e}");
        assert!(
            e.message.contains("\"q=1\"") && e.message.contains("\"q=3\""),
            "{e}"
        );
        // The same string twice, or params in one place only, is fine.
        Manifest::from_json(
            br#"{"version": 1,
                "chains": [{"name": "a", "modules": [{"name": "x", "params": "q=1"}, "y"]},
                           {"name": "b", "modules": ["x"]}],
                "modules": {"x": {"params": " q=1 "}, "y": {"params": "z=1"}}}"#,
        )
        .unwrap();
    }

    #[test]
    fn chain_name_checks() {
        let e = err(r#"{"version": 1, "chains": [{"name": "", "modules": []}]}"#);
        assert_eq!(e.path, "chains[0].name");
        assert!(e.message.contains("empty chain name"), "{e}");
        let e = err(
            r#"{"version": 1, "chains": [{"name": "a", "modules": []}, {"name": "b", "modules": []}, {"name": "a", "modules": []}]}"#,
        );
        assert_eq!(e.path, "chains[2].name");
        assert!(
            e.message.contains("\"a\"") && e.message.contains("chains[0]"),
            "{e}"
        );
        let e = err(r#"{"version": 1, "chains": [{"name": "a", "modules": ["x", "y", "x"]}]}"#);
        assert_eq!(e.path, "chains[0].modules[2]");
        assert!(e.message.contains("twice"), "{e}");
        let e = err(r#"{"version": 1, "chains": [{"name": "a"}]}"#);
        assert!(e.message.contains("modules"), "{e}");
    }

    #[test]
    fn duplicate_module_keys_after_normalising() {
        let e = err(
            r#"{"version": 1, "modules": {"virtio-blk": {}, "virtio_blk": {"params": "a=1"}}}"#,
        );
        assert!(
            e.message.contains("virtio_blk") && e.message.contains("twice"),
            "{e}"
        );
    }

    #[test]
    fn value_checks() {
        let e = err(r#"{"version": 1, "jobs": 100000}"#);
        assert_eq!(e.path, "jobs");
        let e = err(r#"{"version": 1, "init": {"path": "sbin/init"}}"#);
        assert_eq!(e.path, "init.path");
        let e = err(r#"{"version": 1, "root": {"device": ""}}"#);
        assert_eq!(e.path, "root.device");
        let e = err(r#"{"version": 1, "modules": {"x": {"params": "a\u0000b"}}}"#);
        assert!(e.message.contains("NUL"), "{e}");
        let e = err(r#"{"version": 1, "jobs": -1}"#);
        assert_eq!(e.path, "jobs");
    }

    #[test]
    fn oversized_manifest_is_refused() {
        let big = format!(
            r#"{{"version": 1, "blocklist": [{}"x"]}}"#,
            "\"x\",".repeat(300_000)
        );
        let e = Manifest::from_json(big.as_bytes()).unwrap_err();
        assert!(e.message.contains("1 MiB"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        for input in [
            &b"\xff\xfe"[..],
            b"null",
            b"[]",
            b"{\"version\": 1, \"chains\": {}}",
            b"{\"version\": 1e400}",
            b"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
        ] {
            assert!(Manifest::from_json(input).is_err());
        }
    }
}

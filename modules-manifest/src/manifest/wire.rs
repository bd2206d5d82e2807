//! The manifest's wire format: private types that serde fills, each
//! checking its value while serde still knows the line and column, then
//! converted into [`super::Manifest`].

use std::collections::BTreeMap;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) version: Version,
    #[serde(default)]
    pub(super) chains: Vec<RawChain>,
    #[serde(default)]
    pub(super) modules: ModulesTable,
    #[serde(default)]
    pub(super) blocklist: Vec<ModuleName>,
    #[serde(default)]
    pub(super) jobs: Jobs,
    #[serde(default)]
    pub(super) root: Option<RawRoot>,
    #[serde(default)]
    pub(super) init: Option<RawInit>,
    #[serde(default)]
    pub(super) on_failure: Option<OnFailure>,
    #[serde(default)]
    pub(super) deadline_ms: Option<u64>,
    #[serde(default)]
    pub(super) required_timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) softdeps: SoftdepsTable,
    #[serde(default)]
    pub(super) coldplug: Option<RawColdplug>,
    #[serde(default)]
    pub(super) measure: Option<RawMeasure>,
    #[serde(default)]
    pub(super) lock_modules: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeasure {
    #[serde(default)]
    pub(super) pcr: Pcr,
    #[serde(default)]
    pub(super) required: bool,
}

/// A PCR index, 0 to [`MAX_PCR`].
pub(super) struct Pcr(pub(super) u32);

impl Default for Pcr {
    fn default() -> Self {
        Pcr(DEFAULT_MEASURE_PCR)
    }
}

impl<'de> Deserialize<'de> for Pcr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(n) if n <= MAX_PCR => Ok(Pcr(n)),
            _ => Err(de::Error::custom(format!(
                "PCR {n}: expected 0 to {MAX_PCR}"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawColdplug {
    /// Given the object, coldplug is on unless it says otherwise.
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    #[serde(default)]
    pub(super) allow: Vec<ModuleGlob>,
    #[serde(default)]
    pub(super) deny: Vec<ModuleGlob>,
}

fn yes() -> bool {
    true
}

/// A glob over module names (fnmatch: `*`, `?`, `[…]`), one word of at
/// most 255 bytes with balanced brackets.
pub(super) struct ModuleGlob(pub(super) String);

impl<'de> Deserialize<'de> for ModuleGlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 255 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(de::Error::custom(format!(
                "module glob {s:?}: expected one word (no blanks, at most 255 bytes)"
            )));
        }
        if !brackets_balanced(&s) {
            return Err(de::Error::custom(format!(
                "module glob {s:?}: a '[' without its closing ']'"
            )));
        }
        Ok(ModuleGlob(s))
    }
}

/// True if every `[` of the glob has its `]` (fnmatch: a `]` right after
/// `[` or `[!` is a member, not the end).
fn brackets_balanced(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'[' {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'!' | b'^')) {
                j += 1;
            }
            if b.get(j) == Some(&b']') {
                j += 1;
            }
            match b[j.min(b.len())..].iter().position(|&c| c == b']') {
                Some(k) => i = j + k + 1,
                None => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoftdep {
    #[serde(default)]
    pub(super) pre: Vec<SoftdepName>,
    #[serde(default)]
    pub(super) post: Vec<SoftdepName>,
}

/// A softdep target: a module name or an alias (`crypto-crc32c`), one word
/// as in `modules.softdep`.
pub(super) struct SoftdepName(pub(super) String);

impl<'de> Deserialize<'de> for SoftdepName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 255 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(de::Error::custom(format!(
                "softdep name {s:?}: expected one module name or alias (no blanks, at most 255 bytes)"
            )));
        }
        Ok(SoftdepName(s))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChain {
    pub(super) name: ChainName,
    pub(super) modules: Vec<ChainEntry>,
    #[serde(default)]
    pub(super) required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry {
    pub(super) name: ModuleName,
    #[serde(default)]
    pub(super) params: Option<Params>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    #[serde(default)]
    pub(super) params: Option<Params>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoot {
    #[serde(default)]
    pub(super) device: Option<NonEmpty>,
    #[serde(default)]
    pub(super) fstype: Option<NonEmpty>,
    #[serde(default)]
    pub(super) flags: Option<NoNul>,
    #[serde(default)]
    pub(super) wait_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInit {
    #[serde(default = "default_init_path")]
    pub(super) path: InitPath,
    #[serde(default)]
    pub(super) args: Vec<NoNul>,
}

pub(super) fn default_init_path() -> InitPath {
    InitPath(InitSpec::default().path)
}

/// Each newtype below checks its value while serde still knows the line and
/// column, so the error carries them.
pub(super) struct Version(pub(super) u32);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v != 1 {
            return Err(de::Error::custom(format!(
                "unsupported manifest version {v}; this kmodinit reads version 1"
            )));
        }
        Ok(Version(v))
    }
}

#[derive(Default)]
pub(super) struct Jobs(pub(super) usize);

impl<'de> Deserialize<'de> for Jobs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = usize::deserialize(d)?;
        if v > MAX_JOBS {
            return Err(de::Error::custom(format!(
                "jobs = {v} is more than {MAX_JOBS}; use 0 for automatic"
            )));
        }
        Ok(Jobs(v))
    }
}

pub(super) struct ChainName(pub(super) String);

impl<'de> Deserialize<'de> for ChainName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_chain_name(&s).map_err(de::Error::custom)?;
        Ok(ChainName(s))
    }
}

/// Module parameters: no NUL (the kernel reads a C string); surrounding
/// whitespace trimmed; empty means none.
pub(super) struct Params(pub(super) String);

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains('\0') {
            return Err(de::Error::custom("parameters contain a NUL byte"));
        }
        Ok(Params(s.trim().to_owned()))
    }
}

pub(super) fn params_opt(p: Option<Params>) -> Option<String> {
    p.map(|p| p.0).filter(|p| !p.is_empty())
}

pub(super) struct NoNul(pub(super) String);

impl<'de> Deserialize<'de> for NoNul {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains('\0') {
            return Err(de::Error::custom("string contains a NUL byte"));
        }
        Ok(NoNul(s))
    }
}

pub(super) struct NonEmpty(pub(super) String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = NoNul::deserialize(d)?.0;
        if s.trim().is_empty() {
            return Err(de::Error::custom(
                "empty string; leave the field out instead",
            ));
        }
        Ok(NonEmpty(s))
    }
}

pub(super) struct InitPath(pub(super) String);

impl<'de> Deserialize<'de> for InitPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = NoNul::deserialize(d)?.0;
        if !s.starts_with('/') {
            return Err(de::Error::custom(format!(
                "init path {s:?} is not absolute"
            )));
        }
        Ok(InitPath(s))
    }
}

/// A chain entry is `"name"` or `{"name": …, "params": …}`. A hand-written
/// visitor instead of `#[serde(untagged)]`, so a wrong entry gets the real
/// reason (and path) instead of "did not match any variant".
impl<'de> Deserialize<'de> for ChainEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = ChainEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a module name or {\"name\": …, \"params\": …}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ChainEntry, E> {
                let name = ModuleName::new(v).map_err(E::custom)?;
                Ok(ChainEntry { name, params: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ChainEntry, A::Error> {
                let raw = RawEntry::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ChainEntry {
                    name: raw.name,
                    params: params_opt(raw.params),
                })
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// The `modules` object. Keys are normalised, so `virtio-blk` and
/// `virtio_blk` in one object are the same module: that is an error rather
/// than a silent overwrite.
#[derive(Default)]
pub(super) struct ModulesTable(pub(super) BTreeMap<ModuleName, ModuleSpec>);

impl<'de> Deserialize<'de> for ModulesTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = ModulesTable;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of module name → {\"params\": …}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModulesTable, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<ModuleName>()? {
                    let spec: RawSpec = map.next_value()?;
                    if out.contains_key(&name) {
                        return Err(de::Error::custom(format!(
                            "module {name} is listed twice (names are compared with '-' and '_' as the same)"
                        )));
                    }
                    out.insert(
                        name,
                        ModuleSpec {
                            params: params_opt(spec.params),
                        },
                    );
                }
                Ok(ModulesTable(out))
            }
        }
        d.deserialize_map(TableVisitor)
    }
}

/// The `softdeps` object; keys normalised like [`ModulesTable`]'s.
#[derive(Default)]
pub(super) struct SoftdepsTable(pub(super) BTreeMap<ModuleName, SoftdepSpec>);

impl<'de> Deserialize<'de> for SoftdepsTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = SoftdepsTable;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of module name → {\"pre\": [..], \"post\": [..]}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SoftdepsTable, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<ModuleName>()? {
                    let spec: RawSoftdep = map.next_value()?;
                    if out.contains_key(&name) {
                        return Err(de::Error::custom(format!(
                            "module {name} is listed twice (names are compared with '-' and '_' as the same)"
                        )));
                    }
                    let names = |v: Vec<SoftdepName>| v.into_iter().map(|n| n.0).collect();
                    out.insert(
                        name,
                        SoftdepSpec {
                            pre: names(spec.pre),
                            post: names(spec.post),
                        },
                    );
                }
                Ok(SoftdepsTable(out))
            }
        }
        d.deserialize_map(TableVisitor)
    }
}

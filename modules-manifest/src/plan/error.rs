//! [`PlanError`]: why a module, or the whole manifest, does not plan, with
//! messages that name the module and chain.

use serde::Serialize;

use super::render::reason_text;
use super::{EdgeKind, Reason};
use crate::manifest::ManifestError;
use crate::name::ModuleName;

/// Why a module, or the whole manifest, does not plan against the index. The
/// message ([`Display`](std::fmt::Display)) names the module and chain.
///
/// Only [`PlanError::Manifest`] concerns the whole manifest; every other
/// variant concerns the module(s) it names ([`PlanError::is_per_module`]):
/// [`plan()`](super::plan()) fails on either, [`plan_at_boot()`](super::plan_at_boot()) turns those into
/// [`Action::Unplannable`](super::Action::Unplannable) nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The manifest fails [`Manifest::check`](crate::Manifest::check) (a manifest built in code).
    Manifest(ManifestError),
    /// A chain entry that is neither a module, a builtin nor an alias.
    UnknownEntry {
        chain: String,
        position: usize,
        name: ModuleName,
    },
    /// A chain entry that is an alias of modules none of which the index
    /// has a file for (nor builtin, nor loaded).
    AliasWithoutFile {
        chain: String,
        position: usize,
        name: ModuleName,
        candidates: Vec<ModuleName>,
    },
    /// A chain entry that resolved to a module `modules.dep` has no line for.
    EntryNotInIndex {
        chain: String,
        position: usize,
        module: ModuleName,
    },
    /// One module given two parameter strings (also through an alias):
    /// `first` at JSON path `first_at`, `second` at `second_at`.
    ConflictingParams {
        module: ModuleName,
        first: String,
        first_at: String,
        second: String,
        second_at: String,
    },
    /// `module`'s `modules.dep` line lists `dependency`, which has no line
    /// of its own (is not in the module tree or the image).
    MissingDependency {
        module: ModuleName,
        dependency: ModuleName,
    },
    /// A module on the manifest's `blocklist` that `chain` needs (`None`:
    /// no chain could be named); `needed_as` says how it is reached.
    Blocklisted {
        module: ModuleName,
        chain: Option<String>,
        needed_as: Vec<Reason>,
    },
    /// `modules.dep` lists a module as its own dependency.
    SelfDependency { module: ModuleName },
    /// A module named on the command line (`kmodinit.load=`, `option`)
    /// that the index (the image) does not have.
    NotInImage { module: ModuleName, option: String },
    /// The manifest's `softdeps` names `module`, which the index does not
    /// know (`target: None`), or one of its `pre`/`post` names (`target`)
    /// that nothing in the index matches. [`plan()`](super::plan()) fails; [`plan_at_boot()`](super::plan_at_boot())
    /// only notes it (there is no module to fail).
    UnknownSoftdepOverride {
        module: ModuleName,
        target: Option<String>,
    },
    /// Chain order, dependencies and softdeps form a cycle: each link's
    /// `from` must finish before its `to`, and the last link's `to` is the
    /// first link's `from`. Empty when the cycle could not be traced.
    Cycle { links: Vec<CycleLink> },
}

/// One edge of a [`PlanError::Cycle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleLink {
    pub from: ModuleName,
    pub to: ModuleName,
    pub kind: EdgeKind,
    /// For [`EdgeKind::Chain`]: the chain that lists `to` after `from`.
    pub chain: Option<String>,
}

impl PlanError {
    /// True unless the error concerns the whole manifest: the modules it
    /// names ([`PlanError::modules`]) can fail alone at boot.
    pub fn is_per_module(&self) -> bool {
        !matches!(self, PlanError::Manifest(_))
    }

    /// The modules that cannot be planned because of this error: the
    /// unknown entry, the missing dependency (not its dependent), the
    /// module with two parameter strings, the blocklisted module, every
    /// module of a cycle. Empty for [`PlanError::Manifest`].
    pub fn modules(&self) -> Vec<ModuleName> {
        match self {
            PlanError::Manifest(_) => Vec::new(),
            PlanError::UnknownEntry { name, .. } | PlanError::AliasWithoutFile { name, .. } => {
                vec![name.clone()]
            }
            PlanError::EntryNotInIndex { module, .. }
            | PlanError::ConflictingParams { module, .. }
            | PlanError::Blocklisted { module, .. }
            | PlanError::SelfDependency { module }
            | PlanError::NotInImage { module, .. }
            | PlanError::UnknownSoftdepOverride { module, .. } => vec![module.clone()],
            PlanError::MissingDependency { dependency, .. } => vec![dependency.clone()],
            PlanError::Cycle { links } => links.iter().map(|l| l.from.clone()).collect(),
        }
    }
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Manifest(e) => write!(f, "{e}"),
            PlanError::UnknownEntry {
                chain,
                position,
                name,
            } => write!(
                f,
                "chain {chain:?} entry {position} ({name}): no such module or alias in \
                 modules.dep, modules.builtin or modules.alias"
            ),
            PlanError::AliasWithoutFile {
                chain,
                position,
                name,
                candidates,
            } => {
                let list: Vec<&str> = candidates.iter().map(ModuleName::as_str).collect();
                write!(
                    f,
                    "chain {chain:?} entry {position} ({name}): the alias matches {} but the \
                     index has no file for any of them",
                    list.join(", ")
                )
            }
            PlanError::EntryNotInIndex {
                chain,
                position,
                module,
            } => write!(
                f,
                "chain {chain:?} entry {position} ({module}): no such module in modules.dep"
            ),
            PlanError::ConflictingParams {
                module,
                first,
                first_at,
                second,
                second_at,
            } => write!(
                f,
                "module {module} has two different parameter strings: {first:?} at \
                 {first_at} and {second:?} at {second_at}; parameters belong to the module, \
                 declare them once"
            ),
            PlanError::MissingDependency { module, dependency } => write!(
                f,
                "module {module} depends on {dependency} (modules.dep), but {dependency} has \
                 no line of its own in modules.dep"
            ),
            PlanError::Blocklisted {
                module,
                chain,
                needed_as,
            } => {
                let why: Vec<String> = needed_as.iter().map(reason_text).collect();
                write!(
                    f,
                    "module {module} is on the manifest's blocklist, but chain {:?} needs it ({})",
                    chain.as_deref().unwrap_or("?"),
                    why.join(", ")
                )
            }
            PlanError::NotInImage { module, option } => write!(
                f,
                "{option}: {module} is not in the image (no such module or alias in its \
                 modules.dep, modules.builtin or modules.alias); the command line can only \
                 load modules the image holds: add it to the manifest and rebuild"
            ),
            PlanError::UnknownSoftdepOverride {
                module,
                target: None,
            } => write!(
                f,
                "manifest softdeps.{module}: no module {module} in modules.dep or \
                 modules.builtin: the override would never apply"
            ),
            PlanError::UnknownSoftdepOverride {
                module,
                target: Some(t),
            } => write!(
                f,
                "manifest softdeps.{module}: {t} matches no module or alias in the index"
            ),
            PlanError::SelfDependency { module } => write!(
                f,
                "dependency cycle: {module} → {module} (modules.dep lists {module} as its own \
                 dependency)"
            ),
            PlanError::Cycle { links } => {
                let Some(first) = links.first() else {
                    return f.write_str("dependency cycle");
                };
                let mut names: Vec<&str> = links.iter().map(|l| l.from.as_str()).collect();
                names.push(first.from.as_str());
                let why: Vec<String> = links
                    .iter()
                    .map(|l| {
                        let (fr, to) = (&l.from, &l.to);
                        match l.kind {
                            EdgeKind::Chain => format!(
                                "chain {:?} lists {to} after {fr}",
                                l.chain.as_deref().unwrap_or("?")
                            ),
                            EdgeKind::Softdep => format!("{to} has softdep pre: {fr}"),
                            EdgeKind::Dependency => format!("{to} needs {fr} (modules.dep)"),
                        }
                    })
                    .collect();
                write!(
                    f,
                    "dependency cycle: {} ({})",
                    names.join(" → "),
                    why.join("; ")
                )
            }
        }
    }
}

impl std::error::Error for PlanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlanError::Manifest(e) => Some(e),
            _ => None,
        }
    }
}

/// In a serialized plan an error is its message.
impl Serialize for PlanError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

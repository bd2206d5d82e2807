//! Serving one request: NAME → the image's index (aliases included) →
//! a plan of NAME and its dependencies → the loader, each module inserted
//! at most once across the boot's own load and every request
//! ([`Claims`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use modules_manifest::{
    Action, ChainEntry, ChainSpec, DepIndex, KernelCmdline, Manifest, ModuleName, Plan, PlanError,
    PlanInput,
};

use crate::kernel::Kernel;
use crate::loader::{self, LoaderOptions};
use crate::report::{LoadReport, ModuleState};

/// What became of a request (the helper's exit status follows modprobe's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded now, or already loaded or builtin: modprobe's 0.
    Loaded,
    /// Known to the image, but a module failed (the message says which).
    Failed(String),
    /// Neither a module nor an alias of one in the image.
    NotFound,
}

/// The chain name a request's modules carry (the report's reason
/// `kernel request:NAME`).
pub fn chain_name(request: &str) -> String {
    format!("kernel request:{request}")
}

/// `manifest` with its chains replaced by one optional chain holding
/// `request` (so its params, blocklist and softdep overrides apply).
fn request_manifest(manifest: &Manifest, request: &str) -> Result<Manifest, PlanError> {
    let entry = ModuleName::new(request).map_err(|e| {
        PlanError::Manifest(modules_manifest::ManifestError {
            path: String::new(),
            line: 0,
            column: 0,
            message: e.to_string(),
        })
    })?;
    let mut m = manifest.clone();
    m.chains = vec![ChainSpec {
        name: chain_name(request),
        modules: vec![ChainEntry {
            name: entry,
            params: None,
        }],
        required: false,
    }];
    Ok(m)
}

/// The plan of one request against `index`, with `loaded` (what
/// `/proc/modules` shows) satisfied. `None` if the image does not know
/// `request` at all.
pub fn plan_request(
    manifest: &Manifest,
    index: &DepIndex,
    request: &str,
    loaded: &BTreeSet<ModuleName>,
) -> Option<Plan> {
    if index.resolve(request).is_empty() {
        return None;
    }
    let m = request_manifest(manifest, request).ok()?;
    let cmdline = KernelCmdline::default();
    modules_manifest::plan_at_boot(PlanInput {
        manifest: &m,
        index,
        cmdline: &cmdline,
        loaded,
    })
    .ok()
}

/// The outcome of a request's load: loaded if the request's own chain
/// entry is in (its softdeps may fail: they block nothing).
pub fn outcome_of(plan: &Plan, load: &LoadReport) -> Outcome {
    let Some(chain) = plan.chains.first() else {
        return Outcome::NotFound;
    };
    for &id in &chain.nodes {
        let Some(m) = load.modules.get(id) else {
            return Outcome::Failed("no outcome".to_owned());
        };
        match m.state {
            ModuleState::Loaded | ModuleState::Already | ModuleState::Builtin => {}
            _ => {
                let why = m
                    .error
                    .clone()
                    .or_else(|| m.blocked_by.as_ref().map(|b| format!("blocked by {b}")))
                    .unwrap_or_else(|| format!("{:?}", m.state).to_lowercase());
                return Outcome::Failed(format!("{}: {why}", m.name));
            }
        }
    }
    Outcome::Loaded
}

/// One module's claim: who inserts it, and how it ended.
#[derive(Debug, Default)]
struct Slot {
    done: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Slot {
    fn finish(&self, ok: bool) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = Some(ok);
        self.cv.notify_all();
    }

    /// Blocks until the owner finished; true if the module is in.
    fn wait(&self) -> bool {
        let mut g = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(ok) = *g {
                return ok;
            }
            g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Who inserts which module: the single owner of "exactly once" between
/// the boot's load and the requests. Every module is claimed by the first
/// load that plans to insert it; a later load waits for that one's outcome
/// instead of inserting it again. Thread-safe; the map holds one entry per
/// module of the image at most.
#[derive(Debug, Default)]
pub struct Claims {
    slots: Mutex<HashMap<ModuleName, Arc<Slot>>>,
}

impl Claims {
    /// Claims `names` for the boot's own load (before it starts).
    pub fn claim_all<'a>(&self, names: impl IntoIterator<Item = &'a ModuleName>) {
        let mut s = self.lock();
        for n in names {
            s.entry(n.clone()).or_default();
        }
    }

    /// The boot's load decided `name`.
    pub fn finished(&self, name: &ModuleName, ok: bool) {
        let slot = self.lock().get(name).cloned();
        if let Some(slot) = slot {
            slot.finish(ok);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ModuleName, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves requests from an image: its manifest (params, blocklist), index
/// and module directory, inserting through `kernel`. Blocking, thread-safe:
/// requests run concurrently, each module inserted once ([`Claims`]).
#[derive(Debug)]
pub struct ImageLoads<'a, K: Kernel> {
    pub manifest: &'a Manifest,
    pub index: &'a DepIndex,
    pub kernel: &'a K,
    pub opts: LoaderOptions,
    pub claims: &'a Claims,
    /// What the kernel has loaded now (`/proc/modules`).
    pub loaded: fn() -> BTreeSet<ModuleName>,
}

impl<K: Kernel> ImageLoads<'_, K> {
    /// Loads `request` (already validated) and what it needs; the plan and
    /// load it ran, for the report (`None` if nothing was planned).
    pub fn serve(&self, request: &str) -> (Outcome, Option<(Plan, LoadReport)>) {
        let loaded = (self.loaded)();
        let Some(mut plan) = plan_request(self.manifest, self.index, request, &loaded) else {
            return (Outcome::NotFound, None);
        };
        // Claim what nobody claimed; remember whose outcome to wait for.
        let mine: Vec<(usize, Arc<Slot>)>;
        let mut theirs: Vec<(usize, Arc<Slot>)> = Vec::new();
        {
            let mut slots = self.claims.lock();
            let mut m = Vec::new();
            for node in &plan.nodes {
                if !matches!(node.action, Action::Insert { .. }) {
                    continue;
                }
                match slots.get(&node.name) {
                    Some(s) => theirs.push((node.id, Arc::clone(s))),
                    None => {
                        let s = Arc::new(Slot::default());
                        slots.insert(node.name.clone(), Arc::clone(&s));
                        m.push((node.id, s));
                    }
                }
            }
            mine = m;
        }
        for (id, slot) in &theirs {
            let ok = slot.wait();
            if let Some(node) = plan.nodes.get_mut(*id) {
                node.action = if ok {
                    Action::AlreadyLoaded
                } else {
                    Action::Unplannable {
                        error: PlanError::Manifest(modules_manifest::ManifestError {
                            path: String::new(),
                            line: 0,
                            column: 0,
                            message: format!("{} failed to load earlier in this boot", node.name),
                        }),
                    }
                };
            }
        }
        let load = loader::load(&plan, self.kernel, &self.opts);
        for (id, slot) in &mine {
            let ok = load
                .modules
                .get(*id)
                .is_some_and(|m| matches!(m.state, ModuleState::Loaded | ModuleState::Already));
            slot.finish(ok);
        }
        (outcome_of(&plan, &load), Some((plan, load)))
    }
}

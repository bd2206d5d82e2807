//! The open world: modules added to the load while it runs (coldplug
//! waves, the kernel's module requests), each loaded exactly once with the
//! boot plan's modules.
//!
//! The boot plan is one *session*; every later batch of names is another,
//! planned against the same index, manifest (params, blocklist, softdeps)
//! and command line, and loaded on its own pool, concurrently with the
//! others. Sessions share one [`Claims`] kernel: a module is inserted by
//! the first session that gets to it; a session that needs it later waits
//! for that insertion only (never for an unrelated module) and shares its
//! result, failure included. A module is announced to PID 1 once
//! ([`LoaderEvent::Added`], with its reason), by the session that first
//! planned it; a module of the boot plan or of an earlier session is not
//! announced again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use modules_manifest::{
    ChainEntry, ChainSpec, DepIndex, KernelCmdline, Manifest, ModuleName, Plan, PlanInput,
};

use crate::kernel::{Claims, SharedKernel};
use crate::loader::engine::{self as loader, LoadObserver, LoaderOptions, NodeOutcome};
use crate::report::ModuleState;
use crate::wire::events::{AddedModule, LoaderEvent};

/// Where the open world's events go (the loader child's pipe to PID 1; a
/// recorder in tests). Called from any thread; each call is one event.
pub type EventSink = Box<dyn Fn(&LoaderEvent) + Send + Sync>;

/// The most sessions that may run at once; a further one waits for a free
/// place (a flood of kernel requests cannot start threads without bound).
pub const MAX_SESSIONS: usize = 16;

/// One module a session is asked for, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub name: ModuleName,
    /// `modalias:ALIAS`, `kernel request:NAME`, …
    pub reason: String,
}

/// What became of one wanted module ([`OpenWorld::load`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WantOutcome {
    pub name: ModuleName,
    /// `loaded`, `already`, `builtin` (success) or `failed`, `blocked`,
    /// `skipped`; never `pending` (a session returns when it is done).
    pub state: ModuleState,
    /// Why it is not available, when it is not.
    pub error: Option<String>,
}

/// Why a session did not run at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The load phase is over ([`OpenWorld::close`]): nothing more loads.
    Closed,
    /// Nothing could be planned (a manifest the planner refuses).
    Plan(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Closed => f.write_str("the loader's load phase is over"),
            SessionError::Plan(e) => write!(f, "cannot plan: {e}"),
        }
    }
}

impl std::error::Error for SessionError {}

/// The handle on the loader child's open world. Cheap to clone, `Send` and
/// `Sync`: hand a clone to any thread (a socket server answering the
/// kernel's module helper, the coldplug loop).
#[derive(Clone)]
pub struct OpenWorld {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OpenWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenWorld").finish_non_exhaustive()
    }
}

/// What the sessions plan against: the boot's inputs.
#[derive(Debug)]
pub struct Inputs {
    pub index: DepIndex,
    pub manifest: Manifest,
    pub cmdline: KernelCmdline,
    /// `/proc/modules` when the loader started.
    pub loaded: BTreeSet<ModuleName>,
    pub opts: LoaderOptions,
}

impl Inputs {
    /// Why `name` must not be loaded by a session, if it must not: the
    /// manifest's `blocklist`, the command line's `modprobe.blacklist=` /
    /// `rd.driver.blacklist=`.
    fn blocked(&self, name: &ModuleName) -> Option<String> {
        if self.manifest.blocklist.contains(name) {
            Some("on the manifest's blocklist".to_owned())
        } else if self.cmdline.blacklist.contains(name) {
            Some("blacklisted on the kernel command line".to_owned())
        } else {
            None
        }
    }
}

struct Shared {
    kernel: Claims,
    inputs: Inputs,
    sink: EventSink,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Every module with a node in the event stream, and its id.
    known: HashMap<ModuleName, usize>,
    next_id: usize,
    /// Sessions running now.
    active: usize,
    closed: bool,
}

impl OpenWorld {
    /// The open world over `kernel`, planning with `inputs`, telling `sink`.
    pub fn new(kernel: SharedKernel, inputs: Inputs, sink: EventSink) -> Self {
        // The sessions' plans must not repeat the command line's own chains
        // (`kmodinit.load=`, `rd.driver.post=`): the boot plan has them, and
        // orders the post chain after everything else it loads.
        let mut inputs = inputs;
        inputs.cmdline.load.clear();
        inputs.cmdline.load_post.clear();
        OpenWorld {
            shared: Arc::new(Shared {
                kernel: Claims::new(kernel),
                inputs,
                sink,
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
            }),
        }
    }

    /// The kernel every load of this loader must insert through (the boot
    /// plan's included), so that each module is inserted once.
    pub fn kernel(&self) -> &Claims {
        &self.shared.kernel
    }

    /// The index the sessions plan with.
    pub fn index(&self) -> &DepIndex {
        &self.shared.inputs.index
    }

    /// Records the boot plan's modules as nodes `0..plan.nodes.len()`: they
    /// are announced by `planned`, never again. Call once, before the first
    /// session and before sending `planned`.
    pub fn register_boot_plan(&self, plan: &Plan) {
        let mut st = self.lock();
        for (id, node) in plan.nodes.iter().enumerate() {
            st.known.entry(node.name.clone()).or_insert(id);
        }
        st.next_id = st.next_id.max(plan.nodes.len());
    }

    /// Plans `wants` and loads them with what they need, blocking until
    /// every module of this session is decided. Each module not yet known
    /// is announced (`added`, with its reason) and its `started` and
    /// `finished` follow; a module another session (or the boot plan)
    /// inserts is waited for, not inserted again. Safe to call from many
    /// threads at once; at most [`MAX_SESSIONS`] run at a time. Returns
    /// one outcome per distinct wanted module, in the order given.
    pub fn load(&self, wants: Vec<Want>) -> Result<Vec<WantOutcome>, SessionError> {
        let _running = self.begin()?;
        let inputs = &self.shared.inputs;
        let mut out = Vec::new();
        let mut reasons: HashMap<ModuleName, String> = HashMap::new();
        let mut chains = Vec::new();
        for w in wants {
            if reasons.contains_key(&w.name) {
                continue;
            }
            if let Some(why) = inputs.blocked(&w.name) {
                out.push(WantOutcome {
                    name: w.name.clone(),
                    state: ModuleState::Skipped,
                    error: Some(why),
                });
                reasons.insert(w.name, w.reason);
                continue;
            }
            if inputs.loaded.contains(&w.name) {
                out.push(WantOutcome {
                    name: w.name.clone(),
                    state: ModuleState::Already,
                    error: None,
                });
                reasons.insert(w.name, w.reason);
                continue;
            }
            chains.push(ChainSpec {
                name: w.name.as_str().to_owned(),
                modules: vec![ChainEntry {
                    name: w.name.clone(),
                    params: None,
                }],
                required: false,
            });
            out.push(WantOutcome {
                name: w.name.clone(),
                state: ModuleState::Pending,
                error: None,
            });
            reasons.insert(w.name, w.reason);
        }
        if chains.is_empty() {
            return Ok(out);
        }
        let manifest = Manifest {
            chains,
            ..inputs.manifest.clone()
        };
        let plan = modules_manifest::plan_at_boot(PlanInput {
            manifest: &manifest,
            index: &inputs.index,
            cmdline: &inputs.cmdline,
            loaded: &inputs.loaded,
        })
        .map_err(|e| SessionError::Plan(e.to_string()))?;
        let ids = self.announce(&plan, &reasons);
        let mut observer = Forward {
            ids: &ids,
            sink: &self.shared.sink,
        };
        let report = loader::load_observed(&plan, &self.shared.kernel, &inputs.opts, &mut observer);
        for o in out.iter_mut().filter(|o| o.state == ModuleState::Pending) {
            match report.modules.iter().find(|m| m.name == o.name) {
                Some(m) => {
                    o.state = m.state;
                    o.error = (!m.state.is_satisfied())
                        .then(|| m.error.clone().unwrap_or_else(|| m.state.name().to_owned()));
                }
                None => {
                    o.state = ModuleState::Failed;
                    o.error = Some("not in the session's plan".to_owned());
                }
            }
        }
        Ok(out)
    }

    /// Resolves `names` (module names or aliases, as `modprobe NAME` does:
    /// a module of the index, a builtin, then every module an alias
    /// matches) and loads them as one session, each with `reason`. `Ok`
    /// when every name resolved and every module it means is available
    /// (loaded, already there or builtin); otherwise `Err` with one line
    /// per problem. Blocking; callable from any thread.
    pub fn request(&self, names: &[&str], reason: &str) -> Result<(), Vec<String>> {
        let index = &self.shared.inputs.index;
        let mut wants = Vec::new();
        let mut problems = Vec::new();
        for name in names {
            let found = index.resolve(name);
            if found.is_empty() {
                problems.push(format!(
                    "{name}: no module or alias of that name in the image"
                ));
            }
            for m in found {
                if !index.is_builtin(&m) {
                    wants.push(Want {
                        name: m,
                        reason: reason.to_owned(),
                    });
                }
            }
        }
        match self.load(wants) {
            Ok(outcomes) => problems.extend(outcomes.into_iter().filter_map(|o| {
                o.error
                    .filter(|_| !o.state.is_satisfied())
                    .map(|e| format!("{}: {e}", o.name))
            })),
            Err(e) => problems.push(e.to_string()),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Sends `text` as a note for the report.
    pub fn notice(&self, text: String) {
        (self.shared.sink)(&LoaderEvent::Notice(text));
    }

    /// Sessions running now.
    pub fn active(&self) -> usize {
        self.lock().active
    }

    /// Ends the load phase: later sessions get [`SessionError::Closed`];
    /// the running ones finish.
    pub fn close(&self) {
        self.lock().closed = true;
        self.shared.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a session in (waiting for a place); the guard counts it out.
    fn begin(&self) -> Result<Running<'_>, SessionError> {
        let st = self.lock();
        let mut st = self
            .shared
            .changed
            .wait_while(st, |s| !s.closed && s.active >= MAX_SESSIONS)
            .unwrap_or_else(PoisonError::into_inner);
        if st.closed {
            return Err(SessionError::Closed);
        }
        st.active += 1;
        Ok(Running(self))
    }

    /// Gives each new module of `plan` the next id and announces it; known
    /// modules map to `None` (their events come from their own session).
    /// Under the lock, so ids reach the stream in order.
    fn announce(&self, plan: &Plan, reasons: &HashMap<ModuleName, String>) -> Vec<Option<usize>> {
        let mut st = self.lock();
        plan.nodes
            .iter()
            .map(|node| {
                if st.known.contains_key(&node.name) {
                    return None;
                }
                let id = st.next_id;
                st.next_id += 1;
                st.known.insert(node.name.clone(), id);
                (self.shared.sink)(&LoaderEvent::Added(AddedModule {
                    id,
                    name: node.name.clone(),
                    params: node.params.clone(),
                    reason: reason_of(node, reasons),
                }));
                Some(id)
            })
            .collect()
    }
}

/// A running session; dropping it counts it out and wakes the waiters.
struct Running<'w>(&'w OpenWorld);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.lock().active -= 1;
        self.0.shared.changed.notify_all();
    }
}

/// Why `node` is in a session's plan: the wanted module's own reason, else
/// what pulled it in (`dependency of X`, `softdep of X`).
fn reason_of(node: &modules_manifest::PlanNode, reasons: &HashMap<ModuleName, String>) -> String {
    if let Some(r) = reasons.get(&node.name) {
        return r.clone();
    }
    node.reason().map(ToString::to_string).unwrap_or_default()
}

/// Forwards a session's events with its node ids turned into the stream's.
struct Forward<'a> {
    ids: &'a [Option<usize>],
    sink: &'a EventSink,
}

impl LoadObserver for Forward<'_> {
    fn started(&mut self, id: usize, t: f64) {
        if let Some(Some(id)) = self.ids.get(id) {
            (self.sink)(&LoaderEvent::Started { id: *id, t });
        }
    }
    fn finished(&mut self, outcome: &NodeOutcome) {
        if let Some(Some(id)) = self.ids.get(outcome.id) {
            (self.sink)(&LoaderEvent::Finished(NodeOutcome {
                id: *id,
                ..outcome.clone()
            }));
        }
    }
}

//! PID 1's side of the load. Module insertion runs in the loader child
//! ([`crate::pid1::loader_child`]), which streams [`LoaderEvent`]s to PID 1 over a
//! pipe; [`Supervisor`] turns those events, the child's exit and the clock
//! into one [`Verdict`]: wait, hand over, or stop. Pure: no syscalls, no
//! clock of its own (`now` is passed in), so every case is a unit test.
//!
//! The rules, with `t0` the start of the load phase:
//! - required chains hold the boot until each is decided, at most until
//!   `t0 + required_timeout`; one not decided by then is a failed required
//!   chain naming the module still inside the kernel;
//! - optional chains hold it at most until `t0 + deadline`; what is not
//!   decided then is `pending` in the handover report and keeps loading in
//!   the background;
//! - the child dying (panic, signal, exit) fails every undecided module with
//!   the cause; only a required chain it breaks stops the boot;
//! - only a child that cannot plan at all (unreadable index) stops the boot
//!   by itself ([`Verdict::Fatal`]).
//!
//! Over 500 lines (about 540 of code, the rest tests) because it is one
//! state machine: the event stream's types, their bounded decoding and the
//! rules above share the state they read, and split apart they would be
//! read together anyway.

use std::time::Duration;

use crate::report::{
    ChainFailure, LoadReport, LockReport, MeasureEvent, MeasureReport, ModuleReport, ModuleState,
};
use crate::wire::events::NodeOutcome;
pub use crate::wire::events::{AddedModule, LoadSummary, LoaderEvent, PlannedChain, PlannedModule};

/// How the loader child ended, from `waitpid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoaderExit {
    Exited(i32),
    /// Its pipe closed but its status cannot be had: the reporter, which
    /// is not the loader's parent, saw it end after the handover.
    Unknown,
    /// Killed by this signal (its name, e.g. `SIGKILL`).
    Signaled(String),
}

/// `exited with status N`, `killed by SIGNAL`, or (the reporter's view)
/// `ended; its status went to the real init`.
impl std::fmt::Display for LoaderExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoaderExit::Exited(code) => write!(f, "exited with status {code}"),
            LoaderExit::Signaled(sig) => write!(f, "killed by {sig}"),
            LoaderExit::Unknown => f.write_str("ended; its status went to the real init"),
        }
    }
}

/// What PID 1 should do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Wait for the next event, at most until `until` (boot time, s);
    /// `None`: until an event comes.
    Wait { until: Option<f64> },
    /// The load holds the boot no longer: hand over with this outcome.
    Proceed(Handover),
    /// Nothing could be planned: the boot stops (`on_failure`).
    Fatal { message: String, hints: Vec<String> },
}

/// The load as it stands at the handover.
#[derive(Debug, Clone, PartialEq)]
pub struct Handover {
    /// `None` when no plan was made (no required chain, loader gone or
    /// late): the boot goes on without modules.
    pub load: Option<LoadReport>,
    /// Modules not decided yet (reported `pending`); the loader child
    /// finishes them in the background.
    pub pending: usize,
    /// Peak memory of the loader child, if it said.
    pub loader_vm_hwm_kib: Option<u64>,
    /// What the report's notes should say about the load's end.
    pub notes: Vec<String>,
}

/// The plan as received, and what became of each node so far.
#[derive(Debug)]
struct Tracked {
    modules: Vec<ModuleReport>,
    required: Vec<bool>,
    chains: Vec<PlannedChain>,
    load_start: f64,
}

/// PID 1's state machine over the loader child. See the module docs.
#[derive(Debug)]
pub struct Supervisor {
    deadline: f64,
    required_timeout: f64,
    spawned: f64,
    any_required: bool,
    plan: Option<Tracked>,
    done: Option<LoadSummary>,
    /// After the handover: no deadline applies any more, only the end.
    to_the_end: bool,
    fatal: Option<(String, Vec<String>)>,
    panic: Option<String>,
    exit: Option<LoaderExit>,
    notes: Vec<String>,
    measure: Option<MeasureReport>,
    modules_locked: Option<LockReport>,
}

impl Supervisor {
    /// A supervisor for a child started at `spawned` (boot time, s).
    /// `any_required`: the manifest has a required chain (what PID 1 knows
    /// before the child has planned).
    pub fn new(
        deadline: Duration,
        required_timeout: Duration,
        spawned: f64,
        any_required: bool,
    ) -> Self {
        Supervisor {
            deadline: deadline.as_secs_f64(),
            required_timeout: required_timeout.as_secs_f64(),
            spawned,
            any_required,
            plan: None,
            done: None,
            to_the_end: false,
            fatal: None,
            panic: None,
            exit: None,
            notes: Vec::new(),
            measure: None,
            modules_locked: None,
        }
    }

    /// Takes one event of the child. Events that make no sense (a node
    /// that is not in the plan, a second plan) are noted and ignored.
    pub fn event(&mut self, e: LoaderEvent) {
        match e {
            LoaderEvent::Planned {
                modules,
                chains,
                notes,
                boottime_load_start,
            } if self.plan.is_none() => {
                self.notes
                    .extend(notes.into_iter().map(|n| format!("plan: {n}")));
                let required = modules.iter().map(|m| m.required).collect();
                let modules: Vec<ModuleReport> = modules
                    .into_iter()
                    .map(|m| ModuleReport {
                        name: m.name,
                        state: ModuleState::Pending,
                        params: m.params,
                        error: None,
                        blocked_by: None,
                        start: None,
                        end: None,
                        worker: None,
                        chains: m.chains,
                        warnings: m.warnings,
                        reason: m.reason,
                        alternative: m.alternative,
                    })
                    .collect();
                self.plan = Some(Tracked {
                    modules,
                    required,
                    chains,
                    load_start: boottime_load_start,
                });
            }
            LoaderEvent::Added(a) => self.add(a),
            LoaderEvent::Notice(text) => self.notes.push(text),
            LoaderEvent::Started { id, t } => match self.module_mut(id) {
                Some(m) if m.state == ModuleState::Pending => m.start = Some(t),
                _ => self.odd(format!("start of unknown or decided node {id}")),
            },
            LoaderEvent::Finished(o) => self.finish(o),
            LoaderEvent::Done(summary) => self.done = Some(summary),
            LoaderEvent::Fatal(f) => self.fatal = Some((f.to_string(), f.hints())),
            LoaderEvent::Panicked { message } => self.panic = Some(message),
            LoaderEvent::Planned { .. } => self.odd("a second plan".to_owned()),
            // A timeline stamp: the report's `steps`, no supervision matter
            // (`LoaderChild` keeps them).
            LoaderEvent::Step { .. } => {}
            LoaderEvent::MeasureStart {
                pcr,
                initial,
                error,
            } => {
                self.measure = Some(MeasureReport {
                    pcr,
                    bank: "sha256".to_owned(),
                    initial,
                    error,
                    ..MeasureReport::default()
                })
            }
            LoaderEvent::Extended { digest, what } => match self.measure.as_mut() {
                Some(m) => m.events.push(MeasureEvent { digest, what }),
                None => self.odd("an extend before measuring started".to_owned()),
            },
            LoaderEvent::MeasureEnd { value, error } => match self.measure.as_mut() {
                Some(m) => {
                    m.final_value = value;
                    m.error = error.or(m.error.take());
                }
                None => self.odd("a measurement's end before its start".to_owned()),
            },
            LoaderEvent::ModulesLocked { t, error } => {
                self.modules_locked = Some(LockReport { t, error })
            }
        }
    }

    /// Measured loading as the child told it so far.
    pub fn measure(&self) -> Option<&MeasureReport> {
        self.measure.as_ref()
    }

    /// When the child locked module loading, if it has.
    pub fn modules_locked(&self) -> Option<&LockReport> {
        self.modules_locked.as_ref()
    }

    /// A line of the stream that is not an event.
    pub fn garbled(&mut self, why: &str) {
        self.odd(format!("unreadable event: {why}"));
    }

    /// From now on (after the handover) wait for the loader's end only:
    /// every deadline is past, and what is left is to record the outcome.
    pub fn to_the_end(&mut self) {
        self.to_the_end = true;
    }

    /// The child has ended.
    pub fn exited(&mut self, exit: LoaderExit) {
        self.exit = Some(exit);
    }

    /// True once the child has ended (its exit was reported).
    pub fn has_exited(&self) -> bool {
        self.exit.is_some()
    }

    /// True once the child has said it cannot load (index, manifest, plan
    /// or measuring): it stops without loading the plan.
    pub fn is_fatal(&self) -> bool {
        self.fatal.is_some()
    }

    /// What to do at boot time `now`.
    pub fn verdict(&mut self, now: f64) -> Verdict {
        if let Some((message, hints)) = &self.fatal {
            return Verdict::Fatal {
                message: message.clone(),
                hints: hints.clone(),
            };
        }
        if let Some(summary) = self.done.clone() {
            let mut v = self.proceed(summary.boottime_load_end, Vec::new());
            if let Verdict::Proceed(Handover {
                load: Some(load),
                loader_vm_hwm_kib,
                ..
            }) = &mut v
            {
                load.jobs = summary.jobs;
                load.critical_path_s = summary.critical_path_s;
                load.critical_path = summary.critical_path;
                *loader_vm_hwm_kib = summary.vm_hwm_kib;
            }
            return v;
        }
        let cause = self.exit.as_ref().map(|e| self.death_cause(e));
        let Some(t) = self.plan.as_mut() else {
            return self.verdict_unplanned(now, cause);
        };
        if let Some(cause) = cause {
            // Died with work left: nobody will decide the rest.
            for m in t.modules.iter_mut() {
                if m.state == ModuleState::Pending {
                    m.state = ModuleState::Failed;
                    m.error = Some(match m.start {
                        // Its init may still have completed: the kernel
                        // finishes an init before the task dies.
                        Some(_) => format!(
                            "loader died during this insertion: {cause} (see /proc/modules whether it loaded)"
                        ),
                        None => format!("loader died: {cause}"),
                    });
                }
            }
            self.notes.push(format!("the loader died: {cause}"));
            return self.proceed(now, Vec::new());
        }
        if self.to_the_end {
            return Verdict::Wait { until: None };
        }
        let t0 = t.load_start;
        let open_required: Vec<usize> = t
            .chains
            .iter()
            .enumerate()
            .filter(|(_, c)| c.required && c.nodes.iter().any(|&i| t.is_pending(i)))
            .map(|(i, _)| i)
            .collect();
        if !open_required.is_empty() {
            let limit = t0 + self.required_timeout;
            if now < limit {
                return Verdict::Wait { until: Some(limit) };
            }
            let timed_out = open_required
                .iter()
                .filter_map(|&c| t.timeout_failure(&t.chains[c], self.required_timeout))
                .collect();
            return self.proceed(now, timed_out);
        }
        let limit = t0 + self.deadline;
        if now < limit {
            return Verdict::Wait { until: Some(limit) };
        }
        self.proceed(now, Vec::new())
    }

    fn verdict_unplanned(&mut self, now: f64, cause: Option<String>) -> Verdict {
        let why = match cause {
            Some(cause) => format!("the loader died before it planned: {cause}"),
            None => {
                let limit = self.spawned
                    + if self.any_required {
                        self.required_timeout
                    } else {
                        self.deadline
                    };
                if now < limit {
                    return Verdict::Wait { until: Some(limit) };
                }
                format!(
                    "the loader had not planned after {} ms",
                    ms(now - self.spawned)
                )
            }
        };
        if self.any_required {
            return Verdict::Fatal {
                message: why,
                hints: vec!["boot with kmodinit.debug to see how far the loader got".into()],
            };
        }
        self.notes
            .push(format!("{why}: no module loaded (no chain is required)"));
        Verdict::Proceed(Handover {
            load: None,
            pending: 0,
            loader_vm_hwm_kib: None,
            notes: std::mem::take(&mut self.notes),
        })
    }

    /// The report of a load that has not finished, at `now`.
    fn proceed(&mut self, now: f64, timed_out: Vec<ChainFailure>) -> Verdict {
        let notes = std::mem::take(&mut self.notes);
        let Some(t) = self.plan.as_ref() else {
            return Verdict::Proceed(Handover {
                load: None,
                pending: 0,
                loader_vm_hwm_kib: None,
                notes,
            });
        };
        let mut failed = ChainFailure::of_required(
            t.chains
                .iter()
                .filter(|c| c.required)
                .map(|c| (c.name.as_str(), c.nodes.as_slice())),
            &t.modules,
        );
        for f in timed_out {
            if !failed.iter().any(|g| g.chain == f.chain) {
                failed.push(f);
            }
        }
        let pending = t
            .modules
            .iter()
            .filter(|m| m.state == ModuleState::Pending)
            .count();
        let mut modules = t.modules.clone();
        crate::report::note_alternatives(&mut modules);
        Verdict::Proceed(Handover {
            load: Some(LoadReport {
                modules,
                jobs: 0,
                boottime_load_start: t.load_start,
                boottime_load_end: now,
                wall_s: (now - t.load_start).max(0.0),
                critical_path_s: 0.0,
                critical_path: Vec::new(),
                failed_required_chains: failed,
            }),
            pending,
            loader_vm_hwm_kib: None,
            notes,
        })
    }

    /// A module added after the plan: optional, in no chain, so its
    /// failure can break no required chain (coldplug, kernel requests).
    fn add(&mut self, a: AddedModule) {
        let Some(t) = self.plan.as_mut() else {
            return self.odd(format!("module {} added before the plan", a.name));
        };
        if a.id != t.modules.len() {
            let want = t.modules.len();
            return self.odd(format!(
                "module {} added as node {} (the next node is {want})",
                a.name, a.id
            ));
        }
        t.required.push(false);
        t.modules.push(ModuleReport {
            name: a.name,
            state: ModuleState::Pending,
            params: a.params,
            error: None,
            blocked_by: None,
            start: None,
            end: None,
            worker: None,
            chains: Vec::new(),
            warnings: Vec::new(),
            reason: a.reason,
            alternative: None,
        });
    }

    fn finish(&mut self, o: NodeOutcome) {
        let Some(t) = self.plan.as_mut() else {
            return self.odd(format!("outcome of node {} before the plan", o.id));
        };
        let Some(m) = t.modules.get_mut(o.id) else {
            return self.odd(format!("outcome of unknown node {}", o.id));
        };
        if m.state != ModuleState::Pending || o.state == ModuleState::Pending {
            return self.odd(format!("second outcome of node {}", o.id));
        }
        m.state = o.state;
        m.error = o.error;
        m.blocked_by = o.blocked_by;
        m.start = o.start.or(m.start);
        m.end = o.end;
        m.worker = o.worker;
    }

    fn module_mut(&mut self, id: usize) -> Option<&mut ModuleReport> {
        self.plan.as_mut().and_then(|t| t.modules.get_mut(id))
    }

    fn odd(&mut self, what: String) {
        log::warn!("loader stream: {what}; ignored");
        self.notes.push(format!("loader stream: {what}; ignored"));
    }

    fn death_cause(&self, exit: &LoaderExit) -> String {
        match (&self.panic, exit) {
            (Some(p), _) => format!("panic: {p}"),
            (None, exit) => exit.to_string(),
        }
    }
}

impl Tracked {
    fn is_pending(&self, id: usize) -> bool {
        self.modules
            .get(id)
            .is_some_and(|m| m.state == ModuleState::Pending)
    }

    /// A required chain still open at its timeout: names the module that
    /// holds it, preferably one inside the kernel. `None` if the chain is
    /// not open after all.
    fn timeout_failure(&self, chain: &PlannedChain, timeout: f64) -> Option<ChainFailure> {
        let first_open = chain
            .nodes
            .iter()
            .filter_map(|&i| self.modules.get(i))
            .find(|m| m.state == ModuleState::Pending)?;
        let in_kernel = self.modules.iter().enumerate().find(|(i, m)| {
            m.state == ModuleState::Pending && m.start.is_some() && self.required[*i]
        });
        let (module, error) = match in_kernel {
            Some((_, m)) => (
                m.name.clone(),
                format!(
                    "still inside the kernel after the required timeout of {} ms (since {} s)",
                    ms(timeout),
                    crate::clock::Fixed(m.start.unwrap_or(0.0), 3)
                ),
            ),
            None => (
                first_open.name.clone(),
                format!(
                    "not loaded within the required timeout of {} ms",
                    ms(timeout)
                ),
            ),
        };
        Some(ChainFailure {
            chain: chain.name.clone(),
            module,
            error,
        })
    }
}

/// Whole milliseconds of `s` seconds.
fn ms(s: f64) -> u64 {
    (s * 1e3).round().max(0.0) as u64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use modules_manifest::ModuleName;

    const D: Duration = Duration::from_secs(5);
    const R: Duration = Duration::from_secs(60);

    fn name(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    /// a → b in required chain "root", c optional in "extra", d optional.
    fn planned() -> LoaderEvent {
        let m = |n: &str, chain: &str, required: bool| PlannedModule {
            name: name(n),
            params: String::new(),
            chains: vec![chain.into()],
            required,
            warnings: Vec::new(),
            reason: format!("chain:{chain}"),
            alternative: None,
        };
        LoaderEvent::Planned {
            modules: vec![
                m("a", "root", true),
                m("b", "root", true),
                m("c", "extra", false),
                m("d", "extra", false),
            ],
            chains: vec![
                PlannedChain {
                    name: "root".into(),
                    required: true,
                    nodes: vec![0, 1],
                },
                PlannedChain {
                    name: "extra".into(),
                    required: false,
                    nodes: vec![2, 3],
                },
            ],
            notes: vec![],
            boottime_load_start: 10.0,
        }
    }

    fn fin(id: usize, state: ModuleState) -> LoaderEvent {
        LoaderEvent::Finished(NodeOutcome {
            id,
            state,
            error: (!state.is_satisfied()).then(|| "ENODEV".to_owned()),
            blocked_by: None,
            start: Some(10.1),
            end: Some(10.2),
            worker: Some(0),
        })
    }

    fn sup() -> Supervisor {
        let mut s = Supervisor::new(D, R, 9.9, true);
        s.event(planned());
        s
    }

    fn handover(v: Verdict) -> Handover {
        match v {
            Verdict::Proceed(h) => h,
            other => panic!("expected a handover, got {other:?}"),
        }
    }

    #[test]
    fn waits_for_required_then_for_the_deadline() {
        let mut s = sup();
        assert_eq!(s.verdict(10.5), Verdict::Wait { until: Some(70.0) });
        s.event(fin(0, ModuleState::Loaded));
        s.event(fin(1, ModuleState::Loaded));
        // Required done; optional c, d still open: wait up to t0 + 5 s.
        assert_eq!(s.verdict(11.0), Verdict::Wait { until: Some(15.0) });
        s.event(LoaderEvent::Started { id: 2, t: 11.0 });
        let h = handover(s.verdict(15.0));
        let load = h.load.unwrap();
        assert_eq!(h.pending, 2);
        assert_eq!(load.modules[2].state, ModuleState::Pending);
        assert_eq!(load.modules[2].start, Some(11.0));
        assert_eq!(load.modules[3].start, None);
        assert!(load.failed_required_chains.is_empty());
        assert_eq!(load.boottime_load_end, 15.0);
    }

    fn summary() -> LoaderEvent {
        LoaderEvent::Done(LoadSummary {
            jobs: 3,
            boottime_load_end: 11.0,
            critical_path_s: 0.5,
            critical_path: vec![name("a"), name("b")],
            vm_hwm_kib: Some(900),
        })
    }

    #[test]
    fn done_hands_over_with_the_loaders_totals() {
        let mut s = sup();
        for id in 0..4 {
            s.event(fin(id, ModuleState::Loaded));
        }
        s.event(summary());
        let h = handover(s.verdict(10.9));
        let load = h.load.unwrap();
        assert_eq!(load.jobs, 3);
        assert_eq!(load.boottime_load_end, 11.0);
        assert_eq!(load.wall_s, 1.0);
        assert_eq!(load.critical_path, [name("a"), name("b")]);
        assert_eq!(h.loader_vm_hwm_kib, Some(900));
        assert_eq!(h.pending, 0);
        assert!(load.modules.iter().all(|m| m.state == ModuleState::Loaded));
    }

    #[test]
    fn after_the_handover_only_the_end_counts() {
        let mut s = sup();
        s.event(fin(0, ModuleState::Loaded));
        s.event(fin(1, ModuleState::Loaded));
        s.event(LoaderEvent::Started { id: 2, t: 10.5 });
        assert_eq!(handover(s.verdict(15.0)).pending, 2);
        s.to_the_end();
        assert_eq!(s.verdict(500.0), Verdict::Wait { until: None });
        s.event(fin(2, ModuleState::Loaded));
        s.event(fin(3, ModuleState::Failed));
        s.event(summary());
        let h = handover(s.verdict(501.0));
        assert_eq!(h.pending, 0);
        let load = h.load.unwrap();
        assert_eq!(load.modules[2].state, ModuleState::Loaded);
        assert_eq!(load.modules[2].start, Some(10.1));
        assert_eq!(load.modules[3].state, ModuleState::Failed);
    }

    #[test]
    fn required_timeout_names_the_module_inside_the_kernel() {
        let mut s = sup();
        s.event(fin(0, ModuleState::Loaded));
        s.event(LoaderEvent::Started { id: 1, t: 10.3 });
        assert_eq!(s.verdict(69.9), Verdict::Wait { until: Some(70.0) });
        let load = handover(s.verdict(70.0)).load.unwrap();
        assert_eq!(load.failed_required_chains.len(), 1);
        let f = &load.failed_required_chains[0];
        assert_eq!((f.chain.as_str(), f.module.as_str()), ("root", "b"));
        assert!(f.error.contains("still inside the kernel"), "{}", f.error);
        assert!(f.error.contains("60000 ms"), "{}", f.error);
        assert_eq!(load.modules[1].state, ModuleState::Pending);
    }

    #[test]
    fn a_failed_required_chain_is_reported_at_the_handover() {
        let mut s = sup();
        s.event(fin(0, ModuleState::Failed));
        s.event(LoaderEvent::Finished(NodeOutcome {
            id: 1,
            state: ModuleState::Blocked,
            error: Some("needs a".into()),
            blocked_by: Some(name("a")),
            start: None,
            end: None,
            worker: None,
        }));
        s.event(fin(2, ModuleState::Loaded));
        s.event(fin(3, ModuleState::Loaded));
        let load = handover(s.verdict(15.0)).load.unwrap();
        let f = &load.failed_required_chains[0];
        assert_eq!((f.chain.as_str(), f.module.as_str()), ("root", "a"));
        assert_eq!(f.error, "ENODEV");
    }

    #[test]
    fn a_dead_loader_fails_what_is_undecided_with_the_cause() {
        let mut s = sup();
        s.event(fin(0, ModuleState::Loaded));
        s.event(LoaderEvent::Panicked {
            message: "injected fault".into(),
        });
        s.exited(LoaderExit::Signaled("SIGABRT".into()));
        let h = handover(s.verdict(10.5));
        let load = h.load.unwrap();
        assert_eq!(load.modules[0].state, ModuleState::Loaded);
        for m in &load.modules[1..] {
            assert_eq!(m.state, ModuleState::Failed);
            assert_eq!(
                m.error.as_deref(),
                Some("loader died: panic: injected fault")
            );
        }
        assert_eq!(load.failed_required_chains[0].module.as_str(), "b");
        assert!(h.notes.iter().any(|n| n.contains("the loader died")));

        let mut s = sup();
        s.event(LoaderEvent::Started { id: 0, t: 10.1 });
        s.exited(LoaderExit::Signaled("SIGKILL".into()));
        let load = handover(s.verdict(10.5)).load.unwrap();
        assert_eq!(
            load.modules[0].error.as_deref(),
            Some("loader died during this insertion: killed by SIGKILL (see /proc/modules whether it loaded)")
        );
        assert_eq!(
            load.modules[1].error.as_deref(),
            Some("loader died: killed by SIGKILL")
        );
    }

    #[test]
    fn before_the_plan() {
        // A required chain: wait up to the required timeout, then stop.
        let mut s = Supervisor::new(D, R, 1.0, true);
        assert_eq!(s.verdict(2.0), Verdict::Wait { until: Some(61.0) });
        assert!(matches!(s.verdict(61.0), Verdict::Fatal { .. }));
        // None: boot on without modules after the deadline.
        let mut s = Supervisor::new(D, R, 1.0, false);
        assert_eq!(s.verdict(2.0), Verdict::Wait { until: Some(6.0) });
        let h = handover(s.verdict(6.0));
        assert_eq!(h.load, None);
        assert!(h.notes[0].contains("had not planned"), "{:?}", h.notes);
        // Died before planning.
        let mut s = Supervisor::new(D, R, 1.0, true);
        s.exited(LoaderExit::Exited(3));
        match s.verdict(1.5) {
            Verdict::Fatal { message, .. } => {
                assert!(message.contains("exited with status 3"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fatal_from_the_child_stops_the_boot() {
        let mut s = Supervisor::new(D, R, 1.0, false);
        assert!(!s.is_fatal());
        s.event(LoaderEvent::Fatal(crate::wire::events::LoaderFailure {
            kind: crate::wire::events::FailureKind::Index,
            what: "/lib/modules/6.1.0-x/kmodinit.index".into(),
            message: "cannot use the module index".into(),
        }));
        assert!(s.is_fatal(), "the handover forks no reporter after this");
        assert_eq!(
            s.verdict(1.1),
            Verdict::Fatal {
                message: "cannot use the module index".into(),
                hints: vec![
                    "the image must hold lib/modules/$(uname -r)/kmodinit.index, written by kmodinit build for the running kernel release: was it built for this kernel, by the kmodinit of this /init?".into()
                ]
            }
        );
    }

    #[test]
    fn measuring_and_the_lock_are_kept_for_the_report() {
        let mut s = Supervisor::new(D, R, 1.0, false);
        assert!(s.measure().is_none() && s.modules_locked().is_none());
        // An extend before the start is odd, and noted.
        s.event(LoaderEvent::Extended {
            digest: "00".repeat(32),
            what: "manifest".into(),
        });
        s.event(LoaderEvent::MeasureStart {
            pcr: 9,
            initial: Some("00".repeat(32)),
            error: None,
        });
        for what in ["manifest", "module kmi_a"] {
            s.event(LoaderEvent::Extended {
                digest: "ab".repeat(32),
                what: what.into(),
            });
        }
        s.event(LoaderEvent::MeasureEnd {
            value: Some("cd".repeat(32)),
            error: None,
        });
        s.event(LoaderEvent::ModulesLocked {
            t: 3.5,
            error: None,
        });
        let m = s.measure().cloned().unwrap_or_default();
        assert_eq!((m.pcr, m.bank.as_str()), (9, "sha256"));
        assert_eq!(m.events.len(), 2);
        assert_eq!(m.events[1].what, "module kmi_a");
        assert_eq!(m.final_value, Some("cd".repeat(32)));
        assert_eq!(m.error, None);
        assert_eq!(s.modules_locked().map(|l| l.t), Some(3.5));
        // A later failure keeps the events and says why.
        s.event(LoaderEvent::MeasureEnd {
            value: None,
            error: Some("extending PCR 9 failed".into()),
        });
        let m = s.measure().cloned().unwrap_or_default();
        assert_eq!(m.events.len(), 2);
        assert_eq!(m.final_value, None);
        assert_eq!(m.error.as_deref(), Some("extending PCR 9 failed"));
        assert!(
            s.notes
                .iter()
                .any(|n| n.contains("an extend before measuring started")),
            "{:?}",
            s.notes
        );
    }

    #[test]
    fn added_modules_are_optional_and_follow_the_plan() {
        let mut s = sup();
        for id in 0..4 {
            s.event(fin(id, ModuleState::Loaded));
        }
        let added = |id: usize, n: &str| {
            LoaderEvent::Added(AddedModule {
                id,
                name: name(n),
                params: "x=1".into(),
                reason: format!("modalias:virtio:{n}"),
            })
        };
        s.event(added(4, "virtio_blk"));
        s.event(LoaderEvent::Notice("coldplug: kept out".into()));
        // Not the next id: noted, ignored.
        s.event(added(9, "stray"));
        s.event(added(5, "virtio_net"));
        s.event(LoaderEvent::Started { id: 4, t: 10.4 });
        // Added and pending: the boot waits for the deadline, not for the
        // required timeout.
        assert_eq!(s.verdict(11.0), Verdict::Wait { until: Some(15.0) });
        s.event(fin(4, ModuleState::Failed));
        let h = handover(s.verdict(15.0));
        assert_eq!(h.pending, 1);
        let load = h.load.unwrap();
        assert_eq!(load.modules.len(), 6);
        let blk = &load.modules[4];
        assert_eq!(
            (blk.name.as_str(), blk.state),
            ("virtio_blk", ModuleState::Failed)
        );
        assert_eq!(blk.reason, "modalias:virtio:virtio_blk");
        assert_eq!(blk.params, "x=1");
        assert!(blk.chains.is_empty());
        assert_eq!(load.modules[5].state, ModuleState::Pending);
        // An optional module's failure fails no required chain.
        assert!(load.failed_required_chains.is_empty());
        assert!(h.notes.iter().any(|n| n == "coldplug: kept out"));
        assert!(
            h.notes.iter().any(|n| n.contains("stray added as node 9")),
            "{:?}",
            h.notes
        );
    }

    #[test]
    fn odd_events_are_noted_not_obeyed() {
        let mut s = sup();
        s.event(fin(9, ModuleState::Loaded));
        s.event(fin(0, ModuleState::Loaded));
        s.event(fin(0, ModuleState::Failed));
        s.event(planned());
        s.garbled("expected value");
        s.event(fin(1, ModuleState::Loaded));
        s.event(fin(2, ModuleState::Loaded));
        s.event(fin(3, ModuleState::Loaded));
        let h = handover(s.verdict(15.0));
        assert_eq!(h.load.unwrap().modules[0].state, ModuleState::Loaded);
        assert_eq!(h.notes.len(), 4, "{:?}", h.notes);
    }
}

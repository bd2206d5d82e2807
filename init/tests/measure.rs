//! Measured loading against the fake kernel and a fake TPM: the extends
//! come in plan order whatever the pool's schedule, each module is
//! extended before it is inserted, insertions stay parallel, and a TPM
//! that fails stops what `required` says.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kmodinit_init::kernel::tpm::FakeTpm;
use kmodinit_init::kernel::{FakeKernel, InsertError, InsertRequest, Inserted, Kernel};
use kmodinit_init::loader::engine::{load, LoaderOptions};
use kmodinit_init::loader::measure::{planned_files, MeasuredKernel, Measurer};
use kmodinit_init::report::{LoadReport, ModuleState};
use kmodinit_init::wire::events::LoaderEvent;
use modules_manifest::measure::{extend, head_events, hex, module_events, sha256, Digest};
use modules_manifest::{KernelCmdline, ModuleName, Plan};

const PCR: u32 = 9;

/// A module tree in a temp dir: `kernel/NAME.ko` holding `NAME` repeated.
struct Tree(PathBuf);

impl Tree {
    fn new(plan: &Plan, tag: &str) -> Tree {
        let dir =
            std::env::temp_dir().join(format!("kmodinit-measure-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("kernel")).unwrap();
        for n in &plan.nodes {
            let body = n.name.as_str().repeat(1000);
            std::fs::write(dir.join(format!("kernel/{}.ko", n.name)), body).unwrap();
        }
        Tree(dir)
    }
    /// `None` for a file a test removed.
    fn digest(&self, name: &str) -> Option<Digest> {
        let bytes = std::fs::read(self.0.join(format!("kernel/{name}.ko"))).ok()?;
        Some(sha256(&bytes))
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fake kernel behind a check that the module's file digest is in
/// the TPM's extends when the insertion starts.
struct MustBeExtended {
    fake: FakeKernel,
    tpm: FakeTpm,
    digests: HashMap<ModuleName, Digest>,
    early: Mutex<Vec<String>>,
}

impl Kernel for MustBeExtended {
    fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
        let extended = self
            .tpm
            .extends()
            .iter()
            .any(|(_, d)| Some(d) == self.digests.get(req.name));
        if !extended {
            self.early.lock().unwrap().push(req.name.to_string());
        }
        self.fake.insert(req)
    }
}

type Events = Arc<Mutex<Vec<LoaderEvent>>>;

fn sink(events: &Events) -> Box<dyn Fn(&LoaderEvent) + Send + Sync> {
    let events = Arc::clone(events);
    Box::new(move |e| events.lock().unwrap().push(e.clone()))
}

/// A wide plan: three roots, chains on them, one shared dependency.
fn farm() -> Plan {
    let mut b = PlanBuilder::new();
    for r in 0..3 {
        b.module(&format!("root{r}"), &[]);
    }
    let mut chains = Vec::new();
    for c in 0..4 {
        let mut prev = format!("root{}", c % 3);
        let mut names = Vec::new();
        for j in 0..3 {
            let n = format!("c{c}m{j}");
            b.module(&n, &[prev.as_str()]);
            if j == 1 {
                b.params(&n, &format!("tag=c{c}"));
            }
            names.push(n.clone());
            prev = n;
        }
        chains.push(names);
    }
    for (i, names) in chains.iter().enumerate() {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        b.chain(&format!("ch{i}"), i == 0, &refs);
    }
    b.build()
}

struct Outcome {
    report: LoadReport,
    extends: Vec<Digest>,
    events: Vec<LoaderEvent>,
    early: Vec<String>,
    max_concurrent: usize,
    final_value: Option<Digest>,
}

fn run(
    plan: &Plan,
    tree: &Tree,
    kernel: FakeKernel,
    tpm: FakeTpm,
    required: bool,
    jobs: usize,
) -> Outcome {
    let events: Events = Arc::default();
    let files = planned_files(plan, &tree.0);
    let measurer = Arc::new(
        Measurer::start(Box::new(tpm.clone()), PCR, required, &files, sink(&events)).unwrap(),
    );
    let head = head_events(b"{\"version\": 1}", &KernelCmdline::parse("c0m1.x=1")).to_vec();
    let digests = plan
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.clone(), tree.digest(n.name.as_str())?)))
        .collect();
    let checking = MustBeExtended {
        fake: kernel,
        tpm: tpm.clone(),
        digests,
        early: Mutex::default(),
    };
    let k = MeasuredKernel {
        inner: checking,
        measurer: Some(Arc::clone(&measurer)),
    };
    let opts = LoaderOptions {
        modules_dir: tree.0.clone(),
        jobs,
        ..LoaderOptions::default()
    };
    let (report, final_value) = std::thread::scope(|s| {
        let m = s.spawn(|| measurer.measure_plan(&head, &files, &|p| std::fs::File::open(p)));
        let r = load(plan, &k, &opts);
        (r, m.join().unwrap())
    });
    Outcome {
        report,
        extends: tpm
            .extends()
            .into_iter()
            .map(|(p, d)| {
                assert_eq!(p, PCR);
                d
            })
            .collect(),
        events: {
            let e = events.lock().unwrap().clone();
            e
        },
        early: {
            let e = k.inner.early.lock().unwrap().clone();
            e
        },
        max_concurrent: k.inner.fake.max_concurrent(),
        final_value,
    }
}

/// What a verifier computes: head events, then each planned module's
/// events, in plan order.
fn expected(plan: &Plan, tree: &Tree) -> Vec<Digest> {
    let mut out: Vec<Digest> = head_events(b"{\"version\": 1}", &KernelCmdline::parse("c0m1.x=1"))
        .iter()
        .map(|e| e.digest)
        .collect();
    for f in planned_files(plan, &tree.0) {
        let d = sha256(&std::fs::read(&f.path).unwrap());
        out.extend(
            module_events(&f.name, d, &f.params)
                .iter()
                .map(|e| e.digest),
        );
    }
    out
}

#[test]
fn extends_follow_the_plan_whatever_the_schedule_and_insertions_stay_parallel() {
    let plan = farm();
    let tree = Tree::new(&plan, "order");
    let want = expected(&plan, &tree);
    let start = [0x5a; 32];
    let mut finals = Vec::new();
    // Different delays give different completion orders, and so different
    // schedules of the pool.
    for (round, jobs) in [(0u64, 1usize), (1, 4), (2, 8), (3, 16)] {
        let mut k = FakeKernel::new().default_delay(Duration::from_millis(2));
        for (i, n) in plan.nodes.iter().enumerate() {
            let ms = (i as u64 * 7 + round * 5) % 11;
            k = k.delay(n.name.as_str(), Duration::from_millis(ms));
        }
        let tpm = FakeTpm::new();
        tpm.set(PCR, start);
        let o = run(&plan, &tree, k, tpm, true, jobs);
        assert!(
            o.report
                .modules
                .iter()
                .all(|m| m.state == ModuleState::Loaded),
            "{:?}",
            o.report.modules
        );
        assert_eq!(o.extends, want, "round {round}: extends out of plan order");
        assert!(
            o.early.is_empty(),
            "inserted before being extended: {:?}",
            o.early
        );
        if jobs >= 4 {
            assert!(
                o.max_concurrent > 1,
                "jobs={jobs}: insertions did not overlap"
            );
        }
        // The events replay from the initial value to the value read.
        let replayed = o.extends.iter().fold(start, |p, d| extend(&p, d));
        assert_eq!(o.final_value, Some(replayed));
        let LoaderEvent::MeasureStart { initial, .. } = &o.events[0] else {
            panic!("first event {:?}", o.events[0]);
        };
        assert_eq!(initial.as_deref(), Some(hex(&start).as_str()));
        assert!(o.events.iter().any(
            |e| matches!(e, LoaderEvent::Extended { what, .. } if what == "params c0m1: tag=c0")
        ));
        finals.push(o.final_value);
    }
    finals.dedup();
    assert_eq!(finals.len(), 1, "the same PCR value on every run");
}

#[test]
fn a_module_the_plan_does_not_have_is_extended_after_the_plans() {
    let plan = farm();
    let tree = Tree::new(&plan, "late");
    std::fs::write(tree.0.join("kernel/late.ko"), b"late module").unwrap();
    let tpm = FakeTpm::new();
    let events: Events = Arc::default();
    let files = planned_files(&plan, &tree.0);
    let m = Measurer::start(Box::new(tpm.clone()), PCR, true, &files, sink(&events)).unwrap();
    let late = ModuleName::new("late").unwrap();
    let path = &tree.0.join("kernel/late.ko");
    let (m, late) = (&m, &late);
    std::thread::scope(|s| {
        // Asked for before the plan is measured: it waits for the plan.
        let waiting = s.spawn(move || m.admit(late, path, "x=1", || std::fs::File::open(path)));
        std::thread::sleep(Duration::from_millis(20));
        m.measure_plan(&[], &files, &|p| std::fs::File::open(p));
        waiting.join().unwrap().unwrap();
    });
    let all: Vec<Digest> = tpm.extends().into_iter().map(|(_, d)| d).collect();
    assert_eq!(all[all.len() - 2], sha256(b"late module"));
    assert_eq!(all[all.len() - 1], sha256(b"x=1"));
    assert_eq!(all.len(), expected(&plan, &tree).len() - 2 + 2);
    // The value told last is the TPM's after the late extends.
    let last = events.lock().unwrap().iter().rev().find_map(|e| match e {
        LoaderEvent::MeasureEnd { value, .. } => value.clone(),
        _ => None,
    });
    let mut t = tpm.clone();
    assert_eq!(
        last,
        Some(hex(
            &kmodinit_init::kernel::tpm::Tpm::read(&mut t, PCR).unwrap()
        ))
    );
}

#[test]
fn a_failing_tpm_lets_nothing_load_unmeasured_when_required() {
    let plan = farm();
    let tree = Tree::new(&plan, "fail");
    for required in [true, false] {
        let tpm = FakeTpm::new();
        // The head (2) and the three roots (3) go in; then it fails.
        tpm.fail_after(5);
        let o = run(&plan, &tree, FakeKernel::new(), tpm, required, 4);
        let loaded: Vec<&str> = o
            .report
            .modules
            .iter()
            .filter(|m| m.state == ModuleState::Loaded)
            .map(|m| m.name.as_str())
            .collect();
        if required {
            assert_eq!(loaded, ["root0", "root1", "root2"], "required");
            let m = o.report.module("c0m0").unwrap();
            assert_eq!(m.state, ModuleState::Failed);
            assert!(
                m.error
                    .as_deref()
                    .unwrap()
                    .contains("not loaded unmeasured"),
                "{:?}",
                m.error
            );
        } else {
            assert_eq!(loaded.len(), plan.nodes.len(), "not required: all load");
        }
        assert_eq!(o.final_value, None);
        assert!(o.events.iter().any(|e| matches!(e, LoaderEvent::MeasureEnd { error: Some(why), .. } if why.contains("failed"))));
    }
}

#[test]
fn an_unreadable_module_file_fails_that_module_only() {
    let plan = farm();
    let tree = Tree::new(&plan, "unreadable");
    std::fs::remove_file(tree.0.join("kernel/c1m2.ko")).unwrap();
    let o = run(&plan, &tree, FakeKernel::new(), FakeTpm::new(), true, 4);
    let m = o.report.module("c1m2").unwrap();
    assert_eq!(m.state, ModuleState::Failed);
    assert!(
        m.error.as_deref().unwrap().contains("c1m2.ko"),
        "{:?}",
        m.error
    );
    assert!(
        o.report
            .modules
            .iter()
            .filter(|m| m.state == ModuleState::Loaded)
            .count()
            == plan.nodes.len() - 1
    );
}

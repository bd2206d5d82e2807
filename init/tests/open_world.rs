//! The open world against the fake kernel: sessions added while the boot
//! plan loads, each module inserted exactly once whoever asks, failures
//! shared, and every event accepted by PID 1's supervisor.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmodinit_init::kernel::{FakeKernel, FakeOutcome};
use kmodinit_init::loader::engine::{self as loader, LoaderOptions};
use kmodinit_init::loader::open_world::{Inputs, OpenWorld, Want};
use kmodinit_init::pid1::supervise::{Supervisor, Verdict};
use kmodinit_init::report::ModuleState;
use kmodinit_init::wire::events::{encode, EventReader, LoaderEvent};
use modules_manifest::{DepIndex, KernelCmdline, Manifest, ModuleName, PlanInput};

/// m0..m39: m_i depends on m_(i-1) and m_(i-7) when they exist (a dense,
/// overlapping graph); `bad` fails; `needs_bad` depends on it; `hang` is
/// slow; `free` stands alone. Aliases `dev:N` for m_N.
fn index() -> DepIndex {
    let mut dep = String::new();
    let mut alias = String::new();
    for i in 0..40 {
        let mut deps = Vec::new();
        if i >= 1 {
            deps.push(format!("kernel/m{}.ko", i - 1));
        }
        if i >= 7 {
            deps.push(format!("kernel/m{}.ko", i - 7));
        }
        dep.push_str(&format!("kernel/m{i}.ko: {}\n", deps.join(" ")));
        alias.push_str(&format!("alias dev:{i} m{i}\n"));
    }
    dep.push_str("kernel/bad.ko:\nkernel/needs_bad.ko: kernel/bad.ko\n");
    dep.push_str("kernel/hang.ko:\nkernel/free.ko:\n");
    DepIndex::parse(&dep, "", "", &alias).unwrap()
}

fn manifest(json: &str) -> Manifest {
    Manifest::from_json(json.as_bytes()).unwrap()
}

fn n(s: &str) -> ModuleName {
    ModuleName::new(s).unwrap()
}

fn want(s: &str, why: &str) -> Want {
    Want {
        name: n(s),
        reason: why.to_owned(),
    }
}

/// The world over `kernel` with the boot plan of `manifest_json`, its
/// events recorded as the bytes the child would write.
struct Setup {
    world: OpenWorld,
    plan: modules_manifest::Plan,
    opts: LoaderOptions,
    stream: Arc<Mutex<Vec<u8>>>,
}

fn setup(kernel: Arc<FakeKernel>, manifest_json: &str) -> Setup {
    setup_with_cmdline(kernel, manifest_json, "")
}

/// [`setup`] with a kernel command line.
fn setup_with_cmdline(kernel: Arc<FakeKernel>, manifest_json: &str, cmdline: &str) -> Setup {
    let idx = index();
    let m = manifest(manifest_json);
    let cmdline = KernelCmdline::parse(cmdline);
    let loaded = BTreeSet::new();
    let plan = modules_manifest::plan_at_boot(PlanInput {
        manifest: &m,
        index: &idx,
        cmdline: &cmdline,
        loaded: &loaded,
    })
    .unwrap();
    let opts = LoaderOptions {
        modules_dir: "/lib/modules/test".into(),
        jobs: 4,
        ..LoaderOptions::default()
    };
    let stream = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&stream);
    let world = OpenWorld::new(
        Box::new(kernel),
        Inputs {
            index: idx,
            manifest: m,
            cmdline,
            loaded,
            opts: opts.clone(),
        },
        Box::new(move |e| sink.lock().unwrap().extend(encode(e))),
    );
    world.register_boot_plan(&plan);
    Setup {
        world,
        plan,
        opts,
        stream,
    }
}

/// The boot plan's events into the stream, as the child's streamer does.
struct ToStream(Arc<Mutex<Vec<u8>>>);

impl loader::LoadObserver for ToStream {
    fn started(&mut self, id: usize, t: f64) {
        self.0
            .lock()
            .unwrap()
            .extend(encode(&LoaderEvent::Started { id, t }));
    }
    fn finished(&mut self, o: &loader::NodeOutcome) {
        self.0
            .lock()
            .unwrap()
            .extend(encode(&LoaderEvent::Finished(o.clone())));
    }
}

/// The boot plan's `planned` event (as the child sends it), then `stream`,
/// fed to a supervisor: every event must be accepted, none noted as odd.
fn supervise(s: &Setup, done: bool) -> kmodinit_init::pid1::supervise::Handover {
    let mut bytes = Vec::new();
    bytes.extend(encode(&LoaderEvent::Planned {
        modules: s
            .plan
            .nodes
            .iter()
            .map(|n| kmodinit_init::wire::events::PlannedModule {
                name: n.name.clone(),
                params: n.params.clone(),
                chains: Vec::new(),
                required: n.required,
                warnings: Vec::new(),
                reason: n.reason().map(ToString::to_string).unwrap_or_default(),
                alternative: None,
            })
            .collect(),
        chains: Vec::new(),
        notes: Vec::new(),
        boottime_load_start: 1.0,
    }));
    bytes.extend(s.stream.lock().unwrap().iter());
    if done {
        bytes.extend(encode(&LoaderEvent::Done(
            kmodinit_init::wire::events::LoadSummary {
                jobs: 1,
                boottime_load_end: 2.0,
                critical_path_s: 0.0,
                critical_path: Vec::new(),
                vm_hwm_kib: None,
            },
        )));
    }
    let mut sup = Supervisor::new(Duration::from_secs(5), Duration::from_secs(60), 0.5, false);
    for e in EventReader::default().feed(&bytes) {
        sup.event(e.unwrap());
    }
    match sup.verdict(1.5) {
        Verdict::Proceed(h) => {
            assert!(
                h.notes.iter().all(|n| !n.contains("loader stream")),
                "{:?}",
                h.notes
            );
            h
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn overlapping_sessions_insert_each_module_once_and_announce_it_once() {
    let k = Arc::new(FakeKernel::new().default_delay(Duration::from_micros(200)));
    let s = setup(
        Arc::clone(&k),
        r#"{"version": 1, "chains": [{"name": "boot", "modules": ["m20"]}]}"#,
    );
    std::thread::scope(|scope| {
        let world = &s.world;
        let boot = scope.spawn(|| {
            let mut to_stream = ToStream(Arc::clone(&s.stream));
            loader::load_observed(&s.plan, world.kernel(), &s.opts, &mut to_stream)
        });
        let sessions: Vec<_> = (0..12)
            .map(|t| {
                scope.spawn(move || {
                    let wants = (0..6)
                        .map(|j| want(&format!("m{}", (t * 5 + j * 3) % 40), &format!("test:{t}")))
                        .collect();
                    world.load(wants).unwrap()
                })
            })
            .collect();
        for h in sessions {
            for o in h.join().unwrap() {
                assert!(o.state.is_satisfied() && o.error.is_none(), "{o:?}");
            }
        }
        let boot = boot.join().unwrap();
        assert!(boot.modules.iter().all(|m| m.state.is_satisfied()));
    });
    assert!(k.duplicates().is_empty(), "{:?}", k.duplicates());
    let h = supervise(&s, true);
    let load = h.load.unwrap();
    // Every module appears once in the report, decided, and the added
    // ones carry a reason.
    let mut names = BTreeSet::new();
    for m in &load.modules {
        assert!(names.insert(m.name.clone()), "{} twice", m.name);
        assert!(m.state.is_satisfied(), "{m:?}");
    }
    for m in &load.modules[s.plan.nodes.len()..] {
        assert!(
            m.reason.starts_with("test:") || m.reason.starts_with("dependency of m"),
            "{m:?}"
        );
    }
    // Every module the kernel saw is in the report, and only once there.
    for c in k.calls() {
        assert!(names.contains(&c.name), "{}", c.name);
    }
}

#[test]
fn a_failure_is_shared_by_every_requester() {
    let k = Arc::new(
        FakeKernel::new()
            .outcome("bad", FakeOutcome::Fail(libc::ENODEV))
            .delay("bad", Duration::from_millis(20)),
    );
    let s = setup(Arc::clone(&k), r#"{"version": 1}"#);
    let results: Vec<_> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let w = &s.world;
                scope.spawn(move || {
                    let which = if i % 2 == 0 { "bad" } else { "needs_bad" };
                    (
                        which,
                        w.load(vec![want(which, "kernel request:x")]).unwrap(),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(k.call_count("bad"), 1);
    assert_eq!(k.call_count("needs_bad"), 0);
    for (which, out) in results {
        let o = &out[0];
        if which == "bad" {
            assert_eq!(o.state, ModuleState::Failed, "{o:?}");
            assert!(o.error.as_deref().unwrap().contains("ENODEV"), "{o:?}");
        } else {
            assert_eq!(o.state, ModuleState::Blocked, "{o:?}");
        }
    }
    let load = supervise(&s, true).load.unwrap();
    let bad: Vec<_> = load.modules.iter().filter(|m| m.name == n("bad")).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].state, ModuleState::Failed);
    // Optional: nothing required failed.
    assert!(load.failed_required_chains.is_empty());
}

#[test]
fn a_session_does_not_wait_for_an_unrelated_hung_module() {
    // `hang` will not return until `free` has started: if the second
    // session waited for the first, `hang` would time out and fail.
    let k = Arc::new(
        FakeKernel::new()
            .wait_for_start("hang", "free")
            .gate_timeout(Duration::from_secs(20)),
    );
    let s = setup(Arc::clone(&k), r#"{"version": 1}"#);
    std::thread::scope(|scope| {
        let w = &s.world;
        let slow = scope.spawn(move || w.load(vec![want("hang", "modalias:dev:h")]).unwrap());
        // Start the second only once `hang` is inside the (fake) kernel.
        while k.max_concurrent() == 0 {
            std::thread::yield_now();
        }
        let fast = w.load(vec![want("free", "modalias:dev:f")]).unwrap();
        assert_eq!(fast[0].state, ModuleState::Loaded);
        assert_eq!(slow.join().unwrap()[0].state, ModuleState::Loaded);
    });
}

#[test]
fn requests_resolve_aliases_and_say_what_is_missing() {
    let k = Arc::new(FakeKernel::new());
    let s = setup(Arc::clone(&k), r#"{"version": 1}"#);
    s.world.request(&["dev:3"], "kernel request:dev:3").unwrap();
    assert_eq!(k.call_count("m3"), 1);
    assert_eq!(k.call_count("m0"), 1);
    let e = s
        .world
        .request(&["nothing-here"], "kernel request:nothing-here");
    assert!(e.unwrap_err()[0].contains("no module or alias"));
    // Again: already inserted, not inserted twice.
    s.world.request(&["m3"], "kernel request:m3").unwrap();
    assert_eq!(k.call_count("m3"), 1);
    let load = supervise(&s, true).load.unwrap();
    let m3 = load.modules.iter().find(|m| m.name == n("m3")).unwrap();
    assert_eq!(m3.reason, "kernel request:dev:3");
    let m0 = load.modules.iter().find(|m| m.name == n("m0")).unwrap();
    assert_eq!(m0.reason, "dependency of m1");
    s.world.close();
    assert!(s.world.load(vec![want("free", "x")]).is_err());
}

#[test]
fn sessions_do_not_repeat_the_command_lines_chains() {
    // The boot plan has kmodinit.load= and rd.driver.post= modules (the
    // post one ordered after everything the boot loads); a session loads
    // only what it was asked for.
    let k = Arc::new(FakeKernel::new());
    let s = setup_with_cmdline(
        Arc::clone(&k),
        r#"{"version": 1}"#,
        "kmodinit.load=hang rd.driver.post=free",
    );
    assert!(s.plan.node(&n("free")).is_some() && s.plan.node(&n("hang")).is_some());
    s.world.request(&["m3"], "kernel request:m3").unwrap();
    assert_eq!(k.call_count("m3"), 1);
    assert_eq!(
        k.call_count("free"),
        0,
        "rd.driver.post= module in a session"
    );
    assert_eq!(
        k.call_count("hang"),
        0,
        "kmodinit.load= module in a session"
    );
}

#[test]
fn blocklisted_modules_are_skipped_not_planned() {
    let k = Arc::new(FakeKernel::new());
    let s = setup(Arc::clone(&k), r#"{"version": 1, "blocklist": ["free"]}"#);
    let out = s.world.load(vec![want("free", "modalias:dev:f")]).unwrap();
    assert_eq!(out[0].state, ModuleState::Skipped);
    assert!(out[0].error.as_deref().unwrap().contains("blocklist"));
    assert_eq!(k.call_count("free"), 0);
}

#[test]
fn stress_many_threads_many_sessions() {
    for round in 0..5 {
        let k = Arc::new(FakeKernel::new());
        let s = setup(
            Arc::clone(&k),
            r#"{"version": 1, "chains": [{"name": "boot", "modules": ["m39", "needs_bad"]}]}"#,
        );
        let k2 = Arc::clone(&k);
        std::thread::scope(|scope| {
            let world = &s.world;
            scope.spawn(|| {
                let mut to_stream = ToStream(Arc::clone(&s.stream));
                loader::load_observed(&s.plan, world.kernel(), &s.opts, &mut to_stream)
            });
            for t in 0..32 {
                scope.spawn(move || {
                    for i in 0..4 {
                        let x = (t * 7 + i * 13 + round) % 40;
                        let _ = world.load(vec![
                            want(&format!("m{x}"), "stress"),
                            want("bad", "stress"),
                            want("free", "stress"),
                        ]);
                    }
                });
            }
        });
        assert!(k2.duplicates().is_empty(), "{:?}", k2.duplicates());
        let mut per: HashMap<ModuleName, usize> = HashMap::new();
        for c in k2.calls() {
            *per.entry(c.name).or_default() += 1;
        }
        assert!(per.values().all(|&c| c == 1), "{per:?}");
        supervise(&s, true);
    }
}

//! The loader against the fake kernel, on hand-made plans.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use kmodinit_init::kernel::{FakeKernel, FakeOutcome};
use kmodinit_init::report::ModuleState;
use modules_manifest::{Action, EdgeKind, Plan};

/// The contract's example: storage = [virtio_pci, virtio_blk(queue_depth)],
/// fs = [ext4] with jbd2, mbcache, crc16 and softdep crc32c_generic.
fn design_example() -> Plan {
    let mut b = PlanBuilder::new();
    b.module("virtio_pci", &[]);
    b.module("virtio_blk", &[]);
    b.params("virtio_blk", "queue_depth=128");
    b.module("crc16", &[]);
    b.module("mbcache", &[]);
    b.module("jbd2", &[]);
    b.module("crc32c_generic", &[]);
    b.module("ext4", &["crc16", "mbcache", "jbd2"]);
    b.edge("crc32c_generic", "ext4", EdgeKind::Softdep);
    b.chain("storage", true, &["virtio_pci", "virtio_blk"]);
    b.chain("fs", false, &["ext4"]);
    b.build()
}

fn no_outcomes() -> HashMap<String, FakeOutcome> {
    HashMap::new()
}

#[test]
fn design_example_loads_everything_once_in_order() {
    let plan = design_example();
    for jobs in [1, 2, 4, 16] {
        let k = FakeKernel::new().default_delay(Duration::from_micros(300));
        let r = load_ok(&plan, &k, jobs);
        check_load(&plan, &k, &no_outcomes(), &r, jobs).unwrap();
        assert_eq!(k.calls().len(), plan.nodes.len());
        assert!(r.modules.iter().all(|m| m.state == ModuleState::Loaded));
        assert!(r.failed_required_chains.is_empty());
        assert_eq!(k.calls_for("virtio_blk")[0].params, "queue_depth=128");
        assert_eq!(
            k.calls_for("ext4")[0].path,
            std::path::Path::new("/lib/modules/test/kernel/ext4.ko")
        );
        assert_eq!(r.module("virtio_blk").unwrap().chains, vec!["storage"]);
        assert!(r.module("jbd2").unwrap().chains.is_empty());
    }
}

#[test]
fn chain_successor_starts_after_its_predecessor_ended() {
    // b does not depend on a, only follows it in the chain.
    let mut b = PlanBuilder::new();
    b.module("a", &[]);
    b.module("b", &[]);
    b.module("c", &[]);
    b.chain("ch", true, &["a", "b", "c"]);
    let plan = b.build();
    let k = FakeKernel::new().delay("a", Duration::from_millis(5));
    let r = load_ok(&plan, &k, 8);
    check_load(&plan, &k, &no_outcomes(), &r, 8).unwrap();
    let (a, bb, c) = (
        &k.calls_for("a")[0],
        &k.calls_for("b")[0],
        &k.calls_for("c")[0],
    );
    assert!(a.end_seq < bb.start_seq && bb.end_seq < c.start_seq);
}

#[test]
fn a_dependency_of_a_later_chain_entry_loads_while_the_first_still_runs() {
    // chain [slow, mid, last]; last needs dep. Eager scheduling starts dep at
    // once. `slow` refuses to finish until dep has started: a loader that
    // waited for the chain to reach `last` would make it time out.
    let mut b = PlanBuilder::new();
    b.module("slow", &[]);
    b.module("mid", &[]);
    b.module("dep", &[]);
    b.module("last", &["dep"]);
    b.chain("ch", true, &["slow", "mid", "last"]);
    let plan = b.build();
    let k = FakeKernel::new().wait_for_start("slow", "dep");
    let r = load_ok(&plan, &k, 4);
    check_load(&plan, &k, &no_outcomes(), &r, 4).unwrap();
    assert_eq!(r.module("slow").unwrap().state, ModuleState::Loaded);
    assert!(k.calls_for("dep")[0].start_seq < k.calls_for("slow")[0].end_seq);
    assert!(k.max_concurrent() >= 2);
}

#[test]
fn declared_params_reach_a_module_pulled_in_as_another_chains_dependency() {
    // Chain "net" needs `shared` as a dependency of `nic` (and reaches it
    // first); chain "tune" declares `shared` with params. The plan node
    // carries the params; the loader must pass them verbatim, whoever pulls
    // the module in.
    let mut b = PlanBuilder::new();
    b.module("shared", &[]);
    b.params("shared", "mode=fast debug=0 path=\"a b\"");
    b.module("nic", &["shared"]);
    b.chain("net", true, &["nic"]);
    b.chain("tune", false, &["shared"]);
    let plan = b.build();
    let k = FakeKernel::new();
    let r = load_ok(&plan, &k, 4);
    check_load(&plan, &k, &no_outcomes(), &r, 4).unwrap();
    assert_eq!(k.call_count("shared"), 1);
    assert_eq!(
        k.calls_for("shared")[0].params,
        "mode=fast debug=0 path=\"a b\""
    );
    assert_eq!(
        r.module("shared").unwrap().params,
        "mode=fast debug=0 path=\"a b\""
    );
    assert_eq!(k.calls_for("nic")[0].params, "");
}

#[test]
fn a_failure_blocks_exactly_its_transitive_dependents() {
    //   base ─► bad ─► mid ─► top        other ─► free
    //            └──────────► side       bad ┄softdep┄► soft
    let mut b = PlanBuilder::new();
    b.module("base", &[]);
    b.module("bad", &["base"]);
    b.module("mid", &["bad"]);
    b.module("top", &["mid", "base"]);
    b.module("side", &["bad"]);
    b.module("other", &[]);
    b.module("free", &["other"]);
    b.module("soft", &[]);
    b.edge("bad", "soft", EdgeKind::Softdep);
    b.module("after", &[]);
    b.chain("c1", true, &["top", "after"]);
    b.chain("c2", false, &["free"]);
    let plan = b.build();
    let outcomes: HashMap<String, FakeOutcome> =
        [("bad".to_owned(), FakeOutcome::Fail(libc::ENODEV))].into();
    let k = FakeKernel::new().fail("bad", libc::ENODEV);
    let r = load_ok(&plan, &k, 4);
    check_load(&plan, &k, &outcomes, &r, 4).unwrap();

    let state = |n: &str| r.module(n).unwrap().state;
    assert_eq!(state("bad"), ModuleState::Failed);
    for blocked in ["mid", "top", "side", "after"] {
        assert_eq!(state(blocked), ModuleState::Blocked, "{blocked}");
        assert_eq!(r.module(blocked).unwrap().blocked_by, Some(name("bad")));
        assert_eq!(k.call_count(blocked), 0);
    }
    for fine in ["base", "other", "free", "soft"] {
        assert_eq!(state(fine), ModuleState::Loaded, "{fine}");
    }
    let err = r.module("bad").unwrap().error.clone().unwrap();
    assert!(err.contains("hardware"), "{err}");
    // c1 is required and cannot complete: reported with the culprit.
    assert_eq!(r.failed_required_chains.len(), 1);
    let f = &r.failed_required_chains[0];
    assert_eq!((f.chain.as_str(), f.module.as_str()), ("c1", "bad"));
    assert_eq!(f.error, err);
}

#[test]
fn an_optional_chain_failing_is_not_a_required_failure() {
    let mut b = PlanBuilder::new();
    b.module("x", &[]);
    b.module("y", &[]);
    b.chain("opt", false, &["x"]);
    b.chain("req", true, &["y"]);
    let plan = b.build();
    let k = FakeKernel::new().fail("x", libc::ENOEXEC);
    let r = load_ok(&plan, &k, 2);
    assert_eq!(r.module("x").unwrap().state, ModuleState::Failed);
    assert!(r.failed_required_chains.is_empty());
    assert!(r.required_ok());
}

#[test]
fn a_failed_softdep_does_not_block() {
    let mut b = PlanBuilder::new();
    b.module("crc32c_intel", &[]);
    b.module("ext4", &[]);
    b.edge("crc32c_intel", "ext4", EdgeKind::Softdep);
    b.chain("fs", true, &["ext4"]);
    let plan = b.build();
    let k = FakeKernel::new().fail("crc32c_intel", libc::ENODEV);
    let r = load_ok(&plan, &k, 2);
    assert_eq!(r.module("ext4").unwrap().state, ModuleState::Loaded);
    assert_eq!(r.module("crc32c_intel").unwrap().state, ModuleState::Failed);
    assert!(r.failed_required_chains.is_empty());
    // Still ordered after the softdep.
    assert!(k.calls_for("crc32c_intel")[0].end_seq < k.calls_for("ext4")[0].start_seq);
}

#[test]
fn a_panicking_kernel_call_fails_that_module_and_the_pool_finishes() {
    let mut b = PlanBuilder::new();
    for i in 0..20 {
        b.module(&format!("m{i}"), &[]);
    }
    b.module("boom", &[]);
    b.module("after_boom", &["boom"]);
    let plan = b.build();
    let outcomes: HashMap<String, FakeOutcome> = [("boom".to_owned(), FakeOutcome::Panic)].into();
    for jobs in [1, 3, 8] {
        let k = FakeKernel::new()
            .panic("boom")
            .default_delay(Duration::from_micros(100));
        let r = load_ok(&plan, &k, jobs);
        check_load(&plan, &k, &outcomes, &r, jobs).unwrap();
        let boom = r.module("boom").unwrap();
        assert_eq!(boom.state, ModuleState::Failed);
        let err = boom.error.as_deref().unwrap();
        assert!(
            err.starts_with("panic: ") && err.contains("injected panic"),
            "{err}"
        );
        assert_eq!(r.module("after_boom").unwrap().state, ModuleState::Blocked);
        assert_eq!(
            r.modules
                .iter()
                .filter(|m| m.state == ModuleState::Loaded)
                .count(),
            20
        );
    }
}

#[test]
fn eexist_counts_as_already_loaded_and_releases_dependents() {
    let mut b = PlanBuilder::new();
    b.module("there", &[]);
    b.module("user", &["there"]);
    let plan = b.build();
    let k = FakeKernel::new().exists("there");
    let r = load_ok(&plan, &k, 2);
    assert_eq!(r.module("there").unwrap().state, ModuleState::Already);
    assert_eq!(r.module("user").unwrap().state, ModuleState::Loaded);
    assert_eq!(k.call_count("there"), 1);
}

#[test]
fn builtin_and_loaded_modules_never_reach_the_kernel_blacklisted_are_skipped() {
    let mut b = PlanBuilder::new();
    b.node("crc16", Action::Builtin, "", &[]);
    b.node("mbcache", Action::AlreadyLoaded, "", &[]);
    b.node("floppy", Action::Blacklisted, "", &[]);
    b.module("ext4", &["crc16", "mbcache"]);
    b.module("fd_user", &["floppy"]);
    b.module("unrelated", &[]);
    b.chain("fs", true, &["ext4"]);
    b.chain("fd", true, &["fd_user"]);
    let plan = b.build();
    let k = FakeKernel::new();
    let r = load_ok(&plan, &k, 4);
    check_load(&plan, &k, &no_outcomes(), &r, 4).unwrap();
    assert_eq!(r.module("crc16").unwrap().state, ModuleState::Builtin);
    assert_eq!(r.module("mbcache").unwrap().state, ModuleState::Already);
    assert_eq!(r.module("floppy").unwrap().state, ModuleState::Skipped);
    assert_eq!(r.module("fd_user").unwrap().state, ModuleState::Blocked);
    assert_eq!(
        r.module("fd_user").unwrap().blocked_by,
        Some(name("floppy"))
    );
    let called: Vec<String> = k.calls().iter().map(|c| c.name.to_string()).collect();
    let mut called_sorted = called.clone();
    called_sorted.sort();
    assert_eq!(called_sorted, vec!["ext4", "unrelated"]);
    assert_eq!(r.failed_required_chains.len(), 1);
    assert_eq!(r.failed_required_chains[0].module.as_str(), "floppy");
}

#[test]
fn a_plan_with_nothing_to_insert_needs_no_pool() {
    let mut b = PlanBuilder::new();
    b.node("a", Action::Builtin, "", &[]);
    b.node("b", Action::AlreadyLoaded, "", &[(0, EdgeKind::Dependency)]);
    let plan = b.build();
    let k = FakeKernel::new();
    let r = load_ok(&plan, &k, 0);
    assert_eq!(r.jobs, 0);
    assert!(k.calls().is_empty());
    assert_eq!(r.modules[1].state, ModuleState::Already);
    let empty = PlanBuilder::new().build();
    let r = load_ok(&empty, &k, 0);
    assert!(r.modules.is_empty() && r.critical_path.is_empty());
}

#[test]
fn concurrency_stays_within_jobs_and_uses_more_than_one_worker() {
    let mut b = PlanBuilder::new();
    for i in 0..24 {
        b.module(&format!("w{i}"), &[]);
    }
    let plan = b.build();
    for jobs in [1, 2, 3, 5] {
        let mut k = FakeKernel::new().default_delay(Duration::from_millis(2));
        if jobs > 1 {
            // w0 cannot finish before w1 started: at least two in flight.
            k = k.wait_for_start("w0", "w1");
        }
        let r = load_fixed(&plan, &k, jobs);
        check_load(&plan, &k, &no_outcomes(), &r, jobs).unwrap();
        assert!(
            k.max_concurrent() <= jobs,
            "jobs {jobs}: {}",
            k.max_concurrent()
        );
        assert_eq!(r.jobs, jobs);
        if jobs > 1 {
            assert!(k.max_concurrent() >= 2);
            assert_eq!(r.module("w0").unwrap().state, ModuleState::Loaded);
        } else {
            assert_eq!(k.threads_used(), 1);
        }
    }
}

#[test]
fn the_pool_is_never_wider_than_the_modules_to_insert() {
    let mut b = PlanBuilder::new();
    b.module("a", &[]);
    b.module("b", &["a"]);
    let plan = b.build();
    let k = FakeKernel::new();
    // b waits for a: one worker is all the pool ever starts.
    let r = load_ok(&plan, &k, 64);
    assert_eq!(r.jobs, 1);
    let r = load_ok(&plan, &k, 0);
    assert_eq!(r.jobs, 1);
}

#[test]
fn a_malformed_plan_fails_the_bad_nodes_instead_of_hanging() {
    let mut b = PlanBuilder::new();
    b.module("ok", &[]);
    // Forward edge, self edge, out-of-range edge.
    b.node(
        "fwd",
        common::insert("fwd"),
        "",
        &[(2, EdgeKind::Dependency)],
    );
    b.node(
        "selfish",
        common::insert("selfish"),
        "",
        &[(2, EdgeKind::Chain)],
    );
    b.node(
        "far",
        common::insert("far"),
        "",
        &[(99, EdgeKind::Dependency)],
    );
    b.module("user", &["far"]);
    let plan = b.build();
    let k = FakeKernel::new();
    let r = load_ok(&plan, &k, 4);
    check_load(&plan, &k, &no_outcomes(), &r, 4).unwrap();
    for bad in ["fwd", "selfish", "far"] {
        let m = r.module(bad).unwrap();
        assert_eq!(m.state, ModuleState::Failed);
        assert!(m.error.as_deref().unwrap().contains("malformed plan"));
    }
    assert_eq!(r.module("user").unwrap().blocked_by, Some(name("far")));
    assert_eq!(r.module("ok").unwrap().state, ModuleState::Loaded);
    assert_eq!(k.calls().len(), 1);
}

#[test]
fn critical_path_is_the_longest_path_under_measured_durations() {
    // a → c ← b, and d alone: the path is (the slower of a and b), c — or d
    // alone if it was slower than both; whichever the measured times say.
    let mut b = PlanBuilder::new();
    b.module("a", &[]);
    b.module("b", &[]);
    b.module("c", &["a", "b"]);
    b.module("d", &[]);
    let plan = b.build();
    let k = FakeKernel::new()
        .delay("a", Duration::from_millis(20))
        .delay("b", Duration::from_millis(1));
    let r = load_ok(&plan, &k, 4);
    let d = |n: &str| r.module(n).unwrap().duration();
    let via_c = d("a").max(d("b")) + d("c");
    let (expect_cost, expect_path) = if d("d") > via_c {
        (d("d"), vec!["d"])
    } else if d("a") >= d("b") {
        (via_c, vec!["a", "c"])
    } else {
        (via_c, vec!["b", "c"])
    };
    let names: Vec<&str> = r.critical_path.iter().map(|n| n.as_str()).collect();
    assert_eq!(names, expect_path);
    assert!((r.critical_path_s - expect_cost).abs() < 1e-9);
    assert!(r.wall_s >= r.critical_path_s);
    assert!(r.boottime_load_end >= r.boottime_load_start);
}

#[test]
fn each_worker_is_named_and_timings_are_boottime() {
    let plan = design_example();
    let k = FakeKernel::new();
    let before = kmodinit_init::clock::boottime();
    let r = load_ok(&plan, &k, 3);
    let after = kmodinit_init::clock::boottime();
    for m in &r.modules {
        let (s, e) = (m.start.unwrap(), m.end.unwrap());
        assert!(before <= s && s <= e && e <= after);
        assert!(m.worker.unwrap() < 3);
    }
}

#[test]
fn the_fixed_pools_automatic_width_follows_the_graph_up_to_four_workers_per_cpu() {
    use kmodinit_init::loader::engine::{
        auto_jobs, available_cpus, AUTO_JOBS_PER_CPU, MAX_AUTO_JOBS,
    };
    let cpus = available_cpus();
    // The affinity mask: what std sees too, unless a cgroup quota lowers it.
    let std_cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(cpus >= 1 && cpus >= std_cpus, "{cpus} < {std_cpus}");
    // 40 independent modules, all ready at once: the pool opens as many
    // workers as the rule allows on this machine.
    let mut b = PlanBuilder::new();
    for i in 0..40 {
        b.module(&format!("w{i}"), &[]);
    }
    let r = load_fixed(&b.build(), &FakeKernel::new(), 0);
    assert_eq!(r.jobs, auto_jobs(40, cpus));
    assert_eq!(
        r.jobs,
        (AUTO_JOBS_PER_CPU * cpus).min(40).min(MAX_AUTO_JOBS)
    );
    // One chain: never more than one call at a time, so one worker.
    let mut b = PlanBuilder::new();
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    for n in &names {
        b.module(n, &[]);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    b.chain("c", true, &refs);
    let chain = b.build();
    let r = load_fixed(&chain, &FakeKernel::new(), 0);
    assert_eq!(r.jobs, 1);
    let r = load_ok(&chain, &FakeKernel::new(), 0);
    assert_eq!(r.jobs, 1);
    // A chain of 3 beside 4 free modules: 5 can run at once.
    let mut b = PlanBuilder::new();
    for n in ["a", "b", "c", "f1", "f2", "f3", "f4"] {
        b.module(n, &[]);
    }
    b.chain("abc", true, &["a", "b", "c"]);
    b.node("builtin", modules_manifest::Action::Builtin, "", &[]);
    let r = load_fixed(&b.build(), &FakeKernel::new(), 0);
    assert_eq!(r.jobs, auto_jobs(5, cpus));
    // The rule itself: the graph's width, at most 4 per CPU and 32.
    assert_eq!(auto_jobs(0, 2), 1);
    assert_eq!(auto_jobs(5, 0), 4);
    assert_eq!(auto_jobs(28, 2), 8);
    assert_eq!(auto_jobs(3, 2), 3);
    assert_eq!(auto_jobs(40, 4), 16);
    assert_eq!(auto_jobs(1000, 64), MAX_AUTO_JOBS);
}

/// `n` independent modules.
fn flat(n: usize) -> Plan {
    let mut b = PlanBuilder::new();
    for i in 0..n {
        b.module(&format!("w{i}"), &[]);
    }
    b.build()
}

fn adaptive(jobs: usize, cpus: usize) -> kmodinit_init::loader::engine::LoaderOptions {
    kmodinit_init::loader::engine::LoaderOptions { cpus, ..opts(jobs) }
}

#[test]
fn the_adaptive_pool_widens_while_module_init_sleeps() {
    // 12 modules that sleep 60 ms each, 2 CPUs: the fake kernel (as the
    // probe) shows every busy worker asleep, so the pool grows past the
    // CPUs, up to the graph's width.
    let plan = flat(12);
    let k = FakeKernel::new().default_delay(Duration::from_millis(60));
    let r = load_opts_with_watchdog(
        &plan,
        &k,
        &adaptive(0, 2),
        Some(&k),
        Duration::from_secs(60),
    );
    check_load(&plan, &k, &no_outcomes(), &r, 0).unwrap();
    assert!(r.jobs > 2, "{} workers", r.jobs);
    assert!(k.max_concurrent() > 2, "{}", k.max_concurrent());
    // Sequential would take 720 ms, two at a time 360 ms.
    assert!(r.wall_s < 0.36, "{} s", r.wall_s);
    // The cap still holds.
    let k = FakeKernel::new().default_delay(Duration::from_millis(30));
    let r = load_opts_with_watchdog(
        &plan,
        &k,
        &adaptive(4, 2),
        Some(&k),
        Duration::from_secs(60),
    );
    check_load(&plan, &k, &no_outcomes(), &r, 4).unwrap();
    assert!(r.jobs <= 4 && k.max_concurrent() <= 4);
}

#[test]
fn the_adaptive_pool_keeps_one_cpu_bound_insertion_per_cpu() {
    // Module init that computes: every busy worker is on a CPU, so no more
    // than `cpus` insertions ever run at once, however wide the graph.
    let plan = flat(12);
    let k = FakeKernel::new()
        .cpu_bound(true)
        .default_delay(Duration::from_millis(5));
    for cpus in [1, 2] {
        k.reset();
        let r = load_opts_with_watchdog(
            &plan,
            &k,
            &adaptive(0, cpus),
            Some(&k),
            Duration::from_secs(60),
        );
        check_load(&plan, &k, &no_outcomes(), &r, 0).unwrap();
        assert!(k.max_concurrent() <= cpus, "{}", k.max_concurrent());
        assert!(r.jobs <= cpus.max(1), "{} workers", r.jobs);
    }
}

/// A probe that sees every busy worker on a CPU: the adaptive pool's CPU
/// rule then never lets a held module start.
struct EveryWorkerRuns;

impl kmodinit_init::loader::engine::WorkerProbe for EveryWorkerRuns {
    fn register(&self, _worker: usize) {}
    fn on_cpu(&self, _started: usize, busy: usize) -> usize {
        busy
    }
}

#[test]
fn a_module_heading_the_longest_path_starts_without_waiting_for_the_probe() {
    // Three roots, each with a dependent: all three head a longest path.
    // One CPU, a probe that sees every worker running: the CPU rule alone
    // would hold r1 and r2 until r0 ends. r0 returns only once r1 has
    // begun, and r1 once r2 has: a pool that held either would fail them
    // with ETIMEDOUT.
    let mut b = PlanBuilder::new();
    for i in 0..3 {
        b.module(&format!("r{i}"), &[]);
        b.module(&format!("d{i}"), &[&format!("r{i}")]);
    }
    let plan = b.build();
    let k = FakeKernel::new()
        .wait_for_start("r0", "r1")
        .wait_for_start("r1", "r2")
        .gate_timeout(Duration::from_secs(10));
    let r = load_opts_with_watchdog(
        &plan,
        &k,
        &adaptive(3, 1),
        Some(&EveryWorkerRuns),
        Duration::from_secs(60),
    );
    check_load(&plan, &k, &no_outcomes(), &r, 3).unwrap();
    assert!(
        r.modules.iter().all(|m| m.state == ModuleState::Loaded),
        "{:?}",
        r.modules
    );
    assert!(k.max_concurrent() >= 2, "{}", k.max_concurrent());

    // Modules with nothing after them stay under the CPU rule: with that
    // probe, one at a time on one CPU.
    let plan = flat(6);
    let k = FakeKernel::new().default_delay(Duration::from_millis(5));
    let r = load_opts_with_watchdog(
        &plan,
        &k,
        &adaptive(3, 1),
        Some(&EveryWorkerRuns),
        Duration::from_secs(60),
    );
    check_load(&plan, &k, &no_outcomes(), &r, 3).unwrap();
    assert_eq!(k.max_concurrent(), 1);
}

#[test]
fn the_real_probe_sees_sleeping_fake_insertions() {
    // The /proc probe of the host process: threads sleeping in the fake
    // kernel are in state S, so the pool grows past the CPUs it was told.
    let plan = flat(8);
    let k = FakeKernel::new().default_delay(Duration::from_millis(80));
    let r = load_opts_with_watchdog(&plan, &k, &adaptive(0, 1), None, Duration::from_secs(60));
    check_load(&plan, &k, &no_outcomes(), &r, 0).unwrap();
    assert!(r.jobs > 1, "{} workers", r.jobs);
    assert!(r.wall_s < 0.64, "{} s", r.wall_s);
}

#[test]
fn the_proc_probe_reads_task_states() {
    use kmodinit_init::loader::engine::{ProcProbe, WorkerProbe};
    let probe = ProcProbe::new();
    // Nobody registered: both count as on a CPU (about to run).
    assert_eq!(probe.on_cpu(2, 2), 2);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let probe = &probe;
        s.spawn(move || {
            probe.register(0);
            ready_tx.send(()).unwrap();
            // Asleep until told to end.
            let _ = rx.recv();
        });
        ready_rx.recv().unwrap();
        // Give it time to block in recv.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(probe.on_cpu(1, 1), 0, "a blocked thread is asleep");
        // Worker 1 has not registered: on a CPU.
        assert_eq!(probe.on_cpu(2, 2), 1);
        tx.send(()).unwrap();
    });
}

#[test]
fn workers_start_only_when_ready_work_waits_for_one() {
    // A chain of 10 under a pool of 8: only one module is ever ready, so
    // one thread serves them all (thread starts cost ~1 ms each under
    // emulation, and all of them used to precede the first insertion).
    let mut b = PlanBuilder::new();
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    for n in &names {
        b.module(n, &[]);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    b.chain("c", true, &refs);
    let plan = b.build();
    let k = FakeKernel::new();
    let r = load_ok(&plan, &k, 8);
    check_load(&plan, &k, &no_outcomes(), &r, 8).unwrap();
    assert_eq!(r.jobs, 1);
    assert_eq!(k.threads_used(), 1);
    assert!(r.modules.iter().all(|m| m.worker == Some(0)));
    // Two roots, each with a dependent: two ready at once, never more.
    let mut b = PlanBuilder::new();
    b.module("a", &[]);
    b.module("b", &[]);
    b.module("a2", &["a"]);
    b.module("b2", &["b"]);
    let plan = b.build();
    let k = FakeKernel::new();
    let r = load_ok(&plan, &k, 8);
    check_load(&plan, &k, &no_outcomes(), &r, 8).unwrap();
    assert_eq!(r.jobs, 2);
    assert!(k.threads_used() <= 2);
}

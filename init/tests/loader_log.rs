//! One log line per module, at the level its outcome deserves. Its own test
//! binary: the `log` logger is process-global.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Mutex;

use common::*;
use kmodinit_init::kernel::FakeKernel;
use log::{Level, Log, Metadata, Record};
use modules_manifest::{Action, EdgeKind};

struct Capture(Mutex<Vec<(Level, String)>>);

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &Record<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((r.level(), r.args().to_string()));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn each_module_gets_one_line_naming_it_with_its_outcome() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    let mut b = PlanBuilder::new();
    b.module("ok_mod", &[]);
    b.params("ok_mod", "speed=3");
    b.module("bad_mod", &[]);
    b.module("after_bad", &["bad_mod"]);
    b.node("built_mod", Action::Builtin, "", &[]);
    b.node("there_mod", Action::AlreadyLoaded, "", &[]);
    b.node("black_mod", Action::Blacklisted, "", &[]);
    b.module("soft_user", &[]);
    b.edge("bad_mod", "soft_user", EdgeKind::Softdep);
    let plan = b.build();
    let k = FakeKernel::new().fail("bad_mod", libc::ENOEXEC);
    load_ok(&plan, &k, 3);

    let lines = CAPTURE.0.lock().unwrap().clone();
    let about = |m: &str| -> Vec<(Level, String)> {
        lines
            .iter()
            .filter(|(_, l)| {
                l.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == m)
            })
            .cloned()
            .collect()
    };
    let one = |m: &str| {
        let l = about(m);
        assert_eq!(l.len(), 1, "{m}: {l:?}");
        l[0].clone()
    };
    let (lvl, line) = one("ok_mod");
    assert_eq!(lvl, Level::Info);
    assert!(line.starts_with("kmodinit: loaded ok_mod in "), "{line}");
    assert!(
        line.contains(" ms") && line.ends_with("(params: speed=3)"),
        "{line}"
    );
    let (lvl, line) = one("after_bad");
    assert_eq!(lvl, Level::Error);
    assert!(line.contains("needs bad_mod"), "{line}");
    assert_eq!(one("built_mod").0, Level::Info);
    assert_eq!(one("there_mod").0, Level::Info);
    assert_eq!(one("black_mod").0, Level::Warn);
    // bad_mod: its failure, plus the softdep note that names it.
    let bad = about("bad_mod");
    assert!(bad.iter().any(|(l, s)| *l == Level::Error
        && s.contains("failed to load bad_mod")
        && s.contains("ENOEXEC")));
    let soft: Vec<_> = about("soft_user");
    assert_eq!(
        soft.iter()
            .filter(|(_, s)| s.contains("loaded soft_user"))
            .count(),
        1
    );
    assert!(soft
        .iter()
        .any(|(l, s)| *l == Level::Warn && s.contains("softdep bad_mod")));
}

//! The kernel's module requests against the fake kernel, end to end inside
//! one process: helpers ask over the real socket ([`channel::ask`]), the
//! loader's server ([`channel::run_server`]) serves them through the open
//! world while the boot plan loads. Each module is inserted once, whoever
//! asks and however often; invalid names are never looked up.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeSet;
use std::os::unix::net::UnixListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kmodinit_init::helper::channel::{self, ServerState};
use kmodinit_init::helper::request::{self, Outcome};
use kmodinit_init::kernel::FakeKernel;
use kmodinit_init::loader::{self, LoaderOptions};
use kmodinit_init::open_world::{Inputs, OpenWorld};
use modules_manifest::{DepIndex, KernelCmdline, Manifest, PlanInput};

/// `crypto_user` (the boot plan's module, slow) requests nothing itself;
/// `fs-vfat` → vfat ← fat; `crypto-sha256` → sha256_generic and
/// sha256_ssse3 (two providers, both loaded); `shared` is a dependency of
/// both the boot plan and vfat.
fn index() -> DepIndex {
    let dep = "\
kernel/shared.ko:
kernel/crypto_user.ko: kernel/shared.ko
kernel/fat.ko: kernel/shared.ko
kernel/vfat.ko: kernel/fat.ko kernel/shared.ko
kernel/sha256_generic.ko:
kernel/sha256_ssse3.ko:
";
    let alias = "\
alias fs-vfat vfat
alias crypto-sha256 sha256_generic
alias crypto-sha256 sha256_ssse3
";
    DepIndex::parse(dep, "", "", alias).unwrap()
}

fn socket(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kmodinit-req-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("helper.sock")
}

#[test]
fn concurrent_requests_and_the_boot_plan_insert_each_module_once() {
    let k = Arc::new(
        FakeKernel::new()
            .default_delay(Duration::from_millis(2))
            .delay("crypto_user", Duration::from_millis(30)),
    );
    let idx = index();
    let m = Manifest::from_json(
        br#"{"version": 1, "chains": [{"name": "boot", "modules": ["crypto_user"]}]}"#,
    )
    .unwrap();
    let cmdline = KernelCmdline::parse("");
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
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let world = OpenWorld::new(
        Box::new(Arc::clone(&k)),
        Inputs {
            index: idx,
            manifest: m,
            cmdline,
            loaded,
            opts: opts.clone(),
        },
        Box::new(move |e| sink.lock().unwrap().push(format!("{e:?}"))),
    );
    world.register_boot_plan(&plan);

    let sock = socket("once");
    let listener = UnixListener::bind(&sock).unwrap();
    let state = ServerState::default();
    std::thread::scope(|s| {
        let w = world.clone();
        let (state, listener) = (&state, &listener);
        s.spawn(move || {
            channel::run_server(listener, state, "/sbin/modprobe", |name| {
                request::serve(&w, name)
            })
        });
        let boot = s.spawn(|| loader::load(&plan, world.kernel(), &opts));
        let _stop = StopOnDrop(state);
        let asks: Vec<_> = (0..channel::MAX_CONCURRENT_REQUESTS)
            .map(|i| {
                let sock = &sock;
                s.spawn(move || {
                    let name = ["fs-vfat", "crypto-sha256", "vfat", "shared"][i % 4];
                    (name, channel::ask(sock, name).unwrap().0)
                })
            })
            .collect();
        for a in asks {
            let (name, outcome) = a.join().unwrap();
            assert_eq!(outcome, Outcome::Loaded, "{name}");
        }
        let boot = boot.join().unwrap();
        assert!(boot.modules.iter().all(|m| m.state.is_satisfied()));
        // Not in the image: the kernel's own helper is named for the
        // fall-through; nothing inserted.
        let (o, fallback) = channel::ask(&sock, "net-pf-38").unwrap();
        assert_eq!(
            (o, fallback.as_str()),
            (Outcome::NotFound, "/sbin/modprobe")
        );
        // Never a path, never looked up.
        let (o, _) = channel::ask(&sock, "../../tmp/evil").unwrap();
        assert!(matches!(o, Outcome::Failed(_)), "{o:?}");
    });
    world.close();
    assert!(
        k.duplicates().is_empty(),
        "inserted twice: {:?}",
        k.duplicates()
    );
    for name in [
        "shared",
        "crypto_user",
        "fat",
        "vfat",
        "sha256_generic",
        "sha256_ssse3",
    ] {
        assert_eq!(k.call_count(name), 1, "{name}");
    }
    assert_eq!(k.calls().len(), 6, "{:?}", k.calls());
    // The modules the requests brought in are announced once each, with
    // the request as reason; the boot plan's are never announced again.
    let events = events.lock().unwrap();
    let added = |name: &str| -> Vec<&String> {
        events
            .iter()
            .filter(|e| e.starts_with("Added") && e.contains(&format!("name: \"{name}\"")))
            .collect()
    };
    for (name, reasons) in [
        (
            "vfat",
            &["kernel request:fs-vfat", "kernel request:vfat"][..],
        ),
        ("sha256_generic", &["kernel request:crypto-sha256"][..]),
        ("sha256_ssse3", &["kernel request:crypto-sha256"][..]),
    ] {
        let a = added(name);
        assert_eq!(a.len(), 1, "{name}: {events:?}");
        assert!(
            reasons
                .iter()
                .any(|r| a[0].contains(&format!("reason: \"{r}\""))),
            "{name}: {}",
            a[0]
        );
    }
    assert_eq!(added("shared").len(), 0, "{events:?}");
    assert_eq!(added("crypto_user").len(), 0, "{events:?}");
}

/// Sets the server's stop flag when the test's scope ends, failed
/// assertion or not (else the scope would wait for the server forever).
struct StopOnDrop<'a>(&'a ServerState);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

#[test]
fn a_flood_waits_beyond_the_cap_and_is_served_in_bounded_places() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let sock = socket("flood");
    let listener = UnixListener::bind(&sock).unwrap();
    let state = ServerState::default();
    let release = AtomicBool::new(false);
    let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let extra = 8;
    std::thread::scope(|s| {
        let (state, listener) = (&state, &listener);
        let (release, running, most) = (&release, &running, &most);
        s.spawn(move || {
            channel::run_server(listener, state, "", |_name| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                running.fetch_sub(1, Ordering::SeqCst);
                Outcome::Loaded
            })
        });
        let _stop = StopOnDrop(state);
        // A failed assertion must also free the held requests, or the
        // scope would wait for them forever.
        struct ReleaseOnDrop<'a>(&'a AtomicBool);
        impl Drop for ReleaseOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _release = ReleaseOnDrop(release);
        let asks: Vec<_> = (0..channel::MAX_CONCURRENT_REQUESTS + extra)
            .map(|i| {
                let sock = &sock;
                s.spawn(move || channel::ask(sock, &format!("net-pf-{i}")).unwrap().0)
            })
            .collect();
        while state.busy.load(Ordering::SeqCst) < channel::MAX_CONCURRENT_REQUESTS {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Every place is taken: the others wait, none is answered yet.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(state.served.load(Ordering::SeqCst), 0);
        release.store(true, Ordering::SeqCst);
        for h in asks {
            assert_eq!(h.join().unwrap(), Outcome::Loaded);
        }
        // A request counts as served once its thread is done, a moment
        // after the helper has its answer.
        while state.busy.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            state.served.load(Ordering::SeqCst),
            channel::MAX_CONCURRENT_REQUESTS + extra
        );
    });
    assert_eq!(
        most.load(Ordering::SeqCst),
        channel::MAX_CONCURRENT_REQUESTS
    );
}

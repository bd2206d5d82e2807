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

use kmodinit_init::kernel::FakeKernel;
use kmodinit_init::loader::engine::{self as loader, LoaderOptions};
use kmodinit_init::loader::open_world::{Inputs, OpenWorld};
use kmodinit_init::loader::requests::{self as request, Outcome};
use kmodinit_init::wire::helper::{self as channel, ServerState};
use modules_manifest::{CompiledIndex, DepIndex, KernelCmdline, Manifest, PlanInput};

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

/// A root for the helper's standalone path (no loader serves): the module
/// tree of [`index`] under `lib/modules/6.1.0-x`, a `proc` with that
/// release, `shared` loaded, and `cmdline`; the manifest only if given.
fn standalone_root(tag: &str, cmdline: &str, manifest: Option<&str>) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("kmodinit-alone-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("lib/modules/6.1.0-x");
    std::fs::create_dir_all(dir.join("kernel")).unwrap();
    for m in [
        "shared",
        "crypto_user",
        "fat",
        "vfat",
        "sha256_generic",
        "sha256_ssse3",
    ] {
        std::fs::write(dir.join(format!("kernel/{m}.ko")), m).unwrap();
    }
    // As `kmodinit build` writes it: the depmod text compiled.
    let index = DepIndex::parse(
        "kernel/shared.ko:\nkernel/crypto_user.ko: kernel/shared.ko\nkernel/fat.ko: kernel/shared.ko\n\
         kernel/vfat.ko: kernel/fat.ko kernel/shared.ko\nkernel/sha256_generic.ko:\nkernel/sha256_ssse3.ko:\n",
        "",
        "",
        "alias fs-vfat vfat\nalias crypto-sha256 sha256_generic\nalias crypto-sha256 sha256_ssse3\n",
    )
    .unwrap();
    let compiled = CompiledIndex::compile("6.1.0-x", index, Default::default(), []);
    std::fs::write(
        dir.join(modules_manifest::compiled::INDEX_FILE),
        modules_manifest::compiled::encode(&compiled),
    )
    .unwrap();
    let proc = root.join("proc");
    std::fs::create_dir_all(proc.join("sys/kernel")).unwrap();
    std::fs::write(proc.join("sys/kernel/osrelease"), "6.1.0-x\n").unwrap();
    std::fs::write(proc.join("modules"), "shared 16384 0 - Live 0x0\n").unwrap();
    std::fs::write(proc.join("cmdline"), cmdline).unwrap();
    if let Some(m) = manifest {
        std::fs::create_dir_all(root.join("etc/kmodinit")).unwrap();
        std::fs::write(root.join("etc/kmodinit/manifest.json"), m).unwrap();
    }
    root
}

/// With no loader serving, the helper loads from the image itself, and the
/// kernel command line still holds: a blacklisted module never loads,
/// whoever asks (here the kernel, by alias), and `name.param=` reaches the
/// module.
#[test]
fn the_standalone_helper_honours_the_command_line() {
    use kmodinit_init::helper::standalone_in;
    let root = standalone_root(
        "cmdline",
        "quiet modprobe.blacklist=sha256_ssse3 rd.driver.blacklist=vfat fat.codepage=437\n",
        None,
    );
    let proc = root.join("proc");
    let k = Arc::new(FakeKernel::new());

    // vfat is blacklisted: the kernel's fs-vfat request loads nothing.
    let o = standalone_in(Box::new(Arc::clone(&k)), &root, &proc, "fs-vfat");
    assert_ne!(o, Outcome::Loaded);
    assert_eq!(k.call_count("vfat"), 0, "{:?}", k.calls());

    // Of crypto-sha256's two providers, the blacklisted one stays out
    // (the outcome names it), the other loads.
    let o = standalone_in(Box::new(Arc::clone(&k)), &root, &proc, "crypto-sha256");
    assert_eq!(
        o,
        Outcome::Failed("sha256_ssse3: blacklisted on the kernel command line".into())
    );
    assert_eq!(k.call_count("sha256_generic"), 1);
    assert_eq!(k.call_count("sha256_ssse3"), 0);

    // fat is not blacklisted: it loads with the command line's parameter;
    // `shared`, loaded per /proc/modules, is not inserted again.
    let o = standalone_in(Box::new(Arc::clone(&k)), &root, &proc, "fat");
    assert_eq!(o, Outcome::Loaded);
    let fat = k.calls_for("fat");
    assert_eq!(fat.len(), 1);
    assert_eq!(fat[0].params, "codepage=437");
    assert_eq!(k.call_count("shared"), 0);
    let _ = std::fs::remove_dir_all(&root);
}

/// `kmodinit.manifest=` names the manifest the standalone helper reads:
/// its blocklist and params apply to requests too.
#[test]
fn the_standalone_helper_reads_the_manifest_the_command_line_names() {
    use kmodinit_init::helper::standalone_in;
    let manifest = r#"{"version": 1, "chains": [], "blocklist": ["sha256_generic"],
        "modules": {"fat": {"params": "iocharset=utf8"}}}"#;
    let root = standalone_root(
        "manifest",
        "kmodinit.manifest=/etc/kmodinit/manifest.json",
        Some(manifest),
    );
    let k = Arc::new(FakeKernel::new());
    let proc = root.join("proc");
    assert_eq!(
        standalone_in(Box::new(Arc::clone(&k)), &root, &proc, "crypto-sha256"),
        Outcome::Failed("sha256_generic: on the manifest's blocklist".into())
    );
    assert_eq!(k.call_count("sha256_generic"), 0);
    assert_eq!(k.call_count("sha256_ssse3"), 1);
    assert_eq!(
        standalone_in(Box::new(Arc::clone(&k)), &root, &proc, "fat"),
        Outcome::Loaded
    );
    assert_eq!(k.calls_for("fat")[0].params, "iocharset=utf8");
    let _ = std::fs::remove_dir_all(&root);
}

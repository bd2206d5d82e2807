//! The loader child process: what runs after PID 1's fork. It reads the
//! compiled index and the manifest, plans and opens the module files while
//! PID 1 decides, waits for PID 1's go, then loads (with coldplug and the kernel's requests through the open
//! world) and streams events up its pipe; its panic hook reports a panic
//! before the process ends.
//!
//! Inside: [`engine`] runs a plan on the worker pool against a
//! [`crate::kernel::Kernel`], exactly once per module; [`open_world`] adds
//! modules while the load runs; [`coldplug`] and [`requests`] are its two
//! sources of such modules; [`restorer`] gives the kernel its helper back;
//! [`error`] is how the child fails.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use modules_manifest::{CompiledIndex, Manifest};

use crate::clock::boottime;
use crate::kernel::tpm::DeviceTpm;
use crate::kernel::{Kernel, RealKernel};
use crate::report::Report;
use crate::sys::process;
use crate::wire::events::{encode, LoadSummary, LoaderEvent};
use crate::wire::fork::{ChildPipes, LoadInput};
use crate::wire::go::{decode_go, GO_LEN};
use crate::wire::helper::{run_server, Outcome, ServerState};
use engine::{LoadObserver, LoaderOptions, NodeOutcome};
use error::LoaderError;
use measure::{planned_files, MeasuredKernel, Measurer, PlannedFile};
use modules_lock::ModulesLock;
use modules_manifest::measure::Event;
use open_world::{Inputs, OpenWorld};
use planning::{make_plan, open_ahead_list, planned_event, read_manifest_again};
use restorer::Restorer;

pub mod coldplug;
pub mod engine;
pub mod error;
pub mod measure;
pub mod modules_lock;
pub mod open_world;
pub mod planning;
pub mod requests;
pub mod restorer;
pub mod tpm_driver;

/// The loader's diagnostic knobs, for benchmarks that compare its policies
/// (not settings a user needs): the kernel hands command-line words like
/// `KMODINIT_POOL=fixed` that it does not know to `/init` as environment
/// variables, and the child inherits PID 1's environment.
/// `KMODINIT_POOL=fixed` ([`engine::PoolMode::Fixed`]),
/// `KMODINIT_ORDER=cost` ([`engine::Order::CostAware`]).
fn diagnostic_options() -> LoaderOptions {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    LoaderOptions {
        pool: match var("KMODINIT_POOL").as_str() {
            "fixed" => engine::PoolMode::Fixed,
            _ => engine::PoolMode::Adaptive,
        },
        order: match var("KMODINIT_ORDER").as_str() {
            "cost" => engine::Order::CostAware,
            _ => engine::Order::Unit,
        },
        ..LoaderOptions::default()
    }
}

/// The event writer the child shares with its panic hook.
type Events = Arc<Mutex<File>>;

fn send(events: &Events, e: &LoaderEvent) {
    let line = encode(e);
    let mut f = events.lock().unwrap_or_else(PoisonError::into_inner);
    // PID 1 gone (after exec it no longer reads): the write fails with
    // EPIPE (SIGPIPE is ignored), and nobody is left to tell.
    let _ = f.write_all(&line);
}

/// The child's pipe to PID 1, for [`stamp`] (set once, in the child).
static STEPS: std::sync::OnceLock<Events> = std::sync::OnceLock::new();

/// In the child: tells PID 1 that `step` ended now (the report's `steps`).
fn stamp(step: &str) {
    if let Some(events) = STEPS.get() {
        send(
            events,
            &LoaderEvent::Step {
                step: step.to_owned(),
                t: boottime(),
            },
        );
    }
}

/// Streams the loader's progress to PID 1.
struct Streamer<'e> {
    events: &'e Events,
}

impl LoadObserver for Streamer<'_> {
    fn started(&mut self, id: usize, t: f64) {
        send(self.events, &LoaderEvent::Started { id, t });
    }
    fn finished(&mut self, outcome: &NodeOutcome) {
        send(self.events, &LoaderEvent::Finished(outcome.clone()));
    }
}

/// The child: plan, open the files, load, report. Returns the exit code.
pub fn child_main(input: LoadInput<'_>, pipes: ChildPipes) -> i32 {
    let ChildPipes { events, go } = pipes;
    let events: Events = Arc::new(Mutex::new(File::from(events)));
    install_child_panic_hook(&events);
    let _ = STEPS.set(Arc::clone(&events));
    stamp("start");
    // Before any thread or large allocation; a kernel without the prctl
    // (before 3.15) or without THP has no huge page to refuse.
    if let Err(e) = process::refuse_huge_pages() {
        log::debug!("loader: transparent huge pages stay allowed: {e}");
    }

    // Requests that come before the index is read wait in the socket's
    // backlog. The restorer's descriptors reach /proc and /run after the
    // handover, when they are no longer at their paths in our root.
    let restorer = input.helper.and_then(|h| {
        Restorer::open(input.proc_dir, h.run_dir, h.kernel_value.to_owned())
            .map_err(|e| log::error!("loader: cannot serve kernel module requests: {e}"))
            .ok()
    });
    // While PID 1 parses the manifest and decides: the index, the plan and
    // the open files are ready when the go comes, so the first insertion
    // follows it at once. Nothing here is acted on before the go: without
    // one (PID 1 stops, or refuses the manifest) the work is dropped.
    let mut kernel = RealKernel::new();
    let planned = read_index(&input).and_then(|(modules_dir, compiled, loaded)| {
        let manifest = read_manifest_again(input.manifest_path)?;
        stamp("manifest");
        let plan = make_plan(&input, &manifest, &compiled, &loaded)?;
        stamp("plan");
        let files = open_ahead_list(&plan, &compiled.index, &modules_dir);
        let opened = kernel.open_ahead(files.iter().map(std::path::PathBuf::as_path));
        log::debug!("loader: {opened} module file(s) open");
        stamp("open_ahead");
        Ok((plan, modules_dir, compiled.index, loaded, manifest))
    });
    let mut go = File::from(go);
    let Some((jobs, deadline)) = wait_for_go(&mut go) else {
        // PID 1 loads nothing (or is gone): neither do we.
        if let Some(r) = &restorer {
            r.restore();
        }
        return 0;
    };
    stamp("go");
    let (mut plan, modules_dir, index, loaded, manifest) = match planned {
        Ok(p) => p,
        Err(e) => {
            log::error!("loader: {e}");
            send(&events, &LoaderEvent::Fatal(e.to_wire()));
            if let Some(r) = &restorer {
                r.restore();
            }
            return 1;
        }
    };
    // A module's init may request another: the kernel must find the
    // helper from the first insertion on. PID 1 points the kernel at it
    // after its go.
    if input.helper.is_some() {
        if !wait_for_helper(&mut go) {
            log::warn!("loader: the kernel's module requests are not served (PID 1 could not install the helper)");
        }
        stamp("helper");
    }
    drop(go);

    // Measured loading with a TPM whose driver is a module: that driver
    // loads first, since nothing can measure before the device exists.
    let dev = input.root.join("dev");
    if modules_manifest::measure::settings(Some(&manifest), input.cmdline).is_some()
        && !tpm_driver::device_exists(&dev)
        && !tpm_driver::nodes_first(&plan).is_empty()
    {
        let note = match tpm_driver::load_first(
            &plan,
            &modules_dir,
            &kernel,
            &dev,
            tpm_driver::DEVICE_WAIT,
        ) {
            Ok(names) => format!(
                "measure: the TPM's driver loaded before the plan, as the device did not exist yet: {} (measured in their plan place)",
                names.join(", ")
            ),
            Err(why) => format!("measure: {why}"),
        };
        log::info!("{note}");
        plan.notes.push(note);
    }
    // Measured loading and the lock, as the manifest and command line say.
    let lock = modules_manifest::measure::lock_modules(Some(&manifest), input.cmdline)
        .then(|| ModulesLock::open(input.proc_dir));
    let measuring = match start_measuring(&input, &manifest, &plan, &modules_dir, &events) {
        Ok(m) => m,
        Err(e) => {
            send(&events, &LoaderEvent::Fatal(e.to_wire()));
            if let Some(r) = &restorer {
                r.restore();
            }
            return 1;
        }
    };
    let measurer = measuring.as_ref().map(|(m, _, _)| Arc::clone(m));

    let opts = LoaderOptions {
        modules_dir,
        jobs,
        ..diagnostic_options()
    };
    let sink_events = Arc::clone(&events);
    // Test build only: `kmodinit.fault=` panics or kills in the workers.
    #[cfg(feature = "fault-injection")]
    let kernel = crate::fault::Faults::from_cmdline(
        &std::fs::read_to_string(input.proc_dir.join("cmdline")).unwrap_or_default(),
    )
    .kernel(kernel);
    let world = OpenWorld::new(
        Box::new(MeasuredKernel {
            inner: kernel,
            measurer,
        }),
        Inputs {
            index,
            manifest: manifest.clone(),
            cmdline: input.cmdline.clone(),
            loaded,
            opts: opts.clone(),
        },
        Box::new(move |e| send(&sink_events, e)),
    );
    world.register_boot_plan(&plan);
    let load_start = boottime();
    send(&events, &planned_event(&plan, load_start));

    let coldplug = coldplug::Settings::of(&manifest, input.cmdline);
    let until = load_start + deadline.as_secs_f64();
    let server = ServerState::default();
    let load = std::thread::scope(|scope| {
        if let (Some(h), Some(r)) = (input.helper, restorer.as_ref()) {
            let (w, server) = (world.clone(), &server);
            let spawned = process::thread("helper-server").spawn_scoped(scope, move || {
                run_server(h.listener, server, r.kernel_value(), |name| {
                    serve_request(&w, name)
                });
            });
            if let Err(e) = spawned {
                log::error!("loader: cannot serve kernel module requests: {e}");
            }
        }
        if let Some((m, head, files)) = &measuring {
            let spawned = process::thread("measure").spawn_scoped(scope, {
                let kernel = world.kernel();
                move || {
                    let value = m.measure_plan(head, files, &|p| kernel.module_file(p));
                    // When the plan's extends ended (the report's steps).
                    stamp("measured");
                    value
                }
            });
            if let Err(e) = spawned {
                // Nothing extends the plan's modules: they fail, or load
                // unmeasured, as the measurer's failure says.
                log::error!("measure: cannot start the measuring thread: {e}");
                m.stop(format!("cannot start the measuring thread: {e}"));
            }
        }
        let load_plan = || {
            engine::load_observed(
                &plan,
                world.kernel(),
                &opts,
                &mut Streamer { events: &events },
            )
        };
        let load = match process::thread("load").spawn_scoped(scope, load_plan) {
            Ok(main) => {
                if coldplug.enabled {
                    coldplug::run(scope, &world, &coldplug, input.sys_dir, until, &|| {
                        main.is_finished()
                    });
                }
                main.join()
            }
            Err(e) => {
                // Short of threads: the plan on this one, coldplug after it.
                log::warn!("loader: cannot start the load thread ({e}); loading on this one");
                let load = load_plan();
                if coldplug.enabled {
                    coldplug::run(scope, &world, &coldplug, input.sys_dir, until, &|| true);
                }
                Ok(load)
            }
        };
        if let Ok(load) = &load {
            // PID 1 waits for `done`: it goes first, the log line after.
            send(
                &events,
                &LoaderEvent::Done(LoadSummary::of(
                    load,
                    Report::read_vm_hwm_kib(std::path::Path::new("/proc")),
                )),
            );
            log::info!(
                "loaded {} module(s) in {} s with {} worker(s) (critical path {} s)",
                load.modules.len(),
                crate::clock::Fixed(load.wall_s, 3),
                load.jobs,
                crate::clock::Fixed(load.critical_path_s, 3)
            );
        }
        if let (Some(h), Some(r)) = (input.helper, &restorer) {
            // Serve on while requests come (the real init's first mounts:
            // a filesystem whose module only the image has); then the
            // kernel gets its own helper back before we go.
            linger_while_requested(&server, h.linger);
            r.restore();
            log::info!(
                "stopped serving the kernel's module requests ({} served); its helper is {:?} again",
                server.served.load(std::sync::atomic::Ordering::Acquire),
                r.kernel_value()
            );
        }
        server
            .stop
            .store(true, std::sync::atomic::Ordering::Release);
        // Nothing new from here on; the scope joins the sessions that run.
        world.close();
        load
    });
    if let Some(lock) = lock {
        // The load, coldplug and the kernel's requests are over: nothing
        // loads from now on, by the kernel's own refusal.
        let error = lock.lock().err();
        match &error {
            None => log::info!("module loading locked (modules_disabled=1)"),
            Some(e) => log::error!("lock_modules: {e}"),
        }
        send(
            &events,
            &LoaderEvent::ModulesLocked {
                t: boottime(),
                error,
            },
        );
    }
    match load {
        Ok(_) => 0,
        // The panic hook has told PID 1 and ended the process already.
        Err(_) => 101,
    }
}

/// The measurer, the head events and the plan's files, when measuring is
/// on and a TPM answers. Without one: `Err` (the boot stops) when the
/// measurement is required, else `None` and the report says why.
type Measuring = (Arc<Measurer>, Vec<Event>, Vec<PlannedFile>);

fn start_measuring(
    input: &LoadInput<'_>,
    manifest: &Manifest,
    plan: &modules_manifest::Plan,
    modules_dir: &Path,
    events: &Events,
) -> Result<Option<Measuring>, LoaderError> {
    let Some(spec) = modules_manifest::measure::settings(Some(manifest), input.cmdline) else {
        return Ok(None);
    };
    let files = planned_files(plan, modules_dir);
    let sink_events = Arc::clone(events);
    let started = DeviceTpm::open(&input.root.join("dev"))
        .map_err(|e| e.to_string())
        .and_then(|tpm| {
            Measurer::start(
                Box::new(tpm),
                spec.pcr,
                spec.required,
                &files,
                Box::new(move |e| send(&sink_events, e)),
            )
        })
        .and_then(|m| {
            let bytes = std::fs::read(input.manifest_path).map_err(|e| {
                format!(
                    "cannot read {} to measure it: {e}",
                    input.manifest_path.display()
                )
            })?;
            Ok((m, bytes))
        });
    match started {
        Ok((m, bytes)) => {
            let head = modules_manifest::measure::head_events(&bytes, input.cmdline).to_vec();
            log::info!(
                "measure: {} module(s) into PCR {} before they load",
                files.len(),
                spec.pcr
            );
            Ok(Some((Arc::new(m), head, files)))
        }
        Err(why) if spec.required => Err(LoaderError::Measure(why)),
        Err(why) => {
            log::warn!("measure: {why}; loading unmeasured (measure.required is false)");
            send(
                events,
                &LoaderEvent::MeasureStart {
                    pcr: spec.pcr,
                    initial: None,
                    error: Some(format!("{why}: nothing measured")),
                },
            );
            Ok(None)
        }
    }
}

/// How often the lingering loader looks whether requests came.
const LINGER_POLL: Duration = Duration::from_millis(200);

/// Returns once no request is in flight and none came for `linger`.
fn linger_while_requested(server: &ServerState, linger: Duration) {
    use std::sync::atomic::Ordering;
    let mut seen = server.served.load(Ordering::Acquire);
    let mut quiet_since = std::time::Instant::now();
    loop {
        let served = server.served.load(Ordering::Acquire);
        if served != seen || server.busy.load(Ordering::Acquire) > 0 {
            seen = served;
            quiet_since = std::time::Instant::now();
        } else if quiet_since.elapsed() >= linger {
            return;
        }
        std::thread::sleep(LINGER_POLL.min(linger.max(Duration::from_millis(1))));
    }
}

/// One kernel request, served through the open world (reason `kernel
/// request:NAME` on the modules it brings in), logged.
fn serve_request(world: &OpenWorld, name: &str) -> Outcome {
    let reason = crate::loader::requests::chain_name(name);
    let outcome = crate::loader::requests::serve(world, name);
    match &outcome {
        Outcome::Loaded => log::info!("{reason}: loaded"),
        Outcome::Failed(why) => log::warn!("{reason}: {why}"),
        Outcome::NotFound => log::info!("{reason}: not in the image"),
    }
    outcome
}

/// The image's compiled index and the loaded set, read before PID 1's go.
fn read_index(
    input: &LoadInput<'_>,
) -> Result<
    (
        std::path::PathBuf,
        CompiledIndex,
        BTreeSet<modules_manifest::ModuleName>,
    ),
    LoaderError,
> {
    let modules_dir = crate::inputs::modules_dir(input.root, input.proc_dir)
        .map_err(LoaderError::KernelRelease)?;
    let index = crate::inputs::read_index(&modules_dir).map_err(|source| LoaderError::Index {
        file: modules_dir.join(modules_manifest::compiled::INDEX_FILE),
        source,
    })?;
    stamp("index");
    let loaded = crate::inputs::loaded_modules(input.proc_dir);
    Ok((modules_dir, index, loaded))
}

/// Waits for PID 1's go: the pool width and the deadline; `None` if PID 1
/// closed the pipe instead (stop, or PID 1 exec'd a rescue shell).
fn wait_for_go(go: &mut File) -> Option<(usize, Duration)> {
    let mut msg = [0u8; GO_LEN];
    go.read_exact(&mut msg).ok()?;
    Some(decode_go(&msg))
}

/// Waits for PID 1's word on the helper, sent after the go
/// (`LoaderChild::helper_installed` in PID 1): true if the kernel now runs
/// it; false if PID 1 could not install it or closed the pipe.
fn wait_for_helper(go: &mut File) -> bool {
    let mut byte = [0u8; 1];
    go.read_exact(&mut byte).is_ok() && byte[0] == 1
}

/// In the child: a panic is logged, told to PID 1 (`panicked`), and the
/// child ends at once with status 101, in every build (with `panic =
/// "abort"` it would abort right after the hook anyway; a build that
/// unwinds must not go on with a half-updated loader either).
fn install_child_panic_hook(events: &Events) {
    // Its own descriptor of the pipe: the panic may come from inside `send`,
    // with the lock held. A line this short is written in one piece, and
    // its leading newline ends whatever line it interrupts.
    let hook_pipe = events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .try_clone()
        .ok();
    std::panic::set_hook(Box::new(move |info| {
        let message = crate::kmsg::panic_text(info);
        crate::kmsg::announce(
            Path::new("/dev"),
            Path::new("/proc"),
            &format!("kmodinit: loader: panic in thread {message}\n"),
        );
        if let Some(mut f) = hook_pipe.as_ref() {
            let _ = f.write_all(&encode(&LoaderEvent::Panicked { message }));
        }
        // At once, as panic = "abort" would.
        process::exit_now(101)
    }));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_child_reads_the_go_then_the_helper_word() {
        use std::os::fd::OwnedFd;
        let pipe =
            || -> (OwnedFd, OwnedFd) { nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap() };
        let d = Duration::from_millis(12_345);
        // A stop is the pipe closing before 16 bytes came.
        let (rx, tx) = pipe();
        File::from(tx).write_all(&[1, 2, 3]).unwrap();
        assert_eq!(wait_for_go(&mut File::from(rx)), None);
        let (rx, tx) = pipe();
        let mut tx = File::from(tx);
        tx.write_all(&crate::wire::go::encode_go(4, d)).unwrap();
        let mut rx = File::from(rx);
        assert_eq!(wait_for_go(&mut rx), Some((4, d)));
        // Then PID 1's word on the helper: installed, not, or nothing.
        tx.write_all(&[1]).unwrap();
        assert!(wait_for_helper(&mut rx));
        tx.write_all(&[0]).unwrap();
        assert!(!wait_for_helper(&mut rx));
        drop(tx);
        assert!(!wait_for_helper(&mut rx));
    }
}

//! Measured loading in the loader child: every module is extended into a
//! TPM PCR before it is inserted, in an order that does not depend on the
//! pool's schedule.
//!
//! A [`Measurer`] thread walks the plan's modules in plan order
//! ([`modules_manifest::measure`] lists the events): it hashes each file
//! and extends the PCR, after the manifest and the command line's
//! settings. [`MeasuredKernel`] sits in front of the real kernel: a worker
//! holding a planned module waits until that module is extended, then
//! inserts; insertions stay parallel and the coordinator still decides
//! alone what runs when (a module waits here only for modules planned
//! before it, which the measurer reaches without waiting for any
//! insertion, so no wait cycle exists). A module the plan does not have
//! (coldplug, a kernel request) is extended by the worker that inserts
//! it, after the plan's last, one at a time.
//!
//! Without a TPM, or once an extend fails, nothing more is measured:
//! with `required` no module is inserted unmeasured (the insertion fails
//! with the reason), otherwise the boot goes on and the report says so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use modules_manifest::measure::{hex, module_events, Digest, Event, Sha256};
use modules_manifest::ModuleName;

use crate::kernel::tpm::Tpm;
use crate::kernel::{InsertError, InsertRequest, Inserted, Kernel};
use crate::wire::events::LoaderEvent;

/// Where the measurer's events go (the loader child's pipe to PID 1).
pub type MeasureSink = Box<dyn Fn(&LoaderEvent) + Send + Sync>;

/// One module of the plan to measure.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    pub name: ModuleName,
    /// Absolute path.
    pub path: PathBuf,
    pub params: String,
}

/// The measurement of one boot's load. Thread-safe; see the module docs.
pub struct Measurer {
    pcr: u32,
    required: bool,
    state: Mutex<State>,
    changed: Condvar,
    sink: MeasureSink,
}

impl std::fmt::Debug for Measurer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measurer")
            .field("pcr", &self.pcr)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

struct State {
    tpm: Box<dyn Tpm>,
    /// Planned modules not extended yet.
    planned: BTreeSet<ModuleName>,
    /// Modules extended (planned or not).
    measured: BTreeSet<ModuleName>,
    /// Planned modules whose file could not be read: (name, why).
    unreadable: Vec<(ModuleName, String)>,
    /// Every planned module is extended (or measuring stopped).
    plan_done: bool,
    /// Why measuring stopped.
    failed: Option<String>,
}

impl Measurer {
    /// Starts measuring into `pcr` of `tpm`: reads its value and tells
    /// the sink. The plan's modules are `planned` (their names; the
    /// measuring itself is [`Measurer::measure_plan`]). An error when the
    /// PCR cannot be read (the TPM does not answer).
    pub fn start(
        mut tpm: Box<dyn Tpm>,
        pcr: u32,
        required: bool,
        planned: &[PlannedFile],
        sink: MeasureSink,
    ) -> Result<Measurer, String> {
        let initial = tpm
            .read(pcr)
            .map_err(|e| format!("cannot read PCR {pcr} of the TPM: {e}"))?;
        sink(&LoaderEvent::MeasureStart {
            pcr,
            initial: Some(hex(&initial)),
            error: None,
        });
        Ok(Measurer {
            pcr,
            required,
            state: Mutex::new(State {
                tpm,
                planned: planned.iter().map(|p| p.name.clone()).collect(),
                measured: BTreeSet::new(),
                unreadable: Vec::new(),
                plan_done: planned.is_empty(),
                failed: None,
            }),
            changed: Condvar::new(),
            sink,
        })
    }

    /// Extends `head` (manifest, command line), then each planned module
    /// in the order given, hashing each file (as `open` gives it: the
    /// kernel's descriptor opened ahead, which outlives switch_root) while
    /// no lock is held. Blocking: runs on its own thread beside the load.
    /// Returns the PCR's value at the end, if measuring did not stop.
    pub fn measure_plan(
        &self,
        head: &[Event],
        planned: &[PlannedFile],
        open: &dyn Fn(&Path) -> std::io::Result<std::fs::File>,
    ) -> Option<Digest> {
        {
            let mut s = self.lock();
            for e in head {
                if !self.extend(&mut s, e) {
                    break;
                }
            }
        }
        for p in planned {
            let digest = open(&p.path)
                .map_err(|e| e.to_string())
                .and_then(|f| hash_open(&f))
                .map_err(|e| format!("cannot read {} to measure it: {e}", p.path.display()));
            let mut s = self.lock();
            if s.failed.is_some() {
                break;
            }
            match digest {
                Ok(d) => {
                    for e in module_events(&p.name, d, &p.params) {
                        if !self.extend(&mut s, &e) {
                            break;
                        }
                    }
                    if s.failed.is_none() {
                        s.measured.insert(p.name.clone());
                    }
                }
                Err(why) => {
                    log::error!("measure: {why}");
                    s.unreadable.push((p.name.clone(), why));
                }
            }
            s.planned.remove(&p.name);
            drop(s);
            self.changed.notify_all();
        }
        let mut s = self.lock();
        s.plan_done = true;
        let value = self.report_value(&mut s);
        drop(s);
        self.changed.notify_all();
        value
    }

    /// Before inserting `name` (file `path`, `params`): waits until a
    /// planned module is extended, or extends a module the plan does not
    /// have (once the plan's are). `Err` when it cannot be measured and
    /// measuring is required, or when its file could not be read.
    /// `open` gives the file of a module the plan does not have (called
    /// only for those).
    pub fn admit(
        &self,
        name: &ModuleName,
        path: &Path,
        params: &str,
        open: impl FnOnce() -> std::io::Result<std::fs::File>,
    ) -> Result<(), InsertError> {
        let mut open = Some(open);
        let mut s = self.lock();
        loop {
            if s.measured.contains(name) {
                return Ok(());
            }
            if let Some((_, why)) = s.unreadable.iter().find(|(n, _)| n == name) {
                return Err(InsertError::other(format!("not measured: {why}")));
            }
            if let Some(why) = &s.failed {
                if self.required {
                    return Err(InsertError::other(format!(
                        "not loaded unmeasured (measure.required): {why}"
                    )));
                }
                return Ok(());
            }
            if !s.planned.contains(name) && s.plan_done {
                // Added while the load runs: extended now, one at a time
                // (hashing under the lock: these come one by one).
                let file = match open.take() {
                    Some(open) => open(),
                    None => Err(std::io::Error::other("opened once already")),
                };
                let digest = file
                    .map_err(|e| e.to_string())
                    .and_then(|f| hash_open(&f))
                    .map_err(|e| {
                        InsertError::other(format!(
                            "not measured: cannot read {} to measure it: {e}",
                            path.display()
                        ))
                    })?;
                for e in module_events(name, digest, params) {
                    if !self.extend(&mut s, &e) {
                        return self.admit_after_failure(&s);
                    }
                }
                s.measured.insert(name.clone());
                log::info!(
                    "measure: {name} (added during the load) extended into PCR {}",
                    self.pcr
                );
                let _ = self.report_value(&mut s);
                return Ok(());
            }
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Stops measuring (the measuring thread could not start): waiting
    /// insertions go on as [`Measurer::admit`] says for a failure.
    pub fn stop(&self, why: String) {
        let mut s = self.lock();
        s.failed.get_or_insert(why.clone());
        s.plan_done = true;
        drop(s);
        (self.sink)(&LoaderEvent::MeasureEnd {
            value: None,
            error: Some(why),
        });
        self.changed.notify_all();
    }

    fn admit_after_failure(&self, s: &State) -> Result<(), InsertError> {
        match &s.failed {
            Some(why) if self.required => Err(InsertError::other(format!(
                "not loaded unmeasured (measure.required): {why}"
            ))),
            _ => Ok(()),
        }
    }

    /// One extend, told to the sink; false (and measuring stopped) if
    /// the TPM refused it.
    fn extend(&self, s: &mut State, e: &Event) -> bool {
        if s.failed.is_some() {
            return false;
        }
        match s.tpm.extend(self.pcr, &e.digest) {
            Ok(()) => {
                (self.sink)(&LoaderEvent::Extended {
                    digest: hex(&e.digest),
                    what: e.what.clone(),
                });
                true
            }
            Err(err) => {
                let why = format!("extending PCR {} failed ({}): {err}", self.pcr, e.what);
                log::error!("measure: {why}; nothing more is measured");
                s.failed = Some(why.clone());
                (self.sink)(&LoaderEvent::MeasureEnd {
                    value: None,
                    error: Some(why),
                });
                self.changed.notify_all();
                false
            }
        }
    }

    /// Reads the PCR and tells the sink (after the plan, after each late
    /// module).
    fn report_value(&self, s: &mut State) -> Option<Digest> {
        if s.failed.is_some() {
            return None;
        }
        match s.tpm.read(self.pcr) {
            Ok(v) => {
                (self.sink)(&LoaderEvent::MeasureEnd {
                    value: Some(hex(&v)),
                    error: None,
                });
                Some(v)
            }
            Err(e) => {
                (self.sink)(&LoaderEvent::MeasureEnd {
                    value: None,
                    error: Some(format!("cannot read PCR {}: {e}", self.pcr)),
                });
                None
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The largest module file hashed (the kernel's own limit for a module
/// is far below).
const MAX_MODULE_BYTES: u64 = 1 << 30;

/// The SHA-256 of an open file, read in 64 KiB pieces from its start with
/// `pread` (the descriptor's shared offset is left alone).
fn hash_open(file: &std::fs::File) -> Result<Digest, String> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        match file.read_at(&mut buf, at) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => {
                h.update(&buf[..n]);
                at += n as u64;
                if at > MAX_MODULE_BYTES {
                    return Err(format!("larger than {MAX_MODULE_BYTES} bytes"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// A kernel whose insertions wait for their module's measurement
/// ([`Measurer::admit`]); without a measurer, the kernel itself.
pub struct MeasuredKernel<K> {
    pub inner: K,
    pub measurer: Option<std::sync::Arc<Measurer>>,
}

impl<K> std::fmt::Debug for MeasuredKernel<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasuredKernel")
            .field("measurer", &self.measurer)
            .finish_non_exhaustive()
    }
}

impl<K: Kernel> Kernel for MeasuredKernel<K> {
    fn module_file(&self, path: &Path) -> std::io::Result<std::fs::File> {
        self.inner.module_file(path)
    }

    fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
        if let Some(m) = &self.measurer {
            m.admit(req.name, req.path, req.params, || {
                self.inner.module_file(req.path)
            })?;
        }
        self.inner.insert(req)
    }
}

/// The plan's modules to measure, in plan order, with absolute paths.
pub fn planned_files(plan: &modules_manifest::Plan, modules_dir: &Path) -> Vec<PlannedFile> {
    modules_manifest::measure::plan_order(plan)
        .into_iter()
        .map(|m| PlannedFile {
            name: m.name.clone(),
            path: modules_dir.join(m.path),
            params: m.params.to_owned(),
        })
        .collect()
}

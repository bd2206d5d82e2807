//! What the loader child tells PID 1, and its wire format on the pipe.
//!
//! One event is one or more lines of tab-separated fields (`\`, tab and
//! newline escaped as `\\`, `\t`, `\n`), times as whole nanoseconds of
//! boot time. A hand-written format rather than JSON: PID 1 reads it, and
//! serde's derived readers for these types cost `/init` about 30 KiB; floats
//! as integers keep float parsing out of it too. A `planned` event is the
//! `module` (each followed by its `warning`, `reason` and `alternative`
//! lines), `chain` and `note` lines
//! before its own line. Every line starts
//! with a newline, so a line the panic hook writes in the middle of another
//! ends that one (which is then reported as unreadable) and still parses.

use modules_manifest::ModuleName;

use crate::report::{LoadReport, ModuleState};

/// The longest line the reader accepts: a `module` line is a name, its
/// params and its chains; a child gone wrong cannot make PID 1 buffer
/// without bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// At most this many `module`/`chain`/`note` lines before `planned`.
pub const MAX_PLAN_LINES: usize = 1 << 20;

/// The final outcome of one plan node: what the loader's engine tells its
/// observer, and what goes up the pipe as `finished`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOutcome {
    /// The node's index in the plan (and in the report's `load.modules`).
    pub id: usize,
    pub state: ModuleState,
    pub error: Option<String>,
    pub blocked_by: Option<ModuleName>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub worker: Option<usize>,
}

/// One module of the plan, as PID 1 needs it for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedModule {
    pub name: ModuleName,
    pub params: String,
    /// Names of the chains whose entries this module is.
    pub chains: Vec<String>,
    /// Some required chain cannot complete without this module.
    pub required: bool,
    /// The plan node's warnings (see `ModuleReport::warnings`).
    pub warnings: Vec<String>,
    /// See `ModuleReport::reason`.
    pub reason: String,
    /// See `ModuleReport::alternative`.
    pub alternative: Option<String>,
}

/// One chain of the plan: its node ids, in chain order.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChain {
    pub name: String,
    pub required: bool,
    pub nodes: Vec<usize>,
}

/// A module added after the plan ([`LoaderEvent::Added`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AddedModule {
    pub id: usize,
    pub name: ModuleName,
    pub params: String,
    pub reason: String,
}

/// What the loader knows at the end that PID 1 cannot count itself.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSummary {
    /// Workers the pool started.
    pub jobs: usize,
    pub boottime_load_end: f64,
    pub critical_path_s: f64,
    pub critical_path: Vec<ModuleName>,
    /// The loader's peak resident memory (KiB).
    pub vm_hwm_kib: Option<u64>,
}

impl LoadSummary {
    /// The summary of a loader's complete report.
    pub fn of(load: &LoadReport, vm_hwm_kib: Option<u64>) -> Self {
        LoadSummary {
            jobs: load.jobs,
            boottime_load_end: load.boottime_load_end,
            critical_path_s: load.critical_path_s,
            critical_path: load.critical_path.clone(),
            vm_hwm_kib,
        }
    }
}

/// What kind of failure left the loader nothing to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The kernel release could not be read.
    KernelRelease,
    /// The image's module index could not be read.
    Index,
    /// The manifest could not be read again, or is gone.
    Manifest,
    /// Nothing of the manifest can be planned.
    Plan,
    /// Measured loading is required and no TPM answers.
    Measure,
}

impl FailureKind {
    const ALL: [FailureKind; 5] = [
        FailureKind::KernelRelease,
        FailureKind::Index,
        FailureKind::Manifest,
        FailureKind::Plan,
        FailureKind::Measure,
    ];

    /// Its word on the pipe.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::KernelRelease => "kernel-release",
            FailureKind::Index => "index",
            FailureKind::Manifest => "manifest",
            FailureKind::Plan => "plan",
            FailureKind::Measure => "measure",
        }
    }

    pub fn parse(word: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.name() == word)
    }
}

/// The loader's fatal error as PID 1 receives it: its kind, the file or
/// directory it names (empty if none), and the message with its causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderFailure {
    pub kind: FailureKind,
    pub what: String,
    pub message: String,
}

impl std::fmt::Display for LoaderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoaderFailure {}

impl LoaderFailure {
    /// What the user can try.
    pub fn hints(&self) -> Vec<String> {
        vec![match self.kind {
            FailureKind::KernelRelease => "is /proc mounted? the early mount errors above say",
            FailureKind::Index => {
                "the image must hold lib/modules/$(uname -r)/kmodinit.index, written by kmodinit build for the running kernel release: was it built for this kernel, by the kmodinit of this /init?"
            }
            FailureKind::Manifest => {
                "fix the manifest (kmodinit build validates it), or point kmodinit.manifest= at another"
            }
            FailureKind::Plan => "rebuild the image from this manifest and kernel release",
            FailureKind::Measure => {
                "the manifest's measure.required lets no module load unmeasured; kmodinit.measure=off on the kernel command line boots without measuring"
            }
        }
        .to_owned()]
    }
}

/// What the loader child tells PID 1.
#[derive(Debug, Clone, PartialEq)]
pub enum LoaderEvent {
    /// The plan is made and every module file is open: the load starts.
    Planned {
        modules: Vec<PlannedModule>,
        chains: Vec<PlannedChain>,
        notes: Vec<String>,
        boottime_load_start: f64,
    },
    /// A module added to the load after `planned` (coldplug, a kernel
    /// request): node `id` is the next free id (one more than the last
    /// node, planned or added), optional, in no chain. `reason` says why
    /// (`modalias:ALIAS`, `kernel request:NAME`, `dependency of X`, …).
    /// Its `started`/`finished` follow as for a planned node.
    Added(AddedModule),
    /// A note for the report after `planned` (a coldplug match kept out by
    /// a `deny` glob, an alias flood cut short, …).
    Notice(String),
    /// Node `id` went to a worker at `t`.
    Started { id: usize, t: f64 },
    /// Node `id` is decided.
    Finished(NodeOutcome),
    /// Every node is decided (each had its `finished`): the load's totals.
    Done(LoadSummary),
    /// Nothing can be planned (the index is unreadable, …).
    Fatal(LoaderFailure),
    /// The child's panic hook, just before the child dies.
    Panicked { message: String },
    /// The child reached the end of `step` at `t` (the report's `steps`).
    Step { step: String, t: f64 },
    /// Measured loading starts: PCR `pcr` (SHA-256 bank) holds `initial`
    /// (hex); `None` with `error` when nothing is measured (no TPM).
    MeasureStart {
        pcr: u32,
        initial: Option<String>,
        error: Option<String>,
    },
    /// One extend made (hex digest, what it stands for).
    Extended { digest: String, what: String },
    /// The PCR's value read after the last extend so far (hex), or why
    /// measuring stopped.
    MeasureEnd {
        value: Option<String>,
        error: Option<String>,
    },
    /// `/proc/sys/kernel/modules_disabled` was set at `t` (or failed).
    ModulesLocked { t: f64, error: Option<String> },
}

/// The event as the bytes the child writes.
pub fn encode(e: &LoaderEvent) -> Vec<u8> {
    let mut out = Line::default();
    match e {
        LoaderEvent::Planned {
            modules,
            chains,
            notes,
            boottime_load_start,
        } => {
            for m in modules {
                out.start("module")
                    .text(m.name.as_str())
                    .text(&m.params)
                    .flag(m.required);
                for c in &m.chains {
                    out.text(c);
                }
                for w in &m.warnings {
                    out.start("warning").text(w);
                }
                if !m.reason.is_empty() {
                    out.start("reason").text(&m.reason);
                }
                if let Some(a) = &m.alternative {
                    out.start("alternative").text(a);
                }
            }
            for c in chains {
                out.start("chain").text(&c.name).flag(c.required);
                for &n in &c.nodes {
                    out.num(n as u64);
                }
            }
            for n in notes {
                out.start("note").text(n);
            }
            out.start("planned").time(*boottime_load_start);
        }
        LoaderEvent::Added(a) => {
            out.start("added")
                .num(a.id as u64)
                .text(a.name.as_str())
                .text(&a.params)
                .text(&a.reason);
        }
        LoaderEvent::Notice(text) => {
            out.start("notice").text(text);
        }
        LoaderEvent::Started { id, t } => {
            out.start("started").num(*id as u64).time(*t);
        }
        LoaderEvent::Finished(o) => {
            out.start("finished")
                .num(o.id as u64)
                .text(o.state.name())
                .opt_text(o.error.as_deref())
                .opt_text(o.blocked_by.as_ref().map(ModuleName::as_str))
                .opt_time(o.start)
                .opt_time(o.end)
                .opt_num(o.worker.map(|w| w as u64));
        }
        LoaderEvent::Done(s) => {
            out.start("done")
                .num(s.jobs as u64)
                .time(s.boottime_load_end)
                .time(s.critical_path_s)
                .opt_num(s.vm_hwm_kib);
            for m in &s.critical_path {
                out.text(m.as_str());
            }
        }
        LoaderEvent::Fatal(f) => {
            out.start("fatal")
                .text(f.kind.name())
                .text(&f.what)
                .text(&f.message);
        }
        LoaderEvent::Panicked { message } => {
            out.start("panicked").text(message);
        }
        LoaderEvent::Step { step, t } => {
            out.start("step").text(step).time(*t);
        }
        LoaderEvent::MeasureStart {
            pcr,
            initial,
            error,
        } => {
            out.start("measure")
                .num(u64::from(*pcr))
                .opt_text(initial.as_deref())
                .opt_text(error.as_deref());
        }
        LoaderEvent::Extended { digest, what } => {
            out.start("extended").text(digest).text(what);
        }
        LoaderEvent::MeasureEnd { value, error } => {
            out.start("measured")
                .opt_text(value.as_deref())
                .opt_text(error.as_deref());
        }
        LoaderEvent::ModulesLocked { t, error } => {
            out.start("locked").time(*t).opt_text(error.as_deref());
        }
    }
    out.0.push(b'\n');
    out.0
}

/// The encoder's line builder.
#[derive(Default)]
struct Line(Vec<u8>);

impl Line {
    fn start(&mut self, tag: &str) -> &mut Self {
        self.0.push(b'\n');
        self.0.extend_from_slice(tag.as_bytes());
        self
    }
    fn text(&mut self, s: &str) -> &mut Self {
        self.0.push(b'\t');
        for b in s.bytes() {
            match b {
                b'\\' => self.0.extend_from_slice(b"\\\\"),
                b'\t' => self.0.extend_from_slice(b"\\t"),
                b'\n' => self.0.extend_from_slice(b"\\n"),
                _ => self.0.push(b),
            }
        }
        self
    }
    /// `None` is an empty field, `Some(s)` is `=` and `s`.
    fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.text(&format!("={s}")),
            None => self.text(""),
        }
    }
    fn num(&mut self, n: u64) -> &mut Self {
        self.text(&n.to_string())
    }
    fn opt_num(&mut self, n: Option<u64>) -> &mut Self {
        match n {
            Some(n) => self.num(n),
            None => self.text(""),
        }
    }
    fn flag(&mut self, b: bool) -> &mut Self {
        self.text(if b { "1" } else { "0" })
    }
    /// Seconds as whole nanoseconds (no float formatting in `/init`).
    fn time(&mut self, s: f64) -> &mut Self {
        self.num((s.max(0.0) * 1e9).round() as u64)
    }
    fn opt_time(&mut self, s: Option<f64>) -> &mut Self {
        match s {
            Some(s) => self.time(s),
            None => self.text(""),
        }
    }
}

/// Splits the child's byte stream into events. Bounded: a line longer
/// than [`MAX_LINE_BYTES`] is dropped and reported.
#[derive(Debug, Default)]
pub struct EventReader {
    buf: Vec<u8>,
    skipping: bool,
    modules: Vec<PlannedModule>,
    chains: Vec<PlannedChain>,
    notes: Vec<String>,
}

impl EventReader {
    /// Feeds `bytes`; returns the events their complete lines finish, and
    /// for each line that is not one, why.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<LoaderEvent, String>> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.buf.len() >= MAX_LINE_BYTES {
                    self.buf.clear();
                    self.skipping = true;
                    out.push(Err(format!("line longer than {MAX_LINE_BYTES} bytes")));
                }
                if !self.skipping {
                    self.buf.push(b);
                }
                continue;
            }
            let line = std::mem::take(&mut self.buf);
            if !self.skipping && !line.is_empty() {
                match std::str::from_utf8(&line) {
                    Ok(text) => {
                        if let Some(e) = self.line(text).transpose() {
                            out.push(e);
                        }
                    }
                    Err(_) => out.push(Err("a line that is not UTF-8".to_owned())),
                }
            }
            self.skipping = false;
        }
        out
    }

    /// One line: `Ok(None)` for a line that adds to a plan not yet done.
    fn line(&mut self, text: &str) -> Result<Option<LoaderEvent>, String> {
        let mut f = Fields::new(text);
        let tag = f.text()?;
        if matches!(
            tag.as_str(),
            "module" | "warning" | "reason" | "alternative" | "chain" | "note"
        ) && self.modules.len() + self.chains.len() + self.notes.len() >= MAX_PLAN_LINES
        {
            return Err(format!("more than {MAX_PLAN_LINES} plan lines"));
        }
        let event = match tag.as_str() {
            "module" => {
                let name = f.name()?;
                let params = f.text()?;
                let required = f.flag()?;
                let chains = f.rest(Fields::text)?;
                self.modules.push(PlannedModule {
                    name,
                    params,
                    chains,
                    required,
                    warnings: Vec::new(),
                    reason: String::new(),
                    alternative: None,
                });
                return Ok(None);
            }
            "reason" | "alternative" => {
                let text = f.text()?;
                f.end()?;
                let m = self
                    .modules
                    .last_mut()
                    .ok_or("a reason or alternative before any module")?;
                if tag == "reason" {
                    m.reason = text;
                } else {
                    m.alternative = Some(text);
                }
                return Ok(None);
            }
            "warning" => {
                let text = f.text()?;
                f.end()?;
                let m = self
                    .modules
                    .last_mut()
                    .ok_or("a warning before any module")?;
                m.warnings.push(text);
                return Ok(None);
            }
            "chain" => {
                let name = f.text()?;
                let required = f.flag()?;
                let nodes = f.rest(Fields::index)?;
                self.chains.push(PlannedChain {
                    name,
                    required,
                    nodes,
                });
                return Ok(None);
            }
            "note" => {
                self.notes.push(f.text()?);
                return Ok(None);
            }
            "planned" => LoaderEvent::Planned {
                boottime_load_start: f.time()?,
                modules: std::mem::take(&mut self.modules),
                chains: std::mem::take(&mut self.chains),
                notes: std::mem::take(&mut self.notes),
            },
            "added" => LoaderEvent::Added(AddedModule {
                id: f.index()?,
                name: f.name()?,
                params: f.text()?,
                reason: f.text()?,
            }),
            "notice" => LoaderEvent::Notice(f.text()?),
            "started" => LoaderEvent::Started {
                id: f.index()?,
                t: f.time()?,
            },
            "finished" => LoaderEvent::Finished(NodeOutcome {
                id: f.index()?,
                state: ModuleState::from_name(&f.text()?).ok_or("unknown module state")?,
                error: f.opt_text()?,
                blocked_by: f
                    .opt_text()?
                    .map(|n| ModuleName::new(&n).map_err(|e| e.to_string()))
                    .transpose()?,
                start: f.opt(Fields::time)?,
                end: f.opt(Fields::time)?,
                worker: f.opt(Fields::index)?,
            }),
            "done" => LoaderEvent::Done(LoadSummary {
                jobs: f.index()?,
                boottime_load_end: f.time()?,
                critical_path_s: f.time()?,
                vm_hwm_kib: f.opt(Fields::num)?,
                critical_path: f.rest(Fields::name)?,
            }),
            "fatal" => {
                let kind = f.text()?;
                LoaderEvent::Fatal(LoaderFailure {
                    kind: FailureKind::parse(&kind)
                        .ok_or_else(|| format!("unknown failure {kind:?}"))?,
                    what: f.text()?,
                    message: f.text()?,
                })
            }
            "panicked" => LoaderEvent::Panicked { message: f.text()? },
            "step" => LoaderEvent::Step {
                step: f.text()?,
                t: f.time()?,
            },
            "measure" => LoaderEvent::MeasureStart {
                pcr: u32::try_from(f.num()?).map_err(|_| "PCR out of range")?,
                initial: f.opt_text()?,
                error: f.opt_text()?,
            },
            "extended" => LoaderEvent::Extended {
                digest: f.text()?,
                what: f.text()?,
            },
            "measured" => LoaderEvent::MeasureEnd {
                value: f.opt_text()?,
                error: f.opt_text()?,
            },
            "locked" => LoaderEvent::ModulesLocked {
                t: f.time()?,
                error: f.opt_text()?,
            },
            other => return Err(format!("unknown event {other:?}")),
        };
        f.end()?;
        Ok(Some(event))
    }
}

/// The fields of one line, unescaped one by one.
struct Fields<'a> {
    fields: std::str::Split<'a, char>,
    peeked: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(line: &'a str) -> Self {
        Fields {
            fields: line.split('\t'),
            peeked: None,
        }
    }

    fn raw(&mut self) -> Result<&'a str, String> {
        self.peeked
            .take()
            .or_else(|| self.fields.next())
            .ok_or_else(|| "a field is missing".to_owned())
    }

    fn text(&mut self) -> Result<String, String> {
        unescape(self.raw()?)
    }

    fn opt_text(&mut self) -> Result<Option<String>, String> {
        let raw = self.raw()?;
        match raw.strip_prefix('=') {
            Some(s) => unescape(s).map(Some),
            None if raw.is_empty() => Ok(None),
            None => Err(format!("bad optional field {raw:?}")),
        }
    }

    fn name(&mut self) -> Result<ModuleName, String> {
        ModuleName::new(&self.text()?).map_err(|e| e.to_string())
    }

    fn num(&mut self) -> Result<u64, String> {
        let raw = self.raw()?;
        raw.parse().map_err(|_| format!("bad number {raw:?}"))
    }

    fn index(&mut self) -> Result<usize, String> {
        usize::try_from(self.num()?).map_err(|e| e.to_string())
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.raw()? {
            "1" => Ok(true),
            "0" => Ok(false),
            other => Err(format!("bad flag {other:?}")),
        }
    }

    fn time(&mut self) -> Result<f64, String> {
        Ok(self.num()? as f64 / 1e9)
    }

    /// An empty field is `None`, anything else `read`.
    fn opt<T>(&mut self, read: fn(&mut Self) -> Result<T, String>) -> Result<Option<T>, String> {
        let raw = self.raw()?;
        if raw.is_empty() {
            return Ok(None);
        }
        self.peeked = Some(raw);
        read(self).map(Some)
    }

    /// Every remaining field, read with `read`.
    fn rest<T>(&mut self, read: fn(&mut Self) -> Result<T, String>) -> Result<Vec<T>, String> {
        let mut out = Vec::new();
        while let Some(raw) = self.peeked.take().or_else(|| self.fields.next()) {
            self.peeked = Some(raw);
            out.push(read(self)?);
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<(), String> {
        match self.raw() {
            Ok(extra) => Err(format!("unexpected field {extra:?}")),
            Err(_) => Ok(()),
        }
    }
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            other => return Err(format!("bad escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn name(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    fn planned() -> LoaderEvent {
        LoaderEvent::Planned {
            modules: vec![
                PlannedModule {
                    name: name("a"),
                    params: "x=\"1\ttab\" y=\\".into(),
                    chains: vec!["root".into(), "more\nlines".into()],
                    required: true,
                    warnings: vec!["a.zz on the command line: a has no parameter zz".into()],
                    reason: "chain:root".into(),
                    alternative: None,
                },
                PlannedModule {
                    name: name("b"),
                    params: String::new(),
                    chains: vec![],
                    required: false,
                    warnings: vec![],
                    reason: "softdep of a".into(),
                    alternative: Some("crypto-crc32c".into()),
                },
            ],
            chains: vec![PlannedChain {
                name: "root".into(),
                required: true,
                nodes: vec![0, 1],
            }],
            notes: vec!["softdep a pre: b".into()],
            boottime_load_start: 2.5,
        }
    }

    fn every_event() -> Vec<LoaderEvent> {
        vec![
            planned(),
            LoaderEvent::Started { id: 1, t: 3.000001 },
            LoaderEvent::Added(AddedModule {
                id: 2,
                name: name("virtio_blk"),
                params: "queue_depth=4".into(),
                reason: "modalias:virtio:d00000002v00001AF4\tx".into(),
            }),
            LoaderEvent::Notice("coldplug: kept out\nby deny".into()),
            LoaderEvent::Finished(NodeOutcome {
                id: 1,
                state: ModuleState::Blocked,
                error: Some(String::new()),
                blocked_by: Some(name("a")),
                start: None,
                end: Some(4.25),
                worker: Some(3),
            }),
            LoaderEvent::Finished(NodeOutcome {
                id: 0,
                state: ModuleState::Loaded,
                error: None,
                blocked_by: None,
                start: Some(1.0),
                end: Some(2.0),
                worker: None,
            }),
            LoaderEvent::Done(LoadSummary {
                jobs: 2,
                boottime_load_end: 9.0,
                critical_path_s: 0.75,
                critical_path: vec![name("a"), name("b")],
                vm_hwm_kib: None,
            }),
            LoaderEvent::Fatal(LoaderFailure {
                kind: FailureKind::Index,
                what: "/lib/modules/6.1\\x".into(),
                message: "cannot read\tthe index".into(),
            }),
            LoaderEvent::Panicked {
                message: "boom".into(),
            },
            LoaderEvent::Step {
                step: "index".into(),
                t: 1.25,
            },
            LoaderEvent::MeasureStart {
                pcr: 9,
                initial: Some("00".repeat(32)),
                error: None,
            },
            LoaderEvent::MeasureStart {
                pcr: 23,
                initial: None,
                error: Some("no TPM".into()),
            },
            LoaderEvent::Extended {
                digest: "ab".repeat(32),
                what: "params kmi_a: tag=x\ty".into(),
            },
            LoaderEvent::MeasureEnd {
                value: Some("cd".repeat(32)),
                error: None,
            },
            LoaderEvent::ModulesLocked {
                t: 7.5,
                error: Some("EPERM".into()),
            },
        ]
    }

    #[test]
    fn every_event_round_trips_whatever_the_chunking() {
        let events = every_event();
        let bytes: Vec<u8> = events.iter().flat_map(encode).collect();
        for chunk in [1, 7, bytes.len()] {
            let mut r = EventReader::default();
            let got: Vec<LoaderEvent> = bytes
                .chunks(chunk)
                .flat_map(|c| r.feed(c))
                .map(|e| e.unwrap())
                .collect();
            assert_eq!(got, events, "chunks of {chunk}");
        }
    }

    #[test]
    fn bad_lines_are_errors_and_the_stream_goes_on() {
        let mut r = EventReader::default();
        let mut bytes = b"\nnot an event\nstarted\t1\nstarted\tx\t1\nfinished\t0\tgone\t\t\t\t\t\nstarted\t1\t2\t3\npanicked\tbad\\q\n"
            .to_vec();
        bytes.extend(encode(&LoaderEvent::Started { id: 4, t: 1.0 }));
        let out = r.feed(&bytes);
        assert_eq!(out.len(), 7, "{out:?}");
        assert!(out[..6].iter().all(Result::is_err), "{out:?}");
        assert_eq!(
            out[6].as_ref().unwrap(),
            &LoaderEvent::Started { id: 4, t: 1.0 }
        );
        // A panic line cutting into another ends that one, then parses.
        let mut r = EventReader::default();
        let mut cut = encode(&planned());
        let at = cut.windows(8).rposition(|w| w == b"\nplanned").unwrap();
        cut.truncate(at + 5);
        cut.extend(encode(&LoaderEvent::Panicked {
            message: "p".into(),
        }));
        let out = r.feed(&cut);
        assert!(out[0].is_err(), "{out:?}");
        assert_eq!(
            out[1].as_ref().unwrap(),
            &LoaderEvent::Panicked {
                message: "p".into()
            }
        );
    }

    #[test]
    fn lines_are_bounded() {
        let mut r = EventReader::default();
        let out = r.feed(&vec![b'x'; MAX_LINE_BYTES + 10]);
        assert_eq!(out.len(), 1);
        assert!(r.buf.is_empty());
        assert!(r.feed(b"\n").is_empty());
        let ok = r.feed(&encode(&LoaderEvent::Started { id: 0, t: 0.0 }));
        assert_eq!(ok.len(), 1);
        assert!(ok[0].is_ok());
    }
}

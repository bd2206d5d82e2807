//! What happened during boot, as `/run/kmodinit/report.json`. The schema is
//! documented in `init/REPORT.md`; every time is `CLOCK_BOOTTIME` seconds
//! (the clock of `/proc/uptime`).

use std::io::{self, Write};
use std::path::Path;

use modules_manifest::ModuleName;
use serde::{Deserialize, Serialize};

/// The version of the report.json schema this build writes.
pub const REPORT_VERSION: u32 = 1;

/// What became of one plan node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleState {
    /// Inserted by this load.
    Loaded,
    /// Already in the kernel: listed in `/proc/modules` before the load, or
    /// the kernel answered `EEXIST`.
    Already,
    /// Built into the kernel (`modules.builtin`).
    Builtin,
    /// The insertion failed (`error` says why).
    Failed,
    /// Not attempted on purpose (blacklisted).
    Skipped,
    /// Not attempted because a module it needs failed, was skipped or was
    /// blocked (`blocked_by` names the module that failed or was skipped).
    Blocked,
    /// Not decided when PID 1 handed the machine over (the boot deadline
    /// passed): inside the kernel (`start` set) or waiting for a module
    /// that is. The loader, still running, replaces it with the final
    /// state in the same file.
    Pending,
}

impl ModuleState {
    /// The state's name in report.json (`loaded`, `failed`, …).
    pub fn name(self) -> &'static str {
        match self {
            ModuleState::Loaded => "loaded",
            ModuleState::Already => "already",
            ModuleState::Builtin => "builtin",
            ModuleState::Failed => "failed",
            ModuleState::Skipped => "skipped",
            ModuleState::Blocked => "blocked",
            ModuleState::Pending => "pending",
        }
    }

    /// The state named `name` ([`ModuleState::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            ModuleState::Loaded,
            ModuleState::Already,
            ModuleState::Builtin,
            ModuleState::Failed,
            ModuleState::Skipped,
            ModuleState::Blocked,
            ModuleState::Pending,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// True when the module is available to its dependents.
    pub fn is_satisfied(self) -> bool {
        matches!(
            self,
            ModuleState::Loaded | ModuleState::Already | ModuleState::Builtin
        )
    }
}

/// One plan node's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleReport {
    pub name: ModuleName,
    pub state: ModuleState,
    /// The parameter string passed to the kernel (or that would have been).
    pub params: String,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// For `blocked`: the module whose failure (or skip) blocked this one.
    pub blocked_by: Option<ModuleName>,
    /// When the kernel call started / ended; `None` when no call was made.
    pub start: Option<f64>,
    pub end: Option<f64>,
    /// The pool worker (0-based) that made the kernel call.
    pub worker: Option<usize>,
    /// Names of the chains whose entries this module is.
    pub chains: Vec<String>,
    /// What deserves a look but stopped nothing: a command-line parameter
    /// the module does not declare (checked against the image's
    /// `modules.params`).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Why the module was loaded: for a node of the plan, its strongest
    /// reason ([`modules_manifest::PlanNode::reason`]: `chain:NAME`,
    /// `dependency of X`, `softdep of X`, `cmdline`); for a module added
    /// while the load ran, `modalias:ALIAS` (coldplug), `kernel
    /// request:NAME`, or `dependency of X` / `softdep of X` for what those
    /// pulled in.
    #[serde(default)]
    pub reason: String,
    /// The alias this module is one of several matches of
    /// ([`modules_manifest::PlanNode::alternative`]): all were tried, and
    /// unless it is required its failure is only a note (see
    /// [`note_alternatives`]).
    #[serde(default)]
    pub alternative: Option<String>,
}

/// What the report says about a node of the plan: its reason, and the
/// alias it is an alternative for.
pub fn plan_facts(node: &modules_manifest::PlanNode) -> (String, Option<String>) {
    (
        node.reason().map(ToString::to_string).unwrap_or_default(),
        node.alternative.as_ref().map(|a| a.alias.clone()),
    )
}

/// Adds to every failed module that is one of several matches of an alias
/// a warning naming the matches and those that loaded, e.g. `one of the
/// modules crypto-crc32c matched (crc32c_generic, crc32c_intel), all
/// tried as modprobe does; loaded: crc32c_generic`. Its failure blocks
/// nothing unless something needs it through a dependency (then its
/// dependents say so). Idempotent.
pub fn note_alternatives(modules: &mut [ModuleReport]) {
    let mut notes = Vec::new();
    for (i, m) in modules.iter().enumerate() {
        let Some(alias) = &m.alternative else {
            continue;
        };
        if m.state != ModuleState::Failed {
            continue;
        }
        let matches: Vec<&ModuleReport> = modules
            .iter()
            .filter(|o| o.alternative.as_ref() == Some(alias))
            .collect();
        let names: Vec<&str> = matches.iter().map(|o| o.name.as_str()).collect();
        let loaded: Vec<&str> = matches
            .iter()
            .filter(|o| o.state.is_satisfied())
            .map(|o| o.name.as_str())
            .collect();
        let loaded = if loaded.is_empty() {
            "none".to_owned()
        } else {
            loaded.join(", ")
        };
        notes.push((
            i,
            format!(
                "one of the modules {alias} matched ({}), all tried as modprobe does; loaded: {loaded}",
                names.join(", ")
            ),
        ));
    }
    for (i, note) in notes {
        let w = &mut modules[i].warnings;
        if !w.contains(&note) {
            w.push(note);
        }
    }
}

/// Keeps in `into` the warnings PID 1 added to the modules of `before`
/// (firmware requests the kernel could not satisfy), when the loader's
/// later view of the load replaces PID 1's. Each warning once.
pub fn keep_warnings(into: &mut LoadReport, before: &LoadReport) {
    for m in &mut into.modules {
        let Some(b) = before.modules.iter().find(|b| b.name == m.name) else {
            continue;
        };
        for w in &b.warnings {
            if !m.warnings.contains(w) {
                m.warnings.push(w.clone());
            }
        }
    }
}

impl ModuleReport {
    /// Seconds spent in the kernel call (0 when none was made).
    pub fn duration(&self) -> f64 {
        match (self.start, self.end) {
            (Some(s), Some(e)) if e > s => e - s,
            _ => 0.0,
        }
    }
}

/// A required chain that could not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainFailure {
    pub chain: String,
    /// The module that failed (or was skipped) and stopped the chain.
    pub module: ModuleName,
    pub error: String,
}

impl ChainFailure {
    /// The failures of the required chains given as (name, node ids): a
    /// chain fails at its first decided module that is not satisfied, and
    /// the failure names the module that caused it (through `blocked_by`).
    /// `pending` modules are not decided: they fail nothing (yet).
    pub fn of_required<'a>(
        chains: impl IntoIterator<Item = (&'a str, &'a [usize])>,
        modules: &[ModuleReport],
    ) -> Vec<ChainFailure> {
        let mut out = Vec::new();
        for (chain, nodes) in chains {
            let first_bad = nodes
                .iter()
                .filter_map(|&id| modules.get(id))
                .find(|m| m.state != ModuleState::Pending && !m.state.is_satisfied());
            if let Some(m) = first_bad {
                let root = m
                    .blocked_by
                    .as_ref()
                    .and_then(|b| modules.iter().find(|r| &r.name == b))
                    .unwrap_or(m);
                out.push(ChainFailure {
                    chain: chain.to_owned(),
                    module: root.name.clone(),
                    error: root
                        .error
                        .clone()
                        .unwrap_or_else(|| root.state.name().to_owned()),
                });
            }
        }
        out
    }
}

/// The load phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// One entry per plan node, in plan order.
    pub modules: Vec<ModuleReport>,
    /// Worker threads the pool started (on demand, at most the requested
    /// or automatic width; 1 when the calling thread did the work alone,
    /// 0 when nothing needed inserting).
    pub jobs: usize,
    pub boottime_load_start: f64,
    pub boottime_load_end: f64,
    /// `boottime_load_end - boottime_load_start`.
    pub wall_s: f64,
    /// The longest dependency path under the measured per-module times: the
    /// least wall time any schedule could have achieved.
    pub critical_path_s: f64,
    /// The modules of that path, first to last.
    pub critical_path: Vec<ModuleName>,
    /// Required chains that could not complete; empty on success.
    pub failed_required_chains: Vec<ChainFailure>,
}

impl LoadReport {
    /// The report entry for `name`.
    pub fn module(&self, name: &str) -> Option<&ModuleReport> {
        self.modules.iter().find(|m| m.name.as_str() == name)
    }

    /// True when every required chain completed.
    pub fn required_ok(&self) -> bool {
        self.failed_required_chains.is_empty()
    }
}

/// The whole boot, written to `/run/kmodinit/report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// First line of `main`.
    pub boottime_init_start: f64,
    pub boottime_load_start: f64,
    pub boottime_load_end: f64,
    /// Just before exec of the real init; `None` until then.
    pub boottime_exec: Option<f64>,
    /// `/proc/cmdline` as read.
    pub cmdline: String,
    /// Path of the manifest used, if one was read.
    pub manifest: Option<String>,
    pub load: Option<LoadReport>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
    /// Peak resident memory of `/init` (`VmHWM` of `/proc/self/status`).
    pub vm_hwm_kib: Option<u64>,
    /// The loader child process; `None` when none was started.
    pub loader: Option<LoaderInfo>,
    /// When each step of the boot ended, PID 1's and the loader child's,
    /// in the order they were recorded (see init/REPORT.md for the names).
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Measured loading (manifest `measure`, `kmodinit.measure=`): what
    /// was extended into which PCR. `None` when it was not asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<MeasureReport>,
    /// When module loading was locked (`lock_modules`): `None` until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_locked: Option<LockReport>,
}

/// Measured loading, as the loader child did it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasureReport {
    pub pcr: u32,
    /// Always `sha256`.
    pub bank: String,
    /// The PCR's value before the first extend (hex); `None` when nothing
    /// was measured.
    pub initial: Option<String>,
    /// Every extend, in order: replaying them from `initial` gives `final`.
    pub events: Vec<MeasureEvent>,
    /// The PCR's value read after the last extend (hex).
    #[serde(rename = "final")]
    pub final_value: Option<String>,
    /// Why nothing (or not everything) was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One extend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasureEvent {
    /// SHA-256, hex.
    pub digest: String,
    /// `manifest`, `cmdline {…}`, `module NAME`, `params NAME: PARAMS`.
    pub what: String,
}

/// `/proc/sys/kernel/modules_disabled` set to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockReport {
    /// Boot time (s) of the write.
    pub t: f64,
    /// Why the write failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One stamp of the boot's timeline: `process` (`init` for PID 1, `loader`
/// for the loader child) reached the end of `step` at `t` (boot time, s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub process: String,
    pub step: String,
    pub t: f64,
}

impl Step {
    /// PID 1's step `step` at `t`.
    pub fn init(step: &str, t: f64) -> Step {
        Step {
            process: "init".to_owned(),
            step: step.to_owned(),
            t,
        }
    }
}

/// The loader child, as PID 1 and the child itself saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoaderInfo {
    pub pid: i32,
    /// Its peak resident memory (`VmHWM`), when it said.
    pub vm_hwm_kib: Option<u64>,
    /// How it ended, if it had ended when PID 1 last wrote the report
    /// (`exited with status 0`, `killed by SIGKILL`, …).
    pub exit: Option<String>,
    /// Modules still `pending` at the handover, and when the reporter
    /// (forked by PID 1 at exec) wrote their final states into this file
    /// (boot time, s).
    pub pending_at_handover: usize,
    pub boottime_late_update: Option<f64>,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            version: REPORT_VERSION,
            boottime_init_start: 0.0,
            boottime_load_start: 0.0,
            boottime_load_end: 0.0,
            boottime_exec: None,
            cmdline: String::new(),
            manifest: None,
            load: None,
            notes: Vec::new(),
            errors: Vec::new(),
            vm_hwm_kib: None,
            loader: None,
            steps: Vec::new(),
            measure: None,
            modules_locked: None,
        }
    }
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail (no maps with non-string
        // keys, no fallible Serialize impls); stay total anyway.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            format!("{{\"version\":{REPORT_VERSION},\"errors\":[\"report: {e}\"]}}")
        })
    }

    /// Writes the report as JSON to `path` atomically: the parent directory
    /// is created, the JSON goes to a temporary file beside `path`, is synced
    /// and renamed over it, so a reader sees the old report or the new one,
    /// never half of one.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let file_name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("report path {} has no file name", path.display()),
            )
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_json().as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Reads `VmHWM` from `<proc>/self/status` (kibibytes), if available.
    pub fn read_vm_hwm_kib(proc: &Path) -> Option<u64> {
        let status = std::fs::read_to_string(proc.join("self/status")).ok()?;
        parse_vm_hwm_kib(&status)
    }
}

/// `VmHWM` (peak resident set) from a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm() {
        assert_eq!(
            parse_vm_hwm_kib("Name:\tinit\nVmHWM:\t    1234 kB\n"),
            Some(1234)
        );
        assert_eq!(parse_vm_hwm_kib("Name:\tinit\n"), None);
    }
}

//! Reading kmodinit's `report.json` (DESIGN.md, boot step 4) through the
//! types `/init` writes it with (`kmodinit_report`), plus the two figures
//! the benchmark derives from a report. Unknown fields are ignored, so a
//! report from a newer `/init` still reads; a missing field is an error that
//! names it.

use kmodinit_report::ModuleState;
pub use kmodinit_report::Report as BootReport;

/// Parses a report; the error names what is wrong in it.
pub fn from_json(text: &str) -> Result<BootReport, String> {
    serde_json::from_str(text).map_err(|e| format!("report.json: {e}"))
}

/// Converts the JSON the harness cut out of the console.
pub fn from_value(v: serde_json::Value) -> Result<BootReport, String> {
    serde_json::from_value(v).map_err(|e| format!("report.json: {e}"))
}

/// What the benchmark reads out of a report.
pub trait ReportFigures {
    /// The load phase's wall time in seconds, from the boot-level stamps
    /// (falling back to the load report's own when those are missing).
    fn load_wall_s(&self) -> Option<f64>;

    /// How many modules ended in `failed` or `blocked`.
    fn failures(&self) -> usize;
}

/// True for the states the benchmark counts as failures.
pub fn is_failure(state: ModuleState) -> bool {
    matches!(state, ModuleState::Failed | ModuleState::Blocked)
}

/// A state as report.json spells it (`failed`, `blocked`, …).
pub fn state_name(state: ModuleState) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{state:?}"),
    }
}

impl ReportFigures for BootReport {
    fn load_wall_s(&self) -> Option<f64> {
        let (start, end) = if self.boottime_load_end > 0.0 {
            (self.boottime_load_start, self.boottime_load_end)
        } else {
            let load = self.load.as_ref()?;
            (load.boottime_load_start, load.boottime_load_end)
        };
        (end >= start && end > 0.0).then_some(end - start)
    }

    fn failures(&self) -> usize {
        self.load.as_ref().map_or(0, |l| {
            l.modules.iter().filter(|m| is_failure(m.state)).count()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kmodinit_report::{LoadReport, ModuleReport};
    use modules_manifest::ModuleName;

    fn module(name: &str, state: ModuleState) -> ModuleReport {
        ModuleReport {
            name: ModuleName::new(name).unwrap(),
            state,
            params: String::new(),
            error: None,
            blocked_by: None,
            start: None,
            end: None,
            worker: None,
            chains: Vec::new(),
            warnings: Vec::new(),
            reason: String::new(),
            alternative: None,
        }
    }

    fn load(start: f64, end: f64, modules: Vec<ModuleReport>) -> LoadReport {
        LoadReport {
            modules,
            jobs: 1,
            boottime_load_start: start,
            boottime_load_end: end,
            wall_s: end - start,
            critical_path_s: 0.0,
            critical_path: Vec::new(),
            failed_required_chains: Vec::new(),
        }
    }

    #[test]
    fn parses_a_report_and_ignores_unknown_fields() {
        let text = r#"{"version":1,"boottime_init_start":1.5,"boottime_load_start":1.6,
            "boottime_load_end":2.1,"boottime_exec":2.2,"cmdline":"quiet","future":[1],
            "manifest":"/etc/kmodinit/manifest.json",
            "load":{"modules":[{"name":"a","state":"loaded","params":"x=1","error":null,
            "start":1.6,"end":1.7,"worker":0,"chains":["c"],"blocked_by":null}],"jobs":4,
            "boottime_load_start":1.6,"boottime_load_end":2.1,"wall_s":0.5,
            "critical_path_s":0.45,"critical_path":["a"],"failed_required_chains":[]},
            "notes":[],"errors":[],"vm_hwm_kib":812}"#;
        let r = from_json(text).unwrap();
        assert!((r.load_wall_s().unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(r.vm_hwm_kib, Some(812));
        let load = r.load.as_ref().unwrap();
        assert_eq!(load.modules[0].worker, Some(0));
        assert_eq!(load.modules[0].state, ModuleState::Loaded);
        assert_eq!(load.critical_path, vec![ModuleName::new("a").unwrap()]);
        assert_eq!(r.failures(), 0);
    }

    #[test]
    fn what_init_writes_reads_back() {
        let mut r = BootReport {
            boottime_load_start: 1.0,
            boottime_load_end: 1.5,
            ..BootReport::default()
        };
        r.load = Some(load(
            1.0,
            1.5,
            vec![
                module("a", ModuleState::Loaded),
                module("b", ModuleState::Blocked),
            ],
        ));
        let back = from_json(&r.to_json()).unwrap();
        assert_eq!(back, r);
        let back = from_value(serde_json::from_str(&r.to_json()).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn load_wall_falls_back_to_the_load_report() {
        let r = BootReport {
            load: Some(load(
                3.0,
                3.25,
                vec![
                    module("b", ModuleState::Failed),
                    module("c", ModuleState::Builtin),
                ],
            )),
            ..BootReport::default()
        };
        assert!((r.load_wall_s().unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(r.failures(), 1);
        assert_eq!(state_name(ModuleState::Blocked), "blocked");
        assert_eq!(BootReport::default().load_wall_s(), None);
    }

    #[test]
    fn a_truncated_report_is_an_error_that_names_the_file() {
        let err = from_json("{\"load\": {").unwrap_err();
        assert!(err.starts_with("report.json:"), "{err}");
        // A report without a field /init always writes is refused by name.
        let err = from_json(r#"{"version":1}"#).unwrap_err();
        assert!(err.contains("boottime_init_start"), "{err}");
    }
}

//! The subset of kmodinit's `report.json` (DESIGN.md, boot step 4) that the
//! benchmark reads. Deliberately lenient: unknown fields are ignored and
//! missing ones default, so a report from a newer `/init` still renders.

use serde::Deserialize;

/// The whole-boot report written to `/run/kmodinit/report.json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BootReport {
    pub boottime_init_start: f64,
    pub boottime_load_start: f64,
    pub boottime_load_end: f64,
    pub boottime_exec: Option<f64>,
    pub load: Option<LoadReport>,
    pub errors: Vec<String>,
    pub vm_hwm_kib: Option<u64>,
}

/// The load phase: one entry per planned module.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoadReport {
    pub modules: Vec<ModuleReport>,
    pub jobs: usize,
    pub boottime_load_start: f64,
    pub boottime_load_end: f64,
    pub wall_s: f64,
    pub critical_path_s: f64,
    pub critical_path: Vec<String>,
}

/// One module's outcome; times are CLOCK_BOOTTIME seconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ModuleReport {
    pub name: String,
    pub state: String,
    pub params: String,
    pub error: Option<String>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub worker: Option<usize>,
    pub chains: Vec<String>,
}

impl BootReport {
    /// Parses a report; the error names what is wrong in it.
    pub fn from_json(text: &str) -> Result<BootReport, String> {
        serde_json::from_str(text).map_err(|e| format!("report.json: {e}"))
    }

    /// Converts the JSON the harness cut out of the console.
    pub fn from_value(v: serde_json::Value) -> Result<BootReport, String> {
        serde_json::from_value(v).map_err(|e| format!("report.json: {e}"))
    }

    /// The load phase's wall time in seconds, from the boot-level stamps
    /// (falling back to the load report's own when those are missing).
    pub fn load_wall_s(&self) -> Option<f64> {
        let (start, end) = if self.boottime_load_end > 0.0 {
            (self.boottime_load_start, self.boottime_load_end)
        } else {
            let load = self.load.as_ref()?;
            (load.boottime_load_start, load.boottime_load_end)
        };
        (end >= start && end > 0.0).then_some(end - start)
    }

    /// How many modules ended in `failed` or `blocked`.
    pub fn failures(&self) -> usize {
        self.load.as_ref().map_or(0, |l| {
            l.modules
                .iter()
                .filter(|m| m.state == "failed" || m.state == "blocked")
                .count()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report_and_ignores_unknown_fields() {
        let text = r#"{"version":1,"boottime_init_start":1.5,"boottime_load_start":1.6,
            "boottime_load_end":2.1,"boottime_exec":2.2,"cmdline":"quiet","future":[1],
            "load":{"modules":[{"name":"a","state":"loaded","params":"x=1","start":1.6,
            "end":1.7,"worker":0,"chains":["c"],"blocked_by":null}],"jobs":4,
            "boottime_load_start":1.6,"boottime_load_end":2.1,"wall_s":0.5,
            "critical_path_s":0.45,"critical_path":["a"],"failed_required_chains":[]},
            "notes":[],"errors":[],"vm_hwm_kib":812}"#;
        let r = BootReport::from_json(text).unwrap();
        assert!((r.load_wall_s().unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(r.vm_hwm_kib, Some(812));
        let load = r.load.as_ref().unwrap();
        assert_eq!(load.modules[0].worker, Some(0));
        assert_eq!(load.critical_path, vec!["a".to_string()]);
        assert_eq!(r.failures(), 0);
    }

    #[test]
    fn load_wall_falls_back_to_the_load_report() {
        let text = r#"{"load":{"boottime_load_start":3.0,"boottime_load_end":3.25,
            "modules":[{"name":"b","state":"failed"}]}}"#;
        let r = BootReport::from_json(text).unwrap();
        assert!((r.load_wall_s().unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(r.failures(), 1);
    }

    #[test]
    fn a_truncated_report_is_an_error_that_names_the_file() {
        let err = BootReport::from_json("{\"load\": {").unwrap_err();
        assert!(err.starts_with("report.json:"), "{err}");
    }
}

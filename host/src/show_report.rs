//! `kmodinit report`: a boot's `report.json` as a text timeline, and as an
//! SVG chart when asked ([`crate::timeline`] draws both).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use kmodinit_report::Report;

/// Where `kmodinit report` reads by default: where the boot wrote it,
/// which survives switch_root.
pub const DEFAULT_REPORT: &str = "/run/kmodinit/report.json";

/// Why `kmodinit report` could not show a report; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The report is missing or unreadable.
    #[error("cannot read the report {}: {source}{}", path.display(), not_booted_hint(path, source))]
    Read { path: PathBuf, source: io::Error },
    /// The report is not a report.json (not JSON, or a field missing).
    #[error("the report {} is not a kmodinit report.json: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The SVG could not be written.
    #[error("cannot write the SVG {}: {source}", path.display())]
    WriteSvg { path: PathBuf, source: io::Error },
}

fn not_booted_hint(path: &Path, source: &io::Error) -> &'static str {
    if source.kind() == io::ErrorKind::NotFound && path == Path::new(DEFAULT_REPORT) {
        " (this machine did not boot through kmodinit, or /run was cleared; name a report.json)"
    } else {
        ""
    }
}

/// Reads and parses the report at `path`.
pub fn read(path: &Path) -> Result<Report, ReportError> {
    let text = std::fs::read(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| ReportError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// The text timeline of the report at `path`, and the SVG chart written to
/// `svg` when given (its edges: the report's critical path, the only
/// dependencies a report records).
pub fn show(path: &Path, svg: Option<&Path>) -> Result<String, ReportError> {
    let r = read(path)?;
    let mut out = format!("report {}\n", path.display());
    out.push_str(&crate::timeline::render_text(&r));
    if let Some(svg) = svg {
        let title = format!(
            "kmodinit load phase: {} ({} workers)",
            path.display(),
            r.load.as_ref().map_or(0, |l| l.jobs)
        );
        let chart = crate::timeline::render_svg(
            &title,
            &crate::timeline::bars(&r),
            &crate::timeline::critical_path_edges(&r),
        );
        std::fs::write(svg, chart).map_err(|source| ReportError::WriteSvg {
            path: svg.to_path_buf(),
            source,
        })?;
        let _ = writeln!(out, "SVG chart written to {}", svg.display());
    }
    Ok(out)
}

//! Firmware requests the kernel could not satisfy while the modules
//! loaded become warnings on the module that made them, so "loaded" never
//! hides a driver without its firmware.
//!
//! PID 1 opens `/dev/kmsg` read-only and non-blocking at the end of the
//! kernel log just before the loader's go ([`Watch::start`]), and reads
//! the records written since once the loader hands over
//! ([`Watch::attribute`]). Only the kernel's own line counts:
//! `DEVICE: Direct firmware load for NAME failed with error N` (upstream
//! `_request_firmware`, printed once every variant and the fallbacks
//! failed). Debian's `firmware: failed to load NAME (-2)` is not used: it
//! also precedes a successful load of `NAME.xz`. NAME is mapped to the
//! modules whose `.modinfo` names it through the image's
//! `modules.firmware` (written by the image builder); a name no module of
//! the image declares is a note on the boot.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use modules_manifest::firmware::{modules_naming, FIRMWARE_FILE};

use crate::report::Report;

/// The largest `modules.firmware` read, in bytes.
const MAX_MAP_BYTES: u64 = 4 << 20;
/// At most this many kernel log records are read (the ring buffer holds
/// far fewer; a bound against a log flooded while we read).
const MAX_RECORDS: usize = 100_000;
/// A `/dev/kmsg` read returns one record; the kernel's records are at
/// most 1 KiB of text plus their prefix and dictionary.
const RECORD_BYTES: usize = 8192;

/// A firmware request the kernel gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRequest {
    /// The device that asked (`(NULL device *)` when none).
    pub device: String,
    pub name: String,
    /// The error the kernel returned, e.g. -2 (not found).
    pub error: i32,
}

/// The kernel's failure line in one `/dev/kmsg` record
/// (`PRI,SEQ,USEC,FLAGS;TEXT`), if it is one. Records from user space
/// (facility other than 0, e.g. our own log lines) never count.
pub fn failed_request(record: &str) -> Option<FailedRequest> {
    let (prefix, text) = record.split_once(';')?;
    let pri: u32 = prefix.split(',').next()?.parse().ok()?;
    if pri >> 3 != 0 {
        return None;
    }
    let text = text.lines().next()?;
    let (device, rest) = text.split_once("Direct firmware load for ")?;
    let (name, error) = rest.rsplit_once(" failed with error ")?;
    Some(FailedRequest {
        device: device.trim_end().trim_end_matches(':').to_owned(),
        name: name.to_owned(),
        error: error.trim().parse().ok()?,
    })
}

/// What the warning says about error `e`.
fn error_hint(e: i32) -> &'static str {
    match e {
        -2 => ": no such file in the image's /lib/firmware",
        -22 => ": invalid (an .xz file the kernel cannot decode?)",
        -12 => ": out of memory",
        _ => "",
    }
}

/// The warning for one failed request.
pub fn warning(req: &FailedRequest) -> String {
    format!(
        "firmware {} requested by {}: the kernel could not load it (error {}{})",
        req.name,
        req.device,
        req.error,
        error_hint(req.error)
    )
}

/// Adds each failed request to `report`: a warning on every module of
/// the load whose firmware list (`map_text`, `modules.firmware`) names
/// it, else a note on the boot. Each warning once.
pub fn attribute_to(report: &mut Report, requests: &[FailedRequest], map_text: &str) {
    for req in requests {
        let w = warning(req);
        let mut attributed = false;
        let modules = modules_naming(map_text, &req.name);
        if let Some(load) = report.load.as_mut() {
            for m in load
                .modules
                .iter_mut()
                .filter(|m| modules.contains(&m.name))
            {
                attributed = true;
                if !m.warnings.contains(&w) {
                    log::warn!("{}: {w}", m.name);
                    m.warnings.push(w.clone());
                }
            }
        }
        if !attributed {
            let note = format!("{w}; no module of this load names it");
            if !report.notes.contains(&note) {
                log::warn!("{note}");
                report.notes.push(note);
            }
        }
    }
}

/// `/dev/kmsg`, read from where the load started.
#[derive(Debug)]
pub struct Watch {
    kmsg: File,
}

impl Watch {
    /// Opens `dev/kmsg` at the end of the log. `None` (nothing is
    /// attributed) if it cannot be opened.
    pub fn start(dev: &Path) -> Option<Watch> {
        let mut kmsg = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(dev.join("kmsg"))
            .map_err(|e| log::debug!("firmware requests are not watched: {e}"))
            .ok()?;
        kmsg.seek(SeekFrom::End(0)).ok()?;
        Some(Watch { kmsg })
    }

    /// The kernel's failed firmware requests since [`Watch::start`].
    pub fn failed_requests(mut self) -> Vec<FailedRequest> {
        let mut out: Vec<FailedRequest> = Vec::new();
        let mut buf = vec![0u8; RECORD_BYTES];
        for _ in 0..MAX_RECORDS {
            match self.kmsg.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // The kernel escapes what is not printable (\xNN).
                    let Ok(record) = std::str::from_utf8(&buf[..n]) else {
                        continue;
                    };
                    if let Some(req) = failed_request(record) {
                        if !out.contains(&req) {
                            out.push(req);
                        }
                    }
                }
                // Records overwritten before we read them: go on.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: the end of the log.
                Err(_) => break,
            }
        }
        out
    }

    /// Reads the requests that failed and adds them to `report`, mapped
    /// through `modules_dir/modules.firmware` (an image without it maps
    /// nothing: every failure is a note on the boot).
    pub fn attribute(self, report: &mut Report, modules_dir: Option<&Path>) {
        let requests = self.failed_requests();
        if requests.is_empty() {
            return;
        }
        let mut map = String::new();
        if let Some(dir) = modules_dir {
            // Unreadable: nothing maps, the notes still say what failed.
            let _ = File::open(dir.join(FIRMWARE_FILE))
                .and_then(|f| f.take(MAX_MAP_BYTES).read_to_string(&mut map));
        }
        attribute_to(report, &requests, &map);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn req(device: &str, name: &str, error: i32) -> FailedRequest {
        FailedRequest {
            device: device.into(),
            name: name.into(),
            error,
        }
    }

    #[test]
    fn only_the_kernels_final_line_counts() {
        assert_eq!(
            failed_request(
                "4,812,2301456,-;(NULL device *): Direct firmware load for \
                 kmodinit-test/missing.bin failed with error -2\n"
            ),
            Some(req("(NULL device *)", "kmodinit-test/missing.bin", -2))
        );
        assert_eq!(
            failed_request(
                "4,900,5,-;iwlwifi 0000:00:14.3: Direct firmware load for \
                 iwlwifi-so-a0-gf-a0-72.ucode failed with error -22\n SUBSYSTEM=pci\n"
            ),
            Some(req(
                "iwlwifi 0000:00:14.3",
                "iwlwifi-so-a0-gf-a0-72.ucode",
                -22
            ))
        );
        // Debian's earlier line, also printed before a successful .xz load.
        assert_eq!(
            failed_request("3,811,2301000,-;firmware: failed to load kmodinit-test/a.bin (-2)\n"),
            None
        );
        // User space (facility 1 and up) writing the same words: ignored.
        assert_eq!(
            failed_request(
                "12,813,5,-;kmodinit: Direct firmware load for x failed with error -2\n"
            ),
            None
        );
        for bad in [
            "",
            "no prefix",
            "x,1,2,-;Direct firmware load for a failed with error -2",
            "4,1,2,-;Direct firmware load for a failed with error minus two",
            "4,1,2,-;Direct firmware load for a",
        ] {
            assert_eq!(failed_request(bad), None, "{bad:?}");
        }
    }

    /// A loaded module's report entry, as JSON.
    fn module(name: &str) -> serde_json::Value {
        serde_json::json!({
            "name": name, "state": "loaded", "params": "", "error": null,
            "blocked_by": null, "start": null, "end": null, "worker": null,
            "chains": []
        })
    }

    #[test]
    fn failures_go_to_the_module_that_names_the_file_else_the_boot() {
        let mut report = Report {
            load: Some(
                serde_json::from_value(serde_json::json!({
                    "modules": [module("kmi_fw"), module("e1000e")],
                    "jobs": 1, "boottime_load_start": 0.0, "boottime_load_end": 0.0,
                    "wall_s": 0.0, "critical_path_s": 0.0, "critical_path": [],
                    "failed_required_chains": []
                }))
                .unwrap(),
            ),
            ..Report::default()
        };
        let reqs = [
            req("(NULL device *)", "kmodinit-test/missing.bin", -2),
            req("(NULL device *)", "kmodinit-test/missing.bin", -2),
            req("0000:00:03.0", "other.bin", -22),
        ];
        attribute_to(
            &mut report,
            &reqs,
            "kmi_fw kmodinit-test/missing.bin kmodinit-test/kmi_fw.bin\n",
        );
        let load = report.load.as_ref().unwrap();
        assert_eq!(
            load.modules[0].warnings,
            [
                "firmware kmodinit-test/missing.bin requested by (NULL device *): the kernel \
              could not load it (error -2: no such file in the image's /lib/firmware)"
            ]
        );
        assert!(load.modules[1].warnings.is_empty());
        assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
        assert!(report.notes[0].starts_with("firmware other.bin requested by 0000:00:03.0"));
        assert!(report.notes[0].ends_with("no module of this load names it"));

        // The loader's later view of the load (the reporter after the
        // handover) keeps them.
        let mut later = report.load.clone().unwrap();
        later.modules[0].warnings = vec!["its own".into()];
        crate::report::keep_warnings(&mut later, report.load.as_ref().unwrap());
        crate::report::keep_warnings(&mut later, report.load.as_ref().unwrap());
        assert_eq!(later.modules[0].warnings.len(), 2, "{:?}", later.modules[0]);
        assert!(later.modules[0].warnings[1].starts_with("firmware kmodinit-test/missing.bin"));
    }
}

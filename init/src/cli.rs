//! The binary run by hand on a host (not as PID 1): `kmodinit plan`,
//! `kmodinit --dry-run` and `kmodinit report`. Hand-parsed flags: clap would
//! cost /init size. Nothing here mounts, loads or executes anything.
//!
//! The commands are the cargo feature `host-tools` (on by default, off in
//! `make init-tiny`): without it they are refused with a message, and the
//! plan renderer, the dry-run text and the timeline renderer are not linked
//! into `/init` (sizes in init/SIZE.md). PID 1 itself never needs them.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use modules_manifest::{KernelCmdline, Plan};

use crate::boot::BootError;
#[cfg(feature = "host-tools")]
use {
    crate::boot,
    crate::boot_config::{self, BootConfig},
    crate::failure,
    crate::handover,
    crate::mount::EARLY_MOUNTS,
    crate::report::Report,
    crate::switch_root::NEW_ROOT,
    crate::timeline,
    modules_manifest::{plan, DepIndex, PlanInput},
    std::collections::BTreeSet,
    std::fmt::Write as _,
};

#[cfg(feature = "host-tools")]
pub const USAGE: &str = "\
kmodinit: a PID 1 for initramfs images. Run as /init by the kernel.

On a host it only reads and prints:
  kmodinit plan --manifest M --modules-dir D [--cmdline \"...\"]
      print the load plan of manifest M against the depmod files in D
  kmodinit --dry-run [--cmdline \"...\"] [--manifest M] [--modules-dir D]
      print what the boot would do (defaults: /proc/cmdline, the manifest
      it names or /etc/kmodinit/manifest.json, /lib/modules/$(uname -r))
  kmodinit report [REPORT.json] [--svg OUT.svg]
      print the module timeline of a boot's report (default
      /run/kmodinit/report.json); --svg also writes it as an SVG chart
  kmodinit manifest-from-host [--output FILE] [--modules-root DIR]
                              [--kernel-release R] [--sysroot DIR]
      write a manifest for this machine (default to stdout): its loaded
      modules by subsystem, the root's modules required, the root by UUID;
      notes on stderr say why. --sysroot reads proc, sys and dev there
";

#[cfg(not(feature = "host-tools"))]
pub const USAGE: &str = "\
kmodinit: a PID 1 for initramfs images. Run as /init by the kernel.

This build has no host commands (cargo feature host-tools off, as in
`make init-tiny`): run `kmodinit plan`, `kmodinit --dry-run`,
`kmodinit report` and `kmodinit manifest-from-host` from a `make init` build.
";

/// Why `plan`, `--dry-run` and `report` are refused by a build without
/// `host-tools`.
#[cfg(not(feature = "host-tools"))]
const NO_HOST_TOOLS: &str = "this kmodinit was built without the host-tools cargo feature \
     (make init-tiny): use a `make init` build for `plan`, `--dry-run`, `report` and \
     `manifest-from-host`";

/// Where `kmodinit report` reads by default: where the boot wrote it
/// ([`crate::boot::REPORT_PATH`]), which survives switch_root.
pub const DEFAULT_REPORT: &str = crate::boot::REPORT_PATH;

/// A host invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCommand {
    Plan {
        manifest: PathBuf,
        modules_dir: PathBuf,
        cmdline: String,
    },
    DryRun {
        cmdline: Option<String>,
        manifest: Option<PathBuf>,
        modules_dir: Option<PathBuf>,
    },
    /// `kmodinit report [FILE] [--svg OUT]`.
    Report {
        report: PathBuf,
        svg: Option<PathBuf>,
    },
    /// `kmodinit manifest-from-host`.
    ManifestFromHost {
        sysroot: PathBuf,
        modules_root: Option<PathBuf>,
        kernel_release: Option<String>,
        output: Option<PathBuf>,
    },
    Help,
    /// No mode given: refuse, since we are not PID 1.
    Refuse,
}

/// Parses the arguments after the program name. Errors name the flag.
pub fn parse_args(args: &[String]) -> Result<HostCommand, String> {
    let mut it = args.iter();
    // Only `plan`, `--dry-run` and `report` set it, and only with host-tools.
    #[cfg_attr(not(feature = "host-tools"), allow(unused_mut))]
    let mut mode = None;
    let mut cmdline = None;
    let mut manifest = None;
    let mut modules_dir = None;
    #[cfg_attr(not(feature = "host-tools"), allow(unused_mut))]
    let mut report_file: Option<PathBuf> = None;
    let mut svg = None;
    let mut sysroot = None;
    let mut modules_root = None;
    let mut kernel_release = None;
    let mut output = None;
    while let Some(a) = it.next() {
        let mut value = |flag: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            #[cfg(feature = "host-tools")]
            "plan" if mode.is_none() => mode = Some("plan"),
            #[cfg(feature = "host-tools")]
            "--dry-run" if mode.is_none() => mode = Some("dry-run"),
            #[cfg(feature = "host-tools")]
            "report" if mode.is_none() => mode = Some("report"),
            #[cfg(feature = "host-tools")]
            "manifest-from-host" if mode.is_none() => mode = Some("manifest-from-host"),
            #[cfg(not(feature = "host-tools"))]
            "plan" | "--dry-run" | "report" | "manifest-from-host" => {
                return Err(NO_HOST_TOOLS.into())
            }
            "-h" | "--help" | "help" => return Ok(HostCommand::Help),
            "--cmdline" => cmdline = Some(value(a)?),
            "--manifest" => manifest = Some(PathBuf::from(value(a)?)),
            "--modules-dir" => modules_dir = Some(PathBuf::from(value(a)?)),
            "--svg" => svg = Some(PathBuf::from(value(a)?)),
            "--sysroot" => sysroot = Some(PathBuf::from(value(a)?)),
            "--modules-root" => modules_root = Some(PathBuf::from(value(a)?)),
            "--kernel-release" => kernel_release = Some(value(a)?),
            "--output" | "-o" => output = Some(PathBuf::from(value(a)?)),
            #[cfg(feature = "host-tools")]
            file if mode == Some("report") && report_file.is_none() && !file.starts_with('-') => {
                report_file = Some(PathBuf::from(file))
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let host_flags =
        sysroot.is_some() || modules_root.is_some() || kernel_release.is_some() || output.is_some();
    if mode == Some("manifest-from-host") {
        if cmdline.is_some() || manifest.is_some() || modules_dir.is_some() || svg.is_some() {
            return Err(
                "manifest-from-host takes no --cmdline/--manifest/--modules-dir/--svg".into(),
            );
        }
        return Ok(HostCommand::ManifestFromHost {
            sysroot: sysroot.unwrap_or_else(|| "/".into()),
            modules_root,
            kernel_release,
            output,
        });
    }
    if host_flags {
        return Err(
            "--sysroot/--modules-root/--kernel-release/--output need `manifest-from-host`".into(),
        );
    }
    if mode == Some("report") {
        if cmdline.is_some() || manifest.is_some() || modules_dir.is_some() {
            return Err("report takes no --cmdline/--manifest/--modules-dir".into());
        }
        return Ok(HostCommand::Report {
            report: report_file.unwrap_or_else(|| DEFAULT_REPORT.into()),
            svg,
        });
    }
    if svg.is_some() {
        return Err("--svg needs `report`".into());
    }
    match mode {
        Some("plan") => Ok(HostCommand::Plan {
            manifest: manifest.ok_or("plan needs --manifest")?,
            modules_dir: modules_dir.ok_or("plan needs --modules-dir")?,
            cmdline: cmdline.unwrap_or_default(),
        }),
        Some(_) => Ok(HostCommand::DryRun {
            cmdline,
            manifest,
            modules_dir,
        }),
        None if cmdline.is_some() || manifest.is_some() || modules_dir.is_some() => {
            Err("--cmdline/--manifest/--modules-dir need `plan` or `--dry-run`".into())
        }
        None => Ok(HostCommand::Refuse),
    }
}

/// Plans `manifest` against the index in `modules_dir` with nothing loaded.
#[cfg(feature = "host-tools")]
pub fn plan_from_files(
    manifest_path: &Path,
    modules_dir: &Path,
    cmdline: &KernelCmdline,
) -> Result<Option<Plan>, BootError> {
    let Some(manifest) = boot::read_manifest(manifest_path)? else {
        return Ok(None);
    };
    let index = DepIndex::load(modules_dir).map_err(|source| BootError::Index {
        dir: modules_dir.to_path_buf(),
        source,
    })?;
    let loaded = BTreeSet::new();
    plan(PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline,
        loaded: &loaded,
    })
    .map(Some)
    .map_err(BootError::Plan)
}

/// What the boot would do, as text. Reads the given files only.
#[cfg(feature = "host-tools")]
pub fn dry_run(
    cmdline_text: &str,
    manifest: Option<&Path>,
    modules_dir: Option<&Path>,
) -> Result<String, BootError> {
    let cmdline = KernelCmdline::parse(cmdline_text);
    let mut s = String::from("kmodinit dry run: nothing is mounted, loaded or executed.\n");
    let _ = writeln!(s, "command line: {}", cmdline_text.trim());
    for w in &cmdline.warnings {
        let _ = writeln!(s, "  warning: {w}");
    }
    for m in EARLY_MOUNTS {
        let _ = writeln!(
            s,
            "mount {} on {} ({:?}{})",
            m.fstype,
            m.target,
            m.flags,
            m.data.map(|d| format!(", {d}")).unwrap_or_default()
        );
    }
    let manifest_path = manifest
        .map(Path::to_path_buf)
        .unwrap_or_else(|| boot_config::manifest_path(&cmdline).into());
    let parsed = boot::read_manifest(&manifest_path)?;
    let cfg: BootConfig =
        boot_config::merge(&cmdline, parsed.as_ref()).map_err(BootError::Config)?;
    match &parsed {
        None => {
            let _ = writeln!(
                s,
                "manifest {}: not found, boot with no modules",
                manifest_path.display()
            );
        }
        Some(m) => {
            let dir = match modules_dir {
                Some(d) => d.to_path_buf(),
                None => boot::modules_dir(Path::new("/"), Path::new("/proc"))
                    .map_err(BootError::KernelRelease)?,
            };
            let _ = writeln!(
                s,
                "manifest {}: {} chain(s); modules from {}",
                manifest_path.display(),
                m.chains.len(),
                dir.display()
            );
            if let Some(p) = plan_from_files(&manifest_path, &dir, &cmdline)? {
                let jobs = if cfg.jobs == 0 {
                    "auto".to_string()
                } else {
                    cfg.jobs.to_string()
                };
                let _ = writeln!(s, "load plan ({} node(s), jobs {jobs}):", p.nodes.len());
                s.push_str(&p.render_text());
            }
            let c = crate::coldplug::Settings::of(m, &cmdline);
            if c.enabled {
                let globs = |g: &[String]| {
                    if g.is_empty() {
                        "none".to_owned()
                    } else {
                        g.join(" ")
                    }
                };
                let _ = writeln!(
                    s,
                    "coldplug: match /sys/devices modaliases and uevents against modules.alias, \
                     allow {}, deny {}; settle {} ms, at most until the deadline ({} ms)",
                    globs(&c.allow),
                    globs(&c.deny),
                    crate::coldplug::SETTLE.as_millis(),
                    cfg.deadline.as_millis()
                );
            } else {
                let _ = writeln!(s, "coldplug: off");
            }
        }
    }
    let _ = writeln!(s, "report: {}", boot::REPORT_PATH);
    match &cfg.root {
        None => {
            let _ = writeln!(s, "no root: exec the init inside the initramfs");
        }
        Some(r) => {
            let _ = writeln!(
                s,
                "root {} ({}), {}{}{}, wait {}; mount on {NEW_ROOT}, move /dev /proc /sys /run, free the initramfs, chroot",
                r.device,
                if r.fstypes.is_empty() { "type detected".to_string() } else { r.fstypes.join(",") },
                if r.options.read_only { "ro" } else { "rw" },
                if r.options.flags.is_empty() { String::new() } else { format!(" {:?}", r.options.flags) },
                if r.options.data.is_empty() { String::new() } else { format!(" data={}", r.options.data) },
                r.wait
            );
        }
    }
    // The init is checked on the real root at boot; here every candidate is
    // shown as it would be tried.
    match handover::choose_init(&cfg.init, &[], |_| true) {
        Ok(c) => {
            let _ = writeln!(
                s,
                "exec {} (first that exists of: {}), argv {:?} + the words the kernel passes to /init (e.g. single), env {:?}",
                c.path,
                cfg.init.explicit.clone().unwrap_or_else(|| {
                    let mut v = vec![cfg.init.manifest_path.clone()];
                    v.extend(
                        handover::FALLBACK_INITS
                            .iter()
                            .filter(|p| **p != cfg.init.manifest_path)
                            .map(|p| p.to_string()),
                    );
                    v.join(", ")
                }),
                c.argv,
                c.env
            );
        }
        Err(e) => {
            let _ = writeln!(s, "no init: {e}");
        }
    }
    let action = failure::choose(
        cmdline.on_failure,
        parsed.as_ref().and_then(|m| m.on_failure),
        true,
    );
    let _ = writeln!(
        s,
        "on failure: {} (a rescue without /bin/sh halts)",
        action.describe()
    );
    Ok(s)
}

/// Why `kmodinit report` could not show a report; each names the file.
#[derive(Debug)]
pub enum ReportError {
    /// The report is missing or unreadable.
    Read { path: PathBuf, source: io::Error },
    /// The report is not a report.json (not JSON, or a field missing).
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The SVG could not be written.
    WriteSvg { path: PathBuf, source: io::Error },
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Read { path, source } => {
                write!(f, "cannot read the report {}: {source}", path.display())?;
                if source.kind() == io::ErrorKind::NotFound && path == Path::new(DEFAULT_REPORT) {
                    write!(f, " (this machine did not boot through kmodinit, or /run was cleared; name a report.json)")?;
                }
                Ok(())
            }
            ReportError::Parse { path, source } => {
                write!(
                    f,
                    "the report {} is not a kmodinit report.json: {source}",
                    path.display()
                )
            }
            ReportError::WriteSvg { path, source } => {
                write!(f, "cannot write the SVG {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReportError::Read { source, .. } | ReportError::WriteSvg { source, .. } => Some(source),
            ReportError::Parse { source, .. } => Some(source),
        }
    }
}

/// `kmodinit report`: the text timeline of the report at `path`, and the SVG
/// chart written to `svg` when given (its edges: the report's critical path,
/// the only dependencies a report records).
#[cfg(feature = "host-tools")]
pub fn report(path: &Path, svg: Option<&Path>) -> Result<String, ReportError> {
    let text = std::fs::read(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let r: Report = serde_json::from_slice(&text).map_err(|source| ReportError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = format!("report {}\n", path.display());
    out.push_str(&timeline::render_text(&r));
    if let Some(svg) = svg {
        let title = format!(
            "kmodinit load phase: {} ({} workers)",
            path.display(),
            r.load.as_ref().map_or(0, |l| l.jobs)
        );
        let chart = timeline::render_svg(
            &title,
            &timeline::bars(&r),
            &timeline::critical_path_edges(&r),
        );
        std::fs::write(svg, chart).map_err(|source| ReportError::WriteSvg {
            path: svg.to_path_buf(),
            source,
        })?;
        let _ = writeln!(out, "SVG chart written to {}", svg.display());
    }
    Ok(out)
}

/// `kmodinit manifest-from-host`: the manifest for the machine under
/// `sysroot` ([`crate::host_manifest`]), written to `output` (then the text
/// to print is empty) or returned for stdout, and the notes for stderr.
#[cfg(feature = "host-tools")]
pub fn manifest_from_host(
    sysroot: &Path,
    modules_root: Option<&Path>,
    kernel_release: Option<&str>,
    output: Option<&Path>,
) -> Result<(String, Vec<String>), crate::host_manifest::FromHostError> {
    use crate::host_manifest::{self as hm, FromHostError, HostPaths};
    let out = hm::manifest_from_host(&HostPaths {
        sysroot: sysroot.to_path_buf(),
        modules_root: modules_root.map(Path::to_path_buf),
        kernel_release: kernel_release.map(str::to_owned),
    })?;
    let mut notes = out.notes;
    match output {
        None => Ok((out.json, notes)),
        Some(path) => {
            std::fs::write(path, &out.json).map_err(|source| FromHostError::Write {
                path: path.to_path_buf(),
                source,
            })?;
            notes.push(format!("manifest written to {}", path.display()));
            Ok((String::new(), notes))
        }
    }
}

/// Without `host-tools`: never called, since [`parse_args`] refuses
/// `report`.
#[cfg(not(feature = "host-tools"))]
pub fn report(_path: &Path, _svg: Option<&Path>) -> Result<String, ReportError> {
    Ok(NO_HOST_TOOLS.to_owned())
}

/// Without `host-tools`: never called, since [`parse_args`] refuses `plan`.
#[cfg(not(feature = "host-tools"))]
pub fn plan_from_files(
    _manifest_path: &Path,
    _modules_dir: &Path,
    _cmdline: &KernelCmdline,
) -> Result<Option<Plan>, BootError> {
    Ok(None)
}

/// Without `host-tools`: never called, since [`parse_args`] refuses
/// `--dry-run`.
#[cfg(not(feature = "host-tools"))]
pub fn dry_run(
    _cmdline_text: &str,
    _manifest: Option<&Path>,
    _modules_dir: Option<&Path>,
) -> Result<String, BootError> {
    Ok(NO_HOST_TOOLS.to_owned())
}

#[cfg(all(test, feature = "host-tools"))]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_host_modes() {
        assert_eq!(parse_args(&[]), Ok(HostCommand::Refuse));
        assert_eq!(parse_args(&a(&["--help"])), Ok(HostCommand::Help));
        assert_eq!(
            parse_args(&a(&[
                "plan",
                "--manifest",
                "m.json",
                "--modules-dir",
                "d",
                "--cmdline",
                "quiet"
            ])),
            Ok(HostCommand::Plan {
                manifest: "m.json".into(),
                modules_dir: "d".into(),
                cmdline: "quiet".into()
            })
        );
        assert_eq!(
            parse_args(&a(&["--dry-run", "--manifest", "m"])),
            Ok(HostCommand::DryRun {
                cmdline: None,
                manifest: Some("m".into()),
                modules_dir: None
            })
        );
    }

    #[test]
    fn parses_report_with_its_default_file() {
        assert_eq!(
            parse_args(&a(&["report"])),
            Ok(HostCommand::Report {
                report: DEFAULT_REPORT.into(),
                svg: None
            })
        );
        let want = Ok(HostCommand::Report {
            report: "r.json".into(),
            svg: Some("o.svg".into()),
        });
        assert_eq!(
            parse_args(&a(&["report", "r.json", "--svg", "o.svg"])),
            want
        );
        assert_eq!(
            parse_args(&a(&["report", "--svg", "o.svg", "r.json"])),
            want
        );
    }

    #[test]
    fn parses_manifest_from_host() {
        assert_eq!(
            parse_args(&a(&["manifest-from-host"])),
            Ok(HostCommand::ManifestFromHost {
                sysroot: "/".into(),
                modules_root: None,
                kernel_release: None,
                output: None
            })
        );
        assert_eq!(
            parse_args(&a(&[
                "manifest-from-host",
                "--output",
                "m.json",
                "--modules-root",
                "/mnt",
                "--kernel-release",
                "6.1.0-9-amd64",
                "--sysroot",
                "/fix"
            ])),
            Ok(HostCommand::ManifestFromHost {
                sysroot: "/fix".into(),
                modules_root: Some("/mnt".into()),
                kernel_release: Some("6.1.0-9-amd64".into()),
                output: Some("m.json".into())
            })
        );
        assert_eq!(
            parse_args(&a(&["manifest-from-host", "--output"])),
            Err("--output needs a value".into())
        );
        assert!(parse_args(&a(&["manifest-from-host", "--manifest", "m"]))
            .unwrap_err()
            .contains("takes no"));
        assert!(parse_args(&a(&["manifest-from-host", "extra"]))
            .unwrap_err()
            .contains("\"extra\""));
        assert!(parse_args(&a(&["plan", "--sysroot", "/x"]))
            .unwrap_err()
            .contains("need `manifest-from-host`"));
        assert!(parse_args(&a(&["--output", "x"])).is_err());
    }

    #[test]
    fn manifest_from_host_reports_a_missing_tree_and_an_unwritable_output() {
        let d = temp("fromhost");
        let e = manifest_from_host(&d.join("nowhere"), None, None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere/proc/sys/kernel/osrelease"), "{e}");
        std::fs::write(d.join("mods/modules.dep"), "kernel/a.ko:\n").unwrap();
        let e = manifest_from_host(&d, Some(&d.join("x")), Some("r"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x/lib/modules/r"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn manifest_from_host_prints_or_writes_the_manifest() {
        let d = temp("fromhost-out");
        for (rel, text) in [
            (
                "lib/modules/1.0/modules.dep",
                "kernel/drivers/block/loop.ko:\n",
            ),
            ("proc/sys/kernel/osrelease", "1.0\n"),
            ("proc/modules", "loop 1 0 - Live 0x0\n"),
            ("proc/self/mountinfo", "1 0 0:20 / / rw - tmpfs none rw\n"),
        ] {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let (json, notes) = manifest_from_host(&d, None, None, None).unwrap();
        let m = modules_manifest::Manifest::from_json(json.as_bytes()).unwrap();
        assert_eq!(m.chains.len(), 1, "{json}");
        assert_eq!(m.chains[0].name, "drivers/block");
        assert!(
            notes.iter().any(|n| n.contains("not a block device")),
            "{notes:?}"
        );
        let out = d.join("m.json");
        let (text, notes) = manifest_from_host(&d, None, None, Some(&out)).unwrap();
        assert!(text.is_empty());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), json);
        assert!(notes.last().unwrap().starts_with("manifest written to "));
        let e = manifest_from_host(&d, None, None, Some(&d.join("no/dir/m.json")))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot write the manifest to ") && e.contains("no/dir"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn report_usage_errors() {
        assert_eq!(
            parse_args(&a(&["report", "--svg"])),
            Err("--svg needs a value".into())
        );
        assert!(parse_args(&a(&["report", "a.json", "b.json"]))
            .unwrap_err()
            .contains("\"b.json\""));
        assert!(parse_args(&a(&["report", "--bogus"]))
            .unwrap_err()
            .contains("--bogus"));
        assert!(parse_args(&a(&["report", "--manifest", "m"])).is_err());
        assert!(parse_args(&a(&["--svg", "o.svg"])).is_err(), "needs report");
        assert!(parse_args(&a(&["plan", "report"])).is_err());
    }

    #[test]
    fn report_errors_name_the_file() {
        let d = temp("report");
        let missing = d.join("missing.json");
        let e = report(&missing, None).unwrap_err().to_string();
        assert!(e.starts_with("cannot read the report "), "{e}");
        assert!(e.contains("missing.json"), "{e}");
        let bad = d.join("bad.json");
        std::fs::write(&bad, r#"{"version": 1}"#).unwrap();
        let e = report(&bad, None).unwrap_err().to_string();
        assert!(e.contains("bad.json is not a kmodinit report.json"), "{e}");
        assert!(e.contains("boottime_init_start"), "{e}");
        std::fs::write(&bad, "{").unwrap();
        assert!(matches!(report(&bad, None), Err(ReportError::Parse { .. })));
        std::fs::write(&bad, crate::report::Report::default().to_json()).unwrap();
        let e = report(&bad, Some(&d.join("no/such/dir/o.svg"))).unwrap_err();
        assert!(e.to_string().starts_with("cannot write the SVG "), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kmodinit-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("mods/kernel")).unwrap();
        d
    }

    #[test]
    fn dry_run_says_what_the_boot_would_do() {
        let d = temp("dry");
        std::fs::write(
            d.join("mods/modules.dep"),
            "kernel/a.ko:\nkernel/b.ko: kernel/a.ko\n",
        )
        .unwrap();
        let manifest = d.join("m.json");
        std::fs::write(
            &manifest,
            r#"{"version": 1, "chains": [{"name": "disk", "modules": ["b"], "required": true}],
                "root": {"device": "LABEL=r", "wait_ms": 500}, "on_failure": "poweroff"}"#,
        )
        .unwrap();
        let out = dry_run(
            "root=/dev/vda rw init=/bin/sh kmodinit.on_failure=reboot",
            Some(&manifest),
            Some(&d.join("mods")),
        )
        .unwrap();
        assert!(
            out.contains("kernel/a.ko") && out.contains("kernel/b.ko"),
            "{out}"
        );
        assert!(out.contains("root /dev/vda (type detected), rw"), "{out}");
        assert!(out.contains("wait up to 0.5 s"), "{out}");
        assert!(
            out.contains("exec /bin/sh (first that exists of: /bin/sh)"),
            "{out}"
        );
        assert!(out.contains("on failure: rebooting"), "{out}");
        assert!(out.contains("coldplug: off"), "{out}");
        let out = dry_run(
            "kmodinit.coldplug=1",
            Some(&manifest),
            Some(&d.join("mods")),
        )
        .unwrap();
        assert!(
            out.contains("coldplug: match") && out.contains("allow none, deny none"),
            "{out}"
        );

        let out = dry_run("quiet", Some(&d.join("none.json")), None).unwrap();
        assert!(out.contains("not found, boot with no modules"), "{out}");
        assert!(
            out.contains("no root: exec the init inside the initramfs"),
            "{out}"
        );
        assert!(out.contains("on failure: starting a rescue shell"), "{out}");

        std::fs::write(
            &manifest,
            r#"{"version": 1, "chains": [{"name": "x", "modules": ["nope"]}]}"#,
        )
        .unwrap();
        let e = dry_run("", Some(&manifest), Some(&d.join("mods"))).unwrap_err();
        assert!(matches!(e, BootError::Plan(_)), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn usage_errors_name_the_flag() {
        assert_eq!(
            parse_args(&a(&["plan", "--manifest"])),
            Err("--manifest needs a value".into())
        );
        assert_eq!(
            parse_args(&a(&["plan", "--manifest", "m"])),
            Err("plan needs --modules-dir".into())
        );
        assert!(parse_args(&a(&["single"]))
            .unwrap_err()
            .contains("\"single\""));
        assert!(
            parse_args(&a(&["--manifest", "m"])).is_err(),
            "a mode is required"
        );
        assert!(parse_args(&a(&["plan", "--dry-run"])).is_err());
    }
}

//! The boot's settings: the kernel command line merged over the manifest.
//! Pure: tests build both inputs by hand.

use std::fmt;
use std::time::Duration;

use modules_manifest::{KernelCmdline, Manifest, OnFailure};
use nix::mount::MsFlags;

use crate::pid1::rootdev::{DeviceSpec, DeviceSpecError, RootWait};

/// How long to wait for a root device when neither `rootwait`, `rootdelay=`
/// nor the manifest's `wait_ms` says: long enough for a slow disk
/// controller, short enough that a typo in `root=` ends in `on_failure`
/// rather than a hang.
pub const DEFAULT_ROOT_WAIT: Duration = Duration::from_secs(10);

/// How long optional chains may hold the boot after the load phase starts
/// when neither `kmodinit.deadline=` nor `deadline_ms` says. Short: an
/// optional module that is not done by then keeps loading in the background
/// after the handover (nothing is lost), and a driver whose probe hangs on
/// absent hardware must not make the machine look dead. 5 s is well above
/// a whole load of real modules under emulation (~3 s for 178 modules,
/// init/REPORT.md) and below the point where a user reaches for the reset.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// How long a required chain may take when neither
/// `kmodinit.required_timeout=` nor `required_timeout_ms` says: 90 s, the
/// default job timeout of systemd and above the kernel's 60 s firmware
/// fallback timeout, so a driver waiting for its firmware is not failed
/// while the kernel still waits for it; then `on_failure` runs instead of a
/// machine that hangs forever.
pub const DEFAULT_REQUIRED_TIMEOUT: Duration = Duration::from_secs(90);

/// Everything the boot decides from the command line and the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct BootConfig {
    pub root: Option<RootConfig>,
    pub init: InitConfig,
    /// `None`: rescue if a shell exists, else halt.
    pub on_failure: Option<OnFailure>,
    /// Loader width; 0 = automatic.
    pub jobs: usize,
    /// `kmodinit.deadline=` / `deadline_ms`, else [`DEFAULT_DEADLINE`].
    pub deadline: Duration,
    /// `kmodinit.required_timeout=` / `required_timeout_ms`, else
    /// [`DEFAULT_REQUIRED_TIMEOUT`].
    pub required_timeout: Duration,
}

/// The real root filesystem.
#[derive(Debug, Clone, PartialEq)]
pub struct RootConfig {
    pub device: DeviceSpec,
    /// `rootfstype=` / manifest `fstype`, split on commas; empty = detect.
    pub fstypes: Vec<String>,
    pub options: MountOptions,
    pub wait: RootWait,
}

/// `mount(2)` flags and data parsed from an option string such as
/// `ro,noatime,data=ordered`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Options the filesystem itself interprets, comma-separated.
    pub data: String,
    pub read_only: bool,
}

/// Which program to hand over to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitConfig {
    /// `init=`: the only candidate when given (as with the kernel, a missing
    /// explicit init is an error, not a silent fallback).
    pub explicit: Option<String>,
    /// The manifest's `init.path` (default `/sbin/init`).
    pub manifest_path: String,
    /// The manifest's `init.args`, passed only to `manifest_path`.
    pub manifest_args: Vec<String>,
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    RootDevice {
        /// `kernel command line` or `manifest root.device`.
        from: &'static str,
        error: DeviceSpecError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::RootDevice { from, error } => write!(f, "{from}: {error}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses a comma-separated mount option string. `ro`/`rw` are returned
/// separately (the last one wins); `defaults` and options that only clear a
/// flag we never set are dropped; anything unknown goes to the filesystem.
pub fn parse_mount_options(s: &str) -> (MsFlags, String, Option<bool>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    let mut ro = None;
    for opt in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match opt {
            "ro" => ro = Some(true),
            "rw" => ro = Some(false),
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => flags |= MsFlags::MS_DIRSYNC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "lazytime" => flags |= MsFlags::MS_LAZYTIME,
            "defaults" | "suid" | "dev" | "exec" | "async" | "atime" | "diratime" => {}
            other => data.push(other),
        }
    }
    (flags, data.join(","), ro)
}

/// Merges the command line (which wins, field by field) over the manifest.
pub fn merge(
    cmdline: &KernelCmdline,
    manifest: Option<&Manifest>,
) -> Result<BootConfig, ConfigError> {
    let mroot = manifest.and_then(|m| m.root.as_ref());
    // systemd's verity root is /dev/mapper/root unless root= says otherwise.
    let cmdline_root = cmdline.root.as_deref().or(cmdline
        .dm
        .roothash
        .as_ref()
        .map(|_| "/dev/mapper/root"));
    let device = match (cmdline_root, mroot.and_then(|r| r.device.as_ref())) {
        (Some(d), _) => Some(
            DeviceSpec::parse(d).map_err(|error| ConfigError::RootDevice {
                from: "kernel command line root=",
                error,
            })?,
        ),
        (None, Some(d)) => Some(
            DeviceSpec::parse(d).map_err(|error| ConfigError::RootDevice {
                from: "manifest root.device",
                error,
            })?,
        ),
        (None, None) => None,
    };
    let root = device.map(|device| {
        let fstype = cmdline
            .rootfstype
            .as_deref()
            .or_else(|| mroot.and_then(|r| r.fstype.as_deref()))
            .unwrap_or("");
        let fstypes = fstype
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        let opts = cmdline
            .rootflags
            .as_deref()
            .or_else(|| mroot.and_then(|r| r.flags.as_deref()))
            .unwrap_or("");
        let (flags, data, ro_in_opts) = parse_mount_options(opts);
        // The kernel mounts root read-only unless told `rw`.
        let read_only = cmdline.read_only.or(ro_in_opts).unwrap_or(true);
        let wait = if cmdline.rootwait {
            RootWait::Forever
        } else if let Some(s) = cmdline.rootdelay_s {
            // The kernel sleeps `rootdelay` seconds then looks once; we look
            // all along and stop waiting after that long, which is never
            // later and usually earlier.
            RootWait::Upto(Duration::from_secs(s))
        } else if let Some(ms) = mroot.and_then(|r| r.wait_ms) {
            RootWait::Upto(Duration::from_millis(ms))
        } else {
            RootWait::Upto(DEFAULT_ROOT_WAIT)
        };
        RootConfig {
            device,
            fstypes,
            options: MountOptions {
                flags,
                data,
                read_only,
            },
            wait,
        }
    });
    let init = InitConfig {
        explicit: cmdline.init.clone(),
        manifest_path: manifest
            .map(|m| m.init.path.clone())
            .unwrap_or_else(|| "/sbin/init".into()),
        manifest_args: manifest.map(|m| m.init.args.clone()).unwrap_or_default(),
    };
    let manifest_jobs = manifest.map(|m| m.jobs).filter(|&j| j != 0);
    Ok(BootConfig {
        root,
        init,
        on_failure: cmdline.on_failure.or(manifest.and_then(|m| m.on_failure)),
        jobs: cmdline.jobs.or(manifest_jobs).unwrap_or(0),
        deadline: cmdline
            .deadline_ms
            .or(manifest.and_then(|m| m.deadline_ms))
            .map_or(DEFAULT_DEADLINE, Duration::from_millis),
        required_timeout: cmdline
            .required_timeout_ms
            .or(manifest.and_then(|m| m.required_timeout_ms))
            .map_or(DEFAULT_REQUIRED_TIMEOUT, Duration::from_millis),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use modules_manifest::manifest::{InitSpec, RootSpec};
    use std::collections::BTreeMap;

    fn manifest() -> Manifest {
        Manifest {
            version: 1,
            chains: Vec::new(),
            modules: BTreeMap::new(),
            blocklist: Vec::new(),
            jobs: 3,
            root: Some(RootSpec {
                device: Some("LABEL=root".into()),
                fstype: Some("ext4".into()),
                flags: Some("rw,noatime,data=ordered".into()),
                wait_ms: Some(2500),
            }),
            init: InitSpec {
                path: "/lib/systemd/systemd".into(),
                args: vec!["--log-level=info".into()],
            },
            on_failure: Some(OnFailure::Reboot),
            deadline_ms: Some(1500),
            required_timeout_ms: None,
            softdeps: Default::default(),
            coldplug: None,
            measure: None,
            lock_modules: false,
        }
    }

    #[test]
    fn manifest_alone() {
        let c = merge(&KernelCmdline::default(), Some(&manifest())).unwrap();
        let r = c.root.unwrap();
        assert_eq!(r.device, DeviceSpec::Label("root".into()));
        assert_eq!(r.fstypes, vec!["ext4"]);
        assert_eq!(r.options.flags, MsFlags::MS_NOATIME);
        assert_eq!(r.options.data, "data=ordered");
        assert!(!r.options.read_only);
        assert_eq!(r.wait, RootWait::Upto(Duration::from_millis(2500)));
        assert_eq!(c.jobs, 3);
        assert_eq!(c.on_failure, Some(OnFailure::Reboot));
        assert_eq!(c.init.manifest_path, "/lib/systemd/systemd");
        assert_eq!(c.init.explicit, None);
        assert_eq!(c.deadline, Duration::from_millis(1500));
        assert_eq!(c.required_timeout, DEFAULT_REQUIRED_TIMEOUT);
    }

    #[test]
    fn cmdline_wins_field_by_field() {
        let cmd = KernelCmdline {
            root: Some("/dev/vda".into()),
            rootfstype: Some("xfs,ext4".into()),
            read_only: Some(true),
            rootwait: true,
            init: Some("/bin/sh".into()),
            jobs: Some(8),
            on_failure: Some(OnFailure::Halt),
            deadline_ms: Some(200),
            required_timeout_ms: Some(7000),
            ..Default::default()
        };
        let c = merge(&cmd, Some(&manifest())).unwrap();
        assert_eq!(c.deadline, Duration::from_millis(200));
        assert_eq!(c.required_timeout, Duration::from_millis(7000));
        let r = c.root.unwrap();
        assert_eq!(r.device, DeviceSpec::Name("vda".into()));
        assert_eq!(r.fstypes, vec!["xfs", "ext4"]);
        // rootflags not given: the manifest's flags stay, but `ro` wins.
        assert_eq!(r.options.data, "data=ordered");
        assert!(r.options.read_only);
        assert_eq!(r.wait, RootWait::Forever);
        assert_eq!(c.jobs, 8);
        assert_eq!(c.on_failure, Some(OnFailure::Halt));
        assert_eq!(c.init.explicit.as_deref(), Some("/bin/sh"));
    }

    #[test]
    fn defaults_without_manifest() {
        let c = merge(&KernelCmdline::default(), None).unwrap();
        assert_eq!(c.root, None);
        assert_eq!(c.jobs, 0);
        assert_eq!(c.on_failure, None);
        assert_eq!(c.init.manifest_path, "/sbin/init");
        assert_eq!(c.deadline, DEFAULT_DEADLINE);
        assert_eq!(c.required_timeout, DEFAULT_REQUIRED_TIMEOUT);
        let cmd = KernelCmdline {
            root: Some("UUID=abc".into()),
            rootdelay_s: Some(3),
            ..Default::default()
        };
        let r = merge(&cmd, None).unwrap().root.unwrap();
        assert!(r.options.read_only, "root is read-only by default");
        assert!(r.fstypes.is_empty());
        assert_eq!(r.wait, RootWait::Upto(Duration::from_secs(3)));
        let r = merge(
            &KernelCmdline {
                root: Some("/dev/sda1".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap()
        .root
        .unwrap();
        assert_eq!(r.wait, RootWait::Upto(DEFAULT_ROOT_WAIT));
    }

    #[test]
    fn bad_root_names_its_source() {
        let cmd = KernelCmdline {
            root: Some("vda".into()),
            ..Default::default()
        };
        let e = merge(&cmd, None).unwrap_err();
        assert!(e.to_string().contains("kernel command line root="), "{e}");
        let mut m = manifest();
        m.root.as_mut().unwrap().device = Some("nonsense".into());
        let e = merge(&KernelCmdline::default(), Some(&m)).unwrap_err();
        assert!(e.to_string().contains("manifest root.device"), "{e}");
        assert!(e.to_string().contains("nonsense"), "{e}");
    }

    #[test]
    fn mount_option_parsing() {
        let (f, d, ro) = parse_mount_options("defaults,ro,nosuid,,errors=remount-ro,rw");
        assert_eq!(f, MsFlags::MS_NOSUID);
        assert_eq!(d, "errors=remount-ro");
        assert_eq!(ro, Some(false));
        assert_eq!(
            parse_mount_options(""),
            (MsFlags::empty(), String::new(), None)
        );
    }
}

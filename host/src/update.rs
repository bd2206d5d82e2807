//! `kmodinit update [-k RELEASE|all]`: (re)builds `/boot/initrd.img-RELEASE`
//! from the configuration in `/etc/kmodinit/`, as `update-initramfs -u` does
//! for initramfs-tools; the kernel hooks (`/etc/kernel/postinst.d/kmodinit`)
//! call it.
//!
//! Which manifest, in this order (the choice and its reason are printed):
//! 1. `/etc/kmodinit/manifest.json` when present;
//! 2. host-only (`manifest-from-host`, coldplug on with the machine's
//!    devices' drivers in the image) when `MODE=host`, or `MODE=auto` and
//!    the build runs on the machine it is for: the kernel is the running
//!    one and this is not a chroot;
//! 3. otherwise a generic image: coldplug on, with every storage and
//!    filesystem driver of the kernel's tree in the image, a required chain
//!    for the root's filesystem, and the root from `/etc/fstab`'s `/` entry
//!    (else the boot's `root=`).
//!
//! The image is written to a temporary file in `/boot` and renamed over the
//! old one: until the new image is complete the old one stays, and a failed
//! build leaves it as it was.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::from_host::{self, HostPaths};

/// The configuration file's name under the configuration directory.
pub const CONFIG_FILE: &str = "kmodinit.conf";
/// The manifest that, when present, wins over every `MODE`.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The storage and filesystem subtrees a generic image carries, those that
/// exist in the kernel's tree (plus `kernel/fs/FSTYPE` of the root).
pub const GENERIC_SUBTREES: &[&str] = &[
    "kernel/drivers/virtio",
    "kernel/drivers/block",
    "kernel/drivers/ata",
    "kernel/drivers/scsi",
    "kernel/drivers/nvme",
    "kernel/drivers/mmc",
    "kernel/drivers/md",
    "kernel/drivers/usb/storage",
];

/// Where `update` reads and writes; every path is overridable so tests
/// run on temporary directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePaths {
    /// The root of the system the image is for: `lib/modules`, `etc/fstab`,
    /// `proc` are read under it.
    pub sysroot: PathBuf,
    /// Where the images go (`/boot`).
    pub boot: PathBuf,
    /// The configuration directory (`/etc/kmodinit`).
    pub config_dir: PathBuf,
    /// Where the package installs `init` and `init-tiny` (`/usr/lib/kmodinit`).
    pub lib_dir: PathBuf,
}

impl Default for UpdatePaths {
    fn default() -> Self {
        UpdatePaths {
            sysroot: PathBuf::from("/"),
            boot: PathBuf::from("/boot"),
            config_dir: PathBuf::from("/etc/kmodinit"),
            lib_dir: PathBuf::from("/usr/lib/kmodinit"),
        }
    }
}

/// `MODE=`: where the manifest comes from when no manifest file exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Host-only on the machine the image is for, generic otherwise.
    #[default]
    Auto,
    Host,
    Generic,
}

/// `INIT=`: which `/init` build goes into the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitKind {
    #[default]
    Stable,
    Tiny,
}

/// `/etc/kmodinit/kmodinit.conf`: `KEY=VALUE` lines, `#` comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    /// `COMPRESS=zstd|xz|gzip|none` (default zstd: the fastest to unpack).
    pub compress: String,
    pub init: InitKind,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Auto,
            compress: "zstd".into(),
            init: InitKind::Stable,
        }
    }
}

/// Why an update failed; each names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{path}:{line}: {msg}")]
    Config {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("kernel {release}: no module tree {dir} (is the kernel installed?)")]
    NoModules { release: String, dir: PathBuf },
    #[error("no kernel has a module tree under {0}")]
    NoKernels(PathBuf),
    #[error("{0:?} is not a kernel release")]
    BadRelease(String),
    #[error("host-only manifest: {0}")]
    FromHost(#[from] from_host::FromHostError),
    #[error("kernel {release}: the build failed, {image} is left as it was: {reason}")]
    Build {
        release: String,
        image: PathBuf,
        reason: String,
    },
}

impl Config {
    /// Parses the file's text; `path` is for the messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, UpdateError> {
        let mut c = Config::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |msg: String| UpdateError::Config {
                path: path.to_path_buf(),
                line: i + 1,
                msg,
            };
            let Some((k, v)) = line.split_once('=') else {
                return Err(err(format!("expected KEY=VALUE, found {line:?}")));
            };
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "MODE" => {
                    c.mode = match v {
                        "auto" => Mode::Auto,
                        "host" => Mode::Host,
                        "generic" => Mode::Generic,
                        _ => {
                            return Err(err(format!("MODE={v:?}: expected auto, host or generic")))
                        }
                    }
                }
                "COMPRESS" => {
                    if !["zstd", "xz", "gzip", "none"].contains(&v) {
                        return Err(err(format!(
                            "COMPRESS={v:?}: expected zstd, xz, gzip or none"
                        )));
                    }
                    c.compress = v.to_string();
                }
                "INIT" => {
                    c.init = match v {
                        "stable" => InitKind::Stable,
                        "tiny" => InitKind::Tiny,
                        _ => return Err(err(format!("INIT={v:?}: expected stable or tiny"))),
                    }
                }
                other => return Err(err(format!("unknown setting {other:?}"))),
            }
        }
        Ok(c)
    }

    /// Reads `CONFIG_DIR/kmodinit.conf`; an absent file is the defaults.
    pub fn load(config_dir: &Path) -> Result<Config, UpdateError> {
        let path = config_dir.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(t) => Config::parse(&t, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(UpdateError::Read { path, source }),
        }
    }
}

/// Where the manifest of one image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The configuration's `manifest.json`.
    File(PathBuf),
    /// `manifest-from-host`, with coldplug of this machine's devices.
    Host,
    /// Coldplug with the tree's storage and filesystem drivers.
    Generic,
}

/// The choice and the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub source: Source,
    pub why: String,
}

/// Whether the build runs on the machine it is for: not in a chroot (`/`
/// is `/proc/1/root`) and the kernel is the running one. `Err` says why not.
pub fn on_target_machine(sysroot: &Path, release: &str) -> Result<(), String> {
    let proc1 = sysroot.join("proc/1/root");
    let root = std::fs::metadata(sysroot).map_err(|e| format!("{}: {e}", sysroot.display()))?;
    let init_root = std::fs::metadata(&proc1).map_err(|e| {
        format!(
            "PID 1's root {} cannot be read ({e}): taken as a chroot",
            proc1.display()
        )
    })?;
    if (root.dev(), root.ino()) != (init_root.dev(), init_root.ino()) {
        return Err("this is a chroot (/ is not PID 1's root)".into());
    }
    let running = std::fs::read_to_string(sysroot.join("proc/sys/kernel/osrelease"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if running != release {
        return Err(format!(
            "kernel {release} is not the running one ({running})"
        ));
    }
    Ok(())
}

/// Picks the manifest's source for `release`.
pub fn choose(paths: &UpdatePaths, config: &Config, release: &str) -> Choice {
    let file = paths.config_dir.join(MANIFEST_FILE);
    if file.is_file() {
        return Choice {
            why: format!("{} is present", file.display()),
            source: Source::File(file),
        };
    }
    match config.mode {
        Mode::Host => Choice {
            source: Source::Host,
            why: "MODE=host".into(),
        },
        Mode::Generic => Choice {
            source: Source::Generic,
            why: "MODE=generic".into(),
        },
        Mode::Auto => match on_target_machine(&paths.sysroot, release) {
            Ok(()) => Choice {
                source: Source::Host,
                why: format!(
                    "MODE=auto, building on this machine for its running kernel {release}"
                ),
            },
            Err(why) => Choice {
                source: Source::Generic,
                why: format!("MODE=auto and {why}"),
            },
        },
    }
}

/// The root entry of an fstab: (device, fstype).
pub fn fstab_root(fstab: &str) -> Option<(String, String)> {
    fstab.lines().find_map(|l| {
        let l = l.trim();
        if l.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 3 && f[1] == "/").then(|| (f[0].to_string(), f[2].to_string()))
    })
}

/// A generic manifest: coldplug on, the root's filesystem as a required
/// chain, the root from fstab when it names one. Also the subtrees to
/// carry, those of [`GENERIC_SUBTREES`] (and `kernel/fs/FSTYPE`) that exist.
pub fn generic_manifest(sysroot: &Path, modules_dir: &Path) -> (String, Vec<String>, Vec<String>) {
    let mut notes = Vec::new();
    let fstab = std::fs::read_to_string(sysroot.join("etc/fstab")).unwrap_or_default();
    let root = fstab_root(&fstab);
    let fstype = root
        .as_ref()
        .map(|(_, t)| t.clone())
        .filter(|t| t != "auto")
        .unwrap_or_else(|| "ext4".into());
    let mut m = serde_json::json!({
        "version": 1,
        "chains": [],
        "coldplug": { "enabled": true },
    });
    let fs_dir = format!("kernel/fs/{fstype}");
    if modules_dir.join(&fs_dir).is_dir() {
        m["chains"] =
            serde_json::json!([{ "name": "rootfs", "modules": [fstype], "required": true }]);
    } else {
        notes.push(format!(
            "no {fs_dir} in the tree: {fstype} taken as built in"
        ));
    }
    match &root {
        Some((dev, t)) => {
            notes.push(format!("root {dev} ({t}) from /etc/fstab"));
            m["root"] = serde_json::json!({ "device": dev, "fstype": fstype });
        }
        None => notes.push("no / in /etc/fstab: the root is the boot's root=".into()),
    }
    let subtrees: Vec<String> = GENERIC_SUBTREES
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(fs_dir))
        .filter(|s| modules_dir.join(s).is_dir())
        .collect();
    let json = serde_json::to_string_pretty(&m).unwrap_or_default() + "\n";
    (json, subtrees, notes)
}

/// What the image builder is asked to do (the flags of `kmodinit build`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    pub release: String,
    pub args: Vec<String>,
    /// The temporary file the builder writes, renamed over [`Self::image`].
    pub output: PathBuf,
    pub image: PathBuf,
}

/// The kernel releases of `-k`: `all` is every tree under `lib/modules`
/// with a `modules.dep` or a `modules.order` (depmod runs on install).
pub fn releases(paths: &UpdatePaths, k: &str) -> Result<Vec<String>, UpdateError> {
    let dir = paths.sysroot.join("lib/modules");
    if k != "all" {
        if k.is_empty() || k.contains('/') || k.starts_with('.') {
            return Err(UpdateError::BadRelease(k.into()));
        }
        return Ok(vec![k.to_string()]);
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|source| UpdateError::Read {
        path: dir.clone(),
        source,
    })?;
    for e in entries.flatten() {
        let p = e.path();
        if p.join("modules.order").is_file() || p.join("modules.dep").is_file() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(UpdateError::NoKernels(dir));
    }
    Ok(out)
}

/// Decides and prepares one image: writes its manifest under a temporary
/// directory in `boot` and returns the builder's flags. The lines to print
/// (the choice, why, notes) go to `log`.
pub fn prepare(
    paths: &UpdatePaths,
    config: &Config,
    release: &str,
    log: &mut Vec<String>,
) -> Result<(BuildRequest, Choice), UpdateError> {
    let modules_dir = paths.sysroot.join("lib/modules").join(release);
    if !modules_dir.is_dir() {
        return Err(UpdateError::NoModules {
            release: release.into(),
            dir: modules_dir,
        });
    }
    let choice = choose(paths, config, release);
    let image = paths.boot.join(format!("initrd.img-{release}"));
    let output = paths
        .boot
        .join(format!(".initrd.img-{release}.kmodinit-new"));
    let manifest_tmp = paths
        .boot
        .join(format!(".kmodinit-{release}.manifest.json"));
    let mut args: Vec<String> = vec![
        "--kernel-release".into(),
        release.into(),
        "--output".into(),
        output.display().to_string(),
        "--modules-root".into(),
        paths.sysroot.display().to_string(),
        "--compress".into(),
        config.compress.clone(),
    ];
    let manifest_path = match &choice.source {
        Source::File(f) => f.clone(),
        Source::Host => {
            let hm = from_host::manifest_from_host(&HostPaths {
                sysroot: paths.sysroot.clone(),
                modules_root: Some(paths.sysroot.clone()),
                kernel_release: Some(release.into()),
            })?;
            log.extend(hm.notes.iter().cloned());
            let mut v: serde_json::Value =
                serde_json::from_str(&hm.json).map_err(|e| UpdateError::Build {
                    release: release.into(),
                    image: image.clone(),
                    reason: format!("manifest-from-host wrote invalid JSON: {e}"),
                })?;
            v["coldplug"] = serde_json::json!({ "enabled": true });
            write(
                &manifest_tmp,
                &(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"),
            )?;
            args.extend(["--coldplug".into(), "host".into()]);
            manifest_tmp.clone()
        }
        Source::Generic => {
            let (json, subtrees, notes) = generic_manifest(&paths.sysroot, &modules_dir);
            log.extend(notes);
            write(&manifest_tmp, &json)?;
            if !subtrees.is_empty() {
                args.push("--coldplug-modules".into());
                args.extend(subtrees);
            }
            manifest_tmp.clone()
        }
    };
    args.extend(["--manifest".into(), manifest_path.display().to_string()]);
    let init = paths.lib_dir.join(match config.init {
        InitKind::Stable => "init",
        InitKind::Tiny => "init-tiny",
    });
    if init.is_file() {
        args.extend(["--init".into(), init.display().to_string()]);
    }
    Ok((
        BuildRequest {
            release: release.into(),
            args,
            output,
            image,
        },
        choice,
    ))
}

fn write(path: &Path, text: &str) -> Result<(), UpdateError> {
    std::fs::write(path, text).map_err(|source| UpdateError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds one image through `build` (the image builder, or a fake in
/// tests), then renames it over the old one. On any failure the temporary
/// files are removed and the old image is left as it was.
pub fn update_one(
    paths: &UpdatePaths,
    config: &Config,
    release: &str,
    build: &dyn Fn(&BuildRequest) -> Result<(), String>,
    log: &mut Vec<String>,
) -> Result<PathBuf, UpdateError> {
    let manifest_tmp = paths
        .boot
        .join(format!(".kmodinit-{release}.manifest.json"));
    let result = (|| {
        let (req, choice) = prepare(paths, config, release, log)?;
        log.insert(
            0,
            format!(
                "kmodinit: {}: {} manifest, because {}",
                req.image.display(),
                match &choice.source {
                    Source::File(_) => "the configured",
                    Source::Host => "a host-only",
                    Source::Generic => "a generic",
                },
                choice.why
            ),
        );
        let fail = |reason: String| UpdateError::Build {
            release: release.into(),
            image: req.image.clone(),
            reason,
        };
        build(&req).map_err(fail)?;
        match std::fs::metadata(&req.output) {
            Ok(m) if m.len() > 0 => {}
            _ => {
                return Err(fail(format!(
                    "{} is missing or empty",
                    req.output.display()
                )))
            }
        }
        std::fs::rename(&req.output, &req.image).map_err(|source| UpdateError::Write {
            path: req.image.clone(),
            source,
        })?;
        Ok(req)
    })();
    let _ = std::fs::remove_file(&manifest_tmp);
    match result {
        Ok(req) => Ok(req.image),
        Err(e) => {
            let _ = std::fs::remove_file(
                paths
                    .boot
                    .join(format!(".initrd.img-{release}.kmodinit-new")),
            );
            Err(e)
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Host => f.write_str("host"),
            Source::Generic => f.write_str("generic"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, UpdatePaths) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let paths = UpdatePaths {
            sysroot: root.clone(),
            boot: root.join("boot"),
            config_dir: root.join("etc/kmodinit"),
            lib_dir: root.join("usr/lib/kmodinit"),
        };
        for d in [
            "boot",
            "etc/kmodinit",
            "lib/modules/6.1.0-9-amd64/kernel/drivers/virtio",
            "lib/modules/6.1.0-9-amd64/kernel/fs/ext4",
            "lib/modules/7.0-x/kernel",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("lib/modules/6.1.0-9-amd64/modules.dep"), "").unwrap();
        std::fs::write(root.join("lib/modules/7.0-x/modules.order"), "").unwrap();
        (t, paths)
    }

    #[test]
    fn config_parses_and_names_bad_lines() {
        let p = Path::new("k.conf");
        let c = Config::parse("# c\nMODE=generic\n COMPRESS = xz\nINIT=\"tiny\"\n\n", p).unwrap();
        assert_eq!(c.mode, Mode::Generic);
        assert_eq!(c.compress, "xz");
        assert_eq!(c.init, InitKind::Tiny);
        assert_eq!(Config::parse("", p).unwrap(), Config::default());
        let e = Config::parse("MODE=auto\nMODE=fast\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("k.conf:2: MODE=\"fast\""), "{e}");
        assert!(Config::parse("COMPRESS=lz4", p).is_err());
        assert!(Config::parse("FOO=1", p).is_err());
        assert!(Config::parse("MODE", p).is_err());
    }

    #[test]
    fn absent_config_is_the_defaults() {
        let (_t, p) = tree();
        assert_eq!(Config::load(&p.config_dir).unwrap(), Config::default());
    }

    #[test]
    fn manifest_file_wins_then_mode_then_machine() {
        let (_t, p) = tree();
        let mut c = Config::default();
        // A temp tree has no proc/1/root: not the target machine.
        let ch = choose(&p, &c, "6.1.0-9-amd64");
        assert_eq!(ch.source, Source::Generic);
        assert!(ch.why.contains("taken as a chroot"), "{}", ch.why);
        c.mode = Mode::Host;
        assert_eq!(choose(&p, &c, "6.1.0-9-amd64").source, Source::Host);
        let f = p.config_dir.join(MANIFEST_FILE);
        std::fs::write(&f, "{}").unwrap();
        assert_eq!(choose(&p, &c, "6.1.0-9-amd64").source, Source::File(f));
    }

    #[test]
    fn the_real_root_with_another_kernel_is_not_the_target() {
        let e = on_target_machine(Path::new("/"), "0.0-not-running").unwrap_err();
        assert!(
            e.contains("not the running one") || e.contains("chroot"),
            "{e}"
        );
    }

    #[test]
    fn fstab_root_and_generic_manifest() {
        let fstab =
            "# x\nUUID=abc /boot ext2 defaults 0 2\nUUID=1234-5 / ext4 errors=remount-ro 0 1\n";
        assert_eq!(
            fstab_root(fstab),
            Some(("UUID=1234-5".into(), "ext4".into()))
        );
        assert_eq!(fstab_root("# / only in a comment\n"), None);
        let (_t, p) = tree();
        std::fs::write(p.sysroot.join("etc/fstab"), fstab).unwrap();
        let md = p.sysroot.join("lib/modules/6.1.0-9-amd64");
        let (json, subtrees, _) = generic_manifest(&p.sysroot, &md);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["root"]["device"], "UUID=1234-5");
        assert_eq!(v["coldplug"]["enabled"], true);
        assert_eq!(v["chains"][0]["modules"][0], "ext4");
        assert_eq!(subtrees, ["kernel/drivers/virtio", "kernel/fs/ext4"]);
    }

    #[test]
    fn releases_all_and_one() {
        let (_t, p) = tree();
        assert_eq!(releases(&p, "all").unwrap(), ["6.1.0-9-amd64", "7.0-x"]);
        assert_eq!(releases(&p, "5.0").unwrap(), ["5.0"]);
        assert!(releases(&p, "../etc").is_err());
    }

    #[test]
    fn a_build_replaces_the_image_atomically() {
        let (_t, p) = tree();
        let image = p.boot.join("initrd.img-6.1.0-9-amd64");
        std::fs::write(&image, "old").unwrap();
        let mut log = Vec::new();
        let seen = std::cell::RefCell::new(Vec::new());
        let build = |r: &BuildRequest| {
            // The old image is still whole while the new one is written.
            assert_eq!(std::fs::read_to_string(&r.image).unwrap(), "old");
            assert_eq!(r.output.parent(), Some(p.boot.as_path()));
            seen.borrow_mut().push(r.args.clone());
            std::fs::write(&r.output, "new").map_err(|e| e.to_string())
        };
        let out = update_one(&p, &Config::default(), "6.1.0-9-amd64", &build, &mut log).unwrap();
        assert_eq!(out, image);
        assert_eq!(std::fs::read_to_string(&image).unwrap(), "new");
        assert!(log[0].contains("a generic manifest"), "{log:?}");
        let args = seen.borrow()[0].join(" ");
        assert!(
            args.contains("--coldplug-modules kernel/drivers/virtio kernel/fs/ext4"),
            "{args}"
        );
        assert!(args.contains("--compress zstd"), "{args}");
        // Only the image is left in /boot.
        let left: Vec<_> = std::fs::read_dir(&p.boot)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["initrd.img-6.1.0-9-amd64"]);
    }

    #[test]
    fn a_failed_build_keeps_the_old_image() {
        let (_t, p) = tree();
        let image = p.boot.join("initrd.img-6.1.0-9-amd64");
        std::fs::write(&image, "old").unwrap();
        let mut log = Vec::new();
        let build = |r: &BuildRequest| {
            std::fs::write(&r.output, "partial").unwrap();
            Err("module ext4 not found".to_string())
        };
        let e = update_one(&p, &Config::default(), "6.1.0-9-amd64", &build, &mut log).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("left as it was") && msg.contains("module ext4 not found"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&image).unwrap(), "old");
        let left: Vec<_> = std::fs::read_dir(&p.boot)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["initrd.img-6.1.0-9-amd64"]);
        // An empty output is a failure too.
        let empty = |r: &BuildRequest| std::fs::write(&r.output, "").map_err(|e| e.to_string());
        assert!(update_one(&p, &Config::default(), "6.1.0-9-amd64", &empty, &mut log).is_err());
        assert_eq!(std::fs::read_to_string(&image).unwrap(), "old");
        // A kernel without modules fails before building.
        let never = |_: &BuildRequest| -> Result<(), String> { panic!("must not build") };
        assert!(matches!(
            update_one(&p, &Config::default(), "9.9", &never, &mut log),
            Err(UpdateError::NoModules { .. })
        ));
    }

    #[test]
    fn the_configured_init_is_passed_when_installed() {
        let (_t, p) = tree();
        std::fs::create_dir_all(&p.lib_dir).unwrap();
        std::fs::write(p.lib_dir.join("init-tiny"), "x").unwrap();
        let c = Config {
            init: InitKind::Tiny,
            ..Config::default()
        };
        let (req, _) = prepare(&p, &c, "6.1.0-9-amd64", &mut Vec::new()).unwrap();
        assert!(req
            .args
            .join(" ")
            .contains(&format!("--init {}", p.lib_dir.join("init-tiny").display())));
        let (req, _) = prepare(&p, &Config::default(), "6.1.0-9-amd64", &mut Vec::new()).unwrap();
        assert!(!req.args.contains(&"--init".to_string()));
    }
}

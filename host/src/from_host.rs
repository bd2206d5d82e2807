//! `kmodinit manifest-from-host`: a manifest for the running machine, from
//! what it has loaded and where its root is.
//!
//! What it reads, all under `--sysroot` (default `/`, so tests use a fixture
//! tree): `proc/modules` (the loaded modules), `proc/self/mountinfo` (the
//! root's device and type), `sys/dev/block/MAJ:MIN` (the root's disk and the
//! drivers above it), `dev/NAME` (the superblock, for the UUID) or
//! `dev/disk/by-uuid` (udev's links, when the device cannot be read), and
//! `MODULES_ROOT/lib/modules/RELEASE/modules.dep` (paths, dependencies,
//! builtins).
//!
//! What it writes, and why each part is justified:
//! - one chain per subsystem (the module's directory under `kernel/` in
//!   `modules.dep`: `drivers/block`, `fs`, `crypto`, `net`, …), holding the
//!   loaded modules no other loaded module depends on (the planner pulls the
//!   dependencies in), in load order (dependencies and softdeps first); optional;
//! - the modules the root needs, in chains `root:SUBSYSTEM`, required: the
//!   root filesystem's module and the drivers of the root disk and of every
//!   device above it in sysfs (`device/driver/module`, e.g. `virtio_blk`
//!   then `virtio_pci`, or `sd_mod` then `ahci`), those that are loaded
//!   modules rather than builtin;
//! - `root.device` as `UUID=` of the mounted root (else `PARTUUID=`, else
//!   the device's current name, with a note saying why), `root.fstype` as
//!   mounted.
//!
//! Nothing else: no parameters (a loaded module's current values do not say
//! which were set on purpose), no `init`, no mount flags. The notes say what
//! was left out and why; the manifest is checked by the planner before it
//! is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use modules_manifest::{
    plan, ChainEntry, ChainSpec, DepIndex, IndexError, KernelCmdline, Manifest, ModuleName,
    PlanError, PlanInput, RootSpec,
};

use kmodinit_blockdev::{probe_filesystem, PROBE_BYTES};

/// Where `manifest-from-host` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The root under which `proc`, `sys` and `dev` are read.
    pub sysroot: PathBuf,
    /// The root of `lib/modules/RELEASE` (default: the sysroot).
    pub modules_root: Option<PathBuf>,
    /// The kernel release (default: `proc/sys/kernel/osrelease`).
    pub kernel_release: Option<String>,
}

/// Why no manifest could be written; each names what is wrong.
#[derive(Debug)]
pub enum FromHostError {
    /// A file that must be read could not be.
    Read { path: PathBuf, source: io::Error },
    /// `mountinfo` has no mount on `/`.
    NoRootMount { mountinfo: PathBuf },
    /// The module index of the release is missing or broken.
    Index { dir: PathBuf, source: IndexError },
    /// The manifest written does not plan against the index (a bug here,
    /// or an index that does not match what the kernel loaded).
    Plan(PlanError),
    /// The generated manifest failed its own schema check.
    Manifest(String),
    /// `--output` could not be written.
    Write { path: PathBuf, source: io::Error },
}

impl fmt::Display for FromHostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromHostError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())?;
                if source.kind() == io::ErrorKind::NotFound && path.ends_with("proc/modules") {
                    write!(
                        f,
                        " (a kernel without loadable module support, or /proc not mounted)"
                    )?;
                }
                Ok(())
            }
            FromHostError::NoRootMount { mountinfo } => {
                write!(f, "{} lists no mount on /", mountinfo.display())
            }
            FromHostError::Index { dir, source } => write!(
                f,
                "cannot read the module index in {}: {source} (check --kernel-release and --modules-root)",
                dir.display()
            ),
            FromHostError::Plan(e) => {
                write!(f, "the generated manifest does not plan: {e}")
            }
            FromHostError::Manifest(e) => write!(f, "the generated manifest is invalid: {e}"),
            FromHostError::Write { path, source } => {
                write!(f, "cannot write the manifest to {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for FromHostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FromHostError::Read { source, .. } | FromHostError::Write { source, .. } => {
                Some(source)
            }
            FromHostError::Index { source, .. } => Some(source),
            FromHostError::Plan(e) => Some(e),
            FromHostError::NoRootMount { .. } | FromHostError::Manifest(_) => None,
        }
    }
}

/// The result: the manifest, its JSON text, and the notes saying what was
/// decided and why (printed on stderr).
#[derive(Debug, Clone)]
pub struct HostManifest {
    pub manifest: Manifest,
    pub json: String,
    pub notes: Vec<String>,
    /// The modules directory read.
    pub modules_dir: PathBuf,
}

/// The root mount, from one `mountinfo` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMount {
    pub major: u32,
    pub minor: u32,
    pub fstype: String,
    /// The mount source, e.g. `/dev/vda1`.
    pub source: String,
}

/// mountinfo escapes blanks and backslashes as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last mount on `/` in a `mountinfo` text (the one on top), or `None`.
pub fn parse_root_mount(mountinfo: &str) -> Option<RootMount> {
    mountinfo.lines().rev().find_map(parse_mountinfo_line)
}

fn parse_mountinfo_line(line: &str) -> Option<RootMount> {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    if left.get(4).map(|m| unescape_mountinfo(m)) != Some("/".to_owned()) {
        return None;
    }
    let (major, minor) = left.get(2)?.split_once(':')?;
    let mut right = right.split(' ');
    Some(RootMount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        fstype: right.next()?.to_owned(),
        source: unescape_mountinfo(right.next().unwrap_or("")),
    })
}

/// The chain a module file belongs to: its directory under `kernel/`, one
/// level deep (`fs`, `crypto`, `net`, `lib`), two under `drivers/` and
/// `sound/` (`drivers/block`, `drivers/net`), three under `arch/`
/// (`arch/x86/crypto`); `extra`, `updates` or the
/// first directory for a module outside `kernel/`; `misc` for a module at
/// the top.
pub fn subsystem(path: &str) -> String {
    let (rest, depth) = match path.strip_prefix("kernel/") {
        Some(r) => (r, None),
        None => (path, Some(1)),
    };
    let dirs: Vec<&str> = rest.split('/').collect();
    let dirs = &dirs[..dirs.len().saturating_sub(1)];
    if dirs.is_empty() {
        return "misc".to_owned();
    }
    let depth = depth.unwrap_or(match dirs[0] {
        "drivers" | "sound" => 2,
        "arch" => 3,
        _ => 1,
    });
    dirs[..depth.min(dirs.len())].join("/")
}

fn read(path: &Path) -> Result<String, FromHostError> {
    std::fs::read_to_string(path).map_err(|source| FromHostError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The root's block device in sysfs: `sys/dev/block/MAJ:MIN`, or, when the
/// mount's device number is not a block device (btrfs reports an anonymous
/// one), the mount source's name under `sys/class/block`.
fn root_block_dir(sysroot: &Path, root: &RootMount) -> Option<PathBuf> {
    let by_number = sysroot.join(format!("sys/dev/block/{}:{}", root.major, root.minor));
    if by_number.exists() {
        return by_number.canonicalize().ok();
    }
    let name = root.source.strip_prefix("/dev/")?;
    let by_name = sysroot.join("sys/class/block").join(name);
    by_name.canonicalize().ok()
}

/// The disk of a block device directory: itself, or its parent for a
/// partition (a directory with a `partition` file).
fn disk_of(block: &Path) -> PathBuf {
    if block.join("partition").exists() {
        if let Some(p) = block.parent() {
            return p.to_path_buf();
        }
    }
    block.to_path_buf()
}

/// The module names of the drivers bound to the disk's device and to every
/// device above it (`device/driver/module`, then the parents'), nearest
/// first, up to `sys/devices`. A builtin driver has no `module` link.
fn driver_modules(sysroot: &Path, disk: &Path) -> Vec<ModuleName> {
    let top = sysroot.join("sys/devices").canonicalize().ok();
    let mut out = Vec::new();
    let Ok(mut dev) = disk.join("device").canonicalize() else {
        return out;
    };
    loop {
        if let Ok(module) = dev.join("driver/module").canonicalize() {
            if let Some(name) = module
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| ModuleName::new(n).ok())
            {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        match dev.parent() {
            Some(p) if Some(p) != top.as_deref() && p.components().count() > 1 => {
                dev = p.to_path_buf()
            }
            _ => break,
        }
    }
    out
}

/// The `UUID` of the filesystem on `dev/NAME`, from its superblock.
fn uuid_from_superblock(sysroot: &Path, name: &str) -> Result<Option<String>, io::Error> {
    let mut buf = Vec::with_capacity(PROBE_BYTES);
    std::fs::File::open(sysroot.join("dev").join(name))?
        .take(PROBE_BYTES as u64)
        .read_to_end(&mut buf)?;
    Ok(probe_filesystem(&buf).and_then(|fs| fs.uuid))
}

/// The name of the udev link in `dev/disk/DIR` that points at `name`.
fn udev_link(sysroot: &Path, dir: &str, name: &str) -> Option<String> {
    let entries = std::fs::read_dir(sysroot.join("dev/disk").join(dir)).ok()?;
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path())
                .ok()
                .is_some_and(|t| t.file_name().and_then(|f| f.to_str()) == Some(name))
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// `root.device` for the block device `name`, and notes on how it was found.
fn root_device(sysroot: &Path, name: &str, notes: &mut Vec<String>) -> String {
    let why_not = match uuid_from_superblock(sysroot, name) {
        Ok(Some(uuid)) => {
            notes.push(format!(
                "root: UUID={uuid} read from the superblock of /dev/{name}"
            ));
            return format!("UUID={uuid}");
        }
        Ok(None) => format!("the superblock of /dev/{name} has no UUID kmodinit can read"),
        Err(e) => format!("cannot read /dev/{name}: {e}"),
    };
    if let Some(uuid) = udev_link(sysroot, "by-uuid", name) {
        notes.push(format!(
            "root: UUID={uuid} from /dev/disk/by-uuid ({why_not})"
        ));
        return format!("UUID={uuid}");
    }
    if let Some(partuuid) = udev_link(sysroot, "by-partuuid", name) {
        notes.push(format!(
            "root: no filesystem UUID found ({why_not}, no /dev/disk/by-uuid link); \
             PARTUUID={partuuid} from /dev/disk/by-partuuid"
        ));
        return format!("PARTUUID={partuuid}");
    }
    notes.push(format!(
        "root: no UUID found ({why_not}, no /dev/disk/by-uuid or by-partuuid link); \
         /dev/{name} is the device's name today, which may change between boots: \
         edit root.device if it does"
    ));
    format!("/dev/{name}")
}

/// What a plan loads before each module, as the planner orders them
/// (`modules_manifest::plan`): its `modules.dep` dependencies, the matches
/// of its `softdep pre:`, and each module that names it in `softdep post:`;
/// a softdep against a `modules.dep` dependency does not count (the planner
/// drops it too).
struct LoadOrder<'a> {
    index: &'a DepIndex,
    /// `post:` target → the modules naming it.
    post_of: BTreeMap<ModuleName, Vec<ModuleName>>,
}

impl<'a> LoadOrder<'a> {
    fn new(index: &'a DepIndex) -> LoadOrder<'a> {
        let mut post_of: BTreeMap<ModuleName, Vec<ModuleName>> = BTreeMap::new();
        for (m, soft) in &index.softdeps {
            for alias in &soft.post {
                for target in index.resolve(alias) {
                    if !Self::needs(index, m, &target) {
                        post_of.entry(target).or_default().push(m.clone());
                    }
                }
            }
        }
        LoadOrder { index, post_of }
    }

    fn needs(index: &DepIndex, a: &ModuleName, b: &ModuleName) -> bool {
        index.module(a).is_some_and(|e| e.deps.contains(b))
    }

    /// The modules loaded right before `m`.
    fn before(&self, m: &ModuleName) -> Vec<ModuleName> {
        let mut out: Vec<ModuleName> = self
            .index
            .module(m)
            .map(|e| e.deps.clone())
            .unwrap_or_default();
        if let Some(soft) = self.index.softdep(m) {
            for alias in &soft.pre {
                out.extend(
                    self.index
                        .resolve(alias)
                        .into_iter()
                        .filter(|p| !Self::needs(self.index, p, m)),
                );
            }
        }
        out.extend(self.post_of.get(m).into_iter().flatten().cloned());
        out
    }

    /// Every module loaded before `m`, directly or not.
    fn ancestors(&self, m: &ModuleName) -> BTreeSet<ModuleName> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![m.clone()];
        while let Some(x) = todo.pop() {
            for p in self.before(&x) {
                if seen.insert(p.clone()) {
                    todo.push(p);
                }
            }
        }
        seen
    }
}

/// Orders `names` so that each comes after those of them loaded before it
/// ([`LoadOrder`]: dependencies and softdeps, directly or through modules
/// outside `names`), by name otherwise. A chain lists its entries in load
/// order, so an order against a softdep would be a cycle (`r8169` has
/// `softdep pre: realtek`, which its name sorts after).
fn dependency_order(index: &DepIndex, names: &BTreeSet<ModuleName>) -> Vec<ModuleName> {
    let order = LoadOrder::new(index);
    let ancestors: BTreeMap<&ModuleName, BTreeSet<ModuleName>> =
        names.iter().map(|m| (m, order.ancestors(m))).collect();
    let mut left: BTreeSet<ModuleName> = names.clone();
    let mut out = Vec::with_capacity(names.len());
    while !left.is_empty() {
        let ready = left
            .iter()
            .find(|m| {
                ancestors
                    .get(m)
                    .is_none_or(|a| !left.iter().any(|o| o != *m && a.contains(o)))
            })
            .cloned()
            // A cycle of dependencies or softdeps: the planner reports it;
            // keep the rest in name order.
            .or_else(|| left.iter().next().cloned());
        let Some(m) = ready else { break };
        left.remove(&m);
        out.push(m);
    }
    out
}

/// Builds the manifest for the machine under `paths.sysroot`.
pub fn manifest_from_host(paths: &HostPaths) -> Result<HostManifest, FromHostError> {
    let sysroot = &paths.sysroot;
    let mut notes = Vec::new();
    let release = match &paths.kernel_release {
        Some(r) => r.clone(),
        None => read(&sysroot.join("proc/sys/kernel/osrelease"))?
            .trim()
            .to_owned(),
    };
    let modules_dir = paths
        .modules_root
        .as_deref()
        .unwrap_or(sysroot)
        .join("lib/modules")
        .join(&release);
    let index = DepIndex::load(&modules_dir).map_err(|source| FromHostError::Index {
        dir: modules_dir.clone(),
        source,
    })?;
    let loaded_all = modules_manifest::parse_proc_modules(&read(&sysroot.join("proc/modules"))?);
    let mut loaded: BTreeSet<ModuleName> = BTreeSet::new();
    for m in &loaded_all {
        if index.is_builtin(m) {
            continue;
        } else if index.module(m).is_none() {
            notes.push(format!(
                "{m}: loaded but not in {}/modules.dep; left out (built for another release, \
                 or loaded from outside the module tree)",
                modules_dir.display()
            ));
        } else {
            loaded.insert(m.clone());
        }
    }

    // The root: its mount, its device, the modules it needs.
    let mountinfo_path = sysroot.join("proc/self/mountinfo");
    let root_mount =
        parse_root_mount(&read(&mountinfo_path)?).ok_or(FromHostError::NoRootMount {
            mountinfo: mountinfo_path,
        })?;
    let mut needed: Vec<ModuleName> = Vec::new();
    let fs_module = index
        .resolve(&root_mount.fstype)
        .into_iter()
        .chain(index.resolve(&format!("fs-{}", root_mount.fstype)))
        .find(|m| loaded.contains(m) || index.is_builtin(m));
    match &fs_module {
        Some(m) if loaded.contains(m) => {
            notes.push(format!(
                "root: filesystem {} is module {m}: required",
                root_mount.fstype
            ));
            needed.push(m.clone());
        }
        Some(m) => notes.push(format!(
            "root: filesystem {} is builtin ({m})",
            root_mount.fstype
        )),
        None => notes.push(format!(
            "root: no loaded or builtin module provides filesystem {}; none marked required for it",
            root_mount.fstype
        )),
    }
    let mut root = RootSpec {
        fstype: Some(root_mount.fstype.clone()),
        ..RootSpec::default()
    };
    match root_block_dir(sysroot, &root_mount) {
        None => notes.push(format!(
            "root: {} ({}, device {}:{}) is not a block device; no root.device written \
             (give root= on the kernel command line)",
            root_mount.source, root_mount.fstype, root_mount.major, root_mount.minor
        )),
        Some(block) => {
            let name = block
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            root.device = Some(root_device(sysroot, &name, &mut notes));
            let disk = disk_of(&block);
            if std::fs::read_dir(disk.join("slaves"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
            {
                notes.push(format!(
                    "root: /dev/{name} is stacked on other devices (device-mapper, md): \
                     kmodinit does not assemble them, so this image will not find the root"
                ));
            }
            for m in driver_modules(sysroot, &disk) {
                if loaded.contains(&m) {
                    notes.push(format!("root: disk driver {m}: required"));
                    if !needed.contains(&m) {
                        needed.push(m);
                    }
                } else if index.is_builtin(&m) {
                    notes.push(format!("root: disk driver {m} is builtin"));
                }
            }
        }
    }

    // Entries: the required modules, and every other loaded module that no
    // loaded module depends on.
    let depended: BTreeSet<&ModuleName> = loaded
        .iter()
        .filter_map(|m| index.module(m))
        .flat_map(|e| e.deps.iter().filter(move |d| **d != e.name))
        .collect();
    let mut groups: BTreeMap<(bool, String), BTreeSet<ModuleName>> = BTreeMap::new();
    for m in &loaded {
        let required = needed.contains(m);
        if !required && depended.contains(m) {
            continue;
        }
        let path = index.module(m).map(|e| e.path.as_str()).unwrap_or_default();
        groups
            .entry((!required, subsystem(path)))
            .or_default()
            .insert(m.clone());
    }
    let chains: Vec<ChainSpec> = groups
        .into_iter()
        .map(|((optional, sub), mods)| ChainSpec {
            name: if optional { sub } else { format!("root:{sub}") },
            modules: dependency_order(&index, &mods)
                .into_iter()
                .map(|name| ChainEntry { name, params: None })
                .collect(),
            required: !optional,
        })
        .collect();
    let manifest = Manifest {
        version: 1,
        chains,
        modules: BTreeMap::new(),
        blocklist: Vec::new(),
        jobs: 0,
        root: Some(root),
        init: Default::default(),
        on_failure: None,
        deadline_ms: None,
        required_timeout_ms: None,
        softdeps: BTreeMap::new(),
        // The chains already name what this machine loaded.
        coldplug: None,
        measure: None,
        lock_modules: false,
    };
    manifest
        .check()
        .map_err(|e| FromHostError::Manifest(e.to_string()))?;
    let plan = plan(PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline: &KernelCmdline::default(),
        loaded: &BTreeSet::new(),
    })
    .map_err(FromHostError::Plan)?;
    let planned: BTreeSet<&ModuleName> = plan.nodes.iter().map(|n| &n.name).collect();
    let uncovered: Vec<&str> = loaded
        .iter()
        .filter(|m| !planned.contains(m))
        .map(ModuleName::as_str)
        .collect();
    if !uncovered.is_empty() {
        return Err(FromHostError::Manifest(format!(
            "its plan leaves out loaded modules: {}",
            uncovered.join(", ")
        )));
    }
    notes.push(format!(
        "{} loaded module(s) of {release} covered by {} chain(s); {} node(s) in the plan",
        loaded.len(),
        manifest.chains.len(),
        plan.nodes.len()
    ));
    let json = String::from_utf8_lossy(&manifest.to_json()).into_owned();
    // What is written must read back as the manifest checked above.
    match Manifest::from_json(json.as_bytes()) {
        Ok(back) if back == manifest => {}
        Ok(_) => {
            return Err(FromHostError::Manifest(
                "it does not read back as written".into(),
            ))
        }
        Err(e) => return Err(FromHostError::Manifest(e.to_string())),
    }
    Ok(HostManifest {
        manifest,
        json,
        notes,
        modules_dir,
    })
}

/// The fixture machine builder the unit tests share with
/// `tests/manifest_from_host.rs`.
#[cfg(test)]
#[path = "../tests/support/sysroot.rs"]
mod sysroot_fixture;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::sysroot_fixture::{Sysroot, VirtioRoot};
    use super::*;

    fn n(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    #[test]
    fn subsystems_from_paths() {
        assert_eq!(
            subsystem("kernel/drivers/block/virtio_blk.ko"),
            "drivers/block"
        );
        assert_eq!(
            subsystem("kernel/drivers/net/ethernet/intel/e1000/e1000.ko.xz"),
            "drivers/net"
        );
        assert_eq!(subsystem("kernel/fs/ext4/ext4.ko"), "fs");
        assert_eq!(subsystem("kernel/crypto/crc32c_generic.ko"), "crypto");
        assert_eq!(subsystem("kernel/net/ipv4/tunnel4.ko"), "net");
        assert_eq!(subsystem("kernel/sound/core/snd.ko"), "sound/core");
        assert_eq!(
            subsystem("kernel/arch/x86/crypto/crc32c-intel.ko"),
            "arch/x86/crypto"
        );
        assert_eq!(subsystem("updates/dkms/zfs.ko"), "updates");
        assert_eq!(subsystem("extra/foo.ko"), "extra");
        assert_eq!(subsystem("kernel/foo.ko"), "misc");
        assert_eq!(subsystem("foo.ko"), "misc");
    }

    #[test]
    fn root_mount_is_the_top_mount_on_slash() {
        let text = "\
22 1 8:1 / / ro,relatime - ext4 /dev/sda1 ro
23 22 0:21 / /proc rw - proc proc rw
30 22 8:2 / /home rw shared:1 - xfs /dev/sda2 rw
31 1 8:3 / / rw shared:2 master:1 - btrfs /dev/my\\040disk rw
";
        assert_eq!(
            parse_root_mount(text),
            Some(RootMount {
                major: 8,
                minor: 3,
                fstype: "btrfs".into(),
                source: "/dev/my disk".into()
            })
        );
        assert_eq!(
            parse_root_mount("23 22 0:21 / /proc rw - proc proc rw\n"),
            None
        );
        assert_eq!(
            parse_root_mount("garbage\n\n1 2 x:y / / rw - ext4 a b"),
            None
        );
    }

    /// A fixture machine: a virtio disk partition `vda1` (254:1) holding an
    /// ext4 root, driven by `virtio_blk` over `virtio_pci`; `loop` and
    /// `crc32c_generic` loaded besides, `ext4` needing `jbd2` and `mbcache`.
    /// Its `proc`, `sys` and `dev` are the shared builder's
    /// (`tests/support/sysroot.rs`, also used by `tests/manifest_from_host.rs`).
    struct Fixture {
        sys: Sysroot,
    }

    const UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    impl std::ops::Deref for Fixture {
        type Target = Sysroot;
        fn deref(&self) -> &Sysroot {
            &self.sys
        }
    }

    impl Fixture {
        fn new(tag: &str) -> Fixture {
            let f = Fixture {
                sys: Sysroot::new(tag),
            };
            f.write(
                "lib/modules/9.9.9-test/modules.dep",
                "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko\n\
                 kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\n\
                 kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
                 kernel/drivers/virtio/virtio_ring.ko:\nkernel/drivers/virtio/virtio.ko:\n\
                 kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
                 kernel/drivers/block/loop.ko:\n\
                 kernel/crypto/crc32c_generic.ko:\n",
            );
            f.write(
                "lib/modules/9.9.9-test/modules.builtin",
                "kernel/fs/vfat/vfat.ko\n",
            );
            f.osrelease("9.9.9-test");
            f.write(
                "proc/modules",
                "ext4 1 1 jbd2,mbcache, Live 0x0\njbd2 1 1 - Live 0x0\nmbcache 1 1 - Live 0x0\n\
                 virtio_blk 1 1 - Live 0x0\nvirtio_pci 1 0 - Live 0x0\nvirtio_ring 1 2 - Live 0x0\n\
                 virtio 1 2 - Live 0x0\nloop 1 0 - Live 0x0\ncrc32c_generic 1 0 - Live 0x0\n",
            );
            f.virtio_root(&VirtioRoot {
                fstype: "ext4",
                uuid: [
                    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3,
                    0xd2, 0xe1, 0xf0,
                ],
                blk_module: Some("virtio_blk"),
                pci_module: Some("virtio_pci"),
            });
            f
        }

        fn paths(&self) -> HostPaths {
            HostPaths {
                sysroot: self.root.clone(),
                modules_root: None,
                kernel_release: None,
            }
        }

        fn run(&self) -> HostManifest {
            manifest_from_host(&self.paths()).unwrap_or_else(|e| panic!("{e}"))
        }
    }

    fn chain<'a>(m: &'a Manifest, name: &str) -> &'a ChainSpec {
        m.chains
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no chain {name} in {:?}", m.chains))
    }

    fn names(c: &ChainSpec) -> Vec<&str> {
        c.modules.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn writes_the_fixture_machines_manifest() {
        let f = Fixture::new("basic");
        let out = f.run();
        let m = &out.manifest;
        let summary: Vec<(&str, bool, Vec<&str>)> = m
            .chains
            .iter()
            .map(|c| (c.name.as_str(), c.required, names(c)))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("root:drivers/block", true, vec!["virtio_blk"]),
                ("root:drivers/virtio", true, vec!["virtio_pci"]),
                ("root:fs", true, vec!["ext4"]),
                ("crypto", false, vec!["crc32c_generic"]),
                ("drivers/block", false, vec!["loop"]),
            ],
            "{}",
            out.json
        );
        let root = m.root.as_ref().unwrap();
        assert_eq!(root.device.as_deref(), Some(&*format!("UUID={UUID}")));
        assert_eq!(root.fstype.as_deref(), Some("ext4"));
        assert_eq!(root.flags, None);
        assert!(m.modules.is_empty() && m.blocklist.is_empty());
        // The text reads back as the manifest, and says only what it set.
        assert_eq!(&Manifest::from_json(out.json.as_bytes()).unwrap(), m);
        assert!(out.json.contains("\"root:fs\""), "{}", out.json);
        assert!(!out.json.contains("init") && !out.json.contains("params"));
        let notes = out.notes.join("\n");
        assert!(notes.contains("superblock of /dev/vda1"), "{notes}");
        assert!(
            notes.contains("disk driver virtio_blk: required"),
            "{notes}"
        );
        assert!(notes.contains("filesystem ext4 is module ext4"), "{notes}");
        assert!(
            notes.contains("9 loaded module(s) of 9.9.9-test"),
            "{notes}"
        );
    }

    #[test]
    fn dependencies_are_entries_only_when_the_root_needs_them() {
        let f = Fixture::new("deps");
        // jbd2 is on its own: still pulled in by ext4, not an entry.
        let m = f.run().manifest;
        assert!(m
            .chains
            .iter()
            .all(|c| !names(c).contains(&"jbd2") && !names(c).contains(&"virtio_ring")));
        // A loaded module no one depends on and that the root does not need.
        f.write(
            "lib/modules/9.9.9-test/modules.dep",
            std::fs::read_to_string(f.root.join("lib/modules/9.9.9-test/modules.dep")).unwrap()
                + "kernel/drivers/block/zram/zram.ko: kernel/lib/lz4_compress.ko\nkernel/lib/lz4_compress.ko:\n",
        );
        f.write(
            "proc/modules",
            std::fs::read_to_string(f.root.join("proc/modules")).unwrap()
                + "zram 1 0 - Live 0x0\nlz4_compress 1 1 - Live 0x0\n",
        );
        let m = f.run().manifest;
        assert_eq!(names(chain(&m, "drivers/block")), vec!["loop", "zram"]);
        assert!(m.chains.iter().all(|c| c.name != "lib"), "{:?}", m.chains);
    }

    #[test]
    fn builtin_and_unknown_loaded_modules_are_left_out_with_a_note() {
        let f = Fixture::new("builtin");
        f.write(
            "proc/modules",
            std::fs::read_to_string(f.root.join("proc/modules")).unwrap()
                + "vfat 1 0 - Live 0x0\nout_of_tree 1 0 - Live 0x0\n",
        );
        let out = f.run();
        assert!(out
            .manifest
            .chains
            .iter()
            .all(|c| !names(c).contains(&"vfat") && !names(c).contains(&"out_of_tree")));
        let notes = out.notes.join("\n");
        assert!(
            notes.contains("out_of_tree: loaded but not in") && notes.contains("left out"),
            "{notes}"
        );
    }

    #[test]
    fn a_builtin_root_driver_is_not_required() {
        let f = Fixture::new("builtin-driver");
        let dep = std::fs::read_to_string(f.root.join("lib/modules/9.9.9-test/modules.dep"))
            .unwrap()
            .replace("kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n", "");
        f.write("lib/modules/9.9.9-test/modules.dep", dep);
        f.write(
            "lib/modules/9.9.9-test/modules.builtin",
            "kernel/drivers/virtio/virtio_pci.ko\n",
        );
        f.write(
            "proc/modules",
            std::fs::read_to_string(f.root.join("proc/modules"))
                .unwrap()
                .replace("virtio_pci 1 0 - Live 0x0\n", ""),
        );
        let out = f.run();
        assert!(out
            .manifest
            .chains
            .iter()
            .all(|c| c.name != "root:drivers/virtio"));
        assert!(out
            .notes
            .join("\n")
            .contains("disk driver virtio_pci is builtin"));
    }

    #[test]
    fn without_a_readable_superblock_the_udev_links_then_the_name() {
        let f = Fixture::new("links");
        std::fs::remove_file(f.root.join("dev/vda1")).unwrap();
        f.link("dev/disk/by-uuid/1234-ABCD", "../../vda1");
        f.link("dev/disk/by-uuid/9999-0000", "../../vdb");
        let out = f.run();
        let device = out.manifest.root.unwrap().device.unwrap();
        assert_eq!(device, "UUID=1234-ABCD");
        assert!(
            out.notes
                .join("\n")
                .contains("from /dev/disk/by-uuid (cannot read /dev/vda1"),
            "{:?}",
            out.notes
        );

        std::fs::remove_dir_all(f.root.join("dev/disk/by-uuid")).unwrap();
        f.link("dev/disk/by-partuuid/aa-01", "../../vda1");
        let out = f.run();
        assert_eq!(out.manifest.root.unwrap().device.unwrap(), "PARTUUID=aa-01");
        assert!(out.notes.join("\n").contains("no filesystem UUID found"));

        std::fs::remove_dir_all(f.root.join("dev/disk")).unwrap();
        // A readable superblock without a UUID (all zeros).
        f.write("dev/vda1", vec![0u8; 4096]);
        let out = f.run();
        assert_eq!(out.manifest.root.unwrap().device.unwrap(), "/dev/vda1");
        let notes = out.notes.join("\n");
        assert!(
            notes.contains("has no UUID kmodinit can read") && notes.contains("may change"),
            "{notes}"
        );
    }

    #[test]
    fn a_root_that_is_no_block_device_gets_no_root_device() {
        let f = Fixture::new("virtiofs");
        f.write(
            "proc/self/mountinfo",
            "21 1 0:30 / / rw - virtiofs myfs rw\n",
        );
        let out = f.run();
        let root = out.manifest.root.clone().unwrap();
        assert_eq!(root.device, None);
        assert_eq!(root.fstype.as_deref(), Some("virtiofs"));
        assert!(out.manifest.chains.iter().all(|c| !c.required));
        let notes = out.notes.join("\n");
        assert!(notes.contains("is not a block device"), "{notes}");
        assert!(notes.contains("no loaded or builtin module provides filesystem virtiofs"));
    }

    #[test]
    fn options_move_the_index_and_the_release() {
        let f = Fixture::new("options");
        let other = f.root.join("other");
        std::fs::create_dir_all(other.join("lib/modules/1.2.3")).unwrap();
        std::fs::copy(
            f.root.join("lib/modules/9.9.9-test/modules.dep"),
            other.join("lib/modules/1.2.3/modules.dep"),
        )
        .unwrap();
        let out = manifest_from_host(&HostPaths {
            modules_root: Some(other.clone()),
            kernel_release: Some("1.2.3".into()),
            ..f.paths()
        })
        .unwrap();
        assert_eq!(out.modules_dir, other.join("lib/modules/1.2.3"));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let f = Fixture::new("errors");
        let e = manifest_from_host(&HostPaths {
            kernel_release: Some("0.0.0-none".into()),
            ..f.paths()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("lib/modules/0.0.0-none") && e.contains("--kernel-release"),
            "{e}"
        );

        std::fs::remove_file(f.root.join("proc/modules")).unwrap();
        let e = manifest_from_host(&f.paths()).unwrap_err().to_string();
        assert!(
            e.contains("proc/modules") && e.contains("loadable module"),
            "{e}"
        );

        f.write("proc/modules", "ext4 1 0 - Live 0x0\n");
        f.write(
            "proc/self/mountinfo",
            "22 21 0:5 / /proc rw - proc proc rw\n",
        );
        let e = manifest_from_host(&f.paths()).unwrap_err().to_string();
        assert!(e.contains("mountinfo lists no mount on /"), "{e}");

        std::fs::remove_file(f.root.join("proc/sys/kernel/osrelease")).unwrap();
        let e = manifest_from_host(&f.paths()).unwrap_err().to_string();
        assert!(e.contains("osrelease"), "{e}");
    }

    #[test]
    fn chains_follow_softdeps_where_names_sort_the_other_way() {
        // Debian's r8169 has `softdep r8169 pre: realtek`; both are
        // drivers/net entries (nothing depends on them in modules.dep). In
        // name order the chain would load r8169 first: a cycle the planner
        // refuses. `post:` the same way, and through a module outside the
        // chain (zz_a pre: helper, helper pre: aa_b).
        let f = Fixture::new("softdep");
        f.write(
            "lib/modules/9.9.9-test/modules.dep",
            std::fs::read_to_string(f.root.join("lib/modules/9.9.9-test/modules.dep")).unwrap()
                + "kernel/drivers/net/ethernet/realtek/r8169.ko:\n\
                   kernel/drivers/net/phy/realtek.ko:\n\
                   kernel/drivers/net/aa_post.ko:\nkernel/drivers/net/bb_first.ko:\n\
                   kernel/drivers/net/zz_a.ko:\nkernel/drivers/net/aa_b.ko:\n\
                   kernel/lib/helper.ko:\n",
        );
        f.write(
            "lib/modules/9.9.9-test/modules.softdep",
            "softdep r8169 pre: realtek\nsoftdep bb_first post: aa_post\n\
             softdep zz_a pre: helper\nsoftdep helper pre: aa_b\n",
        );
        f.write(
            "proc/modules",
            std::fs::read_to_string(f.root.join("proc/modules")).unwrap()
                + "r8169 1 0 - Live 0x0\nrealtek 1 0 - Live 0x0\naa_post 1 0 - Live 0x0\n\
                   bb_first 1 0 - Live 0x0\nzz_a 1 0 - Live 0x0\naa_b 1 0 - Live 0x0\n",
        );
        let m = f.run().manifest;
        let net = names(chain(&m, "drivers/net"));
        let pos = |s: &str| net.iter().position(|m| *m == s).unwrap();
        assert!(pos("realtek") < pos("r8169"), "{net:?}");
        assert!(pos("bb_first") < pos("aa_post"), "{net:?}");
        assert!(pos("aa_b") < pos("zz_a"), "{net:?}");
        assert_eq!(net.len(), 6, "{net:?}");
    }

    #[test]
    fn dependency_order_puts_dependencies_first() {
        let f = Fixture::new("order");
        let index = DepIndex::load(&f.root.join("lib/modules/9.9.9-test")).unwrap();
        let set: BTreeSet<ModuleName> = ["virtio_blk", "virtio", "virtio_ring", "ext4", "jbd2"]
            .iter()
            .map(|s| n(s))
            .collect();
        let order = dependency_order(&index, &set);
        let pos = |s: &str| order.iter().position(|m| m.as_str() == s).unwrap();
        assert!(pos("virtio") < pos("virtio_blk") && pos("virtio_ring") < pos("virtio_blk"));
        assert!(pos("jbd2") < pos("ext4"));
        assert_eq!(order.len(), 5);
    }
}

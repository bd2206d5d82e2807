//! Coldplug without udev: the drivers of the devices present, and of the
//! devices that appear while drivers load.
//!
//! In the loader child: a `NETLINK_KOBJECT_UEVENT` socket is opened first,
//! so no device added during the walk is missed; then `/sys/devices` is
//! walked for `modalias` files; each modalias is matched against the
//! image's `modules.alias` (fnmatch, as kmod does, through
//! [`modules_manifest::AliasTable::lookup`], which binary-searches the
//! patterns by literal prefix), filtered by the manifest's `allow`/`deny`
//! globs, and the matches are loaded as one session of the
//! [`OpenWorld`] (exactly once with the boot plan). While anything loads,
//! `add` uevents with `MODALIAS=` start further sessions (virtio_pci binds,
//! the virtio devices appear, `virtio:d00000002v…` brings virtio_blk).
//!
//! Modaliases come from devices: untrusted. Each is validated (length,
//! printable ASCII, `bus:` prefix), is never used as a path, and the set of
//! aliases seen is deduplicated and capped, so a uevent flood costs bounded
//! memory and at most one session per batch.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use modules_manifest::depmod::fnmatch;
use modules_manifest::{DepIndex, KernelCmdline, Manifest, ModuleName};

pub use modules_manifest::modalias::{
    valid_modalias, walk, Walk, MAX_MODALIAS_BYTES, MAX_WALK_DEPTH, MAX_WALK_ENTRIES,
};

use crate::clock::boottime;
use crate::loader::open_world::{OpenWorld, Want};
use crate::report::ModuleState;

/// The most distinct modaliases taken in one boot (sysfs and uevents
/// together); later ones are dropped with one note.
pub const MAX_ALIASES: usize = 8192;

/// The most uevent datagrams read in one pass of the loop before a session
/// is started with what they brought.
pub const MAX_UEVENTS_PER_BATCH: usize = 1024;

/// How long no device may have appeared, with nothing loading, before the
/// load phase ends. A driver's probe adds its child devices synchronously,
/// so their uevents are queued before `finit_module` returns; this covers
/// probes that a driver defers to a workqueue (the deferred-probe work runs
/// right after a successful bind), with room for TCG emulation. The whole
/// coldplug is bounded by the boot's deadline besides.
pub const SETTLE: Duration = Duration::from_millis(250);

/// How long one poll of the uevent socket waits.
const POLL_STEP: Duration = Duration::from_millis(20);

/// Coldplug as this boot runs it: the manifest's `coldplug` with the
/// command line's `kmodinit.coldplug=` over its `enabled`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub enabled: bool,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl Settings {
    pub fn of(manifest: &Manifest, cmdline: &KernelCmdline) -> Self {
        let spec = manifest.coldplug.clone().unwrap_or_default();
        Settings {
            enabled: cmdline.coldplug.unwrap_or(spec.enabled),
            allow: spec.allow,
            deny: spec.deny,
        }
    }
}

/// What matching one modalias decided for one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Load,
    /// A `deny` glob matched (the glob).
    Denied(String),
    /// `allow` is not empty and none of its globs matched.
    NotAllowed,
}

/// Every module whose `modules.alias` pattern matches `alias`, with what
/// the `allow`/`deny` globs say about it (sorted by module, no duplicates).
pub fn matches(index: &DepIndex, settings: &Settings, alias: &str) -> Vec<(ModuleName, Verdict)> {
    index
        .aliases
        .lookup(alias)
        .into_iter()
        .map(|m| {
            let v = verdict(settings, &m);
            (m, v)
        })
        .collect()
}

fn verdict(settings: &Settings, m: &ModuleName) -> Verdict {
    let name = m.as_str().as_bytes();
    if let Some(g) = settings.deny.iter().find(|g| fnmatch(g.as_bytes(), name)) {
        return Verdict::Denied(g.clone());
    }
    if !settings.allow.is_empty() && !settings.allow.iter().any(|g| fnmatch(g.as_bytes(), name)) {
        return Verdict::NotAllowed;
    }
    Verdict::Load
}

/// The `MODALIAS=` of a kernel `add` uevent (`add@/devices/…\0ACTION=add\0
/// …MODALIAS=…\0…`), validated; `None` for any other message.
pub fn uevent_modalias(msg: &[u8]) -> Option<&str> {
    let mut fields = msg.split(|&b| b == 0);
    let head = fields.next()?;
    if !head.starts_with(b"add@") {
        return None;
    }
    let mut add = false;
    let mut alias = None;
    for f in fields {
        if f == b"ACTION=add" {
            add = true;
        } else if let Some(a) = f.strip_prefix(b"MODALIAS=") {
            alias = Some(a);
        }
    }
    if !add {
        return None;
    }
    valid_modalias(alias?)
}

/// The modaliases taken so far: each is matched once, and at most
/// [`MAX_ALIASES`] are kept.
#[derive(Debug, Default)]
pub struct Seen {
    aliases: HashSet<String>,
    /// Aliases dropped because the set was full.
    pub dropped: usize,
}

impl Seen {
    /// True if `alias` is new and was taken.
    pub fn take(&mut self, alias: &str) -> bool {
        if self.aliases.contains(alias) {
            return false;
        }
        if self.aliases.len() >= MAX_ALIASES {
            self.dropped += 1;
            return false;
        }
        self.aliases.insert(alias.to_owned())
    }
}

/// Turns new modaliases into a session's wants (reason `modalias:ALIAS`,
/// the first alias that matched a module), telling `world` about the
/// matches kept out by the globs. Modules already wanted in this boot's
/// coldplug are not wanted again.
struct Matcher<'a> {
    index: &'a DepIndex,
    settings: &'a Settings,
    seen: Seen,
    wanted: HashSet<ModuleName>,
    refused: HashSet<ModuleName>,
}

impl Matcher<'_> {
    fn wants(&mut self, world: &OpenWorld, aliases: &[String]) -> Vec<Want> {
        let mut out = Vec::new();
        for alias in aliases {
            if !self.seen.take(alias) {
                continue;
            }
            for (m, v) in matches(self.index, self.settings, alias) {
                match v {
                    Verdict::Load => {
                        if self.wanted.insert(m.clone()) {
                            log::info!("coldplug: {m} for modalias {alias}");
                            out.push(Want {
                                name: m,
                                reason: format!("modalias:{alias}"),
                            });
                        }
                    }
                    Verdict::Denied(glob) => {
                        if self.refused.insert(m.clone()) {
                            let n = format!(
                                "coldplug: {m} matches modalias {alias} but the deny glob {glob:?} keeps it out"
                            );
                            log::info!("{n}");
                            world.notice(n);
                        }
                    }
                    Verdict::NotAllowed => {
                        if self.refused.insert(m.clone()) {
                            let n = format!(
                                "coldplug: {m} matches modalias {alias} but no allow glob names it; not loaded"
                            );
                            log::info!("{n}");
                            world.notice(n);
                        }
                    }
                }
            }
        }
        out
    }
}

/// Runs coldplug until the load phase ends: the uevent socket, the walk of
/// `sys/devices`, one session for what the walk matched, one more per batch
/// of new uevents. Returns when `main_done()` is true, no session runs and
/// no new device appeared for [`SETTLE`], or at `until` (boot time, s: the
/// boot's deadline), whichever comes first; sessions still running then
/// finish in the background of the caller's scope.
pub fn run<'s, 'w: 's>(
    scope: &'s std::thread::Scope<'s, 'w>,
    world: &'w OpenWorld,
    settings: &'w Settings,
    sys: &Path,
    until: f64,
    main_done: &dyn Fn() -> bool,
) {
    let socket = match crate::uevent::Socket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            world.notice(format!(
                "coldplug: cannot open the uevent socket ({e}): devices that appear while drivers load are not matched"
            ));
            None
        }
    };
    let walked = walk(&sys.join("devices"));
    log::info!(
        "coldplug: {} modalias file(s) among {} sysfs entries",
        walked.aliases.len(),
        walked.entries
    );
    if walked.truncated {
        world.notice(format!(
            "coldplug: the walk of {} stopped at a bound ({MAX_WALK_DEPTH} levels, {MAX_WALK_ENTRIES} entries)",
            sys.join("devices").display()
        ));
    }
    if walked.invalid > 0 {
        world.notice(format!(
            "coldplug: {} modalias file(s) ignored (not a valid modalias)",
            walked.invalid
        ));
    }
    let mut matcher = Matcher {
        index: world.index(),
        settings,
        seen: Seen::default(),
        wanted: HashSet::new(),
        refused: HashSet::new(),
    };
    let start = |wants: Vec<Want>| {
        if !wants.is_empty() {
            let w = world.clone();
            let count = wants.len();
            let spawned =
                crate::sys::process::thread("coldplug-load").spawn_scoped(scope, move || {
                    match w.load(wants) {
                        Ok(outcomes) => {
                            for o in outcomes {
                                if let (ModuleState::Skipped, Some(why)) = (o.state, o.error) {
                                    let n = format!("coldplug: {} not loaded: {why}", o.name);
                                    log::info!("{n}");
                                    w.notice(n);
                                }
                            }
                        }
                        Err(e) => log::warn!("coldplug: {e}"),
                    }
                });
            if let Err(e) = spawned {
                world.notice(format!(
                    "coldplug: cannot start a thread to load {count} matched module(s): {e}"
                ));
            }
        }
    };
    start(matcher.wants(world, &walked.aliases));
    let mut quiet_since = boottime();
    let mut buf = vec![0u8; 8192];
    loop {
        let now = boottime();
        if now >= until {
            world.notice(format!(
                "coldplug: stopped listening for devices at the deadline ({} s)",
                crate::clock::Fixed(until, 3)
            ));
            break;
        }
        let mut fresh = Vec::new();
        if let Some(s) = &socket {
            let wait = POLL_STEP.min(Duration::from_secs_f64(until - now));
            for _ in 0..MAX_UEVENTS_PER_BATCH {
                match s.recv(
                    &mut buf,
                    if fresh.is_empty() {
                        wait
                    } else {
                        Duration::ZERO
                    },
                ) {
                    Some(n) => {
                        if let Some(a) = buf.get(..n).and_then(uevent_modalias) {
                            fresh.push(a.to_owned());
                        }
                    }
                    None => break,
                }
            }
        } else {
            std::thread::sleep(POLL_STEP);
        }
        let wants = matcher.wants(world, &fresh);
        let now = boottime();
        if !wants.is_empty() || !main_done() || world.active() > 0 {
            quiet_since = now;
        }
        start(wants);
        if now - quiet_since >= SETTLE.as_secs_f64() {
            break;
        }
    }
    if matcher.seen.dropped > 0 {
        world.notice(format!(
            "coldplug: {} modalias(es) dropped beyond the limit of {MAX_ALIASES}",
            matcher.seen.dropped
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn index() -> DepIndex {
        DepIndex::parse(
            "kernel/virtio_pci.ko:\nkernel/virtio_blk.ko:\nkernel/virtio_net.ko:\nkernel/e1000.ko:\n",
            "",
            "",
            "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n\
             alias virtio:d00000002v* virtio_blk\n\
             alias virtio:d00000001v* virtio_net\n\
             alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n",
        )
        .unwrap()
    }

    #[test]
    fn matches_apply_deny_then_allow() {
        let idx = index();
        let all = Settings {
            enabled: true,
            ..Settings::default()
        };
        let m = matches(
            &idx,
            &all,
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
        );
        assert_eq!(
            m,
            vec![(ModuleName::new("virtio_pci").unwrap(), Verdict::Load)]
        );
        let deny = Settings {
            deny: vec!["virtio_b*".into()],
            ..all.clone()
        };
        let m = matches(&idx, &deny, "virtio:d00000002v00001AF4");
        assert_eq!(m[0].1, Verdict::Denied("virtio_b*".into()));
        let allow = Settings {
            allow: vec!["e1000".into()],
            ..all
        };
        let m = matches(&idx, &allow, "virtio:d00000001v00001AF4");
        assert_eq!(m[0].1, Verdict::NotAllowed);
        assert!(matches(&idx, &allow, "usb:v1D6Bp0002").is_empty());
    }

    #[test]
    fn uevents_give_the_modalias_of_add_only() {
        let msg = b"add@/devices/pci0000:00/0000:00:04.0/virtio1\0ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000002v00001AF4\0SEQNUM=812\0";
        assert_eq!(uevent_modalias(msg), Some("virtio:d00000002v00001AF4"));
        let bind = b"bind@/devices/x\0ACTION=bind\0MODALIAS=virtio:d00000002v00001AF4\0";
        assert_eq!(uevent_modalias(bind), None);
        assert_eq!(
            uevent_modalias(b"add@/devices/x\0ACTION=add\0SEQNUM=1\0"),
            None
        );
        assert_eq!(
            uevent_modalias(b"add@/x\0ACTION=add\0MODALIAS=../../etc/passwd x\0"),
            None
        );
        assert_eq!(uevent_modalias(b"libudev\0\xfe\xed"), None);
    }

    #[test]
    fn the_seen_set_is_deduplicated_and_bounded() {
        let mut s = Seen::default();
        assert!(s.take("pci:a"));
        assert!(!s.take("pci:a"));
        for i in 0..MAX_ALIASES + 10 {
            s.take(&format!("pci:{i}"));
        }
        assert_eq!(s.aliases.len(), MAX_ALIASES);
        assert_eq!(s.dropped, 11);
    }
}

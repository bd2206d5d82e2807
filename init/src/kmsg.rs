//! The logger behind the `log` macros: every line goes to `/dev/kmsg` as
//! `<pri>kmodinit: msg` and, when the kernel will not print it there itself,
//! to `/dev/console`.
//!
//! Console duplication: the kernel echoes a `/dev/kmsg` record to the console
//! when its level is below `console_loglevel` (first field of
//! `/proc/sys/kernel/printk`; 7 by default, 4 with `quiet`). We mirror a line
//! to the console ourselves only when the kernel will not, or when the
//! `/dev/kmsg` write failed, so each line appears once.
//!
//! Rate limiting: by default the kernel lets a `/dev/kmsg` writer burst 10
//! lines per 5 s and silently drops the rest (the write still "succeeds").
//! Like systemd (which writes `kernel.printk_devkmsg=on` early in PID 1), we
//! switch it to `on` for the boot ([`DevkmsgRatelimit::disable`]), but unlike
//! systemd we are not the final init: the previous value is restored before
//! exec, so the real system keeps its own policy. A `printk.devkmsg=` on the
//! command line is the user's choice (and locks the sysctl): left alone.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The tag every line carries.
pub const TAG: &str = "kmodinit";

/// syslog priority for a `log` level (kernel `KERN_*` values).
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Formats one `/dev/kmsg` record (one write = one record). Newlines inside
/// the message would start a new record without a priority: replaced.
pub fn kmsg_record(level: Level, msg: &str) -> String {
    let msg = untagged(msg);
    format!(
        "<{}>{TAG}: {}\n",
        syslog_priority(level),
        msg.replace('\n', " | ")
    )
}

/// A message that already starts with our tag is not tagged twice.
fn untagged(msg: &str) -> &str {
    msg.strip_prefix(TAG)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg)
}

/// Verbosity: what reaches the kernel log and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verbosity {
    pub kmsg: LevelFilter,
    pub console: LevelFilter,
}

impl Verbosity {
    /// `quiet` lowers the console to warnings and errors; `kmodinit.debug`
    /// raises both sinks to debug (and wins over `quiet`: it is an explicit
    /// request). The kernel log always gets info and up.
    pub fn from_cmdline(quiet: bool, debug: bool) -> Verbosity {
        match (quiet, debug) {
            (_, true) => Verbosity {
                kmsg: LevelFilter::Debug,
                console: LevelFilter::Debug,
            },
            (true, false) => Verbosity {
                kmsg: LevelFilter::Info,
                console: LevelFilter::Warn,
            },
            (false, false) => Verbosity {
                kmsg: LevelFilter::Info,
                console: LevelFilter::Info,
            },
        }
    }
}

struct Sinks {
    kmsg: Option<File>,
    console: Option<File>,
}

/// The logger. Thread-safe: one mutex serialises whole lines, so concurrent
/// loader workers never interleave inside a line.
pub struct KmsgLogger {
    sinks: Mutex<Sinks>,
    verbosity: Mutex<Verbosity>,
    /// Records below this priority number are echoed by the kernel itself.
    kernel_console_level: u8,
}

impl std::fmt::Debug for KmsgLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsgLogger").finish_non_exhaustive()
    }
}

fn open_append(path: &Path) -> Option<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .ok()
}

/// Reads `console_loglevel` from a `/proc/sys/kernel/printk` text.
pub fn parse_console_loglevel(printk: &str) -> Option<u8> {
    printk.split_whitespace().next()?.parse().ok()
}

/// Whether the kernel will echo a record of this level to the console.
pub fn kernel_echoes(level: Level, console_loglevel: u8) -> bool {
    syslog_priority(level) < console_loglevel
}

impl KmsgLogger {
    /// Opens the sinks under `dev` (`/dev` on the real system); a missing
    /// one is skipped. `proc` locates `sys/kernel/printk`.
    pub fn open(dev: &Path, proc: &Path, verbosity: Verbosity) -> KmsgLogger {
        let level = std::fs::read_to_string(proc.join("sys/kernel/printk"))
            .ok()
            .and_then(|s| parse_console_loglevel(&s))
            // Without /proc we cannot know: assume the kernel echoes nothing.
            .unwrap_or(0);
        KmsgLogger {
            sinks: Mutex::new(Sinks {
                kmsg: open_append(&dev.join("kmsg")),
                console: open_append(&dev.join("console")),
            }),
            verbosity: Mutex::new(verbosity),
            kernel_console_level: level,
        }
    }

    fn write_line(&self, level: Level, msg: &str) {
        let verbosity = *lock(&self.verbosity);
        let kernel_level = self.kernel_console_level;
        let mut sinks = lock(&self.sinks);
        let mut kmsg_ok = false;
        if level <= verbosity.kmsg {
            if let Some(k) = sinks.kmsg.as_mut() {
                kmsg_ok = k.write_all(kmsg_record(level, msg).as_bytes()).is_ok();
            }
        }
        let echoed = kmsg_ok && kernel_echoes(level, kernel_level);
        if level <= verbosity.console && !echoed {
            let line = format!("{TAG}: {}\n", untagged(msg));
            match sinks.console.as_mut() {
                Some(c) => {
                    let _ = c.write_all(line.as_bytes());
                }
                None => {
                    let _ = io::stderr().write_all(line.as_bytes());
                }
            }
        }
    }
}

/// Locks, ignoring poisoning: a panic elsewhere must not silence the log.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Log for KmsgLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let v = *lock(&self.verbosity);
        metadata.level() <= v.kmsg.max(v.console)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.write_line(record.level(), &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// The installed logger, kept to change its verbosity after the command
/// line is read (it starts before that, with the defaults).
static INSTALLED: OnceLock<&'static KmsgLogger> = OnceLock::new();

/// Installs the logger as the `log` backend, writing under `dev` (`/dev`)
/// and reading `console_loglevel` under `proc` (`/proc`). A second call only
/// changes the verbosity.
pub fn init(dev: &Path, proc: &Path, verbosity: Verbosity) {
    if INSTALLED.get().is_some() {
        set_verbosity(verbosity);
        return;
    }
    let logger: &'static KmsgLogger = Box::leak(Box::new(KmsgLogger::open(dev, proc, verbosity)));
    if log::set_logger(logger).is_ok() {
        let _ = INSTALLED.set(logger);
        log::set_max_level(verbosity.kmsg.max(verbosity.console));
    }
}

/// Changes the verbosity of the installed logger.
pub fn set_verbosity(v: Verbosity) {
    if let Some(l) = INSTALLED.get() {
        *lock(&l.verbosity) = v;
    }
    log::set_max_level(v.kmsg.max(v.console));
}

/// Writes straight to the console, bypassing `log` (for the fatal-error
/// explanation and the panic hook, which must show even under `quiet` and
/// even if the logger's lock is poisoned).
pub fn console_write(dev: &Path, text: &str) {
    let mut wrote = false;
    if let Some(mut c) = open_append(&dev.join("console")) {
        wrote = c.write_all(text.as_bytes()).is_ok();
    }
    if !wrote {
        let _ = io::stderr().write_all(text.as_bytes());
    }
}

/// Writes each non-empty line of `text` to the kernel log at `level`,
/// bypassing `log`. Returns false if `/dev/kmsg` could not be written.
pub fn kmsg_write(dev: &Path, level: Level, text: &str) -> bool {
    let Some(mut k) = open_append(&dev.join("kmsg")) else {
        return false;
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .all(|line| k.write_all(kmsg_record(level, line).as_bytes()).is_ok())
}

/// Says `text` as an error on the kernel log and, unless the kernel echoes
/// error records there itself, on the console: shown exactly once, whatever
/// `quiet` or `loglevel=` say. For the fatal-error explanation and panics.
pub fn announce(dev: &Path, proc: &Path, text: &str) {
    let echoed = std::fs::read_to_string(proc.join("sys/kernel/printk"))
        .ok()
        .and_then(|s| parse_console_loglevel(&s))
        .is_some_and(|l| kernel_echoes(Level::Error, l));
    if !kmsg_write(dev, Level::Error, text) || !echoed {
        console_write(dev, text);
    }
}

/// The `printk_devkmsg` sysctl switched to `on` for the boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevkmsgRatelimit {
    sysctl: PathBuf,
    /// The value to put back before exec (`None`: we changed nothing).
    previous: Option<String>,
}

impl DevkmsgRatelimit {
    /// Disables `/dev/kmsg` rate limiting unless the command line
    /// (`cmdline`, the raw text) sets `printk.devkmsg=` itself or it is
    /// already `on`/`off`. Best effort: failures leave it as it was.
    pub fn disable(proc: &Path, cmdline: &str) -> DevkmsgRatelimit {
        let sysctl = proc.join("sys/kernel/printk_devkmsg");
        let user_set = cmdline
            .split_whitespace()
            .any(|w| w.starts_with("printk.devkmsg="));
        let current = std::fs::read_to_string(&sysctl)
            .ok()
            .map(|s| s.trim().to_string());
        let previous = match current {
            Some(cur) if !user_set && cur == "ratelimit" => {
                std::fs::write(&sysctl, "on\n").ok().map(|()| cur)
            }
            _ => None,
        };
        DevkmsgRatelimit { sysctl, previous }
    }

    /// True if the boot switched rate limiting off.
    pub fn changed(&self) -> bool {
        self.previous.is_some()
    }

    /// Puts the previous value back (before exec of the real init or a
    /// rescue shell). Idempotent. `proc` is where /proc is now (it moves
    /// during switch_root).
    pub fn restore(&mut self, proc: &Path) {
        if let Some(prev) = self.previous.take() {
            let path = proc.join("sys/kernel/printk_devkmsg");
            let target = if path.exists() {
                path
            } else {
                self.sysctl.clone()
            };
            let _ = std::fs::write(target, format!("{prev}\n"));
        }
    }
}

/// `NAME at FILE:LINE: MESSAGE` for a panic in the thread NAME.
pub fn panic_text(info: &std::panic::PanicHookInfo<'_>) -> String {
    // A build without caller locations (`make init-tiny`) has none to say.
    let where_ = info
        .location()
        .filter(|l| l.line() != 0)
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let thread = std::thread::current();
    format!(
        "{}{where_}: {}",
        thread.name().unwrap_or("?"),
        panic_message(info)
    )
}

/// The panic's message alone.
pub fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn records_carry_priority_and_tag() {
        assert_eq!(kmsg_record(Level::Error, "x"), "<3>kmodinit: x\n");
        assert_eq!(kmsg_record(Level::Warn, "x"), "<4>kmodinit: x\n");
        assert_eq!(kmsg_record(Level::Info, "a\nb"), "<6>kmodinit: a | b\n");
        assert_eq!(kmsg_record(Level::Trace, "x"), "<7>kmodinit: x\n");
        assert_eq!(kmsg_record(Level::Info, "kmodinit: x"), "<6>kmodinit: x\n");
    }

    #[test]
    fn verbosity_rules() {
        let v = Verbosity::from_cmdline(true, false);
        assert_eq!((v.kmsg, v.console), (LevelFilter::Info, LevelFilter::Warn));
        let v = Verbosity::from_cmdline(false, false);
        assert_eq!((v.kmsg, v.console), (LevelFilter::Info, LevelFilter::Info));
        let v = Verbosity::from_cmdline(true, true);
        assert_eq!(
            (v.kmsg, v.console),
            (LevelFilter::Debug, LevelFilter::Debug)
        );
    }

    #[test]
    fn kernel_echo_follows_console_loglevel() {
        assert_eq!(parse_console_loglevel("7\t4\t1\t7\n"), Some(7));
        assert_eq!(parse_console_loglevel(""), None);
        assert!(kernel_echoes(Level::Info, 7));
        assert!(!kernel_echoes(Level::Debug, 7));
        assert!(
            !kernel_echoes(Level::Warn, 4),
            "quiet: warnings are ours to show"
        );
        assert!(kernel_echoes(Level::Error, 4));
    }

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kmodinit-kmsg-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sys/kernel")).unwrap();
        d
    }

    #[test]
    fn logger_writes_whole_lines_and_dedups_console() {
        let d = temp("lines");
        std::fs::write(d.join("kmsg"), "").unwrap();
        std::fs::write(d.join("console"), "").unwrap();
        std::fs::write(d.join("sys/kernel/printk"), "4 4 1 7\n").unwrap();
        let l = KmsgLogger::open(&d, &d, Verbosity::from_cmdline(false, false));
        std::thread::scope(|s| {
            for t in 0..4 {
                let l = &l;
                s.spawn(move || {
                    for i in 0..50 {
                        l.write_line(Level::Info, &format!("worker {t} line {i}"));
                    }
                });
            }
        });
        l.write_line(Level::Error, "bad");
        l.write_line(Level::Debug, "hidden");
        let kmsg = std::fs::read_to_string(d.join("kmsg")).unwrap();
        let lines: Vec<_> = kmsg.lines().collect();
        assert_eq!(lines.len(), 201);
        assert!(lines[..200]
            .iter()
            .all(|l| l.starts_with("<6>kmodinit: worker ") && l.split(' ').count() == 5));
        assert_eq!(lines[200], "<3>kmodinit: bad");
        // console_loglevel 4: the kernel echoes the error, we echo info.
        let console = std::fs::read_to_string(d.join("console")).unwrap();
        assert_eq!(console.lines().count(), 200);
        assert!(!console.contains("bad") && !console.contains("hidden"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn announce_shows_once() {
        let d = temp("announce");
        for (level, console_lines) in [("7 4 1 7\n", 0), ("1 4 1 7\n", 3)] {
            std::fs::write(d.join("kmsg"), "").unwrap();
            std::fs::write(d.join("console"), "").unwrap();
            std::fs::write(d.join("sys/kernel/printk"), level).unwrap();
            announce(&d, &d, "\n*** failed ***\n  why\n  now halting\n");
            let kmsg = std::fs::read_to_string(d.join("kmsg")).unwrap();
            assert_eq!(
                kmsg.lines().collect::<Vec<_>>(),
                [
                    "<3>kmodinit: *** failed ***",
                    "<3>kmodinit:   why",
                    "<3>kmodinit:   now halting"
                ]
            );
            let console = std::fs::read_to_string(d.join("console")).unwrap();
            assert_eq!(
                console.lines().filter(|l| !l.is_empty()).count(),
                console_lines,
                "printk {level}"
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn devkmsg_switched_on_and_restored() {
        let d = temp("devkmsg");
        let f = d.join("sys/kernel/printk_devkmsg");
        std::fs::write(&f, "ratelimit\n").unwrap();
        let mut r = DevkmsgRatelimit::disable(&d, "root=/dev/vda quiet");
        assert!(r.changed());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "on\n");
        r.restore(&d);
        r.restore(&d);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "ratelimit\n");

        let r = DevkmsgRatelimit::disable(&d, "printk.devkmsg=ratelimit");
        assert!(!r.changed(), "the command line's choice stands");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "ratelimit\n");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

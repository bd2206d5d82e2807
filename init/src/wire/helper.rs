//! The channel between the helper (run by the kernel) and the loader
//! child that serves it: a unix stream socket at
//! `/run/kmodinit/helper.sock`, created by PID 1 before it forks the loader
//! (so a request never finds the socket missing while the loader starts),
//! mode 0600 in a directory only root can write: only root can connect,
//! and nothing else can pose as the server (the path cannot be bound by
//! another user). It moves with `/run` at switch_root.
//!
//! One request per connection: the helper writes `NAME\n`; the server
//! answers `0\n` (loaded, already loaded or builtin), `1 WHY\n` (failed) or
//! `2 FALLBACK\n` (not in the image; `FALLBACK` is the kernel's own helper
//! path, which the helper execs with the same arguments, empty if none).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// What became of a request (the helper's exit status follows modprobe's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded now, or already loaded or builtin: modprobe's 0.
    Loaded,
    /// Known to the image, but a module failed (the message says which).
    Failed(String),
    /// Neither a module nor an alias of one in the image.
    NotFound,
}

/// The helper's path for the kernel while the loader child `loader_pid`
/// lives: its executable, `/init` itself, through `/proc`. No copy of the
/// binary is made: the path stays valid after switch_root (the loader keeps
/// the deleted `/init` open as its executable, and `/proc` moves into the
/// real root), and it goes with the loader, which gives the kernel its own
/// helper back before it ends.
pub fn helper_path(loader_pid: i32) -> String {
    format!("/proc/{loader_pid}/exe")
}

/// True if `argv0` is a [`helper_path`]: how the kernel runs the helper.
pub fn is_helper_path(argv0: &str) -> bool {
    argv0
        .strip_prefix("/proc/")
        .and_then(|r| r.strip_suffix("/exe"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// The socket the loader child serves requests on.
pub const SOCKET_PATH: &str = "/run/kmodinit/helper.sock";

/// The socket's file name in the run directory.
pub fn socket_name() -> &'static str {
    std::path::Path::new(SOCKET_PATH)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("helper.sock")
}

/// The kernel's helper sysctl under `/proc`.
pub const MODPROBE_SYSCTL: &str = "sys/kernel/modprobe";

/// How long the loader keeps serving after its load and its last request
/// (`kmodinit.helper_linger=MS`): long enough for the real init's first
/// mounts (a filesystem whose module is only in the image), short enough
/// that the image's module files (kept open, so in memory) and the loader
/// go soon. 0: it stops with its load, and PID 1 restores before exec.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// The longest request name the kernel makes (`MODULE_NAME_LEN` − 1).
pub const MAX_REQUEST_BYTES: usize = 63;

/// The file name the helper answers to when a person links `/init` as
/// `modprobe` (the kernel runs it as [`helper_path`]).
pub const FACE_NAME: &str = "modprobe";

/// Why a request name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong(usize),
    /// The first character outside the allowed set.
    BadChar(char),
    /// Names starting with `-` or `.` read as options or hidden files.
    BadStart(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("empty module name"),
            NameError::TooLong(n) => write!(
                f,
                "module name of {n} bytes: longer than the kernel's {MAX_REQUEST_BYTES}"
            ),
            NameError::BadChar(c) => {
                write!(f, "module name contains {c:?}: not a module name or alias")
            }
            NameError::BadStart(c) => write!(f, "module name starts with {c:?}"),
        }
    }
}

impl std::error::Error for NameError {}

/// True for the characters of the names the kernel requests: module names
/// (`nls_cp437`), aliases with dashes and numbers (`fs-vfat`,
/// `net-pf-10`, `char-major-10-229`, `binfmt-0000`), crypto names with
/// templates (`crypto-cbc(aes)`, `crypto-authenc(hmac(sha256),cbc(aes))`,
/// `crypto-sha256-all`), `symbol:NAME`, `devname:…`, and `.`/`+`/`@`
/// which some driver names carry. No `/`, no blanks, no glob characters.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ',' | '.' | ':' | '(' | ')' | '+' | '@')
}

/// Checks a request name: 1 to [`MAX_REQUEST_BYTES`] bytes of [`allowed`]
/// characters, not starting with `-` or `.`. Never a path: a name passing
/// this cannot name a file outside the directory it is looked up in.
pub fn check_name(name: &str) -> Result<&str, NameError> {
    let Some(first) = name.chars().next() else {
        return Err(NameError::Empty);
    };
    if name.len() > MAX_REQUEST_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(c) = name.chars().find(|&c| !allowed(c)) {
        return Err(NameError::BadChar(c));
    }
    if first == '-' || first == '.' {
        return Err(NameError::BadStart(first));
    }
    Ok(name)
}

/// Requests served at the same time; further helpers are not accepted
/// until one is answered (they wait in the listen backlog), so a flood
/// (`socket(AF_…)` in a loop makes the kernel ask for `net-pf-*` each
/// time) costs a bounded number of threads and bytes, and a request is
/// never refused for being one too many.
pub const MAX_CONCURRENT_REQUESTS: usize = 16;

/// How long the server waits for a connected helper's request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the server's accept loop sleeps between looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// How long it sleeps while every place is taken.
const FULL_POLL: Duration = Duration::from_millis(5);

/// The answer line for `outcome`.
pub fn encode_reply(outcome: &Outcome, fallback: &str) -> String {
    match outcome {
        Outcome::Loaded => "0\n".to_owned(),
        Outcome::Failed(why) => format!("1 {}\n", why.replace('\n', " ")),
        Outcome::NotFound => format!("2 {fallback}\n"),
    }
}

/// A reply line read back: the outcome, and the fallback path of `2`.
pub fn decode_reply(line: &str) -> Option<(Outcome, String)> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let (code, rest) = line.split_once(' ').unwrap_or((line, ""));
    match code {
        "0" => Some((Outcome::Loaded, String::new())),
        "1" => Some((Outcome::Failed(rest.to_owned()), String::new())),
        "2" => Some((Outcome::NotFound, rest.to_owned())),
        _ => None,
    }
}

/// Asks the server at `socket` for `name`; `Err` when no server answers
/// (none listening, it closed without a reply, or a garbled reply).
pub fn ask(socket: &std::path::Path, name: &str) -> io::Result<(Outcome, String)> {
    let mut s = UnixStream::connect(socket)?;
    s.write_all(format!("{name}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(s.take(4096)).read_line(&mut line)?;
    decode_reply(&line).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad reply"))
}

/// One request's outcome, shared by every helper asking for its name.
type Shared = Arc<(Mutex<Option<Outcome>>, Condvar)>;

/// Requests in flight, one per name: a second request for a name being
/// served waits for the first one's outcome.
#[derive(Debug, Default)]
struct InFlight {
    by_name: Mutex<HashMap<String, Shared>>,
}

impl InFlight {
    fn run(&self, name: &str, joined: &AtomicUsize, serve: impl FnOnce() -> Outcome) -> Outcome {
        let (slot, mine) = {
            let mut m = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
            match m.get(name) {
                Some(s) => (Arc::clone(s), false),
                None => {
                    let s = Arc::new((Mutex::new(None), Condvar::new()));
                    m.insert(name.to_owned(), Arc::clone(&s));
                    (s, true)
                }
            }
        };
        let (lock, cv) = &*slot;
        if mine {
            let outcome = serve();
            *lock.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome.clone());
            cv.notify_all();
            self.by_name
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name);
            return outcome;
        }
        let mut g = lock.lock().unwrap_or_else(PoisonError::into_inner);
        joined.fetch_add(1, Ordering::AcqRel);
        loop {
            if let Some(o) = g.as_ref() {
                return o.clone();
            }
            g = cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What the server's owner sees of it.
#[derive(Debug, Default)]
pub struct ServerState {
    /// Set to make the accept loop return.
    pub stop: AtomicBool,
    /// Requests being served now.
    pub busy: AtomicUsize,
    /// Requests answered so far.
    pub served: AtomicUsize,
    /// Requests that found their name already being served and wait for
    /// that outcome (counted once each, when they start waiting).
    pub joined: AtomicUsize,
}

/// Accepts helpers on `listener` until `state.stop` is set; each request
/// is validated, deduplicated and passed to `serve` on its own scoped
/// thread (at most [`MAX_CONCURRENT_REQUESTS`] at once). `fallback` goes
/// into "not found" replies. Returns once every request thread has
/// answered.
pub fn run_server<F>(listener: &UnixListener, state: &ServerState, fallback: &str, serve: F)
where
    F: Fn(&str) -> Outcome + Sync,
{
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("helper server: {e}; kernel requests will not be served");
        return;
    }
    let inflight = InFlight::default();
    std::thread::scope(|s| {
        while !state.stop.load(Ordering::Acquire) {
            if state.busy.load(Ordering::Acquire) >= MAX_CONCURRENT_REQUESTS {
                // Every place taken: further helpers wait in the socket's
                // backlog (bounded; the kernel itself runs at most 50
                // helpers at once) until a request is answered.
                std::thread::sleep(FULL_POLL);
                continue;
            }
            let conn = match listener.accept() {
                Ok((c, _)) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(ACCEPT_POLL);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("helper server: accept: {e}");
                    std::thread::sleep(ACCEPT_POLL);
                    continue;
                }
            };
            state.busy.fetch_add(1, Ordering::AcqRel);
            let (inflight, serve) = (&inflight, &serve);
            let spawned =
                crate::sys::process::thread("helper-request").spawn_scoped(s, move || {
                    answer(conn, fallback, |name| {
                        inflight.run(name, &state.joined, || serve(name))
                    });
                    state.served.fetch_add(1, Ordering::AcqRel);
                    state.busy.fetch_sub(1, Ordering::AcqRel);
                });
            if let Err(e) = spawned {
                state.busy.fetch_sub(1, Ordering::AcqRel);
                log::error!("helper server: cannot start a request thread: {e}");
            }
        }
    });
}

/// Reads one request line from `conn` (bounded in bytes and time),
/// validates it and writes the reply.
fn answer(conn: UnixStream, fallback: &str, serve: impl FnOnce(&str) -> Outcome) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let mut line = String::new();
    let read = conn
        .try_clone()
        .map(|c| BufReader::new(c.take(MAX_REQUEST_BYTES as u64 + 2)).read_line(&mut line));
    let mut conn = conn;
    let reply = match read {
        Ok(Ok(_)) => match line.strip_suffix('\n').map(check_name) {
            Some(Ok(name)) => encode_reply(&serve(name), fallback),
            Some(Err(e)) => format!("1 {e}\n"),
            None => "1 request line too long or not ended\n".to_owned(),
        },
        _ => "1 no request read\n".to_owned(),
    };
    let _ = conn.write_all(reply.as_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn replies_round_trip() {
        for (o, fb) in [
            (Outcome::Loaded, ""),
            (Outcome::Failed("vfat: ENOEXEC".into()), ""),
            (Outcome::NotFound, "/sbin/modprobe"),
        ] {
            let line = encode_reply(&o, fb);
            let (back, f) = decode_reply(&line).unwrap();
            assert_eq!(back, o);
            if o == Outcome::NotFound {
                assert_eq!(f, fb);
            }
        }
        assert_eq!(decode_reply("x\n"), None);
        assert_eq!(
            decode_reply(&encode_reply(&Outcome::Failed("a\nb".into()), "")),
            Some((Outcome::Failed("a b".into()), String::new()))
        );
    }

    #[test]
    fn concurrent_requests_for_one_name_are_served_once_and_bad_names_never() {
        let dir = std::env::temp_dir().join(format!("kmodinit-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("helper.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let state = ServerState::default();
        let calls = AtomicU32::new(0);
        let gate = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                run_server(&listener, &state, "/sbin/modprobe", |name| {
                    let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                    if name == "slow" && first {
                        // Hold the first request until the other seven wait
                        // for its outcome. A second serve of "slow" (the
                        // dedup failing) does not wait, so the assertion
                        // below fails rather than the test hanging.
                        gate.wait();
                    }
                    match name {
                        "missing" => Outcome::NotFound,
                        _ => Outcome::Loaded,
                    }
                })
            });
            // A failed assertion below must end the server too, or the
            // scope would wait for it forever.
            struct StopOnDrop<'a>(&'a ServerState);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.stop.store(true, Ordering::Release);
                }
            }
            let _stop = StopOnDrop(&state);
            let clients: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ask(&sock, "slow").unwrap().0))
                .collect();
            // Wait until the other 7 wait for the one serve's outcome (not
            // only accepted: a request that reads its name after the serve
            // ended would be served again), then release that serve.
            while state.joined.load(Ordering::SeqCst) < 7 {
                std::thread::sleep(Duration::from_millis(5));
            }
            gate.wait();
            for c in clients {
                assert_eq!(c.join().unwrap(), Outcome::Loaded);
            }
            assert_eq!(calls.load(Ordering::SeqCst), 1, "served once");
            assert_eq!(state.joined.load(Ordering::SeqCst), 7);
            let (o, fb) = ask(&sock, "missing").unwrap();
            assert_eq!((o, fb.as_str()), (Outcome::NotFound, "/sbin/modprobe"));
            let (o, _) = ask(&sock, "../etc/passwd").unwrap();
            assert!(
                matches!(o, Outcome::Failed(ref m) if m.contains("'/'")),
                "{o:?}"
            );
            assert_eq!(
                calls.load(Ordering::SeqCst),
                2,
                "a bad name is never served"
            );
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}

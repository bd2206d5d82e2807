//! Locking module loading when the load is over (`lock_modules`):
//! `1` into `/proc/sys/kernel/modules_disabled`, after which the kernel
//! refuses every `init_module`/`finit_module` (EPERM) until reboot, and
//! the sysctl itself cannot be set back.
//!
//! The loader child opens the sysctl while `/proc` is at its path, and
//! writes through that descriptor once its load and its service of the
//! kernel's module requests are over, which may be after the handover
//! (when `/proc` has moved under the real root).

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The sysctl, opened ahead.
#[derive(Debug)]
pub struct ModulesLock {
    file: Result<File, String>,
}

impl ModulesLock {
    /// Opens `<proc>/sys/kernel/modules_disabled` for writing; an error is
    /// kept and reported by [`ModulesLock::lock`].
    pub fn open(proc_dir: &Path) -> ModulesLock {
        let path = proc_dir.join("sys/kernel/modules_disabled");
        ModulesLock {
            file: std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display())),
        }
    }

    /// Writes `1`: from now on no module loads. The error says why not.
    pub fn lock(self) -> Result<(), String> {
        let mut f = self.file?;
        f.write_all(b"1\n")
            .map_err(|e| format!("cannot write 1 to modules_disabled: {e}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_through_the_descriptor_opened_ahead() {
        let dir = tempdir();
        std::fs::create_dir_all(dir.join("sys/kernel")).unwrap();
        let file = dir.join("sys/kernel/modules_disabled");
        std::fs::write(&file, "0\n").unwrap();
        let lock = ModulesLock::open(&dir);
        // The path may be gone by then (after the handover): the
        // descriptor still reaches the file.
        let moved = dir.join("moved");
        std::fs::rename(&file, &moved).unwrap();
        lock.lock().unwrap();
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "1\n");
        let e = ModulesLock::open(&dir.join("none")).lock().unwrap_err();
        assert!(e.contains("none/sys/kernel/modules_disabled"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "kmodinit-lock-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

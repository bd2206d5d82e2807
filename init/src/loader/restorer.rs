//! The loader's way to give the kernel its own module helper back when it
//! stops serving after the handover, when `/proc` and `/run` are no longer
//! at their paths in its (old) root: descriptors opened at the start.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::wire::helper::{socket_name, MODPROBE_SYSCTL};

/// The loader's way to restore after the handover, when `/proc` and
/// `/run` are no longer at their paths in its (old) root: descriptors
/// opened at the start (the sysctl, the run directory).
#[derive(Debug)]
pub struct Restorer {
    sysctl: File,
    run_dir: File,
    kernel_value: String,
}

impl Restorer {
    /// Opens what [`Restorer::restore`] needs (in the loader, before the
    /// handover).
    pub fn open(proc: &Path, run_dir: &Path, kernel_value: String) -> io::Result<Restorer> {
        Ok(Restorer {
            sysctl: std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(proc.join(MODPROBE_SYSCTL))?,
            run_dir: File::open(run_dir)?,
            kernel_value,
        })
    }

    /// The kernel's value, for "not in the image" replies (the helper runs
    /// it instead).
    pub fn kernel_value(&self) -> &str {
        &self.kernel_value
    }

    /// Writes the kernel's value back and removes the socket.
    pub fn restore(&self) {
        use std::io::Write;
        if let Err(e) = (&self.sysctl).write_all(self.kernel_value.as_bytes()) {
            log::error!(
                "cannot restore /proc/{MODPROBE_SYSCTL} to {:?}: {e}",
                self.kernel_value
            );
        }
        let _ = nix::unistd::unlinkat(
            &self.run_dir,
            socket_name(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("kmodinit-restorer-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("proc/sys/kernel")).unwrap();
        d
    }

    #[test]
    fn the_loader_restores_through_its_descriptors() {
        let d = tmp("restorer");
        let (proc, run) = (d.join("proc"), d.join("run/kmodinit"));
        std::fs::create_dir_all(&run).unwrap();
        let sysctl = proc.join(MODPROBE_SYSCTL);
        std::fs::write(&sysctl, "/proc/7/exe").unwrap();
        std::fs::write(run.join("helper.sock"), b"").unwrap();
        let r = Restorer::open(&proc, &run, "/sbin/modprobe".into()).unwrap();
        // Move the directories away, as switch_root does to the loader.
        std::fs::rename(&d, d.with_extension("moved")).unwrap();
        r.restore();
        let moved = d.with_extension("moved");
        assert_eq!(
            std::fs::read_to_string(moved.join("proc").join(MODPROBE_SYSCTL)).unwrap(),
            "/sbin/modprobe"
        );
        assert!(!moved.join("run/kmodinit/helper.sock").exists());
        let _ = std::fs::remove_dir_all(&moved);
    }
}

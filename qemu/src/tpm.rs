//! A software TPM 2.0 for a guest: Debian's `swtpm` on a Unix socket in a
//! fresh state directory, attached to QEMU as `tpm-tis` (x86-64). One per
//! boot, so every boot starts from a TPM just powered on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::HarnessError;

/// How long swtpm may take to create its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `swtpm socket --tpm2`; killed and reaped on drop.
#[derive(Debug)]
pub struct SwTpm {
    child: Child,
    socket: PathBuf,
}

impl SwTpm {
    /// Starts swtpm with a new empty state under `dir/tpm` (removed first).
    /// An error names swtpm and `make deps` when it cannot run.
    pub fn start(dir: &Path) -> Result<SwTpm, HarnessError> {
        let state = dir.join("tpm");
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).map_err(|source| HarnessError::Io {
            what: "creating the TPM state directory",
            path: state.clone(),
            source,
        })?;
        let socket = state.join("swtpm.sock");
        let mut child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .arg("--log")
            .arg(format!(
                "file={},level=1",
                state.join("swtpm.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::Command {
                command: "swtpm socket --tpm2 (package swtpm, from make deps)".into(),
                status: None,
                stderr: e.to_string(),
            })?;
        let started = Instant::now();
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                return Err(HarnessError::Command {
                    command: "swtpm socket --tpm2".into(),
                    status: status.code(),
                    stderr,
                });
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Command {
                    command: "swtpm socket --tpm2".into(),
                    status: None,
                    stderr: format!(
                        "no control socket {} after {START_TIMEOUT:?}",
                        socket.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(SwTpm { child, socket })
    }

    /// QEMU's arguments for this TPM as a `tpm-tis` device.
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!("socket,id=chrtpm,path={}", self.socket.display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=chrtpm".into(),
            "-device".into(),
            "tpm-tis,tpmdev=tpm0".into(),
        ]
    }
}

impl Drop for SwTpm {
    fn drop(&mut self) {
        // swtpm ends by itself when QEMU closes the socket; this is for a
        // boot that never connected.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

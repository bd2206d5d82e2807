use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the harness can fail at, each variant naming the step.
#[derive(Debug)]
pub enum HarnessError {
    /// A file operation failed; `what` says which step, `path` on which file.
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// An external tool (mkfs.ext4, sgdisk, make, depmod…) failed.
    Command {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    /// No `/boot/vmlinuz-*` with a matching `/lib/modules/*` tree.
    NoKernel(String),
    /// The guest did not reach a stop condition in time; QEMU was killed.
    Timeout {
        after: Duration,
        log: PathBuf,
        tail: String,
    },
    /// Bad input to a builder (a path that cannot go into an image…).
    Invalid(String),
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::Io { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
            HarnessError::Command {
                command,
                status,
                stderr,
            } => {
                write!(f, "`{command}` failed")?;
                match status {
                    Some(code) => write!(f, " with exit code {code}")?,
                    None => write!(f, " (killed by a signal)")?,
                }
                if !stderr.trim().is_empty() {
                    write!(f, ":\n{}", stderr.trim_end())?;
                }
                Ok(())
            }
            HarnessError::NoKernel(why) => write!(f, "no usable kernel: {why}"),
            HarnessError::Timeout { after, log, tail } => write!(
                f,
                "QEMU timed out after {:.1} s (killed); console log {}; last lines:\n{tail}",
                after.as_secs_f64(),
                log.display()
            ),
            HarnessError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Builds the `Io` variant: `io_err("writing", path)(e)`.
pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> HarnessError {
    let path = path.into();
    move |source| HarnessError::Io { what, path, source }
}

/// Runs a command to completion; a non-zero exit becomes `Command` with its
/// stderr, so the test output says what the tool complained about.
pub fn run(cmd: &mut std::process::Command) -> Result<std::process::Output, HarnessError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| HarnessError::Command {
        command: shown.clone(),
        status: None,
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(HarnessError::Command {
            command: shown,
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        })
    }
}

//! How scripts reach the machine that runs the package. One [`Transport`] trait with two
//! implementations: ssh (in `ssh.rs`) and [`Local`], which runs the very same POSIX sh scripts
//! with a local `sh -c`. Also running one script and telling its failure apart (the connection,
//! or the script), and retrying while a host boots.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cmd::{tail_lines, Cmd, Ended, ExecOptions};
use crate::escape;
use crate::shell::Shell;

/// Runs POSIX sh scripts on the machine that runs the package.
pub trait Transport {
    /// What the user reads: `h100 (ssh h100)`, `this machine`.
    fn describe(&self) -> String;
    /// The command that runs `script` with `sh` there (not through a login shell's rules).
    fn script_command(&self, script: &str, purpose: &str) -> Result<Cmd>;
    /// Whether a failed status means the script never ran or was cut off (ssh's 255).
    fn is_transport_failure(&self, status: ExitStatus) -> bool;
    /// Makes sure a connection can be made, within `timeout` (retrying while the host boots).
    fn wait_ready(&self, shell: &Shell, timeout: Duration) -> Result<()>;
    /// Closes a persistent connection, after the host was stopped.
    fn disconnect(&self, shell: &Shell);
    /// Names the live connection (an ssh master's pid), so that what a preflight learned over it
    /// can serve the runs that reuse it: a connection that never dropped reaches the same
    /// machine. `None` where there is nothing to name.
    fn connection_id(&self, _shell: &Shell) -> Option<String> {
        None
    }
    /// Sends the later scripts through a persistent agent on the remote, where it can have one
    /// (see `agent_link`): `connection` is what [`Transport::connection_id`] named, `machine`
    /// the remote's `uname -m`. Where it cannot, nothing changes.
    fn attach_agent(&self, _shell: &Shell, _connection: &str, _machine: Option<&str>) {}
}

/// This machine: the scripts run with `sh -c`, no ssh anywhere.
#[derive(Debug, Default)]
pub struct Local;

impl Transport for Local {
    fn describe(&self) -> String {
        "this machine".into()
    }

    fn script_command(&self, script: &str, purpose: &str) -> Result<Cmd> {
        Ok(Cmd::new("sh", purpose).arg("-c").arg(script).shown_as(format!("sh -c '<{purpose} script>'")))
    }

    fn is_transport_failure(&self, _status: ExitStatus) -> bool {
        false
    }

    fn wait_ready(&self, _shell: &Shell, _timeout: Duration) -> Result<()> {
        Ok(())
    }

    fn disconnect(&self, _shell: &Shell) {}
}

/// The reason a script that ran through `transport` did not succeed, as an error.
pub fn script_failure(transport: &dyn Transport, cmd: &Cmd, ended: &Ended) -> anyhow::Error {
    let Some(status) = ended.status else { return crate::exit::interrupted_error() };
    // What the remote printed is a stranger's text: escaped and indented, never raw.
    let stderr = escape::block(tail_lines(&String::from_utf8_lossy(&ended.stderr), 20).trim_end(), "  ");
    if transport.is_transport_failure(status) {
        anyhow::anyhow!(
            "failed to {}: the connection to {} failed (ssh exited with status 255){}",
            cmd.purpose(),
            transport.describe(),
            if stderr.trim().is_empty() { String::new() } else { format!(":\n{stderr}") }
        )
    } else {
        let mut e = cmd.failure(status, b"");
        e.stderr_tail = stderr;
        e.into()
    }
}

/// Runs a script, capturing its output; any failure (or Ctrl-C, when interruptible) is an error.
pub fn run_script(
    shell: &Shell,
    transport: &dyn Transport,
    script: &str,
    purpose: &str,
    opts: ExecOptions,
) -> Result<Ended> {
    let cmd = transport.script_command(script, purpose)?;
    let ended = cmd.exec(shell, opts)?;
    match ended.status {
        Some(s) if s.success() => Ok(ended),
        _ => Err(script_failure(transport, &cmd, &ended)),
    }
}

/// Retries `attempt` until it succeeds or `timeout` passes; `attempt` returns `Ok(false)` for a
/// failure worth retrying (the host is still booting).
pub fn retry_until(timeout: Duration, pause: Duration, mut attempt: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if attempt()? {
            return Ok(());
        }
        crate::exit::check_interrupt()?;
        if Instant::now() + pause > deadline {
            bail!("gave up after {:.0}s", timeout.as_secs_f64());
        }
        std::thread::sleep(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::MessageFormat;
    use crate::shell::Verbosity;
    use std::io::Write;

    fn shell() -> Shell {
        Shell::new(Verbosity::Quiet, MessageFormat::Human)
    }

    #[test]
    fn local_scripts_run_with_sh_and_keep_streams_apart() {
        let ended = run_script(
            &shell(),
            &Local,
            "printf out; printf err >&2; cat",
            "run a test script",
            ExecOptions { stdin: Some(Box::new(|w| w.write_all(b" in"))), ..Default::default() },
        )
        .unwrap();
        assert_eq!(ended.stdout, b"out in");
        assert_eq!(ended.stderr, b"err");
    }

    #[test]
    fn failures_carry_status_and_stderr() {
        let err = run_script(&shell(), &Local, "echo nope >&2; exit 4", "fail on purpose", Default::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("failed to fail on purpose") && err.contains("status 4") && err.contains("nope"), "{err}");
    }

    #[test]
    fn retry_gives_up_after_the_timeout() {
        let mut n = 0;
        let err = retry_until(Duration::from_millis(50), Duration::from_millis(10), || {
            n += 1;
            Ok(false)
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("gave up after"), "{err}");
        assert!(n >= 2);
    }
}

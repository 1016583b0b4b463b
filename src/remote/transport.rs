//! How scripts reach the machine that runs the package. One [`Transport`] trait with two
//! implementations: ssh (in `ssh.rs`) and [`Local`], which runs the very same POSIX sh scripts
//! with a local `sh -c`. Also [`exec`], the one way a transport child is run here: in its own
//! process group (a terminal Ctrl-C reaches only cargo-gpu, which then cleans up in order),
//! stdin fed from a thread, stdout and stderr captured or passed through, Ctrl-C polled.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{tail_lines, Cmd};
use crate::shell::Shell;

/// Runs POSIX sh scripts on the machine that runs the package.
pub trait Transport {
    /// What the user reads: `h100 (ssh h100)`, `this machine`.
    fn describe(&self) -> String;
    /// The command that runs `script` with `sh -c` there (not a login shell).
    fn script_command(&self, script: &str, purpose: &str) -> Cmd;
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
}

/// This machine: the scripts run with `sh -c`, no ssh anywhere.
#[derive(Debug, Default)]
pub struct Local;

impl Transport for Local {
    fn describe(&self) -> String {
        "this machine".into()
    }

    fn script_command(&self, script: &str, purpose: &str) -> Cmd {
        Cmd::new("sh", purpose).arg("-c").arg(script)
    }

    fn is_transport_failure(&self, _status: ExitStatus) -> bool {
        false
    }

    fn wait_ready(&self, _shell: &Shell, _timeout: Duration) -> Result<()> {
        Ok(())
    }

    fn disconnect(&self, _shell: &Shell) {}
}

/// Where a child's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Capture,
    /// Copied to our own stdout (for the child's stdout) or stderr (for its stderr) as it comes.
    PassThrough,
}

pub type StdinFeed = Box<dyn FnOnce(&mut ChildStdin) -> std::io::Result<()> + Send + 'static>;
/// Takes the child's stdout chunk by chunk as it comes (instead of `stdout`'s sink).
pub type StdoutTaker = Box<dyn FnMut(&[u8]) + Send + 'static>;

pub struct ExecOptions {
    pub stdin: Option<StdinFeed>,
    pub stdout_to: Option<StdoutTaker>,
    pub stdout: Sink,
    pub stderr: Sink,
    /// Kill the child and return when Ctrl-C was pressed (cleanup steps pass `false`).
    pub interruptible: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions { stdin: None, stdout_to: None, stdout: Sink::Capture, stderr: Sink::Capture, interruptible: true }
    }
}

#[derive(Debug)]
pub struct Ended {
    /// `None` when Ctrl-C stopped it.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Ended {
    pub fn interrupted(&self) -> bool {
        self.status.is_none()
    }
}

fn pump(
    mut from: impl Read + Send,
    sink: Sink,
    mut taker: Option<StdoutTaker>,
    to_stdout: bool,
) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(kept),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(take) = taker.as_mut() {
            take(&buf[..n]);
            continue;
        }
        match sink {
            Sink::Capture => kept.extend_from_slice(&buf[..n]),
            Sink::PassThrough if to_stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&buf[..n]).and_then(|_| out.flush());
            }
            Sink::PassThrough => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&buf[..n]).and_then(|_| err.flush());
            }
        }
    }
}

/// Runs `cmd` in its own process group. Returns when it ends, or, if `interruptible`, soon
/// after Ctrl-C (the child is then killed and `status` is `None`).
pub fn exec(shell: &Shell, cmd: &Cmd, opts: ExecOptions) -> Result<Ended> {
    let has_stdin = opts.stdin.is_some();
    let mut child = cmd.spawn(Some(shell), |c| {
        c.process_group(0);
        c.stdin(if has_stdin { Stdio::piped() } else { Stdio::null() });
        // Piped even when passed through, so a dropped connection cannot garble our terminal.
        c.stdout(Stdio::piped());
        c.stderr(Stdio::piped());
    })?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let stderr = child.stderr.take().expect("stderr was piped");
    let stdin = child.stdin.take();
    // Plain threads, not scoped ones: through an ssh ControlMaster the master holds copies of
    // these pipes until the remote command ends, so after Ctrl-C they are left to finish alone.
    let feeder = opts.stdin.map(|feed| {
        let mut stdin = stdin.expect("stdin was piped");
        std::thread::spawn(move || {
            let r = feed(&mut stdin);
            drop(stdin);
            r
        })
    });
    let (out_sink, err_sink) = (opts.stdout, opts.stderr);
    let taker = opts.stdout_to;
    let out = std::thread::spawn(move || pump(stdout, out_sink, taker, true));
    let err = std::thread::spawn(move || pump(stderr, err_sink, None, false));
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("failed to {}", cmd.purpose()))? {
            break status;
        }
        if opts.interruptible && crate::exit::interrupted() {
            // The whole group: a hook's own children (`sh -c 'a; b'`) must not outlive it.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Ended { status: None, stdout: Vec::new(), stderr: Vec::new() });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let feed_result = feeder.map(|f| f.join().expect("the stdin feeder does not panic"));
    let stdout = out.join().expect("the stdout reader does not panic").unwrap_or_default();
    let stderr = err.join().expect("the stderr reader does not panic").unwrap_or_default();
    if let Some(Err(e)) = feed_result {
        // A child that exits early closes its stdin: its own status and stderr then say why.
        if status.success() {
            return Err(e).with_context(|| format!("failed to {}: could not feed its input", cmd.purpose()));
        }
    }
    Ok(Ended { status: Some(status), stdout, stderr })
}

/// The reason a script that ran through `transport` did not succeed, as an error.
pub fn script_failure(transport: &dyn Transport, cmd: &Cmd, ended: &Ended) -> anyhow::Error {
    let Some(status) = ended.status else { return crate::exit::interrupted_error() };
    let stderr = tail_lines(&String::from_utf8_lossy(&ended.stderr), 20);
    if transport.is_transport_failure(status) {
        anyhow::anyhow!(
            "failed to {}: the connection to {} failed (ssh exited with status 255){}",
            cmd.purpose(),
            transport.describe(),
            if stderr.trim().is_empty() { String::new() } else { format!(":\n{}", stderr.trim_end()) }
        )
    } else {
        cmd.failure(status, &ended.stderr).into()
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
    let cmd = transport.script_command(script, purpose);
    let ended = exec(shell, &cmd, opts)?;
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
    use crate::cli::MessageFormat;
    use crate::shell::Verbosity;

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

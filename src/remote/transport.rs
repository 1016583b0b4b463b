//! How scripts reach the machine that runs the package. One [`Transport`] trait with two
//! implementations: ssh (in `ssh.rs`) and [`Local`], which runs the very same POSIX sh scripts
//! with a local `sh -c`. Also [`exec`], the one way a transport child is run here: in its own
//! process group (a terminal Ctrl-C reaches only cargo-gpu, which then cleans up in order),
//! stdin fed from a thread, stdout and stderr captured or passed through, Ctrl-C polled.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{tail_lines, Cmd};
use crate::escape;
use crate::exit::Interrupt;
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

/// Where a child's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Capture,
    /// Copied to our own stdout (for the child's stdout) or stderr (for its stderr) as it comes.
    PassThrough,
    /// Copied to our stderr line by line with control characters escaped: text from a remote
    /// machine that is not the runner's own output.
    Escaped,
}

pub type StdinFeed = Box<dyn FnOnce(&mut ChildStdin) -> std::io::Result<()> + Send + 'static>;
/// Takes the child's stdout chunk by chunk as it comes (instead of `stdout`'s sink); `Break`
/// means it wants no more: the child is then stopped and [`Ended::cut`] is set.
pub type StdoutTaker = Box<dyn FnMut(&[u8]) -> ControlFlow<()> + Send + 'static>;

/// The most of a child's stdout kept in memory; the rest is dropped (and `Ended::truncated` set).
const MAX_CAPTURED_STDOUT: usize = 16 << 20;
/// The most of a child's stderr kept: its end, which holds the reason it failed.
const MAX_CAPTURED_STDERR: usize = 256 << 10;

pub struct ExecOptions {
    pub stdin: Option<StdinFeed>,
    pub stdout_to: Option<StdoutTaker>,
    pub stdout: Sink,
    pub stderr: Sink,
    /// Which Ctrl-C kills the child and returns (clean-up steps wait for a later one).
    pub interrupt: Interrupt,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            stdin: None,
            stdout_to: None,
            stdout: Sink::Capture,
            stderr: Sink::Capture,
            interrupt: Interrupt::First,
        }
    }
}

#[derive(Debug)]
pub struct Ended {
    /// `None` when Ctrl-C stopped it.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The stdout taker asked for no more and the child was stopped.
    pub cut: bool,
    /// More stdout came than is kept in memory.
    pub truncated: bool,
}

impl Ended {
    pub fn interrupted(&self) -> bool {
        self.status.is_none()
    }
}

/// What a pump kept, and whether its taker cut the stream.
#[derive(Default)]
struct Pumped {
    kept: Vec<u8>,
    truncated: bool,
}

fn write_escaped_lines(pending: &mut Vec<u8>, bytes: &[u8], flush_all: bool) {
    pending.extend_from_slice(bytes);
    let mut err = std::io::stderr().lock();
    while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=nl).collect();
        let _ = writeln!(err, "{}", escape::line(String::from_utf8_lossy(&line[..nl]).as_ref()));
    }
    if flush_all && !pending.is_empty() || pending.len() > 4096 {
        let _ = writeln!(err, "{}", escape::line(&String::from_utf8_lossy(pending)));
        pending.clear();
    }
}

fn pump(
    mut from: impl Read + Send,
    sink: Sink,
    mut taker: Option<StdoutTaker>,
    to_stdout: bool,
    cut: &AtomicBool,
) -> std::io::Result<Pumped> {
    let mut p = Pumped::default();
    let mut pending = Vec::new();
    let mut buf = [0u8; 65536];
    let limit = if to_stdout { MAX_CAPTURED_STDOUT } else { MAX_CAPTURED_STDERR };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(take) = taker.as_mut() {
            if take(&buf[..n]).is_break() {
                cut.store(true, Ordering::SeqCst);
                return Ok(p);
            }
            continue;
        }
        match sink {
            Sink::Capture if to_stdout => {
                let room = limit.saturating_sub(p.kept.len());
                p.kept.extend_from_slice(&buf[..n.min(room)]);
                p.truncated |= n > room;
            }
            Sink::Capture => {
                p.kept.extend_from_slice(&buf[..n]);
                if p.kept.len() > limit {
                    let extra = p.kept.len() - limit;
                    p.kept.drain(..extra);
                    p.truncated = true;
                }
            }
            Sink::PassThrough if to_stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&buf[..n]).and_then(|_| out.flush());
            }
            Sink::PassThrough => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&buf[..n]).and_then(|_| err.flush());
            }
            Sink::Escaped => write_escaped_lines(&mut pending, &buf[..n], false),
        }
    }
    if sink == Sink::Escaped {
        write_escaped_lines(&mut pending, &[], true);
    }
    Ok(p)
}

/// Kills a child's whole process group (a hook's own children, `sh -c 'a; b'`, must not outlive
/// it), then the child itself, and reaps it.
fn kill_group(child: &mut std::process::Child) -> Option<ExitStatus> {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Runs `cmd` in its own process group. Returns when it ends, or soon after the Ctrl-C that
/// `opts.interrupt` names (the child is then killed and `status` is `None`), or when the stdout
/// taker cuts the stream (the child is then killed and `cut` is set).
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
    let cut = Arc::new(AtomicBool::new(false));
    let (out_sink, err_sink) = (opts.stdout, opts.stderr);
    let taker = opts.stdout_to;
    let out = {
        let cut = Arc::clone(&cut);
        std::thread::spawn(move || pump(stdout, out_sink, taker, true, &cut))
    };
    let err = {
        let cut = Arc::clone(&cut);
        std::thread::spawn(move || pump(stderr, err_sink, None, false, &cut))
    };
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("failed to {}", cmd.purpose()))? {
            break status;
        }
        if crate::exit::reached(opts.interrupt) {
            kill_group(&mut child);
            return Ok(Ended { status: None, stdout: Vec::new(), stderr: Vec::new(), cut: false, truncated: false });
        }
        if cut.load(Ordering::SeqCst) {
            // The stdout reader has closed its end already; the stderr reader is left to finish
            // alone, as after Ctrl-C (an ssh master may hold the pipe a while longer).
            let status = kill_group(&mut child);
            return Ok(Ended { status, stdout: Vec::new(), stderr: Vec::new(), cut: true, truncated: false });
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
    Ok(Ended {
        status: Some(status),
        stdout: stdout.kept,
        stderr: stderr.kept,
        cut: cut.load(Ordering::SeqCst),
        truncated: stdout.truncated,
    })
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
    use crate::shell::MessageFormat;
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

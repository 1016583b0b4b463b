//! Running a [`Cmd`] with its output streamed: the one way a long-running or interruptible child
//! (a remote script, a hook, cargo) is run. Its own process group, Ctrl-C levels (see
//! [`crate::exit::Interrupt`]), bounded captures, escaped pass-through for a stranger's text, a
//! taker that reads stdout as it comes and may cut it, and group kills through rustix.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{ChildStdin, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cmd::command::Cmd;
use crate::cmd::early;
use crate::cmd::group::{configure, kill_group};
use crate::escape;
use crate::exit::Interrupt;
use crate::shell::Shell;

/// Where a child's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Capture,
    /// Copied to our own stdout (for the child's stdout) or stderr (for its stderr) as it comes.
    PassThrough,
    /// Copied to our stderr line by line with control characters escaped: text from a remote
    /// machine that is not the runner's own output.
    Escaped,
    /// The child writes to our own stderr directly (cargo's colours and progress need a terminal).
    /// Only for stderr.
    Inherit,
}

pub type StdinFeed = Box<dyn FnOnce(&mut ChildStdin) -> std::io::Result<()> + Send + 'static>;
/// Takes the child's stdout chunk by chunk as it comes (instead of `stdout`'s sink); `Break`
/// means it wants no more: the child is then stopped and [`Ended::cut`] is set.
pub type StdoutTaker = Box<dyn FnMut(&[u8]) -> ControlFlow<()> + Send + 'static>;

/// A [`StdoutTaker`] that hands `on_line` each whole line of the child's stdout (without its
/// newline) as it comes; a last line without one is not handed over.
pub fn line_taker(mut on_line: impl FnMut(&[u8]) + Send + 'static) -> StdoutTaker {
    let mut line = Vec::new();
    Box::new(move |bytes: &[u8]| {
        for &b in bytes {
            if b == b'\n' {
                on_line(&line);
                line.clear();
            } else {
                line.push(b);
            }
        }
        ControlFlow::Continue(())
    })
}

/// The most of a child's stdout kept in memory; the rest is dropped.
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
    /// Set by another thread when the child's work is no longer wanted: it is killed as on
    /// Ctrl-C (`status` is `None`).
    pub cancel: Option<Arc<AtomicBool>>,
    /// The files this command was computed from, when it is one that may have been started before
    /// the command line was read (see [`crate::cmd::early`]): a child started early that runs
    /// exactly this command is taken over instead of starting another. Only for a command with no
    /// stdin whose stderr is inherited.
    pub early: Option<Vec<PathBuf>>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            stdin: None,
            stdout_to: None,
            stdout: Sink::Capture,
            stderr: Sink::Capture,
            interrupt: Interrupt::First,
            cancel: None,
            early: None,
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
}

impl Ended {
    pub fn interrupted(&self) -> bool {
        self.status.is_none()
    }
}

/// What a pump kept.
#[derive(Default)]
struct Pumped {
    kept: Vec<u8>,
}

/// Copies a child's output to our own stdout (or stderr) as it comes, flushed at once.
pub fn pass_through(to_stdout: bool, bytes: &[u8]) {
    let _ = if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).and_then(|_| out.flush())
    } else {
        let mut err = std::io::stderr().lock();
        err.write_all(bytes).and_then(|_| err.flush())
    };
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
            }
            Sink::Capture => {
                p.kept.extend_from_slice(&buf[..n]);
                if p.kept.len() > limit {
                    let extra = p.kept.len() - limit;
                    p.kept.drain(..extra);
                }
            }
            Sink::PassThrough => pass_through(to_stdout, &buf[..n]),
            Sink::Escaped => write_escaped_lines(&mut pending, &buf[..n], false),
            Sink::Inherit => {}
        }
    }
    if sink == Sink::Escaped {
        write_escaped_lines(&mut pending, &[], true);
    }
    Ok(p)
}

impl Cmd {
    /// Runs in its own process group (a terminal's Ctrl-C reaches only cargo-gpu, which then
    /// stops children in order), stdin fed from a thread, stdout and stderr captured (bounded),
    /// passed through, escaped or handed to a taker as they come. Returns when the child ends, or
    /// soon after the Ctrl-C that `opts.interrupt` names (the child's group is then killed and
    /// `status` is `None`), or when the stdout taker cuts the stream (killed, `cut` set). The
    /// exit status is not checked: see [`Cmd::failure`].
    pub fn exec(&self, shell: &Shell, opts: ExecOptions) -> Result<Ended> {
        self.start(shell, opts)?.wait()
    }

    /// [`Cmd::exec`] in two halves: the child is running when this returns, so the caller can do
    /// other work meanwhile and [`Running::wait`] later.
    pub fn start(&self, shell: &Shell, opts: ExecOptions) -> Result<Running> {
        start(shell, self, opts)
    }
}

type Pump = std::thread::JoinHandle<std::io::Result<Pumped>>;

/// A child started by [`Cmd::start`].
pub struct Running {
    purpose: String,
    pid: u32,
    done: std::sync::mpsc::Receiver<()>,
    waiter: std::thread::JoinHandle<std::io::Result<ExitStatus>>,
    feeder: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    out: Pump,
    err: Option<Pump>,
    cut: Arc<AtomicBool>,
    interrupt: Interrupt,
    cancel: Option<Arc<AtomicBool>>,
}

fn start(shell: &Shell, cmd: &Cmd, opts: ExecOptions) -> Result<Running> {
    let has_stdin = opts.stdin.is_some();
    let inherit = opts.stderr == Sink::Inherit;
    let adopted = opts.early.as_deref().filter(|_| !has_stdin && inherit).and_then(|inputs| early::adopt(cmd, inputs));
    let mut child = match adopted {
        Some(child) => {
            cmd.log(Some(shell));
            child
        }
        None => cmd.spawn(Some(shell), |c| configure(c, has_stdin, inherit))?,
    };
    let stdout = child.stdout.take().expect("stdout was piped");
    let stderr = child.stderr.take();
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
    let err = stderr.map(|stderr| {
        let cut = Arc::clone(&cut);
        std::thread::spawn(move || pump(stderr, err_sink, None, false, &cut))
    });
    // A waiter thread reaps the child and says so at once; this loop wakes for that, or every
    // 20 ms to look for Ctrl-C and a cut (a poll alone would add its period to every command).
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done_tx.send(());
        status
    });
    Ok(Running {
        purpose: cmd.purpose().to_string(),
        pid,
        done: done_rx,
        waiter,
        feeder,
        out,
        err,
        cut,
        interrupt: opts.interrupt,
        cancel: opts.cancel,
    })
}

impl Running {
    /// Waits for the child as [`Cmd::exec`] describes.
    pub fn wait(self) -> Result<Ended> {
        let Running { purpose, pid, done: done_rx, waiter, feeder, out, err, cut, interrupt, cancel } = self;
        let reaped = |waiter: std::thread::JoinHandle<std::io::Result<ExitStatus>>| {
            waiter.join().expect("the waiter does not panic").with_context(|| format!("failed to {purpose}"))
        };
        let status = loop {
            match done_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break reaped(waiter)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            let stop = crate::exit::reached(interrupt) || cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
            if (stop || cut.load(Ordering::SeqCst)) && done_rx.try_recv().is_ok() {
                // It ended by itself meanwhile: its pid may already be another process's.
                break reaped(waiter)?;
            }
            if stop {
                kill_group(pid);
                let _ = reaped(waiter);
                return Ok(Ended { status: None, stdout: Vec::new(), stderr: Vec::new(), cut: false });
            }
            if cut.load(Ordering::SeqCst) {
                // The stdout reader has closed its end already; the stderr reader is left to finish
                // alone, as after Ctrl-C (an ssh master may hold the pipe a while longer).
                kill_group(pid);
                let status = reaped(waiter).ok();
                return Ok(Ended { status, stdout: Vec::new(), stderr: Vec::new(), cut: true });
            }
        };
        let feed_result = feeder.map(|f| f.join().expect("the stdin feeder does not panic"));
        let stdout = out.join().expect("the stdout reader does not panic").unwrap_or_default();
        let stderr = match err {
            Some(e) => e.join().expect("the stderr reader does not panic").unwrap_or_default(),
            None => Pumped::default(),
        };
        if let Some(Err(e)) = feed_result {
            // A child that exits early closes its stdin: its own status and stderr then say why.
            if status.success() {
                return Err(e).with_context(|| format!("failed to {purpose}: could not feed its input"));
            }
        }
        Ok(Ended { status: Some(status), stdout: stdout.kept, stderr: stderr.kept, cut: cut.load(Ordering::SeqCst) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_taker_hands_over_whole_lines_across_chunks() {
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&lines);
        let mut take = line_taker(move |l| seen.lock().unwrap().push(String::from_utf8_lossy(l).into_owned()));
        for chunk in [&b"a\nb"[..], b"c\n\n", b"tail"] {
            assert_eq!(take(chunk), ControlFlow::Continue(()));
        }
        assert_eq!(*lines.lock().unwrap(), ["a", "bc", ""], "a last line without its newline waits");
    }
}

//! Following a run: the one remote command that launches (or re-attaches to) a run sends its
//! output as frames and then its files as a tar ([`Demux`]). The runner's output is
//! passed through as it comes; the tar is unpacked as it arrives, on its own thread, under the
//! remote's `max-fetch` cap ([`unpack`]); when the cap is reached the transfer is cut, so
//! neither memory nor disk here grows with what the remote sends. Also the two clean-up steps
//! of an interrupted run: stopping it there and fetching what it wrote.

use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cmd::{pass_through, ExecOptions, Sink, StdinFeed};
use crate::exit::Interrupt;
use crate::redact;
use crate::remote::frames::{Channel, Demux, Event, Rerun};
use crate::remote::scripts;
use crate::remote::transport::{run_script, script_failure, Transport};
use crate::remote::unpack::{self, Unpacked};
use crate::shell::{human_bytes, Shell};

/// What may come back from a run: its logs, exit status, GPU report, redacted environment and
/// `out/`, at most `max_bytes` in all.
pub fn rules(max_bytes: u64) -> unpack::Rules<'static> {
    unpack::Rules {
        allowed: &scripts::FETCHED,
        filtered: &[("env.txt", redact::env_listing)],
        max_bytes,
        max_entries: 100_000,
    }
}

/// How following a run ended.
pub enum Followed {
    /// The run's files came back (as far as the cap allowed).
    Done(Unpacked),
    Interrupted,
}

/// What [`follow`] saw.
pub struct Follow {
    /// Whether the script said it launched the run (always true for a plain stream).
    pub launched: bool,
    pub launched_at: Option<Instant>,
    pub ended_at: Option<Instant>,
    /// The script's own exit status, when it ended by itself.
    pub exit_code: Option<i32>,
    /// Stored blobs that the launch found damaged and deleted (nothing was launched then).
    pub bad_blobs: Vec<String>,
    pub result: Result<Followed>,
}

/// Reads the chunks the demultiplexer hands over, as one stream.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[derive(Default)]
struct Seen {
    demux: Demux,
    launched_at: Option<Instant>,
    ended_at: Option<Instant>,
}

/// Runs a [`scripts::run`], [`scripts::stream`] or [`scripts::fetch`] script: passes the
/// runner's stdout and stderr through as they come, and unpacks the run's files that follow
/// into `run_dir`, at most `max_fetch` bytes. `interrupt` says which Ctrl-C stops it.
#[allow(clippy::too_many_arguments)]
pub fn follow(
    shell: &Shell,
    transport: &dyn Transport,
    script: &str,
    purpose: &str,
    stdin: Option<StdinFeed>,
    id: &str,
    run_dir: &Path,
    max_fetch: u64,
    interrupt: Interrupt,
) -> Follow {
    // Sixteen chunks of at most 64 KiB in flight: what is held in memory, however much comes.
    let (tx, rx) = sync_channel::<Vec<u8>>(16);
    let unpacker = {
        let dir: PathBuf = run_dir.to_path_buf();
        std::thread::spawn(move || {
            let reader = ChannelReader { rx, buf: Vec::new(), pos: 0 };
            unpack::unpack(reader, &dir, &rules(max_fetch))
        })
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let taker = {
        let seen = Arc::clone(&seen);
        let say = shell.clone();
        let mut tx = Some(tx);
        let id = id.to_string();
        Box::new(move |bytes: &[u8]| -> ControlFlow<()> {
            let mut seen = seen.lock().expect("the follower does not panic");
            let mut gone = false;
            let events = seen.demux.feed(bytes, &mut |ch, data| match ch {
                Channel::Stdout => pass_through(true, data),
                Channel::Stderr => pass_through(false, data),
                Channel::Tar => {
                    // The unpacker stops taking at the cap (or on a local error): then cut.
                    if tx.as_ref().map_or(true, |t| t.send(data.to_vec()).is_err()) {
                        tx = None;
                        gone = true;
                    }
                }
            });
            for ev in events {
                match ev {
                    Event::Launched => seen.launched_at = Some(Instant::now()),
                    Event::Rerun(tool) => say.status(
                        "Rerunning",
                        match tool {
                            Rerun::Memcheck => "after a kernel fault (exit status 4), under compute-sanitizer memcheck to find its line",
                            Rerun::CudaGdb => "after a kernel fault (exit status 4), under cuda-gdb for a backtrace",
                        },
                    ),
                    Event::Pending(waited, reason) => say.status(
                        "Pending",
                        format!("run {id} waits in the Slurm queue: {reason} (waited {})", human_secs(waited)),
                    ),
                    Event::JobStarted(waited) => {
                        say.status("Started", format!("run {id}'s job after {} in the queue", human_secs(waited)))
                    }
                    Event::Ended => seen.ended_at = Some(Instant::now()),
                }
            }
            if gone {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
    };
    let cmd = match transport.script_command(script, purpose) {
        Ok(c) => c,
        Err(e) => {
            return Follow {
                launched: false,
                launched_at: None,
                ended_at: None,
                exit_code: None,
                bad_blobs: Vec::new(),
                result: Err(e),
            }
        }
    };
    let opts = ExecOptions { stdin, stdout_to: Some(taker), stderr: Sink::Escaped, interrupt, ..Default::default() };
    let ended = cmd.exec(shell, opts);
    let mut seen = seen.lock().expect("the follower does not panic");
    let launched = seen.demux.launched;
    let (launched_at, ended_at) = (seen.launched_at, seen.ended_at);
    let exit_code = ended.as_ref().ok().and_then(|e| e.status).and_then(|s| s.code());
    let bad_blobs = std::mem::take(&mut seen.demux.bad_blobs);
    let tar_started = seen.demux.tar_started;
    let result = (|| {
        let ended = ended?;
        match ended.status {
            None => Ok(Followed::Interrupted),
            Some(s) if (s.success() || ended.cut) && tar_started => {
                // The stream is over (or cut), so the unpacker has all it will get.
                let unpacked = unpacker.join().expect("the unpacker does not panic");
                let unpacked =
                    unpacked.with_context(|| format!("failed to unpack run {id} into {}", run_dir.display()))?;
                Ok(Followed::Done(unpacked))
            }
            Some(s) if transport.is_transport_failure(s) && launched => bail!(
                "lost the connection to {} while following run {id}; the run goes on there: `cargo gpu logs {id}` follows it again",
                transport.describe()
            ),
            Some(s) if s.success() => bail!("the connection to {} ended before run {id} did", transport.describe()),
            Some(_) => Err(script_failure(transport, &cmd, &ended)),
        }
    })();
    Follow { launched, launched_at, ended_at, exit_code, bad_blobs, result }
}

/// `8s`, `3m 05s`.
fn human_secs(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m {:02}s", secs / 60, secs % 60)
    }
}

/// Stops a run on the remote (TERM, then KILL) so that what it wrote can be fetched: a step of
/// the clean-up after Ctrl-C, given up on the second.
pub fn stop_remote_run(shell: &Shell, transport: &dyn Transport, workdir: &str, id: &str) -> Result<()> {
    let opts = ExecOptions { interrupt: Interrupt::Second, ..Default::default() };
    run_script(shell, transport, &scripts::stop_run(workdir, id), &format!("stop run {id}"), opts)?;
    Ok(())
}

/// Brings a stopped run's files back into `run_dir`, under the cap: a step of the clean-up
/// after Ctrl-C, given up on the second.
pub fn fetch(
    shell: &Shell,
    transport: &dyn Transport,
    workdir: &str,
    id: &str,
    run_dir: &Path,
    max_fetch: u64,
) -> Result<Unpacked> {
    let script = scripts::fetch(workdir, id);
    let f =
        follow(shell, transport, &script, &format!("fetch run {id}"), None, id, run_dir, max_fetch, Interrupt::Second);
    match f.result? {
        Followed::Done(u) => Ok(u),
        Followed::Interrupted => Err(crate::exit::interrupted_error()),
    }
}

/// The runner's exit status, as fetched into `run_dir`.
pub fn exit_status(run_dir: &Path) -> Option<i32> {
    let bytes = crate::safe_fs::read_no_follow(&run_dir.join("exit-status")).ok()?;
    String::from_utf8_lossy(&bytes).trim().parse().ok()
}

/// Tells the user what of a run's files was refused or left out, and returns those lines for
/// its record.
pub fn report_unpacked(shell: &Shell, u: &Unpacked, id: &str, remote: &str, max_fetch: u64) -> Vec<String> {
    let mut lines = u.refusal_lines();
    for r in &lines {
        shell.warn(format!("refused an entry of run {id}: {r}"));
    }
    if let Some(what) = &u.over_limit {
        let line = format!(
            "run {id} sent more than the {} that remote {remote} may send back (its `max-fetch`): kept {} file(s), {}; refused {what}",
            human_bytes(max_fetch),
            u.files.len(),
            human_bytes(u.bytes),
        );
        shell.warn(&line);
        lines.push(line);
    }
    lines
}

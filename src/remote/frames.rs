//! The framed stdout of the run, stream and fetch scripts, read as it arrives in chunks of any size:
//! `r` (launched), `o N` / `e N` and N bytes of the runner's stdout / stderr, `h` (heartbeat),
//! `b HASH` (a damaged blob), `a TOOL` (after a kernel fault the runner runs again under
//! `memcheck` or `cuda-gdb`), `p SECONDS REASON` (a job still pending in the Slurm queue), `g
//! SECONDS` (the job started after that long), `x 0` / `x 2` (the run ended / vanished), then `t`
//! and a tar of the run's files to the end. Nothing is kept in memory but a short header line: what comes from the
//! remote is not trusted to be small.

use crate::digest::is_sha256;

/// Which output a frame's bytes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stdout,
    Stderr,
    /// The run's files, a tar stream to the end.
    Tar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DemuxState {
    Header,
    /// Skipping an over-long line that is no frame, to its newline.
    Noise,
    Body(Channel, usize),
    Tar,
}

/// The longest frame header read; a longer line is noise (a start-up file that prints) and is
/// skipped without being kept.
const MAX_HEADER: usize = 256;

/// Reads the run, stream and fetch scripts' framed stdout as it arrives, in chunks of any
/// size, keeping nothing of it in memory but a short header line.
#[derive(Debug)]
pub struct Demux {
    state: DemuxState,
    line: Vec<u8>,
    pub launched: bool,
    /// `Some(true)` when the run wrote its exit status, `Some(false)` when it vanished.
    pub ended: Option<bool>,
    /// Whether the run's files began to arrive.
    pub tar_started: bool,
    /// Stored blobs that [`launch`] found damaged (and deleted).
    pub bad_blobs: Vec<String>,
}

impl Default for Demux {
    fn default() -> Self {
        Demux {
            state: DemuxState::Header,
            line: Vec::new(),
            launched: false,
            ended: None,
            tar_started: false,
            bad_blobs: Vec::new(),
        }
    }
}

/// What a chunk held besides output: the run was launched, runs again under a tool after a
/// kernel fault, waits in a Slurm queue (seconds so far, the reason, escaped and cut short),
/// started after that wait, or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Launched,
    Rerun(Rerun),
    Pending(u64, String),
    JobStarted(u64),
    Ended,
}

/// The tool a faulted run runs again under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rerun {
    Memcheck,
    CudaGdb,
}

impl Demux {
    /// Hands the runner's output and the run's files to `out` and returns the events seen in
    /// `bytes`. Lines that are no frame (a remote start-up file that prints) are skipped.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut dyn FnMut(Channel, &[u8])) -> Vec<Event> {
        let mut events = Vec::new();
        while !bytes.is_empty() {
            match self.state {
                DemuxState::Tar => {
                    out(Channel::Tar, bytes);
                    return events;
                }
                DemuxState::Body(ch, left) => {
                    let n = left.min(bytes.len());
                    out(ch, &bytes[..n]);
                    bytes = &bytes[n..];
                    self.state = if n == left { DemuxState::Header } else { DemuxState::Body(ch, left - n) };
                }
                DemuxState::Noise => match bytes.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        bytes = &bytes[nl + 1..];
                        self.state = DemuxState::Header;
                    }
                    None => return events,
                },
                DemuxState::Header => {
                    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(bytes);
                        if self.line.len() > MAX_HEADER {
                            self.line.clear();
                            self.state = DemuxState::Noise;
                        }
                        return events;
                    };
                    self.line.extend_from_slice(&bytes[..nl]);
                    bytes = &bytes[nl + 1..];
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    let (tag, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                    match (tag, arg.parse::<usize>().ok()) {
                        ("r", _) => {
                            self.launched = true;
                            events.push(Event::Launched);
                        }
                        ("o", Some(n)) if n > 0 => self.state = DemuxState::Body(Channel::Stdout, n),
                        ("e", Some(n)) if n > 0 => self.state = DemuxState::Body(Channel::Stderr, n),
                        ("x", Some(code)) => {
                            self.ended = Some(code == 0);
                            events.push(Event::Ended);
                        }
                        ("b", _) if is_sha256(arg) => self.bad_blobs.push(arg.to_string()),
                        ("a", _) if arg == "memcheck" => events.push(Event::Rerun(Rerun::Memcheck)),
                        ("a", _) if arg == "cuda-gdb" => events.push(Event::Rerun(Rerun::CudaGdb)),
                        ("p", _) => {
                            let (waited, reason) = arg.split_once(' ').unwrap_or((arg, ""));
                            if let Ok(w) = waited.parse() {
                                let reason: String = crate::escape::line(reason.trim()).chars().take(80).collect();
                                events.push(Event::Pending(w, reason));
                            }
                        }
                        ("g", Some(w)) => events.push(Event::JobStarted(w as u64)),
                        ("t", _) => {
                            self.tar_started = true;
                            self.state = DemuxState::Tar;
                        }
                        _ => {}
                    }
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_splits_frames_across_any_chunking() {
        let long_noise = "n".repeat(10_000);
        let bad = "c".repeat(64);
        let framed = format!(
            "noise from a start-up file\n{long_noise}\nr\nb {bad}\nb not-a-hash\no 5\nhello\ne 3\nerrh\no 2\n\n!a memcheck\na rm -rf\np 12 Resources\x1b[2J\np x y\ng 14\nx 0\nt\nTARBYTES"
        );
        let framed = framed.as_bytes();
        for chunk in [1, 2, 3, 7, 100, 4096, framed.len()] {
            let mut d = Demux::default();
            let (mut out, mut err, mut tar, mut events) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for part in framed.chunks(chunk) {
                events.extend(d.feed(part, &mut |ch, b| match ch {
                    Channel::Stdout => out.extend_from_slice(b),
                    Channel::Stderr => err.extend_from_slice(b),
                    Channel::Tar => tar.extend_from_slice(b),
                }));
                assert!(d.line.len() <= MAX_HEADER + chunk, "a header line never grows without bound");
            }
            assert_eq!((out.as_slice(), err.as_slice()), (&b"hello\n!"[..], &b"err"[..]), "chunk {chunk}");
            assert_eq!(
                events,
                [
                    Event::Launched,
                    Event::Rerun(Rerun::Memcheck),
                    Event::Pending(12, "Resources\\e[2J".into()),
                    Event::JobStarted(14),
                    Event::Ended
                ]
            );
            assert!(d.launched && d.ended == Some(true) && d.tar_started);
            assert_eq!(d.bad_blobs, std::slice::from_ref(&bad));
            assert_eq!(tar, b"TARBYTES");
        }
    }
}

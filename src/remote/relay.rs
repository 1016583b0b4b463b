//! The relay: what the ssh transport runs for a script while an agent is up on the remote
//! (`cargo-gpu __relay [-v] SOCKET SCRIPT_BASE64 -- SSH_COMMAND...`). It connects to the local end
//! of the master connection's forward of the agent's socket, hands the agent the script, pipes its
//! own stdin there, writes the script's stdout and stderr to its own, and exits with the script's
//! status: to everything above it, it is the `ssh` command it stands in for. A script the agent
//! never accepted did not run, so the relay then removes the dead forward's socket (the next
//! command links again) and becomes that `ssh` command; a connection lost after the agent
//! accepted, or a script killed by a signal, is status 255, as ssh reports them. What the agent
//! sends is read as a stranger's bytes (see `agent_wire`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::cmd::Cmd;
use crate::remote::agent_wire::{self as wire, Tag};

/// The hidden first argument that makes `cargo-gpu` the relay.
pub const ARG: &str = "__relay";

/// ssh's status for a connection that failed or dropped.
const TRANSPORT_FAILURE: i32 = 255;

/// How to reach an agent: this program, and the local socket its forward listens on.
#[derive(Debug, Clone)]
pub struct Relay {
    pub exe: PathBuf,
    pub socket: PathBuf,
    /// Whether the relay says so on stderr when it falls back to plain ssh.
    pub verbose: bool,
}

/// How a relayed script ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    /// The agent ran it: its exit code, or minus the signal that killed it.
    Ran(i32),
    /// The agent never took it (nothing ran there), and why.
    Unreached(String),
    /// The agent took it, then the connection ended without its status.
    Dropped(String),
}

/// The command that runs `script` through `relay`, and as `plain` (the ssh command) when the
/// agent does not take it.
pub fn command(relay: &Relay, script: &str, plain: Cmd) -> Cmd {
    use base64::Engine;
    let shown =
        format!("cargo-gpu {ARG} {} '<{} script>' || {}", relay.socket.display(), plain.purpose(), plain.public_line());
    let mut c = Cmd::new(&relay.exe, plain.purpose()).arg(ARG);
    if relay.verbose {
        c = c.arg("-v");
    }
    c.arg(&relay.socket)
        .arg(base64::engine::general_purpose::STANDARD.encode(script))
        .arg("--")
        .arg(plain.program())
        .args(plain.get_args())
        .shown_as(shown)
}

/// Sends `script` to the agent at `socket`, feeds it `stdin` once it accepted, and writes what the
/// script prints to `out` and `err` as it comes.
pub fn relay(
    socket: &Path,
    script: &[u8],
    stdin: impl Read + Send + 'static,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Relayed {
    if script.len() > wire::MAX_SCRIPT {
        return Relayed::Unreached(format!("the script is {} bytes, more than the agent takes", script.len()));
    }
    let unreached = |what: &str, e: std::io::Error| Relayed::Unreached(format!("{what} {}: {e}", socket.display()));
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => return unreached("could not connect to", e),
    };
    let sent = stream.write_all(wire::HELLO).and_then(|_| wire::write_frame(&mut stream, Tag::Script, script));
    if let Err(e) = sent {
        return unreached("could not send the script to", e);
    }
    let mut from = std::io::BufReader::with_capacity(wire::MAX_CHUNK + 5, &stream);
    match wire::read_frame(&mut from) {
        Ok(Some((Tag::Accepted, _))) => {}
        Ok(Some((tag, _))) => return Relayed::Unreached(format!("the agent answered {tag:?} instead of accepting")),
        Ok(None) => return Relayed::Unreached(format!("{} closed before the agent accepted", socket.display())),
        Err(e) => return unreached("lost", e),
    }
    // Only now is stdin read: a script the agent did not take leaves it whole for plain ssh.
    if let Ok(mut to) = stream.try_clone() {
        std::thread::spawn(move || feed(stdin, &mut to));
    }
    loop {
        let written = match wire::read_frame(&mut from) {
            Ok(Some((Tag::Stdout, body))) => out.write_all(&body).and_then(|_| out.flush()),
            Ok(Some((Tag::Stderr, body))) => err.write_all(&body).and_then(|_| err.flush()),
            Ok(Some((Tag::Exit, body))) => {
                return match wire::exit_value(&body) {
                    Ok(v) => Relayed::Ran(v),
                    Err(e) => Relayed::Dropped(format!("the agent sent a bad exit status: {e}")),
                }
            }
            Ok(Some((tag, _))) => return Relayed::Dropped(format!("the agent sent a {tag:?} frame")),
            Ok(None) => return Relayed::Dropped("the connection to the agent ended before the script did".into()),
            Err(e) => return Relayed::Dropped(format!("the connection to the agent failed: {e}")),
        };
        if let Err(e) = written {
            return Relayed::Dropped(format!("could not pass the script's output on: {e}"));
        }
    }
}

/// Sends `stdin` to the agent as it comes, then its end.
fn feed(mut stdin: impl Read, to: &mut UnixStream) {
    let mut buf = vec![0u8; wire::MAX_CHUNK];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if wire::write_frame(to, Tag::Stdin, &buf[..n]).is_err() || n == 0 {
            return;
        }
    }
}

/// `cargo-gpu __relay [-v] SOCKET SCRIPT_BASE64 -- SSH_COMMAND...`: relays the script and
/// returns its status, or becomes the ssh command when the agent does not take it.
pub fn main(args: Vec<OsString>) -> i32 {
    use base64::Engine;
    let verbose = args.first().is_some_and(|a| a == "-v");
    let args = &args[usize::from(verbose)..];
    let (socket, script, fallback) = match args {
        [socket, script, dashes, fallback @ ..] if dashes == "--" && !fallback.is_empty() => (socket, script, fallback),
        _ => {
            eprintln!("usage: cargo-gpu {ARG} [-v] SOCKET SCRIPT_BASE64 -- SSH_COMMAND...");
            return 2;
        }
    };
    let Ok(script) = base64::engine::general_purpose::STANDARD.decode(script.as_encoded_bytes()) else {
        eprintln!("cargo-gpu {ARG}: the script is not base64");
        return 2;
    };
    let socket = Path::new(socket);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    match relay(socket, &script, std::io::stdin(), &mut out, &mut err) {
        Relayed::Ran(code) if (0..=255).contains(&code) => code,
        Relayed::Ran(signal) => {
            eprintln!("cargo-gpu: the remote script was killed by signal {}", -signal);
            TRANSPORT_FAILURE
        }
        Relayed::Dropped(why) => {
            eprintln!("cargo-gpu: {why}");
            TRANSPORT_FAILURE
        }
        Relayed::Unreached(why) => {
            // The forward leads nowhere: gone, the next command links the agent again.
            let _ = std::fs::remove_file(socket);
            if verbose {
                eprintln!("cargo-gpu: the agent did not take the script ({why}): running it over plain ssh");
            }
            use std::os::unix::process::CommandExt;
            let e = std::process::Command::new(&fallback[0]).args(&fallback[1..]).exec();
            eprintln!("cargo-gpu: could not start {}: {e}", fallback[0].to_string_lossy());
            TRANSPORT_FAILURE
        }
    }
}

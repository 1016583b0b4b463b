//! The agent: cargo-gpu itself, left running on an ssh remote so that a warm `cargo gpu exec`
//! (one remote command per test under nextest) pays neither a new ssh session nor the remote
//! user's login shell and its start-up files (`pyenv init`, conda: a tenth of a second or more
//! each time).
//!
//! Design. The agent is this very binary, uploaded once through the blob store (so a remote keeps
//! it while cargo-gpu does not change) and started by one plain ssh command (`agent_link`), which
//! runs `cargo-gpu __agent start DIR NAME IDLE_S` there. `start` checks the folder (ours, 0700, not
//! a link: made by that command under the workdir), takes its lock, binds `DIR/NAME.sock`
//! (refusing a path longer than a unix socket's), starts `__agent serve` detached in a session of
//! its own with the listening socket as its stdin, says `agent: ready PATH` and exits; a second
//! `start` finds the first one answering and says the same. The server inherited the login
//! environment of that ssh command, so a script it runs sees the PATH and variables a script sent
//! over ssh sees. Here, the ssh master forwards a local socket to it (streamlocal) and each
//! script reaches it as a channel of the warm connection through the relay (`relay`).
//!
//! Each connection is one request (see `agent_wire`): the script and then stdin; the agent
//! accepts it only from its own user id (SO_PEERCRED, on top of the private folder), says so,
//! runs the script with `sh -c` in the user's home folder in a process group of its own, exactly
//! as sshd would run it after the login shell, streams stdout and stderr back and ends with the
//! exit status. A relay that goes away closes the script's pipes, as a dropped ssh channel does,
//! so the scripts' own checks (a failed heartbeat) end it. The server exits when no request has
//! come for its idle time (`CARGO_GPU_AGENT_IDLE` here, ten minutes by default), or when its
//! binary or its socket is gone; never while a script of its own still runs, so it leaves
//! behind only what the scripts detached on purpose (the runs). Its log, one line per request,
//! is `DIR/NAME.log`, and its pid `DIR/NAME.pid`.

use std::ffi::{OsStr, OsString};
use std::io::{BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::remote::agent_wire::{self as wire, Tag};

/// The hidden first argument that makes `cargo-gpu` the agent.
pub const ARG: &str = "__agent";
/// How `start` begins its one line of answer.
pub const ANSWER: &str = "agent:";
/// The longest path a unix socket may have (108 bytes with the closing NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// How long a connection may take to send its script.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests logged one line each; later ones are not, so the log stays small.
const MAX_LOGGED: u64 = 10_000;
/// What to do about a folder that is not private.
const FIX: &str = "remove it, or give the remote a workdir of your own";

/// `cargo-gpu __agent start|serve DIR NAME IDLE_SECONDS`.
pub fn main(args: Vec<OsString>) -> i32 {
    let parsed = match args.as_slice() {
        [mode, dir, name, idle] if mode == "start" || mode == "serve" => {
            let name = name.to_str().filter(|n| is_name(n));
            let idle = idle.to_str().and_then(|i| i.parse::<u64>().ok()).map(Duration::from_secs);
            name.zip(idle).map(|(n, i)| (mode == "start", Path::new(dir), n, i))
        }
        _ => None,
    };
    let Some((start, dir, name, idle)) = parsed else {
        eprintln!("usage: cargo-gpu {ARG} start|serve DIR NAME IDLE_SECONDS");
        return 2;
    };
    if start {
        match launch(dir, name, idle) {
            Ok(socket) => println!("{ANSWER} ready {}", socket.display()),
            Err(e) => println!("{ANSWER} refused {}", format!("{e:#}").replace('\n', " ")),
        }
        return 0;
    }
    match serve(dir, name, idle) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("agent: {e:#}");
            1
        }
    }
}

/// Whether `name` is what the link names an agent: twelve lowercase hex digits.
pub fn is_name(name: &str) -> bool {
    name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The socket of the agent `name` in `dir`.
fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// `start`: makes sure an agent listens in `dir`, starting one if none answers; returns its socket.
fn launch(dir: &Path, name: &str, idle: Duration) -> Result<PathBuf> {
    crate::safe_fs::check_private(dir, "agent folder", FIX)?;
    let dir = dir.canonicalize().with_context(|| format!("failed to resolve {}", dir.display()))?;
    let socket = socket_path(&dir, name);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "its socket path {} is longer than a unix socket path may be ({MAX_SOCKET_PATH} bytes)",
            socket.display()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let _lock = crate::safe_fs::lock(&dir.join(format!("{name}.lock")), || {
        if Instant::now() > deadline {
            bail!("another start of the agent held its lock for 10 s");
        }
        Ok(())
    })?;
    if UnixStream::connect(&socket).is_ok() {
        return Ok(socket);
    }
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("failed to remove the stale socket {}", socket.display()))
        }
        _ => {}
    }
    let listener = UnixListener::bind(&socket).with_context(|| format!("failed to listen on {}", socket.display()))?;
    let log = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(dir.join(format!("{name}.log")))
        .context("failed to open the agent's log")?;
    let exe = std::env::current_exe().context("failed to find the agent's own binary")?;
    Command::new(exe)
        .arg(ARG)
        .arg("serve")
        .arg(&dir)
        .arg(name)
        .arg(idle.as_secs().to_string())
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
        .stdout(Stdio::from(log.try_clone().context("failed to share the agent's log")?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("failed to start the agent's server")?;
    Ok(socket)
}

/// What the server knows of its requests.
struct Requests {
    running: usize,
    last: Instant,
    served: u64,
}

/// `serve`: the server `start` left listening on its stdin.
fn serve(dir: &Path, name: &str, idle: Duration) -> Result<()> {
    // A session of its own: nothing of the ssh command that started it reaches it; and no
    // folder of it kept busy.
    let _ = rustix::process::setsid();
    let _ = std::env::set_current_dir("/");
    let listener = UnixListener::from(
        rustix::io::fcntl_dupfd_cloexec(std::io::stdin(), 3).context("failed to take the listening socket")?,
    );
    let socket = socket_path(dir, name);
    let inode = std::fs::symlink_metadata(&socket).context("failed to find its socket")?.ino();
    let exe = std::env::current_exe().context("failed to find its own binary")?;
    let pid_file = dir.join(format!("{name}.pid"));
    crate::safe_fs::write_atomic(&pid_file, format!("{}\n", std::process::id()).as_bytes())?;
    eprintln!("agent {} listening on {}; exits after {} s idle", std::process::id(), socket.display(), idle.as_secs());
    let requests = Arc::new(Mutex::new(Requests { running: 0, last: Instant::now(), served: 0 }));
    {
        let requests = Arc::clone(&requests);
        let socket = socket.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(idle.min(Duration::from_secs(1)));
            let r = requests.lock().unwrap_or_else(|e| e.into_inner());
            let ours = std::fs::symlink_metadata(&socket).is_ok_and(|m| m.ino() == inode);
            let why = if r.running > 0 {
                None
            } else if !exe.exists() {
                Some("its binary is gone".to_string())
            } else if !ours {
                Some("its socket is gone".to_string())
            } else if r.last.elapsed() >= idle {
                Some(format!("no request for {} s", idle.as_secs()))
            } else {
                None
            };
            if let Some(why) = why {
                if ours {
                    let _ = std::fs::remove_file(&socket);
                }
                let _ = std::fs::remove_file(&pid_file);
                eprintln!("agent {} exits: {why}", std::process::id());
                // Holding the lock: no request can start meanwhile.
                std::process::exit(0);
            }
        });
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_dir()).unwrap_or_else(|| "/".into());
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
                let requests = Arc::clone(&requests);
                let home = home.clone();
                std::thread::spawn(move || handle(conn, &requests, &home));
            }
            Err(e) => {
                eprintln!("agent: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(())
}

/// One connection: checks who it is, reads its script, runs it.
fn handle(conn: UnixStream, requests: &Mutex<Requests>, home: &Path) {
    let me = rustix::process::getuid();
    match rustix::net::sockopt::socket_peercred(&conn) {
        Ok(peer) if peer.uid == me => {}
        Ok(peer) => {
            eprintln!("agent: refused a connection from user id {}", peer.uid.as_raw());
            return;
        }
        Err(e) => {
            eprintln!("agent: refused a connection whose user is unknown: {e}");
            return;
        }
    }
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let Ok(read_half) = conn.try_clone() else { return };
    let mut from = BufReader::with_capacity(wire::MAX_CHUNK + 5, read_half);
    if wire::read_hello(&mut from).is_err() {
        return;
    }
    let script = match wire::read_frame(&mut from) {
        Ok(Some((Tag::Script, script))) => script,
        _ => return,
    };
    let _ = conn.set_read_timeout(None);
    let n = {
        let mut r = requests.lock().unwrap_or_else(|e| e.into_inner());
        r.running += 1;
        r.served += 1;
        r.served
    };
    let started = Instant::now();
    run(conn, from, &script, home, |ended| {
        if n <= MAX_LOGGED {
            eprintln!("request {n}: {ended} after {} ms", started.elapsed().as_millis());
        }
    });
    let mut r = requests.lock().unwrap_or_else(|e| e.into_inner());
    r.running -= 1;
    r.last = Instant::now();
}

/// Runs `script` as sshd would run the command (`sh -c`, the home folder, a process group of
/// its own), with the connection's stdin frames as its stdin and its output sent back as frames.
/// `log` hears how it ended before the relay does, so the log is whole once the relay returns.
fn run(conn: UnixStream, mut from: BufReader<UnixStream>, script: &[u8], home: &Path, log: impl FnOnce(&str)) {
    let to = Arc::new(Mutex::new(conn));
    let send = |tag: Tag, body: &[u8]| wire::write_frame(&mut *to.lock().unwrap_or_else(|e| e.into_inner()), tag, body);
    if send(Tag::Accepted, b"").is_err() {
        return log("the relay left before the script started");
    }
    let child = Command::new("sh")
        .arg("-c")
        .arg(OsStr::from_bytes(script))
        .current_dir(home)
        .env("PWD", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            log(&format!("sh did not start: {e}"));
            let _ = send(Tag::Stderr, format!("cargo-gpu agent: could not start sh: {e}\n").as_bytes());
            let _ = send(Tag::Exit, &127i32.to_be_bytes());
            return;
        }
    };
    let mut stdin = child.stdin.take();
    let feeder = std::thread::spawn(move || {
        // Frames after the child stopped reading are read and dropped, up to the end of stdin.
        while let Ok(Some((Tag::Stdin, chunk))) = wire::read_frame(&mut from) {
            if chunk.is_empty() {
                break;
            }
            if stdin.as_mut().is_some_and(|s| s.write_all(&chunk).is_err()) {
                stdin = None;
            }
        }
    });
    let pumps = [
        child.stdout.take().map(|pipe| pump(pipe, Tag::Stdout, Arc::clone(&to))),
        child.stderr.take().map(|pipe| pump(pipe, Tag::Stderr, Arc::clone(&to))),
    ];
    let status = child.wait();
    for p in pumps.into_iter().flatten() {
        let _ = p.join();
    }
    match &status {
        Ok(s) => {
            log(&crate::cmd::describe_status(*s));
            let _ = send(Tag::Exit, &wire::exit_body(*s));
        }
        Err(e) => log(&format!("lost its script: {e}")),
    }
    // Ends the feeder's read, if the relay still holds its end open.
    let _ = to.lock().unwrap_or_else(|e| e.into_inner()).shutdown(std::net::Shutdown::Both);
    let _ = feeder.join();
}

/// Copies a pipe of the script to the connection as `tag` frames, on a thread of its own; when
/// the relay is gone, stops and closes the pipe, so the script meets a broken pipe as it would
/// over a dropped channel.
fn pump(mut pipe: impl Read + Send + 'static, tag: Tag, to: Arc<Mutex<UnixStream>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; wire::MAX_CHUNK];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let mut w = to.lock().unwrap_or_else(|e| e.into_inner());
            if wire::write_frame(&mut *w, tag, &buf[..n]).is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::relay::{relay, Relayed};

    /// The request handling of a server, on a socket in `dir`, with `/` as the home folder.
    fn serve_here(dir: &Path) -> PathBuf {
        let socket = dir.join("s");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Requests { running: 0, last: Instant::now(), served: 0 }));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let requests = Arc::clone(&requests);
                std::thread::spawn(move || handle(conn.unwrap(), &requests, Path::new("/")));
            }
        });
        socket
    }

    fn run_here(socket: &Path, script: &str, stdin: &'static [u8]) -> (Relayed, Vec<u8>, Vec<u8>) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = relay(socket, script.as_bytes(), stdin, &mut out, &mut err);
        (r, out, err)
    }

    #[test]
    fn a_script_gets_its_stdin_and_sends_back_its_streams_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let socket = serve_here(dir.path());
        let (r, out, err) = run_here(&socket, "cat; printf 'to err' >&2; pwd; exit 3", b"from stdin\n");
        assert_eq!(r, Relayed::Ran(3));
        assert_eq!(out, b"from stdin\n/\n");
        assert_eq!(err, b"to err");
        // More output than one frame holds, in order.
        let (r, out, _) =
            run_here(&socket, "i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i + 1)); done", b"");
        assert_eq!(r, Relayed::Ran(0));
        let want: String = (0..20000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // A script killed by a signal says which.
        assert_eq!(run_here(&socket, "kill -9 $$", b"").0, Relayed::Ran(-9));
    }

    #[test]
    fn a_connection_that_is_no_relay_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let socket = serve_here(dir.path());
        let marker = dir.path().join("ran");
        let script = format!("touch '{}'", marker.display());
        let mut frame = Vec::new();
        wire::write_frame(&mut frame, Tag::Script, script.as_bytes()).unwrap();
        let over_long = [wire::HELLO, &[b's', 0xff, 0xff, 0xff, 0xff]].concat();
        for hostile in
            [[&b"GET / HTTP/1.0\r\n\r\n"[..], &frame].concat(), [wire::HELLO, b"i\0\0\0\0"].concat(), over_long]
        {
            let mut c = UnixStream::connect(&socket).unwrap();
            c.write_all(&hostile).unwrap();
            let mut answer = Vec::new();
            c.read_to_end(&mut answer).unwrap();
            assert!(answer.is_empty(), "{answer:?}");
        }
        assert!(!marker.exists(), "nothing ran");
        assert_eq!(run_here(&socket, &script, b"").0, Relayed::Ran(0));
        assert!(marker.exists());
    }

    #[test]
    fn no_server_is_unreached_so_the_script_may_go_another_way() {
        let dir = tempfile::tempdir().unwrap();
        let (r, out, _) = run_here(&dir.path().join("none"), "exit 0", b"");
        assert!(matches!(r, Relayed::Unreached(_)) && out.is_empty(), "{r:?}");
        // A socket nobody accepts on any more, as a dead forward leaves it.
        let listener = UnixListener::bind(dir.path().join("dead")).unwrap();
        drop(listener);
        assert!(matches!(run_here(&dir.path().join("dead"), "exit 0", b"").0, Relayed::Unreached(_)));
    }
}

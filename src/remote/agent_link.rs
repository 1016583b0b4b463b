//! The agent (see `remote::agent`) from this side of an ssh connection: whether a remote gets one
//! (a remote of this program's machine type, `CARGO_GPU_NO_AGENT` unset), starting it there with
//! one plain ssh command (and uploading this binary into the blob store first when it is not
//! there), the master connection's forward of a local socket to it, a first request through it,
//! and the memo of the outcome per remote and connection. The memo lives beside the master's
//! socket in the private control folder: while the connection lives, an agent that answered is
//! used without asking again, and one that was refused is not retried (a new connection tries
//! again). Anything that goes wrong leaves the scripts on plain ssh; `-v` says which way they go.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, ExecOptions};
use crate::quote::{quote, quote_path};
use crate::remote::agent::{self, ANSWER, MAX_SOCKET_PATH};
use crate::remote::relay::{self, Relay, Relayed};
use crate::remote::scripts;
use crate::remote::transport::{run_script, Transport};
use crate::shell::Shell;

/// Set (to anything but `0`), scripts always go over plain ssh.
pub const NO_AGENT_ENV: &str = "CARGO_GPU_NO_AGENT";
/// How long the agent waits for a request before it exits (`10m`, `90s`).
pub const IDLE_ENV: &str = "CARGO_GPU_AGENT_IDLE";
const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// What the link needs of a transport: the ssh one.
pub trait AgentHost: Transport {
    /// What names the remote and its workdir: its host, ssh options and workdir.
    fn memo_key(&self) -> String;
    fn workdir(&self) -> &str;
    /// The private folder of the master connection's socket.
    fn control_dir(&self) -> &Path;
    /// The command that makes the master forward `local` to the remote's `remote` socket, or
    /// (`cancel`) stop doing so.
    fn forward_command(&self, local: &Path, remote: &str, cancel: bool) -> Cmd;
    /// Sends every later script through `relay`.
    fn use_relay(&self, relay: Relay);
}

/// What the memo (one file per remote and build of cargo-gpu) keeps of the agent: for which
/// connection, and what came of it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Memo {
    connection: String,
    state: State,
}

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum State {
    /// Forwarded from the local socket to this remote one.
    Up {
        remote: String,
    },
    Refused {
        reason: String,
    },
}

/// What the start script answered.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Ready(String),
    /// The binary is not in the blob store (or was damaged there, and deleted).
    Missing,
    Refused(String),
}

/// Where the link keeps its files for one remote and build, in the private control folder.
struct Place {
    memo: PathBuf,
    socket: PathBuf,
    lock: PathBuf,
}

/// Links the remote's agent, when it may have one, so that `host` sends its scripts through it
/// from now on; otherwise they go over plain ssh. `connection` names the live master
/// connection, `machine` is the remote's `uname -m` as its preflight said.
pub fn attach(shell: &Shell, host: &dyn AgentHost, connection: &str, machine: Option<&str>) {
    let said = match link(shell, host, connection, machine) {
        Ok(Ok(relay)) => {
            let said = format!("scripts on {} go through its agent (via {})", host.describe(), relay.socket.display());
            host.use_relay(relay);
            said
        }
        Ok(Err(why)) => format!("scripts on {} go over plain ssh: {why}", host.describe()),
        Err(e) => format!("scripts on {} go over plain ssh: {e:#}", host.describe()),
    };
    shell.verbose("Agent", said);
}

/// The relay to the agent, or why there is none.
fn link(shell: &Shell, host: &dyn AgentHost, connection: &str, machine: Option<&str>) -> Result<Result<Relay, String>> {
    if std::env::var_os(NO_AGENT_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        return Ok(Err(format!("{NO_AGENT_ENV} is set")));
    }
    let here = std::env::consts::ARCH;
    match machine {
        _ if !cfg!(target_os = "linux") => return Ok(Err("this cargo-gpu is not a Linux program".into())),
        Some(m) if m == here => {}
        Some(m) => return Ok(Err(format!("the remote is {m}, this cargo-gpu runs on {here}"))),
        None => return Ok(Err("its machine type is not known".into())),
    }
    let exe = std::env::current_exe().context("failed to find this program")?;
    let binary = crate::package::assemble::cached_hash(&exe)?;
    let place = place(host, &binary)?;
    let relay = Relay { exe: exe.clone(), socket: place.socket.clone(), verbose: shell.is_verbose() };
    if let Some(known) = known(&place, connection) {
        return Ok(known.map(|()| relay));
    }
    // One link at a time per remote: nextest starts several execs at once.
    let _lock = crate::safe_fs::lock(&place.lock, crate::exit::check_interrupt)?;
    if let Some(known) = known(&place, connection) {
        return Ok(known.map(|()| relay));
    }
    // This connection's forward to an agent that stopped answering goes first.
    let cancel = |remote: &str| {
        let _ = host.forward_command(&place.socket, remote, true).exec(shell, ExecOptions::default());
    };
    if let Some(Memo { state: State::Up { remote }, .. }) = load(&place.memo).filter(|m| m.connection == connection) {
        cancel(&remote);
    }
    let state = match start(shell, host, &exe, &binary)? {
        Answer::Ready(remote) => match forward(shell, host, &place.socket, &remote) {
            Ok(()) => State::Up { remote },
            Err(e) => {
                cancel(&remote);
                State::Refused { reason: format!("{e:#}") }
            }
        },
        Answer::Missing => State::Refused { reason: "its binary did not arrive in the blob store".into() },
        Answer::Refused(reason) => State::Refused { reason },
    };
    let result = match &state {
        State::Up { .. } => Ok(relay),
        State::Refused { reason } => Err(reason.clone()),
    };
    let memo = Memo { connection: connection.to_string(), state };
    if let Ok(text) = serde_json::to_vec(&memo) {
        let _ = crate::safe_fs::write_atomic(&place.memo, &text);
    }
    Ok(result)
}

/// The link's files for `host` and this build, in the private control folder.
fn place(host: &dyn AgentHost, binary: &str) -> Result<Place> {
    let dir = crate::safe_fs::private_dir(host.control_dir(), "ssh control folder")?;
    let key = crate::digest::sha256_hex(format!("{}\n{binary}", host.memo_key()).as_bytes());
    let at = |ext: &str| dir.join(format!("agent-{}.{ext}", &key[..16]));
    let place = Place { memo: at("json"), socket: at("sock"), lock: at("lock") };
    if !forwardable(&place.socket.to_string_lossy()) {
        bail!("the socket path {} is too long or not one ssh can forward", place.socket.display());
    }
    Ok(place)
}

fn load(path: &Path) -> Option<Memo> {
    serde_json::from_slice(&crate::safe_fs::read_no_follow(path).ok()?).ok()
}

/// What the memo says of this connection and build: linked (and the forward's socket still
/// there), refused and why, or nothing yet.
fn known(place: &Place, connection: &str) -> Option<Result<(), String>> {
    let memo = load(&place.memo).filter(|m| m.connection == connection)?;
    match memo.state {
        State::Up { .. } => {
            use std::os::unix::fs::FileTypeExt;
            let up = std::fs::symlink_metadata(&place.socket).is_ok_and(|m| m.file_type().is_socket());
            up.then_some(Ok(()))
        }
        State::Refused { reason } => Some(Err(reason)),
    }
}

/// Whether ssh can forward a socket at `path`: absolute, short enough, and of characters that its
/// `-L` parser takes literally.
fn forwardable(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= MAX_SOCKET_PATH
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b))
}

/// The agent's idle time: [`IDLE_ENV`], else ten minutes.
fn idle() -> Result<Duration> {
    match std::env::var(IDLE_ENV).ok().filter(|v| !v.is_empty()) {
        Some(v) => {
            humantime::parse_duration(&v).with_context(|| format!("{IDLE_ENV}={v} is not a duration (`10m`, `90s`)"))
        }
        None => Ok(DEFAULT_IDLE),
    }
}

/// Starts the agent there (uploading this binary first when the blob store lacks it) and returns
/// its answer. A transport failure is an error: it says nothing about the agent.
fn start(shell: &Shell, host: &dyn AgentHost, exe: &Path, binary: &str) -> Result<Answer> {
    let script = start_script(host.workdir(), binary, idle()?);
    let ended = run_script(shell, host, &script, "start the agent", ExecOptions::default())?;
    let answer = parse_answer(&ended.stdout);
    if answer != Answer::Missing {
        return Ok(answer);
    }
    let size = std::fs::metadata(exe).map(|m| m.len()).unwrap_or(0);
    shell.verbose("Agent", format!("uploading cargo-gpu ({}) to {}", crate::shell::human_bytes(size), host.describe()));
    let upload = scripts::upload(host.workdir(), &format!("agent-{}", std::process::id()), &[binary.to_string()]);
    let opts = ExecOptions {
        stdin: Some(scripts::blob_tar(vec![(binary.to_string(), exe.to_path_buf())])),
        ..Default::default()
    };
    let ended = run_script(shell, host, &format!("{upload}{script}"), "upload and start the agent", opts)?;
    Ok(parse_answer(&ended.stdout))
}

/// The remote half of [`start`]: the agent's folder under the workdir, made private or refused,
/// its binary copied there from the blob store and checked, then `__agent start`. It answers one
/// `agent: ...` line (see [`parse_answer`]).
fn start_script(workdir: &str, binary: &str, idle: Duration) -> String {
    assert!(crate::digest::is_sha256(binary), "the binary is named by its sha256");
    let name = &binary[..12];
    format!(
        r#"W={w}
H={binary}
[ -f "$W/blobs/$H" ] || {{ echo '{ANSWER} missing'; exit 0; }}
A="$W/agent"
mkdir -m 700 "$A" 2>/dev/null
if [ -h "$A" ] || [ ! -d "$A" ] || [ ! -O "$A" ]; then echo "{ANSWER} refused $A is not a folder of this user's own"; exit 0; fi
case $(ls -ld "$A") in drwx------*) ;; *) echo "{ANSWER} refused $A is open to other users"; exit 0 ;; esac
B="$A/cargo-gpu-{name}"
v=
[ -f "$B" ] && [ ! -h "$B" ] && v=$(sha256sum < "$B")
if [ "${{v%% *}}" != "$H" ]; then
  rm -f "$B" "$B.tmp"
  cp "$W/blobs/$H" "$B.tmp" && v=$(sha256sum < "$B.tmp") || {{ rm -f "$B.tmp"; echo '{ANSWER} refused its binary could not be copied'; exit 0; }}
  if [ "${{v%% *}}" != "$H" ]; then rm -f "$B.tmp" "$W/blobs/$H"; echo '{ANSWER} missing'; exit 0; fi
  chmod 700 "$B.tmp" && mv -f "$B.tmp" "$B" || {{ echo '{ANSWER} refused its binary could not be placed'; exit 0; }}
fi
a=$("$B" {arg} start "$A" {name} {idle} 2>&1)
case $a in
  '{ANSWER} '*) printf '%s\n' "$a" ;;
  *) printf '{ANSWER} refused it did not start: %s\n' "$(printf '%s\n' "$a" | head -n 1)" ;;
esac
"#,
        w = quote_path(workdir),
        arg = quote(agent::ARG),
        idle = idle.as_secs().max(1),
    )
}

/// The start script's answer: its last `agent: ` line, escaped (a stranger's text); a socket
/// path ssh cannot forward is a refusal.
fn parse_answer(stdout: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(stdout);
    let Some(line) = text.lines().rev().find_map(|l| l.strip_prefix(ANSWER).map(str::trim)) else {
        return Answer::Refused("the start script gave no answer".into());
    };
    let line: String = crate::escape::line(line).chars().take(300).collect();
    if line == "missing" {
        Answer::Missing
    } else if let Some(path) = line.strip_prefix("ready ") {
        if forwardable(path) {
            Answer::Ready(path.to_string())
        } else {
            Answer::Refused(format!("its socket path {path} is too long or not one ssh can forward"))
        }
    } else {
        Answer::Refused(line.strip_prefix("refused ").unwrap_or(&line).to_string())
    }
}

/// Makes the master forward the local `socket` to the agent's, then sends it a first script:
/// only an agent that answers through the forward is used.
fn forward(shell: &Shell, host: &dyn AgentHost, socket: &Path, remote: &str) -> Result<()> {
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("failed to remove the old socket {}", socket.display()))
        }
        _ => {}
    }
    let cmd = host.forward_command(socket, remote, false);
    let ended = cmd.exec(shell, ExecOptions::default())?;
    match ended.status {
        Some(s) if s.success() => {}
        Some(s) => return Err(cmd.failure(s, &ended.stderr).into()),
        None => return Err(crate::exit::interrupted_error()),
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    match relay::relay(socket, b"printf ok", std::io::empty(), &mut out, &mut err) {
        Relayed::Ran(0) if out == b"ok" => Ok(()),
        Relayed::Ran(code) => {
            bail!("its first script exited with {code}: {}", crate::escape::line(&String::from_utf8_lossy(&err)))
        }
        Relayed::Unreached(why) | Relayed::Dropped(why) => bail!("it did not answer through the connection: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_answer_is_the_last_agent_line_and_escaped() {
        assert_eq!(
            parse_answer(b"motd\nagent: ready /w/agent/0123456789ab.sock\n"),
            Answer::Ready("/w/agent/0123456789ab.sock".into())
        );
        assert_eq!(parse_answer(b"agent: missing\n"), Answer::Missing);
        assert_eq!(
            parse_answer(b"agent: refused /w/agent is open to other users\n"),
            Answer::Refused("/w/agent is open to other users".into())
        );
        assert_eq!(parse_answer(b"bashrc says hi\n"), Answer::Refused("the start script gave no answer".into()));
        let Answer::Refused(why) = parse_answer(b"agent: refused \x1b[31mred\n") else { panic!() };
        assert!(!why.contains('\x1b'), "{why}");
        // A socket path that ssh would read as more than a path, or that no socket can have.
        for bad in ["/w/a:b.sock", "relative.sock", "/w/a b.sock", "/w/[x].sock"] {
            assert!(matches!(parse_answer(format!("agent: ready {bad}\n").as_bytes()), Answer::Refused(_)), "{bad}");
        }
        let long = format!("/{}", "a".repeat(MAX_SOCKET_PATH));
        assert!(matches!(parse_answer(format!("agent: ready {long}\n").as_bytes()), Answer::Refused(_)));
    }

    #[test]
    fn the_start_script_quotes_its_words_and_parses() {
        let script = start_script("~/it's $(touch pwned)", &"c".repeat(64), Duration::from_secs(5));
        assert!(script.starts_with("W=\"$HOME\"/'it'\\''s $(touch pwned)'\n"), "{script}");
        assert!(script.contains(" __agent start \"$A\" cccccccccccc 5 2>&1"), "{script}");
        let out = Command::new("sh").arg("-n").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs the start script against a workdir here, with `prepare` setting up the agent's folder.
    fn start_here(prepare: impl FnOnce(&Path)) -> (tempfile::TempDir, Answer) {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w");
        std::fs::create_dir_all(w.join("blobs")).unwrap();
        let bytes = b"#!/bin/sh\necho \"agent: ready $3/x.sock\"\n";
        let hash = crate::digest::sha256_hex(bytes);
        std::fs::write(w.join("blobs").join(&hash), bytes).unwrap();
        prepare(&w);
        let script = start_script(&w.display().to_string(), &hash, Duration::from_secs(5));
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (dir, parse_answer(&out.stdout))
    }

    #[test]
    fn the_start_script_makes_a_private_folder_and_refuses_one_that_is_not() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, answer) = start_here(|_| {});
        let a = dir.path().join("w/agent");
        assert_eq!(answer, Answer::Ready(format!("{}/x.sock", a.display())));
        assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o700);
        // Planted first: a folder open to everyone, a link to a folder of ours.
        let (_dir, answer) = start_here(|w| {
            std::fs::create_dir(w.join("agent")).unwrap();
            std::fs::set_permissions(w.join("agent"), std::fs::Permissions::from_mode(0o777)).unwrap();
        });
        assert!(matches!(&answer, Answer::Refused(r) if r.ends_with("is open to other users")), "{answer:?}");
        let (dir, answer) = start_here(|w| {
            std::fs::create_dir(w.join("elsewhere")).unwrap();
            std::fs::set_permissions(w.join("elsewhere"), std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::symlink(w.join("elsewhere"), w.join("agent")).unwrap();
        });
        assert!(
            matches!(&answer, Answer::Refused(r) if r.ends_with("is not a folder of this user's own")),
            "{answer:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("w/elsewhere")).unwrap().count(),
            0,
            "nothing written through the link"
        );
        // A damaged blob is deleted, so that it is uploaded again.
        let (dir, answer) = start_here(|w| {
            for e in std::fs::read_dir(w.join("blobs")).unwrap() {
                std::fs::write(e.unwrap().path(), b"planted").unwrap();
            }
        });
        assert_eq!(answer, Answer::Missing);
        assert_eq!(std::fs::read_dir(dir.path().join("w/blobs")).unwrap().count(), 0);
    }
}

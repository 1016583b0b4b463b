//! The ssh transport: the system OpenSSH client with the user's own `~/.ssh/config` (aliases,
//! ProxyJump, keys, agent), one multiplexed connection (ControlMaster) that the whole run and the
//! next run reuse, `BatchMode=yes` so nothing ever waits for a password, a connect timeout and
//! keep-alives. Host keys are checked as the user's config says; this never turns that off.
//! ssh hands its command to the remote user's login shell, which may be bash, dash, zsh, fish or
//! tcsh: every script therefore travels as one fixed command of plain words and base64 text, which
//! all of them read the same way, and runs in `sh`. The master sockets live in a private folder
//! that is checked before every use. Where the remote runs an agent (see `agent_link`), each
//! script goes through it instead, over a channel of the same master connection.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cmd::Cmd;
use crate::cmd::ExecOptions;
use crate::config::Remote;
use crate::exit::Interrupt;
use crate::remote::agent_link::{self, AgentHost};
use crate::remote::relay::{self, Relay};
use crate::remote::transport::{retry_until, script_failure, Transport};
use crate::shell::Shell;

/// How long an idle master connection stays up for the next run.
const CONTROL_PERSIST: &str = "10m";
const SERVER_ALIVE_INTERVAL_S: u32 = 15;
const SERVER_ALIVE_COUNT_MAX: u32 = 4;

#[derive(Debug)]
pub struct Ssh {
    pub name: String,
    pub host: String,
    pub options: Vec<String>,
    pub connect_timeout: Duration,
    pub control_dir: PathBuf,
    pub workdir: String,
    /// Set once the remote's agent answered: scripts go through it from then on.
    relay: OnceLock<Relay>,
    /// The master connection's pid, once it answered (0: it gave none).
    master: Mutex<Option<u32>>,
}

/// Where master sockets (and what is kept beside them) live: `CARGO_GPU_SSH_CONTROL_DIR`, else
/// `$XDG_RUNTIME_DIR/cargo-gpu`, else `$TMPDIR/cargo-gpu-ssh-<uid>` (socket paths must stay
/// short). Not checked: see [`private_control_dir`].
pub fn control_dir_path() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_GPU_SSH_CONTROL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("cargo-gpu");
    }
    let uid = rustix::process::getuid().as_raw();
    std::env::temp_dir().join(format!("cargo-gpu-ssh-{uid}"))
}

/// The control folder, made private if missing and checked to be ours, 0700 and not a link:
/// in a shared temp folder another user may have made it first, open, with links planted in it.
pub fn private_control_dir() -> Result<PathBuf> {
    crate::safe_fs::private_dir(&control_dir_path(), "ssh control folder")
}

/// The longest remote command sent: Linux takes at most 128 KiB in one argument, and the login
/// shell gets the command as one.
const MAX_REMOTE_COMMAND: usize = 120 << 10;

/// The one command ssh hands to the remote user's login shell for `script`: `sh -c` with a fixed
/// program of plain words that decodes the script from base64 and runs it. Inside its single
/// quotes are no quote, backslash, `!` or newline, so bash, dash, zsh, fish and tcsh all pass it
/// to `sh` unchanged; the script itself only ever meets `sh`. Its stdin stays the connection's.
pub fn remote_command(script: &str) -> Result<String> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(script);
    let command = format!("sh -c 'eval \"$(printf %s {encoded} | base64 -d)\"'");
    if command.len() > MAX_REMOTE_COMMAND {
        bail!(
            "the remote script is {} bytes, more than one remote command can carry ({MAX_REMOTE_COMMAND}): the package has too many files",
            command.len()
        );
    }
    Ok(command)
}

impl Ssh {
    pub fn new(remote: &Remote) -> Ssh {
        Ssh {
            name: remote.name.clone(),
            host: remote.host.clone().expect("an ssh remote has a host"),
            options: remote.ssh_options.clone(),
            connect_timeout: remote.connect_timeout,
            control_dir: control_dir_path(),
            workdir: remote.workdir.clone(),
            relay: OnceLock::new(),
            master: Mutex::default(),
        }
    }

    /// The ssh arguments before the host: the user's `ssh-options` first (ssh keeps the first
    /// value it sees for each option), then ours.
    pub fn base_args(&self) -> Vec<String> {
        let mut args = self.options.clone();
        let timeout = self.connect_timeout.as_secs_f64().ceil().max(1.0) as u64;
        for o in [
            "BatchMode=yes".to_string(),
            format!("ConnectTimeout={timeout}"),
            format!("ServerAliveInterval={SERVER_ALIVE_INTERVAL_S}"),
            format!("ServerAliveCountMax={SERVER_ALIVE_COUNT_MAX}"),
            "ControlMaster=auto".to_string(),
            format!("ControlPath={}/%C", self.control_dir.display()),
            format!("ControlPersist={CONTROL_PERSIST}"),
            // The agent's forward replaces the socket a dead forward left.
            "StreamLocalBindUnlink=yes".to_string(),
        ] {
            args.push("-o".into());
            args.push(o);
        }
        args
    }

    fn ensure_control_dir(&self) -> Result<()> {
        crate::safe_fs::private_dir(&self.control_dir, "ssh control folder")?;
        Ok(())
    }
}

/// `Master running (pid=1234)`, what `ssh -O check` says.
fn parse_master_pid(text: &str) -> Option<u32> {
    let rest = &text[text.find("(pid=")? + 5..];
    rest[..rest.find(')')?].parse().ok()
}

/// Whether ssh's complaint will not go away by waiting for the host to boot (a wrong host key,
/// a refused key, an unknown alias): retrying until the ready timeout would only hide it.
pub fn is_permanent(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr);
    ["Host key verification failed", "Permission denied", "Could not resolve hostname", "Bad configuration option"]
        .iter()
        .any(|m| text.contains(m))
}

impl Ssh {
    /// The pid of the master connection when one is up: asked of the local master, no round trip,
    /// once per process while it answers (`wait_ready` asks, and then `connection_id`).
    fn master_pid(&self, shell: &Shell) -> Option<u32> {
        let mut seen = self.master.lock().unwrap_or_else(|e| e.into_inner());
        if seen.is_none() {
            *seen = self.ask_master_pid(shell);
        }
        *seen
    }

    fn ask_master_pid(&self, shell: &Shell) -> Option<u32> {
        self.ensure_control_dir().ok()?;
        let cmd = Cmd::new("ssh", "check the ssh master connection")
            .args(self.base_args())
            .args(["-O", "check", "--"])
            .arg(&self.host);
        let ended = cmd.exec(shell, ExecOptions::default()).ok()?;
        if !ended.status?.success() {
            return None;
        }
        parse_master_pid(&String::from_utf8_lossy(&ended.stderr)).or(Some(0))
    }

    fn master_alive(&self, shell: &Shell) -> bool {
        self.master_pid(shell).is_some()
    }

    /// Whether the user's `ssh-options` (which come first, so win) turn multiplexing off.
    fn multiplexing_off(&self) -> bool {
        self.options.iter().any(|o| {
            let o = o.to_ascii_lowercase().replace([' ', '\t', '='], "");
            o.contains("controlmasterno") || o.contains("controlpathnone") || o.contains("controlpersistno")
        })
    }

    /// Opens the master connection and leaves it in the background (`-f -N`): authenticated,
    /// but no remote command, so the remote user's shell start-up files do not run for it.
    /// Without multiplexing a backgrounded `-N` would never end, so then it runs `exit 0`.
    pub fn connect_command(&self) -> Cmd {
        if self.multiplexing_off() {
            return self.script_command("exit 0", "connect").expect("a short script fits one command");
        }
        Cmd::new("ssh", "connect").args(self.base_args()).args(["-f", "-N", "-T", "--"]).arg(&self.host)
    }
}

impl Transport for Ssh {
    fn describe(&self) -> String {
        if self.name == self.host {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.host)
        }
    }

    fn script_command(&self, script: &str, purpose: &str) -> Result<Cmd> {
        // ssh joins its arguments into one string for the remote user's shell: hand it exactly
        // one word that every login shell reads the same way.
        let words: Vec<String> =
            self.base_args().into_iter().chain(["-T".into(), "--".into(), self.host.clone()]).collect();
        let shown = format!("ssh {} '<{purpose} script>'", crate::redact::words(&words).join(" "));
        let plain = Cmd::new("ssh", purpose).args(words).arg(remote_command(script)?).shown_as(shown);
        Ok(match self.relay.get() {
            Some(r) => relay::command(r, script, plain),
            None => plain,
        })
    }

    fn is_transport_failure(&self, status: ExitStatus) -> bool {
        status.code() == Some(255)
    }

    fn wait_ready(&self, shell: &Shell, timeout: Duration) -> Result<()> {
        self.ensure_control_dir()?;
        if self.master_alive(shell) {
            return Ok(());
        }
        let cmd = self.connect_command();
        let mut last = None;
        let once = timeout <= self.connect_timeout;
        let result = retry_until(timeout, Duration::from_secs(2), || {
            let ended = cmd.exec(shell, ExecOptions::default())?;
            match ended.status {
                Some(s) if s.success() => Ok(true),
                Some(s) if self.is_transport_failure(s) && !once && !is_permanent(&ended.stderr) => {
                    last = Some(script_failure(self, &cmd, &ended));
                    Ok(false)
                }
                _ => Err(script_failure(self, &cmd, &ended)),
            }
        });
        match (result, last) {
            (Ok(()), _) => Ok(()),
            (Err(e), Some(last)) if crate::exit::code_for(&e) != crate::exit::INTERRUPTED => Err(
                last.context(format!("{} did not answer ssh within {:.0}s", self.describe(), timeout.as_secs_f64()))
            ),
            (Err(e), _) => Err(e),
        }
    }

    fn attach_agent(&self, shell: &Shell, connection: &str, machine: Option<&str>) {
        if self.relay.get().is_none() {
            agent_link::attach(shell, self, connection, machine);
        }
    }

    fn connection_id(&self, shell: &Shell) -> Option<String> {
        match self.master_pid(shell)? {
            0 => None,
            pid => Some(format!("ssh master pid {pid} {}", self.control_dir.display())),
        }
    }

    fn disconnect(&self, shell: &Shell) {
        *self.master.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if self.ensure_control_dir().is_err() {
            return;
        }
        let cmd = Cmd::new("ssh", "close the ssh master connection")
            .args(self.base_args())
            .args(["-O", "exit", "--"])
            .arg(&self.host);
        let _ = cmd.exec(shell, ExecOptions { interrupt: Interrupt::Never, ..Default::default() });
    }
}

impl AgentHost for Ssh {
    fn memo_key(&self) -> String {
        format!("{:?}\n{:?}\n{}", self.host, self.options, self.workdir)
    }

    fn workdir(&self) -> &str {
        &self.workdir
    }

    fn control_dir(&self) -> &Path {
        &self.control_dir
    }

    fn forward_command(&self, local: &Path, remote: &str, cancel: bool) -> Cmd {
        let (op, purpose) =
            if cancel { ("cancel", "stop forwarding to the agent") } else { ("forward", "forward to the agent") };
        Cmd::new("ssh", purpose)
            .args(self.base_args())
            .args(["-O", op, "-L"])
            .arg(format!("{}:{remote}", local.display()))
            .arg("--")
            .arg(&self.host)
    }

    fn use_relay(&self, relay: Relay) {
        let _ = self.relay.set(relay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh() -> Ssh {
        let mut r = Remote::local();
        r.name = "h100".into();
        r.host = Some("me@h100".into());
        r.ssh_options = vec!["-F".into(), "/t/ssh config".into()];
        r.connect_timeout = Duration::from_millis(2500);
        Ssh { control_dir: PathBuf::from("/run/cg"), ..Ssh::new(&r) }
    }

    #[test]
    fn command_line_is_batch_multiplexed_and_keeps_host_keys_checked() {
        let c = ssh().script_command("echo 'hi there'", "greet").unwrap();
        let line = c.to_string();
        assert!(line.starts_with("ssh -F '/t/ssh config' -o BatchMode=yes -o ConnectTimeout=3 "), "{line}");
        assert!(line.contains("-o ControlMaster=auto -o ControlPath=/run/cg/%C -o ControlPersist=10m"), "{line}");
        assert!(line.contains("-o ServerAliveInterval=15"), "{line}");
        assert!(!line.contains("StrictHostKeyChecking"), "{line}");
        let args = c.get_args();
        assert_eq!(args[args.len() - 2], "me@h100");
        assert!(c.public_line().ends_with(" -T -- me@h100 '<greet script>'"), "{}", c.public_line());
    }

    #[test]
    fn with_an_agent_a_script_goes_through_the_relay_and_else_through_ssh() {
        use base64::Engine;
        let s = ssh();
        let plain = s.script_command("echo hi", "greet").unwrap();
        s.use_relay(Relay { exe: "/bin/cargo-gpu".into(), socket: "/run/cg/agent-1.sock".into(), verbose: true });
        let c = s.script_command("echo hi", "greet").unwrap();
        assert_eq!(c.program(), "/bin/cargo-gpu");
        let args: Vec<&str> = c.get_args().iter().map(|a| a.to_str().unwrap()).collect();
        let script = base64::engine::general_purpose::STANDARD.encode("echo hi");
        assert_eq!(args[..5], [relay::ARG, "-v", "/run/cg/agent-1.sock", script.as_str(), "--"]);
        // What follows is the plain ssh command, word for word: what the relay becomes.
        assert_eq!(args[5], "ssh");
        assert_eq!(c.get_args()[6..], plain.get_args()[..]);
        assert!(
            c.public_line().starts_with("cargo-gpu __relay /run/cg/agent-1.sock '<greet script>' || ssh "),
            "{}",
            c.public_line()
        );
        assert!(!c.public_line().contains(&script), "{}", c.public_line());
    }

    #[test]
    fn connecting_runs_no_remote_command() {
        let line = ssh().connect_command().to_string();
        assert!(line.contains("-o ControlMaster=auto") && line.ends_with(" -f -N -T -- me@h100"), "{line}");
        let mut plain = ssh();
        plain.options.extend(["-o".into(), "ControlMaster no".into()]);
        let c = plain.connect_command();
        assert!(!c.to_string().contains(" -f "), "{c}");
        assert_eq!(c.get_args().last().unwrap().to_str().unwrap(), remote_command("exit 0").unwrap());
    }

    #[test]
    fn the_remote_command_is_one_plain_word_list() {
        let word = remote_command("echo 'a' \"b\" \\ ! \n $x").unwrap();
        let inner = word.strip_prefix("sh -c '").and_then(|w| w.strip_suffix('\'')).unwrap();
        assert!(!inner.contains(['\'', '\\', '!', '\n']), "{inner}");
        let huge = "x".repeat(200 << 10);
        assert!(remote_command(&huge).unwrap_err().to_string().contains("too many files"));
    }

    #[test]
    fn the_master_pid_is_read_from_its_answer() {
        assert_eq!(parse_master_pid("Master running (pid=4242)\r\n"), Some(4242));
        assert_eq!(parse_master_pid("Control socket connect(/x): No such file"), None);
    }

    #[test]
    fn host_key_and_auth_failures_are_not_retried() {
        assert!(is_permanent(b"Host key verification failed.\r\n"));
        assert!(is_permanent(b"root@127.0.0.1: Permission denied (publickey)."));
        assert!(!is_permanent(b"ssh: connect to host 127.0.0.1 port 22: Connection refused"));
    }

    #[test]
    fn status_255_is_the_transport() {
        use std::os::unix::process::ExitStatusExt;
        assert!(ssh().is_transport_failure(ExitStatus::from_raw(255 << 8)));
        assert!(!ssh().is_transport_failure(ExitStatus::from_raw(7 << 8)));
    }
}

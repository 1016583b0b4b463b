//! The ssh transport: the system OpenSSH client with the user's own `~/.ssh/config` (aliases,
//! ProxyJump, keys, agent), one multiplexed connection (ControlMaster) that the whole run and the
//! next run reuse, `BatchMode=yes` so nothing ever waits for a password, a connect timeout and
//! keep-alives. Host keys are checked as the user's config says; this never turns that off.
//! Every script runs as `sh -c 'script'`, never through a login shell's profile.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::config::Remote;
use crate::remote::quote::quote;
use crate::remote::transport::{exec, retry_until, script_failure, ExecOptions, Transport};
use crate::shell::Shell;

/// How long an idle master connection stays up for the next run.
const CONTROL_PERSIST: &str = "10m";
const SERVER_ALIVE_INTERVAL_S: u32 = 15;
const SERVER_ALIVE_COUNT_MAX: u32 = 4;

#[derive(Debug, Clone)]
pub struct Ssh {
    pub name: String,
    pub host: String,
    pub options: Vec<String>,
    pub connect_timeout: Duration,
    pub control_dir: PathBuf,
}

/// Where master sockets live: `CARGO_GPU_SSH_CONTROL_DIR`, else `$XDG_RUNTIME_DIR/cargo-gpu`, else
/// `/tmp/cargo-gpu-ssh-<uid>` (socket paths must stay short).
pub fn control_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_GPU_SSH_CONTROL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("cargo-gpu");
    }
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid().to_string()).unwrap_or_else(|_| "user".into());
    std::env::temp_dir().join(format!("cargo-gpu-ssh-{uid}"))
}

impl Ssh {
    pub fn new(remote: &Remote) -> Ssh {
        Ssh {
            name: remote.name.clone(),
            host: remote.host.clone().expect("an ssh remote has a host"),
            options: remote.ssh_options.clone(),
            connect_timeout: remote.connect_timeout,
            control_dir: control_dir(),
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
        ] {
            args.push("-o".into());
            args.push(o);
        }
        args
    }

    fn ensure_control_dir(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        if !self.control_dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.control_dir)
                .with_context(|| format!("failed to create the ssh control folder {}", self.control_dir.display()))?;
        }
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
    /// The pid of the master connection when one is up: asked of the local master, no round trip.
    fn master_pid(&self, shell: &Shell) -> Option<u32> {
        let cmd = Cmd::new("ssh", "check the ssh master connection")
            .args(self.base_args())
            .args(["-O", "check", "--"])
            .arg(&self.host);
        let ended = exec(shell, &cmd, ExecOptions::default()).ok()?;
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
            return self.script_command("exit 0", "connect");
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

    fn script_command(&self, script: &str, purpose: &str) -> Cmd {
        // ssh joins its arguments into one string for the remote user's shell: hand it exactly
        // one word, `sh -c <quoted script>`.
        Cmd::new("ssh", purpose)
            .args(self.base_args())
            .arg("-T")
            .arg("--")
            .arg(&self.host)
            .arg(format!("sh -c {}", quote(script)))
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
            let ended = exec(shell, &cmd, ExecOptions::default())?;
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

    fn connection_id(&self, shell: &Shell) -> Option<String> {
        match self.master_pid(shell)? {
            0 => None,
            pid => Some(format!("ssh master pid {pid} {}", self.control_dir.display())),
        }
    }

    fn disconnect(&self, shell: &Shell) {
        let cmd = Cmd::new("ssh", "close the ssh master connection")
            .args(self.base_args())
            .args(["-O", "exit", "--"])
            .arg(&self.host);
        let _ = exec(shell, &cmd, ExecOptions { interruptible: false, ..Default::default() });
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
        let c = ssh().script_command("echo 'hi there'", "greet");
        let line = c.to_string();
        assert!(line.starts_with("ssh -F '/t/ssh config' -o BatchMode=yes -o ConnectTimeout=3 "), "{line}");
        assert!(line.contains("-o ControlMaster=auto -o ControlPath=/run/cg/%C -o ControlPersist=10m"), "{line}");
        assert!(line.contains("-o ServerAliveInterval=15"), "{line}");
        assert!(!line.contains("StrictHostKeyChecking"), "{line}");
        let args = c.get_args();
        assert_eq!(args[args.len() - 2], "me@h100");
        assert_eq!(args[args.len() - 1], r#"sh -c 'echo '\''hi there'\'''"#);
    }

    #[test]
    fn connecting_runs_no_remote_command() {
        let line = ssh().connect_command().to_string();
        assert!(line.contains("-o ControlMaster=auto") && line.ends_with(" -f -N -T -- me@h100"), "{line}");
        let mut plain = ssh();
        plain.options.extend(["-o".into(), "ControlMaster no".into()]);
        let c = plain.connect_command();
        assert!(!c.to_string().contains(" -f "), "{c}");
        assert_eq!(c.get_args().last().unwrap(), "sh -c 'exit 0'");
    }

    #[test]
    fn the_remote_word_runs_the_script_exactly() {
        let script = "printf '%s|' \"$0\" 'it'\\''s $(x)'";
        let c = ssh().script_command(script, "t");
        let remote_word = c.get_args().last().unwrap().to_str().unwrap().to_string();
        // What the remote user's shell does with the one word ssh sends.
        let out = std::process::Command::new("sh").arg("-c").arg(&remote_word).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "sh|it's $(x)|");
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

//! A real OpenSSH server on a random loopback port, with its own host key, user key,
//! known_hosts and ssh_config (nothing of the user's is touched), started for one test's
//! [`World`] and stopped with it, and the `[remotes.NAME]` table that reaches it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ci::required;
use super::process::Run;
use super::remote::{toml_str, World};

/// The host name the ssh_config gives the server.
pub const ALIAS: &str = "cargo-gpu-test";

/// A real sshd on loopback, and the ssh_config that reaches it.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub ssh_config: PathBuf,
    pub log: PathBuf,
    control: PathBuf,
}

/// How a test's sshd differs from the plain one.
pub struct SshdOptions<'a> {
    /// The GPU the remote's fake `nvidia-smi` plays: `h100`, `rtx5060ti`, or `hostile` (an H100
    /// whose name holds terminal escapes).
    pub fake_gpu: &'a str,
    /// Whether the client's known_hosts holds the server's key.
    pub known_host: bool,
    /// More `NAME=value` words for the remote environment (`BASH_ENV=...` gives the remote user
    /// shell start-up work, as a real `.bashrc` does).
    pub env: &'a str,
    /// More sshd_config lines (before the harness's own, so they win: sshd keeps the first value).
    pub config: &'a str,
    /// The remote user's login shell (`/usr/bin/fish`): sshd hands every command to it as
    /// `SHELL -c COMMAND`, which a `ForceCommand` does here exactly, for any user the tests run as.
    pub login_shell: Option<&'a str>,
}

impl Default for SshdOptions<'_> {
    fn default() -> Self {
        SshdOptions { fake_gpu: "h100", known_host: true, env: "", config: "", login_shell: None }
    }
}

/// A loopback port that nothing listens on (a host still booting, or a closed one).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Sshd {
    /// Starts sshd, or returns `None` (skip) when it is not installed; under CI=true that panics.
    pub fn start(world: &World, opts: SshdOptions<'_>) -> Option<Sshd> {
        let found =
            Path::new("/usr/sbin/sshd").is_file() && which::which("ssh").is_ok() && which::which("ssh-keygen").is_ok();
        required(found.then_some(()), "sshd, ssh or ssh-keygen", "apt-get install openssh-server openssh-client")?;
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = world.path("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        for key in ["host_ed25519", "id_ed25519"] {
            Run::of(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "cargo-gpu-test", "-f"])
                    .arg(dir.join(key)),
            )
            .ok();
        }
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string()
        });
        let port = free_port();
        let remote_path = format!("{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", world.fakebin.display());
        let force = match opts.login_shell {
            Some(shell) => format!("ForceCommand exec {shell} -c \"$SSH_ORIGINAL_COMMAND\"\n"),
            None => String::new(),
        };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n\
             SetEnv PATH={remote_path} CARGO_GPU_FAKE_GPU={gpu} {env}\n{extra}\n{force}LogLevel ERROR\n",
            d = dir.display(),
            gpu = opts.fake_gpu,
            env = opts.env,
            extra = opts.config,
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let ssh_config = dir.join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {d}/id_ed25519\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
                 HostKeyAlias {ALIAS}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let known = if opts.known_host {
            format!("{ALIAS} {}", std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap())
        } else {
            String::new()
        };
        std::fs::write(dir.join("known_hosts"), known).unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Sshd { child, port, ssh_config, log, control: world.control.clone() })
    }

    /// The `[remotes.NAME]` table that reaches this sshd; `extra` adds lines.
    pub fn remote_table(&self, name: &str, workdir: &Path, extra: &str) -> String {
        format!(
            "[remotes.{name}]\nhost = \"{ALIAS}\"\nworkdir = {}\nssh-options = [\"-F\", {}]\n{extra}\n",
            toml_str(&workdir.display().to_string()),
            toml_str(&self.ssh_config.display().to_string()),
        )
    }

    /// Closes the master connection that cargo-gpu left for the next run (and every session in it).
    pub fn close_master(&self) {
        let _ = Command::new("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            .arg("-o")
            .arg(format!("ControlPath={}/%C", self.control.display()))
            .args(["-O", "exit", ALIAS])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.close_master();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

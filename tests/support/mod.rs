//! Harness for the remote-run tests: a real OpenSSH server on a random loopback port with its own
//! host key, user key, known_hosts and ssh_config (nothing of the user's is touched), a fake
//! `nvidia-smi` on the remote's PATH (this machine has no GPU; `CARGO_GPU_FAKE_GPU` picks an H100
//! or an RTX 5060 Ti), hand-made packages, and a runner for the real `cargo-gpu` binary.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cargo_gpu::digest::sha256_file;
use cargo_gpu::package::manifest::{FileEntry, Manifest, PackageInfo, MANIFEST_FILE};

pub const BIN: &str = env!("CARGO_BIN_EXE_cargo-gpu");
pub const ALIAS: &str = "cargo-gpu-test";

const FAKE_NVIDIA_SMI: &str = r#"#!/bin/sh
# Fake nvidia-smi: answers the queries cargo-gpu makes, as the GPU in $CARGO_GPU_FAKE_GPU would.
case "${CARGO_GPU_FAKE_GPU:-h100}" in
  rtx5060ti) name="NVIDIA GeForce RTX 5060 Ti"; cc=12.0 ;;
  # A host that names its GPU with terminal escapes: retitle the window, clear the screen.
  hostile) name=$(printf 'NVIDIA H100\033]0;pwned\007\033[2J'); cc=9.0 ;;
  *) name="NVIDIA H100 80GB HBM3"; cc=9.0 ;;
esac
driver=580.95.05
cuda=13.0
case "$*" in
  *--query-gpu=*) echo "$name, $cc, $driver" ;;
  -q)
    printf '\n==============NVSMI LOG==============\n\n'
    printf 'Timestamp                                 : Sat Nov 28 14:03:11 2026\n'
    printf 'Driver Version                            : %s\n' "$driver"
    printf 'CUDA Version                              : %s\n\n' "$cuda"
    printf 'Attached GPUs                             : 1\n'
    printf 'GPU 00000000:00:05.0\n    Product Name                          : %s\n' "$name"
    ;;
  *) echo "fake nvidia-smi: unsupported arguments: $*" >&2; exit 9 ;;
esac
"#;

/// A `tar` for the remote's PATH: the real one, except that
/// - while the file `slow-tar` exists beside it, an unpacking tar gets the first MiB of its input
///   and then nothing more until that file is removed (so a test can cut an upload off while a
///   blob is half written);
/// - while `slow-fetch` exists, a creating tar waits (a slow fetch of a run's files);
/// - while `hostile.tar` exists, a creating tar sends that file instead: a hostile host's answer.
const FAKE_TAR: &str = r#"#!/bin/sh
d=$(dirname "$0")
real=/usr/bin/tar; [ -x "$real" ] || real=/bin/tar
if [ -e "$d/slow-tar" ] && [ "$1" = "-xf" ]; then
  { head -c 1048576; while [ -e "$d/slow-tar" ]; do sleep 0.05; done; cat; } | "$real" "$@"
  exit $?
fi
if [ "$1" = "-cf" ]; then
  while [ -e "$d/slow-fetch" ]; do sleep 0.05; done
  if [ -e "$d/hostile.tar" ]; then exec cat "$d/hostile.tar"; fi
fi
exec "$real" "$@"
"#;

/// A `df` for the remote's PATH: the real one, except that while the file `disk-full` exists
/// beside it, every file system has 1 MiB free.
const FAKE_DF: &str = r#"#!/bin/sh
d=$(dirname "$0")
real=/usr/bin/df; [ -x "$real" ] || real=/bin/df
if [ -e "$d/disk-full" ]; then
  echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
  echo "/dev/fake 1048576 1047552 1024 100% /"
  exit 0
fi
exec "$real" "$@"
"#;

/// Whether tests that need sshd must run: under CI a missing sshd fails them.
pub fn sshd_required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A scratch world: temp root, fake tools, config file, target dir, control dir.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub fakebin: PathBuf,
    pub config: PathBuf,
    pub target: PathBuf,
    pub control: PathBuf,
    pub cwd: PathBuf,
}

impl World {
    pub fn new() -> World {
        let tmp = tempfile::Builder::new().prefix("cg").tempdir_in("/tmp").unwrap();
        let root = tmp.path().to_path_buf();
        let fakebin = root.join("fakebin");
        std::fs::create_dir_all(&fakebin).unwrap();
        write_exe(&fakebin.join("nvidia-smi"), FAKE_NVIDIA_SMI);
        write_exe(&fakebin.join("tar"), FAKE_TAR);
        write_exe(&fakebin.join("df"), FAKE_DF);
        // Private, as cargo-gpu requires of the folder its ssh sockets live in.
        let control = root.join("cm");
        std::fs::create_dir_all(&control).unwrap();
        std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o700)).unwrap();
        let cwd = root.join("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        World { config: root.join("config.toml"), target: root.join("target"), fakebin, control, cwd, tmp }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// `cargo-gpu gpu ARGS` in this world.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("gpu").args(args);
        let path = format!("{}:{}", self.fakebin.display(), std::env::var("PATH").unwrap_or_default());
        c.env("PATH", path)
            .env("CARGO_GPU_CONFIG", &self.config)
            .env("CARGO_GPU_SSH_CONTROL_DIR", &self.control)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_TERM_COLOR", "never")
            .env_remove("CARGO_GPU_REMOTE")
            .current_dir(&self.cwd);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).stdin(Stdio::null()).output().unwrap();
        eprintln!(
            "$ cargo-gpu {}\n--- status {:?}\n--- stderr\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Turns a behaviour of the fake `tar` or `df` (`slow-tar`, `disk-full`) on or off.
    pub fn fake(&self, flag: &str, on: bool) {
        let p = self.fakebin.join(flag);
        if on {
            std::fs::write(p, "").unwrap();
        } else {
            let _ = std::fs::remove_file(p);
        }
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.target.join("gpu").join("runs")
    }

    /// Run ids recorded so far, oldest first.
    pub fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.runs_dir())
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub fn last_record(&self) -> cargo_gpu::runs::Record {
        let id = self.run_ids().pop().expect("a run was recorded");
        cargo_gpu::runs::Record::load(&self.runs_dir(), &id).unwrap()
    }
}

/// Writes `bytes` as the answer the fake remote `tar` gives instead of the run's files.
pub fn hostile_tar(world: &World, bytes: &[u8]) {
    std::fs::write(world.fakebin.join("hostile.tar"), bytes).unwrap();
}

/// A tar built header by header, so that it can hold what `tar::Builder` itself would refuse
/// (`..`, absolute paths, escapes in names): `(name, kind, contents, link target)`.
pub fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            let lb = l.as_bytes();
            h.as_old_mut().linkname[..lb.len()].copy_from_slice(lb);
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// What a child process printed and how it ended, with the most memory it held at once.
pub struct Measured {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub peak_rss_bytes: u64,
}

/// Runs `cmd` to the end and reads its peak resident memory from the kernel (`wait4`), which
/// counts every page it ever held, however briefly.
// The child is reaped by `wait4`, which std's own `wait` cannot give the memory figure of.
#[allow(clippy::zombie_processes)]
pub fn run_measured(cmd: &mut Command) -> Measured {
    use std::io::Read;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid std has not reaped (we never call `wait`).
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let code = if libc::WIFEXITED(status) { Some(libc::WEXITSTATUS(status)) } else { None };
    Measured {
        code,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
        // Linux reports kilobytes.
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
    }
}

/// How many processes of ours have `needle` in their command line (ssh clients and masters of
/// one test's sshd, say).
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if line.contains(needle) {
                found.push(line);
            }
        }
    }
    found
}

/// Every file (or link) under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .filter(|e| std::fs::read(e.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)))
        .map(|e| e.into_path())
        .collect()
}

/// A real sshd on loopback, and the ssh_config that reaches it.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub ssh_config: PathBuf,
    pub log: PathBuf,
    control: PathBuf,
}

pub struct SshdOptions<'a> {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Sshd {
    /// Starts sshd, or returns `None` (skip) when it is not installed; under CI=true that panics.
    pub fn start(world: &World, opts: SshdOptions<'_>) -> Option<Sshd> {
        let sshd = PathBuf::from("/usr/sbin/sshd");
        if !sshd.is_file() || which("ssh").is_none() || which("ssh-keygen").is_none() {
            if sshd_required() {
                panic!("sshd, ssh and ssh-keygen are required under CI=true (apt-get install openssh-server openssh-client)");
            }
            eprintln!("skipping: no /usr/sbin/sshd or ssh client");
            return None;
        }
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = world.path("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        for key in ["host_ed25519", "id_ed25519"] {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "cargo-gpu-test", "-f"])
                    .arg(dir.join(key)),
            );
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
        let child = Command::new(&sshd)
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
}

impl Sshd {
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

pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// The test runner: prints to stdout and stderr, writes into `$CARGO_GPU_OUT`, and takes
/// `exit=N` and `sleep=S` as its first argument.
pub const RUNNER: &str = r#"#!/bin/sh
printf 'runner says hello\n'
printf 'runner warns\n' >&2
for a in "$@"; do printf '[%s]\n' "$a"; done
for a in "$@"; do printf '%s\n' "$a"; done > "$CARGO_GPU_OUT/args.txt"
ls "$CARGO_GPU_KERNELS" > "$CARGO_GPU_OUT/kernels.txt"
cat "$CARGO_GPU_KERNELS"/* > "$CARGO_GPU_OUT/cubins.bin"
printf '\000\001\002\377binary' > "$CARGO_GPU_OUT/result.bin"
mkdir -p "$CARGO_GPU_OUT/sub" && echo nested > "$CARGO_GPU_OUT/sub/n.txt"
i=0
while [ $i -lt 300 ]; do echo "line $i of the output"; i=$((i + 1)); done
case "$1" in
  sleep=*) echo "sleeping"; sleep "${1#sleep=}"; echo "woke up" ;;
esac
printf 'last words without newline'
case "$1" in
  exit=*) exit "${1#exit=}" ;;
esac
exit 0
"#;

/// What [`RUNNER`] prints on stdout for `args` (when it is not interrupted).
pub fn runner_stdout(args: &[&str]) -> String {
    let mut s = String::from("runner says hello\n");
    for a in args {
        s.push_str(&format!("[{a}]\n"));
    }
    for i in 0..300 {
        s.push_str(&format!("line {i} of the output\n"));
    }
    if args.first().is_some_and(|a| a.starts_with("sleep=")) {
        s.push_str("sleeping\nwoke up\n");
    }
    s.push_str("last words without newline");
    s
}

/// Writes a package (runner, cubins, manifest.toml) into `dir` and returns its manifest.
pub fn make_package(dir: &Path, runner: &str, cubins: &[(&str, &[u8])], targets: &[&str]) -> Manifest {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("kernels")).unwrap();
    write_exe(&dir.join("bin/runner"), runner);
    for (name, bytes) in cubins {
        std::fs::write(dir.join("kernels").join(name), bytes).unwrap();
    }
    write_manifest(dir, targets)
}

/// (Re)writes `manifest.toml` for the files now in `dir`.
pub fn write_manifest(dir: &Path, targets: &[&str]) -> Manifest {
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        if !e.file_type().is_file() || rel == MANIFEST_FILE {
            continue;
        }
        let target = rel.strip_prefix("kernels/").and_then(|n| n.split('.').nth(1)).and_then(|t| t.parse().ok());
        files.push(FileEntry {
            size: e.metadata().unwrap().len(),
            sha256: sha256_file(e.path()).unwrap(),
            kernel: target.map(|_| rel.trim_start_matches("kernels/").split('.').next().unwrap().to_string()),
            target,
            executable: rel.starts_with("bin/"),
            path: rel,
        });
    }
    let m = Manifest {
        package: PackageInfo {
            name: "demo".into(),
            version: "0.1.0".into(),
            profile: "debug".into(),
            git_revision: None,
            git_dirty: false,
            targets: targets.iter().map(|t| t.parse().unwrap()).collect(),
            nvcc_version: "13.0.88".into(),
            min_driver_cuda: "13.0".into(),
            runner: "bin/runner".into(),
            runner_triple: format!("{}-unknown-linux-gnu", std::env::consts::ARCH),
            runner_glibc: None,
        },
        files,
    };
    std::fs::write(dir.join(MANIFEST_FILE), m.to_toml()).unwrap();
    m
}

/// Every file under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

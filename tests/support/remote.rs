//! Where the remote tests run `cargo-gpu`: a scratch [`World`] (its config file, target, cache and
//! ssh control folders, and the fake `nvidia-smi`, `tar` and `df` the remote finds first on its PATH),
//! and [`Remote`], the remote `it` on a real sshd that most of them start from, with the
//! `remote-run` command lines they share.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::fakes::{REMOTE_COMPUTE_SANITIZER, REMOTE_CUDA_GDB, REMOTE_DF, REMOTE_NCU, REMOTE_NVIDIA_SMI, REMOTE_TAR};
use super::files::{read_text, write_exe};
use super::process::{cargo_gpu, path_with, wait_for, Run};
use super::sshd::{Sshd, SshdOptions};

/// A TOML string holding `s`.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
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
        // Short: the ssh control sockets live under it, and a socket's path has a length limit.
        let tmp = tempfile::Builder::new().prefix("cg").tempdir_in("/tmp").unwrap();
        let root = tmp.path().to_path_buf();
        let fakebin = root.join("fakebin");
        write_exe(&fakebin.join("nvidia-smi"), REMOTE_NVIDIA_SMI);
        write_exe(&fakebin.join("tar"), REMOTE_TAR);
        write_exe(&fakebin.join("df"), REMOTE_DF);
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
        let mut c = cargo_gpu(args);
        c.env("PATH", path_with(&self.fakebin))
            .env("CARGO_GPU_CONFIG", &self.config)
            .env("CARGO_GPU_SSH_CONTROL_DIR", &self.control)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_GPU_CACHE_DIR", self.cache_dir())
            .current_dir(&self.cwd);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(&mut self.cmd(args))
    }

    /// Turns a behaviour of the fake `tar` or `df` (`slow-tar`, `slow-fetch`, `disk-full`) on or
    /// off.
    pub fn fake(&self, flag: &str, on: bool) {
        let p = self.fakebin.join(flag);
        if on {
            std::fs::write(p, "").unwrap();
        } else {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Puts the fake `compute-sanitizer`, `ncu` and `cuda-gdb` first on the remote's PATH, their
    /// errors at `fault_at` (`FILE:LINE`, or none when empty; see [`super::fakes`]).
    pub fn fake_cuda_tools(&self, fault_at: &str) {
        write_exe(&self.fakebin.join("compute-sanitizer"), REMOTE_COMPUTE_SANITIZER);
        write_exe(&self.fakebin.join("ncu"), REMOTE_NCU);
        write_exe(&self.fakebin.join("cuda-gdb"), REMOTE_CUDA_GDB);
        std::fs::write(self.fakebin.join("fault-at"), fault_at).unwrap();
    }

    /// What the fake tool `name` was called with, one line per call.
    pub fn tool_calls(&self, name: &str) -> Vec<String> {
        read_text(&self.fakebin.join(format!("{name}.log"))).lines().map(str::to_string).collect()
    }

    /// Makes `bytes` the answer the fake remote `tar` gives instead of a run's files.
    pub fn hostile_tar(&self, bytes: &[u8]) {
        std::fs::write(self.fakebin.join("hostile.tar"), bytes).unwrap();
    }

    /// cargo-gpu's cache folder in this world: what it remembers of a remote stays in it.
    pub fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
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

/// The remote `it`: a [`World`] with a real sshd, `it`'s workdir there (`w`), and the log its
/// `start` and `stop` commands append to when the configuration has [`Remote::hooks`].
pub struct Remote {
    // Fields drop in order: the sshd, and the master connection into it, go before the folder
    // that holds their keys and sockets.
    pub sshd: Sshd,
    pub world: World,
    pub work: PathBuf,
    pub log: PathBuf,
}

impl Remote {
    /// A fresh world and its sshd, or `None` to skip where sshd is missing (see
    /// [`super::required`]).
    pub fn start(opts: SshdOptions<'_>) -> Option<Remote> {
        let world = World::new();
        let sshd = Sshd::start(&world, opts)?;
        Some(Remote { work: world.path("w"), log: world.path("hooks.log"), sshd, world })
    }

    /// The `[remotes.it]` table, with `extra` lines.
    pub fn table(&self, extra: &str) -> String {
        self.sshd.remote_table("it", &self.work, extra)
    }

    /// Makes [`Remote::table`] the whole configuration.
    pub fn configure(&self, extra: &str) {
        self.world.write_config(&self.table(extra));
    }

    /// `start` and `stop` commands that append `start` and `stop` to [`Remote::log`], and a
    /// connect timeout short enough for a test.
    pub fn hooks(&self) -> String {
        self.hooks_with_start_tail("")
    }

    /// [`Remote::hooks`], with `tail` appended to the start command.
    pub fn hooks_with_start_tail(&self, tail: &str) -> String {
        format!(
            "start = \"echo start >> {l}{tail}\"\nstop = \"echo stop >> {l}\"\nconnect-timeout = \"5s\"\n",
            l = self.log.display()
        )
    }

    /// What the `start` and `stop` commands wrote so far.
    pub fn hook_log(&self) -> String {
        read_text(&self.log)
    }

    /// `remote-run --remote it --package PKG ARGS`: ARGS are more options and the runner's
    /// arguments after `--`.
    pub fn remote_run_cmd(&self, pkg: &Path, args: &[&str]) -> Command {
        let pkg = pkg.display().to_string();
        self.world.cmd(&[&["remote-run", "--remote", "it", "--package", &pkg], args].concat())
    }

    /// [`Remote::remote_run_cmd`], run to the end.
    pub fn remote_run(&self, pkg: &Path, args: &[&str]) -> Run {
        Run::of(&mut self.remote_run_cmd(pkg, args))
    }

    /// [`Remote::remote_run_cmd`], started with its stdout and stderr piped (see
    /// [`super::finish`]).
    pub fn spawn(&self, pkg: &Path, args: &[&str]) -> Child {
        let mut cmd = self.remote_run_cmd(pkg, args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// The runs' folders on the remote.
    pub fn remote_runs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.work.join("runs")).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    }

    /// Waits until a runner on the remote has printed `sleeping` (the tests' runners do, given
    /// `sleep=S`) and returns its run's folder there.
    #[track_caller]
    pub fn wait_sleeping(&self) -> PathBuf {
        let mut sleeping = None;
        wait_for("the run to sleep", Duration::from_secs(20), || {
            sleeping = self.remote_runs().into_iter().find(|r| read_text(&r.join("stdout.log")).contains("sleeping"));
            sleeping.is_some()
        });
        sleeping.unwrap()
    }
}

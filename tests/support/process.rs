//! Running processes: the real `cargo-gpu` binary with a clean environment, what a command did
//! ([`Run`]), a started command's end ([`finish`]), signals and Ctrl-C, waiting for a condition, the peak
//! memory of a run, and the processes left behind.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cargo-gpu");

/// `cargo-gpu gpu ARGS`, colour off, and none of the variables that would point it at this
/// machine's toolkit, remote or target folder instead of the test's own.
pub fn cargo_gpu(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("gpu").args(args);
    c.env("CARGO_TERM_COLOR", "never");
    for var in ["CARGO_TARGET_DIR", "CARGO_GPU_NVCC", "CUDA_PATH", "CARGO_GPU_REMOTE", "CARGO_GPU_CUDA"] {
        c.env_remove(var);
    }
    // No CUDA toolchains installed unless a test installs some: this machine's stay out.
    c.env("CARGO_GPU_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-cargo-gpu-home"));
    c
}

/// This process's `PATH` with `dir` first (where a test's fake tools are).
pub fn path_with(dir: &Path) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(paths).unwrap()
}

/// Bytes as text, for messages and comparisons.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a command did, with its output as text.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run { code: o.status.code(), stdout: text(&o.stdout), stderr: text(&o.stderr) }
    }
}

impl Run {
    /// Runs `cmd` to the end with nothing on its stdin, and shows the command, its status and its
    /// stderr in the test's output (printed when the test fails).
    pub fn of(cmd: &mut Command) -> Run {
        let run = Run::from(cmd.stdin(Stdio::null()).output().unwrap());
        let line: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        eprintln!("$ {}\n--- status {:?}\n--- stderr\n{}", line.join(" "), run.code, run.stderr);
        run
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "command failed\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn fails_with(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "unexpected exit\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}\n--- stderr\n{}", self.stderr);
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(self.stdout.contains(needle), "stdout lacks {needle:?}\n--- stdout\n{}", self.stdout);
        self
    }

    /// The `Compiling` status lines, as `name.cu (target)`.
    pub fn compiled(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .stderr
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("Compiling "))
            .filter(|l| l.contains(".cu ("))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }
}

/// Waits for a started command (stdout and stderr piped) to end, and shows its status and stderr
/// in the test's output.
pub fn finish(child: Child) -> Run {
    let run = Run::from(child.wait_with_output().unwrap());
    eprintln!("--- status {:?}\n--- stderr\n{}", run.code, run.stderr);
    run
}

/// Sends `sig` (`-INT`, `-KILL`) to a started command, as a terminal or a crash would.
#[track_caller]
pub fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

/// Presses Ctrl-C on a started `cargo-gpu` (a SIGINT, as a terminal sends) and waits for it
/// to end, which it must do `within` that long, with exit status 130.
#[track_caller]
pub fn ctrl_c(child: Child, within: Duration) -> Run {
    let t = Instant::now();
    signal(&child, "-INT");
    let out = finish(child);
    assert_eq!(out.code, Some(130), "{}", out.stderr);
    assert!(t.elapsed() < within, "took {:?}", t.elapsed());
    out
}

/// Polls `ready` until it holds; fails the test, naming `what`, after `timeout`.
#[track_caller]
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a child process did, with the most memory it held at once.
pub struct Measured {
    pub run: Run,
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
        run: Run { code, stdout: text(&o.join().unwrap()), stderr: text(&e.join().unwrap()) },
        // Linux reports kilobytes.
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
    }
}

/// The command lines of our processes that have `needle` in them (ssh clients and masters of
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

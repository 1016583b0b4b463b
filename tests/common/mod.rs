//! Shared helpers for the integration tests: finding the real CUDA compiler, copying a fixture
//! project into a temporary folder, and running the real `cargo-gpu` binary against it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_cargo-gpu");

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The CUDA toolkit the tests use: `$CUDA_HOME`, the project-local venv that `scripts/setup.sh`
/// makes, or `/usr/local/cuda`.
pub fn cuda_home() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(h) = std::env::var_os("CUDA_HOME").filter(|h| !h.is_empty()) {
        candidates.push(PathBuf::from(h));
    }
    if let Ok(entries) = std::fs::read_dir(repo_root().join(".venv-cuda/lib")) {
        for e in entries.flatten() {
            candidates.push(e.path().join("site-packages/nvidia/cu13"));
        }
    }
    candidates.push(PathBuf::from("/usr/local/cuda"));
    candidates.into_iter().find(|h| h.join("bin/nvcc").is_file())
}

/// The toolkit, or `None` to skip a test that needs it. Under CI a missing nvcc fails the test.
pub fn require_cuda() -> Option<PathBuf> {
    match cuda_home() {
        Some(h) => Some(h),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "nvcc is required under CI=true: run scripts/setup.sh (it installs the CUDA compiler into .venv-cuda)"
            )
        }
        None => {
            eprintln!("skipping: no nvcc found (run scripts/setup.sh)");
            None
        }
    }
}

pub fn copy_dir(src: &Path, dst: &Path) {
    for entry in walkdir::WalkDir::new(src).into_iter().filter_entry(|e| e.file_name() != "target") {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(src).unwrap();
        let to = dst.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// A copy of a project in a temporary folder, with its own cache folder.
pub struct TestProject {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub cuda_home: Option<PathBuf>,
}

impl TestProject {
    /// Copies `tests/fixtures/NAME` (or `kernels-example` when NAME is that).
    pub fn new(name: &str, cuda_home: Option<PathBuf>) -> TestProject {
        let src = if name == "kernels-example" {
            repo_root().join(name)
        } else {
            repo_root().join("tests/fixtures").join(name)
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(name);
        copy_dir(&src, &dir);
        if name == "kernels-example" {
            // Its runner includes the kit and the template runners by path (`../templates/...`).
            copy_dir(&repo_root().join("templates"), &tmp.path().join("templates"));
        }
        TestProject { tmp, dir, cuda_home }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `cargo-gpu gpu ARGS` in the project folder, with the test's toolkit and a private cache.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("gpu").args(args).current_dir(&self.dir);
        c.env("CARGO_GPU_CACHE_DIR", self.tmp.path().join("cache"));
        c.env("CARGO_TERM_COLOR", "never");
        c.env_remove("CARGO_TARGET_DIR").env_remove("CARGO_GPU_NVCC").env_remove("CUDA_PATH");
        match &self.cuda_home {
            Some(h) => c.env("CUDA_HOME", h),
            None => c.env_remove("CUDA_HOME"),
        };
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, PathBuf)]) -> Run {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().unwrap())
    }

    pub fn package(&self, profile: &str) -> PathBuf {
        self.dir.join("target/gpu").join(profile).join(self.dir.file_name().unwrap())
    }
}

/// What a command did, with its output as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
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

/// Writes an executable shell script.
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

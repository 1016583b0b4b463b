//! The project a build test works on: the real CUDA toolkit (and its `cuobjdump`), a fixture project copied into a
//! temporary folder, `cargo-gpu` run in it, and the target folders tests share so that cudarc
//! compiles once.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ci::required;
use super::files::copy_dir;
use super::process::{cargo_gpu, Run};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where generated projects build (tests/templates.rs, tests/kit_arch.rs): one folder, so cudarc
/// compiles once for all of them.
pub fn templates_target_dir() -> PathBuf {
    repo_root().join("target/test-templates")
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

/// The toolkit, or `None` to skip a test that needs it (see [`required`]).
#[track_caller]
pub fn require_cuda() -> Option<PathBuf> {
    required(cuda_home(), "nvcc", "run scripts/setup.sh (it installs the CUDA compiler into .venv-cuda)")
}

/// What the toolkit's `cuobjdump ARGS FILE` prints (`-sass`, `-elf`).
#[track_caller]
pub fn cuobjdump(cuda: &Path, args: &[&str], file: &Path) -> String {
    Run::of(Command::new(cuda.join("bin/cuobjdump")).args(args).arg(file)).ok().stdout
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
        // A fixture whose runner includes the kit by path (`../../../../templates/kit/kit.rs`)
        // keeps its place under `tests/fixtures/`, beside a copy of the templates.
        let uses_kit =
            std::fs::read_to_string(src.join("src/main.rs")).is_ok_and(|m| m.contains("templates/kit/kit.rs"));
        let dir = if name == "kernels-example" || !uses_kit {
            tmp.path().join(name)
        } else {
            tmp.path().join("tests/fixtures").join(name)
        };
        copy_dir(&src, &dir);
        if uses_kit {
            // Its runner includes the kit (and kernels-example the template runners) by path.
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
        let mut c = cargo_gpu(args);
        c.current_dir(&self.dir).env("CARGO_GPU_CACHE_DIR", self.tmp.path().join("cache"));
        match &self.cuda_home {
            Some(h) => c.env("CUDA_HOME", h),
            None => c.env_remove("CUDA_HOME"),
        };
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(&mut self.cmd(args))
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, PathBuf)]) -> Run {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::of(&mut c)
    }

    pub fn package(&self, profile: &str) -> PathBuf {
        self.dir.join("target/gpu").join(profile).join(self.dir.file_name().unwrap())
    }
}

/// The 1-based number of the line of `file` (a kernel source) that holds `marker`, such as the
/// `// FAULT HERE` of a fixture: the line a sanitizer or debugger must name.
#[track_caller]
pub fn marker_line(file: &Path, marker: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let lines: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.contains(marker)).map(|(i, _)| i + 1).collect();
    assert_eq!(lines.len(), 1, "{} has `{marker}` exactly once", file.display());
    lines[0]
}

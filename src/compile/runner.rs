//! The host runner: the project's Rust binary, built by cargo for the remote's target triple.
//! cargo's `--message-format=json` names the executable, so no path is guessed.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use crate::cmd::{Cmd, ExecOptions, Sink};
use crate::compile::elf;
use crate::compile::sources::Profile;
use crate::project::{cargo_program, Project};
use crate::shell::{Shell, Verbosity};

/// The triple cargo-gpu itself was built for, the default for runners.
pub const HOST_TRIPLE: &str = env!("CARGO_GPU_HOST_TRIPLE");

#[derive(Debug)]
pub struct Runner {
    pub executable: PathBuf,
    pub triple: String,
    pub fresh: bool,
    /// Read as soon as cargo named the executable; an error here is the caller's to report.
    pub facts: Result<ExecutableFacts>,
}

/// What the package records of the runner's executable. Read while cargo is still ending (its
/// last message and exit take longer than this), so that a no-op build does not wait for it after.
#[derive(Debug, Clone)]
pub struct ExecutableFacts {
    pub glibc: Option<(u32, u32)>,
    pub sha256: String,
    pub size: u64,
}

/// A debug runner is tens of megabytes: its ELF headers and its bytes are read only when it
/// changed (both answers are remembered against its size and modification time).
fn facts_of(exe: &Path) -> Result<ExecutableFacts> {
    let glibc =
        crate::cache::memo("glibc", &exe.display().to_string(), &[exe.to_path_buf()], || elf::required_glibc_of(exe))?;
    let sha256 = crate::package::assemble::cached_hash(exe)?;
    let size = std::fs::metadata(exe)?.len();
    Ok(ExecutableFacts { glibc, sha256, size })
}

/// What cargo said of the runner: its executable, whether it was fresh, and its facts.
type Found = Arc<Mutex<Option<(PathBuf, bool, Result<ExecutableFacts>)>>>;

pub fn command(project: &Project, profile: Profile, verbosity: Verbosity) -> Cmd {
    let mut cmd = Cmd::new(cargo_program(), format!("build the host runner `{}`", project.runner))
        .args(["build", "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&project.manifest_path)
        .args(["--bin", &project.runner]);
    if profile == Profile::Release {
        cmd = cmd.arg("--release");
    }
    if let Some(t) = &project.runner_target {
        cmd = cmd.args(["--target", t]);
    }
    match verbosity {
        Verbosity::Quiet => cmd.arg("--quiet"),
        Verbosity::Verbose => cmd.arg("--verbose"),
        Verbosity::Normal => cmd,
    }
}

/// The runner's cargo build, started: cargo runs while the caller does other work.
pub struct Building {
    running: crate::cmd::Running,
    found: Found,
    runner: String,
    triple: String,
    shown: String,
}

/// Starts building the runner, or takes over the cargo started for it before the command line was
/// read, when `early` allows it (see [`crate::cmd::early`]); setting `cancel` stops cargo (the
/// build is then an error nobody reads). [`Building::finish`] waits for it.
pub fn start(
    shell: &Shell,
    project: &Project,
    profile: Profile,
    early: bool,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<Building> {
    let cmd = command(project, profile, shell.verbosity());
    // With `-v` the command line is printed before cargo starts: cargo is then never started early.
    let early = (early && shell.verbosity() != Verbosity::Verbose).then(|| project.inputs());
    let found: Found = Arc::default();
    let taker = {
        let found = Arc::clone(&found);
        let runner = project.runner.clone();
        let mut line = Vec::new();
        Box::new(move |bytes: &[u8]| {
            for &b in bytes {
                if b != b'\n' {
                    line.push(b);
                    continue;
                }
                if let Some((exe, fresh)) = executable_of(&std::mem::take(&mut line), &runner) {
                    let facts = facts_of(&exe);
                    *found.lock().expect("the reader does not panic") = Some((exe, fresh, facts));
                }
            }
            ControlFlow::Continue(())
        })
    };
    // cargo's own diagnostics and progress go straight to the terminal, as with `cargo build`.
    let opts = ExecOptions { stdout_to: Some(taker), stderr: Sink::Inherit, cancel, early, ..Default::default() };
    Ok(Building {
        running: cmd.start(shell, opts)?,
        found,
        runner: project.runner.clone(),
        triple: project.runner_target.clone().unwrap_or_else(|| HOST_TRIPLE.to_string()),
        shown: cmd.to_string(),
    })
}

impl Building {
    /// Waits for cargo and names the executable it built.
    pub fn finish(self) -> Result<Runner> {
        let ended = self.running.wait()?;
        let Some(status) = ended.status else {
            if crate::exit::interrupted() {
                return Err(crate::exit::interrupted_error());
            }
            bail!("the build of the host runner `{}` was cancelled", self.runner);
        };
        if !status.success() {
            bail!("could not build the host runner `{}`: cargo {}", self.runner, crate::cmd::describe_status(status));
        }
        let found = self.found.lock().expect("the reader does not panic").take();
        let Some((executable, fresh, facts)) = found else {
            bail!("cargo built no executable for the runner `{}`: `{}` reported none", self.runner, self.shown);
        };
        Ok(Runner { executable, triple: self.triple, fresh, facts })
    }
}

/// The runner's executable, and whether it was fresh, from one of cargo's JSON messages.
fn executable_of(line: &[u8], runner: &str) -> Option<(PathBuf, bool)> {
    // Most lines are other crates' artifacts: skip them without parsing.
    let text = std::str::from_utf8(line).ok()?;
    if !text.contains("\"compiler-artifact\"") || !text.contains(&format!("\"{runner}\"")) {
        return None;
    }
    match serde_json::from_slice::<cargo_metadata::Message>(line).ok()? {
        cargo_metadata::Message::CompilerArtifact(a) if a.target.name == runner && a.target.is_bin() => {
            Some((a.executable?.into_std_path_buf(), a.fresh))
        }
        _ => None,
    }
}

//! The host runner: the project's Rust binary, built by cargo for the remote's target triple.
//! cargo's `--message-format=json` names the executable, so no path is guessed.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::compile::sources::Profile;
use crate::project::{cargo_program, Project};
use crate::shell::{Shell, Verbosity};

/// The triple cargo-gpu itself was built for, the default for runners.
pub const HOST_TRIPLE: &str = env!("CARGO_GPU_HOST_TRIPLE");

#[derive(Debug, Clone)]
pub struct Runner {
    pub executable: PathBuf,
    pub triple: String,
    pub fresh: bool,
}

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

pub fn build(shell: &Shell, project: &Project, profile: Profile) -> Result<Runner> {
    let cmd = command(project, profile, shell.verbosity());
    let mut child = cmd.spawn(Some(shell), |c| {
        c.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
    })?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut found = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("failed to read cargo's output")?;
        let Ok(msg) = serde_json::from_str::<cargo_metadata::Message>(&line) else { continue };
        if let cargo_metadata::Message::CompilerArtifact(a) = msg {
            if a.target.name == project.runner && a.target.is_bin() {
                if let Some(exe) = a.executable {
                    found = Some((exe.into_std_path_buf(), a.fresh));
                }
            }
        }
    }
    let status = child.wait().context("failed to wait for cargo")?;
    if !status.success() {
        bail!("could not build the host runner `{}`: cargo {}", project.runner, crate::cmd::describe_status(status));
    }
    let Some((executable, fresh)) = found else {
        bail!("cargo built no executable for the runner `{}`: `{cmd}` reported none", project.runner);
    };
    Ok(Runner { executable, triple: project.runner_target.clone().unwrap_or_else(|| HOST_TRIPLE.to_string()), fresh })
}

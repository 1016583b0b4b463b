//! Wheels from PyPI, installed without root into a folder of their own under cargo-gpu's data
//! folder: the CUDA toolchains (`cargo gpu toolchain install`) and the runner's cross-linker
//! (cargo-zigbuild and zig). One venv per install, made with `uv` when it is on PATH, else with
//! `python3 -m venv` and pip; pip's download lines become one progress line. The venv is built
//! beside its final place and renamed into it, so an interrupted install leaves no half folder
//! that looks whole.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, ExecOptions, Sink};
use crate::shell::Shell;

#[cfg(test)]
thread_local! {
    static DATA_DIR: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the data folder at `dir` on this thread (tests, without touching the process's
/// environment that other tests read).
#[cfg(test)]
pub(crate) fn with_data_dir<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    DATA_DIR.with(|d| *d.borrow_mut() = Some(dir.to_path_buf()));
    let out = f();
    DATA_DIR.with(|d| *d.borrow_mut() = None);
    out
}

/// `$CARGO_GPU_HOME`, else the user's data folder (`~/.local/share/cargo-gpu`).
pub fn data_dir() -> Result<PathBuf> {
    #[cfg(test)]
    if let Some(d) = DATA_DIR.with(|d| d.borrow().clone()) {
        return Ok(d);
    }
    if let Some(d) = std::env::var_os("CARGO_GPU_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    use etcetera::BaseStrategy;
    let base = etcetera::choose_base_strategy()
        .map_err(|e| anyhow::anyhow!("cannot tell where cargo-gpu keeps its data ({e}): set CARGO_GPU_HOME"))?;
    Ok(base.data_dir().join("cargo-gpu"))
}

/// `site-packages` of a venv (`lib/python3.N/site-packages`), the first in name order.
pub fn site_packages(venv: &Path) -> Option<PathBuf> {
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    pythons.sort();
    pythons.into_iter().next()
}

/// The partial folders an earlier, interrupted install of `dir` left (`.NAME.partial-PID`).
fn partial_name(dir: &Path) -> String {
    format!(".{}.partial-", dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
}

fn remove_stale_partials(dir: &Path) {
    let (Some(parent), prefix) = (dir.parent(), partial_name(dir)) else { return };
    for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Installs `packages` (pip requirement strings, pinned) into a new venv at `dir`, which must
/// not exist yet. `what` names the install in messages (`CUDA 12.9`); `finish` checks and
/// completes the new venv before it moves into place.
pub fn install(
    shell: &Shell,
    dir: &Path,
    packages: &[&str],
    what: &str,
    finish: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if dir.exists() {
        bail!("{} already exists: remove it first", dir.display());
    }
    let parent = dir.parent().context("an install folder has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
    remove_stale_partials(dir);
    let partial = parent.join(format!("{}{}", partial_name(dir), std::process::id()));
    let result = make_venv(shell, &partial, packages, what).and_then(|()| finish(&partial));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, dir).with_context(|| format!("failed to move the new install into {}", dir.display()))
}

fn make_venv(shell: &Shell, venv: &Path, packages: &[&str], what: &str) -> Result<()> {
    let uv = which::which("uv").ok();
    let create = match &uv {
        Some(uv) => Cmd::new(uv, format!("create a venv for {what}")).args(["venv", "--quiet"]).arg(venv),
        None => {
            let python = which::which("python3").map_err(|_| {
                anyhow::anyhow!("installing {what} needs python3 (with its venv module) or uv: install one of them")
            })?;
            Cmd::new(python, format!("create a venv for {what}")).args(["-m", "venv"]).arg(venv)
        }
    };
    if let Err(e) = create.output(Some(shell)) {
        bail!(
            "could not create a Python venv for {what} at {}: {e:#}\nInstall python3's venv module (Debian and Ubuntu: `apt install python3-venv`) or uv",
            venv.display()
        );
    }
    let python = venv.join("bin/python");
    let pip = match &uv {
        Some(uv) => Cmd::new(uv, format!("install {what}")).args(["pip", "install", "--python"]).arg(&python),
        None => Cmd::new(&python, format!("install {what}")).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ]),
    };
    let pip = pip.args(packages.iter().copied());
    shell.status("Installing", format!("{what}: {}", packages.join(" ")));
    let last = Arc::new(Mutex::new(String::new()));
    let progress = progress_taker(shell.progress_allowed(), Arc::clone(&last));
    let opts = ExecOptions { stdout_to: Some(progress), stderr: Sink::Capture, ..Default::default() };
    let ended = pip.exec(shell, opts)?;
    if shell.progress_allowed() {
        eprint!("\r\x1b[2K");
    }
    match ended.status {
        None => Err(crate::exit::interrupted_error()),
        Some(s) if s.success() => Ok(()),
        Some(s) => {
            let err = String::from_utf8_lossy(&ended.stderr);
            bail!(
                "could not install {what} ({}): {}\n{}\nCheck that this machine reaches PyPI (pip's index), or set PIP_INDEX_URL to a mirror",
                crate::cmd::describe_status(s),
                last.lock().map(|l| l.clone()).unwrap_or_default(),
                crate::cmd::tail_lines(err.trim_end(), 15)
            )
        }
    }
}

/// Reads pip's output as it comes: on a terminal its `Collecting` and `Downloading` lines become
/// one line that is rewritten; the last such line is kept for an error.
fn progress_taker(draw: bool, last: Arc<Mutex<String>>) -> crate::cmd::StdoutTaker {
    crate::cmd::line_taker(move |line| {
        let text = crate::escape::line(String::from_utf8_lossy(line).trim());
        if text.starts_with("Collecting") || text.starts_with("Downloading") || text.starts_with("Installing") {
            if draw && std::io::stderr().is_terminal() {
                let shown: String = text.chars().take(100).collect();
                eprint!("\r\x1b[2K{:>12} {shown}", "Downloading");
            }
            if let Ok(mut l) = last.lock() {
                *l = text;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_packages_is_found_under_any_python3() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(site_packages(tmp.path()), None);
        std::fs::create_dir_all(tmp.path().join("lib/python3.12/site-packages")).unwrap();
        std::fs::create_dir_all(tmp.path().join("lib/python3.11/site-packages")).unwrap();
        assert_eq!(site_packages(tmp.path()), Some(tmp.path().join("lib/python3.11/site-packages")));
    }

    #[test]
    fn a_failed_install_leaves_nothing_and_a_stale_partial_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("toolchains/cuda-9.9");
        std::fs::create_dir_all(tmp.path().join("toolchains/.cuda-9.9.partial-1/lib")).unwrap();
        std::fs::create_dir_all(tmp.path().join("toolchains/.cuda-9.90.partial-1")).unwrap();
        remove_stale_partials(&dir);
        let left: Vec<String> = std::fs::read_dir(tmp.path().join("toolchains"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [".cuda-9.90.partial-1"], "only the partials of this very folder go");
        std::fs::create_dir_all(&dir).unwrap();
        let shell = Shell::new(crate::shell::Verbosity::Quiet, crate::shell::MessageFormat::Human);
        let err = install(&shell, &dir, &["x==1"], "CUDA 9.9", |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }
}

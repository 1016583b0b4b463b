//! Version control for `cargo gpu new`, the way `cargo new` does it: a `.gitignore` that keeps
//! `target/` out, and `git init` unless the new folder is already inside a git work tree (and not
//! in an ignored part of it). Git runs through [`Cmd`]; where git is not installed the project gets
//! its `.gitignore` alone.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::cmd::Cmd;
use crate::shell::Shell;

/// What `.gitignore` of a new project holds: cargo's and cargo gpu's output both go to `target/`.
pub const GITIGNORE: &str = "/target\n";

/// `--vcs`: the version control a new project gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Vcs {
    /// A git repository and a .gitignore, even inside another repository
    Git,
    /// No repository and no .gitignore
    None,
}

/// What `new` does about version control, settled before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Write `.gitignore` and run `git init`.
    Init,
    /// Write `.gitignore` only: the folder is in a repository already, or git is not installed.
    IgnoreOnly,
    Nothing,
}

impl Plan {
    pub fn writes_gitignore(self) -> bool {
        self != Plan::Nothing
    }
}

/// The plan for a new project in `dir` (not created yet): what `--vcs` says, else a repository of
/// its own unless `dir` is inside one.
pub fn plan(shell: &Shell, requested: Option<Vcs>, dir: &Path) -> Result<Plan> {
    let have_git = which::which("git").is_ok();
    match requested {
        Some(Vcs::None) => Ok(Plan::Nothing),
        Some(Vcs::Git) if !have_git => {
            bail!("failed to find git, which --vcs git asks for: install git, or use --vcs none")
        }
        Some(Vcs::Git) => Ok(Plan::Init),
        None if !have_git => {
            // As `cargo new` without git: the project is still complete, so this is no warning.
            shell.verbose("Skipping", "git init: git is not installed");
            Ok(Plan::IgnoreOnly)
        }
        None if in_work_tree(shell, dir) => Ok(Plan::IgnoreOnly),
        None => Ok(Plan::Init),
    }
}

/// The nearest folder above `dir` that exists, and the rest of the way down to `dir`.
fn existing_base(dir: &Path) -> (PathBuf, PathBuf) {
    for base in dir.ancestors().skip(1) {
        let base_or_cwd = if base.as_os_str().is_empty() { Path::new(".") } else { base };
        if base_or_cwd.is_dir() {
            let rest = dir.strip_prefix(base).unwrap_or(dir).to_path_buf();
            return (base_or_cwd.to_path_buf(), rest);
        }
    }
    (PathBuf::from("."), dir.to_path_buf())
}

/// `git` without the variables that would point it at another repository than the folder's own.
fn git(purpose: String) -> Cmd {
    Cmd::new("git", purpose).env_remove("GIT_DIR").env_remove("GIT_WORK_TREE")
}

/// Prints `true` when `base` is inside a git work tree.
pub fn work_tree_probe(base: &Path) -> Cmd {
    git(format!("check whether {} is in a git work tree", base.display()))
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(base)
}

/// Exits 0 when `rest` (below `base`) is ignored by the repository `base` is in.
pub fn ignored_probe(base: &Path, rest: &Path) -> Cmd {
    git(format!("check whether {} is ignored by git", rest.display()))
        .args(["check-ignore", "--quiet", "--"])
        .arg(rest)
        .current_dir(base)
}

pub fn init_cmd(dir: &Path) -> Cmd {
    git(format!("make {} a git repository", dir.display())).args(["init", "--quiet", "--"]).arg(dir)
}

/// Whether `dir` would be part of an existing repository. Like cargo, a folder that repository
/// ignores (a scratch folder, `target/`) does not count: its project gets a repository of its own.
fn in_work_tree(shell: &Shell, dir: &Path) -> bool {
    let (base, rest) = existing_base(dir);
    let inside = match work_tree_probe(&base).output_unchecked(Some(shell)) {
        Ok(out) => out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "true",
        Err(_) => false,
    };
    inside
        && !ignored_probe(&base, &rest).output_unchecked(Some(shell)).map(|out| out.status.success()).unwrap_or(false)
}

/// Makes the written project `dir` a repository when the plan says so.
pub fn apply(shell: &Shell, plan: Plan, dir: &Path) -> Result<()> {
    if plan == Plan::Init {
        // Captured: git's hints about branch names are not for this moment.
        init_cmd(dir).output(Some(shell))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_git_in_the_right_folder() {
        let dir = Path::new("my kernels");
        assert_eq!(init_cmd(dir).to_string(), "git init --quiet -- 'my kernels'");
        assert_eq!(work_tree_probe(Path::new("/w")).to_string(), "cd /w && git rev-parse --is-inside-work-tree");
        assert_eq!(
            ignored_probe(Path::new("/w"), Path::new("scratch/p")).to_string(),
            "cd /w && git check-ignore --quiet -- scratch/p"
        );
        // GIT_DIR set by a hook or a shell would make `git init` re-initialize that repository.
        for cmd in [init_cmd(dir), work_tree_probe(dir)] {
            let removed = cmd.removed_envs();
            assert!(
                removed.contains(&"GIT_DIR".as_ref()) && removed.contains(&"GIT_WORK_TREE".as_ref()),
                "{removed:?}"
            );
        }
    }

    #[test]
    fn the_base_is_the_nearest_existing_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/c");
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        assert_eq!(existing_base(&dir), (tmp.path().join("a"), PathBuf::from("b/c")));
        assert_eq!(existing_base(Path::new("new-one")), (PathBuf::from("."), PathBuf::from("new-one")));
    }

    #[test]
    fn the_gitignore_keeps_target_out() {
        assert!(GITIGNORE.lines().any(|l| l == "/target"));
        assert!(Plan::Init.writes_gitignore() && Plan::IgnoreOnly.writes_gitignore());
        assert!(!Plan::Nothing.writes_gitignore());
    }
}

//! The package folder `target/gpu/<profile>/<name>/`: `bin/<runner>` (`bin/<triple>/<runner>`
//! for each of several runners), `kernels/*.cubin` and `manifest.toml`. Assembling it twice from
//! the same inputs rewrites nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::digest::sha256_file;
use crate::package::manifest::{FileEntry, Manifest, PackageInfo, RunnerEntry, MANIFEST_FILE};
use crate::safe_fs::write_if_changed;
use crate::shell::Shell;

/// A file's hash, remembered while its size and modification time stay the same, so an unchanged
/// runner (tens of megabytes in a debug build) is not read again on every build.
pub fn cached_hash(path: &Path) -> Result<String> {
    crate::cache::memo("sha256", &path.display().to_string(), &[path.to_path_buf()], || sha256_file(path))
}

/// Whether `dir` may be in a git work tree: a `.git` in it or a folder above, or `GIT_DIR` set.
/// Outside one, `git status` is not run at all (it would only fail, a few milliseconds later).
pub fn may_be_in_git(dir: &Path) -> bool {
    std::env::var_os("GIT_DIR").is_some() || dir.ancestors().any(|d| d.join(".git").exists())
}

/// Git revision and dirty flag of the folder, in one `git status`; `None` outside a repository.
pub fn git_state(shell: &Shell, dir: &Path) -> Option<(String, bool)> {
    if !may_be_in_git(dir) {
        return None;
    }
    let out = Cmd::new("git", "read the git revision")
        .current_dir(dir)
        .args(["status", "--porcelain=v2", "--branch", "--untracked-files=no"])
        .output_unchecked(Some(shell))
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_git_status(&String::from_utf8_lossy(&out.stdout))
}

pub fn parse_git_status(text: &str) -> Option<(String, bool)> {
    let mut oid = None;
    let mut dirty = false;
    for line in text.lines() {
        if let Some(o) = line.strip_prefix("# branch.oid ") {
            oid = Some(o.trim().to_string());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            dirty = true;
        }
    }
    oid.filter(|o| o != "(initial)").map(|o| (o, dirty))
}

/// Copies `src` to `dst` unless `dst` already has the same bytes; returns whether it wrote.
/// With `link`, the file is hard-linked when it can be: no copy, and an unchanged file is known
/// by its inode without hashing it again. Cubins come from the build's store (which keeps every
/// target's cubin for a later build that switches back), the runner from cargo's target folder
/// (cargo replaces its files rather than writing into them, so the package keeps what it had).
fn install_file(src: &Path, dst: &Path, sha256: &str, executable: bool, link: bool) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let same_file = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if dst.is_file() && (same_file(src, dst) || cached_hash(dst).ok().as_deref() == Some(sha256)) {
        return Ok(false);
    }
    let tmp = dst.with_extension("tmp-install");
    let _ = std::fs::remove_file(&tmp);
    let linked = link && std::fs::hard_link(src, &tmp).is_ok();
    if !linked {
        std::fs::copy(src, &tmp).with_context(|| format!("failed to copy {} to {}", src.display(), tmp.display()))?;
    }
    if executable && !linked {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&tmp, dst).with_context(|| format!("failed to move {} into place", dst.display()))?;
    Ok(true)
}

/// Deletes files in `dir` not named in `keep`, so a removed kernel's cubin does not travel.
fn prune(dir: &Path, keep: &BTreeSet<String>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && e.file_type()?.is_file() {
            std::fs::remove_file(e.path()).with_context(|| format!("failed to remove stale {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Deletes what `bin/` holds besides the runners at `keep` (paths relative to `bin/`, one folder
/// deep at most): a runner of a triple no longer built does not travel.
fn prune_runners(bin_dir: &Path, keep: &BTreeSet<String>) -> Result<()> {
    prune(bin_dir, keep)?;
    let Ok(entries) = std::fs::read_dir(bin_dir) else { return Ok(()) };
    for e in entries {
        let e = e?;
        if !e.file_type()?.is_dir() {
            continue;
        }
        let prefix = format!("{}/", e.file_name().to_string_lossy());
        let inside: BTreeSet<String> =
            keep.iter().filter_map(|k| k.strip_prefix(&prefix)).map(str::to_string).collect();
        if inside.is_empty() {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("failed to remove stale {}", e.path().display()))?;
        } else {
            prune(&e.path(), &inside)?;
        }
    }
    Ok(())
}

/// A compiled cubin to put in the package.
#[derive(Debug, Clone)]
pub struct Cubin {
    /// Where the build keeps it.
    pub path: PathBuf,
    /// `<kernel>.<target>.cubin`
    pub name: String,
    pub kernel: String,
    pub target: crate::arch::SmArch,
    pub size: u64,
    pub sha256: String,
}

/// A built runner to put in the package: its executable and its manifest entry, whose path says
/// where it goes (see [`runner_path`]).
pub struct RunnerFile<'a> {
    pub exe: &'a Path,
    pub entry: RunnerEntry,
}

/// Where a runner goes in the package: `bin/<name>` when it is the only one, else
/// `bin/<triple>/<name>`.
pub fn runner_path(name: &str, triple: &str, several: bool) -> String {
    if several {
        format!("bin/{triple}/{name}")
    } else {
        format!("bin/{name}")
    }
}

/// Inputs for assembling a package.
pub struct PackageInputs<'a> {
    pub dir: &'a Path,
    pub info: PackageInfo,
    pub runners: Vec<RunnerFile<'a>>,
    pub cubins: &'a [Cubin],
}

pub struct Assembled {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    /// Where each runner is, in the order given.
    pub runner_paths: Vec<PathBuf>,
    pub wrote_manifest: bool,
}

pub fn assemble(inputs: PackageInputs<'_>) -> Result<Assembled> {
    let bin_dir = inputs.dir.join("bin");
    std::fs::create_dir_all(&bin_dir).with_context(|| format!("failed to create {}", bin_dir.display()))?;

    let mut files = Vec::new();
    let mut runner_paths = Vec::new();
    let mut keep = BTreeSet::new();
    for r in &inputs.runners {
        let sha256 = cached_hash(r.exe)?;
        let size = std::fs::metadata(r.exe)?.len();
        let path = inputs.dir.join(&r.entry.path);
        let parent = path.parent().expect("a runner path has a folder");
        std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
        install_file(r.exe, &path, &sha256, true, true)?;
        keep.insert(r.entry.path.strip_prefix("bin/").unwrap_or(&r.entry.path).to_string());
        files.push(FileEntry {
            path: r.entry.path.clone(),
            size,
            sha256,
            kernel: None,
            target: None,
            executable: true,
        });
        runner_paths.push(path);
    }
    prune_runners(&bin_dir, &keep)?;
    let kernels_dir = inputs.dir.join("kernels");
    std::fs::create_dir_all(&kernels_dir).with_context(|| format!("failed to create {}", kernels_dir.display()))?;
    for b in inputs.cubins {
        install_file(&b.path, &kernels_dir.join(&b.name), &b.sha256, false, true)?;
    }
    prune(&kernels_dir, &inputs.cubins.iter().map(|b| b.name.clone()).collect())?;

    for b in inputs.cubins {
        files.push(FileEntry {
            path: format!("kernels/{}", b.name),
            size: b.size,
            sha256: b.sha256.clone(),
            kernel: Some(b.kernel.clone()),
            target: Some(b.target),
            executable: false,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let runners = inputs.runners.into_iter().map(|r| r.entry).collect();
    let manifest = Manifest { package: inputs.info, runners, files };
    let manifest_path = inputs.dir.join(MANIFEST_FILE);
    let wrote_manifest = write_if_changed(&manifest_path, manifest.to_toml().as_bytes())?;
    Ok(Assembled { manifest, manifest_path, runner_paths, wrote_manifest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_status_is_read() {
        let clean = "# branch.oid 0123abc\n# branch.head main\n";
        assert_eq!(parse_git_status(clean), Some(("0123abc".into(), false)));
        let dirty = "# branch.oid 0123abc\n# branch.head main\n1 .M N... 100644 100644 100644 a b src/x.rs\n";
        assert_eq!(parse_git_status(dirty), Some(("0123abc".into(), true)));
        assert_eq!(parse_git_status("# branch.oid (initial)\n"), None);
    }

    #[test]
    fn git_is_asked_only_inside_a_work_tree() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        if std::env::var_os("GIT_DIR").is_none() && !dir.path().ancestors().any(|d| d.join(".git").exists()) {
            assert!(!may_be_in_git(&inner));
        }
        std::fs::create_dir(dir.path().join("a/.git")).unwrap();
        assert!(may_be_in_git(&inner));
    }

    #[test]
    fn unchanged_content_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        assert!(write_if_changed(&p, b"a").unwrap());
        assert!(!write_if_changed(&p, b"a").unwrap());
        assert!(write_if_changed(&p, b"b").unwrap());
    }

    #[test]
    fn runners_of_triples_no_longer_built_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        for f in ["r", "x86_64-unknown-linux-gnu/r", "aarch64-unknown-linux-gnu/r", "aarch64-unknown-linux-gnu/old"] {
            std::fs::create_dir_all(bin.join(f).parent().unwrap()).unwrap();
            std::fs::write(bin.join(f), "x").unwrap();
        }
        let keep = BTreeSet::from(["aarch64-unknown-linux-gnu/r".to_string()]);
        prune_runners(&bin, &keep).unwrap();
        let left: Vec<_> = walkdir::WalkDir::new(&bin)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap().path().strip_prefix(&bin).unwrap().display().to_string())
            .collect();
        assert_eq!(left, ["", "aarch64-unknown-linux-gnu", "aarch64-unknown-linux-gnu/r"]);
        assert_eq!(runner_path("r", "aarch64-unknown-linux-gnu", true), "bin/aarch64-unknown-linux-gnu/r");
        assert_eq!(runner_path("r", "aarch64-unknown-linux-gnu", false), "bin/r");
    }
}

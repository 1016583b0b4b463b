//! The package of `cargo gpu exec`, `test`, `bench` and `run`: the project's kernels (compiled
//! when stale), executables cargo built here, and the files the tests read at run time
//! (`test-files`), as a manifest and the local files behind it. Nothing is written into the
//! package folder: many `exec` at once (nextest runs one process per test) share only the
//! build's kernel store and the remote's blob store.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::compile::pipeline::{compile_kernels, glibc_need};
use crate::compile::runner::HOST_TRIPLE;
use crate::compile::sources::Profile;
use crate::package::assemble::cached_hash;
use crate::package::manifest::{glibc_text, FileEntry, Manifest, PackageInfo, RunnerEntry};
use crate::project::Project;
use crate::shell::Shell;

/// A package to run, held in memory: its manifest and, in the manifest's file order, each file's
/// sha256 and local path.
pub struct ExecPackage {
    pub manifest: Manifest,
    pub files: LocalFiles,
}

/// Each file's (sha256, local path), in the manifest's order.
type LocalFiles = Vec<(String, PathBuf)>;

/// Where a file goes in the package, and where it is here.
struct Entry {
    rel: String,
    local: PathBuf,
    executable: bool,
    kernel: Option<(String, crate::arch::SmArch)>,
}

/// `runner` and `extra` (the test binaries a `cargo gpu test` runner starts), each at
/// `bin/<file name>`.
fn executables(runner: &Path, extra: &[PathBuf]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for exe in std::iter::once(runner).chain(extra.iter().map(PathBuf::as_path)) {
        let name = exe.file_name().with_context(|| format!("{} names no file", exe.display()))?;
        entries.push(Entry {
            rel: format!("bin/{}", name.to_string_lossy()),
            local: exe.to_path_buf(),
            executable: true,
            kernel: None,
        });
    }
    Ok(entries)
}

/// The manifest's files, sorted by path, and each one's (sha256, local path) in that order.
fn hashed(mut entries: Vec<Entry>) -> Result<(Vec<FileEntry>, LocalFiles)> {
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    if let Some(w) = entries.windows(2).find(|w| w[0].rel == w[1].rel) {
        bail!("two files would be {} in the package: rename one of them", w[0].rel);
    }
    let mut files = Vec::new();
    let mut local = Vec::new();
    for e in entries {
        let sha256 = cached_hash(&e.local)?;
        let size = std::fs::metadata(&e.local).with_context(|| format!("failed to read {}", e.local.display()))?.len();
        files.push(FileEntry {
            path: e.rel,
            size,
            sha256: sha256.clone(),
            kernel: e.kernel.as_ref().map(|k| k.0.clone()),
            target: e.kernel.map(|k| k.1),
            executable: e.executable,
        });
        local.push((sha256, e.local));
    }
    Ok((files, local))
}

/// The runner's manifest entry: this machine's triple (or the project's first), its glibc need
/// read from its ELF headers (remembered while it is unchanged), the floor it was built for.
fn runner_entry(runner: &Path, triple: Option<&str>, floor: (u32, u32)) -> Result<RunnerEntry> {
    // A script (the runner of `cargo gpu test`) links nothing.
    let need = glibc_need(runner).unwrap_or(None);
    let name = runner.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(RunnerEntry {
        path: format!("bin/{name}"),
        triple: triple.unwrap_or(HOST_TRIPLE).to_string(),
        glibc_floor: glibc_text(floor),
        glibc: need.map(glibc_text),
    })
}

/// The package of `runner` (and `extra`) with the project's kernels for `profile`, compiled when
/// stale, and its test files.
pub fn package(
    shell: &Shell,
    project: &Project,
    profile: Profile,
    runner: &Path,
    extra: &[PathBuf],
) -> Result<ExecPackage> {
    let (built, nvcc) = compile_kernels(shell, project, profile, None, None, false)?;
    let mut entries = executables(runner, extra)?;
    for b in &built {
        entries.push(Entry {
            rel: format!("kernels/{}", b.job.cubin_name()),
            local: b.path.clone(),
            executable: false,
            kernel: Some((b.job.kernel.stem.clone(), b.job.target)),
        });
    }
    for rel in test_files(project)? {
        entries.push(Entry {
            local: project.root.join(&rel),
            rel: format!("files/{rel}"),
            executable: false,
            kernel: None,
        });
    }
    // The glibc need of the binaries a script runner starts counts as the runner's.
    let mut runner = runner_entry(runner, project.runner_targets.first().map(String::as_str), project.runner_glibc)?;
    for exe in extra {
        let other = runner_entry(exe, None, project.runner_glibc)?;
        let need = |r: &RunnerEntry| r.glibc.as_deref().and_then(crate::package::manifest::parse_version);
        if need(&other) > need(&runner) {
            runner.glibc = other.glibc;
        }
    }
    let (files, local) = hashed(entries)?;
    let (dmaj, dmin) = nvcc.min_driver_cuda(&project.targets);
    let manifest = Manifest {
        package: PackageInfo {
            name: project.name.clone(),
            version: project.version.clone(),
            profile: profile.name().to_string(),
            git_revision: None,
            git_dirty: false,
            targets: project.targets.clone(),
            nvcc_version: nvcc.version.to_string(),
            min_driver_cuda: format!("{dmaj}.{dmin}"),
        },
        runners: vec![runner],
        files,
    };
    Ok(ExecPackage { manifest, files: local })
}

/// The package of an executable with the kernels of a package built before (`exec --package`):
/// its cubins and what it says of them, the executable as its runner.
pub fn from_package(dir: &Path, runner: &Path, extra: &[PathBuf]) -> Result<ExecPackage> {
    let built = Manifest::read(dir)?;
    built.verify(dir)?;
    let mut entries = executables(runner, extra)?;
    for f in built.cubins() {
        entries.push(Entry {
            rel: f.path.clone(),
            local: dir.join(&f.path),
            executable: false,
            kernel: f.kernel.clone().zip(f.target),
        });
    }
    let (files, local) = hashed(entries)?;
    let floor = crate::project::DEFAULT_RUNNER_GLIBC;
    let manifest = Manifest { package: built.package, runners: vec![runner_entry(runner, None, floor)?], files };
    Ok(ExecPackage { manifest, files: local })
}

/// The project's `test-files` (globs relative to Cargo.toml), sorted; `target/` and `.git/` are
/// never searched.
pub fn test_files(project: &Project) -> Result<Vec<String>> {
    if project.test_files.is_empty() {
        return Ok(Vec::new());
    }
    let mut set = globset::GlobSetBuilder::new();
    for p in &project.test_files {
        set.add(globset::Glob::new(p).with_context(|| {
            format!("`test-files` pattern `{p}` in {} is not a glob", project.manifest_path.display())
        })?);
    }
    let set = set.build()?;
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(&project.root).into_iter().filter_entry(|e| {
        e.depth() == 0 || !(e.file_type().is_dir() && (e.file_name() == "target" || e.file_name() == ".git"))
    });
    for e in walk {
        let e = e?;
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(&project.root).expect("walked below the root");
        let rel = rel.to_string_lossy().replace('\\', "/");
        if set.is_match(&rel) {
            out.push(rel);
        }
    }
    out.sort();
    Ok(out)
}

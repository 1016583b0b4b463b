//! `cargo gpu build` as a library call: resolve the project, check the compiler against the
//! targets, compile the kernels, build the runner, assemble the package. `remote-run` calls the
//! same function when the package is stale.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::arch::SmArch;
use crate::compile::elf;
use crate::compile::nvcc::CompileSettings;
use crate::compile::runner::{self, Plan, Runner, Way};
use crate::compile::schedule;
use crate::compile::sources::{self, Built, Job, Profile};
use crate::compile::zigbuild::{self, Zigbuild};
use crate::config::SeenMachine;
use crate::inspect::expect;
use crate::inspect::report::Tools;
use crate::package::assemble::{self, Cubin, PackageInputs, RunnerFile};
use crate::package::manifest::{glibc_text, Manifest, PackageInfo, RunnerEntry};
use crate::project::Project;
use crate::shell::Shell;
use crate::toolchain::Nvcc;

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub manifest_path: Option<PathBuf>,
    pub targets: Vec<String>,
    pub release: bool,
    pub jobs: Option<usize>,
    /// `--runner-target`: the triples to build the runner for, instead of the project's.
    pub runner_targets: Vec<String>,
    /// The remote the package is built for, as far as its machine is known (`remote-run`).
    pub remote: Option<SeenMachine>,
    /// The runner's cargo build may have been started before the command line was read (see
    /// [`crate::cmd::early`]): only `cargo gpu build` itself, which prints nothing before cargo
    /// starts, and starts nothing else first.
    pub early: bool,
}

/// A runner built for one plan, with the glibc it needs.
struct BuiltRunner {
    runner: Runner,
    plan: Plan,
    need: Option<(u32, u32)>,
}

#[derive(Debug)]
pub struct BuiltPackage {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub compiled: usize,
    pub fresh: usize,
}

/// Refuses, before any compile, the targets this nvcc cannot build.
pub fn check_targets(nvcc: &Nvcc, targets: &[SmArch]) -> Result<()> {
    let problems: Vec<String> = targets.iter().filter_map(|t| nvcc.cannot_build(*t)).collect();
    match problems.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one} (nvcc {} at {})", nvcc.version, nvcc.path.display()),
        many => bail!(
            "nvcc {} at {} cannot build every target:\n  {}",
            nvcc.version,
            nvcc.path.display(),
            many.join("\n  ")
        ),
    }
}

/// Compiles the stale kernels of `project` (those of source stem `only`, when given) for every
/// target, and returns every cubin, fresh or new, with its report. `announce`: a compile shows its
/// findings at once (the build does; `inspect` shows them itself).
pub fn compile_kernels(
    shell: &Shell,
    project: &Project,
    profile: Profile,
    jobs: Option<usize>,
    only: Option<&str>,
    announce: bool,
) -> Result<(Vec<Built>, &'static Nvcc)> {
    let nvcc = Nvcc::get(shell, project.cuda.as_deref())?;
    check_targets(nvcc, &project.targets)?;
    // Reading the CPU quota from the cgroup files takes a while: off the runner's path.
    let parallel = jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let sources = sources::discover(&project.root, &project.kernels_dir)?;
    let jobs: Vec<Job> = sources
        .iter()
        .filter(|k| only.map_or(true, |o| k.stem == o))
        .flat_map(|k| project.targets.iter().map(move |t| Job { kernel: k.clone(), target: *t }))
        .collect();
    let tools = Tools::find();
    let state_dir = project.build_state_dir(profile.name());
    let settings = CompileSettings {
        nvcc,
        profile,
        root: &project.root,
        kernels_dir: &project.kernels_dir,
        include_dirs: &project.include_dirs,
        extra_flags: &project.nvcc_flags,
        state_dir: &state_dir,
        tools: tools.as_ref().ok(),
        expect: &project.expect,
        announce,
    };
    let built = schedule::build_all(shell, &settings, &jobs, parallel)?;
    if let Err(e) = &tools {
        if !project.expect.is_empty() {
            bail!("cannot check `[package.metadata.gpu.expect]`: {e:#}");
        }
        if built.iter().any(|b| !b.fresh) {
            shell.warn(format!(
                "the cubins were built but not checked for spills, ptxas advisories and trap-only stubs: {e:#}"
            ));
        }
    }
    Ok((built, nvcc))
}

/// Fails the build when a cubin lacks an instruction `[package.metadata.gpu.expect]` names.
/// `built` holds every kernel source for every target, in the order the sources were found.
fn check_expectations(project: &Project, built: &[Built]) -> Result<()> {
    if project.expect.is_empty() {
        return Ok(());
    }
    let mut kernels: Vec<&str> = Vec::new();
    for b in built {
        if !kernels.contains(&b.job.kernel.stem.as_str()) {
            kernels.push(&b.job.kernel.stem);
        }
    }
    let reports: Vec<_> =
        built.iter().filter_map(|b| Some((b.job.kernel.stem.as_str(), b.job.target, b.report.as_ref()?))).collect();
    expect::check(&project.expect, &kernels, &reports, &project.manifest_path)
}

/// cargo-zigbuild, ready to build for `triple`: installed, with Rust's standard library for it.
fn zig_for(shell: &Shell, project: &Project, triple: &str) -> Result<Zigbuild> {
    let zig = zigbuild::get(shell)?;
    if triple != runner::HOST_TRIPLE {
        zigbuild::ensure_target_std(shell, &project.root, triple)?;
    }
    Ok(zig)
}

/// The glibc version the runner at `exe` needs. A debug runner is tens of megabytes: its ELF
/// headers are read only when it changed.
pub fn glibc_need(exe: &Path) -> Result<Option<(u32, u32)>> {
    crate::cache::memo("glibc", &exe.display().to_string(), &[exe.to_path_buf()], || elf::required_glibc_of(exe))
}

/// Completes the build of one runner started `way`: a plain build that needs a newer glibc than
/// its floor is built again with cargo-zigbuild, and that decision is kept in the build state so
/// the next build starts there. A zigbuild that still needs a newer glibc is an error.
fn complete_runner(
    shell: &Shell,
    project: &Project,
    profile: Profile,
    plan: &Plan,
    way: Way,
    built: Runner,
) -> Result<BuiltRunner> {
    let need = glibc_need(&built.executable)?;
    if way == Way::Plain && runner::needs_zig(need, plan.floor) {
        let marker = runner::zig_marker(&project.build_state_dir(profile.name()), plan);
        if let Some(dir) = marker.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        std::fs::write(&marker, "").with_context(|| format!("failed to write {}", marker.display()))?;
        shell.status(
            "Relinking",
            format!(
                "the runner `{}` with cargo-zigbuild: the plain build needs glibc {}, newer than the floor {} (`runner-glibc`); later builds go to cargo-zigbuild directly",
                project.runner,
                need.map(glibc_text).unwrap_or_default(),
                glibc_text(plan.floor)
            ),
        );
        return build_runner(shell, project, profile, plan, Way::Zig);
    }
    if let Some(n) = need.filter(|n| *n > plan.floor) {
        bail!(
            "the runner `{}` for {} was linked for glibc {} but still needs glibc {} (a dependency links a newer symbol): raise `runner-glibc` in [package.metadata.gpu] to {}",
            project.runner,
            plan.triple,
            glibc_text(plan.floor),
            glibc_text(n),
            glibc_text(n)
        );
    }
    Ok(BuiltRunner { runner: built, plan: plan.clone(), need })
}

/// Builds one runner `way` from start to end (the runners after the first, which builds while
/// the kernels compile).
fn build_runner(shell: &Shell, project: &Project, profile: Profile, plan: &Plan, way: Way) -> Result<BuiltRunner> {
    let zig = match way {
        Way::Zig => Some(zig_for(shell, project, &plan.triple)?),
        Way::Plain => None,
    };
    let built = runner::start(shell, project, profile, plan, zig.as_ref(), false, None)?.finish()?;
    complete_runner(shell, project, profile, plan, way, built)
}

/// The way to start building `plan`: one stat of the build state's marker.
fn way_of(project: &Project, profile: Profile, plan: &Plan) -> Way {
    runner::first_way(plan, runner::zig_marker(&project.build_state_dir(profile.name()), plan).exists())
}

pub fn build(shell: &Shell, opts: &BuildOptions) -> Result<BuiltPackage> {
    let start = Instant::now();
    let mut project = Project::load(shell, opts.manifest_path.as_deref(), &opts.targets)?;
    if let Some(problem) = &project.runner_problem {
        bail!("{problem}");
    }
    if !opts.runner_targets.is_empty() {
        for t in &opts.runner_targets {
            crate::project::check_runner_target(t, "invalid --runner-target")?;
        }
        project.runner_targets = opts.runner_targets.clone();
    }
    let profile = if opts.release { Profile::Release } else { Profile::Debug };
    let dir = project.package_dir(profile.name());
    let plans = runner::plans(&project, opts.remote.as_ref());
    // The first runner's cargo build and `git status` start first and run while nvcc is checked
    // and the kernels compile: a no-op build then costs little more than cargo's own no-op
    // build. A kernel step that fails cancels the runner build instead of waiting for it.
    let first = &plans[0];
    let first_way = way_of(&project, profile, first);
    let zig = match first_way {
        Way::Zig => Some(zig_for(shell, &project, &first.triple)?),
        Way::Plain => None,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let building = runner::start(shell, &project, profile, first, zig.as_ref(), opts.early, Some(Arc::clone(&cancel)))?;
    let (kernels, git) = std::thread::scope(|s| {
        // Outside a work tree there is nothing to ask, and no thread to start for it.
        let git = assemble::may_be_in_git(&project.root).then(|| s.spawn(|| assemble::git_state(shell, &project.root)));
        let kernels = (|| -> Result<(Vec<Built>, &'static Nvcc)> {
            let (built, nvcc) = compile_kernels(shell, &project, profile, opts.jobs, None, true)?;
            check_expectations(&project, &built)?;
            Ok((built, nvcc))
        })();
        if kernels.is_err() {
            cancel.store(true, Ordering::SeqCst);
        }
        (kernels, git.and_then(|g| g.join().unwrap_or(None)))
    });
    let runner = building.finish();
    let (cubins, nvcc) = kernels?;
    let runner = runner?;
    crate::exit::check_interrupt()?;
    let mut runners = vec![complete_runner(shell, &project, profile, first, first_way, runner)?];
    for plan in &plans[1..] {
        crate::exit::check_interrupt()?;
        runners.push(build_runner(shell, &project, profile, plan, way_of(&project, profile, plan))?);
    }
    let (git_revision, git_dirty) = match git {
        Some((rev, dirty)) => (Some(rev), dirty),
        None => (None, false),
    };
    let (dmaj, dmin) = nvcc.min_driver_cuda(&project.targets);
    let info = PackageInfo {
        name: project.name.clone(),
        version: project.version.clone(),
        profile: profile.name().to_string(),
        git_revision,
        git_dirty,
        targets: project.targets.clone(),
        nvcc_version: nvcc.version.to_string(),
        min_driver_cuda: format!("{dmaj}.{dmin}"),
    };
    let several = runners.len() > 1;
    let runner_files: Vec<RunnerFile> = runners
        .iter()
        .map(|r| RunnerFile {
            exe: &r.runner.executable,
            entry: RunnerEntry {
                path: assemble::runner_path(&project.runner, &r.plan.triple, several),
                triple: r.plan.triple.clone(),
                glibc_floor: glibc_text(r.plan.floor),
                glibc: r.need.map(glibc_text),
            },
        })
        .collect();
    let package_cubins: Vec<Cubin> = cubins
        .iter()
        .map(|b| Cubin {
            path: b.path.clone(),
            name: b.job.cubin_name(),
            kernel: b.job.kernel.stem.clone(),
            target: b.job.target,
            size: b.size,
            sha256: b.sha256.clone(),
        })
        .collect();
    let assembled =
        assemble::assemble(PackageInputs { dir: &dir, info, runners: runner_files, cubins: &package_cubins })?;

    if shell.json() {
        for b in &cubins {
            shell.emit_json(&json!({
                "reason": "gpu-artifact", "kind": "cubin", "kernel": b.job.kernel.stem,
                "source": project.root.join(&b.job.kernel.rel), "target": b.job.target.to_string(),
                "path": dir.join("kernels").join(b.job.cubin_name()), "size": b.size, "sha256": b.sha256, "fresh": b.fresh,
            }));
        }
        for ((r, entry), path) in runners.iter().zip(&assembled.manifest.runners).zip(&assembled.runner_paths) {
            shell.emit_json(&json!({
                "reason": "gpu-artifact", "kind": "runner", "name": project.runner, "path": path,
                "triple": entry.triple, "glibc": entry.glibc, "glibc-floor": entry.glibc_floor, "fresh": r.runner.fresh,
            }));
        }
        shell.emit_json(&json!({
            "reason": "gpu-package", "path": dir, "manifest": assembled.manifest_path,
            "targets": project.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "profile": profile.name(), "digest": assembled.manifest.digest(),
        }));
    }

    let compiled = cubins.iter().filter(|b| !b.fresh).count();
    let fresh = cubins.len() - compiled;
    let targets: Vec<String> = project.targets.iter().map(|t| t.to_string()).collect();
    let shown = dir.strip_prefix(std::env::current_dir().unwrap_or_default()).unwrap_or(&dir);
    shell.status(
        "Finished",
        format!(
            "`{}` profile [{}] package {} ({} kernel{} compiled, {} fresh) in {:.2}s",
            profile.name(),
            targets.join(", "),
            shown.display(),
            compiled,
            if compiled == 1 { "" } else { "s" },
            fresh,
            start.elapsed().as_secs_f64()
        ),
    );
    Ok(BuiltPackage { dir, manifest: assembled.manifest, compiled, fresh })
}

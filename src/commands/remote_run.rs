//! `cargo gpu remote-run`: build if stale (or take `--package DIR`), check the package against its
//! manifest, then run it on the chosen remote (see `remote::session`), record the run, run the
//! `stop` command on every exit path, and report.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::cli::{GlobalOpts, RemoteRunArgs};
use crate::compile::pipeline::{self, BuildOptions};
use crate::config::{Remote, ShipSanitizer};
use crate::package::manifest::Manifest;
use crate::project::Project;
use crate::remote::run::{self, RunPackage};
use crate::remote::ship::{self, Shipment};
use crate::remote::tools::RunTools;
use crate::shell::Shell;

/// What the resolved run will use, decided before any work starts.
struct Plan {
    remote: Remote,
    package: Option<PathBuf>,
    build: BuildOptions,
    tools: RunTools,
    shipment: Option<Shipment>,
}

/// What the run asks of the remote's CUDA tools.
fn run_tools(args: &RemoteRunArgs) -> Result<RunTools> {
    let profile = match (args.profile, &args.ncu_args) {
        (false, _) => None,
        (true, None) => Some(Vec::new()),
        (true, Some(words)) => Some(
            shell_words::split(words)
                .with_context(|| format!("failed to split --ncu-args `{words}` into words (check its quotes)"))?,
        ),
    };
    Ok(RunTools {
        sanitize: args.sanitize.clone(),
        profile,
        autosanitize: !args.no_autosanitize,
        debug: args.debug,
        shipped: None,
        no_snapshot: false,
    })
}

fn plan(shell: &Shell, global: &GlobalOpts, args: &RemoteRunArgs) -> Result<Plan> {
    let project_remote = match &args.package {
        Some(_) => None,
        None => Project::load(shell, global.manifest_path.as_deref(), &args.targets)?.remote,
    };
    let remote = run::resolve_remote(args.remote.as_deref(), project_remote.as_deref())?;
    let build = BuildOptions {
        manifest_path: global.manifest_path.clone(),
        targets: args.targets.clone(),
        release: args.release,
        jobs: None,
        runner_targets: Vec::new(),
        // The runner is built for the machine the remote is (configured, or seen by its last
        // preflight), and for its glibc when that is older than the project's floor.
        remote: Some(remote.known_machine()),
        early: false,
    };
    let tools = run_tools(args)?;
    let shipment = local_sanitizer(shell, &remote, &tools)?;
    Ok(Plan { remote, package: args.package.clone(), build, tools, shipment })
}

/// This machine's compute-sanitizer, when the run may send it to the remote: `--sanitize`, or
/// the memcheck rerun after a fault, unless the remote's `ship-sanitizer` is `never`. A copy that
/// cannot be shipped is none: whether the remote has its own is known only after its preflight,
/// which refuses a `--sanitize` run it cannot serve. Why this one cannot be shipped is a warning
/// for `--sanitize` and a `-v` line otherwise.
fn local_sanitizer(shell: &Shell, remote: &Remote, tools: &RunTools) -> Result<Option<Shipment>> {
    let may_need = tools.sanitize.is_some() || tools.autosanitize;
    if !may_need || remote.ship_sanitizer == ShipSanitizer::Never {
        return Ok(None);
    }
    match ship::local_sanitizer(crate::toolchain::find_nvcc().ok().as_deref()) {
        Ok(found) => Ok(found),
        Err(e) => {
            let why = format!("{e:#}; only a remote's own compute-sanitizer can be used");
            if tools.sanitize.is_some() {
                shell.warn(why);
            } else {
                shell.verbose("Sanitizer", why);
            }
            Ok(None)
        }
    }
}

/// `--remote local` runs here: a machine without a usable GPU is told so before anything is built.
fn check_local_gpu(shell: &Shell) -> Result<()> {
    match crate::toolchain::local_gpus(shell) {
        (gpus, _) if !gpus.is_empty() => Ok(()),
        (_, why) => bail!(
            "`--remote local` runs the package on this machine, and {}: choose a remote with a GPU (--remote NAME), or only build here (`cargo gpu build`)",
            match why {
                Some(w) if w.contains("nvidia-smi not found") => "this machine has no NVIDIA driver (nvidia-smi not found)".to_string(),
                Some(w) => format!("this machine has no usable GPU ({w})"),
                None => "this machine has no GPU".to_string(),
            }
        ),
    }
}

pub fn exec(shell: &Shell, global: &GlobalOpts, args: &RemoteRunArgs) -> Result<i32> {
    let plan = plan(shell, global, args)?;
    if plan.remote.is_local() && plan.remote.slurm.is_none() {
        check_local_gpu(shell)?;
    }
    let (package_dir, manifest) = match &plan.package {
        Some(dir) => (dir.clone(), Manifest::read(dir)?),
        None => {
            let built = pipeline::build(shell, &plan.build)?;
            (built.dir, built.manifest)
        }
    };
    let files = manifest.verify(&package_dir)?;
    let runs_dir = crate::project::runs_dir(shell, global.manifest_path.as_deref(), Some(&package_dir));
    let axes = crate::sweep::parse_axes(&args.sweep)?;
    let package = std::path::absolute(&package_dir).unwrap_or(package_dir.clone()).display().to_string();
    let ran = run::run_package(
        shell,
        RunPackage {
            remote: &plan.remote,
            package,
            manifest: &manifest,
            files: &files,
            runs_dir: &runs_dir,
            args: &args.args,
            combinations: crate::sweep::combinations(&axes),
            sweep: !axes.is_empty(),
            gpus_per_run: args.gpus_per_run as usize,
            env: &[],
            tools: &plan.tools,
            tool_options: tool_options(args),
            shipment: plan.shipment.as_ref(),
            detach: args.detach,
            keep_up: args.keep_up,
            agent: false,
        },
    )?;
    Ok(ran.code)
}

/// The tool options of this run, as given, for its record.
fn tool_options(args: &RemoteRunArgs) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(t) = &args.sanitize {
        v.push(format!("--sanitize={t}"));
    }
    if args.profile {
        v.push("--profile".into());
    }
    if let Some(a) = &args.ncu_args {
        v.push(format!("--ncu-args={a}"));
    }
    if args.debug {
        v.push("--debug".into());
    }
    if args.no_autosanitize {
        v.push("--no-autosanitize".into());
    }
    v
}

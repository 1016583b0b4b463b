//! `cargo gpu remote-run`: build if stale (or take `--package DIR`), check the package against its
//! manifest, then run it on the chosen remote (see `remote::session`), record the run, run the
//! `stop` command on every exit path, and report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::{GlobalOpts, RemoteRunArgs};
use crate::compile::pipeline::{self, BuildOptions};
use crate::config::{choose_remote, Remote, ShipSanitizer, UserConfig, SHIP_SANITIZER_ENV};
use crate::package::manifest::Manifest;
use crate::project::Project;
use crate::remote::instance::{Instance, Stopped};
use crate::remote::session::{transport_for, Outcome, Session};
use crate::remote::ship::{self, Shipment};
use crate::remote::tools::RunTools;
use crate::runs::{self, timed, Record, State};
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
    })
}

fn plan(shell: &Shell, global: &GlobalOpts, args: &RemoteRunArgs) -> Result<Plan> {
    let user = UserConfig::load()?;
    let project_remote = match &args.package {
        Some(_) => None,
        None => Project::load(shell, global.manifest_path.as_deref(), &args.targets)?.remote,
    };
    let env_remote = std::env::var("CARGO_GPU_REMOTE").ok();
    let name = choose_remote(
        args.remote.as_deref(),
        env_remote.as_deref(),
        project_remote.as_deref(),
        user.default.remote.as_deref(),
    )?;
    let mut remote = user.remote(&name)?;
    if let Some(v) = std::env::var(SHIP_SANITIZER_ENV).ok().filter(|v| !v.is_empty()) {
        remote.ship_sanitizer = v.parse().with_context(|| format!("invalid {SHIP_SANITIZER_ENV}"))?;
    }
    let build = BuildOptions {
        manifest_path: global.manifest_path.clone(),
        targets: args.targets.clone(),
        release: args.release,
        jobs: None,
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
    let combinations = crate::sweep::combinations(&axes);
    let started = runs::now_millis();
    let remote = &plan.remote;
    let transport = transport_for(remote);
    let package = std::path::absolute(&package_dir).unwrap_or(package_dir.clone()).display().to_string();
    let origin = runs::Origin {
        remote: &remote.name,
        host: remote.host.as_deref(),
        workdir: &remote.workdir,
        price_per_hour: remote.price_per_hour,
        package: &package,
        package_name: &manifest.package.name,
        package_digest: manifest.digest(),
    };
    let (mut records, mut run_dirs) = (Vec::new(), Vec::new());
    for (index, combination) in combinations.iter().enumerate() {
        let (id, run_dir) = runs::create_run_dir(&runs_dir, &remote.name, started)?;
        let run_args = crate::sweep::apply(&args.args, combination);
        let mut record = Record::new(&id, origin.clone(), &run_args, started / 1000);
        record.tools = tool_options(args);
        if !axes.is_empty() {
            let sweep = records.first().map_or(id.clone(), |r: &Record| r.id.clone());
            record.sweep = Some(runs::SweepTag { id: sweep, index, values: combination.clone() });
        }
        records.push(record);
        run_dirs.push(run_dir);
    }
    let clock = Instant::now();
    let mut instance = Instance::new(shell, remote, &*transport, args.keep_up);
    let session = Session {
        shell,
        remote,
        transport: &*transport,
        manifest: &manifest,
        files: &files,
        run_dirs: &run_dirs,
        runs_dir: &runs_dir,
        detach: args.detach,
        tools: &plan.tools,
        shipment: plan.shipment.as_ref(),
        gpus_per_run: args.gpus_per_run as usize,
    };
    let outcomes = session.run(&mut instance, &mut records);
    let stop_result = timed(&mut records[0].phases.stop, || instance.stop());
    let stopped = instance.stopped();
    drop(instance);
    let wall = clock.elapsed().as_secs_f64();
    // One outcome per run; an error of the session is the first run's, and the others get a
    // copy of it (a Ctrl-C stays a Ctrl-C).
    let failed = outcomes.is_err();
    let outcomes: Vec<Result<Outcome>> = match outcomes {
        Ok(o) => o.into_iter().map(Ok).collect(),
        Err(e) => {
            let interrupted = crate::exit::code_for(&e) == crate::exit::INTERRUPTED;
            let copy = |_| Err(if interrupted { crate::exit::interrupted_error() } else { anyhow::anyhow!("{e:#}") });
            let mut v: Vec<Result<Outcome>> = records.iter().skip(1).map(copy).collect();
            v.insert(0, Err(e));
            v
        }
    };
    let mut results = Vec::new();
    for ((record, run_dir), outcome) in records.iter_mut().zip(&run_dirs).zip(outcomes) {
        record.left_up = matches!(stopped, Stopped::LeftUp | Stopped::Failed) && remote.stop.is_some();
        // A sweep's runs share the instance: its time and cost are the first run's.
        if record.sweep.as_ref().map_or(true, |s| s.index == 0) {
            record.wall_seconds = wall;
            record.cost = remote.price_per_hour.map(|p| p * wall / 3600.0);
        }
        let result = settle(shell, record, run_dir, remote, stopped, outcome);
        record.reports = crate::tool_reports::summary::present(run_dir);
        record.save(&runs_dir)?;
        results.push(result);
    }
    if let Err(e) = stop_result {
        let e = if crate::exit::code_for(&e) == crate::exit::INTERRUPTED {
            anyhow::anyhow!(
                "abandoned the `stop` command of {}: the instance keeps running; `cargo gpu remote down {}` stops it",
                remote.name,
                remote.name
            )
        } else {
            e.context(format!("the instance of {} may still be running", remote.name))
        };
        shell.error(&e);
    }
    for (record, run_dir) in records.iter().zip(&run_dirs) {
        crate::tool_reports::summary::print(shell, run_dir, &shown(run_dir), plan.tools.ncu_clock_control());
        report(shell, record, run_dir, remote, stopped);
    }
    if !axes.is_empty() {
        print!("{}", runs::sweep_table(&records, &runs_dir));
    }
    if failed {
        return results.remove(0);
    }
    // A sweep's code is its first run's that did not exit 0.
    let codes: Vec<i32> = results.into_iter().collect::<Result<_>>()?;
    Ok(codes.iter().copied().find(|c| *c != 0).unwrap_or(crate::exit::SUCCESS))
}

/// Completes one run's record from how it ended, and returns its exit code.
fn settle(
    shell: &Shell,
    record: &mut Record,
    run_dir: &Path,
    remote: &Remote,
    stopped: Stopped,
    outcome: Result<Outcome>,
) -> Result<i32> {
    let id = record.id.clone();
    let result: Result<i32> = match outcome {
        Ok(Outcome::Exited(Some(c))) => {
            record.state = State::Finished;
            record.exit_status = Some(c);
            Ok(c)
        }
        Ok(Outcome::Exited(None)) => {
            record.state = State::Finished;
            record.error = Some("the run ended without an exit status".into());
            Err(anyhow::anyhow!("run {id} on {} ended without an exit status (see {})", remote.name, run_dir.display()))
        }
        Ok(Outcome::Interrupted(status)) => {
            record.state = State::Interrupted;
            record.exit_status = status;
            Ok(crate::exit::INTERRUPTED)
        }
        Ok(Outcome::Detached) => Ok(crate::exit::SUCCESS),
        Err(e) => {
            if crate::exit::code_for(&e) == crate::exit::INTERRUPTED {
                record.state = State::Interrupted;
            } else if record.state == State::Running && stopped == Stopped::Yes && remote.stop.is_some() {
                // The run was cut off from us and its instance is gone with it.
                record.state = State::Failed;
                shell.note(format!(
                    "the `stop` command of {} ended run {id} too; pass --keep-up to let a run outlive a lost connection",
                    remote.name
                ));
            } else if record.state != State::Running {
                record.state = State::Failed;
            }
            record.error = Some(format!("{e:#}"));
            Err(e)
        }
    };
    if record.slurm_state.as_deref() == Some("TIMEOUT") {
        let limit = remote.slurm.as_ref().and_then(|s| s.time.clone()).unwrap_or_else(|| "the partition's".into());
        shell.warn(format!(
            "run {id} reached the time limit of its Slurm job {} ({limit}) and was ended by Slurm, not by a crash: raise `time` in [remotes.{}]",
            record.slurm_job.as_deref().unwrap_or("?"),
            remote.name
        ));
    } else if let Some(state) = record.slurm_state.as_ref().filter(|_| record.state != State::Interrupted) {
        shell.note(format!("the Slurm job {} of run {id} ended {state}", record.slurm_job.as_deref().unwrap_or("?")));
    }
    result
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

/// A run folder as the user reads it: relative to the current folder when it is below it.
fn shown(run_dir: &Path) -> PathBuf {
    run_dir.strip_prefix(std::env::current_dir().unwrap_or_default()).unwrap_or(run_dir).to_path_buf()
}

fn report(shell: &Shell, record: &Record, run_dir: &Path, remote: &Remote, stopped: Stopped) {
    let shown = shown(run_dir);
    match record.state {
        State::Running => shell.status(
            "Detached",
            format!("run {} goes on on {}: `cargo gpu logs {}` follows it", record.id, remote.name, record.id),
        ),
        State::Finished | State::Interrupted if record.exit_status.is_some() => shell.status(
            "Finished",
            format!(
                "run {} on {}: exit status {} in {} (logs in {})",
                record.id,
                remote.name,
                record.exit_text(),
                runs::human_duration(record.phases.run),
                shown.display()
            ),
        ),
        _ => {}
    }
    if let (Some(cost), Some(price)) = (record.cost, record.price_per_hour) {
        shell.status(
            "Cost",
            format!(
                "{} ({} on {} at {}/h)",
                runs::money(cost),
                runs::human_duration(record.wall_seconds),
                remote.name,
                runs::money(price)
            ),
        );
    }
    if stopped == Stopped::LeftUp && remote.stop.is_some() {
        shell.note(format!("{} is still up: `cargo gpu remote down {}` stops it", remote.name, remote.name));
    }
    shell.emit_json(&serde_json::json!({"reason": "gpu-run", "record": record}));
}

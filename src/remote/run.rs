//! One package run end to end, for every command that runs something on a remote (`remote-run`,
//! `exec`, `test`, `bench`, `run`): its run folders and records (one per combination of a
//! sweep), the session (see `remote::session`), the `stop` command on every exit path, the
//! records completed, what the CUDA tools' reports say, and the closing lines.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::config::{choose_remote, Remote, UserConfig, SHIP_SANITIZER_ENV};
use crate::package::manifest::Manifest;
use crate::remote::instance::{Instance, Stopped};
use crate::remote::scripts::EnvValue;
use crate::remote::session::{transport_for, Outcome, Session};
use crate::remote::ship::Shipment;
use crate::remote::tools::RunTools;
use crate::runs::{self, timed, Record, State};
use crate::shell::Shell;

/// What to run where.
pub struct RunPackage<'a> {
    pub remote: &'a Remote,
    /// Where the package is, as the record keeps it (a folder, or the executable `exec` ran).
    pub package: String,
    pub manifest: &'a Manifest,
    /// (sha256, local file) of every file of the package, in the manifest's order.
    pub files: &'a [(String, PathBuf)],
    pub runs_dir: &'a Path,
    /// The runner's arguments, `{NAME}` standing for a sweep's values.
    pub args: &'a [String],
    /// One run per combination of a sweep's values (one empty combination: a plain run).
    pub combinations: Vec<Vec<(String, String)>>,
    /// Whether the runs are a sweep's (each record says so, and a summary table ends the run).
    pub sweep: bool,
    /// GPUs each run of a sweep gets on an ssh or local remote.
    pub gpus_per_run: usize,
    /// Variables the runner gets from here.
    pub env: &'a [(String, EnvValue)],
    pub tools: &'a RunTools,
    /// The tool options as given, for the record.
    pub tool_options: Vec<String>,
    pub shipment: Option<&'a Shipment>,
    pub detach: bool,
    pub keep_up: bool,
    /// Whether the scripts may go through a persistent agent on the remote.
    pub agent: bool,
}

/// The remote a run goes to: the one named on the command line, else `CARGO_GPU_REMOTE`, the
/// project's `remote`, the config's `[default] remote`; with `CARGO_GPU_SHIP_SANITIZER` applied.
pub fn resolve_remote(named: Option<&str>, project_remote: Option<&str>) -> Result<Remote> {
    let user = UserConfig::load()?;
    let env_remote = std::env::var("CARGO_GPU_REMOTE").ok();
    let name = choose_remote(named, env_remote.as_deref(), project_remote, user.default.remote.as_deref())?;
    let mut remote = user.remote(&name)?;
    if let Some(v) = std::env::var(SHIP_SANITIZER_ENV).ok().filter(|v| !v.is_empty()) {
        remote.ship_sanitizer = v.parse().with_context(|| format!("invalid {SHIP_SANITIZER_ENV}"))?;
    }
    Ok(remote)
}

/// How a run ended: the exit code for this process (a sweep's: its first run's that did not
/// exit 0), and where its (first) run's files are.
pub struct Ran {
    pub code: i32,
    pub run_dir: PathBuf,
}

pub fn run_package(shell: &Shell, r: RunPackage<'_>) -> Result<Ran> {
    let remote = r.remote;
    let started = runs::now_millis();
    let transport = transport_for(remote);
    let origin = runs::Origin {
        remote: &remote.name,
        host: remote.host.as_deref(),
        workdir: &remote.workdir,
        price_per_hour: remote.price_per_hour,
        package: &r.package,
        package_name: &r.manifest.package.name,
        package_digest: r.manifest.digest(),
    };
    let (mut records, mut run_dirs) = (Vec::new(), Vec::new());
    for (index, combination) in r.combinations.iter().enumerate() {
        let (id, run_dir) = runs::create_run_dir(r.runs_dir, &remote.name, started)?;
        let run_args = crate::sweep::apply(r.args, combination);
        let mut record = Record::new(&id, origin.clone(), &run_args, started / 1000);
        record.tools = r.tool_options.clone();
        if r.sweep {
            let sweep = records.first().map_or(id.clone(), |r: &Record| r.id.clone());
            record.sweep = Some(runs::SweepTag { id: sweep, index, values: combination.clone() });
        }
        records.push(record);
        run_dirs.push(run_dir);
    }
    let clock = Instant::now();
    let mut instance = Instance::new(shell, remote, &*transport, r.keep_up);
    let session = Session {
        shell,
        remote,
        transport: &*transport,
        manifest: r.manifest,
        files: r.files,
        run_dirs: &run_dirs,
        runs_dir: r.runs_dir,
        detach: r.detach,
        tools: r.tools,
        shipment: r.shipment,
        gpus_per_run: r.gpus_per_run,
        env: r.env,
        agent: r.agent,
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
        record.save(r.runs_dir)?;
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
        crate::tool_reports::summary::print(shell, run_dir, &shown(run_dir), r.tools.ncu_clock_control());
        report(shell, record, run_dir, remote, stopped);
    }
    if r.sweep {
        print!("{}", runs::sweep_table(&records, r.runs_dir));
    }
    let run_dir = run_dirs.swap_remove(0);
    if failed {
        return results.remove(0).map(|code| Ran { code, run_dir });
    }
    // A sweep's code is its first run's that did not exit 0.
    let codes: Vec<i32> = results.into_iter().collect::<Result<_>>()?;
    Ok(Ran { code: codes.iter().copied().find(|c| *c != 0).unwrap_or(crate::exit::SUCCESS), run_dir })
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

//! One package run end to end, for every command that runs something on a remote (`remote-run`,
//! `exec`, `test`, `bench`, `run`): its run folder and record, the session (see
//! `remote::session`), the `stop` command on every exit path, the record completed, what the CUDA
//! tools' reports say, and the closing lines.

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
    pub args: &'a [String],
    /// Variables the runner gets from here.
    pub env: &'a [(String, EnvValue)],
    pub tools: &'a RunTools,
    /// The tool options as given, for the record.
    pub tool_options: Vec<String>,
    pub shipment: Option<&'a Shipment>,
    pub detach: bool,
    pub keep_up: bool,
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

/// How a run ended: the exit code for this process, and where its files are.
pub struct Ran {
    pub code: i32,
    pub run_dir: PathBuf,
}

pub fn run_package(shell: &Shell, r: RunPackage<'_>) -> Result<Ran> {
    let remote = r.remote;
    let started = runs::now_millis();
    let (id, run_dir) = runs::create_run_dir(r.runs_dir, &remote.name, started)?;
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
    let mut record = Record::new(&id, origin, r.args, started / 1000);
    record.tools = r.tool_options.clone();
    let clock = Instant::now();
    let mut instance = Instance::new(shell, remote, &*transport, r.keep_up);
    let session = Session {
        shell,
        remote,
        transport: &*transport,
        manifest: r.manifest,
        files: r.files,
        run_dir: &run_dir,
        runs_dir: r.runs_dir,
        detach: r.detach,
        tools: r.tools,
        shipment: r.shipment,
        env: r.env,
    };
    let outcome = session.run(&mut instance, &mut record);
    let stop_result = timed(&mut record.phases.stop, || instance.stop());
    let stopped = instance.stopped();
    drop(instance);
    record.left_up = matches!(stopped, Stopped::LeftUp | Stopped::Failed) && remote.stop.is_some();
    record.wall_seconds = clock.elapsed().as_secs_f64();
    record.cost = remote.price_per_hour.map(|p| p * record.wall_seconds / 3600.0);
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
    record.reports = crate::tool_reports::summary::present(&run_dir);
    record.save(r.runs_dir)?;
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
    crate::tool_reports::summary::print(shell, &run_dir, &shown(&run_dir), r.tools.ncu_clock_control());
    report(shell, &record, &run_dir, remote, stopped);
    Ok(Ran { code: result?, run_dir })
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

//! `cargo gpu remote-run`: build if stale (or take `--package DIR`), start the instance, preflight
//! in one round trip, upload the blobs the remote lacks, launch detached, stream the output, fetch
//! and record the run, and run the `stop` command on every exit path. `cargo gpu logs` reuses the
//! follow and fetch steps.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::build::manifest::Manifest;
use crate::build::package::sha256_file;
use crate::build::pipeline::{self, BuildOptions};
use crate::cli::{GlobalOpts, RemoteRunArgs};
use crate::cmd::Cmd;
use crate::config::{choose_remote, Remote, UserConfig};
use crate::project::Project;
use crate::remote::protocol::{self, human_bytes, Launch};
use crate::remote::ssh::Ssh;
use crate::remote::transport::{exec as exec_child, run_script, ExecOptions, Local, Sink, Transport};
use crate::remote::unpack;
use crate::runs::{self, Phases, Record, State};
use crate::shell::Shell;

/// The transport for a remote.
pub fn transport_for(remote: &Remote) -> Box<dyn Transport> {
    if remote.is_local() {
        Box::new(Local)
    } else {
        Box::new(Ssh::new(remote))
    }
}

/// The instance's lifetime: `start` before connecting, `stop` once on every exit path (also
/// from `Drop`, so an early return or a panic stops it too) unless told to leave it up.
pub struct Instance<'a> {
    shell: &'a Shell,
    remote: &'a Remote,
    transport: &'a dyn Transport,
    leave_up: bool,
    stopped: bool,
}

fn run_hook(shell: &Shell, remote: &Remote, which: &str, command: &str, interruptible: bool) -> Result<()> {
    let cmd = Cmd::new("sh", format!("run the `{which}` command of remote {}", remote.name)).arg("-c").arg(command);
    let ended = exec_child(shell, &cmd, ExecOptions { interruptible, ..Default::default() })?;
    match ended.status {
        None => Err(crate::exit::interrupted_error()),
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(cmd.failure(s, &ended.stderr).into()),
    }
}

impl<'a> Instance<'a> {
    pub fn new(shell: &'a Shell, remote: &'a Remote, transport: &'a dyn Transport, leave_up: bool) -> Instance<'a> {
        Instance { shell, remote, transport, leave_up, stopped: false }
    }

    /// Runs `start` (if any) and waits until the transport answers.
    pub fn start(&mut self) -> Result<()> {
        let timeout = match &self.remote.start {
            Some(start) => {
                self.shell.status("Starting", format!("{} (`{start}`)", self.remote.name));
                run_hook(self.shell, self.remote, "start", start, true)?;
                self.remote.ready_timeout
            }
            None => self.remote.connect_timeout,
        };
        self.transport.wait_ready(self.shell, timeout)
    }

    pub fn leave_up(&mut self) {
        self.leave_up = true;
    }

    /// Whether the instance will be (or was) stopped by this run.
    pub fn will_stop(&self) -> bool {
        !self.leave_up && self.remote.stop.is_some()
    }

    /// Runs `stop` once; Ctrl-C does not cut it short.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped || self.leave_up {
            return Ok(());
        }
        self.stopped = true;
        let Some(stop) = &self.remote.stop else { return Ok(()) };
        self.shell.status("Stopping", format!("{} (`{stop}`)", self.remote.name));
        let result = run_hook(self.shell, self.remote, "stop", stop, false);
        // The host is going away: a master connection to it would only be stale next time.
        self.transport.disconnect(self.shell);
        result
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            self.shell.error(&e.context(format!("the instance of {} may still be running", self.remote.name)));
        }
    }
}

/// A package's files, checked against its manifest: (manifest path, local file).
pub fn verify_package(dir: &Path, manifest: &Manifest) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for f in &manifest.files {
        if !protocol::is_safe_relative(&f.path) {
            bail!("the manifest of {} lists `{}`, which is not a plain relative path", dir.display(), f.path);
        }
        let path = dir.join(&f.path);
        let sha = sha256_file(&path).with_context(|| format!("failed to check package file {}", path.display()))?;
        if sha != f.sha256 {
            bail!(
                "package file {} does not match {}/manifest.toml (sha256 {sha}, manifest says {}): rebuild the package",
                path.display(),
                dir.display(),
                f.sha256
            );
        }
        files.push((f.sha256.clone(), path));
    }
    if !manifest.files.iter().any(|f| f.path == manifest.package.runner) {
        bail!("the manifest of {} does not list its runner `{}`", dir.display(), manifest.package.runner);
    }
    Ok(files)
}

/// How following a run's logs ended.
pub enum Followed {
    /// The run wrote its exit status (or vanished without one).
    Done,
    Interrupted,
}

/// Streams a run's logs from the given offsets: its stdout to our stdout, its stderr to ours.
pub fn follow(shell: &Shell, transport: &dyn Transport, workdir: &str, id: &str) -> Result<Followed> {
    let script = protocol::stream(workdir, id, 0, 0);
    let cmd = transport.script_command(&script, &format!("follow run {id}"));
    let opts = ExecOptions { stdout: Sink::PassThrough, stderr: Sink::PassThrough, ..Default::default() };
    let ended = exec_child(shell, &cmd, opts)?;
    let _ = std::io::stdout().flush();
    match ended.status {
        None => Ok(Followed::Interrupted),
        Some(s) if s.success() || s.code() == Some(4) => Ok(Followed::Done),
        Some(s) if transport.is_transport_failure(s) => bail!(
            "lost the connection to {} while following run {id}; the run goes on there: `cargo gpu logs {id}` follows it again",
            transport.describe()
        ),
        Some(s) => Err(cmd.failure(s, &ended.stderr).into()),
    }
}

/// Stops a run on the remote (TERM, then KILL) so that what it wrote can be fetched.
pub fn stop_remote_run(shell: &Shell, transport: &dyn Transport, workdir: &str, id: &str) -> Result<()> {
    let opts = ExecOptions { interruptible: false, ..Default::default() };
    run_script(shell, transport, &protocol::stop_run(workdir, id), &format!("stop run {id}"), opts)?;
    Ok(())
}

/// Brings the run's files back into `run_dir` and returns the runner's exit status and the
/// refused entries.
pub fn fetch(
    shell: &Shell,
    transport: &dyn Transport,
    workdir: &str,
    id: &str,
    run_dir: &Path,
) -> Result<(Option<i32>, Vec<String>)> {
    let opts = ExecOptions { interruptible: false, ..Default::default() };
    let ended = run_script(shell, transport, &protocol::fetch(workdir, id), &format!("fetch run {id}"), opts)?;
    let unpacked = unpack::unpack(&ended.stdout[..], run_dir)
        .with_context(|| format!("failed to unpack run {id} into {}", run_dir.display()))?;
    for r in &unpacked.refused {
        shell.warn(format!("refused an entry of run {id}: {r}"));
    }
    let status = std::fs::read_to_string(run_dir.join("exit-status")).ok().and_then(|s| s.trim().parse().ok());
    Ok((status, unpacked.refused))
}

/// What the resolved run will use, decided before any work starts.
struct Plan {
    remote: Remote,
    package: Option<PathBuf>,
    build: BuildOptions,
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
    let remote = user.remote(&name)?;
    let build = BuildOptions {
        manifest_path: global.manifest_path.clone(),
        targets: args.targets.clone(),
        release: args.release,
        jobs: None,
    };
    Ok(Plan { remote, package: args.package.clone(), build })
}

enum Outcome {
    Exited(Option<i32>),
    Detached,
    Interrupted(Option<i32>),
}

struct Session<'a> {
    shell: &'a Shell,
    remote: &'a Remote,
    transport: &'a dyn Transport,
    manifest: &'a Manifest,
    files: &'a [(String, PathBuf)],
    run_dir: &'a Path,
    runs_dir: &'a Path,
    detach: bool,
}

fn timed<T>(slot: &mut f64, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f();
    *slot += t.elapsed().as_secs_f64();
    r
}

impl Session<'_> {
    fn run(&self, instance: &mut Instance<'_>, record: &mut Record) -> Result<Outcome> {
        let (shell, remote, transport) = (self.shell, self.remote, self.transport);
        let workdir = remote.workdir.as_str();
        let id = record.id.clone();
        shell.status("Connecting", transport.describe());
        timed(&mut record.phases.connect, || instance.start())?;
        crate::exit::check_interrupt()?;

        // Preflight: one round trip.
        let mut sizes: BTreeMap<&str, (u64, &Path)> = BTreeMap::new();
        for ((sha, path), f) in self.files.iter().zip(&self.manifest.files) {
            sizes.insert(sha, (f.size, path));
        }
        let hashes: Vec<String> = sizes.keys().map(|h| h.to_string()).collect();
        let total: u64 = self.manifest.files.iter().map(|f| f.size).sum();
        let facts = timed(&mut record.phases.preflight, || {
            let ended = run_script(
                shell,
                transport,
                &protocol::preflight(workdir, &hashes),
                "preflight the remote",
                Default::default(),
            )?;
            protocol::parse_preflight(&String::from_utf8_lossy(&ended.stdout))
        })?;
        let missing_bytes: u64 = facts.missing.iter().filter_map(|h| sizes.get(h.as_str())).map(|(s, _)| s).sum();
        let target = protocol::check(&remote.name, &facts, self.manifest, missing_bytes + total)?;
        record.target = Some(target.to_string());
        record.gpu = facts.gpu_name.clone();
        record.compute_capability = facts.compute_cap.map(|c| c.to_string());
        shell.status(
            "Preflight",
            format!(
                "{} (compute capability {}), driver CUDA {}, glibc {}, {} free",
                facts.gpu_name.as_deref().unwrap_or("?"),
                facts.compute_cap.map(|c| c.to_string()).unwrap_or_default(),
                facts.driver_cuda.as_deref().unwrap_or("?"),
                facts.glibc.as_deref().unwrap_or("?"),
                facts.disk_free_bytes.map(human_bytes).unwrap_or_else(|| "?".into())
            ),
        );
        crate::exit::check_interrupt()?;

        // Upload only the blobs the remote lacks, as one tar stream.
        let missing: Vec<String> = facts.missing.iter().filter(|h| sizes.contains_key(h.as_str())).cloned().collect();
        record.blobs_present = hashes.len() - missing.len();
        record.blobs_uploaded = missing.len();
        record.bytes_uploaded = missing_bytes;
        if !missing.is_empty() {
            shell.status(
                "Uploading",
                format!(
                    "{} blob{} ({}), {} already there",
                    missing.len(),
                    if missing.len() == 1 { "" } else { "s" },
                    human_bytes(missing_bytes),
                    record.blobs_present
                ),
            );
            let items: Vec<(String, PathBuf)> =
                missing.iter().map(|h| (h.clone(), sizes[h.as_str()].1.to_path_buf())).collect();
            timed(&mut record.phases.upload, || {
                let feed = Box::new(move |stdin: &mut std::process::ChildStdin| -> std::io::Result<()> {
                    let mut tar = tar::Builder::new(stdin);
                    for (hash, path) in &items {
                        let mut file = std::fs::File::open(path)?;
                        let mut h = tar::Header::new_ustar();
                        h.set_path(hash)?;
                        h.set_size(file.metadata()?.len());
                        h.set_mode(0o644);
                        h.set_mtime(0);
                        h.set_cksum();
                        tar.append(&h, &mut file)?;
                    }
                    tar.finish()
                });
                let opts = ExecOptions { stdin: Some(feed), ..Default::default() };
                run_script(
                    shell,
                    transport,
                    &protocol::upload(workdir, &id, &missing),
                    "upload the package blobs",
                    opts,
                )
            })?;
        }
        crate::exit::check_interrupt()?;

        // Launch detached; from here on the run outlives this process.
        let watchdog = remote.idle_shutdown.map(|d| (d, remote.shutdown_command.as_str()));
        let launch = Launch { workdir, id: &id, manifest: self.manifest, args: &record.args, watchdog };
        let script = protocol::launch(&launch)?;
        shell.status("Running", format!("{} on {} (run {id})", self.manifest.package.runner, remote.name));
        let run_started = Instant::now();
        run_script(shell, transport, &script, &format!("launch run {id}"), Default::default())?;
        record.state = State::Running;
        record.save(self.runs_dir)?;
        if self.detach {
            instance.leave_up();
            return Ok(Outcome::Detached);
        }
        let followed = follow(shell, transport, workdir, &id);
        record.phases.run = run_started.elapsed().as_secs_f64();
        let interrupted = match followed? {
            Followed::Done => false,
            Followed::Interrupted => {
                shell.status("Interrupted", format!("stopping run {id} on {}", remote.name));
                stop_remote_run(shell, transport, workdir, &id)?;
                true
            }
        };
        let (status, refused) =
            timed(&mut record.phases.fetch, || fetch(shell, transport, workdir, &id, self.run_dir))?;
        record.refused = refused;
        Ok(if interrupted { Outcome::Interrupted(status) } else { Outcome::Exited(status) })
    }
}

pub fn exec(shell: &Shell, global: &GlobalOpts, args: &RemoteRunArgs) -> Result<i32> {
    let plan = plan(shell, global, args)?;
    let (package_dir, manifest) = match &plan.package {
        Some(dir) => (dir.clone(), Manifest::read(dir)?),
        None => {
            let built = pipeline::build(shell, &plan.build)?;
            (built.dir, built.manifest)
        }
    };
    let files = verify_package(&package_dir, &manifest)?;
    let runs_dir = crate::commands::runs::runs_dir(shell, global, Some(&package_dir));
    let started = runs::now_secs();
    let (id, run_dir) = runs::create_run_dir(&runs_dir, &plan.remote.name, started)?;
    let remote = &plan.remote;
    let transport = transport_for(remote);
    let mut record = Record {
        id: id.clone(),
        remote: remote.name.clone(),
        host: remote.host.clone(),
        workdir: remote.workdir.clone(),
        target: None,
        gpu: None,
        compute_capability: None,
        package: std::path::absolute(&package_dir).unwrap_or(package_dir.clone()).display().to_string(),
        package_name: manifest.package.name.clone(),
        package_digest: manifest.digest(),
        args: args.args.clone(),
        started: runs::rfc3339(started),
        state: State::Failed,
        exit_status: None,
        error: None,
        blobs_uploaded: 0,
        bytes_uploaded: 0,
        blobs_present: 0,
        refused: Vec::new(),
        left_up: true,
        price_per_hour: remote.price_per_hour,
        cost: None,
        wall_seconds: 0.0,
        phases: Phases::default(),
    };
    let clock = Instant::now();
    let mut instance = Instance::new(shell, remote, &*transport, args.keep_up);
    let session = Session {
        shell,
        remote,
        transport: &*transport,
        manifest: &manifest,
        files: &files,
        run_dir: &run_dir,
        runs_dir: &runs_dir,
        detach: args.detach,
    };
    let outcome = session.run(&mut instance, &mut record);
    record.left_up = !instance.will_stop();
    let stop_result = timed(&mut record.phases.stop, || instance.stop());
    drop(instance);
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
            } else if record.state != State::Running {
                record.state = State::Failed;
            }
            record.error = Some(format!("{e:#}"));
            if record.state == State::Running && !record.left_up {
                shell.note(format!(
                    "the `stop` command of {} ends run {id} too; pass --keep-up to let a run outlive a lost connection",
                    remote.name
                ));
            }
            Err(e)
        }
    };
    record.save(&runs_dir)?;
    if let Err(e) = stop_result {
        shell.error(&e.context(format!("the instance of {} may still be running", remote.name)));
    }
    report(shell, &record, &run_dir, remote);
    result
}

fn report(shell: &Shell, record: &Record, run_dir: &Path, remote: &Remote) {
    let shown = run_dir.strip_prefix(std::env::current_dir().unwrap_or_default()).unwrap_or(run_dir);
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
    if record.left_up && remote.stop.is_some() {
        shell.note(format!("{} is still up: `cargo gpu remote down {}` stops it", remote.name, remote.name));
    }
    shell.emit_json(&serde_json::json!({"reason": "gpu-run", "record": record}));
}

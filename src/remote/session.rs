//! One run on a remote, from connecting to the run's files back: start the instance, reuse the
//! preflight answered over a live connection or preflight again (one round trip), refuse a remote
//! that cannot run the package, then one more remote command that uploads the blobs the remote
//! lacks, launches the run detached, streams its output and brings its files back. A damaged blob
//! or a remote changed under the connection sends it round once more with a fresh preflight.
//! Every remote command runs the remote user's shell start-up files, so they are kept few.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::cmd::{ExecOptions, StdinFeed};
use crate::config::Remote;
use crate::exit::Interrupt;
use crate::package::manifest::Manifest;
use crate::remote::follow::{exit_status, fetch, follow, report_unpacked, stop_remote_run, Followed};
use crate::remote::frames::Demux;
use crate::remote::instance::Instance;
use crate::remote::preflight::{self, RemoteFacts};
use crate::remote::scripts::{self, EnvValue, Launch, Place, RunSpec};
use crate::remote::ship::{self, Shipment};
use crate::remote::slurm;
use crate::remote::ssh::Ssh;
use crate::remote::tools::{RunTools, ShippedSanitizer};
use crate::remote::transport::{run_script, Local, Transport};
use crate::runs::{timed, Record, State};
use crate::shell::{human_bytes, Shell};

/// The transport for a remote.
pub fn transport_for(remote: &Remote) -> Box<dyn Transport> {
    if remote.is_local() {
        Box::new(Local)
    } else {
        Box::new(Ssh::new(remote))
    }
}

/// Test-only fault injection: panics at `point` when `CARGO_GPU_TEST_PANIC_IN` names it, so the
/// tests can check that a panic still runs the `stop` command. Compiled out of release builds.
fn panic_point(point: &str) {
    if cfg!(debug_assertions) && std::env::var_os("CARGO_GPU_TEST_PANIC_IN").is_some_and(|v| v == point) {
        panic!("CARGO_GPU_TEST_PANIC_IN={point}");
    }
}

/// How a run ended, as far as this process saw it.
pub enum Outcome {
    Exited(Option<i32>),
    Detached,
    Interrupted(Option<i32>),
}

/// What a run needs: where it goes, what it runs, where its files and record go.
pub struct Session<'a> {
    pub shell: &'a Shell,
    pub remote: &'a Remote,
    pub transport: &'a dyn Transport,
    pub manifest: &'a Manifest,
    /// (sha256, local file) of every file of the package, checked against the manifest.
    pub files: &'a [(String, PathBuf)],
    /// Each run's local folder, in the order of the records [`Session::run`] takes.
    pub run_dirs: &'a [PathBuf],
    pub runs_dir: &'a Path,
    /// GPUs each run of a sweep gets on an ssh or local remote (`--gpus-per-run`).
    pub gpus_per_run: usize,
    pub detach: bool,
    /// The CUDA tools the runner runs under (or again under, after a kernel fault).
    pub tools: &'a RunTools,
    /// This machine's compute-sanitizer, when the run may send it along (see `remote::ship`).
    pub shipment: Option<&'a Shipment>,
    /// Variables the runner gets from here (`cargo gpu exec`).
    pub env: &'a [(String, EnvValue)],
    /// Whether the scripts may go through a persistent agent on the remote (see `agent_link`):
    /// for `cargo gpu exec`, which pays a remote command per test.
    pub agent: bool,
}

/// The preflight answer last given over one connection, kept beside it (in the private ssh
/// control folder) for the runs that reuse it: a connection that never dropped reaches the same
/// machine, so its GPU, driver and glibc still hold; free disk and the stored blobs are checked
/// again by the run script itself ([`scripts::Guard`]). It saves one remote command per re-run.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KnownRemote {
    connection: String,
    workdir: String,
    answer: String,
    present: Vec<String>,
}

impl KnownRemote {
    fn path(remote: &Remote) -> Result<PathBuf> {
        let key = format!("{:?}\n{:?}\n{}", remote.host, remote.ssh_options, remote.workdir);
        let hash = crate::digest::sha256_hex(key.as_bytes());
        Ok(crate::remote::ssh::private_control_dir()?.join(format!("preflight-{}.json", &hash[..16])))
    }

    fn load(remote: &Remote, connection: &str) -> Option<KnownRemote> {
        let text = crate::safe_fs::read_no_follow(&Self::path(remote).ok()?).ok()?;
        let known: KnownRemote = serde_json::from_slice(&text).ok()?;
        (known.connection == connection && known.workdir == remote.workdir).then_some(known)
    }

    /// Best effort: without it the next run only preflights again.
    fn save(&self, remote: &Remote) {
        if let (Ok(path), Ok(text)) = (Self::path(remote), serde_json::to_vec(self)) {
            let _ = crate::safe_fs::write_atomic(&path, &text);
        }
    }

    fn forget(remote: &Remote) {
        if let Ok(path) = Self::path(remote) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What one attempt at uploading and launching came to.
enum Attempt {
    /// One outcome per run.
    Ran(Vec<Outcome>),
    /// The guard found the remote changed since the preflight it relied on.
    Stale,
    /// Stored blobs did not match their names; they were deleted there and nothing launched.
    BadBlobs(Vec<String>),
}

impl Session<'_> {
    /// Runs `records` (one run, or a sweep's runs: one upload, one launch) and returns an
    /// outcome per run; the first record also carries the phases they share.
    pub fn run(&self, instance: &mut Instance<'_>, records: &mut [Record]) -> Result<Vec<Outcome>> {
        assert_eq!(records.len(), self.run_dirs.len(), "a run folder per record");
        let record = &mut records[0];
        let (shell, remote, transport) = (self.shell, self.remote, self.transport);
        let workdir = remote.workdir.as_str();
        shell.status("Connecting", transport.describe());
        timed(&mut record.phases.connect, || instance.start())?;
        crate::exit::check_interrupt()?;

        let hashes: Vec<String> = {
            let mut h: Vec<String> = self.files.iter().map(|(sha, _)| sha.clone()).collect();
            h.extend(self.shipment.iter().flat_map(|s| s.hashes()));
            h.sort();
            h.dedup();
            h
        };
        // A detached run returns before the guard could speak: it always preflights; so does a
        // job, whose checks are the login node's.
        let slurm = remote.slurm.is_some();
        let connection = if self.detach || slurm { None } else { transport.connection_id(shell) };
        if let Some(known) = connection.as_deref().and_then(|c| KnownRemote::load(remote, c)) {
            let mut facts = preflight::parse_preflight(&known.answer)?;
            facts.missing = hashes.iter().filter(|h| !known.present.contains(h)).cloned().collect();
            // Checked on the remote by the guard instead.
            facts.disk_free_bytes = None;
            match self.attempt(instance, records, &facts, &known.answer, connection.as_deref(), true)? {
                Attempt::Ran(outcome) => return Ok(outcome),
                Attempt::Stale => KnownRemote::forget(remote),
                Attempt::BadBlobs(bad) => {
                    KnownRemote::forget(remote);
                    self.warn_bad_blobs(&bad);
                }
            }
        }

        // Preflight: one round trip. A second one only when the first attempt found damaged
        // blobs, which are uploaded again.
        for fresh in 0..2 {
            let script =
                if slurm { scripts::preflight_slurm(workdir, &hashes) } else { scripts::preflight(workdir, &hashes) };
            let answer = timed(&mut records[0].phases.preflight, || {
                let ended = run_script(shell, transport, &script, "preflight the remote", Default::default())?;
                Ok(String::from_utf8_lossy(&ended.stdout).into_owned())
            })?;
            let facts = preflight::parse_preflight(&answer)?;
            preflight::remember(&remote.name, &facts);
            match self.attempt(instance, records, &facts, &answer, connection.as_deref(), false)? {
                Attempt::Ran(outcome) => return Ok(outcome),
                Attempt::Stale => bail!("run {} was refused by its own guard after a fresh preflight", records[0].id),
                Attempt::BadBlobs(bad) if fresh == 0 => self.warn_bad_blobs(&bad),
                Attempt::BadBlobs(bad) => bail!(
                    "{} damaged blob {} again right after it was uploaded: its disk or its sha256sum cannot be trusted",
                    remote.name,
                    bad.join(", ")
                ),
            }
        }
        unreachable!("the loop returns")
    }

    fn warn_bad_blobs(&self, bad: &[String]) {
        for h in bad {
            let shipped = self.shipment.and_then(|s| s.files.iter().find(|f| &f.sha256 == h));
            let path = match (self.manifest.files.iter().find(|f| &f.sha256 == h), shipped) {
                (Some(f), _) => f.path.clone(),
                (None, Some(f)) => format!("compute-sanitizer's {}", f.path),
                (None, None) => "?".into(),
            };
            self.shell.warn(format!(
                "the stored blob {h} ({path}) on {} did not match its sha256: it was deleted there and is uploaded again",
                self.remote.name
            ));
        }
    }

    /// Checks the facts, then uploads what they say is missing, launches the runs and follows
    /// them, in one remote command (a sweep's runs are followed one by one afterwards).
    /// `guarded`: the facts come from an earlier preflight.
    fn attempt(
        &self,
        instance: &mut Instance<'_>,
        records: &mut [Record],
        facts: &RemoteFacts,
        answer: &str,
        connection: Option<&str>,
        guarded: bool,
    ) -> Result<Attempt> {
        let (shell, remote, transport) = (self.shell, self.remote, self.transport);
        let workdir = remote.workdir.as_str();
        let id = records[0].id.clone();
        // The runner for the remote's machine goes; the package's other runners stay here.
        let runner = preflight::runner_for(&remote.name, facts, self.manifest)?;
        let other_runner = |path: &str| self.manifest.runners.iter().any(|r| r.path == path && r.path != runner.path);
        let mut sizes: BTreeMap<&str, (u64, &Path)> = BTreeMap::new();
        for ((sha, path), f) in self.files.iter().zip(&self.manifest.files) {
            if !other_runner(&f.path) {
                sizes.insert(sha, (f.size, path));
            }
        }
        // Whether this machine's compute-sanitizer goes along: its blobs are uploaded with the
        // package's and assembled once into the remote's tools folder.
        let t = self.tools;
        let shipping = self.shipment.filter(|s| {
            let all_present = s.hashes().iter().all(|h| !facts.missing.contains(h));
            let rerun = t.autosanitize && t.sanitize.as_deref() != Some("memcheck");
            let own = facts.tools.contains_key("compute-sanitizer");
            ship::ships(remote.ship_sanitizer, own, t.sanitize.is_some(), rerun, all_present)
        });
        let mut total: u64 = self.manifest.files_for(runner).map(|f| f.size).sum();
        if let Some(s) = shipping {
            for f in &s.files {
                sizes.entry(&f.sha256).or_insert((f.size, &f.local));
            }
            total += s.bytes();
        }
        let hashes: Vec<String> = sizes.keys().map(|h| h.to_string()).collect();
        let missing_bytes: u64 = facts.missing.iter().filter_map(|h| sizes.get(h.as_str())).map(|(s, _)| s).sum();
        if let Some(cluster) = &remote.slurm {
            // The login node has no GPU: the job checks its node's when it starts.
            let cf = slurm::parse_cluster(answer);
            slurm::check_cluster(&remote.name, &cf, cluster, workdir)?;
            shell.status(
                "Preflight",
                format!(
                    "login node: Slurm {}, glibc {}; the GPU is checked on the job's node",
                    cluster.sbatch_options().join(" "),
                    facts.glibc.as_deref().unwrap_or("?"),
                ),
            );
        } else {
            let target = preflight::check(&remote.name, facts, self.manifest, missing_bytes + total)?;
            for record in records.iter_mut() {
                record.target = Some(target.to_string());
                record.gpu = facts.gpu_name.clone();
                record.compute_capability = facts.compute_cap.map(|c| c.to_string());
            }
            shell.status(
                "Preflight",
                format!(
                    "{} (compute capability {}), driver CUDA {}, glibc {}, {}",
                    facts.gpu_name.as_deref().unwrap_or("?"),
                    facts.compute_cap.map(|c| c.to_string()).unwrap_or_default(),
                    facts.driver_cuda.as_deref().unwrap_or("?"),
                    facts.glibc.as_deref().unwrap_or("?"),
                    match facts.disk_free_bytes {
                        Some(free) => format!("{} free", human_bytes(free)),
                        None if guarded => "as preflighted before over this connection".into(),
                        None => "free disk unknown".into(),
                    }
                ),
            );
        }
        let mut tools_line = preflight::tools_summary(facts);
        if let Some(s) = shipping {
            tools_line.push_str(&format!("; compute-sanitizer {} shipped from here ({})", s.version, s.name));
        }
        shell.status("Tools", tools_line);
        let shippable = self.shipment.is_some() && remote.ship_sanitizer != crate::config::ShipSanitizer::Never;
        for note in preflight::check_tools(&remote.name, facts, self.tools, shipping.is_some(), shippable)? {
            shell.note(note);
        }
        let place = self.place(answer, records.len())?;
        crate::exit::check_interrupt()?;
        if let Some(connection) = connection.filter(|_| self.agent) {
            transport.attach_agent(shell, connection, facts.machine.as_deref());
        }

        // Upload only the blobs the remote lacks, as one tar stream, in the same command that
        // launches the run and follows it: one remote command (and one run of the remote
        // user's shell start-up files) for the whole run.
        panic_point("upload");
        let missing: Vec<String> = facts.missing.iter().filter(|h| sizes.contains_key(h.as_str())).cloned().collect();
        let record = &mut records[0];
        record.blobs_present = hashes.len() - missing.len();
        record.blobs_uploaded = missing.len();
        record.bytes_uploaded = missing_bytes;
        let feed: Option<StdinFeed> = if missing.is_empty() {
            None
        } else {
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
            Some(scripts::blob_tar(missing.iter().map(|h| (h.clone(), sizes[h.as_str()].1.to_path_buf())).collect()))
        };
        crate::exit::check_interrupt()?;

        // Launch detached; from here on the run outlives this process.
        let watchdog = remote.idle_shutdown.map(|d| (d, remote.shutdown_command.as_str()));
        let mut tools = self.tools.clone();
        tools.shipped = shipping.map(|s| ShippedSanitizer {
            name: s.name.clone(),
            sums: s.sums(),
            prefer: remote.ship_sanitizer == crate::config::ShipSanitizer::Always,
        });
        let specs: Vec<RunSpec> = records
            .iter()
            .map(|r| RunSpec {
                id: r.id.clone(),
                args: r.args.clone(),
                env: r.sweep.as_ref().map(|s| s.values.clone()).unwrap_or_default(),
            })
            .collect();
        let launch = Launch {
            workdir,
            runs: &specs,
            place,
            manifest: self.manifest,
            runner,
            watchdog,
            tools: &tools,
            ship: shipping,
            env: self.env,
        };
        let upload = (!missing.is_empty()).then_some((id.as_str(), missing.as_slice()));
        let guard = guarded.then_some(scripts::Guard { hashes: &hashes, need_bytes: missing_bytes + total });
        let sweep = records.len() > 1;
        let script = scripts::run(upload, guard, &launch, self.detach || sweep)?;
        let what = if sweep { format!("{} runs of a sweep", records.len()) } else { format!("run {id}") };
        let verb = if remote.slurm.is_some() { "Submitting" } else { "Running" };
        shell.status(verb, format!("{} on {} ({what})", runner.path, remote.name));
        // Saved as running first: if this process dies, `logs` can still find the run.
        for record in records.iter_mut() {
            record.state = State::Running;
            record.save(self.runs_dir)?;
        }
        let purpose = if upload.is_some() { format!("upload and launch {what}") } else { format!("launch {what}") };
        if self.detach || sweep {
            let opts = ExecOptions { stdin: feed, ..Default::default() };
            let launched =
                timed(&mut records[0].phases.upload, || run_script(shell, transport, &script, &purpose, opts));
            match launched {
                Ok(ended) => {
                    let mut demux = Demux::default();
                    demux.feed(&ended.stdout, &mut |_, _| {});
                    if !demux.bad_blobs.is_empty() {
                        records.iter_mut().for_each(|r| r.state = State::Failed);
                        return Ok(Attempt::BadBlobs(demux.bad_blobs));
                    }
                }
                Err(e) => {
                    records.iter_mut().for_each(|r| r.state = State::Failed);
                    return Err(self.submit_refused(e, &what));
                }
            }
            if self.detach {
                instance.leave_up();
                return Ok(Attempt::Ran(records.iter().map(|_| Outcome::Detached).collect()));
            }
            return self.follow_sweep(records).map(Attempt::Ran);
        }
        let record = &mut records[0];
        let run_dir = &self.run_dirs[0];
        let started = Instant::now();
        let max_fetch = remote.max_fetch;
        let followed = follow(shell, transport, &script, &purpose, feed, &id, run_dir, max_fetch, Interrupt::First);
        let launched_at = followed.launched_at.unwrap_or(started);
        record.phases.upload += launched_at.duration_since(started).as_secs_f64();
        if let Some(ended_at) = followed.ended_at {
            record.phases.run = ended_at.duration_since(launched_at).as_secs_f64();
            record.phases.fetch += ended_at.elapsed().as_secs_f64();
        } else {
            record.phases.run = launched_at.elapsed().as_secs_f64();
        }
        if !followed.launched {
            record.state = State::Failed;
            if !followed.bad_blobs.is_empty() && followed.exit_code == Some(scripts::BAD_BLOB) {
                return Ok(Attempt::BadBlobs(followed.bad_blobs));
            }
            if guarded && followed.exit_code == Some(scripts::STALE) {
                return Ok(Attempt::Stale);
            }
            if followed.exit_code == Some(slurm::SUBMIT_FAILED) {
                return Err(self.submit_refused(anyhow::anyhow!("sbatch said so above"), &what));
            }
            followed.result?;
            // Ctrl-C before the launch was confirmed: if the remote got that far anyway, that
            // run must not go on unwatched (a no-op when its folder does not exist).
            let _ = stop_remote_run(shell, transport, workdir, &id);
            return Err(crate::exit::interrupted_error());
        }
        // Every blob is there now (and those of a compute-sanitizer not shipped this time are
        // known as the preflight found them): the next run over this connection can skip its
        // preflight.
        if let Some(connection) = connection {
            let mut present = hashes.clone();
            let unshipped = self.shipment.filter(|_| shipping.is_none()).map(|s| s.hashes()).unwrap_or_default();
            present.extend(unshipped.into_iter().filter(|h| !facts.missing.contains(h)));
            let known = KnownRemote {
                connection: connection.to_string(),
                workdir: remote.workdir.clone(),
                answer: answer.lines().filter(|l| !l.starts_with("missing: ")).collect::<Vec<_>>().join("\n"),
                present,
            };
            known.save(remote);
        }
        let outcome = match followed.result? {
            Followed::Done(unpacked) => {
                record.refused = report_unpacked(shell, &unpacked, &id, &remote.name, max_fetch);
                Outcome::Exited(exit_status(run_dir))
            }
            Followed::Interrupted => {
                self.interrupted(records, 0)?;
                Outcome::Interrupted(exit_status(run_dir))
            }
        };
        self.job_facts(&mut records[0], run_dir)?;
        Ok(Attempt::Ran(vec![outcome]))
    }

    /// Where the runs go: a job (array) on a `slurm` remote; a sweep elsewhere over the GPUs that
    /// the preflight listed, `gpus_per_run` to a slot.
    fn place(&self, answer: &str, runs: usize) -> Result<Place<'_>> {
        if let Some(cluster) = &self.remote.slurm {
            return Ok(Place::Slurm(cluster, slurm::runnable_caps(&self.manifest.package.targets)));
        }
        if runs == 1 {
            return Ok(Place::Here);
        }
        let gpus = answer.lines().filter(|l| l.starts_with("gpu: ")).count();
        let per = self.gpus_per_run.max(1);
        if gpus < per {
            bail!(
                "{} has {gpus} GPU{}, fewer than the {per} that --gpus-per-run gives each run",
                self.remote.name,
                if gpus == 1 { "" } else { "s" }
            );
        }
        let slots: Vec<String> = (0..gpus / per)
            .map(|s| (s * per..(s + 1) * per).map(|g| g.to_string()).collect::<Vec<_>>().join(","))
            .collect();
        self.shell.status(
            "Spreading",
            format!("{runs} runs over {gpus} GPU{}, {per} per run", if gpus == 1 { "" } else { "s" }),
        );
        Ok(Place::Slots(slots))
    }

    /// A launch that failed: on a `slurm` remote most likely sbatch refusing the job.
    fn submit_refused(&self, e: anyhow::Error, what: &str) -> anyhow::Error {
        match &self.remote.slurm {
            Some(_) => e.context(format!(
                "Slurm did not take the job of {what}: check `partition`, `gres` (or `gpus`), `time` and `sbatch-args` of [remotes.{}]",
                self.remote.name
            )),
            None => e,
        }
    }

    /// Follows a sweep's runs one by one (they run meanwhile, on their own), each to its files;
    /// on Ctrl-C stops the rest, fetches them and returns.
    fn follow_sweep(&self, records: &mut [Record]) -> Result<Vec<Outcome>> {
        let (shell, remote, transport) = (self.shell, self.remote, self.transport);
        let mut outcomes = Vec::new();
        let n = records.len();
        for i in 0..n {
            let (id, dir) = (records[i].id.clone(), &self.run_dirs[i]);
            let label = records[i].sweep.as_ref().map(|s| s.label()).unwrap_or_default();
            shell.status("Following", format!("run {}/{n}: {label} (run {id})", i + 1));
            let script = scripts::stream(&remote.workdir, &id);
            let purpose = format!("follow run {id}");
            let started = Instant::now();
            let f = follow(shell, transport, &script, &purpose, None, &id, dir, remote.max_fetch, Interrupt::First);
            records[i].phases.run = started.elapsed().as_secs_f64();
            match f.result? {
                Followed::Done(unpacked) => {
                    records[i].refused = report_unpacked(shell, &unpacked, &id, &remote.name, remote.max_fetch);
                    self.job_facts(&mut records[i], dir)?;
                    outcomes.push(Outcome::Exited(exit_status(dir)));
                }
                Followed::Interrupted => {
                    self.interrupted(records, i)?;
                    for (j, r) in records.iter_mut().enumerate().skip(i) {
                        let _ = self.job_facts(r, &self.run_dirs[j]);
                        outcomes.push(Outcome::Interrupted(exit_status(&self.run_dirs[j])));
                    }
                    return Ok(outcomes);
                }
            }
        }
        Ok(outcomes)
    }

    /// After Ctrl-C: stops runs `from..` there (cancels their jobs) and fetches what they wrote.
    fn interrupted(&self, records: &mut [Record], from: usize) -> Result<()> {
        let (shell, remote, transport) = (self.shell, self.remote, self.transport);
        let ids: Vec<&str> = records[from..].iter().map(|r| r.id.as_str()).collect();
        let what = if ids.len() == 1 { format!("run {}", ids[0]) } else { format!("{} runs", ids.len()) };
        let stop = if remote.slurm.is_some() { "cancelling" } else { "stopping" };
        shell.status(
            "Interrupted",
            format!("{stop} {what} on {} and fetching the logs (Ctrl-C again skips that)", remote.name),
        );
        let opts = ExecOptions { interrupt: Interrupt::Second, ..Default::default() };
        run_script(shell, transport, &scripts::stop_runs(&remote.workdir, &ids), &format!("stop {what}"), opts)?;
        for (i, record) in records.iter_mut().enumerate().skip(from) {
            let (id, dir) = (record.id.clone(), &self.run_dirs[i]);
            let unpacked = timed(&mut record.phases.fetch, || {
                fetch(shell, transport, &remote.workdir, &id, dir, remote.max_fetch)
            })?;
            record.refused = report_unpacked(shell, &unpacked, &id, &remote.name, remote.max_fetch);
        }
        Ok(())
    }

    /// What a job's files say: its id and how it ended, and the GPU it found, checked as the
    /// preflight checks an ssh host's (a GPU the package has no cubin for fails the run with
    /// the same message).
    fn job_facts(&self, record: &mut Record, dir: &Path) -> Result<()> {
        if self.remote.slurm.is_none() {
            return Ok(());
        }
        let read = |name: &str| crate::safe_fs::read_no_follow(&dir.join(name)).ok();
        let text = |name: &str| read(name).map(|b| String::from_utf8_lossy(&b).into_owned());
        record.slurm_job = text(slurm::JOB_FILE).map(|t| crate::escape::line(t.trim()).chars().take(40).collect());
        record.slurm_state = text(slurm::STATE_FILE).and_then(|t| slurm::read_state(&t));
        let Some(found) = text(slurm::GPU_FILE) else { return Ok(()) };
        let Ok(facts) = preflight::parse_preflight(&found) else { return Ok(()) };
        record.gpu = facts.gpu_name.clone();
        record.compute_capability = facts.compute_cap.map(|c| c.to_string());
        match preflight::check(&self.remote.name, &facts, self.manifest, 0) {
            Ok(target) => record.target = Some(target.to_string()),
            Err(e) if read(slurm::REFUSED_FILE).is_some() => {
                record.state = State::Failed;
                return Err(e);
            }
            Err(_) => {}
        }
        Ok(())
    }
}

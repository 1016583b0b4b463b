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
use crate::remote::scripts::{self, EnvValue, Launch};
use crate::remote::ship::{self, Shipment};
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
    pub run_dir: &'a Path,
    pub runs_dir: &'a Path,
    pub detach: bool,
    /// The CUDA tools the runner runs under (or again under, after a kernel fault).
    pub tools: &'a RunTools,
    /// This machine's compute-sanitizer, when the run may send it along (see `remote::ship`).
    pub shipment: Option<&'a Shipment>,
    /// Variables the runner gets from here (`cargo gpu exec`).
    pub env: &'a [(String, EnvValue)],
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
    Ran(Outcome),
    /// The guard found the remote changed since the preflight it relied on.
    Stale,
    /// Stored blobs did not match their names; they were deleted there and nothing launched.
    BadBlobs(Vec<String>),
}

impl Session<'_> {
    pub fn run(&self, instance: &mut Instance<'_>, record: &mut Record) -> Result<Outcome> {
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
        // A detached run returns before the guard could speak: it always preflights.
        let connection = if self.detach { None } else { transport.connection_id(shell) };
        if let Some(known) = connection.as_deref().and_then(|c| KnownRemote::load(remote, c)) {
            let mut facts = preflight::parse_preflight(&known.answer)?;
            facts.missing = hashes.iter().filter(|h| !known.present.contains(h)).cloned().collect();
            // Checked on the remote by the guard instead.
            facts.disk_free_bytes = None;
            match self.attempt(instance, record, &facts, &known.answer, connection.as_deref(), true)? {
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
            let answer = timed(&mut record.phases.preflight, || {
                let ended = run_script(
                    shell,
                    transport,
                    &scripts::preflight(workdir, &hashes),
                    "preflight the remote",
                    Default::default(),
                )?;
                Ok(String::from_utf8_lossy(&ended.stdout).into_owned())
            })?;
            let facts = preflight::parse_preflight(&answer)?;
            preflight::remember(&remote.name, &facts);
            match self.attempt(instance, record, &facts, &answer, connection.as_deref(), false)? {
                Attempt::Ran(outcome) => return Ok(outcome),
                Attempt::Stale => bail!("run {} was refused by its own guard after a fresh preflight", record.id),
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

    /// Checks the facts, then uploads what they say is missing, launches and follows the run, in
    /// one remote command. `guarded`: the facts come from an earlier preflight.
    fn attempt(
        &self,
        instance: &mut Instance<'_>,
        record: &mut Record,
        facts: &RemoteFacts,
        answer: &str,
        connection: Option<&str>,
        guarded: bool,
    ) -> Result<Attempt> {
        let (shell, remote, transport) = (self.shell, self.remote, self.transport);
        let workdir = remote.workdir.as_str();
        let id = record.id.clone();
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
        let target = preflight::check(&remote.name, facts, self.manifest, missing_bytes + total)?;
        record.target = Some(target.to_string());
        record.gpu = facts.gpu_name.clone();
        record.compute_capability = facts.compute_cap.map(|c| c.to_string());
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
        let mut tools_line = preflight::tools_summary(facts);
        if let Some(s) = shipping {
            tools_line.push_str(&format!("; compute-sanitizer {} shipped from here ({})", s.version, s.name));
        }
        shell.status("Tools", tools_line);
        let shippable = self.shipment.is_some() && remote.ship_sanitizer != crate::config::ShipSanitizer::Never;
        for note in preflight::check_tools(&remote.name, facts, self.tools, shipping.is_some(), shippable)? {
            shell.note(note);
        }
        crate::exit::check_interrupt()?;

        // Upload only the blobs the remote lacks, as one tar stream, in the same command that
        // launches the run and follows it: one remote command (and one run of the remote
        // user's shell start-up files) for the whole run.
        panic_point("upload");
        let missing: Vec<String> = facts.missing.iter().filter(|h| sizes.contains_key(h.as_str())).cloned().collect();
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
            let items: Vec<(String, PathBuf)> =
                missing.iter().map(|h| (h.clone(), sizes[h.as_str()].1.to_path_buf())).collect();
            Some(Box::new(move |stdin: &mut std::process::ChildStdin| -> std::io::Result<()> {
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
            }))
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
        let launch = Launch {
            workdir,
            id: &id,
            manifest: self.manifest,
            runner,
            args: &record.args,
            watchdog,
            tools: &tools,
            ship: shipping,
            env: self.env,
        };
        let upload = (!missing.is_empty()).then_some((id.as_str(), missing.as_slice()));
        let guard = guarded.then_some(scripts::Guard { hashes: &hashes, need_bytes: missing_bytes + total });
        let script = scripts::run(upload, guard, &launch, self.detach)?;
        shell.status("Running", format!("{} on {} (run {id})", runner.path, remote.name));
        // Saved as running first: if this process dies, `logs` can still find the run.
        record.state = State::Running;
        record.save(self.runs_dir)?;
        let purpose = if upload.is_some() { format!("upload and launch run {id}") } else { format!("launch run {id}") };
        if self.detach {
            let opts = ExecOptions { stdin: feed, ..Default::default() };
            let launched = timed(&mut record.phases.upload, || run_script(shell, transport, &script, &purpose, opts));
            match launched {
                Ok(ended) => {
                    let mut demux = Demux::default();
                    demux.feed(&ended.stdout, &mut |_, _| {});
                    if !demux.bad_blobs.is_empty() {
                        record.state = State::Failed;
                        return Ok(Attempt::BadBlobs(demux.bad_blobs));
                    }
                }
                Err(e) => {
                    record.state = State::Failed;
                    return Err(e);
                }
            }
            instance.leave_up();
            return Ok(Attempt::Ran(Outcome::Detached));
        }
        let started = Instant::now();
        let max_fetch = remote.max_fetch;
        let followed =
            follow(shell, transport, &script, &purpose, feed, &id, self.run_dir, max_fetch, Interrupt::First);
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
        match followed.result? {
            Followed::Done(unpacked) => {
                record.refused = report_unpacked(shell, &unpacked, &id, &remote.name, max_fetch);
                Ok(Attempt::Ran(Outcome::Exited(exit_status(self.run_dir))))
            }
            Followed::Interrupted => {
                shell.status(
                    "Interrupted",
                    format!("stopping run {id} on {} and fetching its logs (Ctrl-C again skips that)", remote.name),
                );
                stop_remote_run(shell, transport, workdir, &id)?;
                let unpacked =
                    timed(&mut record.phases.fetch, || fetch(shell, transport, workdir, &id, self.run_dir, max_fetch))?;
                record.refused = report_unpacked(shell, &unpacked, &id, &remote.name, max_fetch);
                Ok(Attempt::Ran(Outcome::Interrupted(exit_status(self.run_dir))))
            }
        }
    }
}

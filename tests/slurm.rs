//! `remote-run` on a `slurm` remote, against a real single-node cluster the tests bring up (see
//! `support::slurm`), with the login node reached over ssh (a loopback sshd) and with `host =
//! "local"`; and sweeps: a job array on Slurm, GPU slots on an ssh host.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cargo_gpu::runs::{Record, State};
use support::{
    ctrl_c, make_package, read_text, runner_stdout, toml_str, wait_for, Cluster, Remote, Run, SshdOptions, World,
    RUNNER,
};

const CUBIN: &[u8] = b"\x7fELF fake cubin";

fn package(world: &World, runner: &str) -> PathBuf {
    let dir = world.path("pkg");
    make_package(&dir, runner, &[("k.sm_90a.cubin", CUBIN)], &["sm_90a"]);
    dir
}

/// The slurm keys of a remote's table.
fn slurm_keys(extra: &str) -> String {
    format!("kind = \"slurm\"\npartition = \"gpu\"\ngres = \"gpu:1\"\n{extra}")
}

/// A world whose remote `c` is a `slurm` remote on this machine (`host = "local"`).
fn local_cluster_world(extra: &str) -> World {
    let world = World::new();
    let work = world.path("w");
    world.write_config(&format!(
        "[remotes.c]\nhost = \"local\"\nworkdir = {}\n{}",
        toml_str(&work.display().to_string()),
        slurm_keys(extra)
    ));
    world
}

fn run_local(world: &World, cluster: &Cluster, pkg: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let pkg = pkg.display().to_string();
    let mut cmd = world.cmd(&[&["remote-run", "--remote", "c", "--package", &pkg], args].concat());
    cmd.env("SLURM_CONF", &cluster.conf);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::of(&mut cmd)
}

fn record(world: &World, id: &str) -> Record {
    Record::load(&world.runs_dir(), id).unwrap()
}

#[test]
fn ssh_login_node_runs_queues_cancels_and_refuses() {
    let Some(cluster) = Cluster::start() else { return };
    let env = cluster.env_word();
    let Some(it) = Remote::start(SshdOptions { env: &env, ..SshdOptions::default() }) else { return };
    let pkg = package(&it.world, RUNNER);
    it.configure(&slurm_keys(""));

    // Exit codes come back from the run's own exit-status file; output streams like any run.
    let args = ["exit=7", "two words"];
    let out = it.remote_run(&pkg, &["--", args[0], args[1]]);
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    assert_eq!(out.stdout, runner_stdout(&args));
    out.stderr_has("Submitting").stderr_has("the GPU is checked on the job's node");
    let rec = it.world.last_record();
    assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(7)));
    assert!(rec.slurm_job.as_deref().is_some_and(|j| j.parse::<u32>().is_ok()), "{rec:?}");
    assert_eq!(rec.slurm_state, None);
    assert_eq!(rec.gpu.as_deref(), Some("NVIDIA H100 80GB HBM3"), "the job recorded its node's GPU");
    assert_eq!(rec.target.as_deref(), Some("sm_90a"));
    let gpu = read_text(&it.world.runs_dir().join(&rec.id).join("gpu.txt"));
    assert!(gpu.contains("node: ") && gpu.contains("gpu: NVIDIA H100 80GB HBM3, 9.0, 580.95.05"), "{gpu}");

    // One job holds the cluster's one GPU; a second one waits for it, and says why.
    let first = it.spawn(&pkg, &["--", "sleep=60"]);
    let first_dir = it.wait_sleeping();
    let second_err = it.world.path("second.err");
    let mut second = it.remote_run_cmd(&pkg, &["--", "exit=0"]);
    let second = second
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&second_err).unwrap())
        .spawn()
        .unwrap();
    wait_for("the second run to say it is pending", Duration::from_secs(30), || {
        read_text(&second_err).contains("Pending")
    });
    let pending = read_text(&second_err);
    assert!(pending.contains("waits in the Slurm queue: Resources (waited "), "{pending}");
    assert!(cluster.queue().iter().any(|(_, s, r)| s == "PENDING" && r == "Resources"), "{:?}", cluster.queue());

    // Ctrl-C cancels the pending job, and the record says so.
    ctrl_c(second, Duration::from_secs(20));
    let rec = it.world.last_record();
    assert_eq!(rec.state, State::Interrupted);
    assert_eq!(rec.slurm_state.as_deref(), Some("CANCELLED"));
    assert_eq!(rec.exit_text(), "cancelled");
    assert_eq!(cluster.job_state(rec.slurm_job.as_deref().unwrap()), "CANCELLED");

    // Ctrl-C cancels the running one too, and what it wrote still comes back.
    let out = ctrl_c(first, Duration::from_secs(30));
    out.stderr_has("cancelling run");
    let id = first_dir.file_name().unwrap().to_string_lossy().into_owned();
    let rec = record(&it.world, &id);
    assert_eq!((rec.state, rec.exit_text().as_str()), (State::Interrupted, "cancelled"));
    let local = it.world.runs_dir().join(&id);
    assert!(read_text(&local.join("stdout.log")).contains("sleeping"), "fetched after the cancel");
    assert_eq!(cluster.job_state(rec.slurm_job.as_deref().unwrap()), "CANCELLED");
    wait_for("the queue to empty", Duration::from_secs(10), || cluster.queue().is_empty());

    // What the login node can tell is checked before anything is uploaded; what only sbatch
    // knows is its refusal, named.
    it.configure(&slurm_keys("").replace("partition = \"gpu\"", "partition = \"gpus\""));
    let out = it.remote_run(&pkg, &[]);
    assert_eq!(out.code, Some(1));
    out.stderr_has("it has no partition `gpus`; it has gpu: fix `partition` in [remotes.it]");
    it.configure(&slurm_keys("").replace("gpu:1", "gpu:h100:1"));
    it.remote_run(&pkg, &[]).stderr_has("has no gres `gpu:h100` (its nodes have gpu:1)");
    it.configure(&slurm_keys("").replace("gpu:1", "gpu:2"));
    let out = it.remote_run(&pkg, &[]);
    assert_eq!(out.code, Some(1));
    out.stderr_has("Slurm did not take the job of run").stderr_has("sbatch: error");
}

#[test]
fn local_login_node_runs_and_refuses_a_gpu_it_has_no_cubin_for_at_the_start_of_the_job() {
    let Some(cluster) = Cluster::start() else { return };
    let world = local_cluster_world("");
    let pkg = package(&world, RUNNER);
    let out = run_local(&world, &cluster, &pkg, &["--", "exit=3"], &[]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert_eq!(out.stdout, runner_stdout(&["exit=3"]));
    let rec = world.last_record();
    assert_eq!((rec.host, rec.exit_status), (None, Some(3)));
    assert!(rec.slurm_job.is_some());

    // A client that dies leaves the job running; `logs` reattaches, follows it to its end and
    // completes its record.
    let pkg_s = pkg.display().to_string();
    let mut cmd = world.cmd(&["remote-run", "--remote", "c", "--package", &pkg_s, "--", "sleep=3"]);
    let client = cmd.env("SLURM_CONF", &cluster.conf).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let client = client.spawn().unwrap();
    wait_for("the job to run", Duration::from_secs(20), || {
        std::fs::read_dir(world.path("w/runs"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| read_text(&e.path().join("stdout.log")).contains("sleeping"))
    });
    support::signal(&client, "-KILL");
    let _ = support::finish(client);
    let rec = world.last_record();
    assert_eq!(rec.state, State::Running);
    assert!(cluster.queue().iter().any(|(_, s, _)| s == "RUNNING"), "the job goes on: {:?}", cluster.queue());
    let mut logs = world.cmd(&["logs", &rec.id]);
    let out = Run::of(logs.env("SLURM_CONF", &cluster.conf));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.ends_with("woke up\nlast words without newline"), "{}", out.stdout);
    let rec = record(&world, &rec.id);
    assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(0)));

    // The compute node's GPU is a Blackwell consumer card: the job stops before the runner, with
    // the message the ssh transport's preflight gives.
    let out = run_local(&world, &cluster, &pkg, &[], &[("CARGO_GPU_FAKE_GPU", "rtx5060ti")]);
    assert_eq!(out.code, Some(1));
    out.stderr_has(
        "package has sm_90a; c is compute capability 12.0 (NVIDIA GeForce RTX 5060 Ti): build with --target sm_120a",
    );
    let rec = world.last_record();
    assert_eq!(rec.state, State::Failed);
    assert_eq!(rec.gpu.as_deref(), Some("NVIDIA GeForce RTX 5060 Ti"));
    assert!(!read_text(&world.runs_dir().join(&rec.id).join("stdout.log")).contains("hello"), "the runner never ran");
}

#[test]
fn a_job_over_its_time_limit_says_so() {
    let Some(cluster) = Cluster::start() else { return };
    // Slurm counts limits in minutes and checks them every 30 s: this takes 60 to 90 s.
    let world = local_cluster_world("time = \"00:00:01\"\n");
    let pkg = package(&world, RUNNER);
    let t = Instant::now();
    let out = run_local(&world, &cluster, &pkg, &["--", "sleep=300"], &[]);
    assert!(t.elapsed() < Duration::from_secs(200));
    assert_eq!(out.code, Some(124), "{}", out.stderr);
    out.stderr_has("reached the time limit of its Slurm job").stderr_has("not by a crash: raise `time`");
    assert!(!out.stderr.contains("without an exit status"), "{}", out.stderr);
    let rec = world.last_record();
    assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(124)));
    assert_eq!(rec.slurm_state.as_deref(), Some("TIMEOUT"));
    assert_eq!(rec.exit_text(), "time limit");
    assert!(world.run(&["runs"]).stdout.contains("time limit"));
}

/// A runner for sweeps: reports its values, arguments and GPUs, and writes a kit result whose
/// median is least for BLOCK=128, STAGES=2.
const SWEEP_RUNNER: &str = r#"#!/bin/sh
echo "block=$BLOCK stages=$STAGES args=$* gpus=${CUDA_VISIBLE_DEVICES-unset}"
printf '%s\n' "${CUDA_VISIBLE_DEVICES-unset}" > "$CARGO_GPU_OUT/gpus.txt"
date +%s.%N > "$CARGO_GPU_OUT/start.txt"
ms=$(( (BLOCK - 128) * (BLOCK - 128) + STAGES * 10 ))
rate=$(awk -v m="$ms" 'BEGIN { printf "%.4f", 30 / m }')
printf '{"name":"bench","timing":{"median_ms":%d,"tflops":%s},"check":{"passed":true}}' "$ms" "$rate" > "$CARGO_GPU_OUT/bench.json"
sleep "${NAP:-0.1}"
date +%s.%N > "$CARGO_GPU_OUT/end.txt"
[ "$BLOCK" = 256 ] && [ "$STAGES" = 4 ] && exit 5
exit 0
"#;

/// Checks the nine records of a 3x3 sweep and the summary `runs` prints.
fn assert_sweep_of_nine(world: &World) -> Vec<Record> {
    let mut records: Vec<Record> = world.run_ids().iter().map(|id| record(world, id)).collect();
    assert_eq!(records.len(), 9);
    // The runs of a sweep start in the same millisecond: their ids do not sort in sweep order.
    records.sort_by_key(|r| r.sweep.as_ref().map(|s| s.index));
    let sweep = records[0].sweep.clone().unwrap().id;
    for (i, r) in records.iter().enumerate() {
        let tag = r.sweep.as_ref().unwrap();
        assert_eq!((tag.id.as_str(), tag.index), (sweep.as_str(), i));
        let (block, stages) = (&tag.values[0].1, &tag.values[1].1);
        assert_eq!(r.args, [format!("--block={block}"), "x".into()], "{{BLOCK}} was replaced");
        let out = read_text(&world.runs_dir().join(&r.id).join("stdout.log"));
        assert!(out.starts_with(&format!("block={block} stages={stages} args=--block={block} x ")), "{out}");
        let want = if (block.as_str(), stages.as_str()) == ("256", "4") { 5 } else { 0 };
        assert_eq!((r.state, r.exit_status), (State::Finished, Some(want)), "{}", r.id);
    }
    let listing = world.run(&["runs"]).stdout;
    assert_eq!(listing.matches("sweep ").count(), 1, "{listing}");
    let summary = &listing[listing.find(&format!("sweep {sweep}: 9 runs, best first")).expect(&listing)..];
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    let cells = |i: usize| rows[i].split_whitespace().take(8).collect::<Vec<_>>().join(" ");
    assert_eq!(cells(0), "BLOCK STAGES EXIT bench MS RATE CHECK RUN", "{summary}");
    let best = records.iter().find(|r| r.args[0] == "--block=128" && r.sweep.as_ref().unwrap().index == 3).unwrap();
    assert_eq!(cells(1), format!("128 2 0 20.0000 1.5 TFLOP/s pass {}", best.id), "best first: {summary}");
    assert!(cells(2).starts_with("128 3 0 30.0000"), "{summary}");
    assert!(cells(9).starts_with("256 4 5 16424.0000"), "{summary}");
    records
}

#[test]
fn a_sweep_on_slurm_is_one_job_array_of_nine_runs() {
    let Some(cluster) = Cluster::start() else { return };
    let world = local_cluster_world("");
    let pkg = package(&world, SWEEP_RUNNER);
    let args = ["--sweep", "BLOCK=64,128,256", "--sweep", "STAGES=2,3,4", "--", "--block={BLOCK}", "x"];
    let out = run_local(&world, &cluster, &pkg, &args, &[]);
    assert_eq!(out.code, Some(5), "the first run that failed gives the code\n{}", out.stderr);
    out.stderr_has("Following run 9/9: BLOCK=256 STAGES=4");
    assert!(out.stdout.contains("sweep ") && out.stdout.contains("9 runs, best first"), "{}", out.stdout);
    let records = assert_sweep_of_nine(&world);
    let array = records[0].slurm_job.clone().unwrap();
    let (array, task) = array.split_once('_').expect("a task of an array");
    assert_eq!(task, "0");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.slurm_job.as_deref(), Some(format!("{array}_{i}").as_str()), "one array, a task per run");
        let gpus = read_text(&world.runs_dir().join(&r.id).join("out/gpus.txt"));
        assert_eq!(gpus, "0\n", "each task got the node's one GPU");
    }
}

#[test]
fn a_sweep_over_ssh_is_one_upload_and_one_start_spread_over_the_gpus() {
    let Some(it) = Remote::start(SshdOptions { env: "CARGO_GPU_FAKE_GPUS=2 NAP=0.5", ..SshdOptions::default() }) else {
        return;
    };
    let pkg = package(&it.world, SWEEP_RUNNER);
    it.configure(&it.hooks());
    let args = ["--sweep", "BLOCK=64,128,256", "--sweep", "STAGES=2,3,4", "--", "--block={BLOCK}", "x"];
    let out = it.remote_run(&pkg, &args);
    assert_eq!(out.code, Some(5), "{}", out.stderr);
    out.stderr_has("Spreading 9 runs over 2 GPUs, 1 per run");
    assert_eq!(it.hook_log(), "start\nstop\n", "one instance start for the sweep");
    let records = assert_sweep_of_nine(&it.world);
    assert_eq!(records[0].blobs_uploaded, 2, "one upload");
    assert!(records[1..].iter().all(|r| r.blobs_uploaded == 0));
    // One run per GPU at a time, both GPUs used.
    let mut spans: Vec<(String, f64, f64)> = Vec::new();
    for r in &records {
        let dir = it.world.runs_dir().join(&r.id).join("out");
        let num = |f: &str| read_text(&dir.join(f)).trim().parse::<f64>().unwrap();
        spans.push((read_text(&dir.join("gpus.txt")).trim().to_string(), num("start.txt"), num("end.txt")));
    }
    for gpu in ["0", "1"] {
        let mut on: Vec<&(String, f64, f64)> = spans.iter().filter(|s| s.0 == gpu).collect();
        assert!(!on.is_empty(), "GPU {gpu} ran something: {spans:?}");
        on.sort_by(|a, b| a.1.total_cmp(&b.1));
        for w in on.windows(2) {
            assert!(w[0].2 <= w[1].1, "two runs at once on GPU {gpu}: {spans:?}");
        }
    }
    assert_eq!(spans.iter().filter(|s| s.0 == "0" || s.0 == "1").count(), 9, "{spans:?}");

    // More GPUs per run than the host has is refused before anything runs.
    let out = it.remote_run(&pkg, &["--sweep", "BLOCK=64", "--sweep", "STAGES=2,3", "--gpus-per-run", "4"]);
    out.stderr_has("has 2 GPUs, fewer than the 4 that --gpus-per-run gives each run");
}

/// Ctrl-C in the middle of a sweep on an ssh host: every run there stops, every record says
/// interrupted, and the instance's `stop` command still runs.
#[test]
fn ctrl_c_during_a_sweep_stops_every_run_and_the_instance() {
    let Some(it) = Remote::start(SshdOptions { env: "CARGO_GPU_FAKE_GPUS=2 NAP=60", ..SshdOptions::default() }) else {
        return;
    };
    let pkg = package(&it.world, SWEEP_RUNNER);
    it.configure(&it.hooks());
    let child = it.spawn(&pkg, &["--sweep", "BLOCK=64,128", "--sweep", "STAGES=2", "--", "x"]);
    // Both runs started, one per GPU.
    wait_for("both runs of the sweep to start", Duration::from_secs(30), || {
        it.remote_runs().iter().filter(|r| r.join("out/start.txt").is_file()).count() == 2
    });
    let pids: Vec<String> = it.remote_runs().iter().map(|r| read_text(&r.join("pid")).trim().to_string()).collect();
    let out = ctrl_c(child, Duration::from_secs(30));
    assert_eq!(out.code, Some(130), "{}", out.stderr);
    assert_eq!(it.hook_log(), "start\nstop\n", "the instance was stopped");
    let records: Vec<Record> = it.world.run_ids().iter().map(|id| record(&it.world, id)).collect();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.state == State::Interrupted), "{records:?}");
    for pid in pids {
        let alive = Run::of(std::process::Command::new("kill").args(["-0", &pid]));
        assert_ne!(alive.code, Some(0), "run {pid} was stopped there");
    }
    assert!(it.remote_runs().iter().all(|r| !r.join("out/end.txt").exists()), "no run slept to its end");
}

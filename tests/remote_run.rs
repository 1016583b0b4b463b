//! `cargo gpu remote-run`, `runs`, `logs`, `remote` and `doctor --remote` against a real sshd on
//! loopback (and `--remote local`), with hand-made packages whose runner is a shell script.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cargo_gpu::package::manifest::Manifest;
use cargo_gpu::runs::{Record, State};
use support::{
    ctrl_c, finish, make_package, require_cuda, runner_stdout, text, toml_str, tree, wait_for, write_manifest, Remote,
    Run, SshdOptions, TestProject, World, RUNNER,
};

const CUBIN_A: &[u8] = b"\x7fELF fake cubin a";
const CUBIN_B: &[u8] = b"\x7fELF fake cubin b";

fn package(world: &World) -> (PathBuf, Manifest) {
    let dir = world.path("pkg");
    let m = make_package(&dir, RUNNER, &[("a.sm_90a.cubin", CUBIN_A), ("b.sm_90a.cubin", CUBIN_B)], &["sm_90a"]);
    (dir, m)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Checks what a finished run brought back against what the runner does.
fn assert_fetched(world: &World, args: &[&str], exit: i32) {
    let rec = world.last_record();
    let dir = world.runs_dir().join(&rec.id);
    assert_eq!(text(&read(&dir.join("stdout.log"))), runner_stdout(args));
    assert_eq!(text(&read(&dir.join("stderr.log"))), "runner warns\n");
    assert_eq!(text(&read(&dir.join("exit-status"))), format!("{exit}\n"));
    assert_eq!(read(&dir.join("out/result.bin")), b"\x00\x01\x02\xffbinary");
    assert_eq!(text(&read(&dir.join("out/sub/n.txt"))), "nested\n");
    let want_args: String = args.iter().map(|a| format!("{a}\n")).collect();
    assert_eq!(text(&read(&dir.join("out/args.txt"))), want_args);
    assert_eq!(text(&read(&dir.join("out/kernels.txt"))), "a.sm_90a.cubin\nb.sm_90a.cubin\n");
    assert_eq!(read(&dir.join("out/cubins.bin")), [CUBIN_A, CUBIN_B].concat());
    assert!(text(&read(&dir.join("nvidia-smi.txt"))).contains("CUDA Version"));
    assert!(text(&read(&dir.join("env.txt"))).contains("CARGO_GPU_OUT="));
    assert_eq!(
        tree(&dir),
        [
            "env.txt",
            "exit-status",
            "nvidia-smi.txt",
            "out/args.txt",
            "out/cubins.bin",
            "out/kernels.txt",
            "out/result.bin",
            "out/sub/n.txt",
            "record.toml",
            "stderr.log",
            "stdout.log"
        ]
    );
}

#[test]
fn ssh_run_uploads_streams_fetches_records_and_returns_the_exit_code() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let (pkg, manifest) = package(&it.world);
    it.configure("price-per-hour = 3.60");

    let args = ["exit=7", "two words"];
    let out = it.remote_run(&pkg, &["--", args[0], args[1]]);
    assert_eq!(out.code, Some(7), "the runner's exit code comes back");
    assert_eq!(out.stdout, runner_stdout(&args), "our stdout is the runner's stdout, byte for byte");
    out.stderr_has("runner warns\n").stderr_has("Uploading 3 blobs").stderr_has("Cost $");
    assert_fetched(&it.world, &args, 7);

    let rec = it.world.last_record();
    assert_eq!(rec.remote, "it");
    assert_eq!(rec.host.as_deref(), Some(support::ALIAS));
    assert_eq!(rec.target.as_deref(), Some("sm_90a"));
    assert_eq!(rec.gpu.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(rec.compute_capability.as_deref(), Some("9.0"));
    assert_eq!(rec.package_digest, manifest.digest());
    assert_eq!(rec.state, State::Finished);
    assert_eq!(rec.exit_status, Some(7));
    assert_eq!(rec.args, args);
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (3, 0));
    assert_eq!(rec.bytes_uploaded, manifest.files.iter().map(|f| f.size).sum::<u64>());
    assert!(rec.phases.connect > 0.0 && rec.phases.preflight > 0.0 && rec.phases.upload > 0.0);
    assert!(rec.phases.run > 0.0 && rec.phases.fetch > 0.0);
    let cost = rec.cost.expect("a priced remote has a cost");
    assert!((cost - 3.6 * rec.wall_seconds / 3600.0).abs() < 1e-9, "{cost}");
    // The remote kept the blobs under their hashes, and nothing else in blobs/.
    let blobs = tree(&it.work.join("blobs"));
    let mut hashes: Vec<String> = manifest.files.iter().map(|f| f.sha256.clone()).collect();
    hashes.sort();
    assert_eq!(blobs, hashes);

    // Nothing changed: nothing is uploaded.
    let out = it.remote_run(&pkg, &[]).ok();
    assert_eq!(out.stdout, runner_stdout(&[]));
    let rec = it.world.last_record();
    assert_eq!((rec.blobs_uploaded, rec.blobs_present, rec.bytes_uploaded), (0, 3, 0));

    // One kernel changed: exactly that cubin travels.
    std::fs::write(pkg.join("kernels/b.sm_90a.cubin"), b"\x7fELF changed cubin b").unwrap();
    write_manifest(&pkg, &["sm_90a"]);
    it.remote_run(&pkg, &["--", "exit=0"]).ok();
    let rec = it.world.last_record();
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (1, 2));
    assert_eq!(rec.bytes_uploaded, b"\x7fELF changed cubin b".len() as u64);

    // `runs` lists all three; `logs` prints a finished run again and returns its code.
    let listing = it.world.run(&["runs"]).stdout;
    assert_eq!(listing.lines().count(), 4, "{listing}");
    assert!(listing.lines().nth(1).unwrap().contains(" it ") && listing.contains("sm_90a"), "{listing}");
    let ledger = it.world.run(&["runs", "--cost"]).stdout;
    assert!(ledger.contains("it  3  ") && ledger.contains("total  3  "), "{ledger}");
    let first = it.world.run_ids()[0].clone();
    let out = it.world.run(&["logs", &first]);
    assert_eq!(out.code, Some(7));
    assert_eq!(out.stdout, runner_stdout(&args));
    assert_eq!(out.stderr, "runner warns\n");
}

/// A configuration with only the remote `local`, working in `work`.
fn local_config(work: &Path) -> String {
    format!("[remotes.local]\nworkdir = {}\n", toml_str(&work.display().to_string()))
}

#[test]
fn local_remote_runs_the_same_pipeline_without_ssh() {
    let world = World::new();
    let (pkg, manifest) = package(&world);
    world.write_config(&local_config(&world.path("local-work")));
    // No ssh on PATH at all: a local run must not need it.
    let out = Run::of(
        world
            .cmd(&["remote-run", "--remote", "local", "--package", &pkg.display().to_string(), "--", "exit=3", "x"])
            .env("PATH", format!("{}:/usr/bin:/bin", world.fakebin.display()))
            .env("CARGO_GPU_SSH_CONTROL_DIR", "/nonexistent/never-used"),
    );
    assert_eq!(out.code, Some(3));
    assert_eq!(out.stdout, runner_stdout(&["exit=3", "x"]));
    assert_fetched(&world, &["exit=3", "x"], 3);
    let rec = world.last_record();
    assert_eq!(rec.remote, "local");
    assert_eq!(rec.host, None);
    assert_eq!(rec.package_digest, manifest.digest());
    assert_eq!((rec.blobs_uploaded, rec.exit_status), (3, Some(3)));
    // The record has the same fields as an ssh run's (host aside, which names the ssh host).
    let local: toml::Table =
        toml::from_str(&std::fs::read_to_string(world.runs_dir().join(&rec.id).join("record.toml")).unwrap()).unwrap();
    let mut keys: Vec<&String> = local.keys().collect();
    keys.sort();
    let expected = [
        "args",
        "blobs-present",
        "blobs-uploaded",
        "bytes-uploaded",
        "compute-capability",
        "exit-status",
        "gpu",
        "id",
        "left-up",
        "package",
        "package-digest",
        "package-name",
        "phases",
        "remote",
        "started",
        "state",
        "target",
        "wall-seconds",
        "workdir",
    ];
    assert_eq!(keys, expected);
    let phases: Vec<&String> = local["phases"].as_table().unwrap().keys().collect();
    assert_eq!(phases, ["connect", "fetch", "preflight", "run", "stop", "upload"]);
}

#[test]
fn names_with_spaces_quotes_and_command_substitution_arrive_verbatim() {
    let Some(mut it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = it.world.path("pkg 'q' $(touch pwned) dir");
    make_package(&pkg, RUNNER, &[("a.sm_90a.cubin", CUBIN_A), ("b.sm_90a.cubin", CUBIN_B)], &["sm_90a"]);
    it.work = it.world.path("x/it's $(touch pwned) dir");
    it.configure("");
    let args = ["exit=0", "a b", "$(touch pwned)", "it's \"quoted\"", "`touch pwned`", ";rm -rf x", "*", "", "~"];
    let out = it.remote_run(&pkg, &[&["--"][..], &args].concat()).ok();
    assert_eq!(out.stdout, runner_stdout(&args));
    assert_fetched(&it.world, &args, 0);
    assert!(it.work.join("blobs").is_dir(), "the workdir is used exactly as named");
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    for dir in [it.world.tmp.path(), &it.world.cwd, &home, &it.work, &pkg, Path::new("/")] {
        assert!(!dir.join("pwned").exists(), "a `$(...)` ran in {}", dir.display());
    }
    let found: Vec<String> = tree(it.world.tmp.path()).into_iter().filter(|p| p.ends_with("pwned")).collect();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn an_unknown_host_key_fails_the_run() {
    let Some(it) = Remote::start(SshdOptions { known_host: false, ..Default::default() }) else { return };
    let (pkg, _) = package(&it.world);
    it.configure("");
    let out = it.remote_run(&pkg, &[]).fails_with(1);
    out.stderr_has("failed to connect: the connection to it (cargo-gpu-test) failed");
    out.stderr_has("Host key verification failed");
    assert!(!it.work.exists(), "nothing reached the remote");
    assert!(out.stdout.is_empty());
}

#[test]
fn stop_runs_exactly_once_on_success_and_on_runner_failure() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let (pkg, _) = package(&it.world);
    it.configure(&it.hooks());
    it.remote_run(&pkg, &["--", "exit=0"]).ok();
    assert_eq!(it.hook_log(), "start\nstop\n");
    assert!(!it.world.last_record().left_up);
    it.remote_run(&pkg, &["--", "exit=3"]).fails_with(3);
    assert_eq!(it.hook_log(), "start\nstop\nstart\nstop\n");
    // --keep-up skips the stop.
    let out = it.remote_run(&pkg, &["--keep-up"]).ok();
    assert_eq!(it.hook_log(), "start\nstop\nstart\nstop\nstart\n");
    assert!(it.world.last_record().left_up);
    out.stderr_has("`cargo gpu remote down it` stops it");
}

#[test]
fn an_unreachable_host_fails_within_the_connect_timeout_and_still_stops() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let (pkg, _) = package(&it.world);
    let closed = support::free_port().to_string();
    let table = it.table(&format!("connect-timeout = \"2s\"\nstop = \"echo stop >> {}\"", it.log.display()));
    let table = table.replace("ssh-options = [\"-F\", ", &format!("ssh-options = [\"-p\", \"{closed}\", \"-F\", "));
    it.world.write_config(&table);
    let t = Instant::now();
    let out = it.remote_run(&pkg, &[]);
    assert!(t.elapsed() < Duration::from_secs(6), "took {:?}", t.elapsed());
    let out = out.fails_with(1);
    out.stderr_has("failed to connect: the connection to it (cargo-gpu-test) failed");
    out.stderr_has("Connection refused");
    assert_eq!(it.hook_log(), "stop\n");
    assert_eq!(it.world.last_record().state, State::Failed);
}

#[test]
fn a_gpu_that_cannot_run_the_package_is_refused_before_upload() {
    let Some(it) = Remote::start(SshdOptions { fake_gpu: "rtx5060ti", ..Default::default() }) else { return };
    let (pkg, _) = package(&it.world);
    it.configure("");
    it.remote_run(&pkg, &[]).fails_with(1).stderr_has(
        "package has sm_90a; it is compute capability 12.0 (NVIDIA GeForce RTX 5060 Ti): build with --target sm_120a",
    );
    assert!(tree(&it.work.join("blobs")).is_empty(), "nothing was uploaded");
    // Too old a driver or glibc is refused the same way.
    let sm120 = it.world.path("pkg120");
    make_package(&sm120, RUNNER, &[("a.sm_120a.cubin", CUBIN_A)], &["sm_120a"]);
    let m = std::fs::read_to_string(sm120.join("manifest.toml")).unwrap();
    let refusal = |what: &str, with: &str| {
        std::fs::write(sm120.join("manifest.toml"), m.replace(what, with)).unwrap();
        it.remote_run(&sm120, &[]).fails_with(1)
    };
    refusal("min-driver-cuda = \"13.0\"", "min-driver-cuda = \"13.1\"")
        .stderr_has("it's driver supports CUDA 13.0, older than the 13.1 that packages from CUDA 13.0.88 need: build with CUDA 13.0");
    refusal("glibc-floor = \"2.34\"", "glibc-floor = \"2.34\"\nglibc = \"9.99\"")
        .stderr_has("older than the 9.99 the runner for");
    assert!(tree(&it.work.join("blobs")).is_empty(), "nothing was uploaded");

    let report = it.world.run(&["doctor", "--remote", "it"]).ok().stdout;
    assert!(
        report.contains("NVIDIA GeForce RTX 5060 Ti (compute capability 12.0: build with --target sm_120a)"),
        "{report}"
    );
    assert!(report.contains("CUDA:     13.0") && report.contains("glibc:    2."), "{report}");
    // With this machine's compiler (CUDA 13.0 in the tests), whether its packages load there.
    if support::cuda_home().is_some() {
        assert!(
            report.contains("  builds:   driver CUDA 13.0 loads packages from CUDA 13.0.")
                && report.contains("(they need 13.0)"),
            "{report}"
        );
    }
}

#[test]
fn a_detached_run_is_followed_by_logs() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let (pkg, _) = package(&it.world);
    it.configure(&it.hooks());
    let t = Instant::now();
    it.remote_run(&pkg, &["--detach", "--", "sleep=2"]).ok();
    assert!(t.elapsed() < Duration::from_secs(2), "--detach does not wait for the run");
    assert_eq!(it.hook_log(), "start\n", "the instance stays up");
    let rec = it.world.last_record();
    assert_eq!(rec.state, State::Running);
    let out = it.world.run(&["logs", &rec.id]).ok();
    assert_eq!(out.stdout, runner_stdout(&["sleep=2"]));
    assert_fetched(&it.world, &["sleep=2"], 0);
    let rec = it.world.last_record();
    assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(0)));
}

#[test]
fn ctrl_c_stops_the_remote_run_fetches_it_and_stops_the_instance() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let (pkg, _) = package(&it.world);
    it.configure(&it.hooks());
    let child = it.spawn(&pkg, &["--", "sleep=30"]);
    let remote_run = it.wait_sleeping();
    ctrl_c(child, Duration::from_secs(15));
    assert_eq!(it.hook_log(), "start\nstop\n");
    let rec = it.world.last_record();
    assert_eq!(rec.state, State::Interrupted);
    let local = it.world.runs_dir().join(&rec.id);
    let stdout = std::fs::read_to_string(local.join("stdout.log")).unwrap();
    assert!(stdout.contains("sleeping") && !stdout.contains("woke up"), "{stdout}");
    assert_eq!(std::fs::read_to_string(local.join("exit-status")).unwrap(), "130\n");
    let pid = std::fs::read_to_string(remote_run.join("pid")).unwrap();
    let alive = Run::of(std::process::Command::new("kill").args(["-0", pid.trim()]));
    assert_ne!(alive.code, Some(0), "the remote run was stopped");
}

#[test]
fn the_idle_watchdog_runs_the_shutdown_command() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let (pkg, _) = package(&it.world);
    let marker = it.world.path("shutdown-ran");
    it.configure(&format!("idle-shutdown = \"2s\"\nshutdown-command = \"touch {}\"", marker.display()));
    it.remote_run(&pkg, &["--", "sleep=3"]).ok();
    assert!(!marker.exists(), "no shutdown while a run is going");
    wait_for("the watchdog to run the shutdown command", Duration::from_secs(10), || marker.exists());
}

#[test]
fn a_dropped_connection_only_stops_the_streaming() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let (pkg, _) = package(&it.world);
    it.configure("");
    let child = it.spawn(&pkg, &["--", "sleep=3"]);
    it.wait_sleeping();
    it.sshd.close_master();
    let out = finish(child).fails_with(1);
    out.stderr_has("lost the connection to it (cargo-gpu-test) while following run");
    out.stderr_has("`cargo gpu logs ");
    let rec = it.world.last_record();
    assert_eq!(rec.state, State::Running);
    // The run went on; `logs` picks it up and shows everything.
    let out = it.world.run(&["logs"]).ok();
    assert_eq!(out.stdout, runner_stdout(&["sleep=3"]));
    assert_fetched(&it.world, &["sleep=3"], 0);
    assert_eq!(it.world.last_record().state, State::Finished);
}

#[test]
fn remote_up_and_down_run_the_hooks() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    it.configure(&it.hooks());
    it.world.run(&["remote", "up", "it"]).ok();
    assert_eq!(it.hook_log(), "start\n");
    it.world.run(&["remote", "down", "it"]).ok();
    assert_eq!(it.hook_log(), "start\nstop\n");
    it.world.run(&["remote", "up", "nowhere"]).fails_with(1).stderr_has("no remote named `nowhere`");
}

#[test]
fn remote_run_help() {
    snapbox::cmd::Command::new(support::BIN)
        .args(["gpu", "remote-run", "--help"])
        .env("COLUMNS", "100")
        .assert()
        .success()
        .stdout_eq(snapbox::file!["snapshots/remote-run-help.txt"]);
}

#[test]
fn without_a_package_it_builds_if_stale_then_runs() {
    let Some(cuda) = require_cuda() else { return };
    let world = World::new();
    let project = TestProject::new("tiny", Some(cuda));
    world.write_config(&local_config(&world.path("w")));
    let run = |args: &[&str]| {
        Run::of(
            project.cmd(args).env("CARGO_GPU_CONFIG", &world.config).env("PATH", support::path_with(&world.fakebin)),
        )
        .ok()
    };
    let out = run(&["remote-run", "--remote", "local"]);
    assert_eq!(out.stdout, "tiny runner\n");
    let runs = project.path("target/gpu/runs");
    let ids = || {
        let mut ids: Vec<String> =
            std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids().len(), 1);
    let rec = Record::load(&runs, &ids()[0]).unwrap();
    let manifest = Manifest::read(&project.package("debug")).unwrap();
    assert_eq!(rec.package_digest, manifest.digest());
    assert_eq!(rec.blobs_uploaded, manifest.files.len());
    // Nothing changed: no compile, no upload.
    let out = run(&["remote-run", "--remote", "local"]);
    assert!(!out.stderr.contains("Compiling"), "{}", out.stderr);
    let rec = Record::load(&runs, ids().last().unwrap()).unwrap();
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (0, manifest.files.len()));
    // doctor --remote says whether the project's targets run there.
    let out = run(&["doctor", "--remote", "local"]);
    assert!(out.stdout.contains("  sm_90a: runs there\n"), "{}", out.stdout);
}

#[test]
fn local_on_a_machine_without_a_gpu_says_so_before_building() {
    let Some(cuda) = require_cuda() else { return };
    let world = World::new();
    let project = TestProject::new("tiny", Some(cuda));
    world.write_config("");
    // A PATH with no nvidia-smi: no NVIDIA driver here.
    let nothing = world.path("empty-bin");
    std::fs::create_dir_all(&nothing).unwrap();
    let cargo_dir = Path::new(env!("CARGO")).parent().unwrap().to_path_buf();
    let out = Run::of(
        project
            .cmd(&["remote-run", "--remote", "local"])
            .env("CARGO_GPU_CONFIG", &world.config)
            .env("PATH", format!("{}:{}", nothing.display(), cargo_dir.display())),
    )
    .fails_with(1);
    out.stderr_has(
        "`--remote local` runs the package on this machine, and this machine has no NVIDIA driver (nvidia-smi not found)",
    );
    assert!(
        !out.stderr.contains("Compiling") && !project.package("debug").exists(),
        "nothing was built: {}",
        out.stderr
    );
}

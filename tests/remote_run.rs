//! `cargo gpu remote-run`, `runs`, `logs`, `remote` and `doctor --remote` against a real sshd on
//! loopback (and `--remote local`), with hand-made packages whose runner is a shell script.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cargo_gpu::runs::State;
use support::{make_package, runner_stdout, tree, write_manifest, Sshd, SshdOptions, World, RUNNER};

const CUBIN_A: &[u8] = b"\x7fELF fake cubin a";
const CUBIN_B: &[u8] = b"\x7fELF fake cubin b";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn package(world: &World) -> (std::path::PathBuf, cargo_gpu::package::manifest::Manifest) {
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
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let (pkg, manifest) = package(&world);
    let work = world.path("remote-work");
    world.write_config(&sshd.remote_table("it", &work, "price-per-hour = 3.60"));
    let pkg_s = pkg.display().to_string();

    let args = ["exit=7", "two words"];
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg_s, "--", args[0], args[1]]);
    assert_eq!(out.status.code(), Some(7), "the runner's exit code comes back");
    assert_eq!(text(&out.stdout), runner_stdout(&args), "our stdout is the runner's stdout, byte for byte");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("runner warns\n"), "{stderr}");
    assert!(stderr.contains("Uploading 3 blobs"), "{stderr}");
    assert!(stderr.contains("Cost $"), "{stderr}");
    assert_fetched(&world, &args, 7);

    let rec = world.last_record();
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
    let mut blobs = tree(&work.join("blobs"));
    let mut hashes: Vec<String> = manifest.files.iter().map(|f| f.sha256.clone()).collect();
    blobs.sort();
    hashes.sort();
    assert_eq!(blobs, hashes);

    // Nothing changed: nothing is uploaded.
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg_s]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), runner_stdout(&[]));
    let rec = world.last_record();
    assert_eq!((rec.blobs_uploaded, rec.blobs_present, rec.bytes_uploaded), (0, 3, 0));

    // One kernel changed: exactly that cubin travels.
    std::fs::write(pkg.join("kernels/b.sm_90a.cubin"), b"\x7fELF changed cubin b").unwrap();
    write_manifest(&pkg, &["sm_90a"]);
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg_s, "--", "exit=0"]);
    assert_eq!(out.status.code(), Some(0));
    let rec = world.last_record();
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (1, 2));
    assert_eq!(rec.bytes_uploaded, b"\x7fELF changed cubin b".len() as u64);

    // `runs` lists all three; `logs` prints a finished run again and returns its code.
    let out = world.run(&["runs"]);
    let listing = text(&out.stdout);
    assert_eq!(listing.lines().count(), 4, "{listing}");
    assert!(listing.lines().nth(1).unwrap().contains(" it ") && listing.contains("sm_90a"), "{listing}");
    let ledger = text(&world.run(&["runs", "--cost"]).stdout);
    assert!(ledger.contains("it  3  ") && ledger.contains("total  3  "), "{ledger}");
    let first = world.run_ids()[0].clone();
    let out = world.run(&["logs", &first]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), runner_stdout(&args));
    assert_eq!(text(&out.stderr), "runner warns\n");
}

#[test]
fn local_remote_runs_the_same_pipeline_without_ssh() {
    let world = World::new();
    let (pkg, manifest) = package(&world);
    let work = world.path("local-work");
    world.write_config(&format!("[remotes.local]\nworkdir = {}\n", support::toml_str(&work.display().to_string())));
    // No ssh on PATH at all: a local run must not need it.
    let out = world
        .cmd(&["remote-run", "--remote", "local", "--package", &pkg.display().to_string(), "--", "exit=3", "x"])
        .env("PATH", format!("{}:/usr/bin:/bin", world.fakebin.display()))
        .env("CARGO_GPU_SSH_CONTROL_DIR", "/nonexistent/never-used")
        .output()
        .unwrap();
    eprintln!("{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), runner_stdout(&["exit=3", "x"]));
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
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = world.path("pkg 'q' $(touch pwned) dir");
    make_package(&pkg, RUNNER, &[("a.sm_90a.cubin", CUBIN_A), ("b.sm_90a.cubin", CUBIN_B)], &["sm_90a"]);
    let work = world.path("x/it's $(touch pwned) dir");
    world.write_config(&sshd.remote_table("it", &work, ""));
    let args = ["exit=0", "a b", "$(touch pwned)", "it's \"quoted\"", "`touch pwned`", ";rm -rf x", "*", "", "~"];
    let mut cli = vec!["remote-run", "--remote", "it", "--package"];
    let pkg_s = pkg.display().to_string();
    cli.push(&pkg_s);
    cli.push("--");
    cli.extend(args);
    let out = world.run(&cli);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), runner_stdout(&args));
    assert_fetched(&world, &args, 0);
    assert!(work.join("blobs").is_dir(), "the workdir is used exactly as named");
    let home = std::path::PathBuf::from(std::env::var("HOME").unwrap());
    for dir in [world.tmp.path(), &world.cwd, &home, &work, &pkg, Path::new("/")] {
        assert!(!dir.join("pwned").exists(), "a `$(...)` ran in {}", dir.display());
    }
    let found: Vec<String> = tree(world.tmp.path()).into_iter().filter(|p| p.ends_with("pwned")).collect();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn an_unknown_host_key_fails_the_run() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions { known_host: false, ..Default::default() }) else { return };
    let (pkg, _) = package(&world);
    let work = world.path("remote-work");
    world.write_config(&sshd.remote_table("it", &work, ""));
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("failed to connect: the connection to it (cargo-gpu-test) failed"), "{stderr}");
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    assert!(!work.exists(), "nothing reached the remote");
    assert!(out.stdout.is_empty());
}

fn hooks(log: &Path) -> String {
    format!("start = \"echo start >> {l}\"\nstop = \"echo stop >> {l}\"\n", l = log.display())
}

#[test]
fn stop_runs_exactly_once_on_success_and_on_runner_failure() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let (pkg, _) = package(&world);
    let log = world.path("hooks.log");
    world.write_config(&sshd.remote_table("it", &world.path("w"), &hooks(&log)));
    let pkg_s = pkg.display().to_string();
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg_s, "--", "exit=0"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\nstop\n");
    assert!(!world.last_record().left_up);
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg_s, "--", "exit=3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\nstop\nstart\nstop\n");
    // --keep-up skips the stop.
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg_s, "--keep-up"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\nstop\nstart\nstop\nstart\n");
    assert!(world.last_record().left_up);
    assert!(text(&out.stderr).contains("`cargo gpu remote down it` stops it"));
}

#[test]
fn an_unreachable_host_fails_within_the_connect_timeout_and_still_stops() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let (pkg, _) = package(&world);
    let log = world.path("hooks.log");
    let closed = support::free_port().to_string();
    let table = sshd.remote_table(
        "it",
        &world.path("w"),
        &format!("connect-timeout = \"2s\"\nstop = \"echo stop >> {}\"", log.display()),
    );
    let table = table.replace("ssh-options = [\"-F\", ", &format!("ssh-options = [\"-p\", \"{closed}\", \"-F\", "));
    world.write_config(&table);
    let t = Instant::now();
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()]);
    assert!(t.elapsed() < Duration::from_secs(6), "took {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("failed to connect: the connection to it (cargo-gpu-test) failed"), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "stop\n");
    assert_eq!(world.last_record().state, State::Failed);
}

#[test]
fn a_gpu_that_cannot_run_the_package_is_refused_before_upload() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions { fake_gpu: "rtx5060ti", ..Default::default() }) else { return };
    let (pkg, _) = package(&world);
    let work = world.path("w");
    world.write_config(&sshd.remote_table("it", &work, ""));
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("package has sm_90a; it is compute capability 12.0 (NVIDIA GeForce RTX 5060 Ti): build with --target sm_120a"),
        "{stderr}"
    );
    assert!(tree(&work.join("blobs")).is_empty(), "nothing was uploaded");
    // Too old a driver or glibc is refused the same way.
    let sm120 = world.path("pkg120");
    make_package(&sm120, RUNNER, &[("a.sm_120a.cubin", CUBIN_A)], &["sm_120a"]);
    let text_of = |m: &str, what: &str, with: &str| {
        std::fs::write(sm120.join("manifest.toml"), m.replace(what, with)).unwrap();
        text(&world.run(&["remote-run", "--remote", "it", "--package", &sm120.display().to_string()]).stderr)
    };
    let m = std::fs::read_to_string(sm120.join("manifest.toml")).unwrap();
    let err = text_of(&m, "min-driver-cuda = \"13.0\"", "min-driver-cuda = \"13.1\"");
    assert!(err.contains("it's driver supports CUDA 13.0, older than the package's min-driver-cuda 13.1"), "{err}");
    let err = text_of(&m, "runner = \"bin/runner\"", "runner = \"bin/runner\"\nrunner-glibc = \"9.99\"");
    assert!(err.contains("older than the 9.99 the runner needs"), "{err}");
    assert!(tree(&work.join("blobs")).is_empty(), "nothing was uploaded");

    let out = world.run(&["doctor", "--remote", "it"]);
    assert_eq!(out.status.code(), Some(0));
    let report = text(&out.stdout);
    assert!(
        report.contains("NVIDIA GeForce RTX 5060 Ti (compute capability 12.0: build with --target sm_120a)"),
        "{report}"
    );
    assert!(report.contains("CUDA:     13.0") && report.contains("glibc:    2."), "{report}");
}

#[test]
fn a_detached_run_is_followed_by_logs() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let (pkg, _) = package(&world);
    let log = world.path("hooks.log");
    world.write_config(&sshd.remote_table("it", &world.path("w"), &hooks(&log)));
    let t = Instant::now();
    let out = world.run(&[
        "remote-run",
        "--remote",
        "it",
        "--package",
        &pkg.display().to_string(),
        "--detach",
        "--",
        "sleep=2",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2), "--detach does not wait for the run");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\n", "the instance stays up");
    let rec = world.last_record();
    assert_eq!(rec.state, State::Running);
    let out = world.run(&["logs", &rec.id]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), runner_stdout(&["sleep=2"]));
    assert_fetched(&world, &["sleep=2"], 0);
    let rec = world.last_record();
    assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(0)));
}

#[test]
fn ctrl_c_stops_the_remote_run_fetches_it_and_stops_the_instance() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let (pkg, _) = package(&world);
    let log = world.path("hooks.log");
    let work = world.path("w");
    world.write_config(&sshd.remote_table("it", &work, &hooks(&log)));
    let child = world
        .cmd(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string(), "--", "sleep=30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let remote_log = loop {
        let found = std::fs::read_dir(work.join("runs")).ok().and_then(|mut rd| rd.next()).map(|e| e.unwrap().path());
        if let Some(run) =
            found.filter(|r| std::fs::read_to_string(r.join("stdout.log")).unwrap_or_default().contains("sleeping"))
        {
            break run;
        }
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let t = Instant::now();
    let st = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    eprintln!("{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(130));
    assert!(t.elapsed() < Duration::from_secs(15), "took {:?}", t.elapsed());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\nstop\n");
    let rec = world.last_record();
    assert_eq!(rec.state, State::Interrupted);
    let local = world.runs_dir().join(&rec.id);
    let stdout = std::fs::read_to_string(local.join("stdout.log")).unwrap();
    assert!(stdout.contains("sleeping") && !stdout.contains("woke up"), "{stdout}");
    assert_eq!(std::fs::read_to_string(local.join("exit-status")).unwrap(), "130\n");
    let pid = std::fs::read_to_string(remote_log.join("pid")).unwrap();
    let alive = std::process::Command::new("kill").args(["-0", pid.trim()]).stderr(Stdio::null()).status().unwrap();
    assert!(!alive.success(), "the remote run was stopped");
}

#[test]
fn the_idle_watchdog_runs_the_shutdown_command() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let (pkg, _) = package(&world);
    let marker = world.path("shutdown-ran");
    let extra = format!("idle-shutdown = \"2s\"\nshutdown-command = \"touch {}\"", marker.display());
    world.write_config(&sshd.remote_table("it", &world.path("w"), &extra));
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string(), "--", "sleep=3"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!marker.exists(), "no shutdown while a run is going");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the watchdog never ran the shutdown command");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dropped_connection_only_stops_the_streaming() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let (pkg, _) = package(&world);
    let work = world.path("w");
    world.write_config(&sshd.remote_table("it", &work, ""));
    let child = world
        .cmd(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string(), "--", "sleep=3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_dir(work.join("runs")).ok().and_then(|mut rd| rd.next()).is_some_and(|e| {
        std::fs::read_to_string(e.unwrap().path().join("stdout.log")).unwrap_or_default().contains("sleeping")
    }) {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    sshd.close_master();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("lost the connection to it (cargo-gpu-test) while following run"), "{stderr}");
    assert!(stderr.contains("`cargo gpu logs "), "{stderr}");
    let rec = world.last_record();
    assert_eq!(rec.state, State::Running);
    // The run went on; `logs` picks it up and shows everything.
    let out = world.run(&["logs"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), runner_stdout(&["sleep=3"]));
    assert_fetched(&world, &["sleep=3"], 0);
    assert_eq!(world.last_record().state, State::Finished);
}

#[test]
fn remote_up_and_down_run_the_hooks() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let log = world.path("hooks.log");
    world.write_config(&sshd.remote_table("it", &world.path("w"), &hooks(&log)));
    assert_eq!(world.run(&["remote", "up", "it"]).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\n");
    assert_eq!(world.run(&["remote", "down", "it"]).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\nstop\n");
    let out = world.run(&["remote", "up", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no remote named `nowhere`"));
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

#[path = "common/mod.rs"]
mod common;

#[test]
fn without_a_package_it_builds_if_stale_then_runs() {
    let Some(cuda) = common::require_cuda() else { return };
    let world = World::new();
    let project = common::TestProject::new("tiny", Some(cuda));
    let work = world.path("w");
    world.write_config(&format!("[remotes.local]\nworkdir = {}\n", support::toml_str(&work.display().to_string())));
    let run = |args: &[&str]| {
        let out = project
            .cmd(args)
            .env("CARGO_GPU_CONFIG", &world.config)
            .env("PATH", format!("{}:{}", world.fakebin.display(), std::env::var("PATH").unwrap()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!("{}", text(&out.stderr));
        out
    };
    let out = run(&["remote-run", "--remote", "local"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "tiny runner\n");
    let runs = project.path("target/gpu/runs");
    let rec = cargo_gpu::runs::Record::load(
        &runs,
        &std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().file_name().to_string_lossy(),
    )
    .unwrap();
    let manifest = cargo_gpu::package::manifest::Manifest::read(&project.package("debug")).unwrap();
    assert_eq!(rec.package_digest, manifest.digest());
    assert_eq!(rec.blobs_uploaded, manifest.files.len());
    // Nothing changed: no compile, no upload.
    let out = run(&["remote-run", "--remote", "local"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stderr).contains("Compiling"), "{}", text(&out.stderr));
    let mut ids: Vec<String> =
        std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    ids.sort();
    let rec = cargo_gpu::runs::Record::load(&runs, ids.last().unwrap()).unwrap();
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (0, manifest.files.len()));
    // doctor --remote says whether the project's targets run there.
    let out = run(&["doctor", "--remote", "local"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("  sm_90a: runs there\n"), "{}", text(&out.stdout));
}

#[test]
fn local_on_a_machine_without_a_gpu_says_so_before_building() {
    let Some(cuda) = common::require_cuda() else { return };
    let world = World::new();
    let project = common::TestProject::new("tiny", Some(cuda));
    world.write_config("");
    // A PATH with no nvidia-smi: no NVIDIA driver here.
    let nothing = world.path("empty-bin");
    std::fs::create_dir_all(&nothing).unwrap();
    let cargo_dir = std::path::Path::new(env!("CARGO")).parent().unwrap().to_path_buf();
    let out = project
        .cmd(&["remote-run", "--remote", "local"])
        .env("CARGO_GPU_CONFIG", &world.config)
        .env("PATH", format!("{}:{}", nothing.display(), cargo_dir.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`--remote local` runs the package on this machine, and this machine has no NVIDIA driver (nvidia-smi not found)"),
        "{stderr}"
    );
    assert!(!stderr.contains("Compiling") && !project.package("debug").exists(), "nothing was built: {stderr}");
}

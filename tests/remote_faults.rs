//! Faults in `cargo gpu remote-run`, against a real sshd on loopback: the connection cut or
//! Ctrl-C in each phase (start, upload), the runner crashing, the remote disk full, a panic, and
//! the idle watchdog holding off while a run or a client is alive. Each checks that nothing is
//! lost (no damaged blob is ever stored, the next run works, logs come back) and that the `stop`
//! command ran exactly once.
//!
//! The killed-mid-run, Ctrl-C-mid-run and unreachable-host cases live in `remote_run.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cargo_gpu::digest::sha256_file;
use cargo_gpu::runs::State;
use support::{make_package, Sshd, SshdOptions, World};

/// Prints what it got, hashes the kernels it was given into `out/sums.txt`, and crashes with
/// SIGSEGV (`crash`) or sleeps (`sleep=S`) when asked.
const RUNNER: &str = r#"#!/bin/sh
echo "runner starts"
echo "runner warns" >&2
(cd "$CARGO_GPU_KERNELS" && sha256sum *) > "$CARGO_GPU_OUT/sums.txt"
case "$1" in
  crash) echo "about to crash"; kill -SEGV $$ ;;
  sleep=*) echo "sleeping"; sleep "${1#sleep=}"; echo "woke up" ;;
esac
echo "runner done"
"#;

const SMALL: &[u8] = b"\x7fELF small cubin";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A package whose `big.sm_90a.cubin` is `big_mib` MiB (an upload that takes a while to cut).
fn package(world: &World, big_mib: usize) -> PathBuf {
    let dir = world.path("pkg");
    let big: Vec<u8> = (0..big_mib << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut cubins: Vec<(&str, &[u8])> = vec![("small.sm_90a.cubin", SMALL)];
    if big_mib > 0 {
        cubins.push(("big.sm_90a.cubin", &big));
    }
    make_package(&dir, RUNNER, &cubins, &["sm_90a"]);
    dir
}

/// `start` and `stop` hooks that append to `log`; `start_extra` runs after the start line.
fn hooks(log: &Path, start_extra: &str) -> String {
    format!(
        "start = \"echo start >> {l}{start_extra}\"\nstop = \"echo stop >> {l}\"\nconnect-timeout = \"5s\"\n",
        l = log.display()
    )
}

fn read_to_string(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(world: &World, pkg: &Path, runner_args: &[&str]) -> Child {
    let pkg = pkg.display().to_string();
    let mut args = vec!["remote-run", "--remote", "it", "--package", &pkg, "--"];
    args.extend_from_slice(runner_args);
    world.cmd(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finish(child: Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    eprintln!("--- status {:?}\n--- stderr\n{stderr}", out.status.code());
    (out.status.code(), stdout, stderr)
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

/// A file under `dir` (at any depth) whose name is a sha256 digest, partial upload or not.
fn blob_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|e| e.into_path())
        .collect()
}

/// The stored blobs (`blobs/<sha256>`) all hold what their names say, and what an interrupted
/// upload left behind stays in its own `blobs/tmp/<upload>/` folder, which the upload script
/// removes once it sees its input cut off.
fn assert_no_damaged_blob(blobs: &Path) {
    for f in blob_files(blobs) {
        let in_tmp = f.strip_prefix(blobs.join("tmp")).is_ok();
        if !in_tmp {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(sha256_file(&f).unwrap(), name, "stored blob {} is damaged", f.display());
        }
    }
    wait_for("the cut-off upload to clean up blobs/tmp", Duration::from_secs(10), || {
        blob_files(&blobs.join("tmp")).is_empty()
    });
}

/// The run just recorded finished with exit status 0 and its kernels arrived whole.
fn assert_clean_rerun(world: &World, pkg: &Path) {
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("runner done\n"), "{}", text(&out.stdout));
    let rec = world.last_record();
    assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(0)));
    let sums = read_to_string(&world.runs_dir().join(&rec.id).join("out/sums.txt"));
    for cubin in std::fs::read_dir(pkg.join("kernels")).unwrap() {
        let cubin = cubin.unwrap().path();
        let want = format!("{}  {}", sha256_file(&cubin).unwrap(), cubin.file_name().unwrap().to_string_lossy());
        assert!(sums.contains(&want), "{want} not in\n{sums}");
    }
}

/// Cuts an upload off (master connection closed, or Ctrl-C) while a blob is half written.
fn cut_upload(interrupt: bool) {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world, 8);
    let log = world.path("hooks.log");
    let work = world.path("w");
    world.write_config(&sshd.remote_table("it", &work, &hooks(&log, "")));
    world.fake("slow-tar", true);
    let child = spawn(&world, &pkg, &[]);
    let big = sha256_file(&pkg.join("kernels/big.sm_90a.cubin")).unwrap();
    wait_for("a half-written blob", Duration::from_secs(15), || {
        blob_files(&work.join("blobs/tmp")).iter().any(|f| f.ends_with(&big) && f.metadata().is_ok_and(|m| m.len() > 0))
    });
    if interrupt {
        signal(&child, "-INT");
    } else {
        sshd.close_master();
    }
    let (code, stdout, stderr) = finish(child);
    world.fake("slow-tar", false);
    let rec = world.last_record();
    if interrupt {
        assert_eq!(code, Some(130));
        assert_eq!(rec.state, State::Interrupted);
    } else {
        assert_eq!(code, Some(1));
        assert!(
            stderr.contains("failed to upload and launch run ")
                && stderr.contains(": the connection to it (cargo-gpu-test) failed"),
            "{stderr}"
        );
        assert_eq!(rec.state, State::Failed);
    }
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    assert_eq!(read_to_string(&log), "start\nstop\n", "stop ran once");
    assert!(!work.join("blobs").join(&big).exists(), "the half-sent blob was not stored");
    assert!(std::fs::read_dir(work.join("runs")).unwrap().next().is_none(), "nothing was launched");
    assert_no_damaged_blob(&work.join("blobs"));

    // The next run uploads the blob again, whole, and runs with it.
    assert_clean_rerun(&world, &pkg);
    let rec = world.last_record();
    assert!(rec.blobs_uploaded >= 1, "{rec:?}");
    assert_eq!(read_to_string(&log), "start\nstop\nstart\nstop\n");
    assert_no_damaged_blob(&work.join("blobs"));
}

#[test]
fn a_connection_cut_mid_upload_stores_no_partial_blob_and_the_next_run_completes() {
    cut_upload(false);
}

#[test]
fn ctrl_c_mid_upload_exits_130_stops_once_and_stores_no_partial_blob() {
    cut_upload(true);
}

#[test]
fn a_crashing_runner_is_recorded_with_128_plus_its_signal_and_its_logs_come_back() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world, 0);
    let log = world.path("hooks.log");
    world.write_config(&sshd.remote_table("it", &world.path("w"), &hooks(&log, "")));
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string(), "--", "crash"]);
    // The remote POSIX shell reports a runner killed by signal N as 128 + N; that is the code
    // recorded and returned (SIGSEGV = 11).
    assert_eq!(out.status.code(), Some(139));
    assert_eq!(text(&out.stdout), "runner starts\nabout to crash\n");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("runner warns\n") && stderr.contains("exit status 139"), "{stderr}");
    // The remote shell that ran the runner names the signal in the runner's stderr.
    assert!(stderr.contains("Segmentation fault"), "{stderr}");
    let rec = world.last_record();
    assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(139)));
    let dir = world.runs_dir().join(&rec.id);
    assert_eq!(read_to_string(&dir.join("stdout.log")), "runner starts\nabout to crash\n");
    assert_eq!(read_to_string(&dir.join("stderr.log")), "runner warns\nSegmentation fault\n");
    assert_eq!(read_to_string(&dir.join("exit-status")), "139\n");
    assert!(read_to_string(&dir.join("out/sums.txt")).contains("small.sm_90a.cubin"));
    assert!(read_to_string(&dir.join("nvidia-smi.txt")).contains("CUDA Version"));
    assert_eq!(read_to_string(&log), "start\nstop\n");
}

#[test]
fn a_full_remote_disk_is_refused_before_upload_with_what_is_needed_and_free() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world, 0);
    let log = world.path("hooks.log");
    let work = world.path("w");
    world.write_config(&sshd.remote_table("it", &work, &hooks(&log, "")));
    world.fake("disk-full", true);
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("it has 1.0 MiB free in its workdir; the run needs "), "{stderr}");
    assert!(stderr.contains(" plus 64.0 MiB to spare"), "{stderr}");
    assert!(!stderr.contains("Uploading"), "{stderr}");
    assert!(support::tree(&work.join("blobs")).is_empty(), "nothing was uploaded");
    assert!(std::fs::read_dir(work.join("runs")).unwrap().next().is_none(), "nothing was launched");
    assert_eq!(world.last_record().state, State::Failed);
    assert_eq!(read_to_string(&log), "start\nstop\n");
    world.fake("disk-full", false);
    assert_clean_rerun(&world, &pkg);
}

#[test]
fn a_panic_still_runs_the_stop_command_once() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world, 0);
    let log = world.path("hooks.log");
    let work = world.path("w");
    world.write_config(&sshd.remote_table("it", &work, &hooks(&log, "")));
    let out = world
        .cmd(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()])
        .env("CARGO_GPU_TEST_PANIC_IN", "upload")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(101), "a panic is Rust's exit code 101");
    assert!(stderr.contains("CARGO_GPU_TEST_PANIC_IN=upload"), "{stderr}");
    assert_eq!(read_to_string(&log), "start\nstop\n");
    assert!(support::tree(&work.join("blobs")).is_empty(), "the panic came before the upload");
    assert_clean_rerun(&world, &pkg);
}

#[test]
fn ctrl_c_during_start_or_connect_exits_130_and_stops_once() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world, 0);
    let log = world.path("hooks.log");
    let work = world.path("w");

    // In the `start` command (whose own children go with it).
    let marker = world.path("start-finished");
    let slow_start = format!("; sleep 30; touch {}", marker.display());
    world.write_config(&sshd.remote_table("it", &work, &hooks(&log, &slow_start)));
    let child = spawn(&world, &pkg, &[]);
    wait_for("the start command", Duration::from_secs(10), || read_to_string(&log) == "start\n");
    let t = Instant::now();
    signal(&child, "-INT");
    let (code, stdout, _) = finish(child);
    assert_eq!(code, Some(130));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(stdout.is_empty());
    assert_eq!(read_to_string(&log), "start\nstop\n");
    assert_eq!(world.last_record().state, State::Interrupted);

    // While waiting for ssh to answer (a host still booting: the port refuses).
    std::fs::remove_file(&log).unwrap();
    let closed = support::free_port().to_string();
    let table = sshd.remote_table("it", &work, &format!("{}ready-timeout = \"60s\"\n", hooks(&log, "")));
    world.write_config(&table.replace("ssh-options = [", &format!("ssh-options = [\"-p\", \"{closed}\", ")));
    let child = spawn(&world, &pkg, &[]);
    wait_for("the start command", Duration::from_secs(10), || read_to_string(&log) == "start\n");
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    signal(&child, "-INT");
    let (code, _, stderr) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert_eq!(read_to_string(&log), "start\nstop\n");
    assert_eq!(world.last_record().state, State::Interrupted);
    assert!(!work.join("blobs").exists(), "nothing reached the remote");
    assert!(!marker.exists(), "the interrupted start command's children were stopped with it");
}

/// A `[remotes.it]` table with a watchdog of `idle` whose shutdown command appends to `fired`.
fn watchdog_table(sshd: &Sshd, work: &Path, idle: &str, fired: &Path) -> String {
    sshd.remote_table(
        "it",
        work,
        &format!("idle-shutdown = \"{idle}\"\nshutdown-command = \"echo fired >> {}\"", fired.display()),
    )
}

/// Kills a client the way a crashed laptop does: the process and its connection.
fn crash_client(sshd: &Sshd, child: Child) {
    signal(&child, "-KILL");
    let _ = finish(child);
    sshd.close_master();
}

#[test]
fn the_watchdog_holds_off_while_a_run_is_alive_then_fires_exactly_once() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world, 0);
    let work = world.path("w");
    let fired = world.path("fired");
    world.write_config(&watchdog_table(&sshd, &work, "2s", &fired));
    let child = spawn(&world, &pkg, &["sleep=5"]);
    let mut run = PathBuf::new();
    wait_for("the run to start", Duration::from_secs(15), || {
        let found = std::fs::read_dir(work.join("runs")).ok().and_then(|mut rd| rd.next()).map(|e| e.unwrap().path());
        run = found.unwrap_or_default();
        read_to_string(&run.join("stdout.log")).contains("sleeping")
    });
    let started = Instant::now();
    crash_client(&sshd, child);
    // No client from here on; only the run keeps the instance up. Well past the idle time:
    std::thread::sleep(Duration::from_millis(4000).saturating_sub(started.elapsed()));
    assert!(!run.join("exit-status").exists(), "the run is still going");
    assert!(!fired.exists(), "the watchdog fired while a run was alive");
    wait_for("the watchdog to fire after the run ended", Duration::from_secs(10), || fired.exists());
    assert!(run.join("exit-status").exists(), "it fired only after the run ended");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(read_to_string(&fired), "fired\n", "the shutdown command ran exactly once");
    // The run itself finished and is all there for `logs`.
    let out = world.run(&["logs"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).ends_with("woke up\nrunner done\n"), "{}", text(&out.stdout));
}

#[test]
fn the_watchdog_holds_off_while_a_client_is_alive_then_fires_exactly_once() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world, 0);
    let work = world.path("w");
    let fired = world.path("fired");
    world.write_config(&watchdog_table(&sshd, &work, "2s", &fired));
    // A quick run starts the watchdog and leaves no run alive.
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()]);
    assert_eq!(out.status.code(), Some(0));
    // A client with no live run behind it: `logs` following a run whose runner has not written
    // its pid yet (as just after a launch), so only the client keeps the instance up.
    let mut rec = world.last_record();
    rec.id = "9999-waiting".into();
    rec.state = State::Running;
    std::fs::create_dir_all(world.runs_dir().join(&rec.id)).unwrap();
    rec.save(&world.runs_dir()).unwrap();
    std::fs::create_dir_all(work.join("runs").join(&rec.id)).unwrap();
    let follower = world
        .cmd(&["logs", &rec.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    assert!(!fired.exists(), "the watchdog fired while a client was following");
    crash_client(&sshd, follower);
    let left = Instant::now();
    wait_for("the watchdog to fire after the client left", Duration::from_secs(10), || fired.exists());
    assert!(left.elapsed() >= Duration::from_millis(1500), "fired {:?} after the client left", left.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(read_to_string(&fired), "fired\n", "the shutdown command ran exactly once");
}

#[test]
fn a_rerun_over_the_kept_connection_skips_preflight_unless_the_remote_changed() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world, 0);
    let log = world.path("hooks.log");
    let work = world.path("w");
    // No stop command: the master connection stays up between runs, as for a machine of one's own.
    world.write_config(&sshd.remote_table("it", &work, ""));
    assert_clean_rerun(&world, &pkg);
    let first = world.last_record();
    assert!(first.phases.preflight > 0.0);
    assert_eq!(first.blobs_uploaded, 2, "the runner and one cubin");
    // Same connection: no preflight, nothing uploaded, the same GPU facts recorded.
    assert_clean_rerun(&world, &pkg);
    let rec = world.last_record();
    assert_eq!(rec.phases.preflight, 0.0, "{rec:?}");
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (0, 2));
    assert_eq!((rec.gpu.as_deref(), rec.target.as_deref()), (first.gpu.as_deref(), Some("sm_90a")));
    // The remote's blobs vanished under the connection: the run's own guard notices, nothing
    // is launched on half a package, and a fresh preflight uploads them again.
    std::fs::remove_dir_all(work.join("blobs")).unwrap();
    assert_clean_rerun(&world, &pkg);
    let rec = world.last_record();
    assert!(rec.phases.preflight > 0.0);
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (2, 0));
    assert_eq!(std::fs::read_dir(work.join("runs")).unwrap().count(), 3, "the stale attempt launched nothing");
    // The disk filled up under the connection: refused with the preflight's own message.
    world.fake("disk-full", true);
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("it has 1.0 MiB free in its workdir"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(work.join("runs")).unwrap().count(), 3);
    assert!(!log.exists());
}

//! Faults in `cargo gpu remote-run`, against a real sshd on loopback: the connection cut or
//! Ctrl-C in each phase (start, upload), the runner crashing, the remote disk full, a panic, and
//! the idle watchdog holding off while a run or a client is alive. Each checks that nothing is
//! lost (no damaged blob is ever stored, the next run works, logs come back) and that the `stop`
//! command ran exactly once.
//!
//! The killed-mid-run, Ctrl-C-mid-run and unreachable-host cases live in `remote_run.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cargo_gpu::digest::sha256_file;
use cargo_gpu::runs::State;
use support::{ctrl_c, finish, make_package, read_text, signal, tree, wait_for, Remote, Run, SshdOptions, World};

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

/// Runs the package again: it finishes with exit status 0 and its kernels arrive whole.
fn assert_clean_rerun(it: &Remote, pkg: &Path) {
    let out = it.remote_run(pkg, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.ends_with("runner done\n"), "{}", out.stdout);
    let rec = it.world.last_record();
    assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(0)));
    let sums = read_text(&it.world.runs_dir().join(&rec.id).join("out/sums.txt"));
    for cubin in std::fs::read_dir(pkg.join("kernels")).unwrap() {
        let cubin = cubin.unwrap().path();
        let want = format!("{}  {}", sha256_file(&cubin).unwrap(), cubin.file_name().unwrap().to_string_lossy());
        assert!(sums.contains(&want), "{want} not in\n{sums}");
    }
}

/// Cuts an upload off (master connection closed, or Ctrl-C) while a blob is half written.
fn cut_upload(interrupt: bool) {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world, 8);
    it.configure(&it.hooks());
    it.world.fake("slow-tar", true);
    let child = it.spawn(&pkg, &[]);
    let big = sha256_file(&pkg.join("kernels/big.sm_90a.cubin")).unwrap();
    wait_for("a half-written blob", Duration::from_secs(15), || {
        blob_files(&it.work.join("blobs/tmp"))
            .iter()
            .any(|f| f.ends_with(&big) && f.metadata().is_ok_and(|m| m.len() > 0))
    });
    if interrupt {
        signal(&child, "-INT");
    } else {
        it.sshd.close_master();
    }
    let out = finish(child);
    it.world.fake("slow-tar", false);
    let rec = it.world.last_record();
    if interrupt {
        assert_eq!(out.code, Some(130));
        assert_eq!(rec.state, State::Interrupted);
    } else {
        assert_eq!(out.code, Some(1));
        assert!(
            out.stderr.contains("failed to upload and launch run ")
                && out.stderr.contains(": the connection to it (cargo-gpu-test) failed"),
            "{}",
            out.stderr
        );
        assert_eq!(rec.state, State::Failed);
    }
    assert!(out.stdout.is_empty(), "nothing ran: {}", out.stdout);
    assert_eq!(it.hook_log(), "start\nstop\n", "stop ran once");
    assert!(!it.work.join("blobs").join(&big).exists(), "the half-sent blob was not stored");
    assert!(std::fs::read_dir(it.work.join("runs")).unwrap().next().is_none(), "nothing was launched");
    assert_no_damaged_blob(&it.work.join("blobs"));

    // The next run uploads the blob again, whole, and runs with it.
    assert_clean_rerun(&it, &pkg);
    let rec = it.world.last_record();
    assert!(rec.blobs_uploaded >= 1, "{rec:?}");
    assert_eq!(it.hook_log(), "start\nstop\nstart\nstop\n");
    assert_no_damaged_blob(&it.work.join("blobs"));
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
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world, 0);
    it.configure(&it.hooks());
    let out = it.remote_run(&pkg, &["--", "crash"]);
    // The remote POSIX shell reports a runner killed by signal N as 128 + N; that is the code
    // recorded and returned (SIGSEGV = 11).
    assert_eq!(out.code, Some(139));
    assert_eq!(out.stdout, "runner starts\nabout to crash\n");
    assert!(out.stderr.contains("runner warns\n") && out.stderr.contains("exit status 139"), "{}", out.stderr);
    // The remote shell that ran the runner names the signal in the runner's stderr.
    assert!(out.stderr.contains("Segmentation fault"), "{}", out.stderr);
    let rec = it.world.last_record();
    assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(139)));
    let dir = it.world.runs_dir().join(&rec.id);
    assert_eq!(read_text(&dir.join("stdout.log")), "runner starts\nabout to crash\n");
    assert_eq!(read_text(&dir.join("stderr.log")), "runner warns\nSegmentation fault\n");
    assert_eq!(read_text(&dir.join("exit-status")), "139\n");
    assert!(read_text(&dir.join("out/sums.txt")).contains("small.sm_90a.cubin"));
    assert!(read_text(&dir.join("nvidia-smi.txt")).contains("CUDA Version"));
    assert_eq!(it.hook_log(), "start\nstop\n");
}

#[test]
fn a_full_remote_disk_is_refused_before_upload_with_what_is_needed_and_free() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world, 0);
    it.configure(&it.hooks());
    it.world.fake("disk-full", true);
    let out = it.remote_run(&pkg, &[]).fails_with(1);
    out.stderr_has("it has 1.0 MiB free in its workdir; the run needs ").stderr_has(" plus 64.0 MiB to spare");
    assert!(!out.stderr.contains("Uploading"), "{}", out.stderr);
    assert!(tree(&it.work.join("blobs")).is_empty(), "nothing was uploaded");
    assert!(std::fs::read_dir(it.work.join("runs")).unwrap().next().is_none(), "nothing was launched");
    assert_eq!(it.world.last_record().state, State::Failed);
    assert_eq!(it.hook_log(), "start\nstop\n");
    it.world.fake("disk-full", false);
    assert_clean_rerun(&it, &pkg);
}

#[test]
fn a_panic_still_runs_the_stop_command_once() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world, 0);
    it.configure(&it.hooks());
    let out = Run::of(it.remote_run_cmd(&pkg, &[]).env("CARGO_GPU_TEST_PANIC_IN", "upload"));
    assert_eq!(out.code, Some(101), "a panic is Rust's exit code 101");
    out.stderr_has("CARGO_GPU_TEST_PANIC_IN=upload");
    assert_eq!(it.hook_log(), "start\nstop\n");
    assert!(tree(&it.work.join("blobs")).is_empty(), "the panic came before the upload");
    assert_clean_rerun(&it, &pkg);
}

#[test]
fn ctrl_c_during_start_or_connect_exits_130_and_stops_once() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world, 0);

    // In the `start` command (whose own children go with it).
    let marker = it.world.path("start-finished");
    it.configure(&it.hooks_with_start_tail(&format!("; sleep 30; touch {}", marker.display())));
    let child = it.spawn(&pkg, &[]);
    wait_for("the start command", Duration::from_secs(10), || it.hook_log() == "start\n");
    let out = ctrl_c(child, Duration::from_secs(5));
    assert!(out.stdout.is_empty());
    assert_eq!(it.hook_log(), "start\nstop\n");
    assert_eq!(it.world.last_record().state, State::Interrupted);

    // While waiting for ssh to answer (a host still booting: the port refuses).
    std::fs::remove_file(&it.log).unwrap();
    let closed = support::free_port().to_string();
    let table = it.table(&format!("{}ready-timeout = \"60s\"\n", it.hooks()));
    it.world.write_config(&table.replace("ssh-options = [", &format!("ssh-options = [\"-p\", \"{closed}\", ")));
    let child = it.spawn(&pkg, &[]);
    wait_for("the start command", Duration::from_secs(10), || it.hook_log() == "start\n");
    std::thread::sleep(Duration::from_millis(500));
    ctrl_c(child, Duration::from_secs(5));
    assert_eq!(it.hook_log(), "start\nstop\n");
    assert_eq!(it.world.last_record().state, State::Interrupted);
    assert!(!it.work.join("blobs").exists(), "nothing reached the remote");
    assert!(!marker.exists(), "the interrupted start command's children were stopped with it");
}

/// A watchdog of `idle` whose shutdown command appends to `fired`, for `[remotes.it]`.
fn watchdog(idle: &str, fired: &Path) -> String {
    format!("idle-shutdown = \"{idle}\"\nshutdown-command = \"echo fired >> {}\"", fired.display())
}

/// Kills a client the way a crashed laptop does: the process and its connection.
fn crash_client(it: &Remote, child: Child) {
    signal(&child, "-KILL");
    let _ = finish(child);
    it.sshd.close_master();
}

#[test]
fn the_watchdog_holds_off_while_a_run_is_alive_then_fires_exactly_once() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world, 0);
    let fired = it.world.path("fired");
    it.configure(&watchdog("2s", &fired));
    let child = it.spawn(&pkg, &["--", "sleep=5"]);
    let run = it.wait_sleeping();
    let started = Instant::now();
    crash_client(&it, child);
    // No client from here on; only the run keeps the instance up. Well past the idle time:
    std::thread::sleep(Duration::from_millis(4000).saturating_sub(started.elapsed()));
    assert!(!run.join("exit-status").exists(), "the run is still going");
    assert!(!fired.exists(), "the watchdog fired while a run was alive");
    wait_for("the watchdog to fire after the run ended", Duration::from_secs(10), || fired.exists());
    assert!(run.join("exit-status").exists(), "it fired only after the run ended");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(read_text(&fired), "fired\n", "the shutdown command ran exactly once");
    // The run itself finished and is all there for `logs`.
    let out = it.world.run(&["logs"]).ok();
    assert!(out.stdout.ends_with("woke up\nrunner done\n"), "{}", out.stdout);
}

#[test]
fn the_watchdog_holds_off_while_a_client_is_alive_then_fires_exactly_once() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world, 0);
    let fired = it.world.path("fired");
    it.configure(&watchdog("2s", &fired));
    // A quick run starts the watchdog and leaves no run alive.
    it.remote_run(&pkg, &[]).ok();
    // A client with no live run behind it: `logs` following a run whose runner has not written
    // its pid yet (as just after a launch), so only the client keeps the instance up.
    let mut rec = it.world.last_record();
    rec.id = "9999-waiting".into();
    rec.state = State::Running;
    std::fs::create_dir_all(it.world.runs_dir().join(&rec.id)).unwrap();
    rec.save(&it.world.runs_dir()).unwrap();
    std::fs::create_dir_all(it.work.join("runs").join(&rec.id)).unwrap();
    let follower = it
        .world
        .cmd(&["logs", &rec.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    assert!(!fired.exists(), "the watchdog fired while a client was following");
    crash_client(&it, follower);
    let left = Instant::now();
    wait_for("the watchdog to fire after the client left", Duration::from_secs(10), || fired.exists());
    assert!(left.elapsed() >= Duration::from_millis(1500), "fired {:?} after the client left", left.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(read_text(&fired), "fired\n", "the shutdown command ran exactly once");
}

#[test]
fn a_rerun_over_the_kept_connection_skips_preflight_unless_the_remote_changed() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world, 0);
    // No stop command: the master connection stays up between runs, as for a machine of one's own.
    it.configure("");
    assert_clean_rerun(&it, &pkg);
    let first = it.world.last_record();
    assert!(first.phases.preflight > 0.0);
    assert_eq!(first.blobs_uploaded, 2, "the runner and one cubin");
    // Same connection: no preflight, nothing uploaded, the same GPU facts recorded.
    assert_clean_rerun(&it, &pkg);
    let rec = it.world.last_record();
    assert_eq!(rec.phases.preflight, 0.0, "{rec:?}");
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (0, 2));
    assert_eq!((rec.gpu.as_deref(), rec.target.as_deref()), (first.gpu.as_deref(), Some("sm_90a")));
    // The remote's blobs vanished under the connection: the run's own guard notices, nothing
    // is launched on half a package, and a fresh preflight uploads them again.
    std::fs::remove_dir_all(it.work.join("blobs")).unwrap();
    assert_clean_rerun(&it, &pkg);
    let rec = it.world.last_record();
    assert!(rec.phases.preflight > 0.0);
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (2, 0));
    assert_eq!(it.remote_runs().len(), 3, "the stale attempt launched nothing");
    // The disk filled up under the connection: refused with the preflight's own message.
    it.world.fake("disk-full", true);
    it.remote_run(&pkg, &[]).fails_with(1).stderr_has("it has 1.0 MiB free in its workdir");
    assert_eq!(it.remote_runs().len(), 3);
    assert!(!it.log.exists());
}

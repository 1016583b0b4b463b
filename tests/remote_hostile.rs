//! The remote as a stranger's machine, against a real sshd on loopback with hostile fakes on the
//! remote PATH (a `tar` that answers with a crafted archive, an `nvidia-smi` whose GPU name holds
//! terminal escapes): nothing is written or read outside the run folder, what comes back is
//! capped and streamed, a planted blob is never run, every login shell gets the same arguments,
//! concurrent runs keep out of each other's way, Ctrl-C pressed again and again still stops the
//! instance, secrets stay out of records and output, and shared temp folders are refused.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cargo_gpu::runs::State;
use support::{make_package, raw_tar, Sshd, SshdOptions, World};
use tar::EntryType;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_to_string(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Prints its arguments one per line into `out/args.txt`, hashes the kernels it was given,
/// and sleeps (`sleep=S`) or writes big sparse files (`big=MiB,MiB,...`) when asked.
const RUNNER: &str = r#"#!/bin/sh
echo "runner starts"
for a in "$@"; do printf '%s\n' "$a"; done > "$CARGO_GPU_OUT/args.txt"
cat "$CARGO_GPU_KERNELS"/* > "$CARGO_GPU_OUT/cubins.bin"
case "$1" in
  sleep=*) echo "sleeping"; sleep "${1#sleep=}"; echo "woke up" ;;
  big=*)
    i=0
    for m in $(echo "${1#big=}" | tr , ' '); do
      i=$((i + 1)); truncate -s "${m}M" "$CARGO_GPU_OUT/big$i.bin"
    done ;;
esac
echo "runner done"
"#;

const CUBIN: &[u8] = b"\x7fELF the real cubin";

fn package(world: &World) -> PathBuf {
    let dir = world.path("pkg");
    make_package(&dir, RUNNER, &[("a.sm_90a.cubin", CUBIN)], &["sm_90a"]);
    dir
}

fn hooks(log: &Path) -> String {
    format!("start = \"echo start >> {l}\"\nstop = \"echo stop >> {l}\"\nconnect-timeout = \"5s\"\n", l = log.display())
}

fn run(world: &World, pkg: &Path, runner_args: &[&str]) -> std::process::Output {
    let pkg = pkg.display().to_string();
    let mut args = vec!["remote-run", "--remote", "it", "--package", &pkg, "--"];
    args.extend_from_slice(runner_args);
    world.run(&args)
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

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No link anywhere under `dir`: cargo-gpu never makes one from what a remote sends.
fn assert_no_links(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        assert!(!e.path_is_symlink(), "a link was made: {}", e.path().display());
    }
}

/// The folder a run of the remote `it` is kept in on the remote, by the start of its id.
fn remote_runs(work: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(work.join("runs")).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// A results tar that climbs out of the run folder through a chain of links that each look
/// harmless, then writes the record's temp file, `record.toml` and `stdout.log` through it and
/// links `out/x` to a local file, with names that carry terminal escapes and a forged line.
fn climbing_tar(victim: &Path) -> Vec<u8> {
    let victim = victim.display().to_string();
    let deep = "e6/".to_string() + &"../".repeat(2) + "victim";
    raw_tar(&[
        ("d", EntryType::Symlink, b"", Some(".")),
        ("e1", EntryType::Symlink, b"", Some("d/..")),
        ("e2", EntryType::Symlink, b"", Some("e1/..")),
        ("e3", EntryType::Symlink, b"", Some("e2/..")),
        ("e4", EntryType::Symlink, b"", Some("e3/..")),
        ("e5", EntryType::Symlink, b"", Some("e4/..")),
        ("e6", EntryType::Symlink, b"", Some("e5/..")),
        ("record.tmp-write", EntryType::Symlink, b"", Some(&deep)),
        ("record.toml", EntryType::Regular, b"state = \"hacked\"\n", None),
        ("stdout.log", EntryType::Symlink, b"", Some(&victim)),
        ("e6/victim", EntryType::Regular, b"owned through the chain\n", None),
        ("out/x", EntryType::Symlink, b"", Some(&victim)),
        ("out/\x1b]0;pwned\x07\nwarning: forged line", EntryType::Symlink, b"", Some("y")),
        ("exit-status", EntryType::Regular, b"0\n", None),
        ("out/kept.txt", EntryType::Regular, b"a real result\n", None),
    ])
}

fn assert_escapes_never_reach_the_terminal(stderr: &str) {
    assert!(!stderr.contains('\x1b') && !stderr.contains('\x07'), "raw escapes reached the terminal:\n{stderr}");
    assert!(!stderr.lines().any(|l| l.starts_with("warning: forged")), "a forged line:\n{stderr}");
}

#[test]
fn a_hostile_results_tar_writes_and_reads_nothing_outside_the_run_folder() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world);
    // Where `~/.bashrc` would be: four folders above the run folder, like the attack's target.
    let victim = world.path("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    world.write_config(&sshd.remote_table("it", &world.path("w"), ""));
    support::hostile_tar(&world, &climbing_tar(&victim));
    let out = run(&world, &pkg, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(read_to_string(&victim), "keep\n", "the file outside the run folder is untouched");
    let rec = world.last_record();
    let dir = world.runs_dir().join(&rec.id);
    assert_no_links(&world.runs_dir());
    assert_eq!(rec.state, State::Finished, "the record is ours, not the tar's");
    assert_eq!(read_to_string(&dir.join("out/kept.txt")), "a real result\n");
    assert!(!dir.join("out/x").exists() && !dir.join("stdout.log").exists());
    assert!(rec.refused.iter().any(|r| r.starts_with("record.toml: not a file a run sends back")), "{:?}", rec.refused);
    assert!(rec.refused.iter().any(|r| r.contains("\\e]0;pwned\\x07\\nwarning: forged line")), "{:?}", rec.refused);
    assert!(stderr.contains("refused an entry of run"), "{stderr}");
    assert_escapes_never_reach_the_terminal(&stderr);

    // `cargo gpu logs` takes the same way in: a detached run, then logs, with the same answer.
    let out = world.run(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string(), "--detach"]);
    assert_eq!(out.status.code(), Some(0));
    let out = world.run(&["logs"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(read_to_string(&victim), "keep\n");
    assert_no_links(&world.runs_dir());
    assert_escapes_never_reach_the_terminal(&text(&out.stderr));
    assert_eq!(world.last_record().state, State::Finished);
}

#[test]
fn a_2_gib_output_is_capped_and_streamed_through_little_memory() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world);
    // The default cap (1 GiB): 700 MiB of `out/` fit and pass through, the 2 GiB after do not.
    world.write_config(&sshd.remote_table("it", &world.path("w"), ""));
    let pkg_s = pkg.display().to_string();
    let measured = support::run_measured(&mut world.cmd(&[
        "remote-run",
        "--remote",
        "it",
        "--package",
        &pkg_s,
        "--",
        "big=700,2048",
    ]));
    let stderr = text(&measured.stderr);
    eprintln!("{stderr}\npeak resident memory: {} MiB", measured.peak_rss_bytes >> 20);
    assert_eq!(measured.code, Some(0), "{stderr}");
    assert!(measured.peak_rss_bytes < 300 << 20, "peak memory {} MiB", measured.peak_rss_bytes >> 20);
    let rec = world.last_record();
    let dir = world.runs_dir().join(&rec.id);
    assert_eq!(std::fs::metadata(dir.join("out/big1.bin")).unwrap().len(), 700 << 20);
    assert!(!dir.join("out/big2.bin").exists(), "the file past the cap was not kept");
    assert_eq!(read_to_string(&dir.join("exit-status")), "0\n", "the logs that came first were kept");
    let said = "sent more than the 1.0 GiB that remote it may send back (its `max-fetch`)";
    assert!(
        stderr.contains(said) && stderr.contains("refused out/big2.bin (2.0 GiB) and everything after it"),
        "{stderr}"
    );
    assert!(rec.refused.iter().any(|r| r.contains(said)), "{:?}", rec.refused);
}

#[test]
fn a_blob_replaced_on_the_remote_is_refused_named_and_uploaded_again() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world);
    let work = world.path("w");
    // No stop command: the connection stays up, so the re-run relies on its earlier preflight.
    world.write_config(&sshd.remote_table("it", &work, ""));
    assert_eq!(run(&world, &pkg, &[]).status.code(), Some(0));
    let cubin_hash = cargo_gpu::digest::sha256_hex(CUBIN);
    let planted = b"\x7fELF a planted cubin";
    for fresh_preflight in [false, true] {
        std::fs::write(work.join("blobs").join(&cubin_hash), planted).unwrap();
        if fresh_preflight {
            sshd.close_master();
        }
        let out = run(&world, &pkg, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "the stored blob {cubin_hash} (kernels/a.sm_90a.cubin) on it did not match its sha256: it was deleted there and is uploaded again"
            )),
            "{stderr}"
        );
        let rec = world.last_record();
        assert_eq!(rec.blobs_uploaded, 1, "only the planted blob travels again");
        let dir = world.runs_dir().join(&rec.id);
        assert_eq!(std::fs::read(dir.join("out/cubins.bin")).unwrap(), CUBIN, "the runner got the real cubin");
        assert_eq!(std::fs::read(work.join("blobs").join(&cubin_hash)).unwrap(), CUBIN);
    }
}

/// Arguments that one login shell or another would split, expand or run.
const NASTY: &[&str] = &[
    "';touch pwned;'",
    "it's",
    "a\\b",
    "$(touch pwned)",
    "`touch pwned`",
    "\"; touch pwned; \"",
    "%self",
    "!!",
    "~",
    "a\nb",
    "{a,b}",
    "*",
    "#x",
    "ünïcödé 🎉",
];

#[test]
fn every_login_shell_gets_every_argument_verbatim() {
    let required = support::sshd_required();
    for shell in ["/bin/bash", "/bin/dash", "/usr/bin/zsh", "/usr/bin/fish", "/usr/bin/tcsh"] {
        if !Path::new(shell).is_file() {
            assert!(!required, "{shell} is required under CI=true (apt-get install zsh fish tcsh)");
            eprintln!("skipping {shell}: not installed");
            continue;
        }
        let world = World::new();
        let opts = SshdOptions { login_shell: Some(shell), ..Default::default() };
        let Some(sshd) = Sshd::start(&world, opts) else { return };
        let pkg = package(&world);
        let work = world.path("w it's $(x)");
        world.write_config(&sshd.remote_table("it", &work, ""));
        let out = run(&world, &pkg, NASTY);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let rec = world.last_record();
        let args = read_to_string(&world.runs_dir().join(&rec.id).join("out/args.txt"));
        let want: String = NASTY.iter().map(|a| format!("{a}\n")).collect();
        assert_eq!(args, want, "login shell {shell}");
        let pwned: Vec<_> = [world.tmp.path(), &work, &world.cwd]
            .iter()
            .flat_map(|d| walkdir::WalkDir::new(d).into_iter().flatten())
            .filter(|e| e.file_name() == "pwned")
            .map(|e| e.into_path())
            .collect();
        assert!(pwned.is_empty(), "{shell} ran an argument: {pwned:?}");
    }
}

#[test]
fn two_runs_started_together_both_succeed_and_the_last_one_out_stops_the_instance() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world);
    let log = world.path("hooks.log");
    let work = world.path("w");
    world.write_config(&sshd.remote_table("it", &work, &hooks(&log)));
    let a = spawn(&world, &pkg, &["sleep=2"]);
    let b = spawn(&world, &pkg, &["sleep=3"]);
    let (ca, oa, _) = finish(a);
    let (cb, ob, _) = finish(b);
    assert_eq!((ca, cb), (Some(0), Some(0)));
    assert!(oa.ends_with("woke up\nrunner done\n") && ob.ends_with("woke up\nrunner done\n"), "{oa}\n{ob}");
    let ids = world.run_ids();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert_eq!(remote_runs(&work).len(), 2, "each run has its own folder there");
    for id in &ids {
        let rec = cargo_gpu::runs::Record::load(&world.runs_dir(), id).unwrap();
        assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(0)), "{rec:?}");
    }
    assert_eq!(read_to_string(&log), "start\nstop\n", "started once, stopped once, after both");
    // Nothing of theirs is left running: no ssh with our config, master or not.
    let config = sshd.ssh_config.display().to_string();
    wait_for("the ssh processes to end", Duration::from_secs(5), || support::processes_with(&config).is_empty());
}

#[test]
fn ctrl_c_in_one_of_two_runs_touches_only_its_own() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world);
    let log = world.path("hooks.log");
    let work = world.path("w");
    world.write_config(&sshd.remote_table("it", &work, &hooks(&log)));
    let a = spawn(&world, &pkg, &["sleep=30"]);
    let b = spawn(&world, &pkg, &["sleep=4"]);
    wait_for("both runs to sleep", Duration::from_secs(20), || {
        let runs = remote_runs(&work);
        runs.len() == 2 && runs.iter().all(|r| read_to_string(&r.join("stdout.log")).contains("sleeping"))
    });
    signal(&a, "-INT");
    let (ca, _, ea) = finish(a);
    assert_eq!(ca, Some(130), "{ea}");
    assert_eq!(read_to_string(&log), "start\n", "the other run still uses the instance");
    assert!(ea.contains("it stays up: 1 other cargo-gpu run(s) use it"), "{ea}");
    let (cb, ob, _) = finish(b);
    assert_eq!(cb, Some(0));
    assert!(ob.ends_with("woke up\nrunner done\n"), "{ob}");
    assert_eq!(read_to_string(&log), "start\nstop\n");
}

/// Waits until the remote run of the only run has printed `sleeping`.
fn wait_sleeping(work: &Path) {
    wait_for("the run to sleep", Duration::from_secs(20), || {
        remote_runs(work).first().is_some_and(|r| read_to_string(&r.join("stdout.log")).contains("sleeping"))
    });
}

#[test]
fn a_second_ctrl_c_during_a_slow_fetch_still_runs_the_stop_command_once() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world);
    let log = world.path("hooks.log");
    let work = world.path("w");
    world.write_config(&sshd.remote_table("it", &work, &hooks(&log)));
    let child = spawn(&world, &pkg, &["sleep=30"]);
    wait_sleeping(&work);
    world.fake("slow-fetch", true);
    signal(&child, "-INT");
    // The first Ctrl-C stopped the run there; the fetch of its files now hangs.
    wait_for("the remote run to stop", Duration::from_secs(10), || {
        remote_runs(&work).first().is_some_and(|r| r.join("exit-status").exists())
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "-INT");
    let t = Instant::now();
    let (code, _, stderr) = finish(child);
    world.fake("slow-fetch", false);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(
        stderr.contains("stopping the instance it, press Ctrl-C again to abandon it: the instance will keep running"),
        "{stderr}"
    );
    assert_eq!(read_to_string(&log), "start\nstop\n", "stop ran exactly once");
    let rec = world.last_record();
    assert_eq!(rec.state, State::Interrupted);
    assert!(!rec.left_up);
}

#[test]
fn a_third_ctrl_c_abandons_the_stop_command_and_says_the_instance_keeps_running() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world);
    let log = world.path("hooks.log");
    let work = world.path("w");
    let slow_stop = format!(
        "start = \"echo start >> {l}\"\nstop = \"echo stop >> {l}; sleep 30; echo stopped >> {l}\"\n",
        l = log.display()
    );
    world.write_config(&sshd.remote_table("it", &work, &slow_stop));
    let child = spawn(&world, &pkg, &["sleep=30"]);
    wait_sleeping(&work);
    world.fake("slow-fetch", true);
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "-INT");
    wait_for("the stop command", Duration::from_secs(10), || read_to_string(&log) == "start\nstop\n");
    signal(&child, "-INT");
    let t = Instant::now();
    let (code, _, stderr) = finish(child);
    world.fake("slow-fetch", false);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(
        stderr.contains(
            "abandoned the `stop` command of it: the instance keeps running; `cargo gpu remote down it` stops it"
        ),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_to_string(&log), "start\nstop\n", "the stop command started once and was stopped");
    let rec = world.last_record();
    assert_eq!(rec.state, State::Interrupted, "a record never stays running");
    assert!(rec.left_up, "the record says the instance was left up");
}

#[test]
fn no_secret_reaches_the_run_folder_or_the_terminal() {
    let world = World::new();
    // A rented image with a token in its environment, and one the user passes with SetEnv.
    let opts =
        SshdOptions { env: "GH_TOKEN=gh_image_secret_123456", config: "AcceptEnv HF_TOKEN\n", ..Default::default() };
    let Some(sshd) = Sshd::start(&world, opts) else { return };
    let pkg = package(&world);
    let log = world.path("hooks.log");
    let work = world.path("w");
    let secrets = ["gh_image_secret_123456", "hf_user_secret_abcdef", "vast_key_secret_98765"];
    let table = sshd.remote_table(
        "it",
        &work,
        &format!(
            "start = \"VAST_API_KEY=vast_key_secret_98765 sh -c 'echo start >> {l}'\"\n\
             stop = \"VAST_API_KEY=vast_key_secret_98765 sh -c 'echo stop >> {l}'\"\n",
            l = log.display()
        ),
    );
    let table = table.replace("ssh-options = [", "ssh-options = [\"-o\", \"SetEnv=HF_TOKEN=hf_user_secret_abcdef\", ");
    world.write_config(&table);
    let out = run(&world, &pkg, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rec = world.last_record();
    let env = read_to_string(&world.runs_dir().join(&rec.id).join("env.txt"));
    assert!(env.contains("\nGH_TOKEN=<redacted>\n") && env.contains("\nHF_TOKEN=<redacted>\n"), "{env}");
    assert!(env.contains("\nCARGO_GPU_RUN_ID="), "{env}");

    // A start command that fails and prints its key: the error is recorded and shown masked.
    let failing = table.replace(
        &format!("sh -c 'echo start >> {}'", log.display()),
        "sh -c 'echo refused key $VAST_API_KEY >&2; exit 3'",
    );
    world.write_config(&failing);
    let failed = run(&world, &pkg, &[]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = text(&failed.stderr);
    assert!(stderr.contains("the `start` command of remote it") && stderr.contains("refused key ***"), "{stderr}");
    let rec = world.last_record();
    assert!(rec.error.as_deref().unwrap_or("").contains("refused key ***"), "{:?}", rec.error);
    for secret in secrets {
        assert!(support::files_containing(&world.runs_dir(), secret).is_empty(), "{secret} in a run folder");
        for o in [&out, &failed] {
            assert!(!text(&o.stderr).contains(secret) && !text(&o.stdout).contains(secret), "{secret} printed");
        }
    }
    // With -v the user asked to see every command line: the hooks are shown then, keys still masked.
    let verbose = text(&world.run(&["-v", "remote", "down", "it"]).stderr);
    assert!(verbose.contains("VAST_API_KEY=*** sh -c") && verbose.contains("SetEnv=HF_TOKEN=***"), "{verbose}");
    assert!(!secrets.iter().any(|s| verbose.contains(s)), "{verbose}");
}

#[test]
fn a_control_folder_other_users_can_reach_is_refused() {
    let world = World::new();
    let Some(sshd) = Sshd::start(&world, SshdOptions::default()) else { return };
    let pkg = package(&world);
    let log = world.path("hooks.log");
    world.write_config(&sshd.remote_table("it", &world.path("w"), &hooks(&log)));
    use std::os::unix::fs::PermissionsExt;
    // Made first by someone else in a shared temp folder: open to all, with a link planted.
    let shared = world.path("shared-tmp");
    let planted = shared.join(format!("cargo-gpu-ssh-{}", unsafe { libc::getuid() }));
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(world.path("victim"), planted.join("instance-planted.lock")).unwrap();
    let out = world
        .cmd(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()])
        .env_remove("CARGO_GPU_SSH_CONTROL_DIR")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &shared)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the ssh control folder {} has mode 777", planted.display()))
            && stderr.contains("cargo-gpu needs it private (700)"),
        "{stderr}"
    );
    assert!(!world.path("victim").exists(), "nothing was written through the planted link");
    assert!(!world.path("w").exists(), "nothing reached the remote");
    assert_eq!(read_to_string(&log), "stop\n", "the stop command still ran");
    // A link in place of the folder is refused too.
    std::fs::remove_dir_all(&planted).unwrap();
    let elsewhere = world.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
    let out = world
        .cmd(&["remote-run", "--remote", "it", "--package", &pkg.display().to_string()])
        .env_remove("CARGO_GPU_SSH_CONTROL_DIR")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &shared)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is a link"), "{}", text(&out.stderr));
}

#[test]
fn escapes_in_what_the_remote_says_are_printed_escaped() {
    let world = World::new();
    let opts = SshdOptions { fake_gpu: "hostile", ..Default::default() };
    let Some(sshd) = Sshd::start(&world, opts) else { return };
    let pkg = package(&world);
    world.write_config(&sshd.remote_table("it", &world.path("w"), ""));
    let out = run(&world, &pkg, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("NVIDIA H100\\e]0;pwned\\x07\\e[2J (compute capability 9.0)"), "{stderr}");
    assert_escapes_never_reach_the_terminal(&stderr);
    assert_eq!(world.last_record().gpu.as_deref(), Some("NVIDIA H100\\e]0;pwned\\x07\\e[2J"));
}

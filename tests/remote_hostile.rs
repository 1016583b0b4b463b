//! The remote as a stranger's machine, against a real sshd on loopback with hostile fakes on the
//! remote PATH (a `tar` that answers with a crafted archive, an `nvidia-smi` whose GPU name holds
//! terminal escapes): nothing is written or read outside the run folder, what comes back is
//! capped and streamed, a planted blob is never run, every login shell gets the same arguments,
//! concurrent runs keep out of each other's way, Ctrl-C pressed again and again still stops the
//! instance, secrets stay out of records and output, and shared temp folders are refused.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cargo_gpu::runs::State;
use support::{
    assert_no_links, ctrl_c, files_containing, finish, make_package, processes_with, raw_tar, read_text, required,
    run_measured, signal, wait_for, Remote, Run, SshdOptions, World,
};
use tar::EntryType;

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
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    // Where `~/.bashrc` would be: four folders above the run folder, like the attack's target.
    let victim = it.world.path("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    it.configure("");
    it.world.hostile_tar(&climbing_tar(&victim));
    let out = it.remote_run(&pkg, &[]).ok();
    assert_eq!(read_text(&victim), "keep\n", "the file outside the run folder is untouched");
    let rec = it.world.last_record();
    let dir = it.world.runs_dir().join(&rec.id);
    assert_no_links(&it.world.runs_dir());
    assert_eq!(rec.state, State::Finished, "the record is ours, not the tar's");
    assert_eq!(read_text(&dir.join("out/kept.txt")), "a real result\n");
    assert!(!dir.join("out/x").exists() && !dir.join("stdout.log").exists());
    assert!(rec.refused.iter().any(|r| r.starts_with("record.toml: not a file a run sends back")), "{:?}", rec.refused);
    assert!(rec.refused.iter().any(|r| r.contains("\\e]0;pwned\\x07\\nwarning: forged line")), "{:?}", rec.refused);
    out.stderr_has("refused an entry of run");
    assert_escapes_never_reach_the_terminal(&out.stderr);

    // `cargo gpu logs` takes the same way in: a detached run, then logs, with the same answer.
    it.remote_run(&pkg, &["--detach"]).ok();
    let out = it.world.run(&["logs"]).ok();
    assert_eq!(read_text(&victim), "keep\n");
    assert_no_links(&it.world.runs_dir());
    assert_escapes_never_reach_the_terminal(&out.stderr);
    assert_eq!(it.world.last_record().state, State::Finished);
}

#[test]
fn a_2_gib_output_is_capped_and_streamed_through_little_memory() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    // The default cap (1 GiB): 700 MiB of `out/` fit and pass through, the 2 GiB after do not.
    it.configure("");
    let measured = run_measured(&mut it.remote_run_cmd(&pkg, &["--", "big=700,2048"]));
    let stderr = &measured.run.stderr;
    eprintln!("{stderr}\npeak resident memory: {} MiB", measured.peak_rss_bytes >> 20);
    assert_eq!(measured.run.code, Some(0), "{stderr}");
    assert!(measured.peak_rss_bytes < 300 << 20, "peak memory {} MiB", measured.peak_rss_bytes >> 20);
    let rec = it.world.last_record();
    let dir = it.world.runs_dir().join(&rec.id);
    assert_eq!(std::fs::metadata(dir.join("out/big1.bin")).unwrap().len(), 700 << 20);
    assert!(!dir.join("out/big2.bin").exists(), "the file past the cap was not kept");
    assert_eq!(read_text(&dir.join("exit-status")), "0\n", "the logs that came first were kept");
    let said = "sent more than the 1.0 GiB that remote it may send back (its `max-fetch`)";
    assert!(
        stderr.contains(said) && stderr.contains("refused out/big2.bin (2.0 GiB) and everything after it"),
        "{stderr}"
    );
    assert!(rec.refused.iter().any(|r| r.contains(said)), "{:?}", rec.refused);
}

#[test]
fn a_blob_replaced_on_the_remote_is_refused_named_and_uploaded_again() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    // No stop command: the connection stays up, so the re-run relies on its earlier preflight.
    it.configure("");
    it.remote_run(&pkg, &[]).ok();
    let cubin_hash = cargo_gpu::digest::sha256_hex(CUBIN);
    let planted = b"\x7fELF a planted cubin";
    for fresh_preflight in [false, true] {
        std::fs::write(it.work.join("blobs").join(&cubin_hash), planted).unwrap();
        if fresh_preflight {
            it.sshd.close_master();
        }
        it.remote_run(&pkg, &[]).ok().stderr_has(&format!(
            "the stored blob {cubin_hash} (kernels/a.sm_90a.cubin) on it did not match its sha256: it was deleted there and is uploaded again"
        ));
        let rec = it.world.last_record();
        assert_eq!(rec.blobs_uploaded, 1, "only the planted blob travels again");
        let dir = it.world.runs_dir().join(&rec.id);
        assert_eq!(std::fs::read(dir.join("out/cubins.bin")).unwrap(), CUBIN, "the runner got the real cubin");
        assert_eq!(std::fs::read(it.work.join("blobs").join(&cubin_hash)).unwrap(), CUBIN);
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
    "\"",
    "%self",
    "%s",
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
    for shell in ["/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/zsh", "/usr/bin/fish", "/usr/bin/tcsh"] {
        let installed = Path::new(shell).is_file().then_some(shell);
        let Some(shell) = required(installed, shell, "apt-get install zsh fish tcsh") else { continue };
        let Some(mut it) = Remote::start(SshdOptions { login_shell: Some(shell), ..Default::default() }) else {
            return;
        };
        let pkg = package(&it.world);
        it.work = it.world.path("w it's $(x)");
        it.configure("");
        let out = it.remote_run(&pkg, &[&["--"], NASTY].concat());
        assert_eq!(out.code, Some(0), "{shell}: {}", out.stderr);
        let rec = it.world.last_record();
        let args = read_text(&it.world.runs_dir().join(&rec.id).join("out/args.txt"));
        let want: String = NASTY.iter().map(|a| format!("{a}\n")).collect();
        assert_eq!(args, want, "login shell {shell}");
        let pwned: Vec<_> = [it.world.tmp.path(), &it.work, &it.world.cwd]
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
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure(&it.hooks());
    let a = it.spawn(&pkg, &["--", "sleep=2"]);
    let b = it.spawn(&pkg, &["--", "sleep=3"]);
    let (a, b) = (finish(a), finish(b));
    assert_eq!((a.code, b.code), (Some(0), Some(0)));
    assert!(
        a.stdout.ends_with("woke up\nrunner done\n") && b.stdout.ends_with("woke up\nrunner done\n"),
        "{}\n{}",
        a.stdout,
        b.stdout
    );
    let ids = it.world.run_ids();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert_eq!(it.remote_runs().len(), 2, "each run has its own folder there");
    for id in &ids {
        let rec = cargo_gpu::runs::Record::load(&it.world.runs_dir(), id).unwrap();
        assert_eq!((rec.state, rec.exit_status), (State::Finished, Some(0)), "{rec:?}");
    }
    assert_eq!(it.hook_log(), "start\nstop\n", "started once, stopped once, after both");
    // Nothing of theirs is left running: no ssh with our config, master or not.
    let config = it.sshd.ssh_config.display().to_string();
    wait_for("the ssh processes to end", Duration::from_secs(5), || processes_with(&config).is_empty());
}

#[test]
fn ctrl_c_in_one_of_two_runs_touches_only_its_own() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure(&it.hooks());
    let a = it.spawn(&pkg, &["--", "sleep=30"]);
    let b = it.spawn(&pkg, &["--", "sleep=4"]);
    wait_for("both runs to sleep", Duration::from_secs(20), || {
        let runs = it.remote_runs();
        runs.len() == 2 && runs.iter().all(|r| read_text(&r.join("stdout.log")).contains("sleeping"))
    });
    let a = ctrl_c(a, Duration::from_secs(15));
    assert_eq!(it.hook_log(), "start\n", "the other run still uses the instance");
    a.stderr_has("it stays up: 1 other cargo-gpu run(s) use it");
    let b = finish(b);
    assert_eq!(b.code, Some(0));
    assert!(b.stdout.ends_with("woke up\nrunner done\n"), "{}", b.stdout);
    assert_eq!(it.hook_log(), "start\nstop\n");
}

#[test]
fn a_second_ctrl_c_during_a_slow_fetch_still_runs_the_stop_command_once() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure(&it.hooks());
    let child = it.spawn(&pkg, &["--", "sleep=30"]);
    let run = it.wait_sleeping();
    it.world.fake("slow-fetch", true);
    signal(&child, "-INT");
    // The first Ctrl-C stopped the run there; the fetch of its files now hangs.
    wait_for("the remote run to stop", Duration::from_secs(10), || run.join("exit-status").exists());
    std::thread::sleep(Duration::from_millis(300));
    let out = ctrl_c(child, Duration::from_secs(5));
    it.world.fake("slow-fetch", false);
    out.stderr_has("stopping the instance it, press Ctrl-C again to abandon it: the instance will keep running");
    assert_eq!(it.hook_log(), "start\nstop\n", "stop ran exactly once");
    let rec = it.world.last_record();
    assert_eq!(rec.state, State::Interrupted);
    assert!(!rec.left_up);
}

#[test]
fn a_third_ctrl_c_abandons_the_stop_command_and_says_the_instance_keeps_running() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure(&format!(
        "start = \"echo start >> {l}\"\nstop = \"echo stop >> {l}; sleep 30; echo stopped >> {l}\"\n",
        l = it.log.display()
    ));
    let child = it.spawn(&pkg, &["--", "sleep=30"]);
    it.wait_sleeping();
    it.world.fake("slow-fetch", true);
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "-INT");
    wait_for("the stop command", Duration::from_secs(10), || it.hook_log() == "start\nstop\n");
    let out = ctrl_c(child, Duration::from_secs(5));
    it.world.fake("slow-fetch", false);
    out.stderr_has(
        "abandoned the `stop` command of it: the instance keeps running; `cargo gpu remote down it` stops it",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(it.hook_log(), "start\nstop\n", "the stop command started once and was stopped");
    let rec = it.world.last_record();
    assert_eq!(rec.state, State::Interrupted, "a record never stays running");
    assert!(rec.left_up, "the record says the instance was left up");
}

#[test]
fn no_secret_reaches_the_run_folder_or_the_terminal() {
    // A rented image with a token in its environment, and one the user passes with SetEnv.
    let opts =
        SshdOptions { env: "GH_TOKEN=gh_image_secret_123456", config: "AcceptEnv HF_TOKEN\n", ..Default::default() };
    let Some(it) = Remote::start(opts) else { return };
    let pkg = package(&it.world);
    let secrets = ["gh_image_secret_123456", "hf_user_secret_abcdef", "vast_key_secret_98765"];
    let table = it.table(&format!(
        "start = \"VAST_API_KEY=vast_key_secret_98765 sh -c 'echo start >> {l}'\"\n\
         stop = \"VAST_API_KEY=vast_key_secret_98765 sh -c 'echo stop >> {l}'\"\n",
        l = it.log.display()
    ));
    let table = table.replace("ssh-options = [", "ssh-options = [\"-o\", \"SetEnv=HF_TOKEN=hf_user_secret_abcdef\", ");
    it.world.write_config(&table);
    let out = it.remote_run(&pkg, &[]).ok();
    let rec = it.world.last_record();
    let env = read_text(&it.world.runs_dir().join(&rec.id).join("env.txt"));
    assert!(env.contains("\nGH_TOKEN=<redacted>\n") && env.contains("\nHF_TOKEN=<redacted>\n"), "{env}");
    assert!(env.contains("\nCARGO_GPU_RUN_ID="), "{env}");

    // A start command that fails and prints its key: the error is recorded and shown masked.
    let failing = table.replace(
        &format!("sh -c 'echo start >> {}'", it.log.display()),
        "sh -c 'echo refused key $VAST_API_KEY >&2; exit 3'",
    );
    it.world.write_config(&failing);
    let failed = it.remote_run(&pkg, &[]).fails_with(1);
    failed.stderr_has("the `start` command of remote it").stderr_has("refused key ***");
    let rec = it.world.last_record();
    assert!(rec.error.as_deref().unwrap_or("").contains("refused key ***"), "{:?}", rec.error);
    for secret in secrets {
        assert!(files_containing(&it.world.runs_dir(), secret).is_empty(), "{secret} in a run folder");
        for o in [&out, &failed] {
            assert!(!o.stderr.contains(secret) && !o.stdout.contains(secret), "{secret} printed");
        }
    }
    // With -v the user asked to see every command line: the hooks are shown then, keys still masked.
    let verbose = it.world.run(&["-v", "remote", "down", "it"]).stderr;
    assert!(verbose.contains("VAST_API_KEY=*** sh -c") && verbose.contains("SetEnv=HF_TOKEN=***"), "{verbose}");
    assert!(!secrets.iter().any(|s| verbose.contains(s)), "{verbose}");
}

#[test]
fn a_control_folder_other_users_can_reach_is_refused() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure(&it.hooks());
    use std::os::unix::fs::PermissionsExt;
    // Made first by someone else in a shared temp folder: open to all, with a link planted.
    let shared = it.world.path("shared-tmp");
    let planted = shared.join(format!("cargo-gpu-ssh-{}", unsafe { libc::getuid() }));
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(it.world.path("victim"), planted.join("instance-planted.lock")).unwrap();
    // cargo-gpu's own choice of control folder, in that temp folder.
    let in_shared_tmp = || {
        let mut cmd = it.remote_run_cmd(&pkg, &[]);
        Run::of(cmd.env_remove("CARGO_GPU_SSH_CONTROL_DIR").env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &shared))
    };
    let out = in_shared_tmp().fails_with(1);
    out.stderr_has(&format!("the ssh control folder {} has mode 777", planted.display()));
    out.stderr_has("cargo-gpu needs it private (700)");
    assert!(!it.world.path("victim").exists(), "nothing was written through the planted link");
    assert!(!it.work.exists(), "nothing reached the remote");
    assert_eq!(it.hook_log(), "stop\n", "the stop command still ran");
    // A link in place of the folder is refused too.
    std::fs::remove_dir_all(&planted).unwrap();
    let elsewhere = it.world.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
    in_shared_tmp().fails_with(1).stderr_has("is a link");
}

#[test]
fn escapes_in_what_the_remote_says_are_printed_escaped() {
    let Some(it) = Remote::start(SshdOptions { fake_gpu: "hostile", ..Default::default() }) else { return };
    let pkg = package(&it.world);
    it.configure("");
    let out = it.remote_run(&pkg, &[]).ok();
    out.stderr_has("NVIDIA H100\\e]0;pwned\\x07\\e[2J (compute capability 9.0)");
    assert_escapes_never_reach_the_terminal(&out.stderr);
    assert_eq!(it.world.last_record().gpu.as_deref(), Some("NVIDIA H100\\e]0;pwned\\x07\\e[2J"));
}

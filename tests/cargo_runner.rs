//! `cargo gpu test` and cargo's target runner (`cargo gpu exec`, as `cargo gpu init --runner`
//! writes it) against a real sshd on loopback, on a crate whose tests pass, fail and panic: the
//! same counts and exit status as cargo and cargo-nextest report when they run the tests here,
//! the test's data file and cargo's environment there, and its kernels beside it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{repo_root, require_cuda, required, Remote, Run, SshdOptions, TestProject, BIN};

/// Where the fixture's tests build, kept between runs so cargo compiles them once; one folder per
/// test, since each test builds its own copy of the fixture, and two copies of one package
/// (other paths, other debug info) would replace each other's cubins in one build state.
fn target_dir(test: &str) -> PathBuf {
    repo_root().join("target/test-unit-tests").join(test)
}

/// The `test result:` lines of libtest, in order.
fn results(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("test result:"))
        .map(|l| l.split("; finished").next().unwrap().to_string())
        .collect()
}

/// `PATH` with cargo-gpu's folder first, as after `cargo install`.
fn path_with_cargo_gpu(rest: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut paths = vec![Path::new(BIN).parent().unwrap().to_path_buf()];
    paths.extend(std::env::split_paths(rest));
    std::env::join_paths(paths).unwrap()
}

/// A command in the project with the world's cargo-gpu settings (config, ssh folder, cache).
fn in_world(it: &Remote, p: &TestProject, cuda: &Path, target: &Path, program: &str, args: &[&str]) -> Command {
    let world = it.world.cmd(&[]);
    let mut c = Command::new(program);
    c.args(args).current_dir(&p.dir);
    for (k, v) in world.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let path = world.get_envs().find(|(k, _)| *k == "PATH").and_then(|(_, v)| v).unwrap().to_os_string();
    c.env("PATH", path_with_cargo_gpu(&path)).env("CARGO_TARGET_DIR", target).env("CUDA_HOME", cuda);
    c.env_remove("CARGO_GPU_REMOTE").env_remove("CARGO_GPU_NVCC");
    c
}

#[test]
fn cargo_gpu_test_reports_the_counts_and_exit_status_cargo_test_does() {
    let Some(cuda) = require_cuda() else { return };
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    it.configure("");
    let p = TestProject::new("unit-tests", Some(cuda.clone()));
    let target = target_dir("cargo-gpu-test");

    let local = Run::of(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["test", "--no-fail-fast"])
            .current_dir(&p.dir)
            .env("CARGO_TARGET_DIR", &target)
            .env("CUDA_HOME", &cuda),
    );
    assert_eq!(local.code, Some(101), "{}", local.stderr);
    let want = results(&local.stdout);
    assert_eq!(
        want,
        [
            "test result: FAILED. 4 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out"
        ]
    );

    let cargo_gpu = |args: &[&str]| {
        let mut c = in_world(&it, &p, &cuda, &target, BIN, &[&["gpu", "test", "--remote", "it"], args].concat());
        Run::of(&mut c)
    };
    let remote = cargo_gpu(&["--no-fail-fast", "--", "--test-threads", "2"]);
    assert_eq!(remote.code, Some(101), "{}", remote.stderr);
    assert_eq!(results(&remote.stdout), want, "{}\n{}", remote.stdout, remote.stderr);
    remote.stderr_has("Summary 2 of 2 test binaries ran, 1 failed: bin unit-tests (");
    // The failures are the fixture's own, not the remote's: its data file and kernels were there.
    assert!(
        remote.stdout.contains("test tests::reads_its_data_file_and_cargo_environment ... ok"),
        "{}",
        remote.stdout
    );
    assert!(remote.stdout.contains("test tests::sees_its_kernels_when_sent_to_a_gpu ... ok"), "{}", remote.stdout);
    assert!(remote.stdout.contains("arithmetic is hard"), "a failure's message comes back: {}", remote.stdout);

    // As cargo does, the first failing binary ends the run.
    let fail_fast = cargo_gpu(&[]);
    assert_eq!(fail_fast.code, Some(101));
    assert_eq!(results(&fail_fast.stdout), want[..1]);
    fail_fast.stderr_has("Summary 1 of 2 test binaries ran, 1 failed");
    // Only what passes: exit 0, one test run.
    let one = cargo_gpu(&["--", "--exact", "tests::passes"]);
    assert_eq!(one.code, Some(0), "{}", one.stderr);
    assert!(one.stdout.contains("test result: ok. 1 passed; 0 failed"), "{}", one.stdout);
    assert_eq!(it.remote_runs().len(), 3, "one run per cargo gpu test");
    assert!(it.remote_runs().iter().all(|r| r.join("nvidia-smi.txt").is_file()), "one GPU snapshot per cargo gpu test");
}

#[test]
fn nextest_through_the_target_runner_reports_what_it_reports_here() {
    let Some(cuda) = require_cuda() else { return };
    let nextest = Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success());
    let Some(()) = required(nextest.then_some(()), "cargo-nextest", "cargo install --locked cargo-nextest") else {
        return;
    };
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    it.configure("");
    let p = TestProject::new("unit-tests", Some(cuda.clone()));
    let target = target_dir("nextest");
    let summary = |out: &Run| -> String {
        let text = format!("{}{}", out.stdout, out.stderr);
        let line = text.lines().find(|l| l.contains("tests run:")).unwrap_or_else(|| panic!("no summary in\n{text}"));
        line.split_once("tests run:").unwrap().1.trim().to_string()
    };
    let nextest = |p: &TestProject| {
        let mut c =
            in_world(&it, p, &cuda, &target, "cargo", &["nextest", "run", "--no-fail-fast", "--color", "never"]);
        Run::of(&mut c)
    };
    let local = nextest(&p);
    assert_eq!(local.code, Some(100), "{}", local.stderr);

    in_world(&it, &p, &cuda, &target, BIN, &["gpu", "init", "--runner", "--remote", "it"]).status().unwrap();
    let config = std::fs::read_to_string(p.path(".cargo/config.toml")).unwrap();
    assert!(config.contains("runner = [\"cargo-gpu\", \"exec\", \"--remote\", \"it\", \"--\"]"), "{config}");
    let remote = nextest(&p);
    assert_eq!(remote.code, local.code, "{}", remote.stderr);
    assert_eq!(summary(&remote), summary(&local));
    // Each of the 7 tests ran there as its own run (and nextest's listing of each binary may too),
    // none with a GPU snapshot after it: that query would add to every test's time.
    let runs = it.remote_runs();
    assert!(runs.len() >= 7, "{} runs", runs.len());
    assert!(runs.iter().all(|r| r.join("exit-status").is_file() && !r.join("nvidia-smi.txt").exists()), "{runs:?}");
}

//! The text a user reads first: help output, kept in snapshots so that changes are deliberate
//! (`SNAPSHOTS=overwrite cargo test --test cli` rewrites them).

mod support;

use snapbox::cmd::Command;

#[test]
fn top_level_help() {
    Command::new(support::BIN)
        .args(["gpu", "--help"])
        .env("COLUMNS", "100")
        .assert()
        .success()
        .stdout_eq(snapbox::file!["snapshots/help.txt"]);
}

#[test]
fn build_help() {
    Command::new(support::BIN)
        .args(["gpu", "build", "--help"])
        .env("COLUMNS", "100")
        .assert()
        .success()
        .stdout_eq(snapbox::file!["snapshots/build-help.txt"]);
}

#[test]
fn inspect_help() {
    Command::new(support::BIN)
        .args(["gpu", "inspect", "--help"])
        .env("COLUMNS", "100")
        .assert()
        .success()
        .stdout_eq(snapbox::file!["snapshots/inspect-help.txt"]);
}

#[test]
fn new_help() {
    Command::new(support::BIN)
        .args(["gpu", "new", "--help"])
        .env("COLUMNS", "100")
        .assert()
        .success()
        .stdout_eq(snapbox::file!["snapshots/new-help.txt"]);
}

#[test]
fn direct_invocation_without_gpu_word_works() {
    Command::new(support::BIN)
        .args(["build", "--target", "sm_99z"])
        .assert()
        .code(2)
        .stderr_eq("error: invalid --target: `sm_99z` is not a GPU target; valid targets are: [..]\n");
}

#[test]
fn mistyped_target_suggests_the_one_meant() {
    Command::new(support::BIN)
        .args(["gpu", "build", "--target", "SM_90A"])
        .assert()
        .code(2)
        .stderr_eq(snapbox::file!["snapshots/target-typo.txt"]);
    for typo in ["sm90a", "90a", "compute_90a"] {
        Command::new(support::BIN).args(["gpu", "build", "--target", typo]).assert().code(2).stderr_eq(format!(
            "error: invalid --target: `{typo}` is not a GPU target (did you mean `sm_90a`?); valid targets are: [..]\n"
        ));
    }
}

#[test]
fn usage_errors_exit_2() {
    Command::new(support::BIN).args(["gpu", "no-such-command"]).assert().code(2);
}

//! `cargo gpu exec`, `test`, `bench` and `run`: executables cargo builds here, run on the remote
//! GPU with the project's kernels through the same blob store, session, streaming, fetch and
//! record as `remote-run`. `exec` is one executable as cargo's target runner calls it: its
//! output, exit status and the environment cargo gives a test are as if it ran here. `test` and
//! `bench` run every binary in one session (one upload, one instance start), as cargo would.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::{CargoTestArgs, ExecArgs, GlobalOpts, RunBinArgs};
use crate::compile::cargo_exe::{self, Kind};
use crate::compile::exec::{self as exec_package, ExecPackage};
use crate::compile::sources::Profile;
use crate::config::Remote;
use crate::project::Project;
use crate::quote::is_name;
use crate::remote::run::{self, RunPackage};
use crate::remote::scripts::EnvValue;
use crate::remote::tools::RunTools;
use crate::shell::{Shell, Verbosity};

/// Variables cargo gives a test or a binary it runs, and those a runner reads, forwarded to the
/// remote: these names, and every name with one of [`FORWARDED_PREFIXES`].
const FORWARDED: &[&str] = &["CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"];
const FORWARDED_PREFIXES: &[&str] = &["CARGO_PKG_", "RUST_", "NEXTEST", "CARGO_GPU_"];
/// `CARGO_GPU_` names that steer cargo-gpu here, or that the run script sets there.
const LOCAL_ONLY: &[&str] = &[
    "CARGO_GPU_REMOTE",
    "CARGO_GPU_CONFIG",
    "CARGO_GPU_HOME",
    "CARGO_GPU_CACHE_DIR",
    "CARGO_GPU_NVCC",
    "CARGO_GPU_CUDA",
    "CARGO_GPU_CUDA_VENV",
    "CARGO_GPU_SANITIZER",
    "CARGO_GPU_SHIP_SANITIZER",
    "CARGO_GPU_SSH_CONTROL_DIR",
    crate::remote::agent_link::NO_AGENT_ENV,
    crate::remote::agent_link::IDLE_ENV,
    "CARGO_GPU_KERNELS",
    "CARGO_GPU_OUT",
    "CARGO_GPU_RUN_ID",
];

/// The environment the runner gets: the forwarded variables of this process, and
/// `CARGO_MANIFEST_DIR` pointing where the package's test files are in the run folder.
fn forwarded_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, EnvValue)> {
    let mut env: Vec<(String, EnvValue)> = vars
        .filter(|(k, _)| is_name(k) && !LOCAL_ONLY.contains(&k.as_str()) && !k.starts_with("CARGO_GPU_TEST_"))
        .filter(|(k, _)| FORWARDED.contains(&k.as_str()) || FORWARDED_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k, EnvValue::Text(v)))
        .collect();
    env.sort_by(|a, b| a.0.cmp(&b.0));
    env.push(("CARGO_MANIFEST_DIR".into(), EnvValue::InRun("files".into())));
    env
}

/// A shell that prints only errors and warnings unless `-v` asked for more: `exec` stands in for
/// the executable, whose own output is what the caller reads.
fn quiet(global: &GlobalOpts) -> Shell {
    let v = match global.verbosity() {
        Verbosity::Verbose => Verbosity::Verbose,
        _ => Verbosity::Quiet,
    };
    Shell::new(v, global.message_format)
}

/// The project of the executable: `--manifest-path`, else the crate cargo ran it for
/// (`CARGO_MANIFEST_DIR`), else the one around the current folder.
fn project(shell: &Shell, global: &GlobalOpts, targets: &[String]) -> Result<Project> {
    let from_cargo = std::env::var_os("CARGO_MANIFEST_DIR").map(|d| PathBuf::from(d).join("Cargo.toml"));
    let manifest = global.manifest_path.clone().or(from_cargo.filter(|m| m.is_file()));
    Project::load(shell, manifest.as_deref(), targets)
}

/// How often the caller runs packages: once per test (`exec` as cargo's target runner, under
/// nextest one process per test), or once for all of them (`test`, `bench`, `run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cadence {
    /// No GPU snapshot after each run (the query would add to every test's time), and the
    /// scripts go through the remote's agent, which spares each one a login shell there.
    PerTest,
    Once,
}

/// Runs `package` on `remote` with `args`.
fn run_on_remote(
    shell: &Shell,
    cadence: Cadence,
    remote: &Remote,
    runs_dir: &Path,
    shown: String,
    package: &ExecPackage,
    args: &[String],
) -> Result<run::Ran> {
    let env = forwarded_env(std::env::vars());
    let per_test = cadence == Cadence::PerTest;
    let tools = RunTools { no_snapshot: per_test, ..RunTools::default() };
    run::run_package(
        shell,
        RunPackage {
            remote,
            package: shown,
            manifest: &package.manifest,
            files: &package.files,
            runs_dir,
            args,
            combinations: vec![Vec::new()],
            sweep: false,
            gpus_per_run: 1,
            env: &env,
            tools: &tools,
            tool_options: Vec::new(),
            shipment: None,
            detach: false,
            keep_up: false,
            agent: per_test,
        },
    )
}

/// Whether an executable cargo built is an optimised one (`target/release/deps/x`).
fn built_in_release(exe: &Path) -> bool {
    exe.ancestors().skip(1).take(3).any(|d| d.file_name().is_some_and(|n| n == "release"))
}

/// `shell` is not used: `exec` speaks through a quiet one (see [`quiet`]).
pub fn exec(_shell: &Shell, global: &GlobalOpts, args: &ExecArgs) -> Result<i32> {
    let quiet = quiet(global);
    let (program, rest) = args.command.split_first().context("no executable to run")?;
    let exe = std::path::absolute(program).with_context(|| format!("cannot find {program}"))?;
    if !exe.is_file() {
        bail!("{} does not exist: `cargo gpu exec -- PROGRAM [ARGS]` runs an executable built here", exe.display());
    }
    let (package, project_remote, runs_dir) = match &args.package {
        Some(dir) => {
            let package = exec_package::from_package(dir, &exe, &[])?;
            (package, None, crate::project::runs_dir(&quiet, global.manifest_path.as_deref(), Some(dir)))
        }
        None => {
            let project = project(&quiet, global, &args.targets)?;
            let profile = if args.release || built_in_release(&exe) { Profile::Release } else { Profile::Debug };
            let package = exec_package::package(&quiet, &project, profile, &exe, &[])?;
            (package, project.remote.clone(), project.runs_dir())
        }
    };
    let ran = run_on_remote(
        &quiet,
        Cadence::PerTest,
        &run::resolve_remote(args.remote.as_deref(), project_remote.as_deref())?,
        &runs_dir,
        exe.display().to_string(),
        &package,
        rest,
    )?;
    Ok(ran.code)
}

/// `cargo gpu test` and `cargo gpu bench`.
pub fn test(shell: &Shell, global: &GlobalOpts, args: &CargoTestArgs, kind: Kind) -> Result<i32> {
    let (cargo_args, binary_args) = args.split();
    let project = Project::load(shell, global.manifest_path.as_deref(), &args.targets)?;
    let release = kind == Kind::Bench || cargo_args.iter().any(|a| a == "--release" || a == "-r");
    let cmd = cargo_exe::command(&project, kind, false, cargo_args, shell.verbosity());
    let exes = cargo_exe::build(shell, cmd, kind)?;
    if exes.is_empty() {
        bail!("cargo built no {} binary for these arguments", if kind == Kind::Bench { "benchmark" } else { "test" });
    }
    let script = tests_script(&exes, kind, args.no_fail_fast);
    let script_path = write_script(&project, &script)?;
    let profile = if release { Profile::Release } else { Profile::Debug };
    let paths: Vec<PathBuf> = exes.iter().map(|e| e.path.clone()).collect();
    let package = exec_package::package(shell, &project, profile, &script_path, &paths)?;
    shell.status(
        "Running",
        format!(
            "{} {} binar{} on the remote GPU",
            exes.len(),
            kind_word(kind),
            if exes.len() == 1 { "y" } else { "ies" }
        ),
    );
    let shown = format!("{} ({})", project.manifest_path.display(), kind_word(kind));
    let ran = run_on_remote(
        shell,
        Cadence::Once,
        &run::resolve_remote(args.remote.as_deref(), project.remote.as_deref())?,
        &project.runs_dir(),
        shown,
        &package,
        binary_args,
    )?;
    summarize(shell, &ran.run_dir, exes.len(), kind);
    Ok(ran.code)
}

fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Bench => "benchmark",
        _ => "test",
    }
}

/// The runner of `cargo gpu test`: each binary in turn, as cargo runs them (a `Running` line on
/// stderr first, `--bench` for benchmarks), stopping after the first that fails unless
/// `no_fail_fast`; each one's exit status is noted in `$CARGO_GPU_OUT/cargo-gpu-tests.txt`.
/// Exit status 101 when one failed, as cargo's.
pub fn tests_script(exes: &[cargo_exe::Executable], kind: Kind, no_fail_fast: bool) -> String {
    use crate::quote::quote;
    let mut s = String::from(
        "#!/bin/sh\n# The test binaries of `cargo gpu test`, run in turn.\nbin=$(cd \"$(dirname \"$0\")\" && pwd)\n\
         out=\"${CARGO_GPU_OUT:-.}/cargo-gpu-tests.txt\"\nfailed=0\n\
         one() {\n  label=$1; exe=$2; shift 2\n  printf '     Running %s\\n' \"$label\" >&2\n  \"$bin/$exe\" \"$@\"\n  s=$?\n\
         \x20 printf '%s %s\\n' \"$s\" \"$label\" >> \"$out\"\n  [ \"$s\" = 0 ] || failed=1\n  return \"$s\"\n}\n",
    );
    let bench = if kind == Kind::Bench { " --bench" } else { "" };
    for e in exes {
        let file = e.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stop = if no_fail_fast { "" } else { " || exit 101" };
        s.push_str(&format!("one {} {}{bench} \"$@\"{stop}\n", quote(&e.label()), quote(&file)));
    }
    s.push_str("[ $failed = 0 ] || exit 101\n");
    s
}

/// The script, written once by its content into the build folder (several `cargo gpu test` at
/// once may share it).
fn write_script(project: &Project, script: &str) -> Result<PathBuf> {
    let dir = project.target_dir.join("gpu/.exec");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let digest = crate::digest::sha256_hex(script.as_bytes());
    let path = dir.join(format!("cargo-gpu-tests-{}", &digest[..16]));
    if !path.is_file() {
        crate::safe_fs::write_atomic(&path, script.as_bytes())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(path)
}

/// The closing lines: how many binaries ran, and which failed.
fn summarize(shell: &Shell, run_dir: &Path, built: usize, kind: Kind) {
    let text = std::fs::read_to_string(run_dir.join("out/cargo-gpu-tests.txt")).unwrap_or_default();
    let ran: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(' ')).collect();
    let failed: Vec<String> =
        ran.iter().filter(|(s, _)| *s != "0").map(|(s, l)| format!("{} (exit {s})", crate::escape::line(l))).collect();
    let mut line = format!("{} of {built} {} binaries ran, {} failed", ran.len(), kind_word(kind), failed.len());
    if !failed.is_empty() {
        line.push_str(&format!(": {}", failed.join(", ")));
    }
    shell.status("Summary", line);
}

/// `cargo gpu run [--bin NAME] -- ARGS`.
pub fn run_bin(shell: &Shell, global: &GlobalOpts, args: &RunBinArgs) -> Result<i32> {
    let project = Project::load(shell, global.manifest_path.as_deref(), &args.targets)?;
    let mut cargo_args: Vec<String> = Vec::new();
    if let Some(b) = &args.bin {
        cargo_args.extend(["--bin".to_string(), b.clone()]);
    }
    let cmd = cargo_exe::command(&project, Kind::Run, args.release, &cargo_args, shell.verbosity());
    let exes = cargo_exe::build(shell, cmd, Kind::Run)?;
    let exe = match exes.as_slice() {
        [one] => one,
        [] => bail!("cargo built no binary"),
        many => bail!(
            "the crate has {} binaries ({}): name one with --bin",
            many.len(),
            many.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    let profile = if args.release { Profile::Release } else { Profile::Debug };
    let package = exec_package::package(shell, &project, profile, &exe.path, &[])?;
    let ran = run_on_remote(
        shell,
        Cadence::Once,
        &run::resolve_remote(args.remote.as_deref(), project.remote.as_deref())?,
        &project.runs_dir(),
        exe.path.display().to_string(),
        &package,
        &args.args,
    )?;
    Ok(ran.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_test_environment_is_forwarded_and_local_settings_are_not() {
        let vars = [
            ("CARGO_PKG_NAME", "demo"),
            ("CARGO_CRATE_NAME", "demo"),
            ("RUST_BACKTRACE", "1"),
            ("NEXTEST_RUN_ID", "abc"),
            ("CARGO_GPU_DEVICE", "1"),
            ("CARGO_GPU_REMOTE", "h100"),
            ("CARGO_GPU_HOME", "/home/me/.local/share/cargo-gpu"),
            ("HOME", "/home/me"),
            ("PATH", "/usr/bin"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("CARGO_MANIFEST_DIR", "/home/me/demo"),
        ];
        let env = forwarded_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "CARGO_CRATE_NAME",
                "CARGO_GPU_DEVICE",
                "CARGO_PKG_NAME",
                "NEXTEST_RUN_ID",
                "RUST_BACKTRACE",
                "CARGO_MANIFEST_DIR"
            ]
        );
        assert_eq!(env.last().unwrap().1, EnvValue::InRun("files".into()), "the test files' folder there");
    }

    #[test]
    fn release_executables_are_known_by_their_folder() {
        assert!(built_in_release(Path::new("/p/target/release/deps/t-1a2b")));
        assert!(built_in_release(Path::new("/p/target/x86_64-unknown-linux-gnu/release/deps/t-1a2b")));
        assert!(!built_in_release(Path::new("/p/target/debug/deps/t-1a2b")));
        assert!(!built_in_release(Path::new("/release/p/target/debug/deps/t-1a2b")), "only cargo's own folders");
    }

    #[test]
    fn the_tests_script_runs_each_binary_and_stops_at_the_first_failure() {
        let exe = |name: &str, file: &str| cargo_exe::Executable {
            path: PathBuf::from(format!("/t/debug/deps/{file}")),
            name: name.into(),
            kind: "test".into(),
        };
        let exes = [exe("a", "a-1"), exe("b's", "b-2")];
        let s = tests_script(&exes, Kind::Test, false);
        assert!(s.contains("one 'test a (a-1)' a-1 \"$@\" || exit 101\n"), "{s}");
        assert!(s.contains("one 'test b'\\''s (b-2)' b-2 \"$@\" || exit 101\n"), "{s}");
        let bench = tests_script(&exes, Kind::Bench, true);
        assert!(bench.contains("one 'test a (a-1)' a-1 --bench \"$@\"\n"), "{bench}");
        // The script itself, run: two binaries, the first fails; without fail-fast both run.
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (file, code) in [("a-1", 3), ("b-2", 0)] {
            std::fs::write(bin.join(file), format!("#!/bin/sh\necho \"{file} $*\"\nexit {code}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(bin.join(file), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for (fail_fast, ran) in [(true, 1), (false, 2)] {
            let script = bin.join("run");
            std::fs::write(&script, tests_script(&exes, Kind::Test, !fail_fast)).unwrap();
            let _ = std::fs::remove_file(tmp.path().join("cargo-gpu-tests.txt"));
            let out = std::process::Command::new("sh")
                .arg(&script)
                .arg("--exact")
                .env("CARGO_GPU_OUT", tmp.path())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(101));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.starts_with("a-1 --exact\n"), "{stdout}");
            let notes = std::fs::read_to_string(tmp.path().join("cargo-gpu-tests.txt")).unwrap();
            assert_eq!(notes.lines().count(), ran, "{notes}");
            assert!(notes.starts_with("3 test a (a-1)\n"), "{notes}");
        }
    }
}

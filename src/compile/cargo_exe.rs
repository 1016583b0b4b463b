//! The executables of `cargo test`, `cargo bench` and `cargo run`, built here to run elsewhere:
//! cargo builds them with `--no-run` (or `cargo build` for one binary) and names each in its
//! `--message-format=json` messages, so no path is guessed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use crate::cmd::{Cmd, ExecOptions, Sink};
use crate::project::{cargo_program, Project};
use crate::shell::{Shell, Verbosity};

/// What to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `cargo test --no-run`: every test binary.
    Test,
    /// `cargo bench --no-run`: every benchmark binary.
    Bench,
    /// `cargo build`: the binaries `--bin` names (or the only one).
    Run,
}

/// One executable cargo built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    pub path: PathBuf,
    /// The cargo target's name (`unit-tests`, `integration`).
    pub name: String,
    /// The target's kind as cargo says it: `lib`, `bin`, `test`, `bench`, `example`.
    pub kind: String,
}

impl Executable {
    /// What `cargo test` prints before running it: `unittests src/main.rs (target/...)`.
    pub fn label(&self) -> String {
        let file = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{} {} ({file})", self.kind, self.name)
    }
}

/// The cargo command for `kind`, with the user's own cargo arguments after cargo-gpu's.
pub fn command(project: &Project, kind: Kind, release: bool, cargo_args: &[String], verbosity: Verbosity) -> Cmd {
    let (sub, no_run) = match kind {
        Kind::Test => ("test", true),
        Kind::Bench => ("bench", true),
        Kind::Run => ("build", false),
    };
    let mut cmd = Cmd::new(cargo_program(), format!("build the {sub} executables"))
        .arg(sub)
        .args(["--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&project.manifest_path);
    if no_run {
        cmd = cmd.arg("--no-run");
    }
    if release && kind != Kind::Bench {
        cmd = cmd.arg("--release");
    }
    if let Some(t) = project.runner_targets.first() {
        cmd = cmd.args(["--target", t]);
    }
    cmd = match verbosity {
        Verbosity::Quiet => cmd.arg("--quiet"),
        Verbosity::Verbose => cmd.arg("--verbose"),
        Verbosity::Normal => cmd,
    };
    cmd.args(cargo_args)
}

/// The order cargo runs test binaries in: the library's, the binaries', then integration tests,
/// benchmarks and examples, each by name.
fn run_order(e: &Executable) -> (u8, String) {
    let rank = match e.kind.as_str() {
        "lib" | "rlib" | "dylib" | "cdylib" | "staticlib" | "proc-macro" => 0,
        "bin" => 1,
        "test" => 2,
        "bench" => 3,
        _ => 4,
    };
    (rank, e.name.clone())
}

/// Builds and returns the executables, in the order cargo would run them.
pub fn build(shell: &Shell, cmd: Cmd, kind: Kind) -> Result<Vec<Executable>> {
    let found: Arc<Mutex<Vec<Executable>>> = Arc::default();
    let taker = {
        let found = Arc::clone(&found);
        crate::cmd::line_taker(move |line| {
            if let Some(exe) = executable_of(line, kind) {
                found.lock().expect("the reader does not panic").push(exe);
            }
        })
    };
    let opts = ExecOptions { stdout_to: Some(taker), stderr: Sink::Inherit, ..Default::default() };
    let ended = cmd.exec(shell, opts)?;
    match ended.status {
        None => return Err(crate::exit::interrupted_error()),
        Some(s) if !s.success() => bail!("cargo could not build them: `{cmd}` {}", crate::cmd::describe_status(s)),
        Some(_) => {}
    }
    let mut found = std::mem::take(&mut *found.lock().expect("the reader does not panic"));
    found.sort_by_key(run_order);
    Ok(found)
}

/// An executable from one of cargo's JSON messages, when it is one `kind` runs.
fn executable_of(line: &[u8], kind: Kind) -> Option<Executable> {
    let text = std::str::from_utf8(line).ok()?;
    if !text.contains("\"compiler-artifact\"") || !text.contains("\"executable\":\"") {
        return None;
    }
    let cargo_metadata::Message::CompilerArtifact(a) = serde_json::from_slice::<cargo_metadata::Message>(line).ok()?
    else {
        return None;
    };
    let wanted = match kind {
        Kind::Test | Kind::Bench => a.profile.test,
        Kind::Run => a.target.is_bin(),
    };
    if !wanted {
        return None;
    }
    let target_kind = a.target.kind.first().map(|k| k.to_string()).unwrap_or_default();
    Some(Executable { path: a.executable?.into_std_path_buf(), name: a.target.name.clone(), kind: target_kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: &str, name: &str, test: bool, exe: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "reason": "compiler-artifact", "package_id": "path+file:///p#unit-tests@0.1.0", "manifest_path": "/p/Cargo.toml",
            "target": {"kind": [kind], "crate_types": [kind], "name": name, "src_path": "/p/src/main.rs",
                       "edition": "2021", "doc": true, "doctest": false, "test": true},
            "profile": {"opt_level": "0", "debuginfo": 2, "debug_assertions": true, "overflow_checks": true, "test": test},
            "features": [], "filenames": ["/t/x"], "executable": exe, "fresh": false
        }))
        .unwrap()
    }

    #[test]
    fn test_binaries_are_told_from_plain_ones() {
        let unit = message("bin", "unit-tests", true, Some("/t/debug/deps/unit_tests-1a2b"));
        let plain = message("bin", "unit-tests", false, Some("/t/debug/unit-tests"));
        let lib = message("lib", "dep", false, None);
        let exe = executable_of(&unit, Kind::Test).unwrap();
        assert_eq!(exe.path, PathBuf::from("/t/debug/deps/unit_tests-1a2b"));
        assert_eq!(exe.label(), "bin unit-tests (unit_tests-1a2b)");
        assert_eq!(executable_of(&plain, Kind::Test), None);
        assert_eq!(executable_of(&plain, Kind::Run).unwrap().path, PathBuf::from("/t/debug/unit-tests"));
        assert_eq!(executable_of(&unit, Kind::Bench).unwrap().kind, "bin");
        assert_eq!(executable_of(&lib, Kind::Test), None);
        assert_eq!(executable_of(b"{\"reason\":\"build-finished\",\"success\":true}", Kind::Test), None);
        let mut exes = [
            executable_of(&message("test", "integration", true, Some("/t/i-1")), Kind::Test).unwrap(),
            executable_of(&message("bin", "unit-tests", true, Some("/t/u-1")), Kind::Test).unwrap(),
            executable_of(&message("lib", "core", true, Some("/t/c-1")), Kind::Test).unwrap(),
        ];
        exes.sort_by_key(run_order);
        let names: Vec<&str> = exes.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["core", "unit-tests", "integration"], "the library's, the binaries', then tests");
    }
}

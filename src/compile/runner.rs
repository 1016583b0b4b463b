//! The host runner: the project's Rust binary, built for each machine the package runs on, able
//! to start on any glibc from its floor (`runner-glibc`) on. cargo's `--message-format=json`
//! names the executable, so no path is guessed.
//!
//! The ordinary build is plain cargo, as the user's own `cargo build`. Only when the plain build
//! needs a newer glibc than the floor (read from its ELF headers), or the triple is not this
//! machine's, is it built with cargo-zigbuild (see `zigbuild`) for `<triple>.<floor>`; the build
//! state remembers that, so the next build of that triple and floor goes straight to
//! cargo-zigbuild instead of building twice.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use crate::cmd::{Cmd, ExecOptions, Sink};
use crate::compile::sources::Profile;
use crate::compile::zigbuild::Zigbuild;
use crate::config::SeenMachine;
use crate::package::manifest::{glibc_text, gnu_triple, parse_version, triple_machine};
use crate::project::{cargo_program, Project};
use crate::shell::{Shell, Verbosity};

/// The triple cargo-gpu itself was built for, the default for runners.
pub const HOST_TRIPLE: &str = env!("CARGO_GPU_HOST_TRIPLE");

#[derive(Debug, Clone)]
pub struct Runner {
    pub executable: PathBuf,
    pub triple: String,
    pub fresh: bool,
}

/// One runner to build: for which triple, the oldest glibc it must start on, and whether cargo
/// is told the triple (a project that names this machine's triple gets `--target` as before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub triple: String,
    pub floor: (u32, u32),
    pub explicit: bool,
}

/// How a runner is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// `cargo build`: links against this machine's glibc.
    Plain,
    /// `cargo zigbuild --target <triple>.<floor>`.
    Zig,
}

/// The runners to build: the project's triples (this machine's when it names none). A build for
/// a remote whose machine is known builds for that machine instead of this one, or beside the
/// project's triples when none is for it; and a runner for that machine starts on the remote's
/// glibc when that is older than the floor.
pub fn plans(project: &Project, remote: Option<&SeenMachine>) -> Vec<Plan> {
    let machine = remote.and_then(|r| r.machine.as_deref());
    let mut triples: Vec<(String, bool)> = project.runner_targets.iter().map(|t| (t.clone(), true)).collect();
    if triples.is_empty() {
        match machine {
            Some(m) if m != triple_machine(HOST_TRIPLE) => triples.push((gnu_triple(m), true)),
            _ => triples.push((HOST_TRIPLE.to_string(), false)),
        }
    } else if let Some(m) = machine.filter(|m| !triples.iter().any(|(t, _)| triple_machine(t) == *m)) {
        triples.push((gnu_triple(m), true));
    }
    let mut seen = Vec::new();
    triples.retain(|(t, _)| {
        !seen.contains(t) && {
            seen.push(t.clone());
            true
        }
    });
    let remote_glibc = remote.and_then(|r| parse_version(r.glibc.as_deref()?));
    triples
        .into_iter()
        .map(|(triple, explicit)| {
            let for_remote = machine.map_or(true, |m| m == triple_machine(&triple));
            let floor = match remote_glibc {
                Some(g) if for_remote && g < project.runner_glibc => g,
                _ => project.runner_glibc,
            };
            Plan { triple, floor, explicit }
        })
        .collect()
}

/// The file whose presence says that a plain build of `plan` needed too new a glibc: kept in the
/// project's build state, named by triple and floor.
pub fn zig_marker(state_dir: &Path, plan: &Plan) -> PathBuf {
    state_dir.join(format!("runner-zigbuild-{}-glibc-{}", plan.triple, glibc_text(plan.floor)))
}

/// The first way to try: cargo-zigbuild for another machine's triple, or once a plain build was
/// found to need too new a glibc (`marked`); plain cargo otherwise.
pub fn first_way(plan: &Plan, marked: bool) -> Way {
    if plan.triple != HOST_TRIPLE || marked {
        Way::Zig
    } else {
        Way::Plain
    }
}

/// Whether a plain build that needs glibc `need` must be built again with cargo-zigbuild.
pub fn needs_zig(need: Option<(u32, u32)>, floor: (u32, u32)) -> bool {
    need.is_some_and(|n| n > floor)
}

pub fn command(project: &Project, profile: Profile, verbosity: Verbosity, plan: &Plan, zig: Option<&Zigbuild>) -> Cmd {
    let purpose = format!("build the host runner `{}`", project.runner);
    let mut cmd = match zig {
        None => Cmd::new(cargo_program(), purpose).arg("build"),
        Some(z) => z.command(format!("{purpose} for {} with glibc {}", plan.triple, glibc_text(plan.floor))),
    };
    cmd = cmd
        .args(["--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&project.manifest_path)
        .args(["--bin", &project.runner]);
    if profile == Profile::Release {
        cmd = cmd.arg("--release");
    }
    if zig.is_some() {
        cmd = cmd.args(["--target", &format!("{}.{}", plan.triple, glibc_text(plan.floor))]);
    } else if plan.explicit {
        cmd = cmd.args(["--target", &plan.triple]);
    }
    match verbosity {
        Verbosity::Quiet => cmd.arg("--quiet"),
        Verbosity::Verbose => cmd.arg("--verbose"),
        Verbosity::Normal => cmd,
    }
}

/// The runner's cargo build, started: cargo runs while the caller does other work.
pub struct Building {
    running: crate::cmd::Running,
    found: Arc<Mutex<Option<(PathBuf, bool)>>>,
    runner: String,
    triple: String,
    shown: String,
}

/// Starts building the runner; setting `cancel` stops cargo (the build is then an error nobody
/// reads). [`Building::finish`] waits for it.
///
/// With `early`, the cargo started for it before the command line was read is taken over when it
/// runs exactly this command (see [`crate::cmd::early`]): a plain build, and not with `-v`, whose
/// command line is printed before cargo starts.
#[allow(clippy::too_many_arguments)]
pub fn start(
    shell: &Shell,
    project: &Project,
    profile: Profile,
    plan: &Plan,
    zig: Option<&Zigbuild>,
    early: bool,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<Building> {
    let cmd = command(project, profile, shell.verbosity(), plan, zig);
    let early = (early && zig.is_none() && shell.verbosity() != Verbosity::Verbose).then(|| project.inputs());
    let found: Arc<Mutex<Option<(PathBuf, bool)>>> = Arc::default();
    let taker = {
        let found = Arc::clone(&found);
        let runner = project.runner.clone();
        crate::cmd::line_taker(move |line| {
            if let Some(exe) = executable_of(line, &runner) {
                *found.lock().expect("the reader does not panic") = Some(exe);
            }
        })
    };
    // cargo's own diagnostics and progress go straight to the terminal, as with `cargo build`.
    let opts = ExecOptions { stdout_to: Some(taker), stderr: Sink::Inherit, cancel, early, ..Default::default() };
    Ok(Building {
        running: cmd.start(shell, opts)?,
        found,
        runner: project.runner.clone(),
        triple: plan.triple.clone(),
        shown: cmd.to_string(),
    })
}

impl Building {
    /// Waits for cargo and names the executable it built.
    pub fn finish(self) -> Result<Runner> {
        let ended = self.running.wait()?;
        let Some(status) = ended.status else {
            if crate::exit::interrupted() {
                return Err(crate::exit::interrupted_error());
            }
            bail!("the build of the host runner `{}` was cancelled", self.runner);
        };
        if !status.success() {
            bail!("could not build the host runner `{}`: cargo {}", self.runner, crate::cmd::describe_status(status));
        }
        let found = self.found.lock().expect("the reader does not panic").take();
        let Some((executable, fresh)) = found else {
            bail!("cargo built no executable for the runner `{}`: `{}` reported none", self.runner, self.shown);
        };
        Ok(Runner { executable, triple: self.triple, fresh })
    }
}

/// The runner's executable, and whether it was fresh, from one of cargo's JSON messages.
fn executable_of(line: &[u8], runner: &str) -> Option<(PathBuf, bool)> {
    // Most lines are other crates' artifacts: skip them without parsing.
    let text = std::str::from_utf8(line).ok()?;
    if !text.contains("\"compiler-artifact\"") || !text.contains(&format!("\"{runner}\"")) {
        return None;
    }
    match serde_json::from_slice::<cargo_metadata::Message>(line).ok()? {
        cargo_metadata::Message::CompilerArtifact(a) if a.target.name == runner && a.target.is_bin() => {
            Some((a.executable?.into_std_path_buf(), a.fresh))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(targets: &[&str], floor: (u32, u32)) -> Project {
        Project {
            name: "p".into(),
            version: "0.1.0".into(),
            manifest_path: "/p/Cargo.toml".into(),
            root: "/p".into(),
            target_dir: "/p/target".into(),
            kernels_dir: "/p/kernels".into(),
            targets: vec![],
            nvcc_flags: vec![],
            include_dirs: vec![],
            runner: "r".into(),
            runner_problem: None,
            runner_targets: targets.iter().map(|t| t.to_string()).collect(),
            runner_glibc: floor,
            remote: None,
            cuda: None,
            test_files: vec![],
            expect: Default::default(),
        }
    }

    fn seen(machine: &str, glibc: &str) -> SeenMachine {
        SeenMachine { machine: Some(machine.into()), glibc: Some(glibc.into()) }
    }

    fn plan(triple: &str, floor: (u32, u32), explicit: bool) -> Plan {
        Plan { triple: triple.into(), floor, explicit }
    }

    const ARM: &str = "aarch64-unknown-linux-gnu";

    #[test]
    fn the_ordinary_build_is_plain_cargo_and_zig_only_when_the_floor_asks() {
        let p = plans(&project(&[], (2, 34)), None);
        assert_eq!(p, [plan(HOST_TRIPLE, (2, 34), false)]);
        assert_eq!(first_way(&p[0], false), Way::Plain);
        // This machine's glibc 2.36: a plain build needs 2.34 and fits the default floor.
        assert!(!needs_zig(Some((2, 34)), (2, 34)));
        assert!(!needs_zig(None, (2, 34)), "a static runner needs no glibc");
        // A laptop with glibc 2.40 whose build picked up newer symbols, or a floor of 2.28.
        assert!(needs_zig(Some((2, 39)), (2, 34)));
        assert!(needs_zig(Some((2, 34)), (2, 28)));
        // Once found, the next build goes straight to cargo-zigbuild.
        assert_eq!(first_way(&p[0], true), Way::Zig);
        // Another machine's triple is always cross-built.
        assert_eq!(first_way(&plan(ARM, (2, 34), true), false), Way::Zig);
    }

    #[test]
    fn the_zig_decision_is_kept_per_triple_and_floor() {
        let state = Path::new("/t/gpu/debug/.build/p");
        let a = zig_marker(state, &plan(HOST_TRIPLE, (2, 28), false));
        assert_eq!(a, state.join(format!("runner-zigbuild-{HOST_TRIPLE}-glibc-2.28")));
        assert_ne!(a, zig_marker(state, &plan(HOST_TRIPLE, (2, 34), false)));
        assert_ne!(a, zig_marker(state, &plan(ARM, (2, 28), true)));
    }

    #[test]
    fn a_build_for_a_remote_follows_its_machine_and_glibc() {
        let host = triple_machine(HOST_TRIPLE);
        let other = if host == "aarch64" { "x86_64" } else { "aarch64" };
        let p = project(&[], (2, 34));
        // Another machine: its runner instead of this machine's.
        assert_eq!(plans(&p, Some(&seen(other, "2.39"))), [plan(&gnu_triple(other), (2, 34), true)]);
        // This machine's kind with an older glibc: that glibc is the floor.
        assert_eq!(plans(&p, Some(&seen(host, "2.31"))), [plan(HOST_TRIPLE, (2, 31), false)]);
        assert_eq!(plans(&p, Some(&seen(host, "2.39"))), [plan(HOST_TRIPLE, (2, 34), false)]);
        // Only the glibc known (a machine that did not say): it counts for every runner.
        let glibc_only = SeenMachine { machine: None, glibc: Some("2.28".into()) };
        assert_eq!(plans(&p, Some(&glibc_only)), [plan(HOST_TRIPLE, (2, 28), false)]);
        // The project's triples, and the remote's machine beside them when none is for it.
        let both = project(&[HOST_TRIPLE, HOST_TRIPLE], (2, 34));
        assert_eq!(plans(&both, None), [plan(HOST_TRIPLE, (2, 34), true)], "named twice, built once");
        assert_eq!(
            plans(&both, Some(&seen(other, "2.31"))),
            [plan(HOST_TRIPLE, (2, 34), true), plan(&gnu_triple(other), (2, 31), true)]
        );
    }
}

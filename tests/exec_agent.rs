//! `cargo gpu exec` through the remote's agent, against a real sshd on loopback: a warm exec
//! reaches the agent over the master connection and starts no ssh session (no login shell), with
//! the output and exit status plain ssh gives; a killed agent leaves the runs on plain ssh and is
//! started again; an agent folder planted by someone else is refused; an idle agent exits.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{make_package, read_text, runner_stdout, wait_for, Remote, Run, SshdOptions, RUNNER};

/// sshd logs each session (each remote command) at this level.
const VERBOSE_SSHD: SshdOptions =
    SshdOptions { fake_gpu: "h100", known_host: true, env: "", config: "LogLevel VERBOSE", login_shell: None };

/// A remote `it` whose sshd logs sessions, and a package for it; `None` to skip without sshd.
fn setup() -> Option<(Remote, PathBuf)> {
    let it = Remote::start(VERBOSE_SSHD)?;
    it.configure("");
    let pkg = it.world.path("pkg");
    make_package(&pkg, RUNNER, &[("a.sm_90a.cubin", b"\x7fELF fake cubin")], &["sm_90a"]);
    Some((it, pkg))
}

/// `cargo gpu exec --remote it --package PKG -- PKG/bin/runner ARGS` with `env` set; an `-v` first
/// in `args` is cargo-gpu's.
fn exec(it: &Remote, pkg: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let pkg_arg = pkg.display().to_string();
    let runner = pkg.join("bin/runner").display().to_string();
    let (verbose, args) = match args {
        ["-v", rest @ ..] => (&["-v"][..], rest),
        _ => (&[][..], args),
    };
    let head = ["exec", "--remote", "it", "--package", &pkg_arg];
    let mut cmd = it.world.cmd(&[&head[..], verbose, &["--", &runner], args].concat());
    cmd.env_remove("CARGO_GPU_NO_AGENT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::of(&mut cmd)
}

/// How many sessions (remote commands, each through the login shell) sshd started so far.
fn sessions(it: &Remote) -> usize {
    read_text(&it.sshd.log).matches("Starting session: ").count()
}

/// The agent's folder on the remote.
fn agent_dir(it: &Remote) -> PathBuf {
    it.work.join("agent")
}

/// How many requests the agents in the remote's agent folder served so far.
fn agent_requests(it: &Remote) -> usize {
    let Ok(entries) = std::fs::read_dir(agent_dir(it)) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| read_text(&e.path()).lines().filter(|l| l.starts_with("request ")).count())
        .sum()
}

/// The pid the running agent wrote, if one runs.
fn agent_pid(it: &Remote) -> Option<u32> {
    let entries = std::fs::read_dir(agent_dir(it)).ok()?;
    let pid = entries.flatten().find(|e| e.path().extension().is_some_and(|x| x == "pid"))?;
    read_text(&pid.path()).trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !read_text(Path::new(&format!("/proc/{pid}/stat"))).split(") ").nth(1).is_some_and(|s| s.starts_with('Z'))
}

#[test]
fn a_warm_exec_goes_through_the_agent_and_answers_as_plain_ssh_does() {
    let Some((it, pkg)) = setup() else { return };
    let args = ["exit=3", "two words"];
    let plain = exec(&it, &pkg, &[("CARGO_GPU_NO_AGENT", "1")], &args);
    assert_eq!(plain.code, Some(3), "{}", plain.stderr);
    assert_eq!(plain.stdout, runner_stdout(&args));
    assert!(plain.stderr.contains("runner warns\n"), "{}", plain.stderr);
    assert!(!agent_dir(&it).exists(), "CARGO_GPU_NO_AGENT=1 starts no agent");

    // Without it, an exec starts the agent (uploading cargo-gpu) and runs through it; -v says so.
    let linked = exec(&it, &pkg, &[("CARGO_GPU_AGENT_IDLE", "1m")], &["-v"]);
    assert_eq!(linked.code, Some(0), "{}", linked.stderr);
    assert!(linked.stderr.contains("go through its agent"), "{}", linked.stderr);
    assert!(agent_pid(&it).is_some_and(alive), "the agent runs");

    // A warm exec: no ssh session at all, one request to the agent, and what plain ssh gave.
    let (s0, r0) = (sessions(&it), agent_requests(&it));
    let warm = exec(&it, &pkg, &[], &args);
    assert_eq!((sessions(&it) - s0, agent_requests(&it) - r0), (0, 1), "one request through the agent, no session");
    assert_eq!(warm.code, plain.code);
    assert_eq!(warm.stdout, plain.stdout);
    assert_eq!(warm.stderr, plain.stderr);
    let rec = it.world.last_record();
    assert_eq!((rec.exit_status, rec.blobs_uploaded), (Some(3), 0));
    assert_eq!(read_text(&it.world.runs_dir().join(&rec.id).join("stdout.log")), runner_stdout(&args));

    // Turned off, the same exec goes over ssh again.
    let s0 = sessions(&it);
    let off = exec(&it, &pkg, &[("CARGO_GPU_NO_AGENT", "1")], &args);
    assert_eq!((off.code, sessions(&it) - s0), (Some(3), 1));
}

#[test]
fn a_killed_agent_leaves_the_run_on_plain_ssh_and_is_started_again() {
    let Some((it, pkg)) = setup() else { return };
    exec(&it, &pkg, &[], &[]).ok();
    let pid = agent_pid(&it).expect("the first exec started the agent");
    assert!(std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    wait_for("the agent to die", Duration::from_secs(10), || !alive(pid));

    // The forward leads nowhere now: the run goes over plain ssh and succeeds all the same.
    let (s0, r0) = (sessions(&it), agent_requests(&it));
    let out = exec(&it, &pkg, &[], &["exit=5"]);
    assert_eq!(out.code, Some(5), "{}", out.stderr);
    assert_eq!(out.stdout, runner_stdout(&["exit=5"]));
    assert_eq!((sessions(&it) - s0, agent_requests(&it) - r0), (1, 0), "plain ssh, not the dead agent");

    // The next exec starts a new agent and goes through it.
    exec(&it, &pkg, &[], &[]).ok();
    let again = agent_pid(&it).expect("a new agent");
    assert!(again != pid && alive(again));
    let (s0, r0) = (sessions(&it), agent_requests(&it));
    exec(&it, &pkg, &[], &[]).ok();
    assert_eq!((sessions(&it) - s0, agent_requests(&it) - r0), (0, 1));
}

#[test]
fn an_agent_folder_planted_by_someone_else_is_refused() {
    let Some((it, pkg)) = setup() else { return };
    exec(&it, &pkg, &[], &[]).ok();
    // Planted where the agent's folder goes: a folder open to all, a link to a folder (private,
    // but not the agent's own), a private folder of another user.
    let elsewhere = it.world.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    for plant in ["open", "link", "another user's"] {
        let dir = agent_dir(&it);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&dir);
        match plant {
            "open" => {
                std::fs::create_dir(&dir).unwrap();
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            }
            "link" => std::os::unix::fs::symlink(&elsewhere, &dir).unwrap(),
            _ => {
                std::fs::create_dir(&dir).unwrap();
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
                // Only root can give a folder away: elsewhere this case is left out.
                if std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).is_err() {
                    continue;
                }
            }
        }
        // A new connection, so that the link is tried afresh.
        it.sshd.close_master();
        let out = exec(&it, &pkg, &[], &["-v"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stderr.contains("go over plain ssh"), "{plant}: {}", out.stderr);
        let why = if plant == "open" { "is open to other users" } else { "is not a folder of this user's own" };
        assert_eq!(std::fs::read_dir(agent_dir(&it)).unwrap().count(), 0, "{plant}: nothing was written into it");
        assert!(out.stderr.contains(why), "{plant}: {}", out.stderr);
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing was written through the link");
        // Refused once for this connection: the next exec does not try again.
        let s0 = sessions(&it);
        exec(&it, &pkg, &[], &[]).ok();
        assert_eq!(sessions(&it) - s0, 1, "{plant}: only the run's own command");
    }
}

#[test]
fn an_idle_agent_exits_and_removes_its_socket() {
    let Some((it, pkg)) = setup() else { return };
    // The first exec preflights, then starts the agent for the run.
    exec(&it, &pkg, &[("CARGO_GPU_AGENT_IDLE", "2s")], &[]).ok();
    let pid = agent_pid(&it).expect("the agent started");
    wait_for("the idle agent to exit", Duration::from_secs(15), || !alive(pid));
    let left: Vec<String> = std::fs::read_dir(agent_dir(&it))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sock") || n.ends_with(".pid"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The run after it finds the forward dead and goes over plain ssh; the next links a new agent.
    exec(&it, &pkg, &[], &[]).ok();
    exec(&it, &pkg, &[], &[]).ok();
    assert!(agent_pid(&it).is_some_and(|p| p != pid && alive(p)));
}

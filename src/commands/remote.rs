//! `cargo gpu remote up|down NAME`: run a remote's `start` command and wait for SSH (starting the
//! idle watchdog when configured), or run its `stop` command.

use anyhow::{bail, Result};

use crate::cli::{GlobalOpts, RemoteAction, RemoteArgs};
use crate::commands::remote_run::transport_for;
use crate::config::UserConfig;
use crate::remote::instance::Instance;
use crate::remote::protocol;
use crate::remote::transport::run_script;
use crate::shell::Shell;

pub fn exec(shell: &Shell, _global: &GlobalOpts, args: &RemoteArgs) -> Result<i32> {
    let user = UserConfig::load()?;
    match &args.action {
        RemoteAction::Up { name } => {
            let remote = user.remote(name)?;
            let transport = transport_for(&remote);
            let mut instance = Instance::new(shell, &remote, &*transport, true);
            instance.start()?;
            if let Some(idle) = remote.idle_shutdown {
                let script = protocol::watchdog(&remote.workdir, idle, &remote.shutdown_command);
                run_script(shell, &*transport, &script, "start the idle watchdog", Default::default())?;
            }
            shell.status("Ready", format!("{} answers", transport.describe()));
        }
        RemoteAction::Down { name } => {
            let remote = user.remote(name)?;
            if remote.stop.is_none() {
                bail!("remote `{name}` has no `stop` command to run");
            }
            let transport = transport_for(&remote);
            let mut instance = Instance::new(shell, &remote, &*transport, false);
            instance.stop()?;
        }
    }
    Ok(crate::exit::SUCCESS)
}

/// `cargo gpu doctor --remote NAME`: reachable? GPU, compute capability, driver CUDA, glibc, disk.
/// Does not run the remote's `start` command: a doctor does not rent machines.
pub fn doctor(shell: &Shell, name: &str, targets: &[crate::arch::SmArch]) -> Result<String> {
    use anyhow::Context;
    use std::fmt::Write as _;
    let remote = UserConfig::load()?.remote(name)?;
    let transport = transport_for(&remote);
    let t = std::time::Instant::now();
    transport.wait_ready(shell, remote.connect_timeout).with_context(|| format!("remote {name} is not reachable"))?;
    let connect = t.elapsed();
    let ended = run_script(
        shell,
        &*transport,
        &protocol::preflight(&remote.workdir, &[]),
        "preflight the remote",
        Default::default(),
    )?;
    let f = protocol::parse_preflight(&String::from_utf8_lossy(&ended.stdout))?;
    let mut out = String::new();
    let _ = writeln!(out, "remote {name}: reachable as {} ({:.2}s)", transport.describe(), connect.as_secs_f64());
    match (&f.gpu_name, f.compute_cap, &f.gpu_error) {
        (Some(g), Some(cc), _) => {
            let _ = writeln!(
                out,
                "  GPU:      {g} (compute capability {cc}: build with --target {}), driver {}",
                cc.suggested_arch(),
                f.driver_version.as_deref().unwrap_or("?")
            );
        }
        (_, _, Some(e)) => {
            let _ = writeln!(out, "  GPU:      none usable ({e})");
        }
        _ => {
            let _ = writeln!(out, "  GPU:      none");
        }
    }
    let _ = writeln!(out, "  CUDA:     {} (driver)", f.driver_cuda.as_deref().unwrap_or("unknown"));
    let _ = writeln!(out, "  glibc:    {}", f.glibc.as_deref().unwrap_or("unknown"));
    let _ = writeln!(out, "  machine:  {}", f.machine.as_deref().unwrap_or("unknown"));
    let disk = f.disk_free_bytes.map(protocol::human_bytes).unwrap_or_else(|| "unknown".into());
    let _ = writeln!(out, "  disk:     {disk} free in {}", remote.workdir);
    if let Some(cc) = f.compute_cap {
        for t in targets {
            let verdict = if t.runs_on(cc) {
                "runs there".to_string()
            } else {
                format!("does not run there (needs {})", t.runs_where())
            };
            let _ = writeln!(out, "  {t}: {verdict}");
        }
    }
    Ok(out)
}

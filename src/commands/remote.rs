//! `cargo gpu remote up|down NAME`: run a remote's `start` command and wait for SSH (starting the
//! idle watchdog when configured), or run its `stop` command.

use anyhow::{bail, Result};

use crate::cli::{GlobalOpts, RemoteAction, RemoteArgs};
use crate::config::UserConfig;
use crate::remote::instance::Instance;
use crate::remote::scripts;
use crate::remote::session::transport_for;
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
                let script = scripts::watchdog(&remote.workdir, idle, &remote.shutdown_command);
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

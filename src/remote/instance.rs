//! A remote's instance over one command's lifetime: `start` before connecting, `stop` exactly
//! once on every exit path (success, failure, Ctrl-C, a lost connection, a panic through
//! `Drop`), shared with other cargo-gpu processes through the [`Lease`]: the first one in starts
//! the instance, the last one out stops it and closes the ssh master. The `stop` command is
//! given up only on the third Ctrl-C, and then says loudly that the instance keeps running.

use anyhow::Result;

use crate::cmd::Cmd;
use crate::cmd::ExecOptions;
use crate::config::Remote;
use crate::exit::Interrupt;
use crate::remote::lease::Lease;
use crate::remote::transport::Transport;
use crate::shell::Shell;

/// How [`Instance::stop`] left the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Not yet asked.
    No,
    /// Its `stop` command ran (or it has none and was not left up on purpose).
    Yes,
    /// Left up on purpose: `--keep-up`, `--detach`, `remote up`.
    LeftUp,
    /// Other cargo-gpu processes still use it; the last of them stops it.
    HandedOver(usize),
    /// The `stop` command failed or was abandoned with a third Ctrl-C.
    Failed,
}

pub struct Instance<'a> {
    shell: &'a Shell,
    remote: &'a Remote,
    transport: &'a dyn Transport,
    leave_up: bool,
    lease: Option<Lease>,
    joined: bool,
    stopped: Stopped,
}

/// Runs a hook, shown by name: its command line may carry an API key, so only `-v` prints it.
fn run_hook(shell: &Shell, remote: &Remote, which: &str, command: &str, interrupt: Interrupt) -> Result<()> {
    let cmd = Cmd::new("sh", format!("run the `{which}` command of remote {}", remote.name))
        .arg("-c")
        .arg(command)
        .shown_as(format!("sh -c <the `{which}` command>"));
    let ended = cmd.exec(shell, ExecOptions { interrupt, ..Default::default() })?;
    match ended.status {
        None => Err(crate::exit::interrupted_error()),
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(cmd.failure(s, &ended.stderr).into()),
    }
}

impl<'a> Instance<'a> {
    pub fn new(shell: &'a Shell, remote: &'a Remote, transport: &'a dyn Transport, leave_up: bool) -> Instance<'a> {
        Instance { shell, remote, transport, leave_up, lease: None, joined: false, stopped: Stopped::No }
    }

    fn lease(&mut self) -> Result<&Lease> {
        if self.lease.is_none() {
            let dir = crate::remote::ssh::private_control_dir()?;
            self.lease = Some(Lease::new(&dir, self.remote)?);
        }
        Ok(self.lease.as_ref().expect("just set"))
    }

    /// Joins the instance's users and runs `start` (if any, and if no other cargo-gpu process
    /// is using the instance already), then waits until the transport answers. Holding the
    /// lease's lock meanwhile, so that two runs started together do not both start the instance
    /// or both open an ssh master.
    pub fn start(&mut self) -> Result<()> {
        let (shell, remote, transport) = (self.shell, self.remote, self.transport);
        let lease = self.lease()?;
        let lock = lease.lock(crate::exit::check_interrupt)?;
        let others = lease.others(&lock);
        lease.join(&lock)?;
        self.joined = true;
        if remote.stop.is_some() && !self.leave_up {
            crate::exit::set_pending_stop(Some(&remote.name));
        }
        let timeout = match &remote.start {
            Some(_) if !others.is_empty() => {
                shell.status("Starting", format!("{} (already up for {} other run(s))", remote.name, others.len()));
                remote.ready_timeout
            }
            Some(start) => {
                shell.status("Starting", format!("{} (its `start` command)", remote.name));
                run_hook(shell, remote, "start", start, Interrupt::First)?;
                remote.ready_timeout
            }
            None => remote.connect_timeout,
        };
        let ready = transport.wait_ready(shell, timeout);
        drop(lock);
        ready
    }

    pub fn leave_up(&mut self) {
        self.leave_up = true;
        crate::exit::set_pending_stop(None);
    }

    /// How [`Instance::stop`] left the instance.
    pub fn stopped(&self) -> Stopped {
        self.stopped
    }

    /// Leaves the instance's users; the last one out runs `stop` (given up only on the third
    /// Ctrl-C) and closes the connection. Runs once; later calls return at once.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped != Stopped::No {
            return Ok(());
        }
        self.stopped = Stopped::Failed;
        let result = self.stop_once();
        crate::exit::set_pending_stop(None);
        result
    }

    fn stop_once(&mut self) -> Result<()> {
        let (shell, remote, transport) = (self.shell, self.remote, self.transport);
        // Holding the lock through the `stop` command: a run arriving meanwhile waits, then
        // starts the instance again instead of finding it half stopped.
        let lock = match (self.joined, self.lease.as_ref()) {
            (true, Some(lease)) => {
                let lock = lease.lock(|| crate::exit::check_reached(Interrupt::Third))?;
                lease.leave(&lock);
                let others = lease.others(&lock).len();
                if others > 0 && !self.leave_up {
                    if remote.stop.is_some() {
                        shell.note(format!(
                            "{} stays up: {others} other cargo-gpu run(s) use it, and the last of them stops it",
                            remote.name
                        ));
                    }
                    self.stopped = Stopped::HandedOver(others);
                    return Ok(());
                }
                Some(lock)
            }
            _ => None,
        };
        if self.leave_up {
            self.stopped = Stopped::LeftUp;
            return Ok(());
        }
        let Some(stop) = &remote.stop else {
            self.stopped = Stopped::Yes;
            return Ok(());
        };
        shell.status("Stopping", format!("{} (its `stop` command)", remote.name));
        run_hook(shell, remote, "stop", stop, Interrupt::Third)?;
        self.stopped = Stopped::Yes;
        // The host is going away: a master connection to it would only be stale next time.
        transport.disconnect(shell);
        drop(lock);
        Ok(())
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            self.shell.error(&e.context(format!("the instance of {} may still be running", self.remote.name)));
        }
    }
}

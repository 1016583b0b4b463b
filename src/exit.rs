//! Exit codes and the errors that choose them.
//!
//! 0 success; the runner's own code when it ran and failed; 1 a cargo-gpu error (build, config,
//! transport); 2 usage (clap's own code); 130 interrupted. Commands return `Ok(code)` when a
//! program they ran decided the code, and `Err` for their own failures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub const SUCCESS: i32 = 0;
pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const INTERRUPTED: i32 = 130;

/// How many times Ctrl-C (or SIGTERM, SIGHUP) arrived.
static PRESSES: AtomicUsize = AtomicUsize::new(0);
/// The instance whose `stop` command is still to run, named in the second Ctrl-C's message.
static PENDING_STOP: Mutex<Option<String>> = Mutex::new(None);

/// Which Ctrl-C stops a step. The first stops the work, the second the clean-up that follows
/// it (stopping the remote run, fetching its logs), the third the instance's `stop` command,
/// which is the one that saves money and so is given up last. A fourth leaves at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Interrupt {
    First = 1,
    Second = 2,
    Third = 3,
    Never = 1000,
}

/// An error that carries its own exit code: usage mistakes found after parsing, and interrupts.
#[derive(Debug)]
pub struct ExitError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

/// A usage error (exit code 2): the command line asked for something that cannot be.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    ExitError { code: USAGE, message: message.into() }.into()
}

/// The error returned when Ctrl-C (or SIGTERM/SIGHUP) stopped the work.
pub fn interrupted_error() -> anyhow::Error {
    ExitError { code: INTERRUPTED, message: "interrupted".into() }.into()
}

/// The exit code for an error: the innermost [`ExitError`] decides, otherwise 1.
pub fn code_for(err: &anyhow::Error) -> i32 {
    err.chain().find_map(|e| e.downcast_ref::<ExitError>().map(|e| e.code)).unwrap_or(FAILURE)
}

/// Records Ctrl-C instead of dying at once, so that every exit path can clean up (stop hooks,
/// partial files, run records). Long-running loops poll [`interrupted`] or [`reached`]; child
/// processes run in their own process groups and are stopped by the code that waits for them.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        let n = PRESSES.fetch_add(1, Ordering::SeqCst) + 1;
        let pending = PENDING_STOP.lock().map(|p| p.clone()).unwrap_or(None);
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        match (n, pending) {
            (2, Some(name)) => {
                let _ = writeln!(
                    err,
                    "stopping the instance {name}, press Ctrl-C again to abandon it: the instance will keep running"
                );
            }
            (2, None) => {
                let _ = writeln!(err, "interrupted again: skipping the rest of the clean-up");
            }
            (n, _) if n >= 4 => {
                let _ = writeln!(err, "interrupted {n} times: leaving now");
                std::process::exit(INTERRUPTED);
            }
            _ => {}
        }
    });
}

/// Whether Ctrl-C was pressed at all.
pub fn interrupted() -> bool {
    reached(Interrupt::First)
}

/// Whether Ctrl-C was pressed often enough to stop a step of patience `level`.
pub fn reached(level: Interrupt) -> bool {
    level != Interrupt::Never && PRESSES.load(Ordering::SeqCst) >= level as usize
}

/// Names the instance whose `stop` command is pending (`None` once it ran), for the message
/// of the second Ctrl-C.
pub fn set_pending_stop(instance: Option<&str>) {
    if let Ok(mut p) = PENDING_STOP.lock() {
        *p = instance.map(str::to_string);
    }
}

/// Returns the interrupt error if Ctrl-C was pressed often enough to stop a step of patience
/// `level`, for use with `?` between steps.
pub fn check_reached(level: Interrupt) -> anyhow::Result<()> {
    if reached(level) {
        Err(interrupted_error())
    } else {
        Ok(())
    }
}

/// Returns the interrupt error if Ctrl-C was pressed, for use with `?` between steps.
pub fn check_interrupt() -> anyhow::Result<()> {
    check_reached(Interrupt::First)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn innermost_exit_error_decides_the_code() {
        let err: anyhow::Result<()> = Err(usage("bad target"));
        let err = err.context("failed to build").unwrap_err();
        assert_eq!(code_for(&err), USAGE);
        assert_eq!(code_for(&anyhow::anyhow!("plain")), FAILURE);
        assert_eq!(code_for(&interrupted_error()), INTERRUPTED);
    }
}

//! Exit codes and the errors that choose them.
//!
//! 0 success; the runner's own code when it ran and failed; 1 a cargo-gpu error (build, config,
//! transport); 2 usage (clap's own code); 130 interrupted. Commands return `Ok(code)` when a
//! program they ran decided the code, and `Err` for their own failures.

use std::sync::atomic::{AtomicBool, Ordering};

pub const SUCCESS: i32 = 0;
pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const INTERRUPTED: i32 = 130;

static INTERRUPT: AtomicBool = AtomicBool::new(false);

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
/// partial files). Long-running loops poll [`interrupted`]; child processes get the signal too.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPT.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C means "now": leave without cleaning up.
            std::process::exit(INTERRUPTED);
        }
    });
}

pub fn interrupted() -> bool {
    INTERRUPT.load(Ordering::SeqCst)
}

/// Returns the interrupt error if Ctrl-C was pressed, for use with `?` between steps.
pub fn check_interrupt() -> anyhow::Result<()> {
    if interrupted() {
        Err(interrupted_error())
    } else {
        Ok(())
    }
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

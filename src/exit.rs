//! Exit codes and the errors that choose them.
//!
//! 0 success; the runner's own code when it ran and failed; 1 a cargo-gpu error (build, config,
//! transport); 2 usage (clap's own code); 130 interrupted. Commands return `Ok(code)` when a
//! program they ran decided the code, and `Err` for their own failures.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

pub const SUCCESS: i32 = 0;
pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const INTERRUPTED: i32 = 130;

/// How many times Ctrl-C (or SIGTERM, SIGHUP) arrived.
static PRESSES: AtomicUsize = AtomicUsize::new(0);
/// The second Ctrl-C's message while an instance's `stop` command is still to run (null when none
/// is): a pointer to a leaked slice, so that the signal handler can read it without a lock.
static PENDING_STOP: AtomicPtr<&'static [u8]> = AtomicPtr::new(std::ptr::null_mut());

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

/// Records Ctrl-C (and SIGTERM, SIGHUP) instead of dying at once, so that every exit path can
/// clean up (stop hooks, partial files, run records). Long-running loops poll [`interrupted`] or
/// [`reached`]; child processes run in their own process groups and are stopped by the code that
/// waits for them. The handler runs in the signal's own context, with no thread of its own: it
/// counts, writes a fixed message with one `write`, and at the fourth leaves with `_exit`.
pub fn install_interrupt_handler() {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        // SAFETY: the action only touches atomics, calls write(2) and _exit(2), all of which are
        // async-signal-safe; it allocates nothing and takes no lock.
        let _ = unsafe { signal_hook::low_level::register(signal, on_signal) };
    }
}

fn on_signal() {
    let n = PRESSES.fetch_add(1, Ordering::SeqCst) + 1;
    let say = |text: &[u8]| {
        let _ = rustix::io::write(rustix::stdio::stderr(), text);
    };
    match n {
        2 => {
            let pending = PENDING_STOP.load(Ordering::SeqCst);
            if pending.is_null() {
                say(b"interrupted again: skipping the rest of the clean-up\n");
            } else {
                // SAFETY: only `set_pending_stop` stores here, pointers to leaked, never freed slices.
                say(unsafe { *pending });
            }
        }
        n if n >= 4 => {
            say(b"interrupted 4 times: leaving now\n");
            signal_hook::low_level::exit(INTERRUPTED);
        }
        _ => {}
    }
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
    let message = instance.map(|name| {
        let text =
            format!("stopping the instance {name}, press Ctrl-C again to abandon it: the instance will keep running\n");
        // Leaked: the signal handler may read it at any time. A run sets it once or twice.
        let bytes: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
        Box::leak(Box::new(bytes)) as *mut &'static [u8]
    });
    PENDING_STOP.store(message.unwrap_or(std::ptr::null_mut()), Ordering::SeqCst);
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

    /// Presses Ctrl-C four times in a process of its own (this test, run again): the second press
    /// names the pending `stop`, the fourth leaves at once with 130, whatever the program is doing.
    #[test]
    fn the_fourth_ctrl_c_leaves_at_once() {
        const CHILD: &str = "CARGO_GPU_TEST_FOUR_PRESSES";
        if std::env::var_os(CHILD).is_some() {
            install_interrupt_handler();
            set_pending_stop(Some("box"));
            for _ in 0..4 {
                rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::INT).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            std::thread::sleep(std::time::Duration::from_secs(30));
            unreachable!("the fourth Ctrl-C did not end the process");
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "exit::tests::the_fourth_ctrl_c_leaves_at_once", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(INTERRUPTED), "{err}");
        assert!(
            err.contains(
                "stopping the instance box, press Ctrl-C again to abandon it: the instance will keep running\n"
            ),
            "{err}"
        );
        assert!(err.contains("interrupted 4 times: leaving now\n"), "{err}");
    }

    #[test]
    fn innermost_exit_error_decides_the_code() {
        let err: anyhow::Result<()> = Err(usage("bad target"));
        let err = err.context("failed to build").unwrap_err();
        assert_eq!(code_for(&err), USAGE);
        assert_eq!(code_for(&anyhow::anyhow!("plain")), FAILURE);
        assert_eq!(code_for(&interrupted_error()), INTERRUPTED);
    }
}

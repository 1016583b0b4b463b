//! The runner's one error type: what to tell the user and which exit code that maps to.
//! Callers (the `cargo gpu remote-run` side, scripts) tell the cases apart by the code.

use cudarc::driver::DriverError;

/// Exit codes, kept stable because tools read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The kernel ran but computed a wrong result, or a CUDA call failed mid-run.
    Failed = 1,
    /// The command line was wrong.
    Usage = 2,
    /// No usable GPU: the driver library is missing, or it sees no device.
    NoGpu = 3,
    /// No kernel this GPU can run: no kernels directory, no matching cubin, or the driver
    /// refused the cubin.
    NoKernel = 4,
}

#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure { exit, message: message.into() }
    }

    /// A failed CUDA call; `what` reads after "failed to".
    pub fn cuda(exit: Exit, what: &str, err: DriverError) -> Self {
        Failure::new(exit, format!("failed to {what}: {}", describe(err)))
    }
}

/// `CUDA_ERROR_NAME (the driver's sentence)`; the name alone when the driver cannot say more.
pub fn describe(err: DriverError) -> String {
    match err.error_string() {
        Ok(text) => format!("{:?} ({})", err.0, text.to_string_lossy()),
        Err(_) => format!("{:?}", err.0),
    }
}

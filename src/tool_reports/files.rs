//! The names of the report files the tools leave in a run's folder (and that come back with it).

/// `--sanitize`'s report (compute-sanitizer `--log-file`).
pub const SANITIZER_REPORT: &str = "sanitizer.txt";
/// The report of the memcheck rerun after a kernel fault.
pub const AUTOSANITIZE_REPORT: &str = "autosanitize.txt";
/// The runner's own output in that rerun.
pub const AUTOSANITIZE_OUTPUT: &str = "autosanitize-output.log";
/// ncu's own messages (`==PROF==` lines, `ERR_NVGPUCTRPERM`).
pub const NCU_LOG: &str = "ncu.log";
/// The Nsight Compute report, for the Nsight Compute GUI.
pub const NCU_REPORT: &str = "profile.ncu-rep";
/// Its details page as text and as CSV, readable without the GUI.
pub const NCU_TEXT: &str = "profile.txt";
pub const NCU_CSV: &str = "profile.csv";
/// The cuda-gdb session after a kernel fault (`--debug`).
pub const GDB_OUTPUT: &str = "cuda-gdb.txt";

/// Every report file, in the order they come back (the small text first, the ncu report last).
pub const REPORT_FILES: [&str; 8] =
    [SANITIZER_REPORT, AUTOSANITIZE_REPORT, AUTOSANITIZE_OUTPUT, GDB_OUTPUT, NCU_LOG, NCU_CSV, NCU_TEXT, NCU_REPORT];

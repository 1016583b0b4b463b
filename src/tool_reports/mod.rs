//! What the remote's CUDA tools leave in a run's folder, read back here: compute-sanitizer's
//! report (its first error with the `.cu` line, kernel, block and thread), ncu's details page as
//! CSV (a short summary per kernel) and a cuda-gdb session (its backtrace). All of it is the
//! remote's text: every value is escaped before it is shown.

pub mod files;
pub mod gdb;
pub mod ncu;
pub mod sanitizer;
pub mod summary;

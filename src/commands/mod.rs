//! One module per `cargo gpu` subcommand, each with an `exec` entry point.

pub mod build;
pub mod doctor;
pub mod exec;
pub mod inspect;
pub mod logs;
pub mod new;
pub mod remote;
pub mod remote_run;
pub mod runs;
pub mod toolchain;

//! One module per `cargo gpu` subcommand, each with an `exec` entry point.

pub mod build;
pub mod doctor;

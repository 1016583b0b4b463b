//! The command line: clap derive types shaped like a cargo subcommand, so that help reads
//! `cargo gpu ...`. Cargo runs us as `cargo-gpu gpu ARGS`; people and scripts on a machine without
//! cargo run `cargo-gpu ARGS`, which [`normalize_args`] turns into the same thing.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::shell::Verbosity;

#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", styles = clap::builder::styling::Styles::styled())]
pub enum Cargo {
    /// Build CUDA kernels for datacenter GPUs and run them on a remote GPU
    #[command(name = "gpu", version, author)]
    Gpu(GpuArgs),
}

#[derive(Debug, Args)]
#[command(
    about = "Build CUDA kernels for datacenter GPUs and run them on a remote GPU",
    after_help = "Exit status: 0 success; the runner's own code when it ran and failed; \
                  1 a cargo-gpu error; 2 usage; 130 interrupted."
)]
pub struct GpuArgs {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: GpuCommand,
}

#[derive(Debug, Args, Clone, Default)]
pub struct GlobalOpts {
    /// Use verbose output (-vv very verbose): print every command line
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print nothing but errors and warnings
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Path to the project's Cargo.toml
    #[arg(long, value_name = "PATH", global = true)]
    pub manifest_path: Option<PathBuf>,
    /// How to print machine-readable results on stdout
    #[arg(long, value_name = "FMT", value_enum, default_value_t = MessageFormat::Human, global = true)]
    pub message_format: MessageFormat,
}

impl GlobalOpts {
    pub fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose > 0 {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum MessageFormat {
    #[default]
    Human,
    /// One JSON object per artifact on stdout
    Json,
}

#[derive(Debug, Subcommand)]
pub enum GpuCommand {
    /// Compile every kernel for every target, build the host runner, assemble the package
    Build(BuildArgs),
    /// Show this machine's GPUs, CUDA compiler and tools, and what it can run
    Doctor(DoctorArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct BuildArgs {
    /// GPU target to build for (sm_90a, sm_100a, ...); repeat for several [default: the project's targets]
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Build with optimizations (-O3 -lineinfo) instead of debug info (-G)
    #[arg(short, long)]
    pub release: bool,
    /// Number of parallel kernel compilations [default: number of cores]
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DoctorArgs {}

/// Lets `cargo-gpu build` work as well as `cargo gpu build` (which cargo runs as `cargo-gpu gpu build`).
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).map(|a| a != "gpu").unwrap_or(true) {
        args.insert(1.min(args.len()), OsString::from("gpu"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cargo::command().debug_assert();
    }

    fn parse(args: &[&str]) -> GpuArgs {
        let args = normalize_args(args.iter().map(OsString::from));
        let Cargo::Gpu(a) = Cargo::try_parse_from(args).unwrap();
        a
    }

    #[test]
    fn both_invocations_parse_the_same() {
        let via_cargo = parse(&["cargo-gpu", "gpu", "build", "--target", "sm_90a", "--release"]);
        let direct = parse(&["cargo-gpu", "build", "--target", "sm_90a", "--release"]);
        for a in [via_cargo, direct] {
            let GpuCommand::Build(b) = a.command else { panic!("not build") };
            assert_eq!(b.targets, vec!["sm_90a"]);
            assert!(b.release);
        }
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let a = parse(&["cargo-gpu", "build", "-v", "--manifest-path", "x/Cargo.toml"]);
        assert_eq!(a.global.verbose, 1);
        assert_eq!(a.global.manifest_path, Some(PathBuf::from("x/Cargo.toml")));
        assert_eq!(a.global.verbosity(), Verbosity::Verbose);
    }
}

//! The command line: clap derive types shaped like a cargo subcommand, so that help reads
//! `cargo gpu ...`. Cargo runs us as `cargo-gpu gpu ARGS`; people and scripts on a machine without
//! cargo run `cargo-gpu ARGS`, which [`normalize_args`] turns into the same thing.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::remote::tools::SANITIZERS;
use crate::shell::{MessageFormat, Verbosity};
use crate::vcs::Vcs;

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

#[derive(Debug, Subcommand)]
pub enum GpuCommand {
    /// Compile every kernel for every target, build the host runner, assemble the package
    Build(BuildArgs),
    /// Without a GPU: each kernel's registers, spills, shared memory and SASS census
    Inspect(InspectArgs),
    /// Show this machine's GPUs, CUDA compiler and tools, and what it can run
    Doctor(DoctorArgs),
    /// Create a project of CUDA kernels with a runner that checks and times them
    New(NewArgs),
    /// Add [package.metadata.gpu], kernels/ and a runner to an existing crate
    Init(InitArgs),
    /// Build if stale, run on a remote GPU, stream the output, bring the logs back
    RemoteRun(RemoteRunArgs),
    /// List recent runs (id, remote, target, exit, duration, cost)
    Runs(RunsArgs),
    /// Print a finished run's logs, or follow one still going
    Logs(LogsArgs),
    /// Start or stop a remote's instance with its `start` / `stop` commands
    Remote(RemoteArgs),
    /// List, install or remove CUDA compilers from PyPI (no root needed)
    Toolchain(ToolchainArgs),
    /// Run one executable built here on the remote GPU, with the project's kernels (cargo's target runner)
    Exec(ExecArgs),
    /// Build the tests here, run every test binary on the remote GPU in one session
    Test(CargoTestArgs),
    /// Build the benchmarks here, run every benchmark binary on the remote GPU in one session
    Bench(CargoTestArgs),
    /// Build a binary of the crate here and run it on the remote GPU
    Run(RunBinArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct ExecArgs {
    /// The remote to run on [default: CARGO_GPU_REMOTE, the project's `remote`, the config's `[default] remote`]
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// GPU target to build the kernels for; repeat for several [default: the project's targets]
    #[arg(long = "target", value_name = "TARGET", conflicts_with = "package")]
    pub targets: Vec<String>,
    /// Release kernels (-O3 -lineinfo) [default: release when the executable is in a `release` folder]
    #[arg(short, long, conflicts_with = "package")]
    pub release: bool,
    /// Take the kernels from this prebuilt package folder instead of building them
    #[arg(long, value_name = "DIR")]
    pub package: Option<PathBuf>,
    /// The executable and its arguments
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    pub command: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CargoTestArgs {
    /// The remote to run on [default: as `remote-run` chooses]
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// GPU target to build the kernels for; repeat for several [default: the project's targets]
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Run every binary even after one fails
    #[arg(long)]
    pub no_fail_fast: bool,
    /// Arguments for cargo (--lib, --test NAME, --release, --features ...), then after `--` for every binary
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Stands for the first `--` after `test` or `bench` (see [`normalize_args`]): clap would drop a
/// `--` that comes before any cargo argument, and then the binaries' arguments would read as
/// cargo's.
pub const BINARY_ARGS_FOLLOW: &str = "--cargo-gpu-binary-args-follow";

impl CargoTestArgs {
    /// (cargo's arguments, the binaries' arguments).
    pub fn split(&self) -> (&[String], &[String]) {
        match self.args.iter().position(|a| a == BINARY_ARGS_FOLLOW) {
            Some(i) => (&self.args[..i], &self.args[i + 1..]),
            None => (&self.args[..], &[]),
        }
    }
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunBinArgs {
    /// The remote to run on [default: as `remote-run` chooses]
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// GPU target to build the kernels for; repeat for several [default: the project's targets]
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Build with optimizations, kernels included
    #[arg(short, long)]
    pub release: bool,
    /// The binary to run [default: the crate's only binary]
    #[arg(long, value_name = "NAME")]
    pub bin: Option<String>,
    /// Arguments for the binary
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ToolchainArgs {
    #[command(subcommand)]
    pub action: ToolchainAction,
}

#[derive(Debug, Subcommand, Clone)]
pub enum ToolchainAction {
    /// Installed and installable CUDA compilers, and which one this project uses
    List,
    /// Install a CUDA compiler (nvcc or NVRTC, ptxas, cuobjdump, nvdisasm, CCCL headers) from PyPI
    Install {
        /// CUDA version (12.8, 12.9, 13.0)
        #[arg(value_name = "VERSION", required = true)]
        versions: Vec<String>,
        /// Install again even when it is installed
        #[arg(long)]
        force: bool,
    },
    /// Remove an installed CUDA compiler
    Remove {
        #[arg(value_name = "VERSION", required = true)]
        versions: Vec<String>,
    },
}

#[derive(Debug, Args, Clone, Default)]
pub struct InspectArgs {
    /// A kernel: its source's name without `.cu` (hgemm), or a kernel function's name [default: every kernel]
    #[arg(value_name = "KERNEL")]
    pub kernel: Option<String>,
    /// GPU target to inspect; repeat for several [default: the project's targets]
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Inspect the release build (-O3 -lineinfo) instead of the debug build (-G)
    #[arg(short, long)]
    pub release: bool,
    /// Print the SASS with the .cu lines it came from, instructions of interest marked
    #[arg(long)]
    pub sass: bool,
    /// Show what changed since the previous build of the same kernels and targets
    #[arg(long)]
    pub diff: bool,
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
    /// Rust target triple to build the host runner for (aarch64-unknown-linux-gnu); repeat for a package that runs on several machines [default: the project's `runner-target`, else this machine's]
    #[arg(long = "runner-target", value_name = "TRIPLE")]
    pub runner_targets: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DoctorArgs {
    /// Also check a remote: reachable, GPU, compute capability, driver CUDA, glibc, free disk
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RemoteRunArgs {
    /// The remote to run on (`local`: this machine, no SSH) [default: CARGO_GPU_REMOTE, the
    /// project's `remote`, the config's `[default] remote`]
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// GPU target to build for; repeat for several [default: the project's targets]
    #[arg(long = "target", value_name = "TARGET", conflicts_with = "package")]
    pub targets: Vec<String>,
    /// Build with optimizations (-O3 -lineinfo) instead of debug info (-G)
    #[arg(short, long, conflicts_with = "package")]
    pub release: bool,
    /// Run this prebuilt package folder (with its manifest.toml) instead of building
    #[arg(long, value_name = "DIR")]
    pub package: Option<PathBuf>,
    /// Start the run and return; `cargo gpu logs RUN` follows it (the instance stays up)
    #[arg(long)]
    pub detach: bool,
    /// Do not run the remote's `stop` command afterwards
    #[arg(long)]
    pub keep_up: bool,
    /// Run under compute-sanitizer: memcheck, racecheck, initcheck or synccheck; the first error is printed with its .cu line
    #[arg(long, value_name = "TOOL", num_args = 0..=1, require_equals = true, default_missing_value = "memcheck",
          value_parser = SANITIZERS, conflicts_with = "profile")]
    pub sanitize: Option<String>,
    /// Run under Nsight Compute (ncu, --clock-control none); the report comes back, a summary per kernel is printed
    #[arg(long)]
    pub profile: bool,
    /// More ncu arguments for --profile, as one shell-quoted string (such as "--set full")
    #[arg(long, value_name = "ARGS", requires = "profile", allow_hyphen_values = true)]
    pub ncu_args: Option<String>,
    /// On a kernel fault, run once more under cuda-gdb and print the backtrace with .cu lines and locals
    #[arg(long)]
    pub debug: bool,
    /// On a kernel fault, do not run once more under compute-sanitizer memcheck to find the line
    #[arg(long)]
    pub no_autosanitize: bool,
    /// Run once per value (repeat for the cross product): each run gets NAME in its environment
    /// and `{NAME}` in its arguments replaced; one upload, one instance start (a job array on Slurm)
    #[arg(long, value_name = "NAME=V1,V2,...", conflicts_with = "detach")]
    pub sweep: Vec<String>,
    /// GPUs each run of a sweep gets on an ssh or local remote (CUDA_VISIBLE_DEVICES)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub gpus_per_run: u32,
    /// Arguments for the runner
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunsArgs {
    /// Show the cost ledger: runs, time and cost per remote
    #[arg(long)]
    pub cost: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct LogsArgs {
    /// The run id (as `cargo gpu runs` lists it) [default: the latest run]
    #[arg(value_name = "RUN")]
    pub run: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct RemoteArgs {
    #[command(subcommand)]
    pub action: RemoteAction,
}

#[derive(Debug, Subcommand, Clone)]
pub enum RemoteAction {
    /// Run the remote's `start` command and wait until SSH answers
    Up {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Run the remote's `stop` command
    Down {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// The templates of `cargo gpu new` and `cargo gpu init` (see `templates/`).
pub const TEMPLATE_NAMES: [&str; 3] = ["basic", "hopper-wgmma", "blackwell-tcgen05"];

#[derive(Debug, Args, Clone)]
pub struct NewArgs {
    /// Folder to create; its name is the package name unless --name says otherwise
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// What to start from: basic (vector add), hopper-wgmma (sm_90a GEMM), blackwell-tcgen05 (sm_100a GEMM)
    #[arg(long, value_name = "TEMPLATE", default_value = "basic", value_parser = TEMPLATE_NAMES)]
    pub template: String,
    /// Package name [default: the folder name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Version control: a git repository with a .gitignore, or none [default: git, but inside a git work tree a .gitignore only]
    #[arg(long, value_name = "VCS", value_enum)]
    pub vcs: Option<Vcs>,
}

#[derive(Debug, Args, Clone)]
pub struct InitArgs {
    /// The crate's folder [default: the one holding --manifest-path, else the current folder]
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Which template's kernels and runner to add
    #[arg(long, value_name = "TEMPLATE", default_value = "basic", value_parser = TEMPLATE_NAMES)]
    pub template: String,
    /// Also make cargo-gpu cargo's target runner in .cargo/config.toml, so plain `cargo test`, `cargo run` and
    /// `cargo nextest run` run on the remote GPU (a crate that has [package.metadata.gpu] gets only this)
    #[arg(long)]
    pub runner: bool,
    /// The remote the target runner uses [default: as `remote-run` chooses]
    #[arg(long, value_name = "NAME", requires = "runner")]
    pub remote: Option<String>,
}

/// Lets `cargo-gpu build` work as well as `cargo gpu build` (which cargo runs as `cargo-gpu gpu build`).
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).map(|a| a != "gpu").unwrap_or(true) {
        args.insert(1.min(args.len()), OsString::from("gpu"));
    }
    if let Some(sub) = subcommand_index(&args).filter(|&i| args[i] == "test" || args[i] == "bench") {
        if let Some(dash) = args.iter().skip(sub + 1).position(|a| a == "--").map(|i| i + sub + 1) {
            args[dash] = OsString::from(BINARY_ARGS_FOLLOW);
        }
    }
    args
}

/// Where the subcommand is in `cargo-gpu gpu [GLOBAL OPTIONS] SUBCOMMAND ...`.
fn subcommand_index(args: &[OsString]) -> Option<usize> {
    let mut i = 2;
    while let Some(a) = args.get(i) {
        match a.to_str() {
            Some("--manifest-path" | "--message-format") => i += 2,
            Some(s) if s.starts_with('-') => i += 1,
            _ => return Some(i),
        }
    }
    None
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
    fn cargo_and_binary_arguments_are_told_apart() {
        let GpuCommand::Test(t) =
            parse(&["cargo-gpu", "test", "--remote", "h100", "--lib", "-p", "x", "--", "--nocapture", "fails"]).command
        else {
            panic!()
        };
        assert_eq!(t.remote.as_deref(), Some("h100"));
        assert_eq!(
            t.split(),
            (&["--lib", "-p", "x"].map(String::from)[..], &["--nocapture", "fails"].map(String::from)[..])
        );
        let GpuCommand::Test(t) = parse(&["cargo-gpu", "test", "--", "--exact", "a", "--", "b"]).command else {
            panic!()
        };
        assert_eq!(t.split(), (&[][..], &["--exact", "a", "--", "b"].map(String::from)[..]));
        let GpuCommand::RemoteRun(r) = parse(&["cargo-gpu", "remote-run", "--", "test", "--", "x"]).command else {
            panic!()
        };
        assert_eq!(r.args, ["test", "--", "x"], "a runner's own words are never touched");
        let GpuCommand::Bench(t) =
            parse(&["cargo-gpu", "-v", "--manifest-path", "test", "bench", "--no-fail-fast", "--release"]).command
        else {
            panic!()
        };
        assert!(t.no_fail_fast);
        assert_eq!(t.split(), (&["--release"].map(String::from)[..], &[][..]));
        let GpuCommand::Exec(e) =
            parse(&["cargo-gpu", "exec", "--remote", "h100", "--", "/t/bin", "--exact", "--", "x"]).command
        else {
            panic!()
        };
        assert_eq!(e.command, ["/t/bin", "--exact", "--", "x"]);
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
    fn remote_run_keeps_runner_args_verbatim() {
        let a = parse(&["cargo-gpu", "remote-run", "--remote", "h100", "--keep-up", "--", "-v", "$(x) y"]);
        let GpuCommand::RemoteRun(r) = a.command else { panic!("not remote-run") };
        assert_eq!(r.remote.as_deref(), Some("h100"));
        assert!(r.keep_up && !r.detach);
        assert_eq!(r.args, vec!["-v", "$(x) y"]);
        assert_eq!(a.global.verbose, 0);
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let a = parse(&["cargo-gpu", "build", "-v", "--manifest-path", "x/Cargo.toml"]);
        assert_eq!(a.global.verbose, 1);
        assert_eq!(a.global.manifest_path, Some(PathBuf::from("x/Cargo.toml")));
        assert_eq!(a.global.verbosity(), Verbosity::Verbose);
    }
}

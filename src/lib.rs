//! `cargo gpu`: cross-compile CUDA kernels for datacenter GPUs with debug info, package them with a
//! Rust host runner, and run the package on a remote GPU host over SSH (or locally).
//!
//! Layers, top to bottom; a module uses only modules below it (`tests/layers.rs` checks it), and
//! [`run`] parses with `cli` and hands the parsed arguments to `commands`:
//!
//! ```text
//! `commands`      one file per command: read what the user asked, call down
//! `cli`           the clap types of the command line
//! `compile`       kernels (nvcc jobs, fingerprints, diagnostics, scheduler), the runner (cargo, or
//!                 cargo-zigbuild for an older glibc or another machine), the build
//! `remote`        transports, scripts, frames, preflight, the run session, instances, unpacking,
//!                 the CUDA tools there and the compute-sanitizer shipped to it, the agent there
//!                 and its relay here
//! `manifest_edit` `cargo gpu init`'s edit of a crate's Cargo.toml, comments kept
//! `inspect`       a cubin's report (resources, SASS census, ptxas advisories, trap-only stubs),
//!                 the warnings made from it, expected instructions, inspect's text
//! `project`       Cargo.toml + [package.metadata.gpu] -> one resolved project; run-folder places
//! `templates`     the project templates and the runner kit, embedded
//! `toolchain`     the CUDA compiler, cuobjdump, nvdisasm, local GPUs: found and versioned; the
//!                 installed toolchains and the NVRTC driver of the CUDA 12 ones
//! `vcs`           the git repository and .gitignore of a new project
//! `package`       the package folder and its manifest
//! `config`        the user's remotes
//! `runs`          run records and the cost ledger
//! `nvidia_smi` `tool_reports`
//!                 nvidia-smi's answer, parsed; the remote CUDA tools' reports, read
//! `arch` `cache` `cmd` `digest` `escape` `exit` `pypi` `quote` `redact` `safe_fs` `shell` `sweep`
//!                 leaves: target rules, memo, child processes, sha256, escaping, exit codes,
//!                 wheels from PyPI, shell quoting, secrets, link-safe files, output, sweep axes
//! ```

pub mod arch;
pub mod cache;
pub mod cli;
pub mod cmd;
pub mod commands;
pub mod compile;
pub mod config;
pub mod digest;
pub mod escape;
pub mod exit;
pub mod inspect;
pub mod manifest_edit;
pub mod nvidia_smi;
pub mod package;
pub mod project;
pub mod pypi;
pub mod quote;
pub mod redact;
pub mod remote;
pub mod runs;
pub mod safe_fs;
pub mod shell;
pub mod sweep;
pub mod templates;
pub mod tool_reports;
pub mod toolchain;
pub mod vcs;

use cli::{Cargo, GpuCommand};
use shell::Shell;

/// Runs a parsed command line and returns the process exit code (see [`exit`]). The caller has
/// installed the Ctrl-C handler ([`exit::install_interrupt_handler`]) and may have started a
/// child early ([`cmd::early`]): one that no command took over is stopped before this returns.
pub fn run(cli: Cargo) -> i32 {
    let Cargo::Gpu(args) = cli;
    let shell = Shell::new(args.global.verbosity(), args.global.message_format);
    let result = match &args.command {
        GpuCommand::Build(a) => commands::build::exec(&shell, &args.global, a),
        GpuCommand::Doctor(a) => commands::doctor::exec(&shell, &args.global, a),
        GpuCommand::New(a) => commands::new::exec_new(&shell, &args.global, a),
        GpuCommand::Init(a) => commands::new::exec_init(&shell, &args.global, a),
        GpuCommand::RemoteRun(a) => commands::remote_run::exec(&shell, &args.global, a),
        GpuCommand::Runs(a) => commands::runs::exec(&shell, &args.global, a),
        GpuCommand::Logs(a) => commands::logs::exec(&shell, &args.global, a),
        GpuCommand::Remote(a) => commands::remote::exec(&shell, &args.global, a),
        GpuCommand::Inspect(a) => commands::inspect::exec(&shell, &args.global, a),
        GpuCommand::Toolchain(a) => commands::toolchain::exec(&shell, &args.global, a),
        GpuCommand::Exec(a) => commands::exec::exec(&shell, &args.global, a),
        GpuCommand::Test(a) => commands::exec::test(&shell, &args.global, a, compile::cargo_exe::Kind::Test),
        GpuCommand::Bench(a) => commands::exec::test(&shell, &args.global, a, compile::cargo_exe::Kind::Bench),
        GpuCommand::Run(a) => commands::exec::run_bin(&shell, &args.global, a),
    };
    cmd::early::discard();
    match result {
        Ok(code) => code,
        Err(err) => {
            let code = exit::code_for(&err);
            if code != exit::INTERRUPTED || !exit::interrupted() {
                shell.error(&err);
            }
            code
        }
    }
}

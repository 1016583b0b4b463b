//! The `cargo-gpu` binary: parse the command line, run the library, map the result to an exit code.
//! Everything else lives in the library so that it can be tested without spawning this binary.

use clap::Parser;

fn main() {
    // This program in another role, with no clap and no set-up: a CUDA 12 toolchain's compiler
    // (its NVRTC driver), the agent on a remote, the relay to that agent.
    let role: Option<fn(Vec<std::ffi::OsString>) -> i32> =
        match std::env::args_os().nth(1).as_ref().and_then(|a| a.to_str()) {
            Some(cargo_gpu::toolchain::nvrtc::DRIVER_ARG) => Some(cargo_gpu::toolchain::nvrtc::main),
            Some(cargo_gpu::remote::agent::ARG) => Some(cargo_gpu::remote::agent::main),
            Some(cargo_gpu::remote::relay::ARG) => Some(cargo_gpu::remote::relay::main),
            _ => None,
        };
    if let Some(role) = role {
        std::process::exit(role(std::env::args_os().skip(2).collect()));
    }
    // First, so that Ctrl-C is recorded, not fatal, once a child runs.
    cargo_gpu::exit::install_interrupt_handler();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The runner's cargo build starts before anything else when the last run allows it.
    cargo_gpu::cmd::early::start(&argv);
    let cli = match cargo_gpu::cli::Cargo::try_parse_from(cargo_gpu::cli::normalize_args(argv)) {
        Ok(cli) => cli,
        Err(e) => {
            cargo_gpu::cmd::early::discard();
            e.exit()
        }
    };
    let code = cargo_gpu::run(cli);
    std::process::exit(code);
}

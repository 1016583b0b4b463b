//! The `cargo-gpu` binary: parse the command line, run the library, map the result to an exit code.
//! Everything else lives in the library so that it can be tested without spawning this binary.

use clap::Parser;

fn main() {
    // A CUDA 12 toolchain's compiler: this program, as its NVRTC driver (no clap, no set-up).
    if std::env::args_os().nth(1).is_some_and(|a| a == cargo_gpu::toolchain::nvrtc::DRIVER_ARG) {
        std::process::exit(cargo_gpu::toolchain::nvrtc::main(std::env::args_os().skip(2).collect()));
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

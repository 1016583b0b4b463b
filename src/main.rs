//! The `cargo-gpu` binary: parse the command line, run the library, map the result to an exit code.
//! Everything else lives in the library so that it can be tested without spawning this binary.

use clap::Parser;

fn main() {
    // A CUDA 12 toolchain's compiler: this program, as its NVRTC driver (no clap, no set-up).
    if std::env::args_os().nth(1).is_some_and(|a| a == cargo_gpu::toolchain::nvrtc::DRIVER_ARG) {
        std::process::exit(cargo_gpu::toolchain::nvrtc::main(std::env::args_os().skip(2).collect()));
    }
    let args = cargo_gpu::cli::normalize_args(std::env::args_os());
    let cli = cargo_gpu::cli::Cargo::parse_from(args);
    let code = cargo_gpu::run(cli);
    std::process::exit(code);
}

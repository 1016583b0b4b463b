//! The `cargo-gpu` binary: parse the command line, run the library, map the result to an exit code.
//! Everything else lives in the library so that it can be tested without spawning this binary.

use clap::Parser;

fn main() {
    let args = cargo_gpu::cli::normalize_args(std::env::args_os());
    let cli = cargo_gpu::cli::Cargo::parse_from(args);
    let code = cargo_gpu::run(cli);
    std::process::exit(code);
}

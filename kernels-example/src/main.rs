//! `vector-add`: the host runner of this example package. It loads the `vector_add` cubin that
//! `cargo gpu` built for the GPU it finds, checks the result against the CPU and times the kernel.
//!
//! This file only parses the command line, runs, and turns a failure into an exit code; the
//! work lives in the modules below.

mod args;
mod check;
mod cubin;
mod fail;
mod gpu;
mod report;
mod run;

use std::process::ExitCode;

use args::Parsed;

fn main() -> ExitCode {
    let outcome = match args::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Help) => {
            print!("{}", args::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(config)) => run::run(&config),
        Err(failure) => Err(failure),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.exit as u8)
        }
    }
}

//! The host runner of this package: it loads the `hgemm` cubin `cargo gpu build` made for the
//! GPU it finds (sm_90a: Hopper), checks the GEMM against a CPU reference and times it. The shared
//! host code (finding the cubin, inputs, checks, timing, JSON results) is in `kit.rs`.

mod hgemm;
mod kit;

fn main() -> std::process::ExitCode {
    kit::main_with(hgemm::run)
}

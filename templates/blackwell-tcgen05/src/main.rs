//! The host runner of this package: it loads the `tcgen05_gemm` cubin `cargo gpu build` made for
//! the GPU it finds (sm_100a: datacenter Blackwell), checks the GEMM against a CPU reference and
//! times it. The shared host code (finding the cubin, inputs, checks, timing, JSON results) is in
//! `kit.rs`.

mod kit;
mod tcgen05_gemm;

fn main() -> std::process::ExitCode {
    kit::main_with(tcgen05_gemm::run)
}

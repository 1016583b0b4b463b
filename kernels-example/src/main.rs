//! `vector-add`: the host runner of this example package, and a showcase of the runner kit. One
//! binary runs three kernels, each checked against a CPU reference and timed:
//!
//! - `vector-add [N]...` (the default): `kernels/vector_add.cu`, any target, reported as GB/s;
//! - `vector-add hgemm [MxNxK]...`: `kernels/hgemm.cu`, a bf16 GEMM with TMA and wgmma, Hopper
//!   (sm_90a) only, reported as TFLOP/s;
//! - `vector-add tcgen05-gemm [MxNxK]...`: `kernels/tcgen05_gemm.cu`, a bf16 GEMM with TMA and
//!   tcgen05.mma, the accumulator in tensor memory, datacenter Blackwell (sm_100a) only; it has
//!   not run on a B200 yet.
//!
//! The runners are the very files `cargo gpu new` writes into generated projects (the `basic`,
//! `hopper-wgmma` and `blackwell-tcgen05` templates), included by path, and so is the kit: one
//! source of truth for the host code.

#[path = "../../templates/hopper-wgmma/src/hgemm.rs"]
mod hgemm;
#[path = "../../templates/kit/kit.rs"]
mod kit;
#[path = "../../templates/blackwell-tcgen05/src/tcgen05_gemm.rs"]
mod tcgen05_gemm;
#[path = "../../templates/basic/src/vector_add.rs"]
mod vector_add;

#[cfg(test)]
mod gpu_tests;

use std::process::ExitCode;

const HELP: &str = "\
vector-add: the kernels-example runner; checks each kernel against the CPU and times it

usage: vector-add [vector-add] [N]... [OPTIONS]     vector_add, any GPU (the default)
       vector-add hgemm [MxNxK]... [OPTIONS]        bf16 GEMM with TMA + wgmma, compute capability 9.0
       vector-add tcgen05-gemm [MxNxK]... [OPTIONS] bf16 GEMM with TMA + tcgen05, compute capability 10.0

`vector-add KERNEL --help` lists a kernel's options. Results go to $CARGO_GPU_OUT as JSON.
Exit status: 0 pass, 1 wrong result, 2 usage, 3 no driver, GPU or cubin.
";

fn main() -> ExitCode {
    let mut args = kit::Args::from_env();
    let run: fn(kit::Args) -> kit::Result<()> = match args.first_word() {
        Some("hgemm") => hgemm::run,
        Some("tcgen05-gemm" | "tcgen05_gemm") => tcgen05_gemm::run,
        Some("vector-add" | "vector_add") => vector_add::run,
        Some("--help" | "-h") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(word) if word.starts_with(|c: char| c.is_ascii_alphabetic()) => {
            return kit::finish(Err(kit::Fail::Usage(format!(
                "unknown kernel `{word}` (kernels: vector-add, hgemm, tcgen05-gemm; see --help)"
            ))));
        }
        // A size or an option: vector_add, the default.
        _ => return kit::finish(vector_add::run(args)),
    };
    args.shift();
    kit::finish(run(args))
}

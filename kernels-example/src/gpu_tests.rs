//! The kernels on the GPU as `cargo test` runs them: each runner's check against the CPU, at
//! sizes that are not multiples of anything. Without a GPU here, run them on one with
//! `cargo gpu test --remote NAME` (or a cargo target runner, see the README); run plainly on a
//! machine with no NVIDIA driver, they say so and pass.

use crate::{hgemm, kit, tcgen05_gemm, vector_add};

fn args(words: &[&str]) -> kit::Args {
    kit::Args::new(words.iter().map(|w| w.to_string()))
}

/// Runs a runner and fails the test with its own message.
fn check(what: &str, outcome: kit::Result<()>) {
    if let Err(e) = outcome {
        panic!("{what}: {e}");
    }
}

/// The device, when it has compute capability `cc`; otherwise the test says why it skips.
fn device_with(cc: (u32, u32), kernel: &str) -> bool {
    match kit::test_device() {
        Some(have) if have == cc => true,
        Some(have) => {
            eprintln!(
                "skipping: {kernel} needs compute capability {}.{}, this GPU is {}.{}",
                cc.0, cc.1, have.0, have.1
            );
            false
        }
        None => false,
    }
}

#[test]
fn vector_add_matches_the_cpu() {
    if kit::test_device().is_none() {
        return;
    }
    check("vector_add", vector_add::run(args(&["1", "1000003", "--no-time"])));
}

#[test]
fn hgemm_matches_the_cpu() {
    if device_with((9, 0), "hgemm") {
        check("hgemm", hgemm::run(args(&["256x384x64", "1000x520x136", "--no-time"])));
    }
}

#[test]
fn tcgen05_gemm_matches_the_cpu() {
    if device_with((10, 0), "tcgen05_gemm") {
        check("tcgen05_gemm", tcgen05_gemm::run(args(&["256x512x128", "1000x520x136", "--no-time"])));
    }
}

#[test]
fn vector_add_is_timed_against_the_drivers_copy() {
    if kit::test_device().is_none() {
        return;
    }
    check("vector_add --vs-copy", vector_add::run(args(&["1000003", "--samples", "3", "--vs-copy"])));
}

/// cuBLASLt's result is checked against the same CPU reference before it is timed, so a wrong
/// layout mapping fails here (where libcublasLt is missing the runner says so and passes).
#[test]
fn cublaslt_computes_the_same_gemm_as_hgemm() {
    if device_with((9, 0), "hgemm") {
        check("hgemm --vs-cublas", hgemm::run(args(&["1000x520x136", "256x384x64", "--samples", "3", "--vs-cublas"])));
    }
}

//! Benchmark: a no-op `cargo gpu build` beside a no-op `cargo build` of the same project,
//! interleaved in one run so machine noise hits both alike. Prints medians and their ratio; the
//! goal is a ratio of at most 1.15.
//!
//! `cargo bench --bench noop_build` (needs nvcc, as the tests do). `NOOP_BENCH_ROUNDS` sets the
//! number of rounds (default 30).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{cuda_home, repo_root, TestProject};

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "{:?} failed:\n{}", cmd, String::from_utf8_lossy(&out.stderr));
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; this harness has no filters.
    let Some(cuda) = cuda_home() else {
        eprintln!("noop_build: no nvcc found (run scripts/setup.sh); nothing measured");
        std::process::exit(1);
    };
    let rounds: usize = std::env::var("NOOP_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(30);
    let project = TestProject::new("kernels-example", Some(cuda.clone()));
    let target_dir = repo_root().join("target/bench-example");

    let cargo = || {
        let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        // The same environment as cargo-gpu's: cudarc's build script reruns when CUDA_HOME changes.
        c.args(["build", "--bin", "vector-add"])
            .current_dir(&project.dir)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CUDA_HOME", &cuda);
        c
    };
    // In the project, with its own cache and the toolkit above (see `TestProject::cmd`).
    let gpu = || {
        let mut c = project.cmd(&["build", "--target", "sm_90a", "--target", "sm_100a"]);
        c.env("CARGO_TARGET_DIR", &target_dir);
        c
    };
    // Warm both: the first runs compile everything.
    time(&mut gpu());
    time(&mut cargo());
    time(&mut gpu());

    let (mut c_times, mut g_times, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        // Alternate the order so neither always runs with a warmer cache.
        let (c, g) = if i % 2 == 0 {
            let c = time(&mut cargo());
            (c, time(&mut gpu()))
        } else {
            let g = time(&mut gpu());
            (time(&mut cargo()), g)
        };
        c_times.push(c);
        g_times.push(g);
        ratios.push(g.as_secs_f64() / c.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let paired = ratios[ratios.len() / 2];
    let (c, g) = (median(c_times), median(g_times));
    let ratio = g.as_secs_f64() / c.as_secs_f64();
    println!("no-op build of kernels-example (sm_90a + sm_100a), median of {rounds} interleaved rounds");
    println!("{:<28} {:>10}", "command", "median");
    println!("{:<28} {:>8.1}ms", "cargo build", c.as_secs_f64() * 1e3);
    println!("{:<28} {:>8.1}ms", "cargo gpu build", g.as_secs_f64() * 1e3);
    println!("{:<28} {:>10.2} (goal <= 1.15)", "ratio gpu/cargo", ratio);
    // The same, round by round: each pair ran back to back, so slow drift of the machine cancels.
    println!("{:<28} {:>10.2}", "median of per-round ratios", paired);
}

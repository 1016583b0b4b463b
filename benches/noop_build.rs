//! Benchmark: a no-op `cargo gpu build` beside a no-op `cargo build` of the same project,
//! interleaved in one run so machine noise hits both alike. Prints medians and their ratio; the
//! goal is a ratio of at most 1.15.
//!
//! `cargo bench --bench noop_build` (needs nvcc, as the tests do). `NOOP_BENCH_ROUNDS` sets the
//! number of rounds (default 30).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn cuda_home() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c: Vec<PathBuf> = std::env::var_os("CUDA_HOME").map(PathBuf::from).into_iter().collect();
    if let Ok(rd) = std::fs::read_dir(root.join(".venv-cuda/lib")) {
        c.extend(rd.flatten().map(|e| e.path().join("site-packages/nvidia/cu13")));
    }
    c.push(PathBuf::from("/usr/local/cuda"));
    c.into_iter().find(|h| h.join("bin/nvcc").is_file())
}

fn copy_project(src: &Path, dst: &Path) {
    for e in walkdir::WalkDir::new(src).into_iter().filter_entry(|e| e.file_name() != "target") {
        let e = e.unwrap();
        let to = dst.join(e.path().strip_prefix(src).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("kernels-example");
    copy_project(&root.join("kernels-example"), &project);
    // The example's runner includes the kit and the template runners by path (`../templates/...`).
    copy_project(&root.join("templates"), &tmp.path().join("templates"));
    let target_dir = root.join("target/bench-example");
    let cache = tmp.path().join("cache");

    let cargo = || {
        let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        // The same environment as cargo-gpu's: cudarc's build script reruns when CUDA_HOME changes.
        c.args(["build", "--bin", "vector-add"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CUDA_HOME", &cuda);
        c
    };
    let gpu = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cargo-gpu"));
        c.args(["gpu", "build", "--target", "sm_90a", "--target", "sm_100a"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_GPU_CACHE_DIR", &cache)
            .env("CUDA_HOME", &cuda);
        c
    };
    // Warm both: the first runs compile everything.
    time(&mut gpu());
    time(&mut cargo());
    time(&mut gpu());

    let (mut c_times, mut g_times) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        // Alternate the order so neither always runs with a warmer cache.
        if i % 2 == 0 {
            c_times.push(time(&mut cargo()));
            g_times.push(time(&mut gpu()));
        } else {
            g_times.push(time(&mut gpu()));
            c_times.push(time(&mut cargo()));
        }
    }
    let (c, g) = (median(c_times), median(g_times));
    let ratio = g.as_secs_f64() / c.as_secs_f64();
    println!("no-op build of kernels-example (sm_90a + sm_100a), median of {rounds} interleaved rounds");
    println!("{:<28} {:>10}", "command", "median");
    println!("{:<28} {:>8.1}ms", "cargo build", c.as_secs_f64() * 1e3);
    println!("{:<28} {:>8.1}ms", "cargo gpu build", g.as_secs_f64() * 1e3);
    println!("{:<28} {:>10.2} (goal <= 1.15)", "ratio gpu/cargo", ratio);
}

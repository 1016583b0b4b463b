//! Benchmark: a no-op `cargo gpu build` beside a no-op `cargo build` of the same project, and
//! beside the least any wrapper of cargo can cost (coreutils' `timeout` around the same `cargo
//! build`), interleaved in one run so machine noise hits all three alike. Prints medians, their
//! ratios to `cargo build`, and the medians of the per-round ratios; the goal is a ratio of at
//! most 1.15.
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
    // The floor for any program that starts cargo and waits for it: coreutils' `timeout`, a small
    // C program that forks, waits and exits, around the same cargo command.
    let floor = || {
        let plain = cargo();
        let mut c = Command::new("timeout");
        c.arg("600").arg(plain.get_program()).args(plain.get_args()).current_dir(&project.dir);
        c.env("CARGO_TARGET_DIR", &target_dir).env("CUDA_HOME", &cuda);
        c
    };
    // Warm all three: the first runs compile everything.
    time(&mut gpu());
    time(&mut cargo());
    time(&mut floor());
    time(&mut gpu());

    let mut times: [Vec<Duration>; 3] = Default::default();
    let (mut ratios, mut floor_ratios) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        // Rotate the order so none always runs with a warmer cache.
        let mut round = [Duration::ZERO; 3];
        for k in 0..3 {
            let which = (i + k) % 3;
            round[which] = match which {
                0 => time(&mut cargo()),
                1 => time(&mut floor()),
                _ => time(&mut gpu()),
            };
        }
        for (all, t) in times.iter_mut().zip(round) {
            all.push(t);
        }
        ratios.push(round[2].as_secs_f64() / round[0].as_secs_f64());
        floor_ratios.push(round[1].as_secs_f64() / round[0].as_secs_f64());
    }
    let paired = median_f64(ratios);
    let paired_floor = median_f64(floor_ratios);
    let [c, f, g] = times.map(median);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("no-op build of kernels-example (sm_90a + sm_100a), median of {rounds} interleaved rounds");
    println!("{:<34} {:>9} {:>8} {:>10}", "command", "median", "ratio", "per-round");
    println!("{:<34} {:>7.1}ms {:>8.2} {:>10.2}", "cargo build", ms(c), 1.0, 1.0);
    println!(
        "{:<34} {:>7.1}ms {:>8.2} {:>10.2}",
        "timeout 600 cargo build (floor)",
        ms(f),
        ms(f) / ms(c),
        paired_floor
    );
    println!("{:<34} {:>7.1}ms {:>8.2} {:>10.2}", "cargo gpu build", ms(g), ms(g) / ms(c), paired);
    println!(
        "goal: cargo gpu build <= 1.15 x cargo build; cargo gpu's own cost beyond the floor: {:.1} ms",
        ms(g) - ms(f)
    );
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

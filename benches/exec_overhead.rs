//! Benchmark: what running each test on the remote costs when cargo-gpu is cargo's target runner.
//! A crate of 50 tests that do nothing (and one kernel) runs under `cargo nextest run`, which
//! starts one process per test: here, and through `cargo-gpu exec` to a real sshd on loopback
//! behind a user-space delay proxy (25 ms each way: a 50 ms round trip), over a warm master
//! connection, one test at a time. Interleaved in one run so noise hits both alike. Prints the
//! medians, the overhead per test ((remote - here) / 50) beside the goal of 0.3 s, and the
//! connections, remote commands (ssh sessions, each through the login shell) and requests
//! through the remote's agent that one remote run of the 50 took.
//!
//! `cargo bench --bench exec_overhead` (needs nvcc, sshd and cargo-nextest).
//! `EXEC_BENCH_ROUNDS` sets the number of rounds (default 3).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::proxy::{start_delay_proxy, Counters};
use support::{cuda_home, Sshd, SshdOptions, World, ALIAS, BIN};

const TESTS: usize = 50;
const ONE_WAY: Duration = Duration::from_millis(25);

/// A crate with one kernel and `TESTS` tests that pass at once.
fn write_crate(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("kernels")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"fifty\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n\n\
         [package.metadata.gpu]\ntargets = [\"sm_90a\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("kernels/k.cu"), "extern \"C\" __global__ void k(int *x) { if (x) x[0] = 1; }\n").unwrap();
    let mut lib = String::from("pub fn one() -> u32 { 1 }\n\n#[cfg(test)]\nmod tests {\n");
    for i in 0..TESTS {
        lib.push_str(&format!("    #[test]\n    fn t{i:02}() {{ assert_eq!(super::one(), 1); }}\n"));
    }
    lib.push_str("}\n");
    std::fs::write(dir.join("src/lib.rs"), lib).unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("EXEC_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let Some(cuda) = cuda_home() else {
        eprintln!("exec_overhead: no nvcc found (run scripts/setup.sh); nothing measured");
        std::process::exit(1);
    };
    let world = World::new();
    let opts = SshdOptions { config: "LogLevel VERBOSE", ..Default::default() };
    let Some(sshd) = Sshd::start(&world, opts) else {
        eprintln!("exec_overhead: no sshd here; nothing measured");
        std::process::exit(1);
    };
    let counters = Arc::new(Counters::default());
    let proxy = start_delay_proxy(sshd.port, ONE_WAY, Arc::clone(&counters));
    let ssh_config = world.path("ssh_config_proxy");
    let direct = std::fs::read_to_string(&sshd.ssh_config).unwrap();
    std::fs::write(&ssh_config, direct.replace(&format!("Port {}\n", sshd.port), &format!("Port {proxy}\n"))).unwrap();
    world.write_config(&format!(
        "[remotes.it]\nhost = \"{ALIAS}\"\nworkdir = {}\nssh-options = [\"-F\", {}]\n",
        support::toml_str(&world.path("w").display().to_string()),
        support::toml_str(&ssh_config.display().to_string())
    ));
    let dir = world.path("fifty");
    write_crate(&dir);
    let target = world.path("target-fifty");
    let runner_var = format!("CARGO_TARGET_{}_RUNNER", env!("CARGO_GPU_HOST_TRIPLE").to_uppercase().replace('-', "_"));
    let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
    let nextest = |remote: bool| {
        let base = world.cmd(&[]);
        let mut c = Command::new("cargo");
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let path = base.get_envs().find(|(k, _)| *k == "PATH").and_then(|(_, v)| v).unwrap().to_os_string();
        let mut paths = vec![bin_dir.clone()];
        paths.extend(std::env::split_paths(&path));
        c.env("PATH", std::env::join_paths(paths).unwrap());
        c.args(["nextest", "run", "--test-threads", "1", "--color", "never"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .env("CUDA_HOME", &cuda);
        if remote {
            c.env(&runner_var, "cargo-gpu exec --remote it --");
        } else {
            c.env_remove(&runner_var);
        }
        let t = Instant::now();
        let out = c.output().unwrap();
        let took = t.elapsed();
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "nextest failed:\n{text}");
        assert!(text.contains(&format!("{TESTS} tests run: {TESTS} passed")), "{text}");
        took
    };
    let commands = || std::fs::read_to_string(&sshd.log).unwrap_or_default().matches("Starting session: ").count();
    // What the remote's agent served (one line per request in its log).
    let agent = world.path("w").join("agent");
    let requests = || -> usize {
        std::fs::read_dir(&agent)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .map(|e| {
                        std::fs::read_to_string(e.path())
                            .unwrap_or_default()
                            .lines()
                            .filter(|l| l.starts_with("request "))
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    // Warm both: the first build compiles the crate and the kernel, the first remote run opens
    // the master connection, preflights and uploads the kernel and the test binary.
    nextest(false);
    nextest(true);
    let (mut here, mut there) = (Vec::new(), Vec::new());
    let (mut conns, mut cmds, mut served) = (0, 0, 0);
    for round in 0..rounds {
        for k in 0..2 {
            if (round + k) % 2 == 0 {
                here.push(nextest(false));
            } else {
                let (c0, r0, a0) = (counters.connections.load(Ordering::SeqCst), commands(), requests());
                there.push(nextest(true));
                conns = counters.connections.load(Ordering::SeqCst) - c0;
                cmds = commands() - r0;
                served = requests() - a0;
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    let (h, t) = (median(here), median(there));
    let per_test = (t.as_secs_f64() - h.as_secs_f64()) / TESTS as f64;
    println!("exec_overhead: {TESTS} tests, `cargo nextest run --test-threads 1`, {rounds} rounds, medians; 50 ms round trip");
    println!("here:                          {:>8.3} s", h.as_secs_f64());
    println!(
        "through cargo-gpu exec:        {:>8.3} s ({conns} new connections, {cmds} remote commands, {served} requests through the agent)",
        t.as_secs_f64()
    );
    // Where one test's remote run spent its time, from the last record.
    let runs = target.join("gpu/runs");
    let mut ids: Vec<String> =
        std::fs::read_dir(&runs).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    ids.sort();
    if let Some(last) = ids.last() {
        let r = cargo_gpu::runs::Record::load(&runs, last).unwrap();
        let p = r.phases;
        println!(
            "one test's run (record.toml): connect {:.3} s, preflight {:.3} s, upload+launch {:.3} s, run {:.3} s, fetch {:.3} s; wall {:.3} s",
            p.connect, p.preflight, p.upload, p.run, p.fetch, r.wall_seconds
        );
    }
    println!(
        "overhead per test:             {:>8.3} s (goal: under 0.3 s) {}",
        per_test,
        if per_test < 0.3 { "MET" } else { "NOT MET" }
    );
}

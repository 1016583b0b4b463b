//! Benchmark: `cargo gpu remote-run` beside the manual loop it replaces (`scp` the package up,
//! `ssh` to run it, `scp` the outputs back, a fresh connection each, as a person types them),
//! against a real sshd on loopback behind a user-space delay proxy (25 ms each way: a 50 ms
//! round trip). The remote user is this user, whose own `~/.bashrc` runs for every remote command
//! (sshd starts bash for each; here it runs `pyenv init`, about 0.13 s: the cost that makes the
//! number of remote commands matter; the "one remote command" line shows it). Interleaved in one
//! run so noise hits all alike:
//!
//! - manual: the loop above, whole package up each time;
//! - first run: `remote-run --package` into an empty remote workdir with no master connection;
//! - re-run: the same after a kernel-only change (one cubin differs), master connection warm.
//!
//! Prints median wall times (the runner itself does nothing measurable), ratios to the manual
//! loop, TCP connections (accepted by the proxy), remote commands (runs of the start-up file) and
//! bytes sent to the server, beside the goals: re-run <= 0.10 and first run <= 0.3 of the manual
//! loop, and a re-run uploads only the changed cubin.
//!
//! `cargo bench --bench remote_loop` (needs sshd, ssh and scp, as the remote tests do).
//! `REMOTE_BENCH_ROUNDS` sets the number of rounds (default 5).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::proxy::{start_delay_proxy, Counters};
use support::{make_package, write_manifest, Sshd, SshdOptions, World, ALIAS};

const ONE_WAY: Duration = Duration::from_millis(25);
/// The runner: writes a result, like a kernel test would, then the bytes of a typical release
/// runner binary (2 MiB) that the shell never reads.
fn runner() -> String {
    let mut s = String::from("#!/bin/sh\necho ok > \"${CARGO_GPU_OUT:-out}/result.txt\"\necho done\nexit 0\n");
    let line = format!("#{}\n", "x".repeat(127));
    s.push_str(&line.repeat(2 << 20 >> 7));
    s
}

fn cubin(seed: u8) -> Vec<u8> {
    (0..256 << 10).map(|i: usize| (i.wrapping_mul(31) as u8) ^ seed).collect()
}

/// A TCP proxy to `127.0.0.1:target` that delays each direction by `ONE_WAY`.
fn start_proxy(target: u16, counters: Arc<Counters>) -> u16 {
    start_delay_proxy(target, ONE_WAY, counters)
}

/// One measurement: wall time and what crossed the proxy.
#[derive(Clone, Copy, Default)]
struct Sample {
    wall: Duration,
    connections: u64,
    commands: u64,
    bytes_up: u64,
}

struct Meter<'a> {
    counters: &'a Counters,
    sshd_log: &'a Path,
}

impl Meter<'_> {
    fn commands(&self) -> u64 {
        let log = std::fs::read_to_string(self.sshd_log).unwrap_or_default();
        log.lines().filter(|l| l.contains("Starting session: ")).count() as u64
    }

    fn measure(&self, f: impl FnOnce()) -> Sample {
        let (c0, b0, r0) = (
            self.counters.connections.load(Ordering::SeqCst),
            self.counters.bytes_up.load(Ordering::SeqCst),
            self.commands(),
        );
        let t = Instant::now();
        f();
        let wall = t.elapsed();
        // Let the last bytes through the proxy's delay before reading the counters.
        std::thread::sleep(ONE_WAY * 3);
        Sample {
            wall,
            connections: self.counters.connections.load(Ordering::SeqCst) - c0,
            commands: self.commands() - r0,
            bytes_up: self.counters.bytes_up.load(Ordering::SeqCst) - b0,
        }
    }
}

fn check(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by_key(|s| s.wall);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("REMOTE_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let world = World::new();
    // Every remote command (a shell command or the sftp subsystem) is one session in the log.
    let opts =
        SshdOptions { config: "LogLevel VERBOSE\nSubsystem sftp /usr/lib/openssh/sftp-server", ..Default::default() };
    let Some(sshd) = Sshd::start(&world, opts) else {
        eprintln!("remote_loop: no sshd here; nothing measured");
        std::process::exit(1);
    };
    let counters = Arc::new(Counters::default());
    let proxy = start_proxy(sshd.port, Arc::clone(&counters));
    // The same client config, through the proxy.
    let ssh_config = world.path("ssh_config_proxy");
    let direct = std::fs::read_to_string(&sshd.ssh_config).unwrap();
    std::fs::write(&ssh_config, direct.replace(&format!("Port {}\n", sshd.port), &format!("Port {proxy}\n"))).unwrap();
    let meter = Meter { counters: &counters, sshd_log: &sshd.log };

    let pkg = world.path("pkg");
    let names = ["a.sm_90a.cubin", "b.sm_90a.cubin", "c.sm_90a.cubin"];
    let cubins: Vec<Vec<u8>> = (0..3).map(cubin).collect();
    let files: Vec<(&str, &[u8])> = names.iter().zip(&cubins).map(|(n, c)| (*n, c.as_slice())).collect();
    make_package(&pkg, &runner(), &files, &["sm_90a"]);
    let cfg = ssh_config.display().to_string();
    let control = format!("ControlPath={}/%C", world.control.display());
    let close_master = || {
        let _ = Command::new("ssh").args(["-F", &cfg, "-o", &control, "-O", "exit", ALIAS]).output();
    };
    let manual_dir = world.path("manual-remote");
    let back = world.path("manual-back");

    let (mut manual, mut first, mut rerun) = (Vec::new(), Vec::new(), Vec::new());
    let mut uploaded = Vec::new();
    let mut phases = None;
    for round in 0..rounds {
        // (a) The manual loop.
        let _ = std::fs::remove_dir_all(&manual_dir);
        let _ = std::fs::remove_dir_all(&back);
        std::fs::create_dir_all(&manual_dir).unwrap();
        std::fs::create_dir_all(&back).unwrap();
        let remote_pkg = manual_dir.join("pkg");
        manual.push(meter.measure(|| {
            check(
                Command::new("scp")
                    .args(["-q", "-r", "-F", &cfg])
                    .arg(&pkg)
                    .arg(format!("{ALIAS}:{}", manual_dir.display())),
            );
            check(Command::new("ssh").args(["-F", &cfg, ALIAS]).arg(format!(
                "cd {} && mkdir -p out && CARGO_GPU_KERNELS=kernels CARGO_GPU_OUT=out ./bin/runner",
                remote_pkg.display()
            )));
            check(
                Command::new("scp")
                    .args(["-q", "-r", "-F", &cfg])
                    .arg(format!("{ALIAS}:{}/out", remote_pkg.display()))
                    .arg(&back),
            );
        }));
        assert!(back.join("out/result.txt").is_file());

        // (b) First run: empty workdir, no master connection.
        close_master();
        let work = world.path(&format!("work-{round}"));
        world.write_config(&format!(
            "[remotes.it]\nhost = \"{ALIAS}\"\nworkdir = {}\nssh-options = [\"-F\", {}]\n",
            support::toml_str(&work.display().to_string()),
            support::toml_str(&cfg)
        ));
        let pkg_s = pkg.display().to_string();
        let run = || {
            let out = world
                .cmd(&["remote-run", "--remote", "it", "--package", &pkg_s])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "remote-run failed:\n{}", String::from_utf8_lossy(&out.stderr));
        };
        first.push(meter.measure(run));

        // (c) A kernel-only change, then a re-run over the warm master connection.
        let changed = cubin(100 + round as u8);
        std::fs::write(pkg.join("kernels").join(names[1]), &changed).unwrap();
        write_manifest(&pkg, &["sm_90a"]);
        rerun.push(meter.measure(run));
        let rec = world.last_record();
        uploaded.push(rec.bytes_uploaded);
        phases = Some(rec.phases);
        eprintln!("round {}/{rounds} done", round + 1);
    }
    // For scale: one remote command, over the master cargo-gpu keeps, and on its own connection.
    let ssh_true = |extra: &[&str]| {
        let t = Instant::now();
        check(Command::new("ssh").args(["-F", &cfg]).args(extra).args([ALIAS, "true"]));
        t.elapsed()
    };
    let one_warm = ssh_true(&["-o", &control]);
    let one_fresh = ssh_true(&["-o", "ControlPath=none"]);
    close_master();
    let (m, f, r) = (median(manual), median(first), median(rerun));
    let row = |name: &str, s: &Sample| {
        println!(
            "{name:<28} {:>8.3} s {:>7.2} {:>6} {:>9} {:>12}",
            s.wall.as_secs_f64(),
            s.wall.as_secs_f64() / m.wall.as_secs_f64(),
            s.connections,
            s.commands,
            s.bytes_up
        );
    };
    println!("remote_loop: {rounds} rounds, medians; 50 ms round trip; the remote user's own shell start-up");
    println!(
        "one remote command: {:.3} s over the warm master, {:.3} s on a fresh connection",
        one_warm.as_secs_f64(),
        one_fresh.as_secs_f64()
    );
    println!("{:<28} {:>10} {:>7} {:>6} {:>9} {:>12}", "", "wall", "ratio", "conns", "commands", "bytes up");
    row("manual scp / ssh / scp", &m);
    row("remote-run, first run", &f);
    row("remote-run, re-run", &r);
    if let Some(p) = phases {
        println!(
            "last re-run's phases (record.toml): connect {:.3} s, preflight {:.3} s, upload+launch {:.3} s, run {:.3} s, fetch {:.3} s",
            p.connect, p.preflight, p.upload, p.run, p.fetch
        );
    }
    let ratio_f = f.wall.as_secs_f64() / m.wall.as_secs_f64();
    let ratio_r = r.wall.as_secs_f64() / m.wall.as_secs_f64();
    let cubin_size = cubin(0).len() as u64;
    let up = *uploaded.iter().max().unwrap();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("goal: re-run <= 0.10 of manual: {ratio_r:.2} ({})", verdict(ratio_r <= 0.10));
    println!("goal: first run <= 0.30 of manual: {ratio_f:.2} ({})", verdict(ratio_f <= 0.30));
    println!(
        "goal: re-run uploads only the changed cubin: {up} bytes uploaded (record.toml), cubin {cubin_size} bytes ({})",
        verdict(up == cubin_size)
    );
}

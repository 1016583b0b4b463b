//! `cargo gpu doctor --remote NAME`: what a remote is, asked in one preflight round trip, as a
//! report for people.

use std::fmt::Write as _;

use anyhow::{Context, Result};

use crate::arch::SmArch;
use crate::config::Remote;
use crate::remote::preflight;
use crate::remote::scripts;
use crate::remote::session::transport_for;
use crate::remote::transport::run_script;
use crate::shell::{human_bytes, Shell};

/// The report of `cargo gpu doctor --remote NAME`: reachable? GPU, compute capability, driver
/// CUDA, glibc, disk, compute-sanitizer, ncu and cuda-gdb, and for each target whether it runs
/// there; with `compiler` (the local compiler's version), whether its packages load on the
/// remote's driver, and if not which toolchain to pin. Does not run the remote's `start`
/// command: a doctor does not rent machines.
pub fn report(
    shell: &Shell,
    remote: &Remote,
    targets: &[SmArch],
    compiler: Option<&semver::Version>,
) -> Result<String> {
    let name = &remote.name;
    let transport = transport_for(remote);
    let t = std::time::Instant::now();
    transport.wait_ready(shell, remote.connect_timeout).with_context(|| format!("remote {name} is not reachable"))?;
    let connect = t.elapsed();
    let ended = run_script(
        shell,
        &*transport,
        &scripts::preflight(&remote.workdir, &[]),
        "preflight the remote",
        Default::default(),
    )?;
    let f = preflight::parse_preflight(&String::from_utf8_lossy(&ended.stdout))?;
    preflight::remember(name, &f);
    let mut out = String::new();
    let _ = writeln!(out, "remote {name}: reachable as {} ({:.2}s)", transport.describe(), connect.as_secs_f64());
    match (&f.gpu_name, f.compute_cap, &f.gpu_error) {
        (Some(g), Some(cc), _) => {
            let _ = writeln!(
                out,
                "  GPU:      {g} (compute capability {cc}: build with --target {}), driver {}",
                cc.suggested_arch(),
                f.driver_version.as_deref().unwrap_or("?")
            );
        }
        (_, _, Some(e)) => {
            let _ = writeln!(out, "  GPU:      none usable ({e})");
        }
        _ => {
            let _ = writeln!(out, "  GPU:      none");
        }
    }
    let _ = writeln!(out, "  CUDA:     {} (driver)", f.driver_cuda.as_deref().unwrap_or("unknown"));
    if let (Some(v), Some(have)) = (compiler, f.driver_cuda.as_deref()) {
        let (maj, min) = crate::arch::min_driver_cuda(v, targets);
        let need = format!("{maj}.{min}");
        let verdict = match preflight::driver_refusal(name, Some(have), &need, &v.to_string(), targets) {
            Some(refusal) => format!("driver CUDA {have}: packages from CUDA {v} here will be refused ({refusal})"),
            None => format!("driver CUDA {have} loads packages from CUDA {v} here (they need {need})"),
        };
        let _ = writeln!(out, "  builds:   {verdict}");
    }
    let _ = writeln!(out, "  glibc:    {}", f.glibc.as_deref().unwrap_or("unknown"));
    let _ = writeln!(out, "  machine:  {}", f.machine.as_deref().unwrap_or("unknown"));
    let disk = f.disk_free_bytes.map(human_bytes).unwrap_or_else(|| "unknown".into());
    let _ = writeln!(out, "  disk:     {disk} free in {}", remote.workdir);
    let _ = writeln!(out, "  tools:    {}", preflight::tools_summary(&f));
    if let Some(cc) = f.compute_cap {
        for t in targets {
            let verdict = if t.runs_on(cc) {
                "runs there".to_string()
            } else {
                format!("does not run there (needs {})", t.runs_where())
            };
            let _ = writeln!(out, "  {t}: {verdict}");
        }
    }
    Ok(out)
}

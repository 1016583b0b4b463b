//! The run itself: open the GPU, pick and load the cubin, run, verify, report.

use crate::args::Config;
use crate::check::{self, Timing};
use crate::cubin;
use crate::fail::{Exit, Failure};
use crate::gpu;
use crate::report::Report;

const KERNEL: &str = "vector_add";

pub fn run(config: &Config) -> Result<(), Failure> {
    let gpu = gpu::open()?;
    let dir = cubin::kernel_dir()?;
    let cubins = cubin::scan(&dir, KERNEL)?;
    let chosen = cubin::choose(&cubins, gpu.cc).ok_or_else(|| {
        Failure::new(Exit::NoKernel, cubin::no_match_message(KERNEL, &cubins, &dir.path, &gpu.name, gpu.cc))
    })?;
    let function = gpu.load(chosen, KERNEL)?;
    let cubin_name = chosen.file_name();
    println!("device: {} (compute capability {}), cubin: {cubin_name}", gpu.name, gpu.cc);

    let (a, b) = check::inputs(config.seed, config.size);
    let (c, times_us) = gpu.vector_add(&function, &a, &b, config.iters)?;
    let verdict = check::verify(&a, &b, &c);
    let timing = Timing::from_samples(&times_us).expect("--iters is at least 1");
    let report =
        Report { device: &gpu.name, cc: gpu.cc, cubin: &cubin_name, n: config.size, verified: verdict.is_ok(), timing };
    report.write_if_requested()?;

    if let Err(m) = verdict {
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "{KERNEL}: wrong result: c[{}] = {:?}, expected {:?} (a + b); {} of {} elements wrong",
                m.index, m.got, m.expected, m.count, config.size
            ),
        ));
    }
    println!("{KERNEL}: n={} verified OK", config.size);
    println!("{}", report.time_line());
    Ok(())
}

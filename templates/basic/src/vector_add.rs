//! The `vector_add` runner: for each size, random inputs, one checked run against the CPU, then
//! timed runs reported as GB/s (three floats move per element), all through the kit.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::kit::{self, Args, Fail, Gpu, Precision, Report, Rng, TimeOptions, Work};

pub const HELP: &str = "\
vector-add: add two random vectors on the GPU, check the sum on the CPU and time the kernel

usage: vector-add [N]... [--seed S] [--samples K] [--no-flush] [--no-time]

  N           elements per vector, such as 1000, 16Mi or 256Mi (1 GiB per vector) [default: 16Mi]
  --seed S    seed for the random inputs [default: fresh, printed]
  --samples K take exactly K timed samples [default: until the median is stable]
  --no-flush  do not flush the L2 cache before each sample
  --no-time   check only

Results go to $CARGO_GPU_OUT/vector_add-<N>.json. Exit status: 0 pass, 1 wrong result, 2 usage,
3 no driver, GPU or cubin, 4 a kernel fault.
";

pub fn run(mut args: Args) -> kit::Result<()> {
    args.parse(&["seed", "samples"], &["no-flush", "no-time"])?;
    if args.flag("help") {
        print!("{HELP}");
        return Ok(());
    }
    let sizes: Vec<usize> = if args.positional.is_empty() {
        vec![16 << 20]
    } else {
        args.positional.iter().map(|s| kit::parse_size(s)).collect::<kit::Result<_>>()?
    };
    if sizes.contains(&0) {
        return Err(Fail::Usage("N must be at least 1".into()));
    }
    let seed = args.seed()?;
    let time_opts = TimeOptions::from_args(&args)?;
    let mut gpu = Gpu::open()?;
    let f = gpu.function("vector_add", "vector_add")?;
    println!("seed {seed}");
    for n in sizes {
        let mut rng = Rng::new(seed ^ n as u64);
        let (a, b) = (rng.f32s(n), rng.f32s(n));
        let (da, db) = (gpu.upload(&a)?, gpu.upload(&b)?);
        let dc = gpu.poisoned::<f32>(n)?;
        let blocks = u32::try_from(n.div_ceil(256)).map_err(|_| Fail::Usage(format!("N={n} is too large")))?;
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let n64 = n as u64;
        let mut launch = |gpu: &Gpu| {
            let mut l = gpu.stream.launch_builder(&f);
            l.arg(&da).arg(&db).arg(&dc).arg(&n64);
            kit::cu("launch vector_add", unsafe { l.launch(cfg) }).map(|_| ())
        };
        launch(&gpu)?;
        gpu.sync()?;
        let got = gpu.download(&dc)?;
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let name = format!("vector_add-{n}");
        let comparison = kit::compare(&got, &want, Precision::Fp32);
        let mut report = Report::new(&name, &gpu);
        report.set("n", n);
        report.set("seed", seed);
        report.check(&comparison);
        let checked = comparison.check(&format!("vector_add n={n}"));
        if checked.is_ok() && !args.flag("no-time") {
            let work = Work::Bytes(3.0 * 4.0 * n as f64);
            let timing = gpu.time(&time_opts, &mut launch)?;
            kit::print_timing(&format!("vector_add n={n}"), &timing, work);
            report.timing(&timing, work);
        }
        report.write()?;
        checked?;
    }
    Ok(())
}

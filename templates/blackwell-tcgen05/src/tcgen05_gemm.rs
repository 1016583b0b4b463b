//! The `tcgen05-gemm` runner: C = A * B^T with bf16 A (M x K) and B (N x K) and fp32 C, on the
//! Blackwell kernel in `kernels/tcgen05_gemm.cu` (tcgen05.mma, accumulator in tensor memory). For
//! each size: fresh random inputs, one run on a NaN-filled C compared with a CPU f64 reference
//! (every element for small sizes, the edges plus random elements for large ones), then timing
//! reported as TFLOP/s. Needs compute capability 10.0 (B200, GB200).

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::kit::{self, Args, Fail, Gpu, Precision, Report, Rng, TimeOptions, Work};

pub const HELP: &str = "\
tcgen05-gemm: C = A * B^T in bf16 with fp32 accumulation (tcgen05.mma + TMEM, sm_100a)

usage: tcgen05-gemm [MxNxK]... [--seed S] [--samples K] [--no-flush] [--no-time] [--full-check]

  MxNxK        problem sizes, such as 4096x4096x4096 or 1000x999x520 [default: 4096x4096x4096]
  --seed S     seed for the random inputs [default: fresh, printed]
  --samples K  take exactly K timed samples [default: until the median is stable]
  --no-flush   do not flush the L2 cache before each sample
  --no-time    check only
  --full-check compare every element, whatever the size (slow on the CPU for large sizes)

Results go to $CARGO_GPU_OUT/tcgen05_gemm-MxNxK.json. Exit status: 0 pass, 1 wrong result,
2 usage, 3 no driver, GPU or cubin, 4 a kernel fault.
";

/// Must match the kernel's tile (`BM`, `BN`, `THREADS` in kernels/tcgen05_gemm.cu).
const BM: usize = 128;
const BN: usize = 128;
const THREADS: u32 = 128;

pub fn run(mut args: Args) -> kit::Result<()> {
    args.parse(&["seed", "samples"], &["no-flush", "no-time", "full-check"])?;
    if args.flag("help") {
        print!("{HELP}");
        return Ok(());
    }
    let shapes: Vec<(usize, usize, usize)> = if args.positional.is_empty() {
        vec![(4096, 4096, 4096)]
    } else {
        args.positional.iter().map(|s| kit::parse_shape(s)).collect::<kit::Result<_>>()?
    };
    for &(m, n, k) in &shapes {
        if m > i32::MAX as usize || n > i32::MAX as usize || k > i32::MAX as usize {
            return Err(Fail::Usage(format!("{m}x{n}x{k}: sizes must fit in 32 bits")));
        }
    }
    let seed = args.seed()?;
    let time_opts = TimeOptions::from_args(&args)?;
    let mut gpu = Gpu::open()?;
    if !matches!(gpu.cc, (10, 0) | (10, 3)) {
        return Err(Fail::Setup(format!(
            "tcgen05_gemm needs a datacenter Blackwell GPU (compute capability 10.0 or 10.3, for tcgen05); this is {}",
            gpu.describe()
        )));
    }
    let f = gpu.function("tcgen05_gemm", "tcgen05_gemm_bf16_tn")?;
    println!("seed {seed}");
    for (m, n, k) in shapes {
        let shape = format!("{m}x{n}x{k}");
        let mut rng = Rng::new(seed ^ ((m as u64) << 40) ^ ((n as u64) << 20) ^ k as u64);
        let (a, b) = (rng.bf16s(m * k), rng.bf16s(n * k));
        let (da, db) = (gpu.upload(&a)?, gpu.upload(&b)?);
        let dc = gpu.poisoned::<f32>(m * n)?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(BN) as u32, m.div_ceil(BM) as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (mi, ni, ki) = (m as i32, n as i32, k as i32);
        let launch = |gpu: &Gpu| {
            let mut l = gpu.stream.launch_builder(&f);
            l.arg(&da).arg(&db).arg(&dc).arg(&mi).arg(&ni).arg(&ki);
            kit::cu("launch tcgen05_gemm", unsafe { l.launch(cfg) }).map(|_| ())
        };
        launch(&gpu)?;
        gpu.sync()?;
        let got = gpu.download(&dc)?;

        let indices = kit::gemm_check_indices(m, n, k, (BM, BN), args.flag("full-check"), &mut rng);
        let af: Vec<f32> = a.iter().map(|x| kit::f32_from_bf16(*x)).collect();
        let bf: Vec<f32> = b.iter().map(|x| kit::f32_from_bf16(*x)).collect();
        let want = kit::gemm_reference_bt(&af, &bf, n, k, &indices);
        let comparison =
            kit::compare_pairs(indices.iter().zip(&want).map(|(i, w)| (*i, got[*i], *w)), Precision::Bf16).with_cols(n);
        let mut report = Report::new(&format!("tcgen05_gemm-{shape}"), &gpu);
        for (key, v) in [("m", m), ("n", n), ("k", k)] {
            report.set(key, v);
        }
        report.set("seed", seed);
        report.set("layout", "C[MxN] f32 = A[MxK] bf16 * B[NxK] bf16 ^T");
        report.check(&comparison);
        let checked = comparison.check(&format!("tcgen05_gemm {shape} vs CPU f64"));
        if checked.is_ok() && !args.flag("no-time") {
            let work = Work::Flops(2.0 * m as f64 * n as f64 * k as f64);
            let timing = gpu.time(&time_opts, launch)?;
            kit::print_timing(&format!("tcgen05_gemm {shape}"), &timing, work);
            report.timing(&timing, work);
        }
        report.write()?;
        checked?;
    }
    Ok(())
}

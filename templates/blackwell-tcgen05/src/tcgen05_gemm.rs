//! The `tcgen05-gemm` runner: C = A * B^T with bf16 A (M x K) and B (N x K) and fp32 C, on the
//! Blackwell kernel in `kernels/tcgen05_gemm.cu` (TMA into a shared-memory ring, tcgen05.mma with
//! the accumulator in tensor memory). For each size: fresh random inputs, one run on a NaN-filled
//! C compared with a CPU f64 reference (every element for small sizes, the edges plus random
//! elements for large ones), then timing reported as TFLOP/s. Needs compute capability 10.0 or
//! 10.3 (B200, GB200, B300).

use cudarc::driver::{sys, LaunchConfig, PushKernelArg};

use crate::kit::{self, Args, Fail, Gpu, Precision, Report, Rng, TimeOptions, Work};

pub const HELP: &str = "\
tcgen05-gemm: C = A * B^T in bf16 with fp32 accumulation (TMA + tcgen05.mma + TMEM, sm_100a)

usage: tcgen05-gemm [MxNxK]... [--vs-cublas] [--seed S] [--samples K] [--no-flush] [--no-time] [--full-check]

  MxNxK        problem sizes, such as 4096x4096x4096 or 1000x999x520; K must be a multiple of 8
               (TMA row strides are multiples of 16 bytes) [default: 4096x4096x4096]
  --seed S     seed for the random inputs [default: fresh, printed]
  --samples K  take exactly K timed samples [default: until the median is stable]
  --no-flush   do not flush the L2 cache before each sample
  --no-time    check only
  --full-check compare every element, whatever the size (slow on the CPU for large sizes)
  --vs-cublas  also run cuBLASLt's GEMM (fp32 C, fp32 accumulation) on the same inputs: checked
               against the same reference, timed the same way, printed with the ratio ours/cuBLAS
               and recorded as `baseline` (skipped, with a note, where libcublasLt is missing)

Results go to $CARGO_GPU_OUT/tcgen05_gemm-MxNxK.json. Exit status: 0 pass, 1 wrong result,
2 usage, 3 no driver, GPU or cubin, 4 a kernel fault.
";

/// Must match the kernel's tile, threads and shared memory (`BM`, `BN`, `BK`, `STAGES`,
/// `TCGEN05_GEMM_THREADS` and `SMEM_BYTES` in kernels/tcgen05_gemm.cu).
const BM: usize = 128;
const BN: usize = 256;
const BK: u32 = 64;
const STAGES: u32 = 4;
const THREADS: u32 = 192;
/// The ring of A and B tiles, 2 * STAGES + 1 mbarriers, the TMEM address word, 1024 bytes of
/// alignment slack.
const SMEM_BYTES: u32 = STAGES * (BM as u32 * BK * 2 + BN as u32 * BK * 2) + (2 * STAGES + 1) * 8 + 8 + 1024;

pub fn run(mut args: Args) -> kit::Result<()> {
    args.parse(&["seed", "samples"], &["no-flush", "no-time", "full-check", "vs-cublas"])?;
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
        if k % 8 != 0 {
            return Err(Fail::Usage(format!(
                "{m}x{n}x{k}: K must be a multiple of 8 (TMA row strides are multiples of 16 bytes)"
            )));
        }
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
    // --vs-cublas: the baseline, loaded once (None, with a note, where the library is missing).
    let cublas = if args.flag("vs-cublas") { kit::Cublas::load(&gpu) } else { None };
    kit::cu(
        "allow the kernel its shared memory",
        f.set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, SMEM_BYTES as i32),
    )?;
    println!("seed {seed}");
    for (m, n, k) in shapes {
        let shape = format!("{m}x{n}x{k}");
        let mut rng = Rng::new(seed ^ ((m as u64) << 40) ^ ((n as u64) << 20) ^ k as u64);
        let (a, b) = (rng.bf16s(m * k), rng.bf16s(n * k));
        let (da, db) = (gpu.upload(&a)?, gpu.upload(&b)?);
        let dc = gpu.poisoned::<f32>(m * n)?;
        let map_a = kit::tensor_map_bf16(&gpu, &da, m, k, BM as u32, BK)?;
        let map_b = kit::tensor_map_bf16(&gpu, &db, n, k, BN as u32, BK)?;
        let blocks = m.div_ceil(BM) * n.div_ceil(BN);
        let cfg =
            LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: SMEM_BYTES };
        let (mi, ni, ki) = (m as i32, n as i32, k as i32);
        let launch = |gpu: &Gpu| {
            let mut l = gpu.stream.launch_builder(&f);
            l.arg(&map_a).arg(&map_b).arg(&dc).arg(&mi).arg(&ni).arg(&ki);
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
            // --vs-cublas: cuBLASLt on the same inputs, checked against the same reference.
            if let Some(cublas) = &cublas {
                let problem = kit::GemmProblem { a: &da, b: &db, m, n, k, indices: &indices, want: &want };
                cublas.versus::<f32>(&mut gpu, &time_opts, &problem, &timing, &mut report)?;
            }
        }
        report.write()?;
        checked?;
    }
    Ok(())
}

//! The `hgemm` runner: C = A * B^T with bf16 A (M x K) and B (N x K) and fp32 or bf16 C, on
//! the persistent Hopper kernel in `kernels/hgemm.cu`. For each size it makes fresh random inputs, runs the kernel
//! once on a NaN-filled C and compares with a CPU reference computed in f64 from the same bf16
//! values (every element for small sizes; for large ones the edges of C plus random elements),
//! then times it and reports TFLOP/s.

use cudarc::driver::{sys, CudaFunction, LaunchConfig, PushKernelArg};

use crate::kit::{self, Args, Fail, Gpu, Precision, Report, Rng, TimeOptions, Work};

pub const HELP: &str = "\
hgemm: C = A * B^T in bf16 with fp32 accumulation (TMA + wgmma, sm_90a); checked and timed

usage: hgemm [MxNxK]... [--bf16-c] [--tile-n N] [--no-pair] [--no-tma-store] [--vs-cublas] [--seed S]
             [--samples K] [--no-flush] [--no-time] [--full-check]

  MxNxK        problem sizes, such as 4096x4096x4096 or 1000x999x520; K must be a multiple of 8
               (TMA row strides are multiples of 16 bytes) [default: 4096x4096x4096]
  --bf16-c     C in bf16 (hgemm_bf16_tn_bf16c_*), rounded from the fp32 accumulators [default: fp32 C]
  --tile-n N   tiles of 128 x N, N one of 256, 240, 192, 128 [default: per size, the width whose last
               wave of tiles wastes the least of the GPU]
  --no-pair    one block per tile (hgemm_bf16_tn_128x*) instead of clusters of two blocks on vertically
               adjacent tiles that share B through TMA multicast (hgemm_bf16_tn_pair_*), which is
               the default wherever there are two row tiles and the GPU can run such clusters
  --no-tma-store  store C from registers instead of through shared memory and TMA (the kernel
               does that anyway when C's rows are not 16-byte aligned)
  --seed S     seed for the random inputs [default: fresh, printed]
  --samples K  take exactly K timed samples [default: until the median is stable]
  --no-flush   do not flush the L2 cache before each sample
  --no-time    check only
  --full-check compare every element, whatever the size (slow on the CPU for large sizes)
  --vs-cublas  also run cuBLASLt's GEMM (the same C type, fp32 accumulation) on the same inputs: checked
               against the same reference, timed the same way, printed with the ratio ours/cuBLAS
               and recorded as `baseline` (skipped, with a note, where libcublasLt is missing)

Results go to $CARGO_GPU_OUT/hgemm-MxNxK.json (hgemm-bf16c-MxNxK.json). Exit status: 0 pass, 1 wrong result, 2 usage,
3 no driver, GPU or cubin, 4 a kernel fault.
";

/// Must match the kernel's tiles and shared memory (`smem_bytes` in kernels/hgemm.cu).
const BM: usize = 128;
const BK: u32 = 64;
const THREADS: u32 = 384;
/// The tile widths the kernel is built for, widest first.
const TILE_NS: [usize; 4] = [256, 240, 192, 128];

/// The kernel's dynamic shared memory for tiles `bn` wide: the 4-stage ring of A and B, two 8 KiB
/// epilogue slices per consumer warpgroup, the barriers, and alignment slack.
fn smem_bytes(bn: usize) -> u32 {
    (4 * (BM * 64 * 2 + bn * 64 * 2) + 2 * 2 * 64 * 128 + 2 * 4 * 8 + 1024) as u32
}

/// The tile width for an M x N problem on `sms` SMs, in pairs of row tiles or not, for C of
/// `c_bytes` per element. Each SM (pair of SMs) takes every `sms`-th tile (pair), so the time goes
/// as the number of waves times a tile's work; narrower tiles can fill the last wave better but
/// reuse less of each load, so a narrower tile is counted dearer per column, and 240 most of all
/// with bf16 C, whose last 48 columns are stored from registers (by what the widths measured on an
/// H200 at 8192^3, 3000x5000x1000 and 33x4097x4096).
fn choose_tile_n(m: usize, n: usize, sms: usize, pair: bool, c_bytes: usize) -> usize {
    let span = if pair { 2 } else { 1 };
    let cost = |bn: usize| {
        let units = m.div_ceil(span * BM) * n.div_ceil(bn);
        let waves = units.div_ceil(sms / span);
        let dearer = match (bn, c_bytes) {
            (256, _) => 1.0,
            (240, 4) => 1.02,
            (192, _) => 1.1,
            _ => 1.2,
        };
        waves as f64 * bn as f64 * dearer
    };
    TILE_NS.into_iter().fold(TILE_NS[0], |best, bn| if cost(bn) < cost(best) { bn } else { best })
}

/// How many clusters of two blocks of `f` (with the shared memory of `bn`-wide tiles) the GPU runs
/// at once: 0 where it runs none, as under some partitionings of the GPU.
fn max_pairs(f: &CudaFunction, bn: usize) -> kit::Result<usize> {
    let config = sys::CUlaunchConfig {
        gridDimX: 2,
        gridDimY: 1,
        gridDimZ: 1,
        blockDimX: THREADS,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: smem_bytes(bn),
        hStream: std::ptr::null_mut(),
        attrs: std::ptr::null_mut(),
        numAttrs: 0,
    };
    let mut clusters = 0;
    // Safety: `f` is a live function of the loaded module, and `config` outlives the call.
    let r = unsafe { sys::cuOccupancyMaxActiveClusters(&mut clusters, f.cu_function(), &config) };
    kit::cu("count the clusters the GPU can run at once", r.result())?;
    Ok(clusters.max(0) as usize)
}

/// The rows of one epilogue slice: each consumer warpgroup stores 64 rows by 128 bytes at a time.
const SLICE_ROWS: u32 = 64;

/// What C holds, fp32 or bf16 (kept as its bits), and its TMA type for the store.
trait Output: kit::GemmOutput {
    const TMA_TYPE: sys::CUtensorMapDataType;
}

impl Output for f32 {
    const TMA_TYPE: sys::CUtensorMapDataType = sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
}

impl Output for u16 {
    const TMA_TYPE: sys::CUtensorMapDataType = sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
}

pub fn run(mut args: Args) -> kit::Result<()> {
    args.parse(
        &["seed", "samples", "tile-n"],
        &["no-flush", "no-time", "full-check", "bf16-c", "no-tma-store", "vs-cublas", "no-pair"],
    )?;
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
    let tile_n = args.get::<usize>("tile-n")?;
    if let Some(bn) = tile_n.filter(|bn| !TILE_NS.contains(bn)) {
        return Err(Fail::Usage(format!("--tile-n {bn}: the tile widths are 256, 240, 192 and 128")));
    }
    if args.flag("bf16-c") {
        run_shapes::<u16>(&args, &shapes, tile_n, "hgemm_bf16_tn_bf16c", "hgemm-bf16c")
    } else {
        run_shapes::<f32>(&args, &shapes, tile_n, "hgemm_bf16_tn", "hgemm")
    }
}

fn run_shapes<T: Output>(
    args: &Args,
    shapes: &[(usize, usize, usize)],
    tile_n: Option<usize>,
    family: &str,
    label: &str,
) -> kit::Result<()> {
    let seed = args.seed()?;
    let time_opts = TimeOptions::from_args(args)?;
    let mut gpu = Gpu::open()?;
    if gpu.cc != (9, 0) {
        return Err(Fail::Setup(format!(
            "hgemm needs a Hopper GPU (compute capability 9.0, for wgmma and setmaxnreg); this is {}",
            gpu.describe()
        )));
    }
    let sms = gpu.sm_count()?;
    // --vs-cublas: the baseline, loaded once (None, with a note, where the library is missing).
    let cublas = if args.flag("vs-cublas") { kit::Cublas::load(&gpu) } else { None };
    println!("seed {seed}");
    let slice_cols = 128 / std::mem::size_of::<T>();
    for &(m, n, k) in shapes {
        let shape = format!("{m}x{n}x{k}");
        // Pairs where there are two row tiles to pair; single blocks where the GPU runs no pairs.
        let mut pair = !args.flag("no-pair") && m > BM;
        let bn = tile_n.unwrap_or_else(|| choose_tile_n(m, n, sms, pair, std::mem::size_of::<T>()));
        let load = |gpu: &mut Gpu, pair: bool| -> kit::Result<(String, CudaFunction)> {
            let kernel = if pair { format!("{family}_pair_{BM}x{bn}") } else { format!("{family}_{BM}x{bn}") };
            let f = gpu.function("hgemm", &kernel)?;
            kit::cu(
                "allow the kernel its shared memory",
                f.set_attribute(
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    smem_bytes(bn) as i32,
                ),
            )?;
            Ok((kernel, f))
        };
        let (mut kernel, mut f) = load(&mut gpu, pair)?;
        let pairs = if pair { max_pairs(&f, bn)? } else { 0 };
        if pair && pairs == 0 {
            println!("note: this GPU runs no clusters of two blocks here; hgemm runs one block per tile");
            pair = false;
            (kernel, f) = load(&mut gpu, false)?;
        }
        let mut rng = Rng::new(seed ^ ((m as u64) << 40) ^ ((n as u64) << 20) ^ k as u64);
        let (a, b) = (rng.bf16s(m * k), rng.bf16s(n * k));
        let (da, db) = (gpu.upload(&a)?, gpu.upload(&b)?);
        let dc = gpu.poisoned::<T>(m * n)?;
        let map_a = kit::tensor_map_bf16(&gpu, &da, m, k, BM as u32, BK)?;
        // A block of a pair loads half of B's rows for the tile, and multicasts them.
        let map_b = kit::tensor_map_bf16(&gpu, &db, n, k, if pair { bn as u32 / 2 } else { bn as u32 }, BK)?;
        // The TMA store needs C's rows to start 16-byte aligned; other widths are stored from
        // registers (the descriptor is then never read, so any valid one does).
        let tma_store = (n * std::mem::size_of::<T>()).is_multiple_of(16) && !args.flag("no-tma-store");
        let map_c = if tma_store {
            kit::tensor_map(&gpu, &dc, T::TMA_TYPE, m, n, SLICE_ROWS, slice_cols as u32)?
        } else {
            map_a
        };
        // Persistent: one block per SM, each taking every `blocks`-th tile, or one pair per two SMs
        // (as many as run at once), each taking every `blocks / 2`-th pair of row tiles.
        let blocks = if pair {
            let units = m.div_ceil(2 * BM) * n.div_ceil(bn);
            2 * units.min(pairs)
        } else {
            (m.div_ceil(BM) * n.div_ceil(bn)).min(sms)
        };
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: smem_bytes(bn),
        };
        let (mi, ni, ki, store) = (m as i32, n as i32, k as i32, tma_store as i32);
        let launch = |gpu: &Gpu| {
            let mut l = gpu.stream.launch_builder(&f);
            l.arg(&map_a).arg(&map_b).arg(&map_c).arg(&dc).arg(&mi).arg(&ni).arg(&ki).arg(&store);
            kit::cu(&format!("launch {kernel}"), unsafe { l.launch(cfg) }).map(|_| ())
        };
        launch(&gpu)?;
        gpu.sync()?;
        let got: Vec<f32> = gpu.download(&dc)?.into_iter().map(T::to_f32).collect();

        let indices = kit::gemm_check_indices(m, n, k, (BM, bn), args.flag("full-check"), &mut rng);
        let af: Vec<f32> = a.iter().map(|x| kit::f32_from_bf16(*x)).collect();
        let bf: Vec<f32> = b.iter().map(|x| kit::f32_from_bf16(*x)).collect();
        let want = kit::gemm_reference_bt(&af, &bf, n, k, &indices);
        let comparison =
            kit::compare_pairs(indices.iter().zip(&want).map(|(i, w)| (*i, got[*i], *w)), Precision::Bf16).with_cols(n);
        let mut report = Report::new(&format!("{label}-{shape}"), &gpu);
        for (key, v) in [("m", m), ("n", n), ("k", k)] {
            report.set(key, v);
        }
        report.set("seed", seed);
        report.set("layout", format!("C[MxN] ({}) = A[MxK] bf16 * B[NxK] bf16 ^T", T::NAME));
        report.set("kernel", kernel.as_str());
        report.set("blocks", blocks);
        report.set("cluster", if pair { 2usize } else { 1 });
        report.set("tma-store", tma_store);
        report.check(&comparison);
        let checked = comparison.check(&format!("{label} {shape} vs CPU f64"));
        if checked.is_ok() && !args.flag("no-time") {
            let work = Work::Flops(2.0 * m as f64 * n as f64 * k as f64);
            let timing = gpu.time(&time_opts, launch)?;
            kit::print_timing(&format!("{label} {shape}"), &timing, work);
            report.timing(&timing, work);
            // --vs-cublas: cuBLASLt on the same inputs, checked against the same reference.
            if let Some(cublas) = &cublas {
                let problem = kit::GemmProblem { a: &da, b: &db, m, n, k, indices: &indices, want: &want };
                cublas.versus::<T>(&mut gpu, &time_opts, &problem, &timing, &mut report)?;
            }
        }
        report.write()?;
        checked?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tile_width_follows_the_last_wave() {
        // 2048 tiles of 256 fill 15.5 waves of 132 SMs; 2240 of 240 fill 17, for 6% less work each.
        assert_eq!(choose_tile_n(8192, 8192, 132, false, 4), 256);
        assert_eq!(choose_tile_n(8192, 8192, 132, true, 4), 256);
        // In pairs, 240 pairs of 256 are 3.6 waves of 66 pairs (4 paid for); 252 of 240 are 3.8,
        // each 6% less work: worth it for fp32 C, not for bf16 C (48 columns from registers).
        assert_eq!(choose_tile_n(3000, 5000, 132, true, 4), 240);
        assert_eq!(choose_tile_n(3000, 5000, 132, true, 2), 256);
        // 480 tiles of 256 are 3.6 waves (4 paid for); 648 of 192 are 4.9 (5), not enough better.
        assert_eq!(choose_tile_n(3000, 5000, 132, false, 2), 256);
        // 133 tiles of 256 would pay for two waves; 177 of 192 too, for less work each.
        assert_eq!(choose_tile_n(128, 256 * 133, 132, false, 4), 192);
        // One row of tiles: narrower tiles put more SMs to work.
        assert_eq!(choose_tile_n(33, 4097, 132, false, 4), 128);
        assert_eq!(smem_bytes(256), 230464);
    }
}

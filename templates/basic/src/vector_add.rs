//! The `vector_add` runner: first the kernel's edge cases (tiny sizes, sizes that are not a
//! multiple of 4, pointers that are not 16-byte aligned), then for each size asked for, random
//! inputs, one checked run against the CPU, and timed runs reported as GB/s (three floats move per
//! element), with `--vs-copy` next to the driver's device-to-device copy of the same traffic.

use cudarc::driver::{CudaFunction, CudaSlice, CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

use crate::kit::{self, Args, Baseline, Fail, Gpu, Precision, Report, Rng, TimeOptions, Work};

pub const HELP: &str = "\
vector-add: add two random vectors on the GPU, check the sum on the CPU and time the kernel

usage: vector-add [N]... [--seed S] [--samples K] [--no-flush] [--no-time] [--vs-copy] [--blocks B]

  N           elements per vector, such as 1000, 16Mi or 256Mi (1 GiB per vector) [default: 16Mi]
  --seed S    seed for the random inputs [default: fresh, printed]
  --samples K take exactly K timed samples [default: until the median is stable]
  --no-flush  do not flush the L2 cache before each sample
  --no-time   check only
  --vs-copy   also time a device-to-device copy (cuMemcpyDtoDAsync) with the same memory traffic
              (6N bytes read, 6N written), timed the same way, and print the ratio ours/copy
  --blocks B  launch B blocks of 256 threads [default: two per SM, fewer when N is small]

Every run first checks the sizes a vectorized kernel gets wrong (0 to 9, around one block's step,
one that sends every block round its loop more than once), with a, b and c each 16-byte aligned
or not, and that nothing outside c[0..N] is written.

Results go to $CARGO_GPU_OUT/vector_add-<N>.json. Exit status: 0 pass, 1 wrong result, 2 usage,
3 no driver, GPU or cubin, 4 a kernel fault.
";

/// Threads per block.
const BLOCK: u32 = 256;
/// float4s a thread handles in each step of the kernel's main loop: `UNROLL` in
/// kernels/vector_add.cu.
const UNROLL: usize = 4;
/// Blocks per SM the grid is sized to (at most what fits): on an H200, two ran 2% faster at 1 GiB
/// per vector than the eight that fit, enough loads in flight with fewer streams of addresses.
const BLOCKS_PER_SM: u32 = 2;
/// Floats one block handles in one step of the kernel's main loop.
const STEP: usize = BLOCK as usize * UNROLL * 4;

/// Blocks for `n` elements: one per step of work, at most `resident` (the grid for the whole GPU),
/// and at least one, so that `n = 0` launches too.
pub fn blocks_for(n: usize, resident: u32) -> u32 {
    n.div_ceil(STEP).clamp(1, resident.max(1) as usize) as u32
}

/// The edge sizes checked before every run: empty, each remainder mod 4 around the first float4s,
/// around one block's step (float4s left over after the main loop, and the scalar tail), and
/// enough for every block of a `blocks`-block grid to go round the main loop twice and then some.
pub fn edge_sizes(blocks: u32) -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..=9).collect();
    sizes.extend([STEP - 1, STEP, STEP + 1, STEP + 4 * BLOCK as usize + 2, 2 * STEP * blocks as usize + 4 * 77 + 3]);
    sizes
}

/// The most blocks the edge checks size their largest case for, so that a large `--blocks` does not
/// make them slow; any grid is correct, so fewer show the same.
const EDGE_BLOCKS: u32 = 2048;

/// Offsets, in elements, of a, b and c in the edge checks: all aligned, all 4 bytes off, and each
/// one alone off by 4, 8 or 12 bytes, so that the kernel's alignment test must look at all three.
const OFFSETS: [(usize, usize, usize); 5] = [(0, 0, 0), (1, 1, 1), (0, 0, 1), (0, 2, 0), (3, 0, 0)];

/// The kernel and how it is launched on this GPU.
struct VectorAdd {
    f: CudaFunction,
    /// The grid for the whole GPU (SMs times BLOCKS_PER_SM, or fewer where fewer fit), or `--blocks`.
    resident: u32,
    /// `--blocks`, which also holds for small N.
    fixed: bool,
}

impl VectorAdd {
    fn new(gpu: &mut Gpu, blocks: Option<u32>) -> kit::Result<VectorAdd> {
        let f = gpu.function("vector_add", "vector_add")?;
        if let Some(b) = blocks {
            return Ok(VectorAdd { f, resident: b, fixed: true });
        }
        let sms = gpu.sm_count()?;
        let per_sm =
            kit::cu("read the kernel's occupancy", f.occupancy_max_active_blocks_per_multiprocessor(BLOCK, 0, None))?;
        Ok(VectorAdd { f, resident: sms as u32 * per_sm.clamp(1, BLOCKS_PER_SM), fixed: false })
    }

    fn config(&self, n: usize) -> LaunchConfig {
        let blocks = if self.fixed { self.resident } else { blocks_for(n, self.resident) };
        LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
    }

    fn launch(&self, gpu: &Gpu, a: &CudaView<f32>, b: &CudaView<f32>, c: &mut CudaViewMut<f32>) -> kit::Result<()> {
        let n = a.len().min(b.len()).min(c.len()) as u64;
        let mut l = gpu.stream.launch_builder(&self.f);
        l.arg(a).arg(b).arg(c).arg(&n);
        kit::cu("launch vector_add", unsafe { l.launch(self.config(n as usize)) }).map(|_| ())
    }
}

/// Runs the kernel on every edge size and offset and compares with the CPU; a wrong element or
/// a write outside c[0..N] fails the run.
fn check_edges(gpu: &Gpu, kernel: &VectorAdd, rng: &mut Rng) -> kit::Result<()> {
    let sizes = edge_sizes(kernel.resident.min(EDGE_BLOCKS));
    for &n in &sizes {
        let (a, b) = (rng.f32s(n + 3), rng.f32s(n + 3));
        let (da, db) = (gpu.upload(&a)?, gpu.upload(&b)?);
        let mut dc = gpu.poisoned::<f32>(n + 3)?;
        for (oa, ob, oc) in OFFSETS {
            gpu.poison(&mut dc)?;
            kernel.launch(gpu, &da.slice(oa..oa + n), &db.slice(ob..ob + n), &mut dc.slice_mut(oc..oc + n))?;
            gpu.sync()?;
            let got = gpu.download(&dc)?;
            let what = format!(
                "vector_add n={n} with a, b, c at {}, {}, {} bytes past 16-byte alignment",
                oa * 4,
                ob * 4,
                oc * 4
            );
            // Poison is all-ones bits: anything else outside c[oc..oc + n] was written.
            if let Some(i) = (0..n + 3).find(|i| !(oc..oc + n).contains(i) && got[*i].to_bits() != u32::MAX) {
                return Err(Fail::Check(format!("{what}: wrote c[{}], outside c[0..{n}]", i as isize - oc as isize)));
            }
            if n > 0 {
                let want: Vec<f32> = (0..n).map(|i| a[oa + i] + b[ob + i]).collect();
                let c = kit::compare(&got[oc..oc + n], &want, Precision::Fp32);
                if !c.passed() {
                    return Err(Fail::Check(format!("{what}: {}", c.summary())));
                }
            }
        }
    }
    println!(
        "vector_add edge cases: PASS N = {} ({} launches of up to {} blocks): a, b, c aligned or 4 to 12 bytes \
         off, nothing written outside c[0..N]",
        sizes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
        sizes.len() * OFFSETS.len(),
        kernel.resident
    );
    Ok(())
}

pub fn run(mut args: Args) -> kit::Result<()> {
    args.parse(&["seed", "samples", "blocks"], &["no-flush", "no-time", "vs-copy"])?;
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
    let blocks = args.get::<u32>("blocks")?;
    if blocks.is_some_and(|b| b == 0 || b > i32::MAX as u32) {
        return Err(Fail::Usage("--blocks must be between 1 and 2^31 - 1".into()));
    }
    let seed = args.seed()?;
    let time_opts = TimeOptions::from_args(&args)?;
    let mut gpu = Gpu::open()?;
    let kernel = VectorAdd::new(&mut gpu, blocks)?;
    println!("seed {seed}");
    check_edges(&gpu, &kernel, &mut Rng::new(seed))?;
    for n in sizes {
        let mut rng = Rng::new(seed ^ n as u64);
        let (a, b) = (rng.f32s(n), rng.f32s(n));
        let (da, db) = (gpu.upload(&a)?, gpu.upload(&b)?);
        let mut dc = gpu.poisoned::<f32>(n)?;
        let launch = |gpu: &Gpu, dc: &mut CudaSlice<f32>| {
            kernel.launch(gpu, &da.slice(..), &db.slice(..), &mut dc.slice_mut(..))
        };
        launch(&gpu, &mut dc)?;
        gpu.sync()?;
        let got = gpu.download(&dc)?;
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let name = format!("vector_add-{n}");
        let comparison = kit::compare(&got, &want, Precision::Fp32);
        let mut report = Report::new(&name, &gpu);
        report.set("n", n);
        report.set("seed", seed);
        report.set("blocks", kernel.config(n).grid_dim.0 as usize);
        report.set("threads_per_block", BLOCK as usize);
        report.check(&comparison);
        let checked = comparison.check(&format!("vector_add n={n}"));
        if checked.is_ok() && !args.flag("no-time") {
            let work = Work::Bytes(3.0 * 4.0 * n as f64);
            let timing = gpu.time(&time_opts, |gpu| launch(gpu, &mut dc))?;
            kit::print_timing(&format!("vector_add n={n}"), &timing, work);
            report.timing(&timing, work);
            if args.flag("vs-copy") {
                // The same memory traffic as vector_add's 12N bytes: 6N bytes read and 6N written.
                let src = kit::cu("allocate the copy's source", gpu.stream.alloc_zeros::<u8>(6 * n))?;
                let mut dst = kit::cu("allocate the copy's destination", gpu.stream.alloc_zeros::<u8>(6 * n))?;
                let copy = Baseline { name: "copy (cuMemcpyDtoDAsync)", short: "copy", check: None };
                copy.time(&mut gpu, &time_opts, &timing, work, &mut report, |gpu| {
                    kit::cu("copy on the GPU", gpu.stream.memcpy_dtod(&src, &mut dst))
                })?;
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
    fn the_grid_fills_the_gpu_once_and_no_more() {
        assert_eq!(blocks_for(0, 1056), 1, "n = 0 still launches");
        assert_eq!(blocks_for(1, 1056), 1);
        assert_eq!(blocks_for(STEP, 1056), 1);
        assert_eq!(blocks_for(STEP + 1, 1056), 2);
        assert_eq!(blocks_for(1 << 28, 264), 264, "2^28 floats: the whole grid, two blocks on each of 132 SMs");
        assert_eq!(blocks_for(1 << 28, 0), 1);
    }

    #[test]
    fn edge_sizes_cover_every_path_of_the_kernel() {
        let blocks = 1056;
        let sizes = edge_sizes(blocks);
        for r in 0..4 {
            assert!(sizes.iter().any(|n| *n > 0 && n % 4 == r), "a size with remainder {r} mod 4");
        }
        assert!(sizes.contains(&0) && sizes.contains(&STEP));
        let big = *sizes.iter().max().unwrap();
        assert!(big / STEP >= 2 * blocks as usize, "every block goes round the main loop twice");
        assert!(big % STEP >= 4 && big % 4 == 3, "then float4s after the last step, then a scalar tail");
        assert!(OFFSETS.iter().all(|&(a, b, c)| a.max(b).max(c) <= 3), "the buffers have 3 elements to spare");
        for i in 0..3 {
            let alone = OFFSETS.iter().any(|o| {
                let o = [o.0, o.1, o.2];
                o[i] % 4 != 0 && (0..3).filter(|j| *j != i).all(|j| o[j] == 0)
            });
            assert!(alone, "pointer {i} alone is misaligned in some case");
        }
    }
}

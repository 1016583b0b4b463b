// tcgen05_gemm: C = A * B^T in bf16 with fp32 accumulation on the 5th-generation tensor cores of
// datacenter Blackwell (sm_100a: B200, GB200) only.
//
// A is M x K and B is N x K, both row-major (K contiguous, "TN"); C is M x N fp32, row-major.
// Each block computes a 128 x 256 tile of C with six warps, each with one job:
//   - warp 4, the producer: one thread issues TMA loads (cp.async.bulk.tensor) of 128x64 A and
//     256x64 B tiles into a 4-stage ring in shared memory;
//   - warp 5, the MMA warp: it allocates 256 columns of tensor memory (TMEM) for the fp32
//     accumulator, and one thread issues tcgen05.mma (M = 128, N = 256, K = 16, four per stage)
//     straight from the ring; tcgen05.commit hands each stage back to the producer once the MMAs
//     reading it are done, and signals the epilogue after the last one;
//   - warps 0-3, the epilogue: warp w reads TMEM lanes 32w..32w+31 (rows of the tile) with
//     tcgen05.ld and stores them to C.
// Two mbarriers per stage hand the ring over: `full` completes when a stage's TMA bytes have
// landed, `empty` when the MMAs that read it have completed. One more, `done`, completes when
// the accumulator is final.
//
// Why N = 256: per K = 16 step an M = 128 MMA reads 4 KiB of A and N * 32 bytes of B from shared
// memory. With N = 256 that is 12 KiB for 1 MFLOP, 2/3 of the bytes per FLOP of N = 128, which
// keeps the tensor core fed from one block's shared memory; the accumulator still fits in half
// of TMEM (256 of 512 columns). Unlike Hopper's wgmma it takes no registers, so one warp issues
// the MMAs and the epilogue warps hold 32 values at a time.
//
// Not overlapped: the epilogue of one tile with the main loop of the next (shared memory allows
// one block per SM; a persistent kernel with two TMEM accumulators would hide it).
//
// Sizes that are not multiples of the tile work: TMA fills out-of-bounds elements with zeros
// (which add nothing to the dot products) and the stores are guarded. TMA needs row strides that
// are multiples of 16 bytes, so K must be a multiple of 8; the runner checks this.
//
// Built for sm_100a and its SASS read (UTMALDG, UTCHMMA, UTCBAR, LDTM); it has not run on a B200
// yet. tcgen05 exists in sm_100a, sm_100f, sm_103a and sm_103f code; built for any other target,
// the kernel compiles to a stub that traps.

#include <cuda.h>
#include <stdint.h>

// Threads per block; the runner launches this many.
#define TCGEN05_GEMM_THREADS 192

// Device code for the targets that have the instructions; the host pass sees the declarations.
// nvcc defines __CUDA_ARCH_FAMILY_SPECIFIC__ for the `a` and `f` targets (1000 for sm_100a/f).
#if defined(__CUDA_ARCH_FAMILY_SPECIFIC__) && (__CUDA_ARCH_FAMILY_SPECIFIC__ == 1000 || __CUDA_ARCH_FAMILY_SPECIFIC__ == 1030)
#define GEMM_HAS_TCGEN05 1
#endif

#if defined(GEMM_HAS_TCGEN05) || !defined(__CUDA_ARCH__)
namespace {

constexpr int BM = 128;
constexpr int BN = 256;
constexpr int BK = 64;  // 64 bf16 = 128 bytes: one row of the 128-byte swizzle
constexpr int STAGES = 4;
constexpr int EPILOGUE_WARPS = 4;  // one per 32 TMEM lanes
constexpr int PRODUCER_WARP = EPILOGUE_WARPS;
constexpr int MMA_WARP = EPILOGUE_WARPS + 1;
static_assert(TCGEN05_GEMM_THREADS == 32 * (EPILOGUE_WARPS + 2), "epilogue warps, a producer and an MMA warp");
static_assert(EPILOGUE_WARPS * 32 == BM, "one epilogue thread per row of the tile");
constexpr int GROUP_M = 16;  // block rasterization: 16 row tiles share each column tile in L2

constexpr uint32_t A_STAGE = BM * BK * 2;  // 16 KiB
constexpr uint32_t B_STAGE = BN * BK * 2;  // 32 KiB
// TMEM is allocated in columns, a power of two from 32 to 512; the fp32 accumulator of an
// M = 128 MMA takes one column per column of the tile, row i in lane i.
constexpr uint32_t TMEM_COLUMNS = BN;
static_assert(TMEM_COLUMNS >= 32 && TMEM_COLUMNS <= 512 && (TMEM_COLUMNS & (TMEM_COLUMNS - 1)) == 0, "TMEM columns");
// Dynamic shared memory: the ring, the barriers (full and empty per stage, done), the word that
// tcgen05.alloc writes the TMEM address to, and slack to align the ring to 1024 bytes (the
// 128-byte swizzle repeats every 8 rows of 128 bytes). The runner passes exactly this.
constexpr uint32_t SMEM_BYTES = STAGES * (A_STAGE + B_STAGE) + (2 * STAGES + 1) * 8 + 8 + 1024;

// Instruction descriptor of tcgen05.mma .kind::f16: dense, fp32 accumulator (bits 4-5 = 1), bf16
// A and B (bits 7-9 and 10-12 = 1), no negation, both K-major (bits 15 and 16 = 0), N >> 3 at
// bits 17-22, M >> 4 at bits 24-28.
constexpr uint32_t IDESC = (1u << 4) | (1u << 7) | (1u << 10) | (uint32_t(BN >> 3) << 17) | (uint32_t(BM >> 4) << 24);
static_assert(BM == 128 && BN % 16 == 0 && BN >= 16 && BN <= 256, "an M = 128 MMA takes N = 16..256 in steps of 16");

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

// Arrives once and tells the barrier to also wait for `bytes` of TMA data.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}

// Waits until the phase with this parity has completed. On a fresh barrier, parity 1 counts as
// completed: that is what lets the producer fill every stage once before any MMA has run.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done = 0;
    while (!done) {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n"
            "}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    }
}

// One 2D TMA load: the box at (inner, outer) of `map` into shared memory at `dst`, counted on `bar`.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int inner, int outer, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(inner), "r"(outer), "r"(bar)
        : "memory");
}

// A tcgen05 shared-memory descriptor for a K-major tile with the 128-byte swizzle, as TMA writes
// it: rows of 128 bytes, groups of 8 rows 1024 bytes apart. The layout is Hopper's, the encoding
// is not: tcgen05 wants version 1 at bits 46-48 and a 3-bit swizzle mode at bits 61-63, where
// 2 is the 128-byte swizzle.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
    uint64_t d = 0;
    d |= static_cast<uint64_t>((addr & 0x3FFFF) >> 4);  // start address, 16-byte units
    d |= static_cast<uint64_t>(1) << 16;                 // leading byte offset: unused with this swizzle
    d |= static_cast<uint64_t>(1024 >> 4) << 32;         // stride byte offset: 8 rows x 128 bytes
    d |= static_cast<uint64_t>(1) << 46;                 // descriptor version 1 (tcgen05)
    // base offset 0 (the ring is 1024-aligned), relative leading byte offset
    d |= static_cast<uint64_t>(2) << 61;  // swizzle mode: 128 bytes
    return d;
}

// Orders tcgen05 operations around a thread synchronization (a barrier, an mbarrier wait).
__device__ __forceinline__ void tcgen05_fence_before() {
    asm volatile("tcgen05.fence::before_thread_sync;" ::: "memory");
}
__device__ __forceinline__ void tcgen05_fence_after() { asm volatile("tcgen05.fence::after_thread_sync;" ::: "memory"); }

// D (128 x 256 fp32 in TMEM) = A (128 x 16 bf16) * B (256 x 16 bf16)^T, plus D when `accumulate`.
__device__ __forceinline__ void mma_bf16(uint32_t tmem_d, uint64_t desc_a, uint64_t desc_b, uint32_t accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %4, 0;\n"
        "tcgen05.mma.cta_group::1.kind::f16 [%0], %1, %2, %3, p;\n"
        "}\n" ::"r"(tmem_d),
        "l"(desc_a), "l"(desc_b), "r"(IDESC), "r"(accumulate)
        : "memory");
}

// Arrives once on `bar` when every tcgen05.mma this thread issued so far has completed.
__device__ __forceinline__ void mma_commit(uint32_t bar) {
    asm volatile("tcgen05.commit.cta_group::1.mbarrier::arrive::one.shared::cluster.b64 [%0];" ::"r"(bar) : "memory");
}

// 32 consecutive fp32 columns of this warp's 32 TMEM lanes: lane i of the warp gets TMEM lane
// (32 * warp + i), columns [col, col + 32). The whole warp executes it.
__device__ __forceinline__ void tmem_load_32(uint32_t taddr, uint32_t (&r)[32]) {
    asm volatile(
        "tcgen05.ld.sync.aligned.32x32b.x32.b32 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, "
        "%8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31}, "
        "[%32];\n"
        :
          "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), "=r"(r[6]), "=r"(r[7]),
          "=r"(r[8]), "=r"(r[9]), "=r"(r[10]), "=r"(r[11]), "=r"(r[12]), "=r"(r[13]), "=r"(r[14]), "=r"(r[15]),
          "=r"(r[16]), "=r"(r[17]), "=r"(r[18]), "=r"(r[19]), "=r"(r[20]), "=r"(r[21]), "=r"(r[22]), "=r"(r[23]),
          "=r"(r[24]), "=r"(r[25]), "=r"(r[26]), "=r"(r[27]), "=r"(r[28]), "=r"(r[29]), "=r"(r[30]), "=r"(r[31])
        : "r"(taddr)
        : "memory");
    // The registers are undefined until the load has completed.
    asm volatile("tcgen05.wait::ld.sync.aligned;" ::: "memory");
}

}  // namespace
#endif

extern "C" __global__ void __launch_bounds__(TCGEN05_GEMM_THREADS, 1)
    tcgen05_gemm_bf16_tn(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                         float* __restrict__ c, int m, int n, int k) {
#if defined(GEMM_HAS_TCGEN05)
    extern __shared__ uint8_t smem_raw[];
    const uint32_t raw = smem_addr(smem_raw);
    const uint32_t ring = (raw + 1023) & ~1023u;
    const uint32_t ring_a = ring;
    const uint32_t ring_b = ring + STAGES * A_STAGE;
    const uint32_t bars = ring_b + STAGES * B_STAGE;
    auto full = [&](int s) { return bars + 8 * s; };
    auto empty = [&](int s) { return bars + 8 * (STAGES + s); };
    const uint32_t done = bars + 8 * (2 * STAGES);
    const uint32_t tmem_slot = done + 8;

    // Which tile: groups of GROUP_M row tiles walk the column tiles together, so that the blocks
    // running at the same time share their A and B tiles in L2.
    const int tiles_m = (m + BM - 1) / BM;
    const int tiles_n = (n + BN - 1) / BN;
    const int per_group = GROUP_M * tiles_n;
    const int first = (static_cast<int>(blockIdx.x) / per_group) * GROUP_M;
    const int rows_in_group = min(tiles_m - first, GROUP_M);
    const int tile_m = first + (static_cast<int>(blockIdx.x) % per_group) % rows_in_group;
    const int tile_n = (static_cast<int>(blockIdx.x) % per_group) / rows_in_group;
    const int k_tiles = (k + BK - 1) / BK;

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;

    if (threadIdx.x == 0) {
        uint32_t dynamic_smem;
        asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < SMEM_BYTES) {
            __trap();  // launched with too little shared memory for the ring
        }
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full(s), 1);   // the producer's arrive, plus the TMA bytes
            mbar_init(empty(s), 1);  // one tcgen05.commit
        }
        mbar_init(done, 1);  // the last tcgen05.commit
        // Make the initialized barriers visible to the TMA unit and the tensor core (the async proxy).
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    if (warp == MMA_WARP) {
        // The whole warp allocates and writes the TMEM address to shared memory; then it lets
        // other blocks on this SM allocate too.
        asm volatile("tcgen05.alloc.cta_group::1.sync.aligned.shared::cta.b32 [%0], %1;" ::"r"(tmem_slot),
                     "r"(TMEM_COLUMNS)
                     : "memory");
        asm volatile("tcgen05.relinquish_alloc_permit.cta_group::1.sync.aligned;" ::: "memory");
    }
    tcgen05_fence_before();
    __syncthreads();
    tcgen05_fence_after();
    uint32_t tmem;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(tmem) : "r"(tmem_slot) : "memory");

    if (warp == PRODUCER_WARP) {
        if (lane == 0) {
            for (int kt = 0; kt < k_tiles; ++kt) {
                const int s = kt % STAGES;
                const uint32_t phase = (kt / STAGES) & 1;
                mbar_wait(empty(s), phase ^ 1);
                // TMA counts a whole box, zero-filled past the edges, so the bytes are always these.
                mbar_arrive_expect_tx(full(s), A_STAGE + B_STAGE);
                tma_load_2d(ring_a + s * A_STAGE, &map_a, kt * BK, tile_m * BM, full(s));
                tma_load_2d(ring_b + s * B_STAGE, &map_b, kt * BK, tile_n * BN, full(s));
            }
        }
        __syncwarp();
    } else if (warp == MMA_WARP) {
        if (lane == 0) {
            for (int kt = 0; kt < k_tiles; ++kt) {
                const int s = kt % STAGES;
                mbar_wait(full(s), (kt / STAGES) & 1);
                tcgen05_fence_after();
                const uint32_t a = ring_a + s * A_STAGE;
                const uint32_t b = ring_b + s * B_STAGE;
#pragma unroll
                for (int kk = 0; kk < BK / 16; ++kk) {
                    // 16 bf16 = 32 bytes further along K, inside the same swizzled 128-byte rows.
                    // The first MMA overwrites the accumulator: TMEM is not zeroed.
                    mma_bf16(tmem, smem_desc(a + kk * 32), smem_desc(b + kk * 32), (kt > 0 || kk > 0) ? 1 : 0);
                }
                mma_commit(empty(s));  // the stage is free once these MMAs have read it
            }
            if (k_tiles > 0) {
                mma_commit(done);  // the accumulator is final once every MMA has completed
            }
        }
        __syncwarp();
    } else {
        // Epilogue. A warp may only read the 32 TMEM lanes its rank in the warpgroup (warp % 4)
        // selects: warp w < 4 reads lanes 32w..32w+31, rows 32w..32w+31 of the tile.
        if (k_tiles > 0) {
            mbar_wait(done, 0);
        }
        tcgen05_fence_after();
        const int row = tile_m * BM + warp * 32 + lane;
        const uint32_t lane_base = tmem + (static_cast<uint32_t>(warp * 32) << 16);  // lane in bits 16-31
        const bool quads = (n % 4) == 0;  // then every row starts 16-byte aligned
#pragma unroll 1
        for (int col = 0; col < BN; col += 32) {
            const int gcol = tile_n * BN + col;
            if (gcol >= n) {
                break;  // the same for the whole warp, which must stay together for tcgen05.ld
            }
            uint32_t r[32];
            tmem_load_32(lane_base + col, r);
            if (row < m) {
                float* out = c + static_cast<size_t>(row) * n + gcol;
                if (k_tiles == 0) {
#pragma unroll
                    for (int j = 0; j < 32; ++j) {
                        r[j] = 0;  // no MMA ran: the accumulator was never written
                    }
                }
                if (quads && gcol + 32 <= n) {
#pragma unroll
                    for (int j = 0; j < 32; j += 4) {
                        *reinterpret_cast<float4*>(out + j) = make_float4(__uint_as_float(r[j]), __uint_as_float(r[j + 1]),
                                                                          __uint_as_float(r[j + 2]), __uint_as_float(r[j + 3]));
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < 32; ++j) {
                        if (gcol + j < n) {
                            out[j] = __uint_as_float(r[j]);
                        }
                    }
                }
            }
        }
    }

    // Free the tensor memory once every epilogue warp has read it.
    tcgen05_fence_before();
    __syncthreads();
    if (warp == MMA_WARP) {
        tcgen05_fence_after();
        asm volatile("tcgen05.dealloc.cta_group::1.sync.aligned.b32 %0, %1;" ::"r"(tmem), "r"(TMEM_COLUMNS) : "memory");
    }
#elif defined(__CUDA_ARCH__)
    // Built for a target without tcgen05 (a project may build every kernel for several targets).
    // The runner refuses such a GPU before launching.
    __trap();
#endif
}

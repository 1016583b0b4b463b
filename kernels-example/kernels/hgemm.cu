// hgemm: C = A * B^T in bf16 with fp32 accumulation, for Hopper (sm_90a) only.
//
// A is M x K and B is N x K, both row-major (K contiguous, "TN"); C is M x N fp32, row-major.
// Each block computes a 128 x 256 tile of C with three warpgroups:
//   - warpgroup 0, the producer, gives up registers and has one thread issue TMA loads
//     (cp.async.bulk.tensor) of 128x64 A and 256x64 B tiles into a 4-stage ring in shared memory;
//   - warpgroups 1 and 2, the consumers, take registers and each run wgmma m64n256k16 on 64 rows
//     of the tile, accumulating 64 x 256 fp32 values in registers.
// Two mbarriers per stage hand the ring over: `full` completes when a stage's TMA bytes have
// landed, `empty` when every consumer warp has finished reading it.
//
// `hgemm_bf16_tn_multicast` is the same with clusters of two blocks on vertically adjacent tiles:
// they share the 256 x 64 slice of B, so each block loads half of it and TMA multicasts that half
// into both blocks' shared memory, cutting the L2 traffic per block from 48 to 32 KiB a stage.
// Each block's `empty` barrier then waits for the consumers of both blocks.
//
// Sizes that are not multiples of the tile work: TMA fills out-of-bounds elements with zeros
// (which add nothing to the dot products) and the stores are guarded. TMA needs row strides that
// are multiples of 16 bytes, so K must be a multiple of 8; the runner checks this.
//
// Built for any other target than sm_90a, the kernel compiles to a stub that traps.

#include <cuda.h>
#include <stdint.h>

// Threads per block; the runner launches this many.
#define HGEMM_THREADS 384

// Device code for the targets that have the instructions; the host pass sees the declarations.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define HGEMM_HAS_WGMMA 1
#endif

#if defined(HGEMM_HAS_WGMMA) || !defined(__CUDA_ARCH__)
namespace {

constexpr int BM = 128;
constexpr int BN = 256;
constexpr int BK = 64;  // 64 bf16 = 128 bytes: one row of the 128-byte swizzle
constexpr int STAGES = 4;
constexpr int CONSUMERS = 2;
static_assert(HGEMM_THREADS == 128 * (1 + CONSUMERS), "one producer and CONSUMERS consumer warpgroups");
constexpr int GROUP_M = 16;  // block rasterization: 16 row tiles share each column tile in L2

constexpr uint32_t A_STAGE = BM * BK * 2;  // 16 KiB
constexpr uint32_t B_STAGE = BN * BK * 2;  // 32 KiB
// Dynamic shared memory: the ring, the barriers, and slack to align the ring to 1024 bytes (the
// 128-byte swizzle repeats every 8 rows of 128 bytes). The runner passes exactly this.
constexpr uint32_t SMEM_BYTES = STAGES * (A_STAGE + B_STAGE) + 2 * STAGES * 8 + 1024;

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

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}

// Waits until the phase with this parity has completed. On a fresh barrier, parity 1 counts as
// completed: that is what lets the producer fill every stage once before any consumer arrives.
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

// The same load, written at the same shared-memory offset in every block of the cluster named in
// `cta_mask`, and counted on the barrier at the same offset in each of them.
__device__ __forceinline__ void tma_load_2d_multicast(uint32_t dst, const CUtensorMap* map, int inner, int outer,
                                                      uint32_t bar, uint16_t cta_mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(inner), "r"(outer), "r"(bar), "h"(cta_mask)
        : "memory");
}

// Arrives on the barrier at shared address `bar` of cluster block `cta` (this one or its peer).
__device__ __forceinline__ void mbar_arrive_cluster(uint32_t bar, uint32_t cta) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(bar), "r"(cta));
    asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" ::"r"(remote) : "memory");
}

// Like mbar_wait, and also sees the arrivals (and the reads before them) of the other block.
__device__ __forceinline__ void mbar_wait_cluster(uint32_t bar, uint32_t parity) {
    uint32_t done = 0;
    while (!done) {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n"
            "}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    }
}

__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

// A wgmma shared-memory descriptor for a K-major tile with the 128-byte swizzle, as TMA writes
// it: rows of 128 bytes, groups of 8 rows 1024 bytes apart.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
    uint64_t d = 0;
    d |= static_cast<uint64_t>((addr & 0x3FFFF) >> 4);  // start address, 16-byte units
    d |= static_cast<uint64_t>(1) << 16;                 // leading byte offset: unused with this swizzle
    d |= static_cast<uint64_t>(1024 >> 4) << 32;         // stride byte offset: 8 rows x 128 bytes
    d |= static_cast<uint64_t>(1) << 62;                 // swizzle mode: 128 bytes
    return d;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

// Keeps the compiler from moving reads or writes of the accumulators across a wgmma boundary.
__device__ __forceinline__ void fence_accumulators(float (&d)[128]) {
#pragma unroll
    for (int i = 0; i < 128; ++i) {
        asm volatile("" : "+f"(d[i])::"memory");
    }
}

// d (64 x 256 fp32 across the warpgroup) += A (64 x 16 bf16) * B (256 x 16 bf16)^T; both operands
// K-major (no transpose), scale 1. The accumulators start at zero, so every call accumulates.
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t desc_a, uint64_t desc_b) {
    asm volatile(
        "{\n"
        ".reg .pred accumulate;\n"
        "setp.ne.b32 accumulate, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, "
        "%8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, "
        "%40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, "
        "%56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, "
        "%72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, "
        "%88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, "
        "%104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, "
        "%120, %121, %122, %123, %124, %125, %126, %127}, "
        "%128, %129, accumulate, 1, 1, 0, 0;\n"
        "}\n"
        :
          "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
          "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
          "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
          "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(desc_a), "l"(desc_b), "n"(1));
}

// The whole kernel, for one tile of C; MULTICAST selects the two-block cluster variant.
template <bool MULTICAST>
__device__ __forceinline__ void gemm_tile(const CUtensorMap* map_a, const CUtensorMap* map_b, float* __restrict__ c,
                                          int m, int n, int k) {
    extern __shared__ uint8_t smem_raw[];
    const uint32_t raw = smem_addr(smem_raw);
    const uint32_t ring = (raw + 1023) & ~1023u;
    const uint32_t ring_a = ring;
    const uint32_t ring_b = ring + STAGES * A_STAGE;
    const uint32_t bars = ring_b + STAGES * B_STAGE;
    auto full = [&](int s) { return bars + 8 * s; };
    auto empty = [&](int s) { return bars + 8 * (STAGES + s); };

    // Which tile: groups of GROUP_M row tiles walk the column tiles together, so that the blocks
    // running at the same time share their A and B tiles in L2. With multicast the unit is a pair
    // of row tiles (one cluster); a pair past the last row tile still loads its half of B.
    const int tiles_m = (m + BM - 1) / BM;
    const int tiles_n = (n + BN - 1) / BN;
    const int span = MULTICAST ? 2 : 1;
    const int units_m = (tiles_m + span - 1) / span;
    const int group = GROUP_M / span;
    const int per_group = group * tiles_n;
    const int id = blockIdx.x / span;
    const int first = (id / per_group) * group;
    const int units_in_group = min(units_m - first, group);
    const uint32_t rank = MULTICAST ? cluster_rank() : 0;
    const int tile_m = (first + (id % per_group) % units_in_group) * span + static_cast<int>(rank);
    const int tile_n = (id % per_group) / units_in_group;
    const int k_tiles = (k + BK - 1) / BK;

    const int warpgroup = threadIdx.x / 128;
    const int t = threadIdx.x % 128;

    if (threadIdx.x == 0) {
        uint32_t dynamic_smem;
        asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < SMEM_BYTES) {
            __trap();  // launched with too little shared memory for the ring
        }
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full(s), 1);
            mbar_init(empty(s), span * CONSUMERS * 4);  // one arrival per consumer warp (of both blocks)
        }
        // Make the initialized barriers visible to the TMA unit (the async proxy) and the cluster.
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    if (MULTICAST) {
        cluster_sync();  // no block may touch its peer's barriers before they are initialized
    } else {
        __syncthreads();
    }

    if (warpgroup == 0) {
        // Producer: it needs few registers; give them to the consumers.
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;" ::: "memory");
        if (t == 0) {
            for (int kt = 0; kt < k_tiles; ++kt) {
                const int s = kt % STAGES;
                const uint32_t phase = (kt / STAGES) & 1;
                // Both A and the whole B slice land here (half of B from the peer when multicast).
                if (MULTICAST) {
                    mbar_wait_cluster(empty(s), phase ^ 1);
                } else {
                    mbar_wait(empty(s), phase ^ 1);
                }
                // The second block of the last pair may lie past the last row tile: it loads no A
                // (nothing of its C is stored) but still shares its half of B.
                const bool has_a = tile_m < tiles_m;
                mbar_arrive_expect_tx(full(s), (has_a ? A_STAGE : 0) + B_STAGE);
                if (has_a) {
                    tma_load_2d(ring_a + s * A_STAGE, map_a, kt * BK, tile_m * BM, full(s));
                }
                if (MULTICAST) {
                    const uint32_t half = rank * (B_STAGE / 2);
                    tma_load_2d_multicast(ring_b + s * B_STAGE + half, map_b, kt * BK, tile_n * BN + rank * (BN / 2), full(s),
                                          0x3);
                } else {
                    tma_load_2d(ring_b + s * B_STAGE, map_b, kt * BK, tile_n * BN, full(s));
                }
            }
        }
        __syncwarp();
        if (MULTICAST) {
            cluster_sync();  // stay until the peer is done with this block's barriers
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;" ::: "memory");
    const int consumer = warpgroup - 1;
    float d[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) {
        d[i] = 0.0f;
    }

    for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % STAGES;
        mbar_wait(full(s), (kt / STAGES) & 1);
        const uint32_t a = ring_a + s * A_STAGE + consumer * 64 * (BK * 2);  // this consumer's 64 rows
        const uint32_t b = ring_b + s * B_STAGE;
        fence_accumulators(d);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            // 16 bf16 = 32 bytes further along K, inside the same swizzled 128-byte rows.
            wgmma_m64n256k16(d, smem_desc(a + kk * 32), smem_desc(b + kk * 32));
        }
        wgmma_commit();
        wgmma_wait_all();
        fence_accumulators(d);
        if (t % 32 == 0) {
            if (MULTICAST) {
                mbar_arrive_cluster(empty(s), 0);
                mbar_arrive_cluster(empty(s), 1);
            } else {
                mbar_arrive(empty(s));
            }
        }
    }

    // Accumulator layout of m64nNk16: thread t holds, for each 8-column block j, rows
    // 16*(t/32) + (t%32)/4 and that + 8, columns 8*j + 2*(t%4) and the next one.
    const int warp = t / 32;
    const int lane = t % 32;
    const int row0 = tile_m * BM + consumer * 64 + warp * 16 + lane / 4;
    const int col0 = tile_n * BN + 2 * (lane % 4);
    const bool pairs = (n % 2) == 0;  // then every (row, even col) pair is 8-byte aligned
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const int col = col0 + 8 * j;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = row0 + 8 * h;
            if (row < m && col < n) {
                float* out = c + static_cast<size_t>(row) * n + col;
                const float v0 = d[4 * j + 2 * h];
                const float v1 = d[4 * j + 2 * h + 1];
                if (pairs && col + 1 < n) {
                    *reinterpret_cast<float2*>(out) = make_float2(v0, v1);
                } else {
                    out[0] = v0;
                    if (col + 1 < n) {
                        out[1] = v1;
                    }
                }
            }
        }
    }
    if (MULTICAST) {
        cluster_sync();  // the peer may still arrive on this block's barriers until here
    }
}

}  // namespace
#endif

extern "C" __global__ void __launch_bounds__(HGEMM_THREADS, 1)
    hgemm_bf16_tn(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                  float* __restrict__ c, int m, int n, int k) {
#if defined(HGEMM_HAS_WGMMA)
    gemm_tile<false>(&map_a, &map_b, c, m, n, k);
#elif defined(__CUDA_ARCH__)
    // Built for a target other than sm_90a, where wgmma and setmaxnreg do not exist (a project may
    // build every kernel for several targets). The runner refuses such a GPU before launching.
    __trap();
#endif
}

// Launched with a grid of 2 * ceil(tiles_m / 2) * tiles_n blocks; map_b loads 128 x 64 boxes.
extern "C" __global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(HGEMM_THREADS, 1)
    hgemm_bf16_tn_multicast(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                            float* __restrict__ c, int m, int n, int k) {
#if defined(HGEMM_HAS_WGMMA)
    gemm_tile<true>(&map_a, &map_b, c, m, n, k);
#elif defined(__CUDA_ARCH__)
    __trap();
#endif
}

// tcgen05_gemm: C = A * B^T in bf16 with fp32 accumulation on the 5th-generation tensor cores of
// datacenter Blackwell (sm_100a: B200, GB200) only.
//
// A is M x K and B is N x K, both row-major (K contiguous); C is M x N fp32, row-major.
// Deliberately simple, one 128 x 128 tile of C per block of 128 threads, nothing overlapped:
//   1. warp 0 allocates 128 columns of tensor memory (TMEM) for the fp32 accumulator
//      (row i of the tile in TMEM lane i, column j in TMEM column j);
//   2. for each 64-wide slice of K, all threads copy the A and B tiles into shared memory in the
//      tensor cores' canonical K-major layout (8 x 16-byte core matrices, no swizzle), zero-filling
//      past the edges; one thread issues four tcgen05.mma (K = 16 each) and tcgen05.commit, which
//      arrives on an mbarrier when the MMAs are done with shared memory;
//   3. each warp reads its 32 TMEM lanes back with tcgen05.ld and stores them, guarded;
//   4. warp 0 frees the tensor memory.
// Built and inspected here (its SASS holds UTCHMMA); it has not run on a B200.
//
// tcgen05 exists in sm_100a, sm_100f, sm_103a and sm_103f code; built for any other target, the
// kernel compiles to a stub that traps.

#include <stdint.h>

// Threads per block; the runner launches this many.
#define TCGEN05_GEMM_THREADS 128

// Device code for the targets that have the instructions; the host pass sees the declarations.
#if defined(__CUDA_ARCH_FAMILY_SPECIFIC__) && (__CUDA_ARCH_FAMILY_SPECIFIC__ == 1000 || __CUDA_ARCH_FAMILY_SPECIFIC__ == 1030)
#define GEMM_HAS_TCGEN05 1
#endif

#if defined(GEMM_HAS_TCGEN05) || !defined(__CUDA_ARCH__)
namespace {

constexpr int BM = 128;
constexpr int BN = 128;
constexpr int BK = 64;
constexpr int THREADS = TCGEN05_GEMM_THREADS;
constexpr uint32_t TMEM_COLUMNS = BN;  // fp32 accumulator: one column per column of the tile

// Instruction descriptor of tcgen05.mma .kind::f16: fp32 accumulator (bits 4-5 = 1), bf16 A and
// B (bits 7-9 and 10-12 = 1), both K-major (bits 15 and 16 = 0), N >> 3 at bits 17-22, M >> 4 at
// bits 24-28.
constexpr uint32_t IDESC = (1u << 4) | (1u << 7) | (1u << 10) | (uint32_t(BN >> 3) << 17) | (uint32_t(BM >> 4) << 24);

// Canonical K-major layout without swizzle: core matrices of 8 rows x 16 bytes (8 bf16), stored
// as 128 contiguous bytes; the BK / 8 core matrices of a row group follow each other along K
// (leading byte offset 128), and row groups are BK / 8 * 128 bytes apart (stride byte offset).
constexpr uint32_t CORE_BYTES = 128;
constexpr uint32_t LBO = CORE_BYTES;
constexpr uint32_t SBO = (BK / 8) * CORE_BYTES;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Byte offset of element (row, kk) of a tile in the canonical layout.
__device__ __forceinline__ uint32_t canonical_offset(int row, int kk) {
    return (row / 8) * SBO + (kk / 8) * LBO + (row % 8) * 16 + (kk % 8) * 2;
}

// Shared-memory matrix descriptor of tcgen05 (no swizzle).
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
    uint64_t d = 0;
    d |= static_cast<uint64_t>((addr & 0x3FFFF) >> 4);  // start address, 16-byte units
    d |= static_cast<uint64_t>(LBO >> 4) << 16;          // leading (K) byte offset
    d |= static_cast<uint64_t>(SBO >> 4) << 32;          // stride (M/N) byte offset
    d |= static_cast<uint64_t>(1) << 46;                 // descriptor version 1 (tcgen05)
    // base offset 0, absolute LBO mode off, swizzle (bits 61-63) none
    return d;
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

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

// Copies the rows [row0, row0 + 128) x [k0, k0 + BK) of a row-major rows x k bf16 matrix into a
// canonical-layout tile, with zeros outside the matrix.
__device__ __forceinline__ void load_tile(uint8_t* tile, const uint16_t* __restrict__ g, int rows, int k, int row0, int k0) {
    const bool vector_ok = (k % 8) == 0;  // then 8-element chunks are 16-byte aligned
    for (int chunk = threadIdx.x; chunk < 128 * (BK / 8); chunk += THREADS) {
        const int r = chunk / (BK / 8);
        const int kk = (chunk % (BK / 8)) * 8;
        const int gr = row0 + r;
        const int gk = k0 + kk;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (gr < rows) {
            const uint16_t* src = g + static_cast<size_t>(gr) * k + gk;
            if (vector_ok && gk + 8 <= k) {
                v = *reinterpret_cast<const uint4*>(src);
            } else {
                uint16_t e[8];
#pragma unroll
                for (int i = 0; i < 8; ++i) {
                    e[i] = (gk + i < k) ? src[i] : 0;
                }
                v = make_uint4(e[0] | (uint32_t(e[1]) << 16), e[2] | (uint32_t(e[3]) << 16), e[4] | (uint32_t(e[5]) << 16),
                               e[6] | (uint32_t(e[7]) << 16));
            }
        }
        *reinterpret_cast<uint4*>(tile + canonical_offset(r, kk)) = v;
    }
}

// 32 consecutive fp32 columns of this warp's 32 TMEM lanes: lane i of the warp gets TMEM lane
// (32 * warp + i), columns [col, col + 32).
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
    asm volatile("tcgen05.wait::ld.sync.aligned;" ::: "memory");
}

}  // namespace
#endif

extern "C" __global__ void __launch_bounds__(TCGEN05_GEMM_THREADS, 1)
    tcgen05_gemm_bf16_tn(const uint16_t* __restrict__ a, const uint16_t* __restrict__ b, float* __restrict__ c, int m,
                         int n, int k) {
#if defined(GEMM_HAS_TCGEN05)
    __shared__ alignas(1024) uint8_t tile_a[BM * BK * 2];
    __shared__ alignas(1024) uint8_t tile_b[BN * BK * 2];
    __shared__ alignas(8) uint64_t mma_done;
    __shared__ uint32_t tmem_slot;

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int row0 = blockIdx.y * BM;
    const int col0 = blockIdx.x * BN;
    const uint32_t bar = smem_addr(&mma_done);

    if (warp == 0) {
        // The allocating warp writes the TMEM address to shared memory; then it lets other blocks
        // on this SM allocate too.
        asm volatile("tcgen05.alloc.cta_group::1.sync.aligned.shared::cta.b32 [%0], %1;" ::"r"(smem_addr(&tmem_slot)),
                     "r"(TMEM_COLUMNS)
                     : "memory");
        asm volatile("tcgen05.relinquish_alloc_permit.cta_group::1.sync.aligned;" ::: "memory");
    }
    if (threadIdx.x == 0) {
        mbar_init(bar, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    asm volatile("tcgen05.fence::before_thread_sync;" ::: "memory");
    __syncthreads();
    asm volatile("tcgen05.fence::after_thread_sync;" ::: "memory");
    const uint32_t tmem = tmem_slot;

    const int k_tiles = (k + BK - 1) / BK;
    for (int kt = 0; kt < k_tiles; ++kt) {
        load_tile(tile_a, a, m, k, row0, kt * BK);
        load_tile(tile_b, b, n, k, col0, kt * BK);
        // The tensor cores read shared memory through the async proxy: publish the stores to it.
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        __syncthreads();
        if (threadIdx.x == 0) {
            asm volatile("tcgen05.fence::after_thread_sync;" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < BK / 16; ++kk) {
                // K = 16 is two core matrices along K.
                const uint64_t da = smem_desc(smem_addr(tile_a) + kk * 2 * LBO);
                const uint64_t db = smem_desc(smem_addr(tile_b) + kk * 2 * LBO);
                const uint32_t accumulate = (kt > 0 || kk > 0) ? 1 : 0;
                asm volatile(
                    "{\n"
                    ".reg .pred p;\n"
                    "setp.ne.b32 p, %4, 0;\n"
                    "tcgen05.mma.cta_group::1.kind::f16 [%0], %1, %2, %3, p;\n"
                    "}\n" ::"r"(tmem),
                    "l"(da), "l"(db), "r"(IDESC), "r"(accumulate)
                    : "memory");
            }
            // Arrives on the barrier once the MMAs above have completed.
            asm volatile("tcgen05.commit.cta_group::1.mbarrier::arrive::one.shared::cluster.b64 [%0];" ::"r"(bar)
                         : "memory");
        }
        // Shared memory may be overwritten, and TMEM read, only after the MMAs are done.
        mbar_wait(bar, kt & 1);
        asm volatile("tcgen05.fence::after_thread_sync;" ::: "memory");
    }

    const int row = row0 + warp * 32 + lane;
#pragma unroll 1
    for (int col = 0; col < BN; col += 32) {
        uint32_t r[32];
        tmem_load_32(tmem + (static_cast<uint32_t>(warp * 32) << 16) + col, r);
        if (row < m) {
            float* out = c + static_cast<size_t>(row) * n + col0 + col;
#pragma unroll
            for (int j = 0; j < 32; ++j) {
                if (col0 + col + j < n) {
                    out[j] = k_tiles > 0 ? __uint_as_float(r[j]) : 0.0f;
                }
            }
        }
    }

    asm volatile("tcgen05.fence::before_thread_sync;" ::: "memory");
    __syncthreads();
    if (warp == 0) {
        asm volatile("tcgen05.fence::after_thread_sync;" ::: "memory");
        asm volatile("tcgen05.dealloc.cta_group::1.sync.aligned.b32 %0, %1;" ::"r"(tmem), "r"(TMEM_COLUMNS) : "memory");
    }
#elif defined(__CUDA_ARCH__)
    // Built for a target without tcgen05 (a project may build every kernel for several targets).
    // The runner refuses such a GPU before launching.
    __trap();
#endif
}

// hgemm: C = A * B^T in bf16 with fp32 accumulation, for Hopper (sm_90a) only.
//
// A is M x K and B is N x K, both row-major (K contiguous, "TN"); C is M x N, row-major, fp32
// (`hgemm_bf16_tn_*`) or bf16 (`hgemm_bf16_tn_bf16c_*`). C is cut into tiles of 128 rows by BN
// columns (256, 240, 192 or 128: the runner picks the width whose last wave wastes the least),
// and the grid is persistent: one block per SM, each walking its share of the tiles in an order
// that keeps the blocks running at the same time on neighbouring tiles (they share their A and B
// slices in L2). Each block has three warpgroups:
//   - warpgroup 0, the producer, gives up registers and has one thread issue TMA loads
//     (cp.async.bulk.tensor) of 128x64 A and BNx64 B tiles into a 4-stage ring in shared memory,
//     running ahead into the block's next tile while the consumers store the last one;
//   - warpgroups 1 and 2, the consumers, take registers and each run wgmma m64nBNk16 on 64 rows
//     of the tile, accumulating 64 x BN fp32 values in registers, one k-step's wgmmas always in
//     flight while the previous step's stage is handed back.
// Two mbarriers per stage hand the ring over: `full` completes when a stage's TMA bytes have
// landed, `empty` when every consumer warpgroup has finished reading it.
//
// The `_pair_` entries run in clusters of two blocks on vertically adjacent tiles, which need the
// same slice of B: each block loads half of it and TMA multicasts that half into both, so each
// block reads a third less from L2 per k-step (A 128 rows, B BN/2, instead of 128 + BN). A
// stage is then free only when the consumers of both blocks are done with it. On an H200 this is
// what keeps K = 1000 fast, whose 2000-byte rows are not 128-byte aligned and cost more L2
// traffic per load.
//
// The epilogue goes through shared memory: each consumer writes 64-row x 128-byte slices of its
// result (32 fp32 or 64 bf16 columns) into one of two staging buffers, in the 128-byte swizzle
// that TMA reads without bank conflicts, and one thread stores the slice with a TMA bulk store
// while the warpgroup writes the next one (columns past the last whole slice, as with 240, are
// stored from registers). TMA stores need C's row stride to be a multiple of 16 bytes (N a
// multiple of 4 for fp32, of 8 for bf16); for other N the runner passes `tma_store = 0` and the
// consumers store straight from registers, guarded.
//
// Sizes that are not multiples of the tile work: TMA loads fill out-of-bounds elements with zeros
// (which add nothing to the dot products) and TMA stores drop them. TMA needs row strides that
// are multiples of 16 bytes, so K must be a multiple of 8; the runner checks this.
//
// Built for any other target than sm_90a, the kernel compiles to a stub that traps.

#include <cuda.h>
#include <cuda_bf16.h>
#include <stdint.h>

// Threads per block; the runner launches this many, one block per SM (or per tile, when fewer).
#define HGEMM_THREADS 384

// Device code for the targets that have the instructions; the host pass sees the declarations.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define HGEMM_HAS_WGMMA 1
#endif

#if defined(HGEMM_HAS_WGMMA) || !defined(__CUDA_ARCH__)
namespace {

constexpr int BM = 128;
constexpr int BK = 64;  // 64 bf16 = 128 bytes: one row of the 128-byte swizzle
constexpr int STAGES = 4;
constexpr int CONSUMERS = 2;
static_assert(HGEMM_THREADS == 128 * (1 + CONSUMERS), "one producer and CONSUMERS consumer warpgroups");
constexpr int GROUP_M = 16;  // tile order: 16 row tiles walk the column tiles together

constexpr uint32_t A_STAGE = BM * BK * 2;  // 16 KiB
// A stage of B for tiles BN columns wide: 32 KiB for 256.
template <int BN>
__host__ __device__ constexpr uint32_t b_stage() {
    return BN * BK * 2;
}
// One epilogue slice: the consumer's 64 rows by 128 bytes of columns; each consumer has SLOTS
// of them, so that it writes one while TMA stores the other.
constexpr uint32_t SLICE_BYTES = 64 * 128;  // 8 KiB
constexpr int SLOTS = 2;
// Dynamic shared memory: the ring, two staging slices per consumer, the barriers, and slack to
// align the ring to 1024 bytes (the 128-byte swizzle repeats every 8 rows of 128 bytes). The
// runner passes exactly this (225 KiB of the 227 a block may have, for 256-column tiles).
template <int BN>
__host__ __device__ constexpr uint32_t smem_bytes() {
    return STAGES * (A_STAGE + b_stage<BN>()) + CONSUMERS * SLOTS * SLICE_BYTES + 2 * STAGES * 8 + 1024;
}

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

// The same load, written at the same shared-memory offset in both blocks of the cluster and
// counted on the barrier at the same offset in each.
__device__ __forceinline__ void tma_load_2d_multicast(uint32_t dst, const CUtensorMap* map, int inner, int outer,
                                                      uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(inner), "r"(outer), "r"(bar), "h"(static_cast<uint16_t>(0x3))
        : "memory");
}

// Arrives on the barrier at the same shared-memory offset as `bar` in the cluster's block `cta`.
__device__ __forceinline__ void mbar_arrive_in(uint32_t bar, uint32_t cta) {
    asm volatile(
        "{\n"
        ".reg .b32 remote;\n"
        "mapa.shared::cluster.u32 remote, %0, %1;\n"
        "mbarrier.arrive.shared::cluster.b64 _, [remote];\n"
        "}\n" ::"r"(bar),
        "r"(cta)
        : "memory");
}

// Every thread of both blocks of the cluster meets here.
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;" ::: "memory");
}

__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

// One 2D TMA store: shared memory at `src` into the box at (inner, outer) of `map`; elements
// outside the matrix are not written. Completion is tracked per thread in bulk groups.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, uint32_t src, int inner, int outer) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];" ::"l"(
                     reinterpret_cast<uint64_t>(map)),
                 "r"(inner), "r"(outer), "r"(src)
                 : "memory");
}

__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }

// Waits until at most N of this thread's bulk stores still read their shared memory.
template <int N>
__device__ __forceinline__ void bulk_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory");
}

// Waits until this thread's bulk stores are complete (written to global memory).
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;" ::: "memory"); }

// Makes this thread's shared-memory writes visible to TMA (the async proxy).
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// A barrier for the 128 threads of one consumer warpgroup (ids 1 and 2; 0 is __syncthreads).
__device__ __forceinline__ void warpgroup_sync(int consumer) {
    asm volatile("bar.sync %0, 128;" ::"r"(1 + consumer) : "memory");
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
// Waits until at most N committed groups of this warpgroup are still running.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// Keeps the compiler from moving reads or writes of the accumulators across a wgmma boundary.
template <int R>
__device__ __forceinline__ void fence_accumulators(float (&d)[R]) {
#pragma unroll
    for (int i = 0; i < R; ++i) {
        asm volatile("" : "+f"(d[i])::"memory");
    }
}

// d (64 x N fp32 across the warpgroup, N/2 values per thread) += A (64 x 16 bf16) * B (N x 16
// bf16)^T, for N = 256, 240, 192 and 128 (the accumulator array's length picks the instruction);
// both operands K-major (no transpose), scale 1. The accumulators start at zero, so every call
// accumulates. The operands are spelled out: inline asm takes no arrays.
__device__ __forceinline__ void wgmma(float (&d)[128], uint64_t desc_a, uint64_t desc_b) {
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
        "%120, %121, %122, %123, %124, %125, %126, %127 "
        "}, "
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

__device__ __forceinline__ void wgmma(float (&d)[120], uint64_t desc_a, uint64_t desc_b) {
    asm volatile(
        "{\n"
        ".reg .pred accumulate;\n"
        "setp.ne.b32 accumulate, %122, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n240k16.f32.bf16.bf16 "
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
        "%112, %113, %114, %115, %116, %117, %118, %119 "
        "}, "
        "%120, %121, accumulate, 1, 1, 0, 0;\n"
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
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119])
        : "l"(desc_a), "l"(desc_b), "n"(1));
}

__device__ __forceinline__ void wgmma(float (&d)[96], uint64_t desc_a, uint64_t desc_b) {
    asm volatile(
        "{\n"
        ".reg .pred accumulate;\n"
        "setp.ne.b32 accumulate, %98, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n192k16.f32.bf16.bf16 "
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
        "%88, %89, %90, %91, %92, %93, %94, %95 "
        "}, "
        "%96, %97, accumulate, 1, 1, 0, 0;\n"
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
          "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
        : "l"(desc_a), "l"(desc_b), "n"(1));
}

__device__ __forceinline__ void wgmma(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
    asm volatile(
        "{\n"
        ".reg .pred accumulate;\n"
        "setp.ne.b32 accumulate, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, "
        "%8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, "
        "%40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, "
        "%56, %57, %58, %59, %60, %61, %62, %63 "
        "}, "
        "%64, %65, accumulate, 1, 1, 0, 0;\n"
        "}\n"
        :
          "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b), "n"(1));
}

// The unit `tile` of the M x N units in the launch order: groups of `group` row units walk the
// column units together, so that the blocks running at the same time share A and B in L2.
__device__ __forceinline__ void tile_coords(int tile, int tiles_m, int tiles_n, int group, int& tile_m, int& tile_n) {
    const int per_group = group * tiles_n;
    const int first = (tile / per_group) * group;
    const int rows = min(tiles_m - first, group);
    tile_m = first + (tile % per_group) % rows;
    tile_n = (tile % per_group) / rows;
}

// Two consecutive columns of C as stored: fp32 as they are, bf16 rounded to nearest.
__device__ __forceinline__ float2 as_pair(float v0, float v1, float) { return make_float2(v0, v1); }
__device__ __forceinline__ __nv_bfloat162 as_pair(float v0, float v1, __nv_bfloat16) {
    return __floats2bfloat162_rn(v0, v1);
}

// Stores this consumer's 64 x BN piece of the tile through the staging slices and TMA: the whole
// slices (all of BN but for 240).
// Accumulator layout of m64nNk16: thread t holds, for each 8-column block j, rows
// 16*(t/32) + (t%32)/4 and that + 8, columns 8*j + 2*(t%4) and the next one.
template <int BN, typename T>
__device__ __forceinline__ void store_tile_tma(const float (&d)[BN / 2], const CUtensorMap* map_c, uint32_t staging,
                                               uint32_t& slices, int consumer, int t, int row0, int col0) {
    constexpr int SLICE_COLS = 128 / sizeof(T);  // 32 fp32 or 64 bf16 columns
    constexpr int BLOCKS = SLICE_COLS / 8;       // 8-column accumulator blocks per slice
    const int warp = t / 32;
    const int lane = t % 32;
#pragma unroll
    for (int q = 0; q < BN / SLICE_COLS; ++q) {
        const uint32_t slice = staging + (slices % SLOTS) * SLICE_BYTES;
        // The store issued two slices ago read this buffer; it must be done before it is rewritten.
        if (t == 0) {
            bulk_wait_read<SLOTS - 1>();
        }
        warpgroup_sync(consumer);
#pragma unroll
        for (int jj = 0; jj < BLOCKS; ++jj) {
            const int j = q * BLOCKS + jj;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = warp * 16 + lane / 4 + 8 * h;
                const uint32_t byte = (8 * jj + 2 * (lane % 4)) * sizeof(T);
                // 128-byte swizzle: the 16-byte chunk index is XORed with the row's index mod 8.
                const uint32_t at = slice + row * 128 + ((((byte / 16) ^ (row % 8)) * 16) | (byte % 16));
                const auto pair = as_pair(d[4 * j + 2 * h], d[4 * j + 2 * h + 1], T());
                if constexpr (sizeof(T) == 4) {
                    asm volatile("st.shared.v2.f32 [%0], {%1, %2};" ::"r"(at), "f"(pair.x), "f"(pair.y) : "memory");
                } else {
                    asm volatile("st.shared.b32 [%0], %1;" ::"r"(at), "r"(*reinterpret_cast<const uint32_t*>(&pair))
                                 : "memory");
                }
            }
        }
        fence_async_shared();
        warpgroup_sync(consumer);
        if (t == 0) {
            tma_store_2d(map_c, slice, col0 + q * SLICE_COLS, row0);
            bulk_commit();
        }
        ++slices;
    }
}

// Stores this consumer's piece straight from registers, guarded: for any N. From the 8-column
// block J0 on: the columns before it went through TMA.
template <int BN, typename T, int J0>
__device__ __forceinline__ void store_tile_direct(const float (&d)[BN / 2], T* __restrict__ c, int m, int n, int t,
                                                  int row_base, int col_base) {
    const int warp = t / 32;
    const int lane = t % 32;
    const int row0 = row_base + warp * 16 + lane / 4;
    const int col0 = col_base + 2 * (lane % 4);
    const bool pairs = (n % 2) == 0;  // then every (row, even col) pair is aligned for one store
#pragma unroll
    for (int j = J0; j < BN / 8; ++j) {
        const int col = col0 + 8 * j;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = row0 + 8 * h;
            if (row < m && col < n) {
                T* out = c + static_cast<size_t>(row) * n + col;
                using Pair = decltype(as_pair(0.0f, 0.0f, T()));
                const Pair pair = as_pair(d[4 * j + 2 * h], d[4 * j + 2 * h + 1], T());
                if (pairs && col + 1 < n) {
                    *reinterpret_cast<Pair*>(out) = pair;
                } else {
                    out[0] = pair.x;
                    if (col + 1 < n) {
                        out[1] = pair.y;
                    }
                }
            }
        }
    }
}

// The whole kernel: every BM x BN tile of C this block owns. With CLUSTER = 2 the blocks work in
// clusters of two on vertically adjacent tiles (a pair): both need the same BN x 64 slice of B
// per k-step, so each loads half of it and TMA multicasts that half into both blocks.
template <int BN, typename T, int CLUSTER>
__device__ __forceinline__ void gemm_persistent(const CUtensorMap* map_a, const CUtensorMap* map_b,
                                                const CUtensorMap* map_c, T* __restrict__ c, int m, int n, int k,
                                                int tma_store) {
    static_assert(CLUSTER == 1 || CLUSTER == 2, "blocks work alone or in pairs");
    extern __shared__ uint8_t smem_raw[];
    const uint32_t raw = smem_addr(smem_raw);
    const uint32_t ring = (raw + 1023) & ~1023u;
    const uint32_t ring_a = ring;
    const uint32_t ring_b = ring + STAGES * A_STAGE;
    constexpr uint32_t B_STAGE = b_stage<BN>();
    const uint32_t staging = ring_b + STAGES * B_STAGE;
    const uint32_t bars = staging + CONSUMERS * SLOTS * SLICE_BYTES;
    auto full = [&](int s) { return bars + 8 * s; };
    auto empty = [&](int s) { return bars + 8 * (STAGES + s); };

    // The unit of work is a column of CLUSTER row tiles: one tile, or a pair (the second tile of
    // the last pair may lie past the last row tile; its block still loads its half of B).
    const int tiles_m = (m + BM - 1) / BM;
    const int tiles_n = (n + BN - 1) / BN;
    const int units_m = (tiles_m + CLUSTER - 1) / CLUSTER;
    const int units = units_m * tiles_n;
    const int k_tiles = (k + BK - 1) / BK;
    const uint32_t rank = CLUSTER == 2 ? cluster_rank() : 0;
    const int first_unit = blockIdx.x / CLUSTER;
    const int unit_stride = gridDim.x / CLUSTER;

    const int warpgroup = threadIdx.x / 128;
    const int t = threadIdx.x % 128;

    if (threadIdx.x == 0) {
        uint32_t dynamic_smem;
        asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < smem_bytes<BN>()) {
            __trap();  // launched with too little shared memory for the ring
        }
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full(s), 1);
            // One arrival per consumer warpgroup of each block whose loads write this stage.
            mbar_init(empty(s), CONSUMERS * CLUSTER);
        }
        // Make the initialized barriers visible to the TMA unit (the async proxy) and the cluster.
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        fence_async_shared();
    }
    if (CLUSTER == 2) {
        cluster_sync();  // no block may touch its peer's barriers before they are initialized
    } else {
        __syncthreads();
    }

    if (warpgroup == 0) {
        // Producer: it needs few registers; give them to the consumers.
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;" ::: "memory");
        if (t == 0) {
            uint32_t it = 0;  // k-steps loaded so far, over all of this block's tiles
            for (int unit = first_unit; unit < units; unit += unit_stride) {
                int unit_m, tile_n;
                tile_coords(unit, units_m, tiles_n, GROUP_M / CLUSTER, unit_m, tile_n);
                const int tile_m = unit_m * CLUSTER + static_cast<int>(rank);
                const bool has_a = tile_m < tiles_m;
                for (int kt = 0; kt < k_tiles; ++kt, ++it) {
                    const int s = it % STAGES;
                    // Free once the consumers of every block this stage's loads write are done with it.
                    mbar_wait(empty(s), ((it / STAGES) & 1) ^ 1);
                    mbar_arrive_expect_tx(full(s), (has_a ? A_STAGE : 0) + B_STAGE);
                    if (has_a) {
                        tma_load_2d(ring_a + s * A_STAGE, map_a, kt * BK, tile_m * BM, full(s));
                    }
                    if (CLUSTER == 2) {
                        tma_load_2d_multicast(ring_b + s * B_STAGE + rank * (B_STAGE / 2), map_b, kt * BK,
                                              tile_n * BN + static_cast<int>(rank) * (BN / 2), full(s));
                    } else {
                        tma_load_2d(ring_b + s * B_STAGE, map_b, kt * BK, tile_n * BN, full(s));
                    }
                }
            }
        }
        if (CLUSTER == 2) {
            __syncwarp();
            cluster_sync();  // the peer may arrive on this block's barriers until it is done
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;" ::: "memory");
    const int consumer = warpgroup - 1;
    const uint32_t my_staging = staging + consumer * SLOTS * SLICE_BYTES;
    uint32_t slices = 0;  // epilogue slices stored so far, which picks the staging buffer
    uint32_t it = 0;
    float d[BN / 2];
    // Hands a stage back: one arrival from this warpgroup in each block that loads into it (the
    // wgmmas of a warpgroup complete together, so one thread may speak for all four warps).
    auto release = [&](int s) {
        if (CLUSTER == 2) {
            if (t == 0 || t == 32) {
                mbar_arrive_in(empty(s), t / 32);
            }
        } else if (t == 0) {
            mbar_arrive(empty(s));
        }
    };
    for (int unit = first_unit; unit < units; unit += unit_stride) {
        int unit_m, tile_n;
        tile_coords(unit, units_m, tiles_n, GROUP_M / CLUSTER, unit_m, tile_n);
        const int tile_m = unit_m * CLUSTER + static_cast<int>(rank);
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) {
            d[i] = 0.0f;
        }
        int held = -1;  // the stage the wgmmas in flight read; handed back one k-step later
        for (int kt = 0; kt < k_tiles; ++kt, ++it) {
            const int s = it % STAGES;
            mbar_wait(full(s), (it / STAGES) & 1);
            const uint32_t a = ring_a + s * A_STAGE + consumer * 64 * (BK * 2);  // this consumer's 64 rows
            const uint32_t b = ring_b + s * B_STAGE;
            fence_accumulators(d);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < BK / 16; ++kk) {
                // 16 bf16 = 32 bytes further along K, inside the same swizzled 128-byte rows.
                wgmma(d, smem_desc(a + kk * 32), smem_desc(b + kk * 32));
            }
            wgmma_commit();
            // The previous k-step's wgmmas are done once at most this step's are in flight.
            wgmma_wait<1>();
            fence_accumulators(d);
            if (held >= 0) {
                release(held);
            }
            held = s;
        }
        wgmma_wait<0>();
        fence_accumulators(d);
        if (held >= 0) {
            release(held);
        }

        const int row_base = tile_m * BM + consumer * 64;
        const int col_base = tile_n * BN;
        if (tile_m >= tiles_m) {
            continue;  // the spare second tile of the last pair: nothing to store
        }
        if (tma_store) {
            store_tile_tma<BN, T>(d, map_c, my_staging, slices, consumer, t, row_base, col_base);
            // A width that is not a whole number of slices (240) stores its last columns directly.
            constexpr int TMA_COLS = BN / (128 / sizeof(T)) * (128 / sizeof(T));
            if constexpr (TMA_COLS < BN) {
                store_tile_direct<BN, T, TMA_COLS / 8>(d, c, m, n, t, row_base, col_base);
            }
        } else {
            store_tile_direct<BN, T, 0>(d, c, m, n, t, row_base, col_base);
        }
    }
    // The block's shared memory must outlive the stores that read it.
    if (t == 0) {
        bulk_wait_all();
    }
    if (CLUSTER == 2) {
        cluster_sync();  // the peer may still arrive on this block's barriers until here
    }
}

}  // namespace
#endif

// The entry points: one per C type, tile width and cluster: `hgemm_bf16_tn_128x256` (fp32 C),
// `hgemm_bf16_tn_bf16c_128x256` (bf16 C, rounded to nearest from the fp32 accumulators),
// `hgemm_bf16_tn_pair_128x256` (clusters of two; the grid is a whole number of pairs and map_b's
// box is BN/2 rows) and so on. Built for a target other than sm_90a, where wgmma and setmaxnreg
// do not exist (a project may build every kernel for several targets), each is a trap; the
// runner refuses such a GPU.
#if defined(HGEMM_HAS_WGMMA)
#define HGEMM_BODY(BN, T, CLUSTER) gemm_persistent<BN, T, CLUSTER>(&map_a, &map_b, &map_c, c, m, n, k, tma_store)
#elif defined(__CUDA_ARCH__)
#define HGEMM_BODY(BN, T, CLUSTER) __trap()
#else
#define HGEMM_BODY(BN, T, CLUSTER)
#endif

#define HGEMM_ENTRY(NAME, BN, T, CLUSTER, ...)                                                                   \
    extern "C" __global__ void __VA_ARGS__ __launch_bounds__(HGEMM_THREADS, 1)                                   \
        NAME(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,               \
             const __grid_constant__ CUtensorMap map_c, T* __restrict__ c, int m, int n, int k, int tma_store) { \
        HGEMM_BODY(BN, T, CLUSTER);                                                                              \
    }
#define HGEMM_PAIR __cluster_dims__(2, 1, 1)

HGEMM_ENTRY(hgemm_bf16_tn_128x256, 256, float, 1, )
HGEMM_ENTRY(hgemm_bf16_tn_128x240, 240, float, 1, )
HGEMM_ENTRY(hgemm_bf16_tn_128x192, 192, float, 1, )
HGEMM_ENTRY(hgemm_bf16_tn_128x128, 128, float, 1, )
HGEMM_ENTRY(hgemm_bf16_tn_bf16c_128x256, 256, __nv_bfloat16, 1, )
HGEMM_ENTRY(hgemm_bf16_tn_bf16c_128x240, 240, __nv_bfloat16, 1, )
HGEMM_ENTRY(hgemm_bf16_tn_bf16c_128x192, 192, __nv_bfloat16, 1, )
HGEMM_ENTRY(hgemm_bf16_tn_bf16c_128x128, 128, __nv_bfloat16, 1, )
HGEMM_ENTRY(hgemm_bf16_tn_pair_128x256, 256, float, 2, HGEMM_PAIR)
HGEMM_ENTRY(hgemm_bf16_tn_pair_128x240, 240, float, 2, HGEMM_PAIR)
HGEMM_ENTRY(hgemm_bf16_tn_pair_128x192, 192, float, 2, HGEMM_PAIR)
HGEMM_ENTRY(hgemm_bf16_tn_pair_128x128, 128, float, 2, HGEMM_PAIR)
HGEMM_ENTRY(hgemm_bf16_tn_bf16c_pair_128x256, 256, __nv_bfloat16, 2, HGEMM_PAIR)
HGEMM_ENTRY(hgemm_bf16_tn_bf16c_pair_128x240, 240, __nv_bfloat16, 2, HGEMM_PAIR)
HGEMM_ENTRY(hgemm_bf16_tn_bf16c_pair_128x192, 192, __nv_bfloat16, 2, HGEMM_PAIR)
HGEMM_ENTRY(hgemm_bf16_tn_bf16c_pair_128x128, 128, __nv_bfloat16, 2, HGEMM_PAIR)

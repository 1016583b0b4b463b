// vector_add: c[i] = a[i] + b[i] over n floats. It runs on every target; the runner checks it
// against the CPU and reports the memory bandwidth it reaches (12 bytes move per element).
//
// The addition is free: the whole job is to keep HBM busy. Three things get it there.
//
// 1. 16-byte accesses. Each thread loads and stores float4s, so one instruction moves four
//    elements and a warp's access is 512 contiguous bytes: fewer instructions and memory
//    requests for the same bytes.
// 2. Several loads in flight per thread. Each step loads UNROLL float4s of a and of b into
//    registers before it adds any of them, so the compiler can issue the loads back to back: the
//    time to HBM and back (around a microsecond under load) is covered by bytes in flight, not
//    only by the number of threads.
// 3. A grid sized to the GPU, not to n. The runner launches two blocks per SM (at most what the
//    occupancy API says fits), and each block walks the vectors in a grid-stride loop: all the
//    work starts at once, and no time goes to retiring and launching millions of short blocks.
//    Two blocks of 256 threads, each thread with 8 loads of 16 bytes in flight, cover HBM's
//    latency; on an H200 they were faster than a full GPU of blocks (0.97 of the copy's
//    bandwidth at 1 GiB per vector against 0.95), which keeps more streams of addresses open at
//    once. Any grid is correct; only its speed changes.
//
// It is correct for every n, 0 included, and for every pointer: float4 accesses need 16-byte
// aligned addresses, which cudaMalloc-style allocations have but a view at an odd offset does not;
// then the kernel takes a plain float loop instead. The last n % 4 elements are a scalar tail.

// float4s per thread in each step of the main loop. The runner sizes the grid with the same
// number (UNROLL in its vector_add.rs).
#define UNROLL 4

extern "C" __global__ void vector_add(const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ c, unsigned long long n) {
    const unsigned long long thread = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long threads = (unsigned long long)gridDim.x * blockDim.x;

    // The same test in every thread, so the whole grid takes one path.
    const unsigned long long addresses = (unsigned long long)a | (unsigned long long)b | (unsigned long long)c;
    if (addresses % 16 != 0) {
        for (unsigned long long i = thread; i < n; i += threads) {
            c[i] = a[i] + b[i];
        }
        return;
    }

    const float4* __restrict__ a4 = reinterpret_cast<const float4*>(a);
    const float4* __restrict__ b4 = reinterpret_cast<const float4*>(b);
    float4* __restrict__ c4 = reinterpret_cast<float4*>(c);
    const unsigned long long n4 = n / 4;

    // Main loop: a block takes steps of UNROLL * blockDim float4s. Thread t of the block handles
    // float4s t, t + blockDim, t + 2 * blockDim, ...: in each of the UNROLL accesses, neighbouring
    // threads touch neighbouring float4s, so every warp access stays contiguous. Only whole steps
    // run here, so there is no bounds check inside.
    const unsigned long long step = (unsigned long long)UNROLL * blockDim.x;
    const unsigned long long whole = n4 / step * step;
    for (unsigned long long base = blockIdx.x * step; base < whole; base += gridDim.x * step) {
        float4 x[UNROLL], y[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            // __ldg: through the read-only path; a and b are never written by this kernel.
            x[u] = __ldg(&a4[base + threadIdx.x + u * blockDim.x]);
            y[u] = __ldg(&b4[base + threadIdx.x + u * blockDim.x]);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            c4[base + threadIdx.x + u * blockDim.x] =
                make_float4(x[u].x + y[u].x, x[u].y + y[u].y, x[u].z + y[u].z, x[u].w + y[u].w);
        }
    }

    // The float4s after the last whole step (fewer than one step's worth), one per thread.
    for (unsigned long long i = whole + thread; i < n4; i += threads) {
        const float4 x = __ldg(&a4[i]);
        const float4 y = __ldg(&b4[i]);
        c4[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    }

    // The last n % 4 floats, which make no whole float4.
    const unsigned long long tail = n4 * 4 + thread;
    if (tail < n) {
        c[tail] = a[tail] + b[tail];
    }
}

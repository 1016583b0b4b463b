// Helpers shared by the kernels of this package. `cargo gpu` tracks this header: touching it
// rebuilds every kernel that includes it.
#pragma once

// Index of this thread across the whole grid (1-D launch). 64-bit so that grids over 2^32
// elements do not wrap.
__device__ __forceinline__ unsigned long long global_thread_index()
{
    return static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Number of threads in the whole grid: the step of a grid-stride loop.
__device__ __forceinline__ unsigned long long grid_stride()
{
    return static_cast<unsigned long long>(gridDim.x) * blockDim.x;
}

// c = a + b, element by element. The grid-stride loop lets the host cap the grid size
// independently of n.
#include "common.cuh"

extern "C" __global__ void vector_add(const float* a, const float* b, float* c, unsigned long long n)
{
    for (unsigned long long i = global_thread_index(); i < n; i += grid_stride()) {
        c[i] = a[i] + b[i];
    }
}

// vector_add: c[i] = a[i] + b[i] over n floats, one element per thread. It runs on every target;
// the runner checks it against the CPU and reports the memory bandwidth it reaches.

extern "C" __global__ void vector_add(const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ c, unsigned long long n) {
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        c[i] = a[i] + b[i];
    }
}

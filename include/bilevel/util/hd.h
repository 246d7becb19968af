// BILEVEL_HD marks inline functions that CPU code and CUDA kernels share: __host__ __device__ under nvcc, nothing
// under a host compiler.
#pragma once

#if defined(__CUDACC__)
#define BILEVEL_HD __host__ __device__
#else
#define BILEVEL_HD
#endif

// BILEVEL_HD marks inline functions that CPU code and CUDA kernels share: __host__ __device__ under nvcc, nothing
// under a host compiler;
// BILEVEL_HDI adds inline (forced on the device).
#pragma once

#if defined(__CUDACC__)
#define BILEVEL_HD __host__ __device__
#define BILEVEL_HDI BILEVEL_HD __forceinline__
#else
#define BILEVEL_HD
#define BILEVEL_HDI inline
#endif

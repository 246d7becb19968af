// cuBLAS's deterministic mode: with LibTorch's deterministic algorithms on (config key `deterministic`), every
// cuBLAS call on a CUDA device throws unless CUBLAS_WORKSPACE_CONFIG is ":4096:8" or ":16:8", and cuBLAS reads it
// when its handle is created, so it must be in the environment before the first CUDA product.
#pragma once

namespace bilevel {

// The value set when `deterministic` is requested and the variable is unset.
inline constexpr const char* kCublasWorkspaceConfig = ":4096:8";

// deterministic and CUBLAS_WORKSPACE_CONFIG unset (or empty): sets it to kCublasWorkspaceConfig and returns true.
// Otherwise leaves the environment as it is (a value the user set is kept) and returns false.
bool apply_cublas_workspace_config(bool deterministic);

}  // namespace bilevel

// The CUDA halves of bilevel/kernels/fused_ops.h: run the kernels of launch.h on LibTorch's current stream of
// the tensors' device, under a device guard, and turn a failed launch into an exception naming the kernel.
// Compiled only when LibTorch has CUDA (CMakeLists.txt, BILEVEL_CUDA).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <stdexcept>
#include <string>

#include "../cuda_entries.h"
#include "bilevel/kernels/cuda/launch.h"

namespace bilevel::kernels::cuda {
namespace {

void check_launch(cudaError_t err, const char* kernel) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("bilevel::kernels::") + kernel + ": CUDA kernel launch failed: " +
                             cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

}  // namespace

void launch_on(torch::Device device, const char* kernel, const std::function<cudaError_t(cudaStream_t)>& launch) {
  const c10::cuda::CUDAGuard guard(device);
  check_launch(launch(c10::cuda::getCurrentCUDAStream(device.index()).stream()), kernel);
}

void dyad_update(const torch::Tensor& u, const torch::Tensor& f, double alpha, ActParams rho, torch::Tensor& delta,
                 torch::Tensor& sbar) {
  const c10::cuda::CUDAGuard guard(u.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(u.device().index()).stream();
  const int64_t n = u.numel();
  if (u.scalar_type() == torch::kFloat)
    check_launch(launch_dyad_update(u.data_ptr<float>(), f.data_ptr<float>(), delta.data_ptr<float>(),
                                    sbar.data_ptr<float>(), n, float(alpha), rho, stream),
                 "dyad_update");
  else
    check_launch(launch_dyad_update(u.data_ptr<double>(), f.data_ptr<double>(), delta.data_ptr<double>(),
                                    sbar.data_ptr<double>(), n, alpha, rho, stream),
                 "dyad_update");
}

torch::Tensor state_update(torch::Tensor& v, const torch::Tensor& s_old, ActParams h) {
  const c10::cuda::CUDAGuard guard(v.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(v.device().index()).stream();
  torch::Tensor residual = torch::empty({}, v.options());
  const int64_t n = v.numel();
  if (v.scalar_type() == torch::kFloat)
    check_launch(launch_state_update(v.data_ptr<float>(), s_old.data_ptr<float>(), n, h, residual.data_ptr<float>(),
                                     stream),
                 "state_update_");
  else
    check_launch(launch_state_update(v.data_ptr<double>(), s_old.data_ptr<double>(), n, h,
                                     residual.data_ptr<double>(), stream),
                 "state_update_");
  return residual;  // read by the caller, once per sweep (energy/sweep_residual.h): no synchronisation here
}

void state_update_rows(torch::Tensor& v, const torch::Tensor& s_old, ActParams h, torch::Tensor& change,
                       const torch::Tensor& s_older, torch::Tensor* change_older) {
  const c10::cuda::CUDAGuard guard(v.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(v.device().index()).stream();
  const int64_t rows = v.size(0), n = rows > 0 ? v.numel() / rows : 0;
  const bool two = s_older.defined();
  if (v.scalar_type() == torch::kFloat)
    check_launch(launch_state_update_rows(v.data_ptr<float>(), s_old.data_ptr<float>(), rows, n, h,
                                          change.data_ptr<float>(), two ? s_older.data_ptr<float>() : nullptr,
                                          two ? change_older->data_ptr<float>() : nullptr, stream),
                 "state_update_rows_");
  else
    check_launch(launch_state_update_rows(v.data_ptr<double>(), s_old.data_ptr<double>(), rows, n, h,
                                          change.data_ptr<double>(), two ? s_older.data_ptr<double>() : nullptr,
                                          two ? change_older->data_ptr<double>() : nullptr, stream),
                 "state_update_rows_");
}

}  // namespace bilevel::kernels::cuda

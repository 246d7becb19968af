#include "check_tensors.h"

#include <stdexcept>
#include <string>

#include "bilevel/kernels/fused_ops.h"

namespace bilevel::kernels {
namespace {

std::string describe(const torch::Tensor& t) {
  std::string s = std::string(c10::toString(t.scalar_type())) + " on " + t.device().str() + ", shape [";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

void check_tensors(const char* entry, std::initializer_list<Arg> args, bool float32_only) {
  const Arg& first = *args.begin();
  auto fail = [&](const Arg& a, const std::string& what) {
    throw std::invalid_argument(std::string("bilevel::kernels::") + entry + ": argument '" + a.name + "' " + what);
  };
  for (const Arg& a : args) {
    if (!a.t->defined()) fail(a, "is an undefined tensor");
    if (a.t->scalar_type() != torch::kFloat && (float32_only || a.t->scalar_type() != torch::kDouble))
      fail(a, "has dtype " + std::string(c10::toString(a.t->scalar_type())) + "; the kernels take float32" +
                  (float32_only ? "" : " or float64"));
    if (a.t->device() != first.t->device())
      fail(a, "is on " + a.t->device().str() + " but '" + first.name + "' is on " + first.t->device().str() +
                  "; all arguments must be on one device");
    if (a.t->scalar_type() != first.t->scalar_type())
      fail(a, "has dtype " + std::string(c10::toString(a.t->scalar_type())) + " but '" + first.name + "' has " +
                  std::string(c10::toString(first.t->scalar_type())) + "; all arguments must have one dtype");
    if (a.t->sizes() != first.t->sizes())
      fail(a, "is " + describe(*a.t) + " but '" + first.name + "' is " + describe(*first.t) +
                  "; all arguments must have one shape");
    if (!a.t->is_contiguous()) fail(a, "(" + describe(*a.t) + ") is not contiguous; call .contiguous() first");
  }
  const torch::Device d = first.t->device();
  if (d.is_cuda() && !cuda_kernels_built())
    throw std::runtime_error(std::string("bilevel::kernels::") + entry + ": the tensors are on " + d.str() +
                             " but this build has no CUDA kernels (configured with BILEVEL_CUDA=OFF, without nvcc, "
                             "or against a LibTorch without CUDA)");
  if (!d.is_cuda() && !d.is_cpu())
    throw std::invalid_argument(std::string("bilevel::kernels::") + entry + ": unsupported device " + d.str() +
                                " (the kernels run on the CPU and on CUDA devices)");
}

const float* check_grid(const char* entry, const torch::Tensor& theta, const torch::Tensor& scale,
                        const torch::Tensor& zero) {
  // The element counts first: check_tensors would name a mismatch only as two shapes.
  if (zero.defined() && scale.defined() && zero.numel() != scale.numel())
    throw std::invalid_argument(std::string("bilevel::kernels::") + entry + ": argument 'zero' has " +
                                std::to_string(zero.numel()) + " elements but 'scale' has " +
                                std::to_string(scale.numel()));
  if (zero.defined())
    check_tensors(entry, {{"scale", &scale}, {"zero", &zero}}, true);
  else
    check_tensors(entry, {{"scale", &scale}}, true);
  if (scale.device() != theta.device())
    throw std::invalid_argument(std::string("bilevel::kernels::") + entry + ": argument 'scale' is on " +
                                scale.device().str() + " but 'theta' is on " + theta.device().str());
  const int64_t channels = scale.numel();
  if (channels != 1 && (theta.dim() == 0 || channels != theta.size(0)))
    throw std::invalid_argument(std::string("bilevel::kernels::") + entry + ": argument 'scale' has " +
                                std::to_string(channels) + " elements; expected 1 or theta.size(0)");
  return zero.defined() ? zero.data_ptr<float>() : nullptr;
}

}  // namespace bilevel::kernels

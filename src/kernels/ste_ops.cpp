#include "bilevel/kernels/ste_ops.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "bilevel/kernels/cpu/ste_twins.h"
#include "dispatch.h"

namespace bilevel::kernels {

using torch::Tensor;

namespace {

// Rows of a weight tensor whose rows are output channels, per CPU task: ~16K elements.
int64_t row_grain(int64_t inner) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)); }

void check_rows(const char* entry, const Tensor& theta) {
  if (theta.dim() == 0 || theta.size(0) == 0)
    throw std::invalid_argument(std::string("bilevel::kernels::") + entry +
                                ": argument 'theta' must have at least one row (its dimension 0 is the channel)");
}

// Σ of the per-row values into their channels, in row order (the result of one pass on one thread).
Tensor rows_to_channels(const std::vector<float>& row, int64_t channels, const torch::Device& device) {
  Tensor out = torch::zeros({channels});
  float* op = out.data_ptr<float>();
  for (size_t r = 0; r < row.size(); ++r) op[channels > 1 ? r : 0] += row[r];
  return out.to(device);
}

}  // namespace

Tensor ste_backward(Tensor& g, const Tensor& theta, const Tensor& w, const Tensor& scale, const Tensor& zero,
                    double lo, double hi, bool scale_grad, bool clear_g, Tensor& out) {
  check_tensors("ste_backward", {{"g", &g}, {"theta", &theta}, {"w", &w}, {"out", &out}}, true);
  check_rows("ste_backward", theta);
  const float* const z = check_grid("ste_backward", theta, scale, zero);
  const int64_t rows = theta.size(0), inner = theta.numel() / rows, channels = scale.numel();
  if (theta.is_cuda()) {
    const SteArgs a{g.data_ptr<float>(), theta.data_ptr<float>(), scale.data_ptr<float>(), z, out.data_ptr<float>(),
                    theta.numel(), channels > 1 ? inner : theta.numel(), float(lo), float(hi)};
    (void)a;  // used by the CUDA half only
    dispatch_n("ste_backward", g, 0, 1, [](int64_t, int64_t) {}, BILEVEL_CUDA_CALL(launch_ste_grad(a, stream)));
    Tensor sg;
    if (scale_grad) {
      const Tensor dots = (g * w).reshape({rows, -1}).sum(1);
      sg = channels > 1 ? dots / scale : (dots.sum() / scale).reshape({1});
    }
    if (clear_g) g.zero_();
    return sg;
  }
  std::vector<float> row(scale_grad ? size_t(rows) : 0, 0.f);
  const cpu::SteBackwardArgs a{theta.data_ptr<float>(), w.data_ptr<float>(), g.data_ptr<float>(),
                               scale.data_ptr<float>(), z, out.data_ptr<float>(), scale_grad ? row.data() : nullptr,
                               rows, inner, channels, float(lo), float(hi), clear_g};
  at::parallel_for(0, rows, row_grain(inner), [&](int64_t b, int64_t e) { cpu::ste_backward_rows(a, b, e); });
  return scale_grad ? rows_to_channels(row, channels, scale.device()) : Tensor();
}

void ste_update_(Tensor& theta, Tensor& w, const Tensor& scale, const Tensor& zero, double lo, double hi,
                 CodeSpec spec) {
  check_tensors("ste_update_", {{"theta", &theta}, {"w", &w}}, true);
  check_rows("ste_update_", theta);
  const float* const z = check_grid("ste_update_", theta, scale, zero);
  const int64_t n = theta.numel(), channels = scale.numel();
  const SteUpdateArgs a{theta.data_ptr<float>(), w.data_ptr<float>(), scale.data_ptr<float>(), z, n,
                        channels > 1 ? n / channels : n, float(lo), float(hi), spec};
  dispatch_n("ste_update_", theta, n, kCpuGrain, [&](int64_t b, int64_t e) { cpu::ste_update(a, b, e); },
             BILEVEL_CUDA_CALL(launch_ste_update(a, stream)));
}

Tensor channel_scale_grad(const Tensor& g, const Tensor& w, const Tensor& scale) {
  const int64_t channels = scale.numel();
  if (!g.device().is_cpu() || g.scalar_type() != torch::kFloat32 || w.scalar_type() != torch::kFloat32 ||
      scale.scalar_type() != torch::kFloat32 || g.dim() == 0) {
    Tensor s = scale.detach();
    if (channels > 1) {
      std::vector<int64_t> shape(size_t(g.dim()), 1);
      shape[0] = channels;
      s = s.reshape(shape);
    } else {
      s = s.reshape({});
    }
    const Tensor t = g * w / s;
    return channels > 1 ? t.reshape({channels, -1}).sum(1) : t.sum().reshape({1}).clone();
  }
  const Tensor gc = g.contiguous(), wc = w.contiguous(), s = scale.detach().contiguous();
  check_tensors("channel_scale_grad", {{"g", &gc}, {"w", &wc}}, true);
  const int64_t rows = gc.size(0), inner = gc.numel() / std::max<int64_t>(rows, 1);
  if (channels != 1 && channels != rows)
    throw std::invalid_argument("bilevel::kernels::channel_scale_grad: argument 'scale' has " +
                                std::to_string(channels) + " elements; expected 1 or g.size(0) = " +
                                std::to_string(rows));
  std::vector<float> row(size_t(rows), 0.f);
  const float *gp = gc.data_ptr<float>(), *wp = wc.data_ptr<float>(), *sp = s.data_ptr<float>();
  at::parallel_for(0, rows, row_grain(inner), [&](int64_t b, int64_t e) {
    cpu::scaled_row_dots(gp, wp, sp, channels, inner, row.data(), b, e);
  });
  return rows_to_channels(row, channels, scale.device());
}

}  // namespace bilevel::kernels

#include "bilevel/quant/quantizer.h"

#include <ATen/Parallel.h>

#include <stdexcept>

#include "bilevel/kernels/quant_ops.h"
#include "bilevel/kernels/counter_rng.h"

namespace bilevel {

using torch::Tensor;

Tensor Quantizer::broadcast(const Tensor& per_channel, const Tensor& like) {
  if (per_channel.numel() == 1) return per_channel.reshape({});
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = per_channel.numel();
  return per_channel.reshape(shape);
}

Tensor Quantizer::channel_sum(const Tensor& t, int64_t channels) {
  return channels > 1 ? t.reshape({channels, -1}).sum(1) : t.sum().reshape({1}).clone();
}

Tensor Quantizer::mean_abs(const Tensor& theta) const {
  Tensor a = theta.detach().abs();
  Tensor m = opt_.per_channel ? a.reshape({a.size(0), -1}).mean(1) : a.mean().reshape({1});
  return m.clamp_min(1e-8);
}

Tensor Quantizer::codes(const Tensor& theta, const GridParams& g, const uint64_t* key) const {
  TORCH_CHECK(theta.scalar_type() == torch::kFloat32, "quantizers work on float32 tensors");
  if (const auto spec = builtin_code_spec(*this)) {
    // The built-in grids run as kernels (bilevel/kernels/quant_ops.h): the CPU twin or the CUDA kernel, by θ's
    // device, computing the same codes (stochastic ones included: the stream is counter-based).
    const Tensor t = theta.detach().contiguous();
    const Tensor s = g.scale.detach().to(t.device(), torch::kFloat32).contiguous();
    const Tensor z = g.zero.defined() ? g.zero.detach().to(t.device(), torch::kFloat32).contiguous() : Tensor();
    return kernels::quant_codes(t, s, z, *spec, key);
  }
  // A registered quantizer: its virtual code functions, on the CPU.
  const Tensor t = theta.detach().contiguous().cpu();
  const Tensor s = g.scale.detach().to(torch::kFloat32).contiguous().cpu();
  const Tensor z = g.zero.defined() ? g.zero.detach().to(torch::kFloat32).contiguous().cpu() : torch::zeros_like(s);
  Tensor out = torch::empty_like(t);
  const int64_t n = t.numel(), channels = s.numel(), inner = channels > 1 ? n / channels : n;
  const float* tp = t.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  const float* zp = z.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const uint64_t k = key ? *key : 0;
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t c = channels > 1 ? i / inner : 0;
      op[i] = key ? code_stochastic(tp[i] / sp[c] + zp[c], counter_uniform(k, uint64_t(i)))
                  : code(tp[i] * (1.f / sp[c]) + zp[c]);
    }
  });
  return out.to(theta.device());
}

Tensor Quantizer::dequantize(const Tensor& codes, const GridParams& g) const {
  Tensor s = broadcast(g.scale.detach(), codes);
  if (!g.zero.defined()) return codes * s;
  return (codes - broadcast(g.zero.detach(), codes)) * s;
}

std::vector<float> Quantizer::levels(const GridParams& g, int64_t channel) const {
  const float s = g.scale.detach().cpu().reshape(-1)[g.scale.numel() > 1 ? channel : 0].item<float>();
  const float z = g.zero.defined() ? g.zero.detach().cpu().reshape(-1)[g.zero.numel() > 1 ? channel : 0].item<float>() : 0.f;
  std::vector<float> out;
  for (float q = code_min(); q <= code_max(); q += 1.f) {
    if (name() == "binary" && q == 0.f) continue;
    out.push_back(s * (q - z));
  }
  return out;
}

}  // namespace bilevel

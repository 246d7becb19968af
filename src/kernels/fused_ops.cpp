#include "bilevel/kernels/fused_ops.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <vector>

#include "bilevel/kernels/config.h"
#include "bilevel/kernels/cpu/dense_relax.h"
#include "bilevel/kernels/cpu/elementwise_twins.h"
#include "check_tensors.h"
#include "cuda_entries.h"

namespace bilevel::kernels {

using torch::Tensor;

namespace {

void check_act(const char* entry, const ActParams& a) {
  if (static_cast<int32_t>(a.kind) < 0 || static_cast<int32_t>(a.kind) > static_cast<int32_t>(Act::Clip))
    throw std::invalid_argument(std::string("bilevel::kernels::") + entry + ": unknown activation code " +
                                std::to_string(static_cast<int32_t>(a.kind)));
  if (a.kind == Act::Clip && !(a.lo <= a.hi))
    throw std::invalid_argument(std::string("bilevel::kernels::") + entry + ": clip box [" + std::to_string(a.lo) +
                                ", " + std::to_string(a.hi) + "] is empty");
}

template <class T>
void dyad_cpu(const Tensor& u, const Tensor& f, T alpha, ActParams rho, Tensor& delta, Tensor& sbar) {
  const T* pu = u.data_ptr<T>();
  const T* pf = f.data_ptr<T>();
  T* pd = delta.data_ptr<T>();
  T* ps = sbar.data_ptr<T>();
  at::parallel_for(0, u.numel(), kCpuGrain, [&](int64_t b, int64_t e) {
    cpu::dyad_update(pu + b, pf + b, pd + b, ps + b, e - b, alpha, rho);
  });
}

template <class T>
double state_cpu(Tensor& v, const Tensor& s_old, ActParams h) {
  T* pv = v.data_ptr<T>();
  const T* ps = s_old.data_ptr<T>();
  const int64_t n = v.numel();
  const int64_t chunks = (n + kCpuGrain - 1) / kCpuGrain;
  std::vector<T> partial(size_t(std::max<int64_t>(chunks, 1)), T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t b = c * kCpuGrain, e = std::min(n, b + kCpuGrain);
      partial[size_t(c)] = cpu::state_update(pv + b, ps + b, e - b, h);
    }
  });
  T r = T(0);
  for (T p : partial) r = max_keep_nan(r, p);
  return double(r);
}

// The vectorised CPU epilogue's activation for h, when it has one.
bool dense_act(const ActParams& h, bilevel::cpu::Act& act, float& lo, float& hi) {
  switch (h.kind) {
    case Act::Identity: act = bilevel::cpu::Act::Identity; return true;
    case Act::Sigmoid: act = bilevel::cpu::Act::Sigmoid; return true;
    case Act::Tanh: act = bilevel::cpu::Act::Tanh; return true;
    case Act::Clip: act = bilevel::cpu::Act::Clamp, lo = float(h.lo), hi = float(h.hi); return true;
    default: return false;
  }
}

template <class T>
void state_rows_cpu(Tensor& v, const Tensor& s_old, ActParams h, Tensor& change, const Tensor& s_older,
                    Tensor* change_older) {
  const int64_t rows = v.size(0), n = rows > 0 ? v.numel() / rows : 0;
  T* pv = v.data_ptr<T>();
  const T* ps = s_old.data_ptr<T>();
  T* pc = change.data_ptr<T>();
  const T* po = s_older.defined() ? s_older.data_ptr<T>() : nullptr;
  T* pco = po ? change_older->data_ptr<T>() : nullptr;
  bilevel::cpu::Act act{};
  float lo = 0.0f, hi = 0.0f;
  const bool dense = std::is_same_v<T, float> && dense_act(h, act, lo, hi);
  const int64_t grain = std::max<int64_t>(1, kCpuGrain / std::max<int64_t>(n, 1));
  at::parallel_for(0, rows, grain, [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<T, float>) {
      if (dense)
        return bilevel::cpu::finish_rows(act, lo, hi, pv + b * n, ps + b * n, e - b, n, pc + b,
                                         po ? po + b * n : nullptr, po ? pco + b : nullptr);
    }
    cpu::state_update_rows(pv + b * n, ps + b * n, e - b, n, h, pc + b, po ? po + b * n : nullptr,
                           po ? pco + b : nullptr);
  });
}

}  // namespace

bool cuda_kernels_built() { return BILEVEL_WITH_CUDA != 0; }

ActParams act_of(const std::string& name) {
  ActParams a;
  if (name == "identity") a.kind = Act::Identity;
  else if (name == "relu") a.kind = Act::Relu;
  else if (name == "tanh") a.kind = Act::Tanh;
  else if (name == "sigmoid") a.kind = Act::Sigmoid;
  else if (name == "hard_sigmoid") a.kind = Act::HardSigmoid;
  else if (name == "sigmoid4") a.kind = Act::Sigmoid4;
  else if (name == "hard_tanh") a.kind = Act::HardTanh;
  else if (name == "softplus") a.kind = Act::Softplus;
  else if (name == "silu") a.kind = Act::Silu;
  else throw std::invalid_argument("bilevel::kernels::act_of: no fused kernel for activation '" + name + "'");
  return a;
}

void dyad_update_out(const Tensor& u, const Tensor& f, double alpha, ActParams rho, Tensor& delta, Tensor& sbar) {
  check_tensors("dyad_update", {{"u", &u}, {"f", &f}, {"delta", &delta}, {"sbar", &sbar}});
  check_act("dyad_update", rho);
  if (!(alpha >= 0.0 && alpha <= 1.0))
    throw std::invalid_argument("bilevel::kernels::dyad_update: alpha = " + std::to_string(alpha) +
                                " lies outside [0, 1]");
  if (u.is_cuda()) {
#if BILEVEL_WITH_CUDA
    cuda::dyad_update(u, f, alpha, rho, delta, sbar);
#endif
    return;
  }
  if (u.scalar_type() == torch::kFloat) dyad_cpu<float>(u, f, float(alpha), rho, delta, sbar);
  else dyad_cpu<double>(u, f, alpha, rho, delta, sbar);
}

DyadTensors dyad_update(const Tensor& u, const Tensor& f, double alpha, ActParams rho) {
  DyadTensors out{torch::empty_like(u, at::MemoryFormat::Contiguous), torch::empty_like(u, at::MemoryFormat::Contiguous)};
  dyad_update_out(u, f, alpha, rho, out.delta, out.sbar);
  return out;
}

Tensor state_update_residual_(Tensor& v, const Tensor& s_old, ActParams h) {
  check_tensors("state_update_", {{"v", &v}, {"s_old", &s_old}});
  check_act("state_update_", h);
  if (v.is_cuda()) {
#if BILEVEL_WITH_CUDA
    return cuda::state_update(v, s_old, h);
#endif
  }
  const double r = v.scalar_type() == torch::kFloat ? state_cpu<float>(v, s_old, h) : state_cpu<double>(v, s_old, h);
  return torch::scalar_tensor(r, v.options());
}

double state_update_(Tensor& v, const Tensor& s_old, ActParams h) {
  return state_update_residual_(v, s_old, h).item<double>();
}

void state_update_rows_(Tensor& v, const Tensor& s_old, ActParams h, Tensor& change, const Tensor& s_older,
                        Tensor* change_older) {
  if (s_older.defined()) check_tensors("state_update_rows_", {{"v", &v}, {"s_old", &s_old}, {"s_older", &s_older}});
  else check_tensors("state_update_rows_", {{"v", &v}, {"s_old", &s_old}});
  check_act("state_update_rows_", h);
  auto check_rows = [&](const Tensor* c, const char* name) {
    if (v.dim() < 1 || !c || !c->defined() || c->dim() != 1 || c->size(0) != v.size(0) ||
        c->scalar_type() != v.scalar_type() || c->device() != v.device() || !c->is_contiguous())
      throw std::invalid_argument(std::string("bilevel::kernels::state_update_rows_: argument '") + name +
                                  "' must be a contiguous [" + std::to_string(v.dim() ? v.size(0) : 0) +
                                  "] tensor of v's dtype and device");
  };
  check_rows(&change, "change");
  if (s_older.defined()) check_rows(change_older, "change_older");
  if (v.is_cuda()) {
#if BILEVEL_WITH_CUDA
    cuda::state_update_rows(v, s_old, h, change, s_older, change_older);
#endif
    return;
  }
  if (v.scalar_type() == torch::kFloat) state_rows_cpu<float>(v, s_old, h, change, s_older, change_older);
  else state_rows_cpu<double>(v, s_old, h, change, s_older, change_older);
}

}  // namespace bilevel::kernels

#include "bilevel/energy/relax_buffers.h"

#include <stdexcept>
#include <string>

namespace bilevel {
namespace {

std::string shape_of(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

void check_one(const torch::Tensor& t, const std::string& name, const torch::Device& device, int64_t rows,
               int64_t width) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("fused relaxation: " + name + " " + what);
  };
  if (!t.defined()) fail("is not allocated");
  if (t.device() != device)
    fail("is on " + t.device().str() + " but the batch's drive is on " + device.str() +
         " (the kernel would be given a pointer of the wrong device)");
  if (t.scalar_type() != torch::kFloat32)
    fail("has dtype " + std::string(c10::toString(t.scalar_type())) + "; the fused relaxation takes float32");
  if (t.dim() != 2 || t.size(0) != rows || t.size(1) != width)
    fail("has shape " + shape_of(t) + "; expected [" + std::to_string(rows) + ", " + std::to_string(width) + "]");
  if (!t.is_contiguous()) fail("is not contiguous");
}

}  // namespace

void check_relax_buffers(const LayeredEnergy& energy, const EnergyBatch& batch, const EnergyState& st) {
  const int64_t S = energy.num_states();
  if (int64_t(st.s.size()) != S || int64_t(st.scratch.size()) != S)
    throw std::invalid_argument("fused relaxation: the state has " + std::to_string(st.s.size()) + " states and " +
                                std::to_string(st.scratch.size()) + " scratch buffers; the energy has " +
                                std::to_string(S) + " states");
  const torch::Device device = batch.drive1.device();
  for (int64_t k = 1; k <= S; ++k) {
    const int64_t width = energy.layer(size_t(k - 1)).weight.size(0);
    check_one(st.s[size_t(k - 1)], "state " + std::to_string(k), device, batch.size, width);
    check_one(st.scratch[size_t(k - 1)], "scratch buffer of state " + std::to_string(k), device, batch.size, width);
  }
}

}  // namespace bilevel

#include "bilevel/data/synthetic.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/types.h>

#include <string>

#include "bilevel/util/error.h"

#include "bilevel/util/hash.h"

namespace bilevel {
namespace {

// Pixel noise around each prototype. Prototype pixels are uniform in [0, 1], so two prototypes differ by about
// 0.41 per pixel (rms): clusters overlap little per pixel but are far apart over a whole image.
constexpr double kNoiseStd = 0.2;

void require_positive(int64_t v, const char* what) {
  if (v < 1) throw UserError(std::string("synthetic data: ") + what + " must be >= 1, got " + std::to_string(v));
}

}  // namespace

Dataset make_synthetic(int64_t n, int64_t channels, int64_t image_size, int64_t num_classes, int64_t seed,
                       int64_t stream) {
  if (n < 0) throw UserError("synthetic data: number of examples must be >= 0, got " + std::to_string(n));
  require_positive(channels, "channels");
  require_positive(image_size, "image_size");
  require_positive(num_classes, "classes");

  // Seeds are hashed because the generator's mt19937 keeps only 32 bits of its seed, and nearby seeds / streams
  // should give unrelated sequences. The prototype generator ignores `stream` so train and test share clusters.
  const auto s = static_cast<uint64_t>(seed);
  auto proto_gen = at::make_generator<at::CPUGeneratorImpl>(splitmix64(s ^ 0x5eed0f00d5ULL));
  auto data_gen = at::make_generator<at::CPUGeneratorImpl>(splitmix64(splitmix64(s) + static_cast<uint64_t>(stream)));

  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor prototypes = torch::rand({num_classes, channels, image_size, image_size}, proto_gen, f32);

  // Balanced classes (counts differ by at most one) in a random order.
  torch::Tensor perm = torch::randperm(n, data_gen, torch::TensorOptions().dtype(torch::kInt64));
  torch::Tensor labels = perm.remainder(num_classes);
  torch::Tensor noise = torch::randn({n, channels, image_size, image_size}, data_gen, f32);

  Dataset d;
  d.images = prototypes.index_select(0, labels).add_(noise.mul_(kNoiseStd)).clamp_(0.0, 1.0);
  d.labels = labels;
  d.num_classes = num_classes;
  d.name = "synthetic";
  return d;
}

}  // namespace bilevel

#include "bilevel/run/run_dir.h"

#include <cerrno>
#include <ctime>
#include <sys/stat.h>

#include "bilevel/util/error.h"
#include "bilevel/util/io_error.h"

namespace bilevel {
namespace fs = std::filesystem;

RunDir RunDir::create(const fs::path& output_root, const std::string& experiment_name) {
  const fs::path parent = output_root / experiment_name;
  fs::create_directories(parent);
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d_%H-%M-%S", &tm);
  for (int n = 0;; ++n) {
    fs::path candidate = parent / (n == 0 ? std::string(stamp) : std::string(stamp) + "_" + std::to_string(n));
    // mkdir fails with EEXIST when another run took the name: the check and the claim are one step.
    if (::mkdir(candidate.c_str(), 0755) == 0) {
      RunDir d{candidate};
      fs::create_directory(d.checkpoints());
      return d;
    }
    if (errno != EEXIST) throw IoError(candidate, "cannot create run directory", errno);
  }
}

RunDir RunDir::open(const fs::path& path) {
  RunDir d{path};
  if (!fs::is_directory(path)) throw UserError(path.string() + ": not a directory");
  if (!fs::exists(d.config()))
    throw UserError(path.string() + ": not a run directory (no config.yaml; pass the folder `bilevel train` printed)");
  return d;
}

}  // namespace bilevel

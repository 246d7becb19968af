#include "bilevel/util/cublas_env.h"

#include <cstdlib>

namespace bilevel {

bool apply_cublas_workspace_config(bool deterministic) {
  if (!deterministic) return false;
  const char* current = std::getenv("CUBLAS_WORKSPACE_CONFIG");
  if (current && *current) return false;
  return ::setenv("CUBLAS_WORKSPACE_CONFIG", kCublasWorkspaceConfig, 1) == 0;
}

}  // namespace bilevel

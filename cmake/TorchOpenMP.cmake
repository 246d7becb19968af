# OpenMP for the code that calls at::parallel_for.
#
# When LibTorch was built with OpenMP (ATen/Config.h: AT_PARALLEL_OPENMP 1, Debian's and PyTorch's builds),
# at::parallel_for is an inline template around `#pragma omp parallel`, compiled into the caller. A caller built
# without OpenMP ignores the pragma and runs every parallel_for on one thread, whatever torch::set_num_threads says:
# the fused relaxation, Adam, the quantizers and the integer kernels all did until this file existed.
#
# The caller must also use LibTorch's OpenMP runtime, not a second one: PyTorch's wheels bundle their own
# libgomp (torch/lib/libgomp-HASH.so.1), and linking the compiler's libgomp beside it would give two thread pools
# that do not know each other's thread count. So: compile with the compiler's OpenMP flag and link the libgomp
# LibTorch ships when there is one, the compiler's otherwise (Debian: the same library LibTorch links).
#
# bilevel_torch_openmp(TARGET) adds both to TARGET's public interface.
function(bilevel_torch_openmp target)
  set(_config "")
  foreach(dir IN LISTS TORCH_INCLUDE_DIRS)
    if(EXISTS "${dir}/ATen/Config.h")
      set(_config "${dir}/ATen/Config.h")
      break()
    endif()
  endforeach()
  if(NOT _config)
    message(STATUS "OpenMP: ATen/Config.h not found under TORCH_INCLUDE_DIRS; parallel_for stays serial")
    return()
  endif()
  file(STRINGS "${_config}" _openmp REGEX "^#define AT_PARALLEL_OPENMP 1")
  if(NOT _openmp)
    message(STATUS "OpenMP: LibTorch does not use OpenMP for parallel_for; nothing to add")
    return()
  endif()
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # Clang's -fopenmp emits calls into LLVM's libomp, a second runtime beside LibTorch's libgomp, and its
    # -fopenmp=libgomp ignores the pragmas; so a clang build (the fuzzers, the sanitizers) stays serial.
    message(STATUS "OpenMP: not with ${CMAKE_CXX_COMPILER_ID} (it would bring a second OpenMP runtime beside "
                   "LibTorch's libgomp); our parallel_for runs on one thread in this build")
    return()
  endif()
  find_package(OpenMP REQUIRED COMPONENTS CXX)
  file(GLOB _bundled "${TORCH_INSTALL_PREFIX}/lib/libgomp*.so*")
  if(_bundled)
    list(GET _bundled 0 _gomp)
    message(STATUS "OpenMP: ${OpenMP_CXX_FLAGS}, with LibTorch's own runtime ${_gomp}")
    separate_arguments(_flags UNIX_COMMAND "${OpenMP_CXX_FLAGS}")
    target_compile_options(${target} PUBLIC "$<$<COMPILE_LANGUAGE:CXX>:${_flags}>")
    target_link_libraries(${target} PUBLIC "${_gomp}")
  else()
    message(STATUS "OpenMP: ${OpenMP_CXX_FLAGS} (${OpenMP_CXX_LIB_NAMES})")
    target_link_libraries(${target} PUBLIC OpenMP::OpenMP_CXX)
    set(BILEVEL_OPENMP_TARGET ON PARENT_SCOPE)
  endif()
endfunction()

# The CUDA kernels (src/kernels/cuda): BILEVEL_CUDA = AUTO | ON | OFF.
#
#   OFF   no CUDA at all.
#   AUTO  where nvcc exists, the kernel .cu files are compiled (for CMAKE_CUDA_ARCHITECTURES, default 90) into
#         the object library bilevel_cuda_kernels, part of the default build, so they cannot rot even where
#         LibTorch has no CUDA; where LibTorch has CUDA too, they and their LibTorch entries
#         (src/kernels/cuda/*.cpp) are linked into bilevel and fused_ops.h / quant_ops.h run them for CUDA tensors.
#   ON    as AUTO, but a missing nvcc or a LibTorch without CUDA is a configuration error.
#
# nvcc is looked for as CMake does (CMAKE_CUDA_COMPILER, CUDACXX, PATH) and then in CUDA's standard prefixes
# (/usr/local/cuda/bin, /usr/local/cuda-*/bin, newest first).
# Sets BILEVEL_CUDA_COMPILE and BILEVEL_WITH_CUDA, and writes generated/bilevel/kernels/config.h.

string(TOUPPER "${BILEVEL_CUDA}" BILEVEL_CUDA_MODE)
if(BILEVEL_CUDA_MODE MATCHES "^(TRUE|YES|Y|1)$")
  set(BILEVEL_CUDA_MODE ON)
elseif(BILEVEL_CUDA_MODE MATCHES "^(FALSE|NO|N|0)$")
  set(BILEVEL_CUDA_MODE OFF)
elseif(NOT BILEVEL_CUDA_MODE MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "BILEVEL_CUDA must be AUTO, ON or OFF, not '${BILEVEL_CUDA}'")
endif()

set(BILEVEL_CUDA_COMPILE OFF)
set(BILEVEL_WITH_CUDA OFF)
if(NOT BILEVEL_CUDA_MODE STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(BILEVEL_NVCC nvcc)
    if(NOT BILEVEL_NVCC)
      file(GLOB _bilevel_cuda_prefixes LIST_DIRECTORIES true /usr/local/cuda-*)
      list(SORT _bilevel_cuda_prefixes COMPARE NATURAL ORDER DESCENDING)
      find_program(BILEVEL_NVCC nvcc PATHS /usr/local/cuda ${_bilevel_cuda_prefixes} PATH_SUFFIXES bin NO_DEFAULT_PATH)
    endif()
    if(BILEVEL_NVCC)
      set(CMAKE_CUDA_COMPILER ${BILEVEL_NVCC} CACHE FILEPATH "CUDA compiler")
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures the kernels are compiled for")
    endif()
    enable_language(CUDA)
    set(BILEVEL_CUDA_COMPILE ON)
    # nvcc's host compiler should be the C++ compiler: with an older GCC as host compiler, nvcc's implicit link
    # directories put that GCC's libstdc++ in front of the one the C++ code was compiled for (undefined
    # references such as __cxa_call_terminate at link time).
    if(CMAKE_CUDA_HOST_COMPILER_ID AND CMAKE_CUDA_HOST_COMPILER_VERSION AND
       NOT (CMAKE_CUDA_HOST_COMPILER_ID STREQUAL CMAKE_CXX_COMPILER_ID AND
            CMAKE_CUDA_HOST_COMPILER_VERSION VERSION_EQUAL CMAKE_CXX_COMPILER_VERSION))
      message(WARNING "nvcc's host compiler (${CMAKE_CUDA_HOST_COMPILER_ID} ${CMAKE_CUDA_HOST_COMPILER_VERSION}) is "
                      "not the C++ compiler (${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}); if linking "
                      "fails on libstdc++ symbols, configure with -DCMAKE_CXX_COMPILER and -DCMAKE_CUDA_HOST_COMPILER "
                      "set to one compiler nvcc supports")
    endif()
  elseif(BILEVEL_CUDA_MODE STREQUAL "ON")
    message(FATAL_ERROR "BILEVEL_CUDA=ON but no CUDA compiler (nvcc) was found: put it on PATH, set CUDACXX or "
                        "CMAKE_CUDA_COMPILER, or configure with -DBILEVEL_CUDA=AUTO or OFF")
  endif()
endif()

# After find_package(Torch): link the kernels only where LibTorch has CUDA.
macro(bilevel_cuda_decide)
  if(TORCH_CUDA_LIBRARIES OR TARGET torch_cuda)
    set(BILEVEL_TORCH_HAS_CUDA ON)
  else()
    set(BILEVEL_TORCH_HAS_CUDA OFF)
  endif()
  if(BILEVEL_CUDA_COMPILE AND BILEVEL_TORCH_HAS_CUDA)
    set(BILEVEL_WITH_CUDA ON)
  elseif(BILEVEL_CUDA_MODE STREQUAL "ON" AND NOT BILEVEL_TORCH_HAS_CUDA)
    message(FATAL_ERROR "BILEVEL_CUDA=ON but LibTorch (${Torch_DIR}) was built without CUDA; use a CUDA build of "
                        "LibTorch or configure with -DBILEVEL_CUDA=AUTO (kernels compiled, not linked) or OFF")
  elseif(BILEVEL_CUDA_MODE STREQUAL "AUTO" AND BILEVEL_TORCH_HAS_CUDA AND NOT BILEVEL_CUDA_COMPILE)
    message(WARNING "LibTorch has CUDA but no nvcc was found: the CUDA kernels are not built, and the fused "
                    "kernels reject CUDA tensors")
  endif()
  if(BILEVEL_WITH_CUDA)
    set(BILEVEL_WITH_CUDA_VALUE 1)
    message(STATUS "CUDA kernels: built for sm_${CMAKE_CUDA_ARCHITECTURES} and linked")
  elseif(BILEVEL_CUDA_COMPILE)
    set(BILEVEL_WITH_CUDA_VALUE 0)
    message(STATUS "CUDA kernels: compiled for sm_${CMAKE_CUDA_ARCHITECTURES} only (LibTorch has no CUDA), not linked")
  else()
    set(BILEVEL_WITH_CUDA_VALUE 0)
    message(STATUS "CUDA kernels: not built (BILEVEL_CUDA=${BILEVEL_CUDA})")
  endif()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/kernels_config.h.in
                 ${CMAKE_CURRENT_BINARY_DIR}/generated/bilevel/kernels/config.h @ONLY)
endmacro()

# The kernels' object library, and, with BILEVEL_WITH_CUDA, their objects and entries in `target`.
function(bilevel_cuda_add_kernels target)
  if(NOT BILEVEL_CUDA_COMPILE)
    return()
  endif()
  file(GLOB _kernels CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cu)
  add_library(bilevel_cuda_kernels OBJECT ${_kernels})
  # The quantization kernels compute exactly what their CPU twins do (no multiply-add contraction), so a code is
  # the same integer on either device.
  # The optimizer's kernels likewise (their twins are compiled with -ffp-contract=off).
  set_source_files_properties(${PROJECT_SOURCE_DIR}/src/kernels/cuda/quant.cu ${PROJECT_SOURCE_DIR}/src/kernels/cuda/optim.cu
                              PROPERTIES COMPILE_OPTIONS "--fmad=false")
  target_include_directories(bilevel_cuda_kernels PRIVATE ${PROJECT_SOURCE_DIR}/include)
  set_target_properties(bilevel_cuda_kernels PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                        POSITION_INDEPENDENT_CODE ON)
  if(CCACHE_PROGRAM)
    set_target_properties(bilevel_cuda_kernels PROPERTIES CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  endif()
  if(BILEVEL_WITH_CUDA)
    find_package(CUDAToolkit REQUIRED)
    file(GLOB _entries CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cpp)
    target_sources(${target} PRIVATE ${_entries} $<TARGET_OBJECTS:bilevel_cuda_kernels>)
    target_link_libraries(${target} PUBLIC CUDA::cudart)
  endif()
endfunction()

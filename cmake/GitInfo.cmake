# Generates build_info.cpp with the git commit, dirty flag, compiler and library versions known at configure time.
# Re-run on every build so a new commit or an edited tree is always recorded.
# GoogleTest is otherwise found only later, in tests/; look now so its version can be recorded.
if(BILEVEL_BUILD_TESTS)
  find_package(GTest QUIET)
endif()
# A CUDA build of LibTorch finds the toolkit: CUDAToolkit (2.x) or the old FindCUDA (1.x).
if(CUDAToolkit_VERSION)
  set(BILEVEL_CUDA_TOOLKIT_VERSION ${CUDAToolkit_VERSION})
elseif(CUDA_VERSION_STRING)
  set(BILEVEL_CUDA_TOOLKIT_VERSION ${CUDA_VERSION_STRING})
elseif(CUDA_VERSION)
  set(BILEVEL_CUDA_TOOLKIT_VERSION ${CUDA_VERSION})
elseif(CMAKE_CUDA_COMPILER_VERSION)
  set(BILEVEL_CUDA_TOOLKIT_VERSION ${CMAKE_CUDA_COMPILER_VERSION})
else()
  set(BILEVEL_CUDA_TOOLKIT_VERSION "")
endif()
set(BILEVEL_BUILD_INFO_IN ${PROJECT_SOURCE_DIR}/cmake/build_info.cpp.in)
add_custom_target(bilevel_git_info
  COMMAND ${CMAKE_COMMAND}
    -DSRC=${PROJECT_SOURCE_DIR} -DIN=${BILEVEL_BUILD_INFO_IN} -DOUT=${CMAKE_CURRENT_BINARY_DIR}/build_info.cpp
    "-DCOMPILER=${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}"
    -DTORCH_VERSION=${Torch_VERSION} -DEIGEN_VERSION=${Eigen3_VERSION}
    -DYAMLCPP_VERSION=${yaml-cpp_VERSION} -DSPDLOG_VERSION=${spdlog_VERSION}
    -DBUILD_TYPE=${CMAKE_BUILD_TYPE}
    -DPROJECT_VERSION=${PROJECT_VERSION} -DCMAKE_VERSION_USED=${CMAKE_VERSION}
    -DGTEST_VERSION=${GTest_VERSION} -DCUDA_TOOLKIT_VERSION=${BILEVEL_CUDA_TOOLKIT_VERSION}
    -P ${PROJECT_SOURCE_DIR}/cmake/WriteBuildInfo.cmake
  BYPRODUCTS ${CMAKE_CURRENT_BINARY_DIR}/build_info.cpp
  COMMENT "Recording git commit"
  VERBATIM)  # so "GNU 12.2.0" reaches the script as one argument, not as "GNU\ 12.2.0"

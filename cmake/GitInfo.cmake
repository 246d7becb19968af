# Generates build_info.cpp with the git commit, dirty flag, compiler and library versions known at configure time.
# Re-run on every build so a new commit or an edited tree is always recorded.
set(BILEVEL_BUILD_INFO_IN ${PROJECT_SOURCE_DIR}/cmake/build_info.cpp.in)
add_custom_target(bilevel_git_info
  COMMAND ${CMAKE_COMMAND}
    -DSRC=${PROJECT_SOURCE_DIR} -DIN=${BILEVEL_BUILD_INFO_IN} -DOUT=${CMAKE_CURRENT_BINARY_DIR}/build_info.cpp
    -DCOMPILER="${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}"
    -DTORCH_VERSION=${Torch_VERSION} -DEIGEN_VERSION=${Eigen3_VERSION}
    -DYAMLCPP_VERSION=${yaml-cpp_VERSION} -DSPDLOG_VERSION=${spdlog_VERSION}
    -DBUILD_TYPE=${CMAKE_BUILD_TYPE}
    -P ${PROJECT_SOURCE_DIR}/cmake/WriteBuildInfo.cmake
  BYPRODUCTS ${CMAKE_CURRENT_BINARY_DIR}/build_info.cpp
  COMMENT "Recording git commit")

execute_process(COMMAND git -C ${SRC} rev-parse HEAD OUTPUT_VARIABLE GIT_COMMIT
  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR GIT_COMMIT STREQUAL "")
  set(GIT_COMMIT "unknown")
endif()
execute_process(COMMAND git -C ${SRC} status --porcelain --untracked-files=no OUTPUT_VARIABLE GIT_STATUS
  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(GIT_STATUS STREQUAL "")
  set(GIT_DIRTY "false")
else()
  set(GIT_DIRTY "true")
endif()
configure_file(${IN} ${OUT}.tmp @ONLY)
# Only touch the file when it changed, so an unchanged tree does not relink.
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})

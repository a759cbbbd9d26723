# SPDX-License-Identifier: Apache-2.0
# stickylb_instrument_all_targets(COMPILE flags... LINK flags...): adds the flags
# to every C/C++ library and executable defined so far (in this directory and
# below), e.g. for a sanitizer build. BPF objects are custom commands, untouched.
function(_stickylb_targets_below dir out)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(subdir IN LISTS subdirs)
    _stickylb_targets_below("${subdir}" below)
    list(APPEND targets ${below})
  endforeach()
  set(${out} ${targets} PARENT_SCOPE)
endfunction()

function(stickylb_instrument_all_targets)
  cmake_parse_arguments(ARG "" "" "COMPILE;LINK" ${ARGN})
  _stickylb_targets_below("${CMAKE_CURRENT_SOURCE_DIR}" targets)
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    if(type MATCHES "^(STATIC_LIBRARY|SHARED_LIBRARY|MODULE_LIBRARY|OBJECT_LIBRARY|EXECUTABLE)$")
      target_compile_options(${target} PRIVATE ${ARG_COMPILE})
      if(NOT type MATCHES "^(STATIC_LIBRARY|OBJECT_LIBRARY)$")
        target_link_options(${target} PRIVATE ${ARG_LINK})
      endif()
    endif()
  endforeach()
endfunction()

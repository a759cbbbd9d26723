# SPDX-License-Identifier: Apache-2.0
# stickylb_bpf_object(NAME SOURCE [SKELETON]): compiles SOURCE with clang for the
# BPF target into ${CMAKE_BINARY_DIR}/bpf/NAME.bpf.o and, with SKELETON, generates
# ${STICKYLB_GENERATED_DIR}/NAME.skel.h with bpftool. Creates target NAME_bpf.
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-multiarch OUTPUT_VARIABLE STICKYLB_MULTIARCH
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)

function(stickylb_bpf_object name source)
  cmake_parse_arguments(ARG "SKELETON" "" "" ${ARGN})
  get_filename_component(source_path ${source} ABSOLUTE)
  set(object ${CMAKE_BINARY_DIR}/bpf/${name}.bpf.o)
  file(GLOB bpf_headers ${PROJECT_SOURCE_DIR}/bpf/*.h ${PROJECT_SOURCE_DIR}/include/stickylb/*.h)
  add_custom_command(
    OUTPUT ${object}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/bpf
    COMMAND ${CLANG} -O2 -g -Wall -Werror -target bpf
            -I/usr/include/${STICKYLB_MULTIARCH} -I${PROJECT_SOURCE_DIR}/include -I${PROJECT_SOURCE_DIR}/bpf
            -c ${source_path} -o ${object}
    DEPENDS ${source_path} ${bpf_headers}
    COMMENT "BPF ${name}"
    VERBATIM)
  set(outputs ${object})
  if(ARG_SKELETON)
    set(skeleton ${STICKYLB_GENERATED_DIR}/${name}.skel.h)
    add_custom_command(
      OUTPUT ${skeleton}
      COMMAND ${BPFTOOL} gen skeleton ${object} name ${name}_bpf > ${skeleton}
      DEPENDS ${object}
      COMMENT "BPF skeleton ${name}"
      VERBATIM)
    list(APPEND outputs ${skeleton})
  endif()
  add_custom_target(${name}_bpf ALL DEPENDS ${outputs})
endfunction()

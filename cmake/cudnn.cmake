# cuDNN for the CUDA backend (included by the root CMakeLists.txt once the
# CUDA toolkit is found). Looked for as a packager's build would: cudnn.h and
# libcudnn under CUDNN_ROOT / CUDNN_ROOT_DIR (CMake variables or environment)
# first, then the CUDA toolkit's own directories, then the system's. Found
# (cuDNN 9 or later), it sets TD_HAVE_CUDNN and makes the imported target
# TD::cudnn; absent, or with -DTD_CUDNN=OFF, one line says so and the CUDA
# backend keeps its im2col + cuBLASLt convolution.
set(TD_HAVE_CUDNN OFF)
if(NOT TD_CUDNN)
  message(STATUS "turbodiff: TD_CUDNN=OFF, conv3d runs as im2col + cuBLASLt on the CUDA backend")
  return()
endif()

set(TD_CUDNN_HINTS ${CUDNN_ROOT} ${CUDNN_ROOT_DIR} $ENV{CUDNN_ROOT} $ENV{CUDNN_ROOT_DIR})
find_path(CUDNN_INCLUDE_DIR cudnn.h
  HINTS ${TD_CUDNN_HINTS} ${CUDAToolkit_INCLUDE_DIRS}
  PATH_SUFFIXES include)
find_library(CUDNN_LIBRARY cudnn
  HINTS ${TD_CUDNN_HINTS} ${CUDAToolkit_LIBRARY_DIR}
  PATH_SUFFIXES lib64 lib lib/x64)
mark_as_advanced(CUDNN_INCLUDE_DIR CUDNN_LIBRARY)

if(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
  message(STATUS "turbodiff: cuDNN not found (cudnn.h: ${CUDNN_INCLUDE_DIR}, libcudnn: ${CUDNN_LIBRARY}; "
                 "set CUDNN_ROOT to its prefix), conv3d runs as im2col + cuBLASLt on the CUDA backend")
  return()
endif()

# The version from the header (cuDNN 9 keeps it in cudnn_version.h): the host
# code uses cuDNN 9's status categories and cudnnGetLastErrorString.
file(STRINGS "${CUDNN_INCLUDE_DIR}/cudnn_version.h" TD_CUDNN_VERSION_LINES
     REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) +[0-9]+")
set(TD_CUDNN_VERSION "")
foreach(part MAJOR MINOR PATCHLEVEL)
  string(REGEX MATCH "CUDNN_${part} +([0-9]+)" m "${TD_CUDNN_VERSION_LINES}")
  list(APPEND TD_CUDNN_VERSION "${CMAKE_MATCH_1}")
endforeach()
list(JOIN TD_CUDNN_VERSION "." TD_CUDNN_VERSION)
if(TD_CUDNN_VERSION VERSION_LESS 9)
  message(STATUS "turbodiff: cuDNN ${TD_CUDNN_VERSION} at ${CUDNN_INCLUDE_DIR} is older than 9, "
                 "conv3d runs as im2col + cuBLASLt on the CUDA backend")
  return()
endif()

add_library(TD::cudnn UNKNOWN IMPORTED)
set_target_properties(TD::cudnn PROPERTIES
  IMPORTED_LOCATION "${CUDNN_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_INCLUDE_DIR}")
set(TD_HAVE_CUDNN ON)
message(STATUS "turbodiff: cuDNN ${TD_CUDNN_VERSION} (${CUDNN_LIBRARY}) runs conv3d on the CUDA backend")

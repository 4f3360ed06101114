# The lines patches/ffmpeg-8.1/0001-*.patch adds to FFmpeg's configure, on
# their own. Each goes to the place named in the comment above it.

# Help text, in the "External library support" list (alphabetical):
  --enable-libturbodiff    enable video generation via libturbodiff [no]

# EXTERNAL_LIBRARY_LIST (alphabetical, after libtorch):
    libturbodiff

# Filter dependencies (with the other *_filter_deps, alphabetical): both
# filters run generation on their own thread.
turbodiff_filter_deps="libturbodiff threads"
turbodiff_i2v_filter_deps="libturbodiff threads"

# Library checks (with the other "enabled lib..." lines): found through
# turbodiff.pc, which the library's CMake install writes.
enabled libturbodiff      && require_pkg_config libturbodiff turbodiff turbodiff.h td_engine_open

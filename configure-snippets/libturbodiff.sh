#@# The lines patches/ffmpeg-*/0001-*.patch adds to FFmpeg's configure, on
#@# their own. tools/ffmpeg/make-patches.py inserts each block before the
#@# line that its "#@ before" names (the line must occur once).
#@#
#@# Help text, in the "External library support" list (alphabetical):
#@ before   --enable-libtwolame
  --enable-libturbodiff    enable video generation via libturbodiff [no]
#@# EXTERNAL_LIBRARY_LIST (alphabetical, after libtorch):
#@ before     libtwolame
    libturbodiff
#@# Filter dependencies (alphabetical): both filters run generation on
#@# their own thread.
#@ before unsharp_opencl_filter_deps=
turbodiff_filter_deps="libturbodiff threads"
turbodiff_i2v_filter_deps="libturbodiff threads"
#@# Library check: found through turbodiff.pc, which the library's install
#@# writes; 0.4.0 is the first release with the API the filters use (td_job_resolve,
#@# td_job_estimate).
#@ before enabled libtwolame
enabled libturbodiff      && require_pkg_config libturbodiff "turbodiff >= 0.4.0" turbodiff.h td_engine_open

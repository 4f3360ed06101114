#@# The lines patches/ffmpeg-*/0001-*.patch adds to libavfilter/allfilters.c.
#@ before extern const FFFilter ff_vf_unpremultiply;
extern const FFFilter ff_vf_turbodiff_i2v;
#@ after extern const FFFilter ff_vsrc_testsrc2;
extern const FFFilter ff_vsrc_turbodiff;

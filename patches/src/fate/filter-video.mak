#@# The FATE tests patches/ffmpeg-*/0003-*.patch adds to tests/fate/filter-video.mak.
#@ before FATE_SAMPLES_FFPROBE += $(FATE_METADATA_FILTER-yes)
# turbodiff runs on the small model libturbodiff installs as its default
# (64x64 toy shapes), so these tests need no samples; TURBODIFF_MODEL_DIR is
# cleared so that the installed default is the model they check. Its pixels
# come from float kernels chosen per CPU (the BLAS's, AVX-512 or AVX2 paths),
# which agree to rounding, not bit for bit, so they are blanked with lutrgb
# (libturbodiff's own tests hold them to tolerances); frame count, size,
# format and timestamps are checked.
TURBODIFF_FATE_OPTS = prompt=red:seed=1:device=cpu
FATE_TURBODIFF-$(call FILTERFRAMECRC, TURBODIFF LUTRGB, LAVFI_INDEV) += fate-turbodiff-t2v
fate-turbodiff-t2v: CMD = framecrc -f lavfi -i turbodiff=$(TURBODIFF_FATE_OPTS):frames=5,lutrgb=r=0:g=0:b=0

FATE_TURBODIFF-$(call FILTERFRAMECRC, TURBODIFF LUTRGB, LAVFI_INDEV) += fate-turbodiff-t2v-clips
fate-turbodiff-t2v-clips: CMD = framecrc -f lavfi -i turbodiff=$(TURBODIFF_FATE_OPTS):frames=3:clips=2,lutrgb=r=0:g=0:b=0

# An image-to-video model is not installed: this test runs when
# TURBODIFF_I2V_MODEL names one; its pixels are blanked as above.
ifdef TURBODIFF_I2V_MODEL
FATE_TURBODIFF-$(call FILTERFRAMECRC, TURBODIFF_I2V TESTSRC2 LUTRGB FORMAT, LAVFI_INDEV) += fate-turbodiff-i2v-each
fate-turbodiff-i2v-each: CMD = framecrc -lavfi testsrc2=s=64x32:r=2:d=1,format=yuv420p,turbodiff_i2v=model=$(TURBODIFF_I2V_MODEL):prompt=fate:size=64x32:steps=1:seed=1:device=cpu:mode=each:frames=3,lutrgb=r=0:g=0:b=0
endif

$(FATE_TURBODIFF-yes): export TURBODIFF_MODEL_DIR =
FATE_FFMPEG += $(FATE_TURBODIFF-yes)
fate-turbodiff: $(FATE_TURBODIFF-yes)


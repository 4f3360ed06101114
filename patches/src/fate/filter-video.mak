#@ before FATE_SAMPLES_FFPROBE += $(FATE_METADATA_FILTER-yes)
# turbodiff needs model sets, which FATE does not ship: these tests run only
# when TURBODIFF_MODEL names a text-to-video model directory and
# TURBODIFF_I2V_MODEL an image-to-video one, e.g.
#   make fate-turbodiff TURBODIFF_MODEL=/path/to/tiny-wan TURBODIFF_I2V_MODEL=/path/to/tiny-wan-i2v
# Generated pixels depend on floating-point order, so they are blanked with
# lutrgb: the tests check frame count, size, format and timestamps exactly.
TURBODIFF_FATE_OPTS = prompt=fate:size=64x32:steps=1:seed=1:device=cpu
ifdef TURBODIFF_MODEL

FATE_TURBODIFF-$(call FILTERFRAMECRC, TURBODIFF LUTRGB, LAVFI_INDEV) += fate-turbodiff-t2v
fate-turbodiff-t2v: CMD = framecrc -f lavfi -i turbodiff=model=$(TURBODIFF_MODEL):$(TURBODIFF_FATE_OPTS):frames=5,lutrgb=r=0:g=0:b=0

FATE_TURBODIFF-$(call FILTERFRAMECRC, TURBODIFF LUTRGB, LAVFI_INDEV) += fate-turbodiff-t2v-clips
fate-turbodiff-t2v-clips: CMD = framecrc -f lavfi -i turbodiff=model=$(TURBODIFF_MODEL):$(TURBODIFF_FATE_OPTS):frames=3:clips=2,lutrgb=r=0:g=0:b=0
endif

ifdef TURBODIFF_I2V_MODEL
FATE_TURBODIFF-$(call FILTERFRAMECRC, TURBODIFF_I2V TESTSRC2 LUTRGB FORMAT, LAVFI_INDEV) += fate-turbodiff-i2v-each
fate-turbodiff-i2v-each: CMD = framecrc -lavfi testsrc2=s=64x32:r=2:d=1,format=rgb24,turbodiff_i2v=model=$(TURBODIFF_I2V_MODEL):$(TURBODIFF_FATE_OPTS):mode=each:frames=3,lutrgb=r=0:g=0:b=0
endif

FATE_FFMPEG += $(FATE_TURBODIFF-yes)
fate-turbodiff: $(FATE_TURBODIFF-yes)


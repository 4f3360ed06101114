# turbodiff: the two commands README.md names.
#   make demo   install what is missing, build everything, run the main job
#   make check  build and run every test tier
# Both run as root on a fresh Debian machine with nothing pre-installed.

SHELL := /bin/bash
ROOT := $(CURDIR)
BUILD ?= $(ROOT)/build
BUILD_ASAN ?= $(ROOT)/build-asan
BUILD_FUZZ ?= $(ROOT)/build-fuzz
VENV ?= $(ROOT)/.venv
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60

DEB_PACKAGES := build-essential cmake pkg-config clang libclang-rt-dev \
                libopenblas-dev libjansson-dev zlib1g-dev \
                python3 python3-venv python3-pip git ca-certificates \
                valgrind \
                libfreetype-dev libharfbuzz-dev fonts-dejavu-core xz-utils \
                libx264-dev

.PHONY: all deps venv build build-asan build-fuzz check check-unit check-asan \
        check-valgrind check-fuzz check-parity check-ffmpeg check-docs check-toy check-patches ffmpeg demo clean

all: build

# make demo and make check install what is missing first; make build (and
# every other target) alone never runs apt-get. Order-only, so that under
# make -j the packages are in place before anything builds.
NEED_DEPS := $(if $(filter deps demo check,$(MAKECMDGOALS)),deps)

# The tree is configured from the root CMakeLists.txt. A build directory
# configured from engine/ (before it existed) is reset rather than refused.
CMAKE_ROOT_CACHE = @grep -qsx 'CMAKE_HOME_DIRECTORY:INTERNAL=$(ROOT)' $(1)/CMakeCache.txt || \
    rm -rf $(1)/CMakeCache.txt $(1)/CMakeFiles
# Warnings are errors in the developer's builds; packagers configure with
# cmake directly and leave TD_WERROR off.
CMAKE_FLAGS = -DTD_WERROR=ON

# Install only what dpkg says is missing, so a set-up machine skips apt.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "turbodiff: installing Debian packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Python is for tests and fixtures only: the library never needs it.
venv: $(VENV)/.installed
$(VENV)/.installed: tests/parity/requirements.txt | $(NEED_DEPS)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/parity/requirements.txt
	touch $@

build: | $(NEED_DEPS)
	$(call CMAKE_ROOT_CACHE,$(BUILD))
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)

# Sanitized tests build with clang, so the tree is also kept warning-free
# under a second compiler.
build-asan: | $(NEED_DEPS)
	$(call CMAKE_ROOT_CACHE,$(BUILD_ASAN))
	CC=clang cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DTD_SANITIZE=ON -DTD_CUDA=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD_ASAN) -j$(JOBS)

build-fuzz: | $(NEED_DEPS)
	$(call CMAKE_ROOT_CACHE,$(BUILD_FUZZ))
	CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DTD_FUZZ=ON -DTD_SANITIZE=ON -DTD_CUDA=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD_FUZZ) -j$(JOBS) --target fuzzers

check-unit: build
	ctest --test-dir $(BUILD) --output-on-failure

check-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --test-dir $(BUILD_ASAN) --output-on-failure

# The public API's job runs (cancel included) and the PNG reader under
# valgrind: no invalid access, no leak, in the build users get.
VALGRIND_TESTS = test_pipeline_run test_pipeline_i2v test_png
check-valgrind: build
	@set -e; for t in $(VALGRIND_TESTS); do \
	    echo "valgrind: $$t"; \
	    valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	        --suppressions=$(ROOT)/tests/valgrind.supp \
	        $(BUILD)/tests/$$t | tail -n 1; \
	    test $${PIPESTATUS[0]} -eq 0; \
	done

# Each fuzzer runs FUZZ_SECONDS from its committed corpus; a finding fails.
check-fuzz: build-fuzz
	@set -e; for f in $(BUILD_FUZZ)/tests/fuzz_*; do \
	    [ -x "$$f" ] || continue; name=$$(basename $$f); \
	    mkdir -p $(BUILD_FUZZ)/corpus/$$name; \
	    echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(BUILD_FUZZ)/ \
	        $(BUILD_FUZZ)/corpus/$$name tests/fuzz/corpus/$$name 2>&1 | tail -n 12; \
	    test $${PIPESTATUS[0]} -eq 0; \
	done

check-parity: build venv
	cd tests/parity && TD_BUILD=$(BUILD) $(VENV)/bin/python -m pytest -q -p no:cacheprovider .

# FFmpeg 8.1 from Debian's source package, minimal configuration, built once
# under build-ffmpeg/ (re-runs only rebuild what changed).
FFMPEG_BUILD ?= $(ROOT)/build-ffmpeg
ffmpeg: | $(NEED_DEPS)
	tools/ffmpeg/build-ffmpeg.sh --debian 8.1 --minimal --builddir $(FFMPEG_BUILD) -j$(JOBS)

# Real generation runs on the committed tiny random model set; the series'
# FATE tests run on the installed default model as FATE runs them.
check-ffmpeg: ffmpeg
	TURBODIFF_MODEL=$(ROOT)/tests/data/pipeline TURBODIFF_I2V_MODEL=$(ROOT)/tests/data/pipeline/i2v \
	    tests/ffmpeg/run.sh $$(ls -d $(FFMPEG_BUILD)/minimal-8.1.* | sort -V | tail -n 1)
	$(MAKE) -C $$(ls -d $(FFMPEG_BUILD)/minimal-8.1.* | sort -V | tail -n 1) fate-turbodiff \
	    TURBODIFF_I2V_MODEL=$(ROOT)/tests/data/pipeline/i2v

# The committed patch series must be what tools/ffmpeg/make-patches.py makes
# from libavfilter/ and its pieces (patches/src/, configure-snippets/) on the
# release trees that make ffmpeg fetched.
check-patches: ffmpeg
	tools/ffmpeg/make-patches.py --check

# Every ffmpeg / turbodiff command of README.md and of the filter docs, as
# written, against this build (tiny models stand in for the named ones).
check-docs: build ffmpeg
	python3 tests/ffmpeg/doc_commands.py $$(ls -d $(FFMPEG_BUILD)/minimal-8.1.* | sort -V | tail -n 1) \
	    $(BUILD)/tools/turbodiff

# The default model (models/toy) through the built ffmpeg with no model
# option: 50 fixed prompt/seed pairs must show the named colour, background
# and motion in at least 80% of the clips, and a repeat must be identical.
check-toy: ffmpeg venv
	env -u TURBODIFF_MODEL_DIR $(VENV)/bin/python tools/toy/evaluate.py \
	    --ffmpeg $$(ls -d $(FFMPEG_BUILD)/minimal-8.1.* | sort -V | tail -n 1)/ffmpeg --n 50 --min-pass 0.8

check: deps check-unit check-asan check-valgrind check-fuzz check-parity check-patches check-ffmpeg check-docs check-toy
	@echo "turbodiff: all test tiers passed"

demo: deps build ffmpeg
	@bash tools/demo.sh $(BUILD) $$(ls -d $(FFMPEG_BUILD)/minimal-8.1.* | sort -V | tail -n 1)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) $(FFMPEG_BUILD)

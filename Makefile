# The two set-up commands of the README are `make serve` and `make test`; both
# install missing Debian packages and build first.
BUILD_DIR ?= build
CMAKE_ARGS ?=
JOBS ?= $(shell nproc)
# Build only these targets (e.g. TARGETS="moegraphd moegraph"); empty = all.
TARGETS ?=

.PHONY: all deps configure build test serve check-golden image-test format clean

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS); fi

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) $(if $(TARGETS),--target $(TARGETS))

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 1200

serve: build
	@$(BUILD_DIR)/moegraphd --config config/moegraphd.yaml $(ARGS)

check-golden: build
	@$(BUILD_DIR)/moegraph check-golden tests/fixtures/dsv4-tiny

# Builds the Dockerfile's CPU variant with podman and runs the image
# (tests/image/image_test.sh; root, caches in build-image/).
image-test:
	@tests/image/image_test.sh

format:
	@git ls-files '*.h' '*.cc' '*.cu' '*.cuh' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)

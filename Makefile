# Switchboard: the two commands a person needs are `make run` and `make test`.
# Both install missing Debian packages first (scripts/deps.sh), then build with CMake.

BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)

.PHONY: all deps build run test test-asan format clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSB_WERROR=ON $(CMAKE_EXTRA) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/run.sh $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure --timeout 900

test-asan:
	@$(MAKE) test BUILD=build-asan BUILD_TYPE=Debug CMAKE_EXTRA=-DSB_ASAN=ON

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan

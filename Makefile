# Switchboard: the two commands a person needs are `make run` and `make test`.
# Both install missing Debian packages first (scripts/deps.sh), then build with CMake.

BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)

FUZZ_SECONDS ?= 300

.PHONY: all deps build run test ctest fuzz-smoke fuzz test-asan bench bench-steal soak format format-check clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSB_WERROR=ON $(CMAKE_EXTRA) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

run: build
	@scripts/run.sh $(BUILD)

# Every unit, end-to-end and corpus-replay test, then each fuzz target for a few seconds.
test: ctest
	@$(MAKE) --no-print-directory fuzz-smoke

ctest: build
	@cd $(BUILD) && ctest --output-on-failure --timeout 900

fuzz-smoke: deps
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSB_FUZZ=ON \
		-DSB_FUZZ_SECONDS=$(or $(SMOKE_SECONDS),10) >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_frame fuzz_envelope fuzz_jwt fuzz_token fuzz_head fuzz_notify_inject fuzz_render
	@cd build-fuzz && ctest --output-on-failure -R '^fuzz_run_'

# Long fuzzing; new inputs that add coverage are merged into the committed corpus.
fuzz: deps
	@$(MAKE) --no-print-directory fuzz-smoke SMOKE_SECONDS=$(FUZZ_SECONDS)
	@for t in frame envelope jwt token head notify_inject render; do \
		build-fuzz/tests/fuzz/fuzz_$$t -merge=1 tests/fuzz/corpus/$$t build-fuzz/tests/fuzz/new-$$t; \
	done

# Load generator against Switchboard, the bare relay and the bus alone, raw NATS, SQLite
# and hand-off rates: bench/results/latest.{json,md} and latency.png. SB_BENCH_QUICK=1
# for a short run.
bench: build
	@bench/run.sh $(BUILD)

# A 10-minute soak at steady load (chat-rate plus a broadcast a second), RSS of every
# server sampled every 10 s: bench/results/soak/latest.md.
soak: build
	@SB_BENCH_ONLY=soak SB_BENCH_OUT=bench/results/soak bench/run.sh $(BUILD)

# 5,000 msg/s twenty times, relay, bus alone and Switchboard in turn (~10 min), the p99
# of each run beside the hypervisor's steal during it: bench/results/steal/latest.md
# (SB_BENCH_OUT elsewhere, e.g. with SB_BENCH_HALT_POLL_NS).
bench-steal: build
	@SB_BENCH_ONLY=rates SB_BENCH_RATES=$${SB_BENCH_RATES:-5000} \
	 SB_BENCH_REPEAT=$${SB_BENCH_REPEAT:-20} SB_BENCH_SECONDS=$${SB_BENCH_SECONDS:-8} \
	 SB_BENCH_OUT=$${SB_BENCH_OUT:-bench/results/steal} bench/run.sh $(BUILD)

# The same suite (unit, end-to-end, deploy, corpus replay) under ASan + UBSan.
test-asan:
	@$(MAKE) --no-print-directory ctest BUILD=build-asan BUILD_TYPE=Debug CMAKE_EXTRA=-DSB_ASAN=ON

format:
	@clang-format -i $$(git ls-files --cached --others --exclude-standard '*.c' '*.h')

format-check: deps
	@clang-format --dry-run --Werror $$(git ls-files --cached --others --exclude-standard '*.c' '*.h') && echo "clang-format: clean"


clean:
	rm -rf $(BUILD) build-asan build-fuzz

# Makefile: one-word entry points over apt-get and the CMake presets.
#
#   make run    install what is missing, build (release), start tallyd on its defaults
#   make test   install what is missing, build with warnings as errors, run every test
#   make asan   build and test with AddressSanitizer + UBSan
#   make bench  build (release) and run the engine benchmarks
#   make bench-wal  build (release) and run the durability benchmarks
#
# Presets live in CMakePresets.json; build trees in build/<preset>/.

SHELL := /bin/bash
MAKEFLAGS += --no-print-directory
.SHELLFLAGS := -eu -o pipefail -c

# Debian 12 packages the build needs.  `deps` installs only the missing ones and
# runs `apt-get update` only when something is missing.
PACKAGES := cmake g++ make libboost1.81-dev libabsl-dev libxxhash-dev libbenchmark-dev \
            libgtest-dev
# The `tally` command line's --xlsx exports (tools/cli/), found through pkg-config.
PACKAGES += libxlsxwriter-dev pkgconf

JOBS ?= $(shell nproc)
# Tests and the warnings-as-errors build run two at a time: CI machines are small.
TEST_JOBS ?= 2
BENCH_ARGS ?=
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all deps build run test asan bench bench-wal compare debug fuzz format clean

all: build

deps:
	@missing=""; \
	for p in $(PACKAGES); do \
	  status=$$(dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null || true); \
	  case "$$status" in *"install ok installed"*) ;; *) missing="$$missing $$p" ;; esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

build: deps
	cmake --preset release
	cmake --build --preset release -j $(JOBS)

# tallyd on its defaults: ./tally-data, 127.0.0.1:7411, shards and I/O
# threads from the core count (TALLYD_FLAGS adds flags).  Ctrl-C stops it cleanly.
TALLYD_FLAGS ?=
run: build
	./build/release/tallyd $(TALLYD_FLAGS)

test: deps
	cmake --preset ci
	cmake --build --preset ci -j $(TEST_JOBS)
	ctest --preset ci --output-on-failure --no-tests=error -j $(TEST_JOBS)

# The model test runs its full million operations in `make test`; under the
# sanitizers (3-4x slower) a quarter of them checks the same code paths.
ASAN_MODEL_OPS ?= 250000
# -O1 -g1 (CMakePresets.json): half the compile time of -O2 -g, with line
# numbers in every sanitizer report; CI's time is mostly this build.
asan: deps
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)
	TALLY_MODEL_OPS=$(ASAN_MODEL_OPS) ctest --preset asan --output-on-failure --no-tests=error -j $(TEST_JOBS)

debug: deps
	cmake --preset debug
	cmake --build --preset debug -j $(JOBS)

bench: deps
	cmake --preset release
	cmake --build --preset release -j $(JOBS) --target ledger_bench
	./build/release/bench/ledger_bench $(BENCH_ARGS)

# Durability benchmarks (bench/wal_bench.cc): group commit against raw fdatasync,
# replay, start from a 1M-wallet snapshot, writer pause during a snapshot.
# Real files under $TALLY_BENCH_DIR (default /tmp); needs ~3 GB of disk and ~6 GB of RAM.
bench-wal: deps
	cmake --preset release
	cmake --build --preset release -j $(JOBS) --target wal_bench
	./build/release/bench/wal_bench $(BENCH_ARGS)

# tally side by side with Redis 7 and PostgreSQL 15 (issue 5, docs/BENCH.md):
# installs redis-server and postgresql if missing, runs its own instances,
# prints the table and writes bench/compare/results.md.
compare: deps
	bash bench/compare/run

# Fuzz a decoder (FUZZ_TARGET: codec_fuzz or protocol_fuzz) with libFuzzer for FUZZ_SECONDS (clang-14, not in CI:
# CI runs the decoder's unit tests, which include random and mutated input).
FUZZ_SECONDS ?= 60
FUZZ_TARGET ?= codec_fuzz
fuzz: deps
	@command -v clang++-14 >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-14 libclang-rt-14-dev
	CXX=clang++-14 cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTALLY_FUZZ=ON -DTALLY_BUILD_BENCH=OFF
	cmake --build build/fuzz -j $(JOBS) --target $(FUZZ_TARGET)
	mkdir -p build/fuzz/corpus-$(FUZZ_TARGET)
	./build/fuzz/tests/$(FUZZ_TARGET) -max_total_time=$(FUZZ_SECONDS) build/fuzz/corpus-$(FUZZ_TARGET)

# Reformat the C++ sources (needs clang-format; not part of `deps`).
format:
	git ls-files -co --exclude-standard '*.h' '*.cc' | xargs -r clang-format -i

clean:
	rm -rf build

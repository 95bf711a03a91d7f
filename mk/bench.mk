# Issue 5: `make bench` measures the filter's cost per request, side by side with a gateway
# without it, a no-op Wasm filter and Envoy's own checks; writes BENCHMARKS.md. Not part of
# `make test`. Every setting below can be given on the command line, e.g.
#   make bench BENCH_DURATION=5 BENCH_ROUNDS=3
# One run takes about 7 minutes on 2 CPUs (plus the builds on a fresh machine).

.PHONY: bench bench-setup bench-wasm bench-micro bench-hotpath bench-envoy bench-report

# Where the bench builds go: separate target directories, so that the bench builds never
# overwrite the artifacts of `make build`/`make cli` (the crate is cdylib + rlib, whose
# file names carry no hash).
BENCH_TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/bench
BENCH_OUT ?= $(BENCH_TARGET_DIR)/out
BENCH_MAIN_TARGET := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

# Load: seconds per measured run, interleaved rounds per variant, warm-up seconds per
# variant, wrk connections and threads, certificates in rotation, cache size of 6b.
BENCH_DURATION ?= 10
BENCH_ROUNDS ?= 3
BENCH_WARMUP ?= 3
BENCH_CONNECTIONS ?= 16
BENCH_WRK_THREADS ?= 1
BENCH_CERTS ?= 1000
BENCH_ROTATION_CACHE ?= 1024
# Only these variants (comma-separated ids: 1,2,3,4,4h,4p,5,6,6b,6r); empty: all.
BENCH_VARIANTS ?=
# Extra arguments for criterion, e.g. `--measurement-time 5`.
BENCH_MICRO_ARGS ?=
# The markdown file whose generated section the run replaces; empty: none.
BENCH_REPORT ?= $(CURDIR)/BENCHMARKS.md

bench:
	@$(MAKE) --no-print-directory bench-micro
	@$(MAKE) --no-print-directory bench-hotpath
	@$(MAKE) --no-print-directory bench-envoy

# wrk (load), binaryen (only to report the size wasm-opt would reach), Node (WASI engine).
bench-setup:
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; \
	  apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	@command -v wasm-opt >/dev/null || { echo "installing binaryen (Debian package, for wasm-opt)"; \
	  apt-get install -y -qq binaryen >/dev/null || echo "binaryen unavailable: wasm-opt size not reported"; }
	@command -v node >/dev/null || { echo "Node.js is required for the Wasm hot path" >&2; exit 1; }
	@rustup target add wasm32-wasip1 >/dev/null

# The filter as `make build` ships it (after wasm-opt), and the no-op filter (its own
# Cargo project).
bench-wasm: bench-setup build
	@mkdir -p $(BENCH_OUT)
	cp $(WASM) $(BENCH_OUT)/mtls_guard.wasm
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR)/noop-filter $(CARGO) build --release \
	  --target wasm32-wasip1 --manifest-path bench/noop-filter/Cargo.toml
	cp $(BENCH_TARGET_DIR)/noop-filter/wasm32-wasip1/release/noop_filter.wasm $(BENCH_OUT)/noop_filter.wasm

# criterion, native. The bench profile turns unwinding back on for the binaries it builds
# besides the bench (the CLI), so that the library is compiled once, not once per panic
# strategy into the same file name.
bench-micro:
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR)/micro CARGO_PROFILE_BENCH_PANIC=unwind \
	  $(CARGO) bench --bench micro -- $(BENCH_MICRO_ARGS)

# The hot path natively and inside V8 (Node's WASI): the wasm/native factor.
bench-hotpath: bench-setup
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR)/hotpath $(CARGO) build --release \
	  --manifest-path bench/hotpath/Cargo.toml
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR)/hotpath $(CARGO) build --release \
	  --target wasm32-wasip1 --manifest-path bench/hotpath/Cargo.toml
	@mkdir -p $(BENCH_OUT)
	$(BENCH_TARGET_DIR)/hotpath/release/mtls-guard-hotpath > $(BENCH_OUT)/hotpath-native.json
	node --no-warnings bench/hotpath/run-wasi.mjs \
	  $(BENCH_TARGET_DIR)/hotpath/wasm32-wasip1/release/mtls-guard-hotpath.wasm > $(BENCH_OUT)/hotpath-wasm.json
	@echo "native: $$(cat $(BENCH_OUT)/hotpath-native.json)"
	@echo "wasm:   $$(cat $(BENCH_OUT)/hotpath-wasm.json)"

# Envoy side by side; reads the results of bench-micro and bench-hotpath when present and
# writes the report into $(BENCH_REPORT).
bench-envoy: bench-setup setup-envoy bench-wasm
	$(CARGO) build --example bench_envoy
	BENCH_OUT=$(BENCH_OUT) BENCH_FILTER_WASM=$(BENCH_OUT)/mtls_guard.wasm \
	BENCH_NOOP_WASM=$(BENCH_OUT)/noop_filter.wasm \
	BENCH_HOTPATH_NATIVE=$(BENCH_OUT)/hotpath-native.json \
	BENCH_HOTPATH_WASM=$(BENCH_OUT)/hotpath-wasm.json \
	BENCH_CRITERION_DIR=$(BENCH_TARGET_DIR)/micro/criterion \
	BENCH_DURATION=$(BENCH_DURATION) BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_WARMUP=$(BENCH_WARMUP) \
	BENCH_CONNECTIONS=$(BENCH_CONNECTIONS) BENCH_WRK_THREADS=$(BENCH_WRK_THREADS) \
	BENCH_CERTS=$(BENCH_CERTS) BENCH_ROTATION_CACHE=$(BENCH_ROTATION_CACHE) \
	BENCH_VARIANTS=$(BENCH_VARIANTS) BENCH_REPORT=$(BENCH_REPORT) \
	BENCH_COMMAND="make bench BENCH_DURATION=$(BENCH_DURATION) BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_WARMUP=$(BENCH_WARMUP) BENCH_CONNECTIONS=$(BENCH_CONNECTIONS) BENCH_CERTS=$(BENCH_CERTS)" \
	  $(CARGO) run --quiet --example bench_envoy

# The report again from the last run's numbers (no measuring), e.g. after a change to the
# report or a new micro-benchmark run.
bench-report:
	$(CARGO) build --example bench_envoy
	BENCH_FROM_JSON=$(BENCH_OUT)/envoy.json BENCH_OUT=$(BENCH_OUT) \
	BENCH_HOTPATH_NATIVE=$(BENCH_OUT)/hotpath-native.json \
	BENCH_HOTPATH_WASM=$(BENCH_OUT)/hotpath-wasm.json \
	BENCH_CRITERION_DIR=$(BENCH_TARGET_DIR)/micro/criterion BENCH_REPORT=$(BENCH_REPORT) \
	  $(CARGO) run --quiet --example bench_envoy

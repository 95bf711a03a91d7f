# Fuzzing (issue 6): cargo-fuzz targets in fuzz/, libFuzzer through libfuzzer-sys.
#   make fuzz-smoke   each target for FUZZ_SMOKE_SECONDS (part of `make test`)
#   make fuzz         each target for FUZZ_SECONDS, one after the other
#   make fuzz-seeds   rewrite the committed seed corpus from tests/fixtures and the configs
# fuzz/run.sh runs one target. A crash fails the run; libFuzzer leaves the input in
# fuzz/artifacts/<target>/. Keep a minimised one (`cargo fuzz tmin`) in
# fuzz/regressions/<target>/: every run replays them first.
#
# Toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module,
# -Zallow-features); we have only stable, so RUSTC_BOOTSTRAP=1 lets stable rustc accept
# them. AddressSanitizer works here (the stable rust-std ships librustc-stable_rt.asan.a),
# so we keep cargo-fuzz's default `-s address`: our code is safe Rust, but the parsers'
# dependencies (x509-parser, der-parser, serde_json, sha2, base64) hold unsafe code, and
# ASan also turns a leak or a wild allocation into a failure. `-a` adds debug assertions
# and overflow checks: arithmetic that would silently wrap in the release .wasm panics.
# The build has its own workspace and target dir (fuzz/target), apart from target/.

CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TARGETS := cert_parse dn_parse config_parse filter_flow
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SECONDS ?= 600
# Extra libFuzzer flags, e.g. FUZZ_ARGS=-only_ascii=1.
FUZZ_ARGS ?=
FUZZ_BUILD_FLAGS := --fuzz-dir fuzz --target-dir fuzz/target --sanitizer address --debug-assertions
FUZZ_CARGO := $(CARGO) fuzz
# Per-input time limit (seconds): an input this slow is a denial of service on a worker.
FUZZ_TIMEOUT := 10

TEST_EXTRA += fuzz-smoke

.PHONY: setup-fuzz fuzz-build fuzz-smoke fuzz fuzz-seeds

setup-fuzz:
	@if ! $(CARGO) fuzz --version 2>/dev/null | grep -q "$(CARGO_FUZZ_VERSION)"; then \
	  echo "installing cargo-fuzz $(CARGO_FUZZ_VERSION)"; \
	  $(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked --quiet \
	    || $(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --quiet; \
	fi

fuzz-build: setup-fuzz
	RUSTC_BOOTSTRAP=1 $(FUZZ_CARGO) build $(FUZZ_BUILD_FLAGS)

export FUZZ_CARGO FUZZ_BUILD_FLAGS FUZZ_TIMEOUT

fuzz-smoke: fuzz-build
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  fuzz/run.sh $$t $(FUZZ_SMOKE_SECONDS) $(FUZZ_ARGS) || fail=1; done; exit $$fail
	@echo "fuzz smoke: $(words $(FUZZ_TARGETS)) targets, $(FUZZ_SMOKE_SECONDS)s each, no crash"

# One target at a time: the machine has two cores and the fuzzer takes one.
fuzz: fuzz-build
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  fuzz/run.sh $$t $(FUZZ_SECONDS) $(FUZZ_ARGS) || fail=1; done; exit $$fail

fuzz-seeds:
	$(PYTHON) fuzz/seed_corpus.py

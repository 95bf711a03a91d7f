#!/usr/bin/env bash
# Runs one fuzz target for a bounded time: `fuzz/run.sh TARGET SECONDS [libFuzzer flags]`.
# Called by mk/fuzz.mk, which sets FUZZ_CARGO and FUZZ_BUILD_FLAGS and says why
# RUSTC_BOOTSTRAP. New inputs go to
# fuzz/work/corpus/TARGET (ignored by git); the committed seeds (fuzz/corpus/TARGET) and
# reproducers (fuzz/regressions/TARGET) are read, and replayed first. Exits non-zero on a
# crash, a panic, a timeout or an out-of-memory; the whole log is in fuzz/work/TARGET.log.
set -euo pipefail
target=$1 seconds=$2
shift 2
cd "$(dirname "$0")/.."
case $target in
  cert_parse | filter_flow) dict=cert ;;
  dn_parse) dict=dn ;;
  config_parse) dict=config ;;
  *) echo "unknown fuzz target $target" >&2; exit 2 ;;
esac
mkdir -p "fuzz/work/corpus/$target" "fuzz/regressions/$target"
log=fuzz/work/$target.log
# Per-input limit: an input this slow would stall a proxy worker.
timeout_s=${FUZZ_TIMEOUT:-10}
export RUSTC_BOOTSTRAP=1
status=0
# shellcheck disable=SC2086 # FUZZ_CARGO and FUZZ_BUILD_FLAGS are word lists
$FUZZ_CARGO run $FUZZ_BUILD_FLAGS "$target" \
  "fuzz/work/corpus/$target" "fuzz/corpus/$target" "fuzz/regressions/$target" -- \
  -max_total_time="$seconds" -timeout="$timeout_s" -dict="fuzz/dict/$dict.dict" \
  -print_final_stats=1 "$@" >"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ] || ! grep -q '^Done [0-9]* runs' "$log"; then
  echo "fuzz target $target FAILED (exit $status): the input is in fuzz/artifacts/$target/" >&2
  grep -v -E '^#[0-9]+' "$log" | tail -60 >&2
  exit 1
fi
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
units=$(find "fuzz/work/corpus/$target" -type f | wc -l)
cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.*\(cov: [0-9]*\).*/\1/p')
echo "fuzz $target: ${seconds}s, $runs runs ($rate/s), $cov, $units new corpus inputs kept locally"

#!/usr/bin/env bash
# Fuzz regression: builds the calc libFuzzer target (clang-14, ASan + UBSan) and replays every
# saved input in test/fuzz/calc (conformance seeds and any crash found by `make fuzz`).
# The replay is one test (one per fuzz target); the number of inputs is reported on its own line,
# and a crashing input is reported by name.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
corpus=test/fuzz/calc
mkdir -p "$DUET_BUILD/check"
total=$(find "$corpus" -type f | wc -l)
echo "fuzz_calc corpus: $total inputs in $corpus"
if ! make -s fuzz-calc-build >"$DUET_BUILD/check/fuzz-calc-build.log" 2>&1; then
  cat "$DUET_BUILD/check/fuzz-calc-build.log"
  echo "0 passed, 1 failed"; exit 1
fi
log=$DUET_BUILD/check/fuzz-calc-replay.log
if "$DUET_BUILD/fuzz/fuzz_calc" -runs=0 -artifact_prefix="$DUET_BUILD/check/fuzz-calc-" "$corpus" >"$log" 2>&1; then
  echo "fuzz_calc replay: ok, no input crashed"
  echo "1 passed, 0 failed"
  exit 0
fi
tail -n 40 "$log"
# name the failing inputs one by one, so the report says which saved input regressed
for f in "$corpus"/*; do
  "$DUET_BUILD/fuzz/fuzz_calc" -runs=0 "$f" >/dev/null 2>&1 || echo "crash: $f"
done
echo "fuzz_calc replay: FAILED"
echo "0 passed, 1 failed"
exit 1

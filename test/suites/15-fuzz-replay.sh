#!/usr/bin/env bash
# Fuzz regression: builds the calc libFuzzer target (clang-14, ASan + UBSan) and replays every
# saved input in test/fuzz/calc (conformance seeds and any crash found by `make fuzz`).
# Each input counts as one test; a crashing input is reported by name.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
corpus=test/fuzz/calc
mkdir -p "$DUET_BUILD/check"
total=$(find "$corpus" -type f | wc -l)
if ! make -s fuzz-calc-build >"$DUET_BUILD/check/fuzz-calc-build.log" 2>&1; then
  cat "$DUET_BUILD/check/fuzz-calc-build.log"
  echo "0 passed, 1 failed"; exit 1
fi
log=$DUET_BUILD/check/fuzz-calc-replay.log
if "$DUET_BUILD/fuzz/fuzz_calc" -runs=0 -artifact_prefix="$DUET_BUILD/check/fuzz-calc-" "$corpus" >"$log" 2>&1; then
  echo "fuzz replay: $total inputs of $corpus, no crash"
  echo "$total passed, 0 failed"
  exit 0
fi
tail -n 40 "$log"
# name the failing inputs one by one, so the report says which saved input regressed
failed=0
for f in "$corpus"/*; do
  "$DUET_BUILD/fuzz/fuzz_calc" -runs=0 "$f" >/dev/null 2>&1 || { echo "crash: $f"; failed=$((failed + 1)); }
done
[ "$failed" -eq 0 ] && failed=1
echo "$((total - failed)) passed, $failed failed"
exit 1

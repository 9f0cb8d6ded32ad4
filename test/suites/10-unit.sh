#!/usr/bin/env bash
# Unit tests (cmocka): every binary that mk/*.mk adds to UNIT_TESTS, run plainly and under
# valgrind (--error-exitcode, leak check). cmocka's "[  PASSED  ] N" / "[  FAILED  ] N" lines count.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
make -s unit-tests || { echo "0 passed, 1 failed"; exit 1; }
tests=$(make -s print-unit-tests)
passed=0 failed=0
count() {   # count LOG: add cmocka's totals, or one failure when the binary failed without them
  local log=$1 rc=$2 p f
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
  p=${p:-0}; f=${f:-0}
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -ne 0 ] && cat "$log"
  echo "$3: $p passed, $f failed"
}
for t in $tests; do
  log=$DUET_BUILD/check/$(basename "$t").log
  "$t" >"$log" 2>&1; count "$log" $? "$t"
  valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
    "$t" >"$log.vg" 2>&1; count "$log.vg" $? "valgrind $t"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

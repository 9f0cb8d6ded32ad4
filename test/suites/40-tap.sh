#!/usr/bin/env bash
# TAP tests test/t/*.pl (PostgreSQL::Test::Cluster), run as the postgres OS user.
# Each assertion counts; a test file that dies without a plan counts as one failure.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
duet_tap_env
files=$(ls test/t/*.pl 2>/dev/null)
[ -z "$files" ] && { echo "0 passed, 0 failed"; exit 0; }
[ -n "${DUET_TAP:-}" ] && files=$(ls $DUET_TAP)
export TESTDIR=$DUET_BUILD/check/tap
as_pg rm -rf "$TESTDIR" 2>/dev/null; pg_writable_dir "$TESTDIR"
passed=0 failed=0 rc=0
for f in $files; do
  log=$TESTDIR/$(basename "$f" .pl).tap
  (cd "$TESTDIR" && as_pg prove -v "$DUET_ROOT/$f") >"$log" 2>&1 || rc=1
  p=$(grep -cE '^ok [0-9]+' "$log"); n=$(grep -cE '^not ok [0-9]+' "$log")
  if grep -q "^Result: FAIL" "$log" && [ "$n" -eq 0 ]; then n=1; fi
  echo "$f: $p passed, $n failed"
  if [ "$n" -ne 0 ]; then
    grep -vE '^ok [0-9]+' "$log" | tail -n 60
    ls "$TESTDIR"/tmp_check/log/*.log >/dev/null 2>&1 && tail -n 30 "$TESTDIR"/tmp_check/log/*.log
  fi
  passed=$((passed + p)); failed=$((failed + n))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

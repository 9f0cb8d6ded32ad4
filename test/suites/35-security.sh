#!/usr/bin/env bash
# Red-team suite (issue 11): test/security/*.pl, TAP tests (PostgreSQL::Test::Cluster) run as the
# postgres OS user. Each ok() is one attack; a file that dies without a plan counts as one failure.
# DUET_SECURITY="test/security/010_*.pl" runs a selection.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
duet_tap_env
export PERL5LIB="$DUET_ROOT/test/security:$DUET_ROOT/test/perl:$PERL5LIB"
files=$(ls test/security/*.pl 2>/dev/null)
[ -z "$files" ] && { echo "0 passed, 0 failed"; exit 0; }
[ -n "${DUET_SECURITY:-}" ] && files=$(ls $DUET_SECURITY)
export TESTDIR=$DUET_BUILD/check/security
as_pg rm -rf "$TESTDIR" 2>/dev/null; pg_writable_dir "$TESTDIR"
passed=0 failed=0
for f in $files; do
  log=$TESTDIR/$(basename "$f" .pl).tap
  (cd "$TESTDIR" && as_pg prove -v "$DUET_ROOT/$f") >"$log" 2>&1
  p=$(grep -cE '^ok [0-9]+' "$log"); n=$(grep -cE '^not ok [0-9]+' "$log")
  if grep -q "^Result: FAIL" "$log" && [ "$n" -eq 0 ]; then n=1; fi
  echo "$f: $p passed, $n failed"
  # every failed attack by name, then its diagnostics
  grep -E '^not ok [0-9]+' "$log" | sed 's/^/  /'
  if [ "$n" -ne 0 ] && [ -n "${DUET_SECURITY_VERBOSE:-}" ]; then
    grep -E '^#' "$log" | tail -n 80
  fi
  passed=$((passed + p)); failed=$((failed + n))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

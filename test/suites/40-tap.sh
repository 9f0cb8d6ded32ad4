#!/usr/bin/env bash
# TAP tests test/t/*.pl (PostgreSQL::Test::Cluster) through `make prove_installcheck` (PGXS), run
# as the postgres OS user with the private installation's binaries. DUET_TAP="test/t/x.pl ..."
# picks files. Each assertion counts; a test file that dies or fails its plan without a failed
# assertion counts as one failure.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
export DUET_ROOT DUET_BUILD
files=$(ls ${DUET_TAP:-test/t/*.pl} 2>/dev/null)
[ -z "$files" ] && { echo "0 passed, 0 failed"; exit 0; }
# PGXS's prove_installcheck keeps tmp_check/ (cluster data, logs) in $(CURDIR): point it here.
testdir=$DUET_BUILD/check/tap
as_pg rm -rf "$testdir" 2>/dev/null; pg_writable_dir "$testdir"
log=$DUET_BUILD/check/tap.log
as_pg make -s prove_installcheck PG_CONFIG="$DUET_BINDIR/pg_config" CURDIR="$testdir" \
  PROVE_FLAGS=-v PROVE_TESTS="$(echo $files)" >"$log" 2>&1
rc=$?
# prove -v prints "test/t/NAME.pl .. " before each file's TAP stream, then a summary report that
# names each file that failed (also those that died without a failed assertion).
summary=$(sed -n '/^Test Summary Report/,$p' "$log")
passed=0 failed=0
for f in $files; do
  section=$(awk -v f="$f" 'index($0, f " ..") == 1 { on = 1; next }
                           on && /^[^ ]+\.pl \.\.+ *$/ { on = 0 }
                           on && /^(Test Summary Report|All tests successful|Files=)/ { on = 0 }
                           on' "$log")
  p=$(grep -cE '^ok [0-9]+' <<<"$section"); n=$(grep -cE '^not ok [0-9]+' <<<"$section")
  if [ "$n" -eq 0 ] && { grep -q "^$f " <<<"$summary" || [ -z "$section" ]; }; then n=1; fi
  echo "$f: $p passed, $n failed"
  if [ "$n" -ne 0 ]; then
    grep -vE '^ok [0-9]+' <<<"$section" | tail -n 60
    name=$(basename "$f" .pl)
    # regress_log_NAME has the test's own output (diagnostics included); NAME_*.log the servers'.
    for l in "$testdir"/tmp_check/log/regress_log_"$name" "$testdir"/tmp_check/log/"$name"_*.log; do
      [ -f "$l" ] || continue
      echo "--- $l"; case $l in */regress_log_*) tail -n 120 "$l" ;; *) tail -n 30 "$l" ;; esac
    done
  fi
  passed=$((passed + p)); failed=$((failed + n))
done
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then tail -n 40 "$log"; failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# pg_regress: sql/*.sql against expected/*.out on the cluster test/check.sh started.
# One test per file; a failure prints the diffs.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
out=$DUET_BUILD/check/regress
as_pg rm -rf "$out" 2>/dev/null; pg_writable_dir "$out"
tests=$(ls sql/*.sql 2>/dev/null | xargs -n1 basename 2>/dev/null | sed 's/\.sql$//')
[ -z "$tests" ] && { echo "0 passed, 0 failed"; exit 0; }
as_pg "$DUET_PG_REGRESS" --bindir="$DUET_BINDIR" --inputdir="$DUET_ROOT" --outputdir="$out" \
  --host=127.0.0.1 --port="$DUET_PGPORT" --user=postgres --dbname=contrib_regression --load-extension=pg_duet \
  $tests 2>&1 | tee "$out/summary.log"
rc=${PIPESTATUS[0]}
[ -s "$out/regression.diffs" ] && cat "$out/regression.diffs"
ok=$(grep -cE '^test .* \.\.\. ok' "$out/summary.log")
bad=$(grep -cE '^test .* \.\.\. FAILED' "$out/summary.log")
[ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
echo "$ok passed, $bad failed"
[ "$rc" -eq 0 ]

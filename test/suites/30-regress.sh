#!/usr/bin/env bash
# pg_regress: `make installcheck` (PGXS: sql/*.sql against expected/*.out, REGRESS_OPTS in the
# Makefile) against the private installation and the cluster test/check.sh started.
# One test per file; a failure prints the diffs.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
out=$DUET_BUILD/check/regress
as_pg rm -rf "$out" 2>/dev/null; pg_writable_dir "$out"
[ -z "$(ls sql/*.sql 2>/dev/null)" ] && { echo "0 passed, 0 failed"; exit 0; }
as_pg make -s installcheck PG_CONFIG="$DUET_BINDIR/pg_config" \
  EXTRA_REGRESS_OPTS="--outputdir=$out --host=127.0.0.1 --port=$DUET_PGPORT --user=postgres" \
  2>&1 | tee "$out/summary.log"
rc=${PIPESTATUS[0]}
[ -s "$out/regression.diffs" ] && cat "$out/regression.diffs"
ok=$(grep -cE '^test .* \.\.\. ok' "$out/summary.log")
bad=$(grep -cE '^test .* \.\.\. FAILED' "$out/summary.log")
[ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
echo "$ok passed, $bad failed"
[ "$rc" -eq 0 ]

#!/usr/bin/env bash
# demo/run.sh — `make demo`: installs packages, builds, starts a cluster in demo/data (port
# $DUET_DEMO_PORT, default 5499), creates the extension, loads the ad-tech sample (demo/sample.sql)
# and runs the scenario: demo/steps/NN-*.sql (echoed through psql) and NN-*.sh, in name order.
# `make demo-stop` (demo/run.sh stop) stops the cluster and whatever the steps started; a second
# `make demo` first stops what the first one left running, then starts over.
#
# Each step begins with a comment block saying what it shows; it is printed before the step runs.
# An error a step shows on purpose is announced by a line "expected error: ..." just before it.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh
export DUET_DEMO_PORT=${DUET_DEMO_PORT:-5499}
export DUET_DEMO_DATA=$DUET_ROOT/demo/data
export PGHOST=127.0.0.1 PGPORT=$DUET_DEMO_PORT PGUSER=postgres PGDATABASE=duet_demo

stop() {
  for f in demo/steps/*.stop; do [ -e "$f" ] && bash "$f" || true; done
  duet_pg_stop "$DUET_DEMO_DATA/pg"
  echo "demo stopped"
}
[ "${1:-}" = stop ] && { stop; exit 0; }

test/install-deps.sh
make -s -j"$(nproc)" all
duet_tmp_install
stop >/dev/null 2>&1 || true   # whatever an earlier `make demo` left running
pg_writable_dir "$DUET_DEMO_DATA"
duet_pg_start "$DUET_DEMO_DATA/pg" "$DUET_DEMO_PORT" "duet.databases = 'duet_demo'"
as_pg "$DUET_BINDIR/createdb" -h 127.0.0.1 -p "$DUET_DEMO_PORT" -U postgres duet_demo
psql() { "$DUET_BINDIR/psql" -X -v ON_ERROR_STOP=1 "$@"; }
export -f psql; export DUET_BINDIR
psql -q -c "CREATE EXTENSION pg_duet" -f demo/sample.sql

# The leading comment block of a step: its title, then what it shows.
describe() {
  local title=$1; shift
  echo
  echo "################################################################################"
  echo "### $title"
  [ $# -gt 0 ] && printf '#   %s\n' "$@"
  echo "################################################################################"
}
for step in demo/steps/*; do
  case "$step" in
    *.sql)
      mapfile -t about < <(awk '/^--/ { sub(/^-- ?/, ""); print; next } { exit }' "$step")
      describe "${about[@]}"; psql -e -f "$step" ;;
    *.sh)
      mapfile -t about < <(awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$step")
      describe "${about[@]}"; bash "$step" ;;
  esac
done

cat <<MSG

The demo cluster is running. Connect with:
    $DUET_BINDIR/psql -h 127.0.0.1 -p $DUET_DEMO_PORT -U postgres duet_demo
Stop it with: make demo-stop
MSG

#!/usr/bin/env bash
# bench/run.sh — `make bench`: builds, starts a cluster tuned like a small production box, and runs
# each bench/NN-*.sh. Every benchmark prints ratios against a baseline measured in the same run;
# results are also written to build/bench/<name>.txt. Record them in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh
test/install-deps.sh
make -s -j"$(nproc)" all
duet_tmp_install
export DUET_PGPORT=${DUET_PGPORT:-$(duet_default_port 56000)}
export DUET_PGDATA=$DUET_BUILD/bench/data
export PGHOST=127.0.0.1 PGPORT=$DUET_PGPORT PGUSER=postgres PGDATABASE=postgres
duet_pg_start "$DUET_PGDATA" "$DUET_PGPORT" "shared_buffers = '1GB'" "fsync = on" "synchronous_commit = on"
trap 'duet_pg_stop "$DUET_PGDATA"' EXIT
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m); $(date -u +%F)"
for b in bench/[0-9]*.sh; do
  [ -n "${DUET_BENCH:-}" ] && [[ "$b" != *"$DUET_BENCH"* ]] && continue
  echo; echo "=== $b"
  bash "$b" | tee "$DUET_BUILD/bench/$(basename "$b" .sh).txt"
done

#!/usr/bin/env bash
# ClickHouse UDFs: duet_udf rows/s (TabSeparated, RowBinary; executable vs executable_pool) against
# `cat` of the same bytes and a Python UDF computing the same metric, all in this run
# (optionally also a baseline build: DUET_BENCH_BASELINE_REV).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/ch_udfs/duet_udf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make -s install-clickhouse USER_SCRIPTS="$tmp" >/dev/null
# DUET_BENCH_BASELINE_REV=<git rev>: also time duet_udf built from that revision, in this run
baseline=()
if [ -n "${DUET_BENCH_BASELINE_REV:-}" ]; then
  mkdir -p "$tmp/base" && git archive "$DUET_BENCH_BASELINE_REV" | tar -x -C "$tmp/base"
  make -s -C "$tmp/base" build/ch_udfs/duet_udf >/dev/null
  baseline=("$tmp/base/build/ch_udfs/duet_udf")
fi
python3 bench/ch_udf_bench.py "$tmp/duet_udf" "${baseline[@]}"

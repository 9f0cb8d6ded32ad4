#!/usr/bin/env bash
# ClickHouse 18.16's path: duet_udf --dictionary keys/s against `cat` of the same bytes, and against
# duet_udf built from DUET_BENCH_BASELINE_REV (if set) in the same run (bench/ch_dict_bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/ch_udfs/duet_udf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
baseline=()
if [ -n "${DUET_BENCH_BASELINE_REV:-}" ]; then
  mkdir -p "$tmp/base" && git archive "$DUET_BENCH_BASELINE_REV" | tar -x -C "$tmp/base"
  make -s -C "$tmp/base" build/ch_udfs/duet_udf >/dev/null
  baseline=("$tmp/base/build/ch_udfs/duet_udf")
fi
python3 bench/ch_dict_bench.py build/ch_udfs/duet_udf "${baseline[@]}"

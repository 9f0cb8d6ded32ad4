#!/usr/bin/env bash
# Metrics as ClickHouse SQL: Duet's generated expression (calc/sqlgen_ch.c) against a hand-written
# one and against duet_udf through the executable dictionary, on the same rows of a real
# ClickHouse 18.16 server (private, under build/), all in this run (bench/ch_sql_bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/ch_udfs/duet_udf build/unit/sqlgen_cases
timeout 1800 python3 bench/ch_sql_bench.py --udf build/ch_udfs/duet_udf --tool build/unit/sqlgen_cases \
  --dir build/bench/ch_sql "$@"

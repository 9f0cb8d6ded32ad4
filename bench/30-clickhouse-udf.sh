#!/usr/bin/env bash
# ClickHouse UDFs: duet_udf rows/s (TabSeparated, RowBinary; executable vs executable_pool) against
# `cat` of the same bytes and a Python UDF computing the same metric, all in this run.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/ch_udfs/duet_udf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make -s install-clickhouse USER_SCRIPTS="$tmp" >/dev/null
python3 bench/ch_udf_bench.py "$tmp/duet_udf"

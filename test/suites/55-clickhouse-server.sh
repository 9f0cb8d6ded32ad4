#!/usr/bin/env bash
# duet_udf in a real ClickHouse server (Debian's 18.16): an executable dictionary source with a
# complex_key_cache layout, queried from clickhouse-client with dictGetString for every conformance
# vector and thousands of generated keys; and the ClickHouse SQL that Duet generates
# (calc/sqlgen_ch.c) for every conformance vector and rows of edge and random values, inline in
# SELECTs (test/ch_server.py, test/ch_sql_conformance.py). Private config, data directory and free
# ports under build/; the server runs as the clickhouse OS user and is always stopped.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
# make knows its targets by their relative names (BUILD := build)
make -s "${DUET_BUILD#$DUET_ROOT/}/ch_udfs/duet_udf" "${DUET_BUILD#$DUET_ROOT/}/unit/sqlgen_cases" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
timeout 600 python3 test/ch_server.py --udf "$DUET_BUILD/ch_udfs/duet_udf" --dir "$DUET_BUILD/ch_server" \
  --conformance test/conformance --sql-cases "$DUET_BUILD/unit/sqlgen_cases" --sql-expected test/ch_sql_conformance.expected

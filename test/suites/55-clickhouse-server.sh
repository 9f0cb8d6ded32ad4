#!/usr/bin/env bash
# duet_udf in a real ClickHouse server (Debian's 18.16): an executable dictionary source with a
# complex_key_cache layout, queried from clickhouse-client with dictGetString for every conformance
# vector and thousands of generated keys (test/ch_server.py). Private config, data directory and
# free ports under build/; the server runs as the clickhouse OS user and is always stopped.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
make -s "$DUET_BUILD/ch_udfs/duet_udf" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
timeout 600 python3 test/ch_server.py --udf "$DUET_BUILD/ch_udfs/duet_udf" --dir "$DUET_BUILD/ch_server" --conformance test/conformance

#!/usr/bin/env bash
# ClickHouse UDFs through the ClickHouse-faithful harness (test/ch_harness.py, DESIGN.md §9):
# conformance vectors in every format and protocol mode and through the dictionary mode, protocol
# and robustness checks, a valgrind subset, and the libFuzzer corpus replayed under ASan/UBSan
# (one test per fuzz target).
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$DUET_ROOT"
scripts=$DUET_BUILD/ch_udfs/user_scripts
log=$DUET_BUILD/check/50-clickhouse-harness.tests.log
mkdir -p "$(dirname "$log")"
make -s install-clickhouse USER_SCRIPTS="$scripts" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
python3 test/ch_udf_tests.py --user-scripts "$scripts" --conformance test/conformance --psql "$DUET_BINDIR/psql" --valgrind 2>&1 | tee "$log"
counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1)
passed=${counts%% passed*}; failed=${counts#*, }; failed=${failed%% failed}
[ -z "$counts" ] && passed=0 failed=1
# The fuzz corpus, replayed by the sanitizer builds (the open-ended run is `make fuzz-udf`): one
# test per fuzz target (format), its number of inputs on a line of its own.
for d in test/fuzz/corpus/*/; do
  echo "fuzz_udf_$(basename "$d") corpus: $(find "$d" -type f | wc -l) inputs in ${d%/}"
done
replay=$(make -s fuzz-udf-replay 2>&1); replay_rc=$?
echo "$replay"
ok=$(grep -cE '^fuzz replay [a-z]+: ok$' <<<"$replay"); bad=$(grep -cE '^fuzz replay [a-z]+: FAILED$' <<<"$replay")
[ "$replay_rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
passed=$((passed + ok)); failed=$((failed + bad))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

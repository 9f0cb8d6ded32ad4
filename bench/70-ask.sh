#!/usr/bin/env bash
# duet_ask overhead with an instant mock LLM (test/mock_llm.py) for schemas of 10, 100 and 500
# tables, and a cache hit. Baseline, same run: the mock's raw round trip measured with curl
# (a new connection per request, as duet_ask makes). Overhead = duet_ask per call − baseline:
# catalog context, prompt, JSON, guard (parse, analyze, rewrite, plan), log and cache writes.
set -euo pipefail
N=${DUET_BENCH_ASK_N:-200}
source "$(dirname "$0")/../test/lib.sh"
psql() { "$DUET_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
echo '{"default": "SELECT 1"}' > "$tmp/fixtures.json"
python3 "$DUET_ROOT/test/mock_llm.py" --port-file "$tmp/port" --fixtures "$tmp/fixtures.json" \
  --log /dev/null &
mock=$!
trap 'kill $mock 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
url="http://127.0.0.1:$port/bench/v1/chat/completions"

# Baseline: N POSTs of a realistic body, one connection each, timed by curl itself.
body='{"model":"mock","messages":[{"role":"system","content":"schema"},{"role":"user","content":"how many?"}]}'
args=()
for _ in $(seq "$N"); do args+=(-o /dev/null -H 'Connection: close' -H 'Content-Type: application/json' -d "$body" "$url"); done
baseline_ms=$(curl -s -w '%{time_total}\n' "${args[@]}" | awk '{s += $1} END {printf "%.3f", s * 1000 / NR}')

PGOPTIONS="-c client_min_messages=warning" psql -o /dev/null <<SQL
CREATE EXTENSION IF NOT EXISTS pg_duet;
DELETE FROM duet.llm_providers WHERE name = 'bench-mock';
INSERT INTO duet.llm_providers (name, kind, base_url, model, priority, timeout_ms, max_retries)
     VALUES ('bench-mock', 'openai', 'http://127.0.0.1:$port/bench/v1', 'mock', -1000, 10000, 0);
DROP SCHEMA IF EXISTS bench_ask CASCADE;
CREATE SCHEMA bench_ask;
SQL

# make_tables FROM TO: tables bench_ask.t<i> with five columns, a comment and a foreign key.
make_tables() {
  psql -o /dev/null -c "DO \$\$ BEGIN FOR i IN $1..$2 LOOP
    EXECUTE format('CREATE TABLE bench_ask.t%s (id int PRIMARY KEY, parent int REFERENCES bench_ask.t%s,
                    name text, amount numeric, at timestamptz)', i, CASE WHEN i > 1 THEN i - 1 ELSE i END);
    EXECUTE format('COMMENT ON TABLE bench_ask.t%s IS %L', i, 'bench table number ' || i);
  END LOOP; END \$\$"
}

# per_call OPTIONS: ms per duet_ask over N distinct questions (or one question when cached).
per_call() {
  psql -At -c "DO \$\$ DECLARE t0 timestamptz; BEGIN
    PERFORM duet_ask('warm-up', '$1');   -- builds this session's catalog rendering
    t0 := clock_timestamp();
    FOR i IN 1..$N LOOP PERFORM duet_ask($2, '$1'); END LOOP;
    RAISE NOTICE '%', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000 / $N, 3);
  END \$\$" 2>&1 | sed -n 's/.*NOTICE: *//p'
}

printf 'baseline: mock round trip through curl          %8.3f ms\n' "$baseline_ms"
prev=0
for tables in 10 100 500; do
  make_tables $((prev + 1)) "$tables"; prev=$tables
  ms=$(per_call '{"cache": false}' "'how much amount in table ' || i")
  awk -v t="$tables" -v ms="$ms" -v b="$baseline_ms" 'BEGIN {
    printf "duet_ask, %3d tables, no cache: %8.3f ms/call = baseline + %.3f ms overhead (%.1fx)\n", t, ms, ms - b, ms / b }'
done
ms=$(per_call '{"cache": true}' "'how much amount in table 1'")
awk -v ms="$ms" -v b="$baseline_ms" 'BEGIN {
  printf "duet_ask, 500 tables, cache hit: %7.3f ms/call (%.2fx the bare round trip; no HTTP)\n", ms, ms / b }'
# The first call of a session renders the catalog (500 tables) once.
cold=$(psql -At -c "DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
  PERFORM duet_ask('cold question', '{\"cache\": false}');
  RAISE NOTICE '%', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 3); END \$\$" 2>&1 | sed -n 's/.*NOTICE: *//p')
printf 'duet_ask, 500 tables, first call of a session: %8.3f ms (catalog rendering included)\n' "$cold"

PGOPTIONS="-c client_min_messages=warning" psql -o /dev/null -c "DROP SCHEMA bench_ask CASCADE; DELETE FROM duet.llm_providers WHERE name = 'bench-mock';
  DELETE FROM duet.ask_log WHERE model = 'mock'; DELETE FROM duet.ask_cache WHERE model = 'mock'"

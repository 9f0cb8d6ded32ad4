#!/usr/bin/env bash
# duet_calc() over 1M rows against the equivalent native SQL expression, in the same session:
# the float8 variant and the jsonb-returning form with a row, and the jsonb-variables form, each
# against the native expression producing the same type from the same input. Best of 5 alternating
# rounds per query, serial plans (no parallel workers), ns per row and the ratio duet / native.
set -euo pipefail
N=${DUET_BENCH_CALC_ROWS:-1000000}
source "$(dirname "$0")/../test/lib.sh"
psql() { "$DUET_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

PGOPTIONS="-c client_min_messages=warning" psql -d postgres -v n="$N" -o /dev/null <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_duet;
DROP TABLE IF EXISTS bench_calc;
CREATE TABLE bench_calc AS
SELECT i AS id, (1000 + i % 5000)::bigint AS impressions, (i % 97)::bigint AS clicks,
       ((i % 1000) * 0.37)::float8 AS spend, ((i % 777) * 0.91)::float8 AS revenue, 300.0::float8 AS budget
  FROM generate_series(1, :n) i;
ALTER TABLE bench_calc ADD COLUMN vars jsonb;
UPDATE bench_calc SET vars = jsonb_build_object('revenue', revenue, 'spend', spend);
VACUUM ANALYZE bench_calc;
SQL

psql -d postgres -v n="$N" <<'SQL'
\set QUIET on
SET max_parallel_workers_per_gather = 0;
SET jit = off;
-- the methods must agree before they are timed (an exception stops the benchmark)
DO $$
DECLARE
    bad bigint;
BEGIN
    SELECT count(*) INTO bad FROM bench_calc b
     WHERE duet_calc_number('revenue / spend', b) IS DISTINCT FROM revenue / nullif(spend, 0)
        OR duet_calc_number('revenue / spend', vars) IS DISTINCT FROM (vars->>'revenue')::float8 / nullif((vars->>'spend')::float8, 0)
        OR (duet_calc('revenue / spend', b) #>> '{}')::float8 IS DISTINCT FROM revenue / nullif(spend, 0)
        OR duet_calc_number('if(spend > 0.9 * budget, clicks / impressions, 0)', b)
           IS DISTINCT FROM CASE WHEN spend > 0.9 * budget THEN clicks::float8 / impressions ELSE 0 END;
    IF bad > 0 THEN
        RAISE EXCEPTION 'duet_calc bench: duet_calc and native SQL disagree on % rows', bad;
    END IF;
END $$;
CREATE TEMP TABLE timings (pair int, method text, ns_per_row float8);
DO $$
DECLARE
    q text[] := ARRAY[
        -- pair 1: float8 from a row
        'SELECT sum(revenue / nullif(spend, 0)) FROM bench_calc b',
        'SELECT sum(duet_calc_number(''revenue / spend'', b)) FROM bench_calc b',
        -- pair 2: jsonb from a row (native: the same double as jsonb)
        'SELECT count(to_jsonb(revenue / nullif(spend, 0))) FROM bench_calc b',
        'SELECT count(duet_calc(''revenue / spend'', b)) FROM bench_calc b',
        -- pair 3: float8 from jsonb variables
        'SELECT sum((vars->>''revenue'')::float8 / nullif((vars->>''spend'')::float8, 0)) FROM bench_calc b',
        'SELECT sum(duet_calc_number(''revenue / spend'', vars)) FROM bench_calc b',
        -- pair 4: a pacing-gated CTR, float8 from a row
        'SELECT sum(CASE WHEN spend > 0.9 * budget THEN clicks::float8 / impressions ELSE 0 END) FROM bench_calc b',
        'SELECT sum(duet_calc_number(''if(spend > 0.9 * budget, clicks / impressions, 0)'', b)) FROM bench_calc b',
        -- pair 5: float8 from a row passed whole (an outer join disables the planner rewrite)
        'SELECT sum(revenue / nullif(spend, 0)) FROM bench_calc b LEFT JOIN (SELECT 1 WHERE false) z ON true',
        'SELECT sum(duet_calc_number(''revenue / spend'', b)) FROM bench_calc b LEFT JOIN (SELECT 1 WHERE false) z ON true'];
    names text[] := ARRAY['native float8', 'duet_calc_number(f, row)', 'native jsonb', 'duet_calc(f, row)',
                          'native from jsonb', 'duet_calc_number(f, jsonb)', 'native CASE', 'duet_calc_number(if, row)',
                          'native (outer join)', 'duet_calc_number(f, whole row)'];
    n bigint := (SELECT count(*) FROM bench_calc);
    t0 timestamptz;
    best float8[];
BEGIN
    PERFORM count(*) FROM bench_calc;          -- warm the buffer cache
    best := array_fill('infinity'::float8, ARRAY[array_length(q, 1)]);
    -- rounds alternate the queries, so a burst of load on the shared machine hits both sides
    FOR r IN 1 .. 5 LOOP
        FOR i IN 1 .. array_length(q, 1) LOOP
            t0 := clock_timestamp();
            EXECUTE q[i];
            best[i] := least(best[i], extract(epoch FROM clock_timestamp() - t0) * 1e9 / n);
        END LOOP;
    END LOOP;
    FOR i IN 1 .. array_length(q, 1) LOOP
        INSERT INTO timings VALUES ((i + 1) / 2, names[i], best[i]);
    END LOOP;
END $$;
\echo 'duet_calc() over' :n 'rows (serial scan, best of 5 alternating rounds): ns per row, ratio against native SQL'
SELECT d.method AS duet, round(d.ns_per_row::numeric, 1) AS duet_ns_per_row,
       n.method AS native, round(n.ns_per_row::numeric, 1) AS native_ns_per_row,
       round((d.ns_per_row / n.ns_per_row)::numeric, 2) AS ratio
  FROM timings d JOIN timings n ON n.pair = d.pair AND n.method LIKE 'native%' AND d.method NOT LIKE 'native%'
 ORDER BY d.pair;
SQL
psql -d postgres -c "DROP TABLE bench_calc" -o /dev/null

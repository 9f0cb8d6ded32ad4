#!/usr/bin/env bash
# Metrics (issue 13): a metric call in duet_calc against the same formula written inline, over 1M
# rows in the same session, in each binding form: jsonb variables, positional (duet_calc_args),
# and the row passed whole. A call is expanded inline when compiled (calc/metric.c), so the
# evaluated program is the same; what remains is compiling per query and the metric lookup.
# Best of 5 alternating rounds per query, serial plans, ns per row and the ratio metric / inline.
set -euo pipefail
N=${DUET_BENCH_METRIC_ROWS:-1000000}
source "$(dirname "$0")/../test/lib.sh"
psql() { "$DUET_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

PGOPTIONS="-c client_min_messages=warning" psql -d postgres -v n="$N" -o /dev/null <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_duet;
DROP TABLE IF EXISTS bench_metrics;
CREATE TABLE bench_metrics AS
SELECT i AS id, ((i % 1000) * 0.37)::float8 AS spend, ((i % 777) * 0.91)::float8 AS revenue,
       (200 + i % 300)::float8 AS budget, (i % 24)::float8 AS elapsed, 24.0::float8 AS period
  FROM generate_series(1, :n) i;
ALTER TABLE bench_metrics ADD COLUMN vars jsonb;
UPDATE bench_metrics SET vars = jsonb_build_object('revenue', revenue, 'spend', spend, 'budget', budget,
                                                   'elapsed', elapsed, 'period', period);
VACUUM ANALYZE bench_metrics;
SELECT duet_metric_drop(name) FROM duet.metrics WHERE name IN ('bench_roas', 'bench_pacing') AND tenant IS NULL ORDER BY name DESC;
SELECT duet_metric_define('bench_roas', 'revenue / spend');
SELECT duet_metric_define('bench_pacing',
    'case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end');
SQL

psql -d postgres -v n="$N" <<'SQL'
\set QUIET on
SET max_parallel_workers_per_gather = 0;
SET jit = off;
DO $$
DECLARE
    bad bigint;
BEGIN
    SELECT count(*) INTO bad FROM bench_metrics b
     WHERE duet_calc_number('bench_roas(revenue, spend)', vars) IS DISTINCT FROM duet_calc_number('revenue / spend', vars)
        OR duet_calc_number('bench_pacing()', b) IS DISTINCT FROM
           duet_calc_number('case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end', b);
    IF bad > 0 THEN
        RAISE EXCEPTION 'metrics bench: metric call and inline formula disagree on % rows', bad;
    END IF;
END $$;
CREATE TEMP TABLE timings (pair int, method text, ns_per_row float8);
DO $$
DECLARE
    p text := 'case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end';
    q text[] := ARRAY[
        'SELECT sum(duet_calc_number(''revenue / spend'', vars)) FROM bench_metrics b',
        'SELECT sum(duet_calc_number(''bench_roas(revenue, spend)'', vars)) FROM bench_metrics b',
        'SELECT sum(duet_calc_number_args(''revenue / spend'', revenue, spend)) FROM bench_metrics b',
        'SELECT sum(duet_calc_number_args(''bench_roas(revenue, spend)'', revenue, spend)) FROM bench_metrics b',
        format('SELECT sum(duet_calc_number(%L, b)) FROM bench_metrics b LEFT JOIN (SELECT 1 WHERE false) z ON true', p),
        'SELECT sum(duet_calc_number(''bench_pacing()'', b)) FROM bench_metrics b LEFT JOIN (SELECT 1 WHERE false) z ON true',
        format('SELECT sum(duet_calc_number_args(%L, budget, spend, elapsed, period)) FROM bench_metrics b', p),
        'SELECT sum(duet_calc_number_args(''bench_pacing()'', budget, spend, elapsed, period)) FROM bench_metrics b'];
    names text[] := ARRAY['inline roas, jsonb', 'metric roas, jsonb', 'inline roas, positional', 'metric roas, positional',
                          'inline pacing, whole row', 'metric pacing, whole row',
                          'inline pacing, positional', 'metric pacing, positional'];
    n bigint := (SELECT count(*) FROM bench_metrics);
    t0 timestamptz;
    best float8[];
BEGIN
    PERFORM count(*) FROM bench_metrics;
    best := array_fill('infinity'::float8, ARRAY[array_length(q, 1)]);
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
\echo 'metric call against the inline formula over' :n 'rows (serial scan, best of 5 alternating rounds): ns per row'
SELECT m.method AS metric, round(m.ns_per_row::numeric, 1) AS metric_ns_per_row,
       i.method AS inline, round(i.ns_per_row::numeric, 1) AS inline_ns_per_row,
       round((m.ns_per_row / i.ns_per_row)::numeric, 3) AS ratio
  FROM timings m JOIN timings i ON i.pair = m.pair AND i.method LIKE 'inline%' AND m.method LIKE 'metric%'
 ORDER BY m.pair;
SQL
# The generated PostgreSQL function (duet_metrics.bench_roas, inlined by the planner) against the
# hand-written expression, over the same rows, and against duet_calc_number_args: exactness costs
# the range guards that keep PostgreSQL from raising where Duet gives NULL.
psql -d postgres -v n="$N" <<'SQL'
\set QUIET on
SET max_parallel_workers_per_gather = 0;
SET jit = off;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM bench_metrics b
                WHERE duet_metrics.bench_roas(revenue, spend) IS DISTINCT FROM duet_calc_number_args('revenue / spend', revenue, spend)) THEN
        RAISE EXCEPTION 'metrics bench: the generated function and duet_calc disagree';
    END IF;
END $$;
CREATE TEMP TABLE gen_timings (method text, ns_per_row float8);
DO $$
DECLARE
    q text[] := ARRAY[
        'SELECT sum(revenue / NULLIF(spend, 0)) FROM bench_metrics',
        'SELECT sum(CASE WHEN spend = 0 THEN NULL ELSE revenue / spend END) FROM bench_metrics',
        'SELECT sum(duet_metrics.bench_roas(revenue, spend)) FROM bench_metrics',
        'SELECT sum((CASE WHEN spend OPERATOR(pg_catalog.=) ''0''::pg_catalog.float8 THEN NULL::pg_catalog.float8 WHEN (revenue OPERATOR(pg_catalog.>=) ''1.4916681462400413e-154''::pg_catalog.float8 AND revenue OPERATOR(pg_catalog.<=) ''6.7039039649712985e+153''::pg_catalog.float8 OR revenue OPERATOR(pg_catalog.>=) ''-6.7039039649712985e+153''::pg_catalog.float8 AND revenue OPERATOR(pg_catalog.<=) ''-1.4916681462400413e-154''::pg_catalog.float8 OR revenue OPERATOR(pg_catalog.=) ''0''::pg_catalog.float8) AND (spend OPERATOR(pg_catalog.>=) ''1.4916681462400413e-154''::pg_catalog.float8 AND spend OPERATOR(pg_catalog.<=) ''6.7039039649712985e+153''::pg_catalog.float8 OR spend OPERATOR(pg_catalog.>=) ''-6.7039039649712985e+153''::pg_catalog.float8 AND spend OPERATOR(pg_catalog.<=) ''-1.4916681462400413e-154''::pg_catalog.float8) THEN ((revenue) OPERATOR(pg_catalog./) (spend)) OPERATOR(pg_catalog.+) ''0''::pg_catalog.float8 ELSE duet_calc_number_args(''x / y'', revenue, spend) END)) FROM bench_metrics',
        'SELECT sum(duet_calc_number_args(''bench_roas(revenue, spend)'', revenue, spend)) FROM bench_metrics'];
    names text[] := ARRAY['hand-written revenue / NULLIF(spend, 0)', 'hand-written CASE WHEN spend = 0 ...',
                          'generated duet_metrics.bench_roas(revenue, spend)', 'previous generated form (range guards, issue 13 item 3 before)', 'duet_calc_number_args(''bench_roas(...)'', ...)'];
    n bigint := (SELECT count(*) FROM bench_metrics);
    t0 timestamptz;
    best float8[];
BEGIN
    best := array_fill('infinity'::float8, ARRAY[array_length(q, 1)]);
    FOR r IN 1 .. 5 LOOP
        FOR i IN 1 .. array_length(q, 1) LOOP
            t0 := clock_timestamp();
            EXECUTE q[i];
            best[i] := least(best[i], extract(epoch FROM clock_timestamp() - t0) * 1e9 / n);
        END LOOP;
    END LOOP;
    FOR i IN 1 .. array_length(q, 1) LOOP
        INSERT INTO gen_timings VALUES (names[i], best[i]);
    END LOOP;
END $$;
\echo 'generated PostgreSQL function against hand-written SQL over' :n 'rows (best of 5): ns per row, ratio to NULLIF'
SELECT method, round(ns_per_row::numeric, 1) AS ns_per_row,
       round((ns_per_row / (SELECT ns_per_row FROM gen_timings WHERE method LIKE '%NULLIF%'))::numeric, 3) AS ratio
  FROM gen_timings;
SQL
psql -d postgres -o /dev/null <<'SQL'
DROP TABLE bench_metrics;
SELECT duet_metric_drop('bench_pacing'), duet_metric_drop('bench_roas');
DELETE FROM duet.metrics_history WHERE name IN ('bench_roas', 'bench_pacing');
SQL

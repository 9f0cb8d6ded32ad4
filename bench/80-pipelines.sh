#!/usr/bin/env bash
# Pipelines, ratios in one session (median of 3, alternating):
#  1. silver step: duet_pipeline_run() of an upsert pipeline over N bronze rows (jsonb, four
#     partitions, 2% failing a drop expectation, 10% updates of earlier events) in one batch and in
#     batches of 50,000, against one INSERT ... SELECT of the same transform (the expectation as a
#     WHERE, DISTINCT ON for the dedup, ON CONFLICT DO UPDATE). Goal: pipeline ≥ 0.7× its speed.
#  2. gold: the aggregate pipeline's incremental run after 1% new silver rows, against a full
#     recompute (TRUNCATE + INSERT ... SELECT ... GROUP BY): new rows of one new day (the usual
#     case) and late rows spread over every group (the worst case).
set -euo pipefail
N=${DUET_BENCH_PIPELINES_N:-1000000}
source "$(dirname "$0")/../test/lib.sh"
psql() { "$DUET_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

PGOPTIONS="-c client_min_messages=warning" psql -d postgres -v n="$N" -o /dev/null <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_duet;
DELETE FROM duet.tenants WHERE name = 'bench-pipes';  -- its pipelines go with it
SELECT duet_tenant_create('bench-pipes');
SELECT duet_set_tenant('bench-pipes');
DROP TABLE IF EXISTS bp_bronze, bp_silver, bp_silver_plain, bp_gold, bp_gold_plain;
DROP SEQUENCE IF EXISTS bp_seq;
CREATE TABLE bp_bronze (_partition int NOT NULL, _offset bigint NOT NULL, payload jsonb NOT NULL,
                        PRIMARY KEY (_partition, _offset));
INSERT INTO bp_bronze
SELECT i % 4, i / 4, jsonb_build_object(
           'id', 'e' || CASE WHEN i % 10 = 9 THEN (i * 7919) % (i + 1) ELSE i END,
           'campaign', i % 40, 'ts', '2026-01-01'::date + (i % 30)::int,
           'cost', CASE WHEN i % 50 = 0 THEN -1 ELSE (i % 17) + 1 END,
           'revenue', (i % 23) * 1.5, 'clicks', i % 7, 'impressions', 10 + i % 13)
  FROM generate_series(0::bigint, :n - 1) i;
CREATE SEQUENCE bp_seq;
CREATE TABLE bp_silver (event_id text PRIMARY KEY, campaign int, day date, cost numeric, revenue numeric,
                        clicks int, impressions int, seq bigint NOT NULL);
CREATE INDEX ON bp_silver (seq);
CREATE INDEX ON bp_silver (campaign, day);
CREATE TABLE bp_silver_plain (LIKE bp_silver INCLUDING ALL);
CREATE TABLE bp_gold (campaign int, day date, cost numeric, revenue numeric, roas numeric, ctr float8,
                      events bigint, PRIMARY KEY (campaign, day));
CREATE TABLE bp_gold_plain (LIKE bp_gold INCLUDING ALL);
VACUUM ANALYZE bp_bronze;
SELECT duet_pipeline_create('silver', 'bp_bronze', 'bp_silver',
    '{"event_id": "payload->>''id''", "campaign": "(payload->>''campaign'')::int",
      "day": "(payload->>''ts'')::date", "cost": "(payload->>''cost'')::numeric",
      "revenue": "(payload->>''revenue'')::numeric", "clicks": "(payload->>''clicks'')::int",
      "impressions": "(payload->>''impressions'')::int", "seq": "nextval(''bp_seq'')"}',
    order_by => '_offset', partition_by => '_partition', key => '{event_id}', mode => 'upsert',
    expectations => '[{"name": "cost_nonnegative", "predicate": "cost >= 0", "action": "drop"}]',
    batch_size => 10000000);
SELECT duet_pipeline_create('gold', 'bp_silver', 'bp_gold',
    '{"campaign": "campaign", "day": "day", "cost": "sum(cost)", "revenue": "sum(revenue)",
      "roas": "sum(revenue) / nullif(sum(cost), 0)", "ctr": "sum(clicks)::float8 / nullif(sum(impressions), 0)",
      "events": "count(*)"}',
    order_by => 'seq', key => '{campaign,day}', mode => 'aggregate', batch_size => 10000000);
-- the workers must not run them behind the benchmark's back
SELECT duet_pipeline_pause('silver'), duet_pipeline_pause('gold');
SQL

psql -d postgres -v n="$N" <<'SQL'
\set QUIET on
SELECT duet_set_tenant('bench-pipes') \gset
CREATE TEMP TABLE timings (method text, run int, ms float8);
CREATE FUNCTION pg_temp.reset_silver(batch int) RETURNS void LANGUAGE sql AS $$
    TRUNCATE bp_silver;
    UPDATE duet.pipelines SET position = '{}', state = 'active', batch_size = batch WHERE name = 'silver' AND tenant = 'bench-pipes';
    DELETE FROM duet.pipeline_quarantine WHERE tenant = 'bench-pipes';
$$;
DO $$
DECLARE
    t0 timestamptz;
    b int;
BEGIN
    FOR run IN 1 .. 3 LOOP
        TRUNCATE bp_silver_plain;
        t0 := clock_timestamp();
        INSERT INTO bp_silver_plain (event_id, campaign, day, cost, revenue, clicks, impressions, seq)
        SELECT DISTINCT ON (event_id) event_id, campaign, day, cost, revenue, clicks, impressions, seq FROM (
            SELECT payload->>'id' AS event_id, (payload->>'campaign')::int AS campaign,
                   (payload->>'ts')::date AS day, (payload->>'cost')::numeric AS cost,
                   (payload->>'revenue')::numeric AS revenue, (payload->>'clicks')::int AS clicks,
                   (payload->>'impressions')::int AS impressions, nextval('bp_seq') AS seq, _offset, _partition
              FROM bp_bronze) s
         WHERE cost >= 0
         ORDER BY event_id, _offset DESC, _partition DESC
        ON CONFLICT (event_id) DO UPDATE SET campaign = EXCLUDED.campaign, day = EXCLUDED.day, cost = EXCLUDED.cost,
            revenue = EXCLUDED.revenue, clicks = EXCLUDED.clicks, impressions = EXCLUDED.impressions, seq = EXCLUDED.seq;
        INSERT INTO timings VALUES ('silver: one INSERT ... SELECT', run, extract(epoch FROM clock_timestamp() - t0) * 1000);
        FOREACH b IN ARRAY ARRAY[10000000, 50000] LOOP
            PERFORM pg_temp.reset_silver(b);
            t0 := clock_timestamp();
            PERFORM duet_pipeline_run('silver');
            INSERT INTO timings VALUES (CASE WHEN b = 50000 THEN 'silver: pipeline, batches of 50000'
                                             ELSE 'silver: pipeline, one batch' END,
                                        run, extract(epoch FROM clock_timestamp() - t0) * 1000);
        END LOOP;
    END LOOP;
END $$;
SELECT (SELECT count(*) FROM bp_silver) AS silver_rows,
       (SELECT count(*) FROM ((SELECT event_id, campaign, day, cost, revenue FROM bp_silver) EXCEPT
                              (SELECT event_id, campaign, day, cost, revenue FROM bp_silver_plain)) d) AS differing_rows,
       (SELECT count(*) FROM duet.pipeline_quarantine WHERE tenant = 'bench-pipes') AS quarantined;
UPDATE duet.pipelines SET state = 'paused' WHERE name = 'silver' AND tenant = 'bench-pipes';

-- Gold: the first run builds it; then 1% new silver rows and an incremental run, against a full recompute.
UPDATE duet.pipelines SET state = 'active', position = '{}' WHERE name = 'gold' AND tenant = 'bench-pipes';
SELECT duet_pipeline_run('gold') \gset
ANALYZE bp_silver;
CREATE TEMP TABLE gold_groups AS SELECT count(*) AS n FROM bp_gold;
DO $$
DECLARE
    t0 timestamptz;
    n bigint := (SELECT count(*) FROM bp_silver) / 100;
    kind text;
BEGIN
    FOR run IN 1 .. 3 LOOP
        FOREACH kind IN ARRAY ARRAY['one new day', 'late rows in every group'] LOOP
            INSERT INTO bp_silver
            SELECT 'new-' || run || '-' || kind || '-' || g, g % 40,
                   CASE WHEN kind = 'one new day' THEN '2026-02-01'::date + run ELSE '2026-01-01'::date + (g % 30)::int END,
                   1, 2, 1, 10, nextval('bp_seq')
              FROM generate_series(1, n) g;
            t0 := clock_timestamp();
            PERFORM duet_pipeline_run('gold');
            INSERT INTO timings VALUES ('gold: incremental, 1% new rows, ' || kind, run,
                                        extract(epoch FROM clock_timestamp() - t0) * 1000);
            t0 := clock_timestamp();
            TRUNCATE bp_gold_plain;
            INSERT INTO bp_gold_plain SELECT campaign, day, sum(cost), sum(revenue), sum(revenue) / nullif(sum(cost), 0),
                   sum(clicks)::float8 / nullif(sum(impressions), 0), count(*) FROM bp_silver GROUP BY campaign, day;
            INSERT INTO timings VALUES ('gold: full recompute', run, extract(epoch FROM clock_timestamp() - t0) * 1000);
        END LOOP;
    END LOOP;
END $$;
SELECT (SELECT count(*) FROM ((SELECT * FROM bp_gold) EXCEPT (SELECT * FROM bp_gold_plain)) d) AS gold_differing_rows,
       (SELECT count(*) FROM bp_gold) AS gold_groups;

WITH m AS (SELECT method, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM timings GROUP BY method)
SELECT method, round(ms::numeric, 0) AS median_ms FROM m ORDER BY method;
WITH m AS (SELECT method, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM timings GROUP BY method)
SELECT 'silver: pipeline (one batch) speed vs INSERT ... SELECT (goal >= 0.7)' AS ratio,
       round(((SELECT ms FROM m WHERE method = 'silver: one INSERT ... SELECT') /
              (SELECT ms FROM m WHERE method = 'silver: pipeline, one batch'))::numeric, 2) AS value
UNION ALL
SELECT 'silver: pipeline (batches of 50000) speed vs INSERT ... SELECT',
       round(((SELECT ms FROM m WHERE method = 'silver: one INSERT ... SELECT') /
              (SELECT ms FROM m WHERE method = 'silver: pipeline, batches of 50000'))::numeric, 2)
UNION ALL
SELECT 'gold: incremental (1%, one new day) time / full recompute time',
       round(((SELECT ms FROM m WHERE method = 'gold: incremental, 1% new rows, one new day') /
              (SELECT ms FROM m WHERE method = 'gold: full recompute'))::numeric, 3)
UNION ALL
SELECT 'gold: incremental (1%, every group) time / full recompute time',
       round(((SELECT ms FROM m WHERE method = 'gold: incremental, 1% new rows, late rows in every group') /
              (SELECT ms FROM m WHERE method = 'gold: full recompute'))::numeric, 3);
SQL

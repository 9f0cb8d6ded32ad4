#!/usr/bin/env bash
# Rules: one INSERT of N rows (default 1M) into a table with two row rules (evaluated by the
# statement trigger over the transition table, with alert bookkeeping for 1,000 campaigns)
# against the same INSERT into a plain table followed by the rules' conditions as a plain SQL
# WHERE (SELECT count(*) ... WHERE cond) — measured in the same session, alternating, median of 5.
# Prints the times, the ratio (goal ≤ 1.5×), row-rule evaluations per second (rows × rules over
# the trigger's own time), and for reference the cost of capturing a transition table at all.
set -euo pipefail
N=${DUET_BENCH_RULES_N:-1000000}
source "$(dirname "$0")/../test/lib.sh"
psql() { "$DUET_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

PGOPTIONS="-c client_min_messages=warning" psql -d postgres -o /dev/null <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_duet;
DROP TABLE IF EXISTS bench_rules_spend, bench_rules_plain;
DELETE FROM duet.tenants WHERE name = 'bench-rules';
SELECT duet_tenant_create('bench-rules');
SELECT duet_set_tenant('bench-rules');
CREATE TABLE bench_rules_spend (tenant text NOT NULL DEFAULT 'bench-rules', campaign_id int, day date,
                                spend float8, budget float8, revenue float8);
CREATE TABLE bench_rules_plain (LIKE bench_rules_spend INCLUDING DEFAULTS);
-- Reference: what capturing the transition table costs by itself (any transition-table trigger).
DROP TABLE IF EXISTS bench_rules_capture;
CREATE TABLE bench_rules_capture (LIKE bench_rules_spend INCLUDING DEFAULTS);
CREATE OR REPLACE FUNCTION bench_rules_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER noop AFTER INSERT ON bench_rules_capture REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION bench_rules_noop();
SELECT duet_rule_create('over_budget', 'spend > budget', target => 'bench_rules_spend',
                        labels => '{campaign_id}', value => 'spend - budget',
                        message => 'campaign {campaign_id} overspent by {value} on {day}');
SELECT duet_rule_create('roas_below_1', 'revenue / spend < 1', target => 'bench_rules_spend',
                        labels => '{campaign_id}', value => 'revenue / spend', severity => 'critical',
                        message => 'ROAS {value} for campaign {campaign_id}');
SQL

psql -d postgres -v n="$N" <<'SQL'
\set QUIET on
SELECT duet_set_tenant('bench-rules') \gset
CREATE TEMP TABLE timings (method text, run int, ms float8);
-- 1,000 campaigns; ~1% of rows over budget, ~5% with ROAS below 1
CREATE TEMP TABLE src AS
SELECT 'bench-rules'::text AS tenant, g % 1000 AS campaign_id, date '2026-01-01' + g % 365 AS day,
       (50 + g % 97)::float8 AS spend, CASE WHEN g % 100 = 0 THEN 100 ELSE 200 END::float8 AS budget,
       CASE WHEN g % 20 = 0 THEN 10 ELSE 300 END::float8 AS revenue
  FROM generate_series(1, :n) g;
ANALYZE src;
SELECT set_config('bench.n', :'n', false) \gset
DO $$
DECLARE
    t0 timestamptz;
    matches bigint;
BEGIN
    FOR run IN 1 .. 5 LOOP
        TRUNCATE bench_rules_plain, bench_rules_spend, bench_rules_capture;
        DELETE FROM duet.alerts WHERE tenant = 'bench-rules';
        t0 := clock_timestamp();
        INSERT INTO bench_rules_plain SELECT * FROM src;
        SELECT count(*) INTO matches FROM bench_rules_plain WHERE spend > budget;
        SELECT count(*) INTO matches FROM bench_rules_plain WHERE revenue / spend < 1;
        INSERT INTO timings VALUES ('plain insert + SQL WHERE', run,
                                    extract(epoch FROM clock_timestamp() - t0) * 1000);
        t0 := clock_timestamp();
        INSERT INTO bench_rules_spend SELECT * FROM src;
        INSERT INTO timings VALUES ('insert with 2 row rules', run,
                                    extract(epoch FROM clock_timestamp() - t0) * 1000);
        t0 := clock_timestamp();
        INSERT INTO bench_rules_capture SELECT * FROM src;
        INSERT INTO timings VALUES ('insert, no-op transition-table trigger', run,
                                    extract(epoch FROM clock_timestamp() - t0) * 1000);
        TRUNCATE bench_rules_plain;
        t0 := clock_timestamp();
        INSERT INTO bench_rules_plain SELECT * FROM src;
        INSERT INTO timings VALUES ('plain insert only', run,
                                    extract(epoch FROM clock_timestamp() - t0) * 1000);
    END LOOP;
END $$;
-- the rules did their work: 10 over-budget and 50 low-ROAS campaigns firing (of 1,000)
SELECT rule, count(*) AS firing FROM duet.alerts_active WHERE tenant = 'bench-rules' GROUP BY rule ORDER BY rule;
WITH m AS (SELECT method, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM timings GROUP BY method)
SELECT method, round(ms::numeric, 0) AS median_ms FROM m ORDER BY ms;
WITH m AS (SELECT method, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM timings GROUP BY method)
SELECT round(((SELECT ms FROM m WHERE method = 'insert with 2 row rules') /
              (SELECT ms FROM m WHERE method = 'plain insert + SQL WHERE'))::numeric, 2) AS ratio_rules_vs_sql_where,
       round((2 * current_setting('bench.n')::float8 /
              (((SELECT ms FROM m WHERE method = 'insert with 2 row rules') -
                (SELECT ms FROM m WHERE method = 'plain insert only')) / 1000))::numeric, -3)
           AS row_rule_evaluations_per_s,
       round(((SELECT ms FROM m WHERE method = 'insert, no-op transition-table trigger') /
              (SELECT ms FROM m WHERE method = 'plain insert + SQL WHERE'))::numeric, 2) AS ratio_capture_only_vs_sql_where;
SQL

PGOPTIONS="-c client_min_messages=warning" psql -d postgres -o /dev/null <<'SQL'
SELECT duet_set_tenant('bench-rules');
SELECT duet_rule_drop('over_budget');
SELECT duet_rule_drop('roas_below_1');
DROP TABLE bench_rules_spend, bench_rules_plain, bench_rules_capture;
DROP FUNCTION bench_rules_noop();
SELECT duet_set_tenant(NULL);
DELETE FROM duet.tenants WHERE name = 'bench-rules';
SQL

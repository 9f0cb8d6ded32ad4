#!/usr/bin/env bash
# Metrics: roas and pacing defined once, used in duet_calc, another metric, a rule, a tenant override, duet_ask and ClickHouse
# Every change is a version with who, when and why; a tenant's override applies to that tenant only;
# the ClickHouse UDF computes the composed metric from the same definitions (see docs/metrics.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${DUET_DEMO_DATA:-demo/data}
psql -e <<'SQL'
-- Defined once (admin). Parameters are the formula's variables; units and owners are for dashboards.
SELECT name, arguments, return_type, version FROM duet_metric_define('roas', 'revenue / spend',
       'return on ad spend', unit => 'ratio', owner => 'growth', reason => 'demo: one definition for every consumer');
SELECT name, arguments, version FROM duet_metric_define('pacing', 'round(spend / budget * 100, 1)',
       'budget used, percent', unit => 'percent', owner => 'growth', reason => 'demo');
-- A metric calling a metric (cycles are refused when defined, with the cycle shown).
SELECT name, arguments, depends_on FROM duet_metric_define('roas_pct', 'round(roas() * 100, 1)', 'ROAS in percent', unit => 'percent');
\set ON_ERROR_STOP 0
\echo 'expected error: roas would call roas_pct, which calls roas'
SELECT duet_metric_define('roas', 'roas_pct() / 100');
\set ON_ERROR_STOP 1

-- In any formula: with arguments, or roas() binding its parameters to the row's columns by name.
SELECT c.name, duet_calc('roas()', d) AS roas, duet_calc('roas_pct() || ''%''', d) AS roas_pct,
       duet_calc('pacing(spend, budget)', d) AS pacing, duet_calc('roas(revenue * 0.9, spend) > 1', d) AS profitable_after_fees
  FROM campaign_daily d JOIN campaigns c ON c.id = d.campaign_id
 WHERE d.day = '2026-10-15' ORDER BY c.name;
-- The call compiles to the same bytecode as the formula written out.
SELECT duet_formula_explain('roas_pct()');

-- Native SQL: each global metric that compiles is also an inlined PostgreSQL function with Duet's
-- exact results (division by zero is NULL, no overflow error); pacing and roas_pct use round(),
-- which has no exact SQL form, so they have none, and the catalog says why.
SELECT name, function, not_compiled FROM duet.metric_functions ORDER BY name;
SELECT c.name, duet_metrics.roas(d.revenue, d.spend) AS roas
  FROM campaign_daily d JOIN campaigns c ON c.id = d.campaign_id
 WHERE d.day = '2026-10-15' ORDER BY c.name;
EXPLAIN (VERBOSE, COSTS OFF) SELECT duet_metrics.roas(revenue, spend) FROM campaign_daily;

-- A rule calls the metric; acme overrides roas for itself (net of a 10% agency fee).
SET ROLE acme_analyst;
SELECT name, tenant, version FROM duet_metric_set('roas', 'revenue * 0.9 / spend', 'ROAS net of the agency fee',
       unit => 'ratio', reason => 'acme reports net ROAS');
SELECT duet_rule_create('low_roas_metric', 'roas() < 1.5', target => 'campaign_daily', labels => '{campaign_id}',
                        value => 'roas_pct()', message => 'campaign {campaign_id}: net ROAS {value}') > 0 AS created;
INSERT INTO campaign_daily (tenant, campaign_id, day, impressions, clicks, spend, revenue, budget)
VALUES ('acme', 1, '2026-11-02', 100000, 2000, 500, 800, 600);
SELECT rule, labels, value, message FROM duet.alerts_active WHERE rule = 'low_roas_metric';
SELECT name, source, version, unit, owner, description FROM duet.metrics_catalog ORDER BY name;
RESET ROLE;
SELECT name, source, version, description FROM duet.metrics_catalog ORDER BY name;   -- no tenant: the global ones

-- History and time travel; a rollback is a new version, checked like any change.
SELECT version, operation, formula, reason, changed_by FROM duet_metric_history('roas') WHERE tenant IS NULL;
SELECT version, formula FROM duet_metric_at('roas', now());
SQL

# duet_ask sees the metrics (with the mock LLM of step 50, a canned answer that computes one).
if [ -s "$data/mock_llm/port" ] && [ -z "${OPENAI_API_KEY:-}${ANTHROPIC_API_KEY:-}" ]; then
  python3 - "$data/mock_llm/fixtures.json" <<'PY'
import json, sys
p = sys.argv[1]
fx = json.load(open(p))
fx.setdefault('answers', {})["What is each campaign's net ROAS in percent?"] = [
    "SELECT c.name, duet_calc_number_args('roas_pct(revenue, spend)', sum(d.revenue), sum(d.spend)) AS roas_pct\n"
    "FROM public.campaign_daily d JOIN public.campaigns c ON c.id = d.campaign_id GROUP BY c.name ORDER BY c.name"]
json.dump(fx, open(p + '.tmp', 'w'))
import os; os.rename(p + '.tmp', p)
PY
  sleep 0.1
fi
psql -e <<'SQL'
SET ROLE acme_analyst;
SELECT duet_ask('What is each campaign''s net ROAS in percent?');
SELECT * FROM duet_ask_run('What is each campaign''s net ROAS in percent?', 10);
RESET ROLE;
SQL

# ClickHouse: the definitions file carries every metric; duet_udf expands roas_pct's call of roas.
dir=$data/clickhouse
mkdir -p "$dir"
psql -q -A -t -c "SELECT definitions FROM duet_clickhouse_config('TabSeparated', false)" > "$dir/duet_metrics_v2.tsv"
printf '900\t300\n10\t0\n' | build/ch_udfs/duet_udf --metric roas_pct --definitions "$(cd "$dir" && pwd)/duet_metrics_v2.tsv" --format TabSeparated \
  | paste <(printf 'revenue 900, spend 300\nrevenue 10, spend 0\n') - | sed 's/^/duet_udf roas_pct: /'

# ClickHouse SQL: roas as one ClickHouse expression with Duet's semantics (composed metrics inlined),
# run inline in a SELECT on a real ClickHouse 18.16 server; CREATE FUNCTION statements for ClickHouse
# 21.10+, and the metrics that have no exact ClickHouse form (round) with the reason.
psql -e -c "SELECT duet_metric_sql('roas', 'clickhouse')"
psql -e -c "SELECT name, coalesce(ddl, 'not compiled: ' || not_compiled) AS clickhouse FROM duet_clickhouse_sql_functions() ORDER BY name"
psql -q -A -t -c "SELECT duet_metric_sql('roas', 'clickhouse')" > "$dir/roas.sql"
psql -q -A -F $'\t' -t -c "SELECT c.name, sum(d.revenue), sum(d.spend), duet_metrics.roas(sum(d.revenue), sum(d.spend))
                            FROM campaign_daily d JOIN campaigns c ON c.id = d.campaign_id GROUP BY c.name ORDER BY c.name" \
  > "$dir/roas_pg.tsv"
python3 demo/clickhouse_sql_demo.py "$dir"

#!/usr/bin/env bash
# Pipelines: Kafka -> bronze (jsonb) -> silver (typed, deduplicated, checked, quarantine) -> gold (daily CTR/ROAS)
#
# Declares two pipelines over the bronze table step 30 fills from Kafka: silver maps the jsonb
# events to typed columns with expectations (rows breaking them go to the quarantine with the
# reason), gold keeps daily spend, revenue, CTR and ROAS (metrics) per campaign. Both run in the background
# workers, woken by each commit. Then produces conversions, a poison event and a late event to
# Kafka: the poison event is quarantined, the late one updates only its campaign's gold row.
set -euo pipefail
cd "$(dirname "$0")/../.."
source test/lib.sh
data=${DUET_DEMO_DATA:-demo/data}
boot=$(cat "$data/kafka/bootstrap")

wait_caught_up() {
  for _ in $(seq 150); do
    [ "$(psql -At -c "SELECT duet_set_tenant('acme')" -c "SELECT count(*) FILTER (WHERE lag_rows > 0) = 0 FROM duet.pipeline_status" | tail -1)" = t ] \
      && [ "$(psql -At -c "SELECT count(*) FROM dsp_events_bronze")" -ge "$1" ] && break
    sleep 0.2
  done
}

psql -e <<'SQL'
SELECT duet_set_tenant('acme');
CREATE SEQUENCE dsp_silver_seq;
CREATE TABLE dsp_silver (event_ref text PRIMARY KEY, ts timestamptz, day date, event text, campaign_id int,
                         country text, cost numeric, revenue numeric, seq bigint NOT NULL);
CREATE INDEX ON dsp_silver (seq);
CREATE INDEX ON dsp_silver (campaign_id, day);
CREATE TABLE dsp_gold (campaign_id int, day date, impressions bigint, clicks bigint, spend numeric,
                       revenue numeric, ctr float8, roas numeric, PRIMARY KEY (campaign_id, day));
-- silver: typed columns from the jsonb payload, one row per Kafka message (partition/offset),
-- a sequence number for the next stage, two drop expectations (one a Duet formula).
SELECT duet_pipeline_create('dsp_silver', 'dsp_events_bronze', 'dsp_silver',
    '{"event_ref":   "_partition || ''/'' || _offset",
      "ts":          "(payload->>''ts'')::timestamptz",
      "day":         "(payload->>''ts'')::date",
      "event":       "payload->>''event''",
      "campaign_id": "(payload->>''campaign_id'')::int",
      "country":     "payload->>''country''",
      "cost":        "coalesce((payload->>''cost_micros'')::numeric / 1e6, 0)",
      "revenue":     "coalesce((payload->>''revenue_micros'')::numeric / 1e6, 0)",
      "seq":         "nextval(''dsp_silver_seq'')"}',
    order_by => '_offset', partition_by => '_partition', key => '{event_ref}', mode => 'upsert',
    expectations => '[{"name": "cost_nonnegative", "predicate": "=cost >= 0", "action": "drop"},
                      {"name": "known_campaign", "predicate": "campaign_id BETWEEN 1 AND 6", "action": "drop"},
                      {"name": "has_country", "predicate": "country IS NOT NULL", "action": "warn"}]',
    drift_column => 'payload');
-- gold: the groups new silver rows touch are recomputed: sums in SQL, then CTR and ROAS through
-- the metrics layer ("=" formulas over the group's sums, resolved for the tenant as silver's are).
SELECT name, formula FROM duet_metric_define('ctr', 'clicks / impressions', 'click-through rate');
SELECT name, formula FROM duet_metric_define('roas', 'revenue / spend', 'return on ad spend');
SELECT duet_pipeline_create('dsp_gold', 'dsp_silver', 'dsp_gold',
    '{"campaign_id": "campaign_id", "day": "day",
      "impressions": "count(*) FILTER (WHERE event = ''impression'')",
      "clicks":      "count(*) FILTER (WHERE event = ''click'')",
      "spend":       "round(sum(cost), 4)", "revenue": "round(sum(revenue), 4)",
      "ctr":         "=ctr(clicks, impressions)",
      "roas":        "=round(roas(revenue, spend), 3)"}',
    order_by => 'seq', key => '{campaign_id,day}', mode => 'aggregate');
\echo 'expected error: a transform entry that is not one expression is refused'
\set ON_ERROR_STOP 0
SELECT duet_pipeline_alter('dsp_silver', '{"transform": {"event_ref": "1) FROM pg_authid --"}}');
\set ON_ERROR_STOP 1
SQL
wait_caught_up 2970

# Conversions with revenue, a poison event (negative cost, an unknown campaign, a new key) and,
# after the gold rows are shown, a late event for a day already aggregated.
awk 'BEGIN { for (i = 1; i <= 60; i++)
  printf "c%d:{\"event\": \"conversion\", \"campaign_id\": %d, \"ts\": \"2026-11-23T11:%02d:00Z\", \"revenue_micros\": %d, \"country\": \"DE\"}\n",
         i % 6, 1 + i % 6, i % 60, 4000000 + 10000 * i }' > "$data/kafka/conversions.txt"
echo 'c1:{"event": "click", "campaign_id": 99, "ts": "2026-11-23T11:30:00Z", "cost_micros": -350000, "country": "DE", "coupon": "FREE"}' >> "$data/kafka/conversions.txt"
kcat -P -b "$boot" -t dsp-events -l -K: "$data/kafka/conversions.txt"
echo "produced 60 conversions and 1 poison event to dsp-events"
wait_caught_up 3031

psql -e <<'SQL'
SELECT duet_set_tenant('acme');
SELECT name, state, mode, position, lag_rows, rows_in_1h, rows_out_1h, rows_dropped_1h, failures_1h, drift_24h, quarantined
  FROM duet.pipeline_status ORDER BY name DESC;
SELECT part, pos, failed, source_row->'payload' AS payload FROM duet.pipeline_quarantine;
SELECT * FROM dsp_gold ORDER BY campaign_id, day;
SQL

echo 'c2:{"event": "conversion", "campaign_id": 3, "ts": "2026-11-23T09:00:00Z", "revenue_micros": 9000000, "country": "FR"}' \
  | kcat -P -b "$boot" -t dsp-events -K:
echo "produced a late conversion of campaign 3 (09:00, before everything else of 2026-11-23) to dsp-events"
wait_caught_up 3032
psql -e <<'SQL'
SELECT duet_set_tenant('acme');
-- the late event updated only the gold row of its campaign and day: campaign 3's revenue and ROAS
SELECT * FROM dsp_gold ORDER BY campaign_id, day;
SELECT kind, status, rows_in, rows_out, rows_dropped, failures, error FROM duet.pipeline_runs ORDER BY id DESC LIMIT 4;
SQL

#!/usr/bin/env bash
# Kafka: DSP events stream through the dev broker into a bronze jsonb table, read via a silver view
#
# Starts the dev broker (librdkafka mock cluster, 127.0.0.1), produces 3,000 DSP events with kcat
# (1% malformed), lets a pg_duet worker ingest them exactly once, and publishes an alert back to
# Kafka through the outbox. 30-kafka.stop stops the broker.
set -euo pipefail
cd "$(dirname "$0")/../.."
source test/lib.sh
data=${DUET_DEMO_DATA:-demo/data}
mkdir -p "$data/kafka"
[ -f "$data/kafka/pid" ] && kill "$(cat "$data/kafka/pid")" 2>/dev/null || true
rm -f "$data/kafka/bootstrap"
nohup "$DUET_BUILD/devbroker" -f "$data/kafka/bootstrap" -t dsp-events:4 -t alerts:1 </dev/null \
  >"$data/kafka/broker.out" 2>"$data/kafka/broker.log" &
echo $! > "$data/kafka/pid"
for _ in $(seq 100); do [ -s "$data/kafka/bootstrap" ] && break; sleep 0.1; done
boot=$(cat "$data/kafka/bootstrap")
echo "dev broker on $boot"

# 3,000 events for the sample's six campaigns; every 100th is malformed.
awk 'BEGIN {
  for (i = 1; i <= 3000; i++) {
    if (i % 100 == 0) { printf "{\"event\": \"impression\", \"campaign_id\": %d, \"ts\": \n", 1 + i % 6; continue }
    kind = (i % 20 == 0) ? "click" : "impression";
    printf "{\"event\": \"%s\", \"campaign_id\": %d, \"ts\": \"2026-11-23T10:%02d:%02dZ\", \"cost_micros\": %d, \"country\": \"%s\"}\n",
           kind, 1 + i % 6, (i / 60) % 60, i % 60, (kind == "click") ? 350000 : 2100, (i % 2) ? "DE" : "FR";
  } }' > "$data/kafka/events.json"
kcat -P -b "$boot" -t dsp-events -l -K: -X linger.ms=20 <(awk '{ printf "c%d:%s\n", NR % 6, $0 }' "$data/kafka/events.json")
echo "produced 3000 events to dsp-events"

psql -e <<SQL
ALTER SYSTEM SET duet.outbox_brokers = '$boot';
SELECT pg_reload_conf();
CREATE TABLE dsp_events_bronze (
    payload     jsonb NOT NULL,
    _topic      text, _partition int, _offset bigint, _timestamp timestamptz, _key text,
    ingested_at timestamptz NOT NULL DEFAULT now());
SELECT duet_kafka_consume('dsp_events', 'dsp-events', 'dsp_events_bronze', '$boot', 'jsonb',
                          flush_interval_ms => 200, parallelism => 2);
CREATE VIEW dsp_events_silver AS
SELECT (payload->>'ts')::timestamptz AS ts, payload->>'event' AS event,
       (payload->>'campaign_id')::int AS campaign_id, payload->>'country' AS country,
       (payload->>'cost_micros')::bigint / 1e6 AS cost
  FROM dsp_events_bronze;
SQL
for _ in $(seq 150); do
  [ "$(psql -At -c "SELECT count(*) FROM dsp_events_bronze")" -ge 2970 ] && break
  sleep 0.2
done
psql -e <<'SQL'
SELECT count(*) AS bronze_rows FROM dsp_events_bronze;
SELECT c.name, count(*) FILTER (WHERE s.event = 'impression') AS impressions,
       count(*) FILTER (WHERE s.event = 'click') AS clicks, round(sum(s.cost), 2) AS spend
  FROM dsp_events_silver s JOIN campaigns c ON c.id = s.campaign_id
 GROUP BY c.name ORDER BY c.name;
SELECT name, state, workers, rows, dead_letters, lag FROM duet.kafka_status;
SELECT "offset", error, left(convert_from(value, 'UTF8'), 50) AS raw FROM duet.kafka_dead_letters LIMIT 3;
-- an alert, published to Kafka only because this transaction commits
SELECT duet_kafka_publish('alerts', 'acme-spring-sale', '{"alert": "spend pacing above 120%", "campaign_id": 1}'::jsonb);
SQL
for _ in $(seq 50); do
  [ "$(psql -At -c "SELECT count(*) FROM duet.kafka_outbox WHERE sent_at IS NULL")" -eq 0 ] && break
  sleep 0.2
done
psql -e -c "SELECT id, topic, key, sent_at IS NOT NULL AS sent, partition, \"offset\" FROM duet.kafka_outbox"
echo "consumed back from Kafka with kcat:"
kcat -C -b "$boot" -t alerts -e -q -f 'key=%k headers=%h value=%s\n'

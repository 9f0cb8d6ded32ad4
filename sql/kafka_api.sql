-- kafka: consumer API arguments are checked with clear errors; nothing is created on error.
-- (contrib_regression is not in duet.databases: no worker runs here, the catalog is what counts)
CREATE TABLE kafka_api_t (id int, v text, _offset bigint);
CREATE TABLE kafka_api_j (doc jsonb, n bigserial);
SELECT duet_kafka_consume('bad name!', 't', 'kafka_api_t', '127.0.0.1:9', 'json');
SELECT duet_kafka_consume('c1', 'bad/topic', 'kafka_api_t', '127.0.0.1:9', 'json');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '', 'json');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'avro');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json', batch_size => 0);
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json', parallelism => 33);
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json', start_offset => 'soonish');
SELECT duet_kafka_consume('c1', 't', NULL, '127.0.0.1:9', 'json');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json', column_map => '["id"]');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'csv', column_map => '{"a": "id"}');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'csv', column_map => '["id", "nope"]');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_j', '127.0.0.1:9', 'jsonb', column_map => '{"value": "missing"}');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json', properties => '{"no.such.property": "1"}');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json', properties => '{"group.id": "mine"}');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json', properties => '{"statistics.interval.ms": "100"}');
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json', properties => '["x"]');
SELECT duet_kafka_consume('c1', 't', 'pg_class', '127.0.0.1:9', 'json');
SELECT count(*) AS consumers_after_errors FROM duet.kafka_consumers;
-- valid consumers, then duplicate names and management of unknown ones
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json', start_offset => '2026-01-01 00:00:00+00',
                          properties => '{"security.protocol": "sasl_plaintext", "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "p"}');
SELECT duet_kafka_consume('c2', 't', 'kafka_api_j', '127.0.0.1:9', 'jsonb', parallelism => 4);
SELECT duet_kafka_consume('c1', 't', 'kafka_api_t', '127.0.0.1:9', 'json');
SELECT name, topic, target, format, batch_size, flush_interval_ms, start_position, parallelism, enabled, generation
  FROM duet.kafka_consumers ORDER BY name;
SELECT duet_kafka_stop('nope');
SELECT duet_kafka_stop('c1');
-- a reset stores the offsets of the new position, asked of the brokers in its transaction: with
-- none reachable it fails and changes nothing (generation and position stay)
-- (terse: the detail is librdkafka's words for the failed connection)
\set VERBOSITY terse
SELECT duet_kafka_reset('c1', '2026-02-01 00:00:00+00'::timestamptz);
\set VERBOSITY default
SELECT duet_kafka_reset('c1', 'whenever');
SELECT name, enabled, generation, start_position FROM duet.kafka_consumers WHERE name = 'c1';
SELECT duet_kafka_start('c1');
SELECT name, state, workers, rows, lag FROM duet.kafka_status ORDER BY name;
SELECT duet_kafka_drop('c1');
SELECT duet_kafka_drop('c2');
SELECT count(*) AS consumers_left FROM duet.kafka_consumers;
-- the outbox checks its arguments and writes in the caller's transaction
SELECT duet_kafka_publish('bad topic', 'k', 'v');
SELECT duet_kafka_publish('t', 'k', NULL::text);
SELECT duet_kafka_publish('t', 'k', 'v', '{"h": 1}');
BEGIN;
SELECT duet_kafka_publish('t', 'k', '{"a": 1}'::jsonb, '{"h": "x"}') > 0 AS queued;
SELECT topic, key, value, headers, sent_at FROM duet.kafka_outbox;
ROLLBACK;
SELECT count(*) AS outbox_after_rollback FROM duet.kafka_outbox;
DROP TABLE kafka_api_t, kafka_api_j;

-- kafka_secrets: a consumer's secret properties (passwords, client secrets, keys) are kept apart
-- from duet.kafka_consumers, in a table pg_dump does not write.
CREATE TABLE ks_target (v jsonb);
SELECT duet_kafka_consume('ks', 'ks-topic', 'ks_target', '127.0.0.1:1', 'jsonb',
    properties => '{"client.id": "ks", "sasl.username": "u", "sasl.password": "s3cret", "ssl.key.password": "k3y"}');
SELECT properties FROM duet.kafka_consumers WHERE name = 'ks';
SELECT s.properties FROM duet.kafka_consumer_secrets s JOIN duet.kafka_consumers c ON c.id = s.consumer_id
 WHERE c.name = 'ks';
SELECT 'duet.kafka_consumers'::regclass = ANY (extconfig) AS consumers_dumped,
       'duet.kafka_consumer_secrets'::regclass = ANY (extconfig) AS secrets_dumped
  FROM pg_extension WHERE extname = 'pg_duet';
-- no secret, no row
SELECT duet_kafka_consume('ks2', 'ks-topic', 'ks_target', '127.0.0.1:1', 'jsonb', properties => '{"client.id": "ks2"}');
SELECT count(*) AS secrets_of_ks2 FROM duet.kafka_consumer_secrets s JOIN duet.kafka_consumers c ON c.id = s.consumer_id
 WHERE c.name = 'ks2';
SELECT duet_kafka_drop('ks'), duet_kafka_drop('ks2');
SELECT count(*) AS secrets_left FROM duet.kafka_consumer_secrets;
DROP TABLE ks_target;

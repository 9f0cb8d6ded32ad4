-- kafka: consumer management is granted (duet_kafka_admin), not public; secrets stay superuser-only.
CREATE ROLE kafka_priv_plain;
CREATE ROLE kafka_priv_admin IN ROLE duet_kafka_admin;
CREATE ROLE kafka_priv_other IN ROLE duet_kafka_admin;
CREATE TABLE kafka_priv_t (v jsonb);
GRANT INSERT ON kafka_priv_t TO kafka_priv_admin;
SET ROLE kafka_priv_plain;
SELECT duet_kafka_consume('kp', 't', 'kafka_priv_t', '127.0.0.1:9', 'jsonb');
SELECT duet_kafka_publish('t', 'k', 'v');
SELECT * FROM duet.kafka_status;
SELECT * FROM duet.kafka_outbox;
RESET ROLE;
SET ROLE kafka_priv_other;
-- an admin without INSERT on the target cannot point a consumer at it
SELECT duet_kafka_consume('kp', 't', 'kafka_priv_t', '127.0.0.1:9', 'jsonb');
RESET ROLE;
SET ROLE kafka_priv_admin;
-- properties that reach files or load code are superuser-only
SELECT duet_kafka_consume('kp', 't', 'kafka_priv_t', '127.0.0.1:9', 'jsonb', properties => '{"ssl.ca.location": "/etc/passwd"}');
SELECT duet_kafka_consume('kp', 't', 'kafka_priv_t', '127.0.0.1:9', 'jsonb', properties => '{"sasl.password": "s3cret"}');
SELECT name, owner, state FROM duet.kafka_status;
SELECT properties FROM duet.kafka_consumers;
SELECT count(*) FROM duet.kafka_dead_letters;
SELECT duet_kafka_publish('t', 'k', 'v') > 0 AS admin_can_publish;
RESET ROLE;
SELECT properties FROM duet.kafka_consumers WHERE name = 'kp';  -- a superuser reads the secret
SET ROLE kafka_priv_other;
SELECT duet_kafka_stop('kp');
SELECT duet_kafka_drop('kp');
RESET ROLE;
-- the owner (or a superuser) manages it
SET ROLE kafka_priv_admin;
SELECT duet_kafka_stop('kp');
SELECT duet_kafka_drop('kp');
RESET ROLE;
-- a superuser may set file properties
SELECT duet_kafka_consume('kp_su', 't', 'kafka_priv_t', '127.0.0.1:9', 'jsonb', properties => '{"ssl.ca.location": "/etc/ssl/certs"}');
SELECT duet_kafka_drop('kp_su');
-- the outbox brokers setting is superuser-only
SET ROLE kafka_priv_admin;
SHOW duet.outbox_brokers;
RESET ROLE;
DELETE FROM duet.kafka_outbox;
DROP TABLE kafka_priv_t;
DROP ROLE kafka_priv_plain, kafka_priv_admin, kafka_priv_other;

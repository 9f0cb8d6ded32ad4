-- kafka: consumer management is granted (duet_kafka_admin), not public; secrets stay superuser-only.
CREATE ROLE kafka_priv_plain;
CREATE ROLE kafka_priv_admin IN ROLE duet_kafka_admin;
CREATE ROLE kafka_priv_other IN ROLE duet_kafka_admin;
CREATE TABLE kafka_priv_t (v jsonb);
GRANT INSERT ON kafka_priv_t TO kafka_priv_admin;
CREATE TABLE kafka_priv_t2 (v jsonb);
GRANT INSERT ON kafka_priv_t2 TO kafka_priv_other;
-- topics are granted by a superuser: kafka_priv_admin has t, kafka_priv_other has none
INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_publish, may_consume)
VALUES ('t', 'kafka_priv_admin', true, true), ('other.*', 'kafka_priv_other', true, false);
SET ROLE kafka_priv_other;
SELECT duet_kafka_publish('t', 'k', 'v');
SELECT duet_kafka_publish('other.clicks', 'k', 'v') > 0 AS prefix_grant_publishes;
SELECT duet_kafka_consume('kp_other', 'other.clicks', 'kafka_priv_t2', '127.0.0.1:9', 'jsonb');
SELECT topic_pattern, may_publish, may_consume FROM duet.kafka_topic_grants;  -- its own grants only
RESET ROLE;
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
SELECT s.properties FROM duet.kafka_consumer_secrets s JOIN duet.kafka_consumers c ON c.id = s.consumer_id
 WHERE c.name = 'kp';  -- a superuser reads the secret, kept apart
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
DELETE FROM duet.kafka_topic_grants;
DROP TABLE kafka_priv_t, kafka_priv_t2;
DROP ROLE kafka_priv_plain, kafka_priv_admin, kafka_priv_other;

-- kafka: a plain table without triggers is loaded without COPY (kafka_direct.c), any other table
-- through COPY; both must give the same rows, the same defaults and sequence values, and the
-- same dead letters with the same errors and details. The same messages go to two tables that
-- differ only in a statement trigger that does nothing (which keeps the second on COPY), through
-- duet_kafka_replay (no broker needed). DEBUG1 says which way each batch went.
SET client_min_messages = warning;
CREATE DOMAIN kd_pos AS int NOT NULL CHECK (VALUE > 0);
CREATE FUNCTION kd_nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TABLE kd_direct (
  id int NOT NULL,
  v int CHECK (v >= 0),
  t text,
  d kd_pos,
  j jsonb,
  a int[],
  seq bigserial,
  note text DEFAULT 'dflt' || '!',
  at timestamptz DEFAULT '2026-01-01 00:00:00+00',
  _offset bigint,
  CHECK (t IS DISTINCT FROM 'forbidden')
);
CREATE UNIQUE INDEX ON kd_direct (id);
CREATE INDEX ON kd_direct (t);
CREATE TABLE kd_copy (LIKE kd_direct INCLUDING ALL);
CREATE SEQUENCE kd_copy_seq;
ALTER TABLE kd_copy ALTER seq SET DEFAULT nextval('kd_copy_seq');
CREATE TRIGGER kd_copy_stays_on_copy BEFORE INSERT ON kd_copy FOR EACH STATEMENT EXECUTE FUNCTION kd_nothing();
SELECT duet_kafka_consume('kd_direct', 'kd', 'kd_direct', '127.0.0.1:9', 'json', batch_size => 7);
SELECT duet_kafka_consume('kd_copy', 'kd', 'kd_copy', '127.0.0.1:9', 'json', batch_size => 7);

CREATE FUNCTION pg_temp.dead(consumer text, msgs text[]) RETURNS void LANGUAGE sql AS $$
  INSERT INTO duet.kafka_dead_letters (consumer_id, consumer, owner, topic, partition, "offset", value, error)
  SELECT c.id, c.name, c.owner, c.topic, 0, o - 1, convert_to(m, 'UTF8'), 'test'
  FROM duet.kafka_consumers c, unnest(msgs) WITH ORDINALITY AS u(m, o) WHERE c.name = consumer
$$;
CREATE TEMP TABLE msgs (m text[]);
INSERT INTO msgs VALUES (ARRAY[
  '{"id": 1, "v": 1, "t": "plain", "d": 1, "j": {"a": 1}, "a": "{1,2}"}',
  '{"id": 2, "v": 0, "t": "tab\there, line\nbreak, back\\slash \\N", "d": 2}',
  '{"id": 3, "v": 5, "t": null, "d": 3, "note": "given"}',
  '{"id": 1, "v": 1, "t": "duplicate key", "d": 4}',
  '{"id": 4, "v": -1, "t": "check fails", "d": 5}',
  '{"v": 1, "t": "no id", "d": 6}',
  '{"id": "x", "d": 7}',
  '{"id": 5, "d": 0}',
  '{"id": 6, "d": null}',
  '{"id": 7}',
  '{"id": 8, "d": 8, "t": "forbidden"}',
  '{"id": 9, "d": 9, "j": "not json"}',
  '{"id": 10, "d": 10, "a": "{1,x}"}',
  '{"id": "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé", "d": 11}',
  '{"id": 11, "d": 12, "t": "éééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé", "v": -5}',
  '{"id": 12, "d": 13, "at": "2026-02-03 04:05:06+00", "seq": 1000}',
  '{"id": 2, "d": 14, "t": "duplicate of a row of an earlier batch"}',
  '{"id": 13, "d": 15, "v": 2147483648}',
  '{"id": 14, "d": 16}',
  '{"id": 15, "d": 17, "v": -1, "t": "' || repeat('x', 100000) || '"}',
  '{"id": 16, "d": 18, "t": "' || repeat('é', 100000) || '", "a": "{' || repeat('9', 100000) || '}"}'
]);
SELECT pg_temp.dead('kd_direct', m), pg_temp.dead('kd_copy', m) FROM msgs;
SET client_min_messages = debug1;
SELECT * FROM duet_kafka_replay('kd_direct');
SELECT * FROM duet_kafka_replay('kd_copy');
SET client_min_messages = warning;

-- the same rows, defaults and sequence values
SELECT _offset, id, v, t, d, j, a, seq, note, at FROM kd_direct ORDER BY _offset;
SELECT count(*) AS differing_rows FROM (
  (SELECT _offset, id, v, t, d, j, a, seq, note, at FROM kd_direct
   EXCEPT ALL SELECT _offset, id, v, t, d, j, a, seq, note, at FROM kd_copy)
  UNION ALL
  (SELECT _offset, id, v, t, d, j, a, seq, note, at FROM kd_copy
   EXCEPT ALL SELECT _offset, id, v, t, d, j, a, seq, note, at FROM kd_direct)) x;
-- the same dead letters, errors and details (but for the table's name)
SELECT "offset", left(error, 100) AS error, left(detail, 300) AS detail, length(detail) AS detail_bytes
FROM duet.kafka_dead_letters WHERE consumer = 'kd_direct' ORDER BY "offset";
SELECT count(*) AS differing_dead_letters FROM (
  SELECT "offset", error, replace(detail, 'kd_direct', 'kd') FROM duet.kafka_dead_letters WHERE consumer = 'kd_direct'
  EXCEPT ALL
  SELECT "offset", replace(error, 'kd_copy', 'kd_direct'), replace(detail, 'kd_copy', 'kd')
  FROM duet.kafka_dead_letters WHERE consumer = 'kd_copy') x;
SELECT count(*) FILTER (WHERE consumer = 'kd_direct') AS direct, count(*) FILTER (WHERE consumer = 'kd_copy') AS copy
FROM duet.kafka_dead_letters;

-- The row an error names is the one dead-lettered, whatever the table is called (COPY's line
-- number is read from the last "COPY <table>, line " of the context).
CREATE TABLE "kd, line 1" (x int CHECK (x > 0), _offset bigint);
CREATE TABLE "kd copy, line 1" (x int CHECK (x > 0), _offset bigint);
CREATE TRIGGER kd_copy_stays_on_copy BEFORE INSERT ON "kd copy, line 1" FOR EACH STATEMENT EXECUTE FUNCTION kd_nothing();
SELECT duet_kafka_consume('kd_line', 'kd', '"kd, line 1"', '127.0.0.1:9', 'json'),
       duet_kafka_consume('kd_copy_line', 'kd', '"kd copy, line 1"', '127.0.0.1:9', 'json');
SELECT pg_temp.dead(n, ARRAY['{"x": 1}', '{"x": 2}', '{"x": -3}', '{"x": 4}', '{"x": "five"}', '{"x": 6}'])
FROM unnest(ARRAY['kd_line', 'kd_copy_line']) n;
SELECT * FROM duet_kafka_replay('kd_line');
SELECT * FROM duet_kafka_replay('kd_copy_line');
SELECT 'direct' AS way, array_agg(x ORDER BY x) FROM "kd, line 1"
UNION ALL SELECT 'copy', array_agg(x ORDER BY x) FROM "kd copy, line 1";
SELECT consumer, "offset", error FROM duet.kafka_dead_letters WHERE consumer LIKE 'kd%line' ORDER BY 1, 2;

-- The target stays locked (RowExclusiveLock) from the choice of the way to the end of the
-- transaction, even when every attempt failed: no trigger, partition or default can come
-- between them.
DELETE FROM duet.kafka_dead_letters WHERE consumer LIKE 'kd\_%';
SELECT pg_temp.dead('kd_direct', ARRAY['{"id": "bad"}', '{"id": 1, "d": 0}']);
BEGIN;
SELECT * FROM duet_kafka_replay('kd_direct');
SELECT mode FROM pg_locks WHERE relation = 'kd_direct'::regclass AND pid = pg_backend_pid() ORDER BY 1;
COMMIT;

-- which tables go without COPY: only an ordinary table, not a partition, without triggers,
-- stored generated columns or volatile defaults (other than nextval and identity)
CREATE TABLE kd_identity (id int GENERATED ALWAYS AS IDENTITY, x int, _offset bigint);
CREATE TABLE kd_volatile (x int, r float8 DEFAULT random(), _offset bigint);
CREATE TABLE kd_generated (x int, y int GENERATED ALWAYS AS (x * 2) STORED, _offset bigint);
CREATE TABLE kd_parted (x int, _offset bigint) PARTITION BY RANGE (x);
CREATE TABLE kd_part1 PARTITION OF kd_parted FOR VALUES FROM (0) TO (100);
CREATE TABLE kd_fk (x int REFERENCES kd_direct (id), _offset bigint);
SELECT duet_kafka_consume(n, 'kd', n, '127.0.0.1:9', 'json')
FROM unnest(ARRAY['kd_identity', 'kd_volatile', 'kd_generated', 'kd_parted', 'kd_part1', 'kd_fk']) n;
SELECT pg_temp.dead(n, ARRAY['{"x": 1}', '{"x": 2}'])
FROM unnest(ARRAY['kd_identity', 'kd_volatile', 'kd_generated', 'kd_parted', 'kd_part1', 'kd_fk']) n;
SET client_min_messages = debug1;
SELECT * FROM duet_kafka_replay('kd_identity');
SELECT * FROM duet_kafka_replay('kd_volatile');
SELECT * FROM duet_kafka_replay('kd_generated');
SELECT * FROM duet_kafka_replay('kd_parted');
SELECT * FROM duet_kafka_replay('kd_part1');
SELECT * FROM duet_kafka_replay('kd_fk');
SET client_min_messages = warning;
SELECT id, x, _offset FROM kd_identity ORDER BY _offset;
SELECT x, y FROM kd_generated ORDER BY x;
SELECT x FROM kd_parted ORDER BY x;
SELECT x FROM kd_fk ORDER BY x;

SELECT duet_kafka_drop(n)
FROM unnest(ARRAY['kd_direct', 'kd_copy', 'kd_identity', 'kd_volatile', 'kd_generated', 'kd_parted', 'kd_part1', 'kd_fk',
                   'kd_line', 'kd_copy_line']) n;
DELETE FROM duet.kafka_dead_letters WHERE consumer LIKE 'kd\_%' OR consumer LIKE 'kd%line';
DROP TABLE "kd, line 1", "kd copy, line 1", kd_fk, kd_direct, kd_copy, kd_identity, kd_volatile, kd_generated, kd_parted;
DROP SEQUENCE kd_copy_seq;
DROP FUNCTION kd_nothing();
DROP DOMAIN kd_pos;

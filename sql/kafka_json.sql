-- kafka: what a json message puts in each column, and which messages are dead letters. The
-- messages go through the ingest path by duet_kafka_replay (no broker needed): every case must
-- give the same rows and the same errors whichever parser reads the message (kafka_render.c has
-- a fast path for flat objects and PostgreSQL's JSON parser for the rest). The second half is a
-- seeded fuzz: 3,000 mutations of valid messages, summarised by a digest of the outcome.
SET client_min_messages = warning;
CREATE TABLE kafka_json_t (i int, t text, n numeric, b boolean, j jsonb, ts timestamptz, _offset bigint);
SELECT duet_kafka_consume('kjson', 'kjson', 'kafka_json_t', '127.0.0.1:9', 'json', batch_size => 500);

CREATE FUNCTION pg_temp.dead(msgs text[]) RETURNS void LANGUAGE sql AS $$
  INSERT INTO duet.kafka_dead_letters (consumer_id, consumer, owner, topic, partition, "offset", value, error)
  SELECT c.id, c.name, c.owner, c.topic, 0, o - 1, convert_to(m, 'UTF8'), 'test'
  FROM duet.kafka_consumers c, unnest(msgs) WITH ORDINALITY AS u(m, o) WHERE c.name = 'kjson'
$$;

SELECT pg_temp.dead(ARRAY[
  '{"i": 1, "t": "plain", "n": 1.5, "b": true, "j": {"a": [1, 2]}, "ts": "2026-01-02 03:04:05+00"}',
  '{"i":2,"t":"no spaces","n":-0.25e2,"b":false}',
  E' \t\n{ "i" : 3 , "t" : "" }\r\n ',
  '{}',
  '{"i": 4, "t": null, "n": null, "b": null, "j": null}',
  '{"i": 5, "t": "first", "t": "second"}',
  '{"i": 6, "t": "x", "t": null}',
  '{"i": 7, "unknown": 1, "other": "x", "t": "kept"}',
  '{"i": 8, "t": "tab\there"}',
  '{"i": 9, "t": "quote \" and \\ backslash \u00e9"}',
  '{"i": 10, "t": "ümlaut ✓ 😀"}',
  '{"i": 11, "j": [1, {"b": 2}], "t": [1]}',
  '{"i": 12, "j": "a string", "n": 0}',
  '{"i": 13, "n": 1E+3, "t": 0.0}',
  '{"i": 14, "t": -0}',
  '{"I": 15, "i ": 15, "i": 15}',
  '{"i": "16"}',
  '{"i": 17, "t": true, "j": false}',
  '{"i": 18, "j": {}}',
  '{"i": 19, "j": []}',
  '{"i": 20, "t": "a\\nb"}',
  '{"i": 21, "t": "c:\\\\dir"}',
  '{"i": 22, "t": "line\nbreak"}',
  '{"i": 23, "t": "\t"}',
  '{"i": 24, "t": "back\\"}',
  '{"i": 25}  x',
  '{"i": 26,}',
  '{"i": 27 "t": "x"}',
  '{"i": 28, "t": "x"',
  '{"i": 29, "t": "unterminated}',
  '{"i": 30, "n": 01}',
  '{"i": 31, "n": 1.}',
  '{"i": 32, "n": .5}',
  '{"i": 33, "n": +1}',
  '{"i": 34, "n": 1e}',
  '{"i": 35, "n": -}',
  '{"i": 36, "b": tru}',
  '{"i": 37, "b": truex}',
  '{"i": 38, "b": nul}',
  '{"i": 39, "n": 12abc}',
  '{"i": 40, "n": NaN}',
  '[1, 2]',
  '"just a string"',
  '42',
  'null',
  '',
  '   ',
  '{"i": 41}{"i": 42}',
  '{i: 43}',
  '{"i": 44, ''t'': "x"}',
  '{"i": 45, "t": "x"}}',
  '{"i": 46, "j": {"unclosed": 1}',
  '{"i": 47, "n": 1e40}',
  '{"i": 48, "i": "not a number"}',
  '{"i": 49, "i": 50}',
  '{"i": 2147483648}',
  '{"i": 51, "ts": "not a time"}',
  '{"i": 52, "n": 123456789012345678901234567890.123456789}',
  '{"i": 53, "t": "\u0000"}',
  '{"i": 54, "t": "\ud83d\ude00"}',
  '{"i": 55, "t": "\ud83d"}',
  '{"i": 56, "_offset": 999}'
]);
SELECT * FROM duet_kafka_replay('kjson');
SELECT _offset, i, t, n, b, j, ts FROM kafka_json_t ORDER BY _offset;
SELECT "offset", error, detail FROM duet.kafka_dead_letters ORDER BY "offset";

-- Seeded fuzz: each mutation replaces, inserts or deletes one to three bytes of a valid message
-- with JSON's own characters. Same outcome with either parser: same digest.
TRUNCATE kafka_json_t;
DELETE FROM duet.kafka_dead_letters;
CREATE FUNCTION pg_temp.edit(m text, r1 float8, r2 float8, r3 float8) RETURNS text LANGUAGE sql AS $$
  SELECT CASE (r2 * 3)::int % 3
           WHEN 0 THEN overlay(m PLACING c FROM p FOR 1)
           WHEN 1 THEN overlay(m PLACING c FROM p FOR 0)
           ELSE overlay(m PLACING '' FROM p FOR 1) END
  FROM (SELECT 1 + (r1 * length(m))::int AS p,
               substr(a, 1 + (r3 * (length(a) - 1))::int, 1) AS c
        FROM (SELECT '{}[]":, 0123456789-+.eEtrufalsn\ ' || chr(9) || chr(10) || 'x' || chr(1) AS a) x) y
$$;
SELECT setseed(0.42);
CREATE TEMP TABLE fuzz AS
SELECT g, pg_temp.edit(CASE WHEN k >= 2 THEN pg_temp.edit(CASE WHEN k >= 3 THEN pg_temp.edit(m, r[7], r[8], r[9]) ELSE m END,
                                                        r[4], r[5], r[6]) ELSE m END, r[1], r[2], r[3]) AS m
FROM (SELECT g, 1 + (g % 3) AS k,
             (ARRAY['{"i": 1, "t": "abc", "n": 2.5, "b": true, "j": {"k": [1, null]}, "ts": "2026-01-02T03:04:05Z"}',
                    '{"t":"x","i":-12,"n":0.5e-3,"b":false,"j":null}',
                    '{ "n" : 10 , "i" : 0 , "t" : "é✓" }'])[1 + (g / 3) % 3] AS m,
             ARRAY[random(), random(), random(), random(), random(), random(), random(), random(), random()] AS r
      FROM generate_series(1, 3000) g ORDER BY g) x;
SELECT pg_temp.dead(array_agg(m ORDER BY g)) FROM fuzz;
SELECT * FROM duet_kafka_replay('kjson');
SELECT count(*) AS landed, md5(string_agg(kafka_json_t::text, '|' ORDER BY _offset)) FROM kafka_json_t;
SELECT split_part(error, ':', 1) AS error, count(*) FROM duet.kafka_dead_letters GROUP BY 1 ORDER BY 1;
SELECT md5(string_agg("offset" || error || coalesce(detail, ''), '|' ORDER BY "offset")) AS dead_letters
FROM duet.kafka_dead_letters;

SELECT duet_kafka_drop('kjson');
DROP TABLE kafka_json_t;

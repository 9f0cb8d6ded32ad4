-- pg_duet update 0.1.0 -> 0.2.0.
-- Every SQL change after the frozen 0.1.0 release goes here AND into pg_duet/sql/NN_*.sql (the
-- full install script of the current version); test/t/090_upgrade.pl checks that both give the
-- same schema.

\echo Use "ALTER EXTENSION pg_duet UPDATE TO '0.2.0'" to load this file. \quit

-- Kafka (issue 12, silent loss): tombstones in dead letters, the gaps table, gaps in the status.
ALTER TABLE duet.kafka_dead_letters ALTER COLUMN value DROP NOT NULL;
ALTER TABLE duet.kafka_dead_letters ADD COLUMN tombstone boolean NOT NULL DEFAULT false;
ALTER TABLE duet.kafka_dead_letters ADD CONSTRAINT kafka_dead_letters_tombstone CHECK (tombstone = (value IS NULL));
COMMENT ON COLUMN duet.kafka_dead_letters.tombstone IS 'the message had no value (a tombstone: delete the key); value is then NULL';
COMMENT ON COLUMN duet.kafka_dead_letters.detail IS 'the error''s detail and context: COPY''s column and value for a rejected field';

-- Offsets a consumer passed over without ingesting them (the broker had deleted them), and why.
-- Nothing is skipped silently: each range is here, in the server log and in duet.kafka_status.
CREATE TABLE duet.kafka_gaps (
    id            bigserial PRIMARY KEY,
    consumer_id   integer NOT NULL,
    consumer      text NOT NULL,
    owner         regrole NOT NULL,
    topic         text NOT NULL,
    partition     integer NOT NULL,
    from_offset   bigint NOT NULL,
    to_offset     bigint NOT NULL,
    messages      bigint GENERATED ALWAYS AS (to_offset - from_offset) STORED,
    resume_offset bigint NOT NULL,
    reason        text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT kafka_gaps_range CHECK (from_offset <= to_offset)
);
CREATE INDEX kafka_gaps_consumer ON duet.kafka_gaps (consumer_id, at);
REVOKE ALL ON duet.kafka_gaps FROM PUBLIC;
GRANT SELECT, DELETE ON duet.kafka_gaps TO duet_kafka_admin;
ALTER TABLE duet.kafka_gaps ENABLE ROW LEVEL SECURITY;
-- Admins see the gaps of consumers they own, as with dead letters.
CREATE POLICY kafka_gaps_owner ON duet.kafka_gaps
    USING (pg_catalog.pg_has_role(current_user, owner, 'USAGE'));
COMMENT ON TABLE duet.kafka_gaps IS 'Kafka offsets a consumer skipped because the broker no longer had them (retention): consumer, partition, range, where it resumed, why';
COMMENT ON COLUMN duet.kafka_gaps.from_offset IS 'first offset not ingested';
COMMENT ON COLUMN duet.kafka_gaps.to_offset IS 'end of the skipped range (exclusive); equal to from_offset when nothing was skipped';
COMMENT ON COLUMN duet.kafka_gaps.messages IS 'offsets skipped: to_offset - from_offset';
COMMENT ON COLUMN duet.kafka_gaps.resume_offset IS 'the offset ingestion resumed at (the broker''s low watermark)';
COMMENT ON INDEX duet.kafka_gaps_consumer IS 'gaps of one consumer in time order (duet.kafka_status)';
COMMENT ON POLICY kafka_gaps_owner ON duet.kafka_gaps IS 'Kafka admins see the gaps of the consumers they own';
COMMENT ON SEQUENCE duet.kafka_gaps_id_seq IS 'ids of duet.kafka_gaps';
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_gaps', '');
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_gaps_id_seq', '');

CREATE OR REPLACE VIEW duet.kafka_status AS
WITH w AS (
    SELECT consumer_id, count(*) AS workers, sum(rows) AS rows, sum(bytes) AS bytes,
           sum(batches) AS batches, sum(errors) AS errors, sum(rate) AS rate,
           CASE WHEN bool_or(state = 'error') THEN 'error'
                WHEN bool_or(state = 'broker unreachable') THEN 'broker unreachable'
                WHEN bool_or(state = 'running') THEN 'running'
                WHEN bool_or(state = 'starting') THEN 'starting'
                ELSE 'idle' END AS state,
           (array_agg(last_error ORDER BY last_error_at DESC NULLS LAST))[1] AS last_error,
           max(last_error_at) AS last_error_at
      FROM (SELECT DISTINCT ON (pid) * FROM duet_kafka_worker_stats()) s
     GROUP BY consumer_id),
p AS (
    SELECT c.id AS consumer_id, sum(ps.lag)::bigint AS lag,
           jsonb_agg(jsonb_build_object('partition', ps.partition, 'committed_offset', ps.committed_offset,
                                        'high_watermark', ps.high_watermark, 'lag', ps.lag)
                     ORDER BY ps.partition) AS partitions
      FROM duet.kafka_partition_status ps JOIN duet.kafka_consumers c USING (name)
     GROUP BY c.id)
SELECT c.name, c.topic, c.target, c.format, c.parallelism, c.owner,
       CASE WHEN NOT c.enabled THEN 'stopped' ELSE coalesce(w.state, 'starting') END AS state,
       coalesce(w.workers, 0) AS workers, coalesce(w.rows, 0) AS rows, coalesce(w.bytes, 0) AS bytes,
       coalesce(w.batches, 0) AS batches, coalesce(w.errors, 0) AS errors,
       (SELECT count(*) FROM duet.kafka_dead_letters d WHERE d.consumer_id = c.id) AS dead_letters,
       w.last_error, w.last_error_at, p.lag, coalesce(w.rate, 0) AS rate, p.partitions,
       (SELECT count(*) FROM duet.kafka_gaps g WHERE g.consumer_id = c.id) AS gaps,
       (SELECT coalesce(sum(g.messages), 0)::bigint FROM duet.kafka_gaps g WHERE g.consumer_id = c.id) AS gap_messages
  FROM duet.kafka_consumers c
  LEFT JOIN w ON w.consumer_id = c.id
  LEFT JOIN p ON p.consumer_id = c.id;
COMMENT ON VIEW duet.kafka_status IS
    'Kafka consumers: state, rows, bytes, batches, errors and last error since the workers started, dead letters, lag, rows/s, per-partition offsets, and the gaps (ranges and messages skipped, see duet.kafka_gaps)';

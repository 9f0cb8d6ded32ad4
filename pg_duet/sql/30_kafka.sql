-- pg_duet install script, part 30: Kafka ingestion by background workers, and the outbox.
-- Workers need shared_preload_libraries = 'pg_duet' and the database in duet.databases.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'duet_kafka_admin') THEN
        CREATE ROLE duet_kafka_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'duet_kafka_publisher') THEN
        CREATE ROLE duet_kafka_publisher NOLOGIN;
    END IF;
END
$$;
GRANT duet_kafka_publisher TO duet_kafka_admin;

-- Consumers. Holds librdkafka properties (SASL passwords, keys): superusers only; the
-- duet_kafka_* functions write it, duet.kafka_status shows it without the properties.
CREATE TABLE duet.kafka_consumers (
    id                serial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    topic             text NOT NULL,
    target            regclass NOT NULL,
    brokers           text NOT NULL,
    format            text NOT NULL CHECK (format IN ('json', 'jsonb', 'csv', 'text')),
    batch_size        integer NOT NULL,
    flush_interval_ms integer NOT NULL,
    start_position    text NOT NULL,
    parallelism       integer NOT NULL,
    column_map        jsonb,
    properties        jsonb,
    owner             regrole NOT NULL,
    enabled           boolean NOT NULL DEFAULT true,
    generation        integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    mode              text NOT NULL DEFAULT 'append' CHECK (mode IN ('append', 'upsert')),
    key_columns       text[],
    key_source        text NOT NULL DEFAULT 'key' CHECK (key_source IN ('key', 'value')),
    CONSTRAINT kafka_consumers_upsert_keys CHECK ((mode = 'upsert') = (key_columns IS NOT NULL))
);
REVOKE ALL ON duet.kafka_consumers FROM PUBLIC;
COMMENT ON TABLE duet.kafka_consumers IS 'Kafka consumers run by pg_duet workers (superuser only: properties may hold secrets)';
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_consumers', '');
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_consumers_id_seq', '');

-- Workers woken at commit instead of polling (kafka_wake.c): a committed change of the consumers
-- wakes this database's supervisor, a committed outbox row its publisher.
CREATE FUNCTION duet_kafka_changed_trigger() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_kafka_changed_trigger';
COMMENT ON FUNCTION duet_kafka_changed_trigger() IS
    'statement trigger on duet.kafka_consumers (''consumers'') and duet.kafka_outbox (''outbox''): wakes this database''s Kafka supervisor or outbox publisher when the transaction commits';
REVOKE ALL ON FUNCTION duet_kafka_changed_trigger() FROM PUBLIC;
CREATE TRIGGER duet_kafka_wake AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duet.kafka_consumers
    FOR EACH STATEMENT EXECUTE FUNCTION duet_kafka_changed_trigger('consumers');

-- Properties that hold secrets (passwords, client secrets, private keys: duet_kafka_property_secret
-- in kafka_conf.c decides) are kept apart from duet.kafka_consumers, which pg_dump writes: this
-- table it does not (back it up with COPY as a superuser, like duet.llm_provider_keys).
CREATE TABLE duet.kafka_consumer_secrets (
    consumer_id integer PRIMARY KEY REFERENCES duet.kafka_consumers ON DELETE CASCADE,
    properties  jsonb NOT NULL CHECK (jsonb_typeof(properties) = 'object')
);
REVOKE ALL ON duet.kafka_consumer_secrets FROM PUBLIC;
COMMENT ON TABLE duet.kafka_consumer_secrets IS
    'secret librdkafka properties of Kafka consumers (superuser only; not written by pg_dump)';
COMMENT ON COLUMN duet.kafka_consumer_secrets.consumer_id IS 'the consumer (duet.kafka_consumers.id)';
COMMENT ON COLUMN duet.kafka_consumer_secrets.properties IS 'its properties that hold secrets, e.g. sasl.password';

-- Topics are the broker's, not a tenant's: which role may publish to or consume which topics is a
-- superuser's grant, so one tenant cannot feed another tenant's consumer or read its topics.
CREATE TABLE duet.kafka_topic_grants (
    topic_pattern text NOT NULL CHECK (topic_pattern ~ '^([A-Za-z0-9._-]{1,249}|[A-Za-z0-9._-]{0,248}[*])$'),
    grantee       regrole NOT NULL,
    may_publish   boolean NOT NULL DEFAULT false,
    may_consume   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (topic_pattern, grantee)
);
REVOKE ALL ON duet.kafka_topic_grants FROM PUBLIC;
GRANT SELECT ON duet.kafka_topic_grants TO duet_kafka_admin, duet_kafka_publisher;
ALTER TABLE duet.kafka_topic_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.kafka_topic_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY kafka_topic_grants_own ON duet.kafka_topic_grants FOR SELECT
    USING (EXISTS (SELECT FROM pg_catalog.pg_roles r
                    WHERE r.oid = grantee AND pg_catalog.pg_has_role(r.oid, 'USAGE')));
COMMENT ON TABLE duet.kafka_topic_grants IS
    'which roles may publish to (duet_kafka_publish, rule topics) and consume (duet_kafka_consume) which Kafka topics; superusers need none; managed by superusers';
COMMENT ON COLUMN duet.kafka_topic_grants.topic_pattern IS 'a topic name, or a prefix followed by * (acme.* matches acme.clicks)';
COMMENT ON COLUMN duet.kafka_topic_grants.grantee IS 'the role (and its members) the grant is for';
COMMENT ON COLUMN duet.kafka_topic_grants.may_publish IS 'may publish to the topics';
COMMENT ON COLUMN duet.kafka_topic_grants.may_consume IS 'may consume the topics';
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_topic_grants', '');

CREATE FUNCTION duet.duet_kafka_topic_allowed(role oid, topic text, action text) RETURNS boolean
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'duet_kafka_topic_allowed';
COMMENT ON FUNCTION duet.duet_kafka_topic_allowed(oid, text, text) IS
    'internal: whether role may publish to or consume (action) the topic (superusers always)';
REVOKE ALL ON FUNCTION duet.duet_kafka_topic_allowed(oid, text, text) FROM PUBLIC;

-- Next offset per partition, committed in the same transaction as the rows: exactly once.
CREATE TABLE duet.kafka_offsets (
    consumer_id integer NOT NULL REFERENCES duet.kafka_consumers (id) ON DELETE CASCADE,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    skip_before timestamptz,    -- after a reset to a timestamp: older messages are passed over
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_id, partition)
);
REVOKE ALL ON duet.kafka_offsets FROM PUBLIC;
COMMENT ON TABLE duet.kafka_offsets IS 'next Kafka offset per consumer and partition, committed with the ingested rows';
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_offsets', '');

-- Messages that could not be ingested, with their raw bytes and the error.
CREATE TABLE duet.kafka_dead_letters (
    id          bigserial PRIMARY KEY,
    consumer_id integer NOT NULL,
    consumer    text NOT NULL,
    owner       regrole NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    key         bytea,
    value       bytea,          -- NULL for a tombstone
    error       text NOT NULL,
    detail      text,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    tombstone   boolean NOT NULL DEFAULT false,
    message_timestamp timestamptz,  -- for duet_kafka_replay: what _timestamp and _headers take
    headers     jsonb,
    CONSTRAINT kafka_dead_letters_tombstone CHECK (tombstone = (value IS NULL))
);
CREATE INDEX ON duet.kafka_dead_letters (consumer_id, failed_at);
REVOKE ALL ON duet.kafka_dead_letters FROM PUBLIC;
GRANT SELECT, DELETE ON duet.kafka_dead_letters TO duet_kafka_admin;
ALTER TABLE duet.kafka_dead_letters ENABLE ROW LEVEL SECURITY;
-- Admins see the dead letters of consumers they own (the raw bytes are their data).
CREATE POLICY kafka_dead_letters_owner ON duet.kafka_dead_letters
    USING (pg_catalog.pg_has_role(current_user, owner, 'USAGE'));
COMMENT ON TABLE duet.kafka_dead_letters IS 'Kafka messages that failed to parse or violated a constraint: raw bytes, offset and error';
COMMENT ON COLUMN duet.kafka_dead_letters.tombstone IS 'the message had no value (a tombstone: delete the key); value is then NULL';
COMMENT ON COLUMN duet.kafka_dead_letters.detail IS 'the error''s detail and context: COPY''s column and value for a rejected field';
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_dead_letters_id_seq', '');

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

CREATE FUNCTION duet_kafka_consume(name text, topic text, target regclass, brokers text,
                                   format text DEFAULT 'json',
                                   batch_size integer DEFAULT 10000,
                                   flush_interval_ms integer DEFAULT 500,
                                   start_offset text DEFAULT 'earliest',
                                   parallelism integer DEFAULT 1,
                                   column_map jsonb DEFAULT NULL,
                                   properties jsonb DEFAULT NULL,
                                   mode text DEFAULT 'append',
                                   key_columns text[] DEFAULT NULL,
                                   key_source text DEFAULT 'key')
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_consume';
COMMENT ON FUNCTION duet_kafka_consume(text, text, regclass, text, text, integer, integer, text, integer, jsonb, jsonb, text, text[], text)
    IS 'create a Kafka consumer: a background worker ingests topic into target exactly once (mode upsert: INSERT … ON CONFLICT (key_columns) DO UPDATE, tombstones delete)';

CREATE FUNCTION duet_kafka_stop(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_stop';
COMMENT ON FUNCTION duet_kafka_stop(text) IS 'stop a Kafka consumer (its offsets are kept)';
CREATE FUNCTION duet_kafka_start(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_start';
COMMENT ON FUNCTION duet_kafka_start(text) IS 'restart a stopped Kafka consumer from its committed offsets';
CREATE FUNCTION duet_kafka_drop(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_drop';
COMMENT ON FUNCTION duet_kafka_drop(text) IS 'drop a Kafka consumer and its offsets (dead letters are kept)';
CREATE FUNCTION duet_kafka_reset(name text, start_at text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_reset';
COMMENT ON FUNCTION duet_kafka_reset(text, text)
    IS 'move a Kafka consumer to ''earliest'', ''latest'' or a timestamp, forgetting its offsets';
CREATE FUNCTION duet_kafka_reset(name text, start_at timestamptz) RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC SELECT duet_kafka_reset(name, start_at::text); END;
COMMENT ON FUNCTION duet_kafka_reset(text, timestamptz)
    IS 'move a Kafka consumer to the first messages at or after a timestamp';

REVOKE ALL ON FUNCTION duet_kafka_consume(text, text, regclass, text, text, integer, integer, text, integer, jsonb, jsonb, text, text[], text),
    duet_kafka_stop(text), duet_kafka_start(text), duet_kafka_drop(text),
    duet_kafka_reset(text, text), duet_kafka_reset(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION duet_kafka_consume(text, text, regclass, text, text, integer, integer, text, integer, jsonb, jsonb, text, text[], text),
    duet_kafka_stop(text), duet_kafka_start(text), duet_kafka_drop(text),
    duet_kafka_reset(text, text), duet_kafka_reset(text, timestamptz) TO duet_kafka_admin;

CREATE FUNCTION duet_kafka_alter(name text, brokers text DEFAULT NULL, properties jsonb DEFAULT NULL,
                                 batch_size integer DEFAULT NULL, flush_interval_ms integer DEFAULT NULL,
                                 format text DEFAULT NULL, target regclass DEFAULT NULL,
                                 column_map jsonb DEFAULT NULL, mode text DEFAULT NULL,
                                 key_columns text[] DEFAULT NULL, key_source text DEFAULT NULL)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_alter';
COMMENT ON FUNCTION duet_kafka_alter(text, text, jsonb, integer, integer, text, regclass, jsonb, text, text[], text)
    IS 'change a Kafka consumer (each argument given replaces the setting; properties are merged, null removes one; column_map ''null'' removes the map), keeping its offsets; the workers restart with it';
CREATE FUNCTION duet_kafka_replay(name text, ids bigint[] DEFAULT NULL, partition integer DEFAULT NULL,
                                  from_offset bigint DEFAULT NULL, to_offset bigint DEFAULT NULL,
                                  OUT replayed bigint, OUT failed bigint)
    RETURNS record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_replay';
COMMENT ON FUNCTION duet_kafka_replay(text, bigint[], integer, bigint, bigint)
    IS 'ingest a Kafka consumer''s dead letters again (all, or those with the ids, of the partition, with offsets from from_offset up to but not including to_offset): each lands once and leaves duet.kafka_dead_letters in the same transaction; one that fails again stays, with the new error';
REVOKE ALL ON FUNCTION duet_kafka_alter(text, text, jsonb, integer, integer, text, regclass, jsonb, text, text[], text),
    duet_kafka_replay(text, bigint[], integer, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION duet_kafka_alter(text, text, jsonb, integer, integer, text, regclass, jsonb, text, text[], text),
    duet_kafka_replay(text, bigint[], integer, bigint, bigint) TO duet_kafka_admin;

CREATE FUNCTION duet_kafka_worker_stats(
        OUT consumer_id integer, OUT worker_group integer, OUT pid integer, OUT state text,
        OUT rows bigint, OUT bytes bigint, OUT batches bigint, OUT errors bigint, OUT rate double precision,
        OUT last_error text, OUT last_error_at timestamptz, OUT started_at timestamptz,
        OUT last_batch_at timestamptz, OUT partition integer, OUT high_watermark bigint,
        OUT high_watermark_at timestamptz)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_worker_stats';
COMMENT ON FUNCTION duet_kafka_worker_stats()
    IS 'live counters of this database''s Kafka workers, one row per worker and partition (feeds duet.kafka_status)';
REVOKE ALL ON FUNCTION duet_kafka_worker_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION duet_kafka_worker_stats() TO duet_kafka_admin, pg_monitor;

CREATE VIEW duet.kafka_partition_status WITH (security_barrier = true) AS
SELECT c.name, o.partition, o.next_offset AS committed_offset, w.high_watermark,
       GREATEST(w.high_watermark - o.next_offset, 0) AS lag, o.updated_at AS committed_at,
       w.high_watermark_at
  FROM duet.kafka_consumers c
  JOIN duet.kafka_offsets o ON o.consumer_id = c.id
  LEFT JOIN (SELECT DISTINCT ON (consumer_id, partition) consumer_id, partition, high_watermark, high_watermark_at
               FROM duet_kafka_worker_stats() WHERE partition IS NOT NULL
              ORDER BY consumer_id, partition, started_at DESC) w
         ON w.consumer_id = c.id AND w.partition = o.partition
 -- a consumer admin sees the consumers of roles it acts as; pg_monitor sees all
 WHERE pg_has_role(c.owner, 'USAGE') OR pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW duet.kafka_partition_status
    IS 'per Kafka consumer and partition: committed offset, high watermark and lag, and how fresh the high watermark is';

-- The pool of ingestion workers serving this database (C: pg_duet/kafka_shmem.c, kafka_pool.c).
CREATE FUNCTION duet_kafka_pool_stats(
        OUT pool_worker integer, OUT pid integer, OUT started_at timestamptz, OUT groups integer,
        OUT clients integer, OUT problem text)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_pool_stats';
COMMENT ON FUNCTION duet_kafka_pool_stats()
    IS 'this database''s Kafka pool workers: index, pid, since when, partition groups served, librdkafka clients, why one is not running (feeds duet.kafka_pool and duet.kafka_status)';
REVOKE ALL ON FUNCTION duet_kafka_pool_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION duet_kafka_pool_stats() TO duet_kafka_admin, pg_monitor;

CREATE VIEW duet.kafka_pool WITH (security_barrier = true) AS
SELECT pool_worker, pid, started_at, groups, clients, problem FROM duet_kafka_pool_stats();
COMMENT ON VIEW duet.kafka_pool
    IS 'the pool of Kafka ingestion workers of this database (duet.kafka_pool_size): which run, since when, how many consumer partition groups each serves with how many librdkafka clients, and why one cannot run';
GRANT SELECT ON duet.kafka_pool TO duet_kafka_admin, pg_monitor;

CREATE VIEW duet.kafka_status WITH (security_barrier = true) AS
WITH w AS (
    SELECT s.consumer_id, count(*) AS workers, sum(s.rows) AS rows, sum(s.bytes) AS bytes,
           sum(s.batches) AS batches, sum(s.errors) AS errors, sum(s.rate) AS rate,
           CASE WHEN bool_or(s.state = 'error') THEN 'error'
                WHEN bool_or(s.state = 'broker unreachable') THEN 'broker unreachable'
                WHEN bool_or(s.state = 'running') THEN 'running'
                WHEN bool_or(s.state = 'starting') THEN 'starting'
                ELSE 'idle' END AS state,
           (array_agg(s.last_error ORDER BY s.last_error_at DESC NULLS LAST))[1] AS last_error,
           max(s.last_error_at) AS last_error_at,
           array_agg(DISTINCT pw.pool_worker ORDER BY pw.pool_worker)
               FILTER (WHERE pw.pool_worker IS NOT NULL) AS pool_workers
      FROM (SELECT DISTINCT ON (pid, consumer_id, worker_group) * FROM duet_kafka_worker_stats()) s
      LEFT JOIN duet_kafka_pool_stats() pw ON pw.pid = s.pid
     GROUP BY s.consumer_id),
p AS (
    SELECT c.id AS consumer_id, sum(ps.lag)::bigint AS lag,
           jsonb_agg(jsonb_build_object('partition', ps.partition, 'committed_offset', ps.committed_offset,
                                        'high_watermark', ps.high_watermark, 'lag', ps.lag,
                                        'high_watermark_at', ps.high_watermark_at)
                     ORDER BY ps.partition) AS partitions
      FROM duet.kafka_partition_status ps JOIN duet.kafka_consumers c USING (name)
     GROUP BY c.id)
SELECT c.name, c.topic, c.target, c.format, c.parallelism, c.owner,
       CASE WHEN NOT c.enabled THEN 'stopped'
            WHEN w.state IS NULL AND coalesce(ws.problem, pp.problem) IS NOT NULL THEN 'not running'
            ELSE coalesce(w.state, 'starting') END AS state,
       coalesce(w.workers, 0) AS workers, coalesce(w.rows, 0) AS rows, coalesce(w.bytes, 0) AS bytes,
       coalesce(w.batches, 0) AS batches, coalesce(w.errors, 0) AS errors,
       (SELECT count(*) FROM duet.kafka_dead_letters d WHERE d.consumer_id = c.id) AS dead_letters,
       w.last_error, w.last_error_at, p.lag, coalesce(w.rate, 0) AS rate, p.partitions,
       (SELECT count(*) FROM duet.kafka_gaps g WHERE g.consumer_id = c.id) AS gaps,
       (SELECT coalesce(sum(g.messages), 0)::bigint FROM duet.kafka_gaps g WHERE g.consumer_id = c.id) AS gap_messages,
       CASE WHEN c.enabled AND w.state IS NULL THEN coalesce(ws.problem, pp.problem) END AS reason,
       w.pool_workers
  FROM duet.kafka_consumers c
  LEFT JOIN w ON w.consumer_id = c.id
  LEFT JOIN p ON p.consumer_id = c.id
  -- no worker runs a consumer in a database the workers do not serve, or with no pool worker
  -- running (no background worker slot): say so, and why
  CROSS JOIN duet_workers_status() ws
  CROSS JOIN (SELECT string_agg(DISTINCT x.problem, '; ') AS problem
                FROM duet_kafka_pool_stats() x WHERE x.problem IS NOT NULL) pp
 -- a consumer admin sees the consumers of roles it acts as; pg_monitor sees all
 WHERE pg_has_role(c.owner, 'USAGE') OR pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW duet.kafka_status IS
    'Kafka consumers: state, rows, bytes, batches, errors and last error since the workers started, dead letters, lag, rows/s, per-partition offsets, the gaps (ranges and messages skipped, see duet.kafka_gaps), and why it is not running';
COMMENT ON COLUMN duet.kafka_status.reason IS 'why the consumer is not running (state not running: pg_duet not preloaded, the database not in duet.databases, no background worker slot for the pool); duet_doctor() gives the fix';
GRANT SELECT ON duet.kafka_status, duet.kafka_partition_status TO duet_kafka_admin, pg_monitor;

-- A consumer's configuration for its owners: the properties kept in duet.kafka_consumer_secrets
-- show as '********' (their names only), so nobody but a superuser ever reads a secret back.
CREATE VIEW duet.kafka_consumer_config WITH (security_barrier = true) AS
SELECT c.name, c.topic, c.target, c.brokers, c.format, c.batch_size, c.flush_interval_ms,
       c.start_position, c.parallelism, c.column_map,
       CASE WHEN c.properties IS NULL AND s.properties IS NULL THEN NULL
            ELSE coalesce(c.properties, '{}') || coalesce(
                 (SELECT jsonb_object_agg(k.key, '********') FROM jsonb_object_keys(s.properties) AS k(key)),
                 '{}') END AS properties,
       c.owner, c.enabled, c.created_at, c.mode, c.key_columns, c.key_source
  FROM duet.kafka_consumers c
  LEFT JOIN duet.kafka_consumer_secrets s ON s.consumer_id = c.id
 -- the consumer's owner and the roles that act as it (superusers: all); not pg_monitor
 WHERE pg_has_role(c.owner, 'USAGE');
COMMENT ON VIEW duet.kafka_consumer_config IS
    'Kafka consumers'' configuration for their owners, with secret properties masked as ''********''';
REVOKE ALL ON duet.kafka_consumer_config FROM PUBLIC;
GRANT SELECT ON duet.kafka_consumer_config TO duet_kafka_admin;

-- The outbox: rows written in the caller's transaction, published by a worker once committed.
CREATE TABLE duet.kafka_outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        text,
    value      text NOT NULL,
    headers    jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    partition  integer,
    "offset"   bigint
);
CREATE INDEX kafka_outbox_pending ON duet.kafka_outbox (id) WHERE sent_at IS NULL;
REVOKE ALL ON duet.kafka_outbox FROM PUBLIC;
COMMENT ON TABLE duet.kafka_outbox IS 'events to publish to Kafka; sent_at is set once the broker acknowledged them (superuser only: events of every tenant)';

-- The outbox carries every tenant's events (alert messages among them): admins see its state only.
CREATE VIEW duet.kafka_outbox_status WITH (security_barrier = true) AS
SELECT count(*) FILTER (WHERE o.sent_at IS NULL) AS pending,
       min(o.created_at) FILTER (WHERE o.sent_at IS NULL) AS oldest_pending_at,
       count(*) FILTER (WHERE o.sent_at > now() - interval '1 hour') AS sent_last_hour,
       max(o.sent_at) AS last_sent_at
  FROM duet.kafka_outbox o;
COMMENT ON VIEW duet.kafka_outbox_status IS
    'the outbox''s state without its content: events pending, the oldest pending, sent in the last hour, last sent';
GRANT SELECT ON duet.kafka_outbox_status TO duet_kafka_admin, pg_monitor;
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_outbox', '');
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_outbox_id_seq', '');
CREATE TRIGGER duet_kafka_wake AFTER INSERT ON duet.kafka_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION duet_kafka_changed_trigger('outbox');

CREATE FUNCTION duet.duet_kafka_outbox_insert(topic text, key text, value text, headers jsonb)
    RETURNS bigint LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF topic IS NULL OR topic !~ '^[A-Za-z0-9._-]{1,249}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_name', MESSAGE = format('invalid Kafka topic name %L', topic),
            DETAIL = 'A topic has 1 to 249 letters, digits, ''_'', ''.'' or ''-''.';
    END IF;
    IF value IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'value must not be null';
    END IF;
    IF headers IS NOT NULL AND (jsonb_typeof(headers) <> 'object' OR EXISTS (
            SELECT FROM jsonb_each(headers) h WHERE jsonb_typeof(h.value) NOT IN ('string', 'null'))) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'headers must be a JSON object of strings',
            HINT = 'For example {"source": "rules"}.';
    END IF;
    INSERT INTO duet.kafka_outbox (topic, key, value, headers)
    VALUES (topic, key, value, headers) RETURNING id INTO new_id;
    PERFORM duet.duet_workers_warn('publishing to the Kafka outbox');
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION duet.duet_kafka_outbox_insert(text, text, text, jsonb)
    IS 'internal: checks and writes one outbox event, as the owner (duet_kafka_publish checked the caller''s topic grant)';
REVOKE ALL ON FUNCTION duet.duet_kafka_outbox_insert(text, text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION duet_kafka_publish(topic text, key text, value text, headers jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_publish';
COMMENT ON FUNCTION duet_kafka_publish(text, text, text, jsonb)
    IS 'publish a message to Kafka if and only if the calling transaction commits (outbox); the caller needs a publish grant on the topic (duet.kafka_topic_grants)';
CREATE FUNCTION duet_kafka_publish(topic text, key text, value jsonb, headers jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE sql VOLATILE
    BEGIN ATOMIC SELECT duet_kafka_publish(topic, key, value::text, headers); END;
COMMENT ON FUNCTION duet_kafka_publish(text, text, jsonb, jsonb)
    IS 'publish a JSON message to Kafka if and only if the calling transaction commits (outbox)';
REVOKE ALL ON FUNCTION duet_kafka_publish(text, text, text, jsonb), duet_kafka_publish(text, text, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION duet_kafka_publish(text, text, text, jsonb), duet_kafka_publish(text, text, jsonb, jsonb)
    TO duet_kafka_publisher;

-- pg_duet update 0.1.0 -> 0.2.0.
-- Every SQL change after the frozen 0.1.0 release goes here AND into pg_duet/sql/NN_*.sql (the
-- full install script of the current version); test/t/090_upgrade.pl checks that both give the
-- same schema.

\echo Use "ALTER EXTENSION pg_duet UPDATE TO '0.2.0'" to load this file. \quit

-- Security (issue 11) ---------------------------------------------------------------------------

-- Global examples (tenant NULL) could be deleted by any role without a tenant.
DROP POLICY duet_tenant_isolation ON duet.ask_examples;
CREATE POLICY duet_tenant_isolation ON duet.ask_examples FOR SELECT
    USING (tenant IS NOT DISTINCT FROM @extschema@.duet_current_tenant());
-- Examples without a tenant are the owner's (duet_ask_feedback makes them for superusers only).
CREATE POLICY duet_tenant_delete ON duet.ask_examples FOR DELETE
    USING (tenant IS NOT NULL AND tenant = @extschema@.duet_current_tenant());

-- Keys are not dumped: pg_dump of the database must not write secrets (back them up with COPY).
-- pg_extension_config_dump has no inverse; this is what it would undo, done as it does it.
UPDATE pg_catalog.pg_extension e
   SET extconfig = (SELECT pg_catalog.array_agg(c.oid ORDER BY c.ord)
                      FROM pg_catalog.unnest(e.extconfig) WITH ORDINALITY AS c(oid, ord)
                     WHERE c.oid OPERATOR(pg_catalog.<>) 'duet.llm_provider_keys'::pg_catalog.regclass),
       extcondition = (SELECT pg_catalog.array_agg(w.cond ORDER BY w.ord)
                         FROM ROWS FROM (pg_catalog.unnest(e.extconfig), pg_catalog.unnest(e.extcondition)) WITH ORDINALITY AS w(oid, cond, ord)
                        WHERE w.oid OPERATOR(pg_catalog.<>) 'duet.llm_provider_keys'::pg_catalog.regclass)
 WHERE e.extname OPERATOR(pg_catalog.=) 'pg_duet';

-- Key definitions are global and readable by all; RLS says so explicitly.
ALTER TABLE duet.config_definitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.config_definitions FORCE ROW LEVEL SECURITY;
CREATE POLICY config_definitions_global_read ON duet.config_definitions FOR SELECT USING (true);
-- Metrics are global and readable by all; RLS says so explicitly.
ALTER TABLE duet.metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.metrics FORCE ROW LEVEL SECURITY;
CREATE POLICY metrics_global_read ON duet.metrics FOR SELECT USING (true);

-- Broadcast channels carry only an opaque id (every role can LISTEN): the alert transition's id
-- on duet_alerts, the config history row's id on duet_config; listeners read them back under RLS.
-- (Replacing an extension member is safe here: PostgreSQL refuses to replace a non-member.)
CREATE OR REPLACE FUNCTION duet.duet_alert_observe(p_rule bigint, p_labels jsonb, p_outcome text, p_value jsonb,
                                        p_message text, p_error text, p_at timestamptz) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       duet.rules;
    a       duet.alerts;
    base    text;
    new     text;
    event   jsonb;
    transition bigint;
BEGIN
    SELECT * INTO r FROM duet.rules WHERE id = p_rule;
    IF NOT FOUND THEN
        RETURN NULL;    -- dropped concurrently
    END IF;
    INSERT INTO duet.alerts (rule_id, tenant, labels) VALUES (p_rule, r.tenant, p_labels)
        ON CONFLICT ON CONSTRAINT alert_instance DO NOTHING;
    SELECT * INTO a FROM duet.alerts WHERE rule_id = p_rule AND labels = p_labels FOR UPDATE;

    -- Error and No Data interrupt evaluation without ending an active alert: when data comes
    -- back, an alert that was firing is still firing (no second notification).
    base := CASE WHEN a.state IN ('error', 'nodata', 'resolved') THEN
                     CASE WHEN a.firing_since IS NOT NULL THEN 'firing'
                          WHEN a.pending_since IS NOT NULL THEN 'pending' ELSE 'normal' END
                 ELSE a.state END;

    IF p_outcome = 'error' THEN
        new := 'error';
    ELSIF p_outcome = 'nodata' THEN
        new := 'nodata';
    ELSIF p_outcome = 'true' THEN
        IF base IN ('firing', 'recovering') THEN
            new := 'firing';            -- a flap within keep_firing_for: still the same alert
            a.recovering_since := NULL;
        ELSIF base = 'pending' AND p_at - a.pending_since >= r.for_period THEN
            new := 'firing';
        ELSIF base = 'pending' THEN
            new := 'pending';
        ELSIF r.for_period = '0' THEN
            new := 'firing';
            a.pending_since := p_at;
        ELSE
            new := 'pending';
            a.pending_since := p_at;
        END IF;
        IF new = 'firing' AND a.firing_since IS NULL THEN
            a.firing_since := p_at;
        END IF;
    ELSIF p_outcome = 'false' THEN
        IF base = 'firing' AND r.keep_firing_for = '0' THEN
            new := 'resolved';
        ELSIF base = 'firing' THEN
            new := 'recovering';
            a.recovering_since := p_at;
        ELSIF base = 'recovering' AND p_at - a.recovering_since >= r.keep_firing_for THEN
            new := 'resolved';
        ELSIF base = 'recovering' THEN
            new := 'recovering';
        ELSIF a.state = 'resolved' THEN
            new := 'resolved';          -- stays resolved until the condition holds again
        ELSE
            new := 'normal';
        END IF;
        IF new IN ('resolved', 'normal') THEN
            a.pending_since := NULL;
            a.firing_since := NULL;
            a.recovering_since := NULL;
        END IF;
    ELSE
        RAISE EXCEPTION 'invalid alert outcome "%"', p_outcome;
    END IF;

    UPDATE duet.alerts
       SET state = new, pending_since = a.pending_since, firing_since = a.firing_since,
           recovering_since = a.recovering_since, last_eval_at = p_at,
           value = CASE WHEN p_outcome IN ('true', 'false') THEN p_value ELSE value END,
           message = CASE WHEN p_outcome = 'true' THEN p_message ELSE message END,
           error = CASE WHEN p_outcome = 'error' THEN p_error END
     WHERE id = a.id;

    IF new IS DISTINCT FROM a.state THEN
        INSERT INTO duet.alert_transitions (alert_id, rule_id, tenant, labels, from_state, to_state, at,
                                            value, message, error)
        VALUES (a.id, p_rule, r.tenant, p_labels, a.state, new, p_at, p_value,
                CASE WHEN p_outcome = 'true' THEN p_message ELSE a.message END,
                CASE WHEN p_outcome = 'error' THEN p_error END)
        RETURNING id INTO transition;
    END IF;

    -- Notify when an alert starts firing (not on a flap back from recovering) and when it resolves.
    IF (new = 'firing' AND base NOT IN ('firing', 'recovering')) OR (new = 'resolved' AND a.state <> 'resolved') THEN
        event := jsonb_build_object('tenant', r.tenant, 'rule', r.name, 'rule_id', r.id,
                                    'severity', r.severity, 'labels', p_labels, 'state', new,
                                    'at', to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                                    'value', p_value,
                                    'message', CASE WHEN new = 'firing' THEN p_message ELSE a.message END,
                                    'alert_id', a.id);
        -- Every role can LISTEN: the channel carries only the transition's id, which a listener
        -- reads back through duet.alert_history under row-level security (its own tenant only).
        PERFORM pg_notify('duet_alerts', transition::text);
        IF r.topic IS NOT NULL THEN
            EXECUTE 'SELECT @extschema@.duet_kafka_publish($1, $2, $3, $4)'
                USING r.topic, r.tenant || '/' || r.name || '/' || p_labels::text, event,
                      jsonb_build_object('source', 'pg_duet rules', 'tenant', r.tenant, 'state', new);
        END IF;
    END IF;
    RETURN new;
END $$;

CREATE OR REPLACE FUNCTION duet.duet_config_apply(op text, p_tenant text, p_key text, p_value jsonb,
                                       p_version bigint, p_actor text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur          duet.config;
    target       duet.config_history;
    def_schema   jsonb;
    last_version bigint;
    new_version  bigint;
    new_value    jsonb;
    retention    int;
    history_id   bigint;
    scope        text := CASE WHEN p_tenant IS NULL THEN 'the default' ELSE format('tenant "%s"', p_tenant) END;
BEGIN
    -- One writer per (tenant, key) at a time: no lost update, versions strictly increase.
    PERFORM pg_advisory_xact_lock(hashtext('duet.config/' || coalesce(p_tenant, '')), hashtext(p_key));

    SELECT * INTO cur FROM duet.config c
     WHERE c.key = p_key AND (c.tenant = p_tenant OR (p_tenant IS NULL AND c.tenant IS NULL))
       FOR UPDATE;
    SELECT max(h.version) INTO last_version FROM duet.config_history h
     WHERE h.key = p_key AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL));
    new_version := greatest(coalesce(cur.version, 0), coalesce(last_version, 0)) + 1;

    IF op = 'set' THEN
        new_value := p_value;
    ELSIF op = 'unset' THEN
        IF cur.key IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = format('config key "%s" is not set for %s', p_key, scope);
        END IF;
        new_value := NULL;
    ELSIF op = 'rollback' THEN
        SELECT * INTO target FROM duet.config_history h
         WHERE h.key = p_key AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL))
           AND h.version = p_version;
        IF target.id IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = format('version %s of config key "%s" does not exist for %s', p_version, p_key, scope),
                HINT = format('duet_config_history(%L) lists the versions still kept.', p_key);
        END IF;
        new_value := target.value;
    ELSE
        RAISE EXCEPTION 'unknown config operation "%"', op;
    END IF;

    IF new_value IS NOT NULL THEN
        IF octet_length(new_value::text) > 1048576 THEN
            RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
                MESSAGE = format('value for config key "%s" is too large', p_key),
                DETAIL = format('Its JSON text has %s bytes; the limit is 1 MiB.', octet_length(new_value::text));
        END IF;
        SELECT d.schema INTO def_schema FROM duet.config_definitions d WHERE d.key = p_key;
        IF def_schema IS NOT NULL THEN
            PERFORM @extschema@.duet_config_schema_validate(def_schema, new_value, p_key);
        END IF;
        INSERT INTO duet.config AS c (key, tenant, value, version, updated_at, updated_by)
             VALUES (p_key, p_tenant, new_value, new_version, now(), p_actor)
        ON CONFLICT ON CONSTRAINT config_key_tenant DO UPDATE
            SET value = excluded.value, version = excluded.version,
                updated_at = excluded.updated_at, updated_by = excluded.updated_by;
    ELSIF cur.key IS NOT NULL THEN
        DELETE FROM duet.config c
         WHERE c.key = p_key AND (c.tenant = p_tenant OR (p_tenant IS NULL AND c.tenant IS NULL));
    END IF;

    INSERT INTO duet.config_history (key, tenant, version, operation, value, previous_value,
                                     rolled_back_to, changed_at, changed_by)
         VALUES (p_key, p_tenant, new_version, CASE WHEN op = 'set' AND new_value IS NULL THEN 'unset' ELSE op END,
                 new_value, cur.value, CASE WHEN op = 'rollback' THEN p_version END, now(), p_actor)
      RETURNING id INTO history_id;

    -- Delivered to listeners when (and only if) the transaction commits. Every role can LISTEN:
    -- the channel carries only the history row's id, read back under row-level security.
    PERFORM pg_notify('duet_config', history_id::text);

    -- Bounded retention, pruned where we write; the newest entry of the key always stays.
    SELECT s.setting::int INTO retention FROM pg_settings s WHERE s.name = 'duet.config_history_retention';
    IF retention > 0 THEN
        DELETE FROM duet.config_history h
         WHERE h.key = p_key AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL))
           AND h.changed_at < now() - make_interval(mins => retention) AND h.version < new_version;
    END IF;
    RETURN new_version;
END $$;

-- Whether a provider has a key was answered to every role; now only to roles that may change
-- duet.llm_providers (the provider guard trigger's callers) and superusers.
DROP FUNCTION duet_ask_provider_has_key(text);
CREATE FUNCTION duet_ask_provider_has_key(provider text) RETURNS boolean
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'duet_ask_provider_has_key';
COMMENT ON FUNCTION duet_ask_provider_has_key(text) IS
    'whether a provider has a stored key (for the provider guard trigger; only roles that may change duet.llm_providers may ask)';

-- Kafka (issue 12, silent loss): tombstones in dead letters, the gaps table, gaps in the status.
ALTER TABLE duet.kafka_dead_letters ALTER COLUMN value DROP NOT NULL;
-- Added without a default, then filled: the column is then stored as in a fresh install (no
-- "missing value" for old rows, which a binary-upgrade dump would show).
ALTER TABLE duet.kafka_dead_letters ADD COLUMN tombstone boolean;
UPDATE duet.kafka_dead_letters SET tombstone = false;
ALTER TABLE duet.kafka_dead_letters ALTER COLUMN tombstone SET DEFAULT false;
ALTER TABLE duet.kafka_dead_letters ALTER COLUMN tombstone SET NOT NULL;
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

-- (duet.kafka_status gets its gaps and gap_messages columns below, with the admin filter.)

-- Loud failure (issue 17): duet_doctor(), and a WARNING where something needs the workers.
CREATE FUNCTION duet_workers_status(OUT problem text, OUT hint text)
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'duet_workers_status';
COMMENT ON FUNCTION duet_workers_status() IS
    'why pg_duet''s background workers do not serve this database, and the fix (NULLs when they do)';
CREATE FUNCTION duet.duet_workers_warn(what text) RETURNS void
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'duet_workers_warn_sql';
COMMENT ON FUNCTION duet.duet_workers_warn(text) IS
    'internal: a WARNING (once per transaction) that what needs the background workers will not run here';
REVOKE ALL ON FUNCTION duet.duet_workers_warn(text) FROM PUBLIC;

CREATE FUNCTION duet_doctor()
    RETURNS TABLE (check_name text, status text, detail text, hint text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w        record;
    r        record;
    ndb      int;
    needed   int;
    max_w    int := current_setting('max_worker_processes')::int;
    n        bigint;
    oldest   interval;
BEGIN
    -- Runs as the caller: it reports what the caller may see (rules under row-level security,
    -- Kafka for duet_kafka_admin and pg_monitor).
    SELECT * INTO w FROM @extschema@.duet_workers_status();
    check_name := 'background workers';
    IF w.problem IS NULL THEN
        status := 'ok'; detail := 'pg_duet is preloaded and this database is in duet.databases'; hint := NULL;
    ELSE
        status := 'error'; detail := w.problem; hint := w.hint;
    END IF;
    RETURN NEXT;

    -- Two launchers, three workers per served database, one per consumer partition group here.
    ndb := array_length(string_to_array(current_setting('duet.databases'), ','), 1);
    needed := 2 + 3 * coalesce(ndb, 0);
    IF has_table_privilege('duet.kafka_status', 'SELECT') THEN
        needed := needed + coalesce((SELECT sum(s.parallelism) FROM duet.kafka_status s
                                      WHERE s.state <> 'stopped'), 0)::int;
    END IF;
    check_name := 'worker slots';
    IF needed > max_w THEN
        status := 'error';
        detail := format('pg_duet needs at least %s background workers; max_worker_processes is %s', needed, max_w);
        hint := format('Raise max_worker_processes to %s or more (it also bounds parallel query workers) and restart.',
                       needed + current_setting('max_parallel_workers')::int);
    ELSE
        status := 'ok';
        detail := format('pg_duet needs at least %s of max_worker_processes = %s', needed, max_w);
        hint := NULL;
    END IF;
    RETURN NEXT;

    check_name := 'kafka consumers';
    IF NOT has_table_privilege('duet.kafka_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading consumer state needs duet_kafka_admin or pg_monitor'; hint := NULL;
        RETURN NEXT;
    ELSE
        n := 0;
        FOR r IN SELECT s.name, s.state, s.last_error FROM duet.kafka_status s
                  WHERE s.state NOT IN ('running', 'stopped', 'idle') ORDER BY s.name LOOP
            n := n + 1;
            status := CASE WHEN r.state = 'starting' AND w.problem IS NULL THEN 'warning' ELSE 'error' END;
            detail := format('consumer %s is %s%s', r.name,
                             CASE WHEN r.state = 'starting' AND w.problem IS NOT NULL THEN 'not running' ELSE r.state END,
                             coalesce(': ' || r.last_error, ''));
            hint := CASE WHEN w.problem IS NOT NULL THEN w.hint
                         WHEN r.state = 'broker unreachable' THEN 'Check the brokers and the consumer''s security properties; it retries on its own.'
                         WHEN r.state = 'starting' THEN 'A consumer that stays starting means no worker slot was free: see "worker slots".'
                         ELSE 'See duet.kafka_dead_letters and the server log; duet_kafka_stop/start restarts it.' END;
            RETURN NEXT;
        END LOOP;
        IF n = 0 THEN
            status := 'ok'; detail := 'every enabled consumer is running'; hint := NULL;
            RETURN NEXT;
        END IF;
    END IF;

    check_name := 'rules';
    n := 0;
    FOR r IN SELECT ru.tenant, ru.name, a.error, count(*) AS instances
               FROM duet.alerts a JOIN duet.rules ru ON ru.id OPERATOR(pg_catalog.=) a.rule_id
              WHERE a.state = 'error' AND ru.enabled
              GROUP BY ru.tenant, ru.name, a.error ORDER BY ru.tenant, ru.name LOOP
        n := n + 1;
        status := 'warning';
        detail := format('rule %s of tenant %s fails: %s', r.name, r.tenant, r.error);
        hint := 'Fix the rule with duet_rule_alter (duet_rule_test tries it on a row); duet.alert_history keeps the errors.';
        RETURN NEXT;
    END LOOP;
    IF (SELECT count(*) FROM duet.rules ru WHERE ru.enabled AND ru.query IS NOT NULL) > 0 AND w.problem IS NOT NULL THEN
        n := n + 1;
        status := 'error'; detail := 'query rules are never evaluated: ' || w.problem; hint := w.hint;
        RETURN NEXT;
    END IF;
    IF n = 0 THEN
        status := 'ok'; detail := 'no enabled rule is failing'; hint := NULL;
        RETURN NEXT;
    END IF;

    check_name := 'outbox';
    IF NOT has_table_privilege('duet.kafka_outbox_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the outbox state needs duet_kafka_admin or pg_monitor'; hint := NULL;
    ELSE
        SELECT s.pending, now() - s.oldest_pending_at INTO n, oldest FROM duet.kafka_outbox_status s;
        IF n > 0 AND oldest > interval '1 minute' THEN
            status := 'error';
            detail := format('%s events wait to be published, the oldest for %s', n, date_trunc('second', oldest));
            hint := coalesce(w.hint, 'Check the brokers (duet.kafka_status) and the server log of the outbox worker.');
        ELSE
            status := 'ok'; detail := 'no event waits longer than a minute'; hint := NULL;
        END IF;
    END IF;
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION duet_doctor() IS
    'lists what keeps pg_duet from working in this database (preload, duet.databases, worker slots, consumers, failing rules, stuck outbox), each with its fix';

CREATE OR REPLACE FUNCTION duet_kafka_publish(topic text, key text, value text, headers jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
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

-- pg_dump: the identity sequences of dumped tables, so a restored database continues their
-- numbering (sql/20_config.sql, 40_rules.sql, 50_ask.sql).
SELECT pg_catalog.pg_extension_config_dump('duet.config_history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.rules_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alerts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alert_transitions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.ask_examples_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.ask_log_id_seq', '');

-- A consumer admin saw every owner's consumers and read every tenant's outbox events.
CREATE OR REPLACE VIEW duet.kafka_partition_status WITH (security_barrier = true) AS
SELECT c.name, o.partition, o.next_offset AS committed_offset, w.high_watermark,
       GREATEST(w.high_watermark - o.next_offset, 0) AS lag, o.updated_at AS committed_at
  FROM duet.kafka_consumers c
  JOIN duet.kafka_offsets o ON o.consumer_id = c.id
  LEFT JOIN (SELECT DISTINCT ON (consumer_id, partition) consumer_id, partition, high_watermark
               FROM duet_kafka_worker_stats() WHERE partition IS NOT NULL
              ORDER BY consumer_id, partition, started_at DESC) w
         ON w.consumer_id = c.id AND w.partition = o.partition
 -- a consumer admin sees the consumers of roles it acts as; pg_monitor sees all
 WHERE pg_has_role(c.owner, 'USAGE') OR pg_has_role('pg_monitor', 'USAGE');
CREATE OR REPLACE VIEW duet.kafka_status WITH (security_barrier = true) AS
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
  LEFT JOIN p ON p.consumer_id = c.id
 -- a consumer admin sees the consumers of roles it acts as; pg_monitor sees all
 WHERE pg_has_role(c.owner, 'USAGE') OR pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW duet.kafka_status IS
    'Kafka consumers: state, rows, bytes, batches, errors and last error since the workers started, dead letters, lag, rows/s, per-partition offsets, and the gaps (ranges and messages skipped, see duet.kafka_gaps)';
REVOKE SELECT ON duet.kafka_outbox FROM duet_kafka_admin;
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

-- Documentation (issue 18): a comment on every column (pg_duet/sql/90_comments.sql) ----------------


-- duet.tenants
COMMENT ON COLUMN duet.tenants.name IS 'tenant identifier: lower case, [a-z0-9][a-z0-9_.-]*, at most 63 characters';
COMMENT ON COLUMN duet.tenants.display_name IS 'human-readable name';
COMMENT ON COLUMN duet.tenants.enabled IS 'false after duet_tenant_disable: no member can act for the tenant';
COMMENT ON COLUMN duet.tenants.created_at IS 'when the tenant was created';
COMMENT ON COLUMN duet.tenants.created_by IS 'session user who created the tenant';

-- duet.tenant_members
COMMENT ON COLUMN duet.tenant_members.tenant IS 'the tenant';
COMMENT ON COLUMN duet.tenant_members.member IS 'a role that may act for the tenant (and every role having its privileges); stored as the role''s OID, so it survives a rename';
COMMENT ON COLUMN duet.tenant_members.added_at IS 'when the role was added';
COMMENT ON COLUMN duet.tenant_members.added_by IS 'session user who added the role';

-- duet.config_definitions
COMMENT ON COLUMN duet.config_definitions.key IS 'config key: lower case, [a-z][a-z0-9_.-]*, at most 128 characters';
COMMENT ON COLUMN duet.config_definitions.schema IS 'JSON-Schema subset every value of the key must satisfy (type, enum, minimum, pattern, required, properties, items, ...)';
COMMENT ON COLUMN duet.config_definitions.description IS 'what the key is for';
COMMENT ON COLUMN duet.config_definitions.updated_at IS 'when the definition was last written';
COMMENT ON COLUMN duet.config_definitions.updated_by IS 'role that last wrote the definition';

-- duet.config
COMMENT ON COLUMN duet.config.key IS 'config key';
COMMENT ON COLUMN duet.config.tenant IS 'the tenant whose override this is; NULL for the global default';
COMMENT ON COLUMN duet.config.value IS 'the value (jsonb, at most 1 MiB)';
COMMENT ON COLUMN duet.config.version IS 'version of this (key, tenant): strictly increasing, an unset is a version too';
COMMENT ON COLUMN duet.config.updated_at IS 'when the value was last written';
COMMENT ON COLUMN duet.config.updated_by IS 'role that last wrote the value';

-- duet.config_history
COMMENT ON COLUMN duet.config_history.id IS 'history row id; the payload of NOTIFY duet_config';
COMMENT ON COLUMN duet.config_history.key IS 'config key';
COMMENT ON COLUMN duet.config_history.tenant IS 'the tenant whose override changed; NULL for the global default';
COMMENT ON COLUMN duet.config_history.version IS 'version of (key, tenant) this change created';
COMMENT ON COLUMN duet.config_history.operation IS 'set, unset or rollback';
COMMENT ON COLUMN duet.config_history.value IS 'the value from this version on; NULL when unset';
COMMENT ON COLUMN duet.config_history.previous_value IS 'the value before this change; NULL when there was none';
COMMENT ON COLUMN duet.config_history.rolled_back_to IS 'for a rollback: the version whose value was restored';
COMMENT ON COLUMN duet.config_history.changed_at IS 'when the change was made (pruned past duet.config_history_retention)';
COMMENT ON COLUMN duet.config_history.changed_by IS 'role that made the change';

-- duet.config_effective
COMMENT ON COLUMN duet.config_effective.key IS 'config key';
COMMENT ON COLUMN duet.config_effective.value IS 'effective value for the current tenant';
COMMENT ON COLUMN duet.config_effective.source IS 'where the value comes from: tenant (an override) or default';
COMMENT ON COLUMN duet.config_effective.tenant IS 'the tenant of an override; NULL for a default';
COMMENT ON COLUMN duet.config_effective.version IS 'version of the value';
COMMENT ON COLUMN duet.config_effective.updated_at IS 'when the value was last written';
COMMENT ON COLUMN duet.config_effective.updated_by IS 'role that last wrote the value';

-- duet.kafka_consumers
COMMENT ON COLUMN duet.kafka_consumers.id IS 'consumer id';
COMMENT ON COLUMN duet.kafka_consumers.name IS 'consumer name, as given to duet_kafka_consume';
COMMENT ON COLUMN duet.kafka_consumers.topic IS 'Kafka topic consumed';
COMMENT ON COLUMN duet.kafka_consumers.target IS 'table the rows are written to';
COMMENT ON COLUMN duet.kafka_consumers.brokers IS 'bootstrap servers (host:port,...)';
COMMENT ON COLUMN duet.kafka_consumers.format IS 'message format: json (keys to columns), jsonb (whole message in one column), csv or text';
COMMENT ON COLUMN duet.kafka_consumers.batch_size IS 'most messages per transaction';
COMMENT ON COLUMN duet.kafka_consumers.flush_interval_ms IS 'longest wait, in milliseconds, before a partial batch is committed';
COMMENT ON COLUMN duet.kafka_consumers.start_position IS 'where partitions without a stored offset start: earliest, latest or a timestamp';
COMMENT ON COLUMN duet.kafka_consumers.parallelism IS 'number of workers sharing the topic''s partitions';
COMMENT ON COLUMN duet.kafka_consumers.column_map IS 'message field to column mapping, when names differ';
COMMENT ON COLUMN duet.kafka_consumers.properties IS 'librdkafka properties passed through (security.protocol, sasl.*, ssl.*); may hold secrets, hence superuser only';
COMMENT ON COLUMN duet.kafka_consumers.owner IS 'role the rows are written as (the creator of the consumer)';
COMMENT ON COLUMN duet.kafka_consumers.enabled IS 'false after duet_kafka_stop';
COMMENT ON COLUMN duet.kafka_consumers.generation IS 'bumped by every stop, start, reset or change: workers of an older generation exit';
COMMENT ON COLUMN duet.kafka_consumers.created_at IS 'when the consumer was created';

-- duet.kafka_offsets
COMMENT ON COLUMN duet.kafka_offsets.consumer_id IS 'the consumer (duet.kafka_consumers.id)';
COMMENT ON COLUMN duet.kafka_offsets.partition IS 'Kafka partition';
COMMENT ON COLUMN duet.kafka_offsets.next_offset IS 'offset of the next message to ingest, committed in the transaction that wrote the rows before it';
COMMENT ON COLUMN duet.kafka_offsets.skip_before IS 'after duet_kafka_reset to a timestamp: messages older than this are passed over';
COMMENT ON COLUMN duet.kafka_offsets.updated_at IS 'when the offset was last committed';

-- duet.kafka_dead_letters
COMMENT ON COLUMN duet.kafka_dead_letters.id IS 'dead letter id';
COMMENT ON COLUMN duet.kafka_dead_letters.consumer_id IS 'the consumer that read the message (kept after the consumer is dropped)';
COMMENT ON COLUMN duet.kafka_dead_letters.consumer IS 'the consumer''s name at the time';
COMMENT ON COLUMN duet.kafka_dead_letters.owner IS 'owner of the consumer: roles with its privileges see the row';
COMMENT ON COLUMN duet.kafka_dead_letters.topic IS 'Kafka topic';
COMMENT ON COLUMN duet.kafka_dead_letters.partition IS 'Kafka partition';
COMMENT ON COLUMN duet.kafka_dead_letters.offset IS 'offset of the message';
COMMENT ON COLUMN duet.kafka_dead_letters.key IS 'message key, raw bytes';
COMMENT ON COLUMN duet.kafka_dead_letters.value IS 'message value, raw bytes';
COMMENT ON COLUMN duet.kafka_dead_letters.error IS 'why the message could not be ingested (parse error or constraint violation)';
COMMENT ON COLUMN duet.kafka_dead_letters.detail IS 'the error''s detail, when there is one';
COMMENT ON COLUMN duet.kafka_dead_letters.failed_at IS 'when the message was set aside';

-- duet.kafka_partition_status
COMMENT ON COLUMN duet.kafka_partition_status.name IS 'consumer name';
COMMENT ON COLUMN duet.kafka_partition_status.partition IS 'Kafka partition';
COMMENT ON COLUMN duet.kafka_partition_status.committed_offset IS 'next offset to ingest, as committed with the rows';
COMMENT ON COLUMN duet.kafka_partition_status.high_watermark IS 'the partition''s high watermark as last seen by a running worker; NULL when none runs';
COMMENT ON COLUMN duet.kafka_partition_status.lag IS 'messages not yet ingested: high watermark minus committed offset';
COMMENT ON COLUMN duet.kafka_partition_status.committed_at IS 'when the offset was last committed';

-- duet.kafka_status
COMMENT ON COLUMN duet.kafka_status.name IS 'consumer name';
COMMENT ON COLUMN duet.kafka_status.topic IS 'Kafka topic';
COMMENT ON COLUMN duet.kafka_status.target IS 'target table';
COMMENT ON COLUMN duet.kafka_status.format IS 'message format';
COMMENT ON COLUMN duet.kafka_status.parallelism IS 'workers configured';
COMMENT ON COLUMN duet.kafka_status.owner IS 'role the rows are written as';
COMMENT ON COLUMN duet.kafka_status.state IS 'stopped, starting, running, idle, broker unreachable, error, or not running (no worker serves this database: see reason)';
COMMENT ON COLUMN duet.kafka_status.workers IS 'workers running now';
COMMENT ON COLUMN duet.kafka_status.rows IS 'rows ingested since the workers started';
COMMENT ON COLUMN duet.kafka_status.bytes IS 'message bytes ingested since the workers started';
COMMENT ON COLUMN duet.kafka_status.batches IS 'batches committed since the workers started';
COMMENT ON COLUMN duet.kafka_status.errors IS 'errors since the workers started (messages sent to dead letters included)';
COMMENT ON COLUMN duet.kafka_status.dead_letters IS 'rows of duet.kafka_dead_letters for this consumer';
COMMENT ON COLUMN duet.kafka_status.last_error IS 'the most recent error of any of its workers';
COMMENT ON COLUMN duet.kafka_status.last_error_at IS 'when the most recent error happened';
COMMENT ON COLUMN duet.kafka_status.lag IS 'messages not yet ingested, summed over partitions';
COMMENT ON COLUMN duet.kafka_status.rate IS 'rows per second ingested recently';
COMMENT ON COLUMN duet.kafka_status.partitions IS 'per partition: committed_offset, high_watermark, lag (a jsonb array)';

-- duet.kafka_outbox
COMMENT ON COLUMN duet.kafka_outbox.id IS 'event id: events are published in this order';
COMMENT ON COLUMN duet.kafka_outbox.topic IS 'Kafka topic to publish to';
COMMENT ON COLUMN duet.kafka_outbox.key IS 'message key';
COMMENT ON COLUMN duet.kafka_outbox.value IS 'message value';
COMMENT ON COLUMN duet.kafka_outbox.headers IS 'message headers, a JSON object of strings';
COMMENT ON COLUMN duet.kafka_outbox.created_at IS 'when duet_kafka_publish was called';
COMMENT ON COLUMN duet.kafka_outbox.sent_at IS 'when the broker acknowledged the message; NULL while pending';
COMMENT ON COLUMN duet.kafka_outbox.partition IS 'partition the broker wrote the message to';
COMMENT ON COLUMN duet.kafka_outbox.offset IS 'offset the broker gave the message';

-- duet.kafka_outbox_status
COMMENT ON COLUMN duet.kafka_outbox_status.pending IS 'events written but not yet acknowledged by the broker';
COMMENT ON COLUMN duet.kafka_outbox_status.oldest_pending_at IS 'when the oldest pending event was written; NULL when none is pending';
COMMENT ON COLUMN duet.kafka_outbox_status.sent_last_hour IS 'events the broker acknowledged in the last hour';
COMMENT ON COLUMN duet.kafka_outbox_status.last_sent_at IS 'when the broker last acknowledged an event';

-- duet.rules
COMMENT ON COLUMN duet.rules.id IS 'rule id';
COMMENT ON COLUMN duet.rules.tenant IS 'tenant the rule belongs to';
COMMENT ON COLUMN duet.rules.name IS 'rule name, unique per tenant';
COMMENT ON COLUMN duet.rules.target IS 'row rules: the table whose inserts are evaluated; NULL for a query rule';
COMMENT ON COLUMN duet.rules.query IS 'query rules: SQL returning label and metric columns, run as owner; NULL for a row rule';
COMMENT ON COLUMN duet.rules.condition IS 'Duet formula; true means the alert condition holds';
COMMENT ON COLUMN duet.rules.value IS 'optional Duet formula: the value reported with the alert';
COMMENT ON COLUMN duet.rules.severity IS 'info, warning, error or critical';
COMMENT ON COLUMN duet.rules.labels IS 'columns identifying an alert instance (one alert per distinct label set)';
COMMENT ON COLUMN duet.rules.message IS 'message template with {column} and {value} placeholders';
COMMENT ON COLUMN duet.rules.for_period IS 'how long the condition must hold before the alert fires (pending until then)';
COMMENT ON COLUMN duet.rules.keep_firing_for IS 'how long an alert keeps firing after the condition stops holding (recovering until then)';
COMMENT ON COLUMN duet.rules.topic IS 'outbox topic for firing and resolved events, e.g. rules.alerts; NULL for none';
COMMENT ON COLUMN duet.rules.enabled IS 'false after duet_rule_disable';
COMMENT ON COLUMN duet.rules.owner IS 'the rule''s author: its query runs with this role''s privileges';
COMMENT ON COLUMN duet.rules.version IS 'incremented by every change of the rule';
COMMENT ON COLUMN duet.rules.created_at IS 'when the rule was created';
COMMENT ON COLUMN duet.rules.updated_at IS 'when the rule was last changed';

-- duet.alerts
COMMENT ON COLUMN duet.alerts.id IS 'alert id';
COMMENT ON COLUMN duet.alerts.rule_id IS 'the rule (duet.rules.id)';
COMMENT ON COLUMN duet.alerts.tenant IS 'tenant of the rule';
COMMENT ON COLUMN duet.alerts.labels IS 'label set identifying this instance: the rule''s label columns and their values';
COMMENT ON COLUMN duet.alerts.state IS 'normal, pending, firing, recovering, resolved, error or nodata';
COMMENT ON COLUMN duet.alerts.pending_since IS 'when the condition started to hold';
COMMENT ON COLUMN duet.alerts.firing_since IS 'when the alert fired; set while it is active (firing or recovering)';
COMMENT ON COLUMN duet.alerts.recovering_since IS 'when the condition stopped holding while the alert was firing';
COMMENT ON COLUMN duet.alerts.last_eval_at IS 'when the instance was last evaluated';
COMMENT ON COLUMN duet.alerts.value IS 'the value formula''s result at the last evaluation';
COMMENT ON COLUMN duet.alerts.message IS 'the rendered message at the last evaluation';
COMMENT ON COLUMN duet.alerts.error IS 'the evaluation error, in state error';

-- duet.alert_transitions
COMMENT ON COLUMN duet.alert_transitions.id IS 'transition id; the payload of NOTIFY duet_alerts';
COMMENT ON COLUMN duet.alert_transitions.alert_id IS 'the alert instance (duet.alerts.id)';
COMMENT ON COLUMN duet.alert_transitions.rule_id IS 'the rule (duet.rules.id)';
COMMENT ON COLUMN duet.alert_transitions.tenant IS 'tenant of the rule';
COMMENT ON COLUMN duet.alert_transitions.labels IS 'label set of the alert';
COMMENT ON COLUMN duet.alert_transitions.from_state IS 'state before the transition';
COMMENT ON COLUMN duet.alert_transitions.to_state IS 'state after the transition';
COMMENT ON COLUMN duet.alert_transitions.at IS 'evaluation time of the transition (pruned past duet.rules_history_retention)';
COMMENT ON COLUMN duet.alert_transitions.value IS 'value that caused the transition';
COMMENT ON COLUMN duet.alert_transitions.message IS 'rendered message';
COMMENT ON COLUMN duet.alert_transitions.error IS 'evaluation error, for a transition to error';

-- duet.alerts_active
COMMENT ON COLUMN duet.alerts_active.alert_id IS 'alert id (duet.alerts.id)';
COMMENT ON COLUMN duet.alerts_active.tenant IS 'tenant of the rule';
COMMENT ON COLUMN duet.alerts_active.rule IS 'rule name';
COMMENT ON COLUMN duet.alerts_active.severity IS 'rule severity';
COMMENT ON COLUMN duet.alerts_active.labels IS 'label set of the alert';
COMMENT ON COLUMN duet.alerts_active.state IS 'pending, firing, recovering, error or nodata';
COMMENT ON COLUMN duet.alerts_active.pending_since IS 'when the condition started to hold';
COMMENT ON COLUMN duet.alerts_active.firing_since IS 'when the alert fired';
COMMENT ON COLUMN duet.alerts_active.recovering_since IS 'when the condition stopped holding while firing';
COMMENT ON COLUMN duet.alerts_active.last_eval_at IS 'when the instance was last evaluated';
COMMENT ON COLUMN duet.alerts_active.value IS 'value at the last evaluation';
COMMENT ON COLUMN duet.alerts_active.message IS 'rendered message at the last evaluation';
COMMENT ON COLUMN duet.alerts_active.error IS 'evaluation error, in state error';

-- duet.alert_history
COMMENT ON COLUMN duet.alert_history.id IS 'transition id (duet.alert_transitions.id; the payload of NOTIFY duet_alerts)';
COMMENT ON COLUMN duet.alert_history.tenant IS 'tenant of the rule';
COMMENT ON COLUMN duet.alert_history.rule IS 'rule name';
COMMENT ON COLUMN duet.alert_history.severity IS 'rule severity';
COMMENT ON COLUMN duet.alert_history.labels IS 'label set of the alert';
COMMENT ON COLUMN duet.alert_history.from_state IS 'state before the transition';
COMMENT ON COLUMN duet.alert_history.to_state IS 'state after the transition';
COMMENT ON COLUMN duet.alert_history.at IS 'evaluation time of the transition';
COMMENT ON COLUMN duet.alert_history.value IS 'value that caused the transition';
COMMENT ON COLUMN duet.alert_history.message IS 'rendered message';
COMMENT ON COLUMN duet.alert_history.error IS 'evaluation error, for a transition to error';

-- duet.llm_providers
COMMENT ON COLUMN duet.llm_providers.name IS 'provider name';
COMMENT ON COLUMN duet.llm_providers.kind IS 'wire format: openai (POST base_url/chat/completions, Bearer key) or anthropic (POST base_url/messages, x-api-key)';
COMMENT ON COLUMN duet.llm_providers.base_url IS 'API base URL, e.g. https://api.openai.com/v1';
COMMENT ON COLUMN duet.llm_providers.model IS 'model name sent to the provider';
COMMENT ON COLUMN duet.llm_providers.priority IS 'order of the fallback chain: lowest first';
COMMENT ON COLUMN duet.llm_providers.timeout_ms IS 'time limit of one HTTP request, in milliseconds (100 to 600000)';
COMMENT ON COLUMN duet.llm_providers.max_retries IS 'retries on the same provider after a retryable failure (0 to 10)';
COMMENT ON COLUMN duet.llm_providers.max_tokens IS 'most tokens the model may answer with';
COMMENT ON COLUMN duet.llm_providers.headers IS 'extra HTTP headers, a JSON object';
COMMENT ON COLUMN duet.llm_providers.api_key_env IS 'name of the server''s environment variable holding the key (instead of duet.llm_provider_keys)';
COMMENT ON COLUMN duet.llm_providers.enabled IS 'false: the provider is skipped';
COMMENT ON COLUMN duet.llm_providers.updated_at IS 'when the row was written';
COMMENT ON COLUMN duet.llm_providers.updated_by IS 'role that wrote the row';

-- duet.llm_provider_keys
COMMENT ON COLUMN duet.llm_provider_keys.provider IS 'the provider (duet.llm_providers.name)';
COMMENT ON COLUMN duet.llm_provider_keys.api_key IS 'the API key (superuser only; never dumped, logged or shown in errors)';

-- duet.ask_examples
COMMENT ON COLUMN duet.ask_examples.id IS 'example id';
COMMENT ON COLUMN duet.ask_examples.tenant IS 'tenant the example belongs to; NULL for a global example (made by a superuser)';
COMMENT ON COLUMN duet.ask_examples.question IS 'the question in natural language';
COMMENT ON COLUMN duet.ask_examples.sql IS 'the verified SQL answer';
COMMENT ON COLUMN duet.ask_examples.created_at IS 'when the example was added';
COMMENT ON COLUMN duet.ask_examples.created_by IS 'session user who added it';

-- duet.ask_cache
COMMENT ON COLUMN duet.ask_cache.cache_key IS 'md5 of (tenant, question, schema fingerprint, model)';
COMMENT ON COLUMN duet.ask_cache.tenant IS 'tenant of the asker';
COMMENT ON COLUMN duet.ask_cache.question IS 'the question';
COMMENT ON COLUMN duet.ask_cache.fingerprint IS 'fingerprint of the schema context the model saw';
COMMENT ON COLUMN duet.ask_cache.model IS 'model that answered';
COMMENT ON COLUMN duet.ask_cache.sql IS 'the accepted SQL (re-checked by the guard on every hit)';
COMMENT ON COLUMN duet.ask_cache.created_at IS 'when the answer was cached (expires after duet.ask_cache_ttl)';

-- duet.ask_log
COMMENT ON COLUMN duet.ask_log.id IS 'log row id';
COMMENT ON COLUMN duet.ask_log.at IS 'when the ask started';
COMMENT ON COLUMN duet.ask_log.tenant IS 'tenant of the asker';
COMMENT ON COLUMN duet.ask_log.role IS 'role that asked';
COMMENT ON COLUMN duet.ask_log.question IS 'the question';
COMMENT ON COLUMN duet.ask_log.sql IS 'the SQL answered (the last one tried when rejected)';
COMMENT ON COLUMN duet.ask_log.provider IS 'provider that answered';
COMMENT ON COLUMN duet.ask_log.model IS 'model that answered';
COMMENT ON COLUMN duet.ask_log.attempts IS 'HTTP requests sent, retries and fallbacks included';
COMMENT ON COLUMN duet.ask_log.corrections IS 'rejected answers sent back to the model';
COMMENT ON COLUMN duet.ask_log.tokens_in IS 'prompt tokens, as reported by the provider';
COMMENT ON COLUMN duet.ask_log.tokens_out IS 'answer tokens, as reported by the provider';
COMMENT ON COLUMN duet.ask_log.latency_ms IS 'wall time of the ask, in milliseconds';
COMMENT ON COLUMN duet.ask_log.status IS 'ok, cached, rejected (the guard refused every answer), failed (no provider answered, or another error), over_budget (an ask.limit.* limit refused a request) or cancelled (cancelled, timed out, or its session ended during the ask)';
COMMENT ON COLUMN duet.ask_log.error IS 'the error of a rejected or failed ask (keys scrubbed)';

-- duet.ask_stats
COMMENT ON COLUMN duet.ask_stats.tenant IS 'tenant of the askers';
COMMENT ON COLUMN duet.ask_stats.model IS 'model';
COMMENT ON COLUMN duet.ask_stats.providers IS 'providers that answered';
COMMENT ON COLUMN duet.ask_stats.asks IS 'asks logged';
COMMENT ON COLUMN duet.ask_stats.answered IS 'asks with status ok';
COMMENT ON COLUMN duet.ask_stats.cache_hits IS 'asks answered from the cache';
COMMENT ON COLUMN duet.ask_stats.rejected IS 'asks whose answers the guard refused';
COMMENT ON COLUMN duet.ask_stats.failed IS 'asks no provider answered';
COMMENT ON COLUMN duet.ask_stats.avg_latency_ms IS 'mean latency, in milliseconds';
COMMENT ON COLUMN duet.ask_stats.p95_latency_ms IS '95th percentile latency, in milliseconds';
COMMENT ON COLUMN duet.ask_stats.http_requests IS 'HTTP requests sent';
COMMENT ON COLUMN duet.ask_stats.corrections IS 'rejected answers sent back to the model';
COMMENT ON COLUMN duet.ask_stats.tokens_in IS 'prompt tokens';
COMMENT ON COLUMN duet.ask_stats.tokens_out IS 'answer tokens';
COMMENT ON COLUMN duet.ask_stats.last_ask IS 'time of the latest ask';

-- duet.metrics (arguments, argument_types and return_type are commented in part 60)
COMMENT ON COLUMN duet.metrics.name IS 'metric name: the ClickHouse function''s name';
COMMENT ON COLUMN duet.metrics.formula IS 'the Duet formula';
COMMENT ON COLUMN duet.metrics.description IS 'what the metric measures';
COMMENT ON COLUMN duet.metrics.defined_by IS 'session user who defined the metric';
COMMENT ON COLUMN duet.metrics.defined_at IS 'when the metric was defined';

-- Uninstalling (issue 18): duet_uninstall() (pg_duet/sql/95_cleanup.sql) ----------------------------

CREATE FUNCTION duet_uninstall(cascade boolean DEFAULT false) RETURNS text[]
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    roles     text[] := ARRAY['duet_kafka_admin', 'duet_kafka_publisher'];
    done      text[] := '{}';
    protected regclass[];
    t         regclass;
    r         text;
    elsewhere text;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'permission denied for function duet_uninstall',
            HINT = 'Only a superuser may remove pg_duet and its cluster-wide roles.';
    END IF;

    -- Tables duet_tenant_protect() protected: their isolation policy depends on the extension.
    SELECT pg_catalog.array_agg(DISTINCT p.polrelid::regclass ORDER BY p.polrelid::regclass) INTO protected
      FROM pg_catalog.pg_policy p
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid = p.oid
     WHERE p.polname = 'duet_tenant_isolation'
       AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND d.refobjid = '@extschema@.duet_current_tenant()'::pg_catalog.regprocedure
       AND p.polrelid NOT IN (SELECT e.objid FROM pg_catalog.pg_depend e
                               WHERE e.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                                 AND e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND e.deptype = 'e');

    IF cascade THEN
        DROP EXTENSION pg_duet CASCADE;
    ELSE
        DROP EXTENSION pg_duet;     -- refuses, naming them, while user objects depend on it
    END IF;
    done := done || 'extension pg_duet'::text;

    -- Fail closed: without its restrictive partner, duet_tenant_access (USING true) would open
    -- the table to every grantee. Row-level security stays forced, so only the owner's policies
    -- (none yet) and superusers can reach the rows until the DBA decides.
    FOREACH t IN ARRAY coalesce(protected, '{}') LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_policy WHERE polrelid = t AND polname = 'duet_tenant_access') THEN
            EXECUTE pg_catalog.format('DROP POLICY duet_tenant_access ON %s', t);
            done := done || pg_catalog.format('policy duet_tenant_access on %s (row-level security stays forced)', t);
        END IF;
    END LOOP;

    -- The roles, unless another database still uses them (pg_shdepend is shared by the cluster).
    SELECT pg_catalog.string_agg(DISTINCT db.datname, ', ' ORDER BY db.datname) INTO elsewhere
      FROM pg_catalog.pg_shdepend s JOIN pg_catalog.pg_database db ON db.oid = s.dbid
     WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND s.refobjid IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY (roles))
       AND db.datname <> pg_catalog.current_database();
    IF elsewhere IS NOT NULL THEN
        RAISE NOTICE 'roles duet_kafka_admin and duet_kafka_publisher kept: still used in database %', elsewhere
            USING HINT = 'Run SELECT duet_uninstall() there too; the last one drops the roles.';
        RETURN done;
    END IF;
    FOREACH r IN ARRAY roles LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('DROP ROLE %I', r);
            done := done || pg_catalog.format('role %s', r);
        END IF;
    END LOOP;
    RETURN done;
END $$;
COMMENT ON FUNCTION duet_uninstall(boolean) IS
    'superuser: DROP EXTENSION pg_duet [CASCADE], then what it leaves behind: duet_tenant_protect''s permissive policies (fail closed) and, unless another database still uses them, the roles duet_kafka_admin and duet_kafka_publisher; returns what it removed';
REVOKE ALL ON FUNCTION duet_uninstall(boolean) FROM PUBLIC;
------------------------------------------------------------------------------------------------
-- duet_ask: audit that survives rollback, per-tenant limits, ClickHouse targets (issue 16)
------------------------------------------------------------------------------------------------

ALTER TABLE duet.ask_examples ADD COLUMN target text;
ALTER TABLE duet.ask_log ADD COLUMN target text;
ALTER TABLE duet.ask_log ADD COLUMN cost numeric NOT NULL DEFAULT 0;
ALTER TABLE duet.ask_log DROP CONSTRAINT ask_log_status_check;
ALTER TABLE duet.ask_log ADD CONSTRAINT ask_log_status_check
    CHECK (status IN ('ok', 'cached', 'rejected', 'failed', 'over_budget', 'cancelled'));
COMMENT ON TABLE duet.ask_log IS
    'audit of every duet_ask call (answered, cached, rejected, failed, over budget, cancelled), written by the audit worker so it survives the caller''s rollback and session; rows older than duet.ask_log_retention_days are removed; each role sees its tenant''s rows (its own when no tenant)';

COMMENT ON FUNCTION duet_ask(text, jsonb) IS
    'SQL answering a question, written by a language model and accepted by the guard (not executed); options: cache, max_corrections, target (a ClickHouse server)';


------------------------------------------------------------------------------------------------
-- The audit queue: rows reach duet.ask_log through a background worker (survive rollback)
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet_ask_audit_flush(timeout_ms int DEFAULT 10000) RETURNS boolean
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_audit_flush';
COMMENT ON FUNCTION duet_ask_audit_flush(int) IS
    'waits until every ask audit row this session queued is committed to duet.ask_log (true), or timeout_ms passes (false)';

CREATE FUNCTION duet_ask_audit_status(OUT shared_memory boolean, OUT worker_pid int, OUT rows_queued bigint,
                                      OUT rows_written bigint, OUT rows_skipped bigint, OUT bytes_waiting bigint)
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_audit_status';
COMMENT ON FUNCTION duet_ask_audit_status() IS
    'the ask audit queue of this database: whether it exists, its worker, rows queued, written and skipped since start, bytes not yet written';

------------------------------------------------------------------------------------------------
-- Limits: prices, durable usage, config keys
------------------------------------------------------------------------------------------------

CREATE TABLE duet.llm_prices (
    provider        text NOT NULL REFERENCES duet.llm_providers ON UPDATE CASCADE ON DELETE CASCADE,
    model           text NOT NULL CHECK (model <> ''),
    input_per_mtok  numeric NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok numeric NOT NULL CHECK (output_per_mtok >= 0),
    currency        text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    PRIMARY KEY (provider, model)
);
COMMENT ON TABLE duet.llm_prices IS
    'price per million input and output tokens of a provider''s model (superuser only); the cost of asks and ask.limit.cost_per_month use it';
REVOKE ALL ON duet.llm_prices FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('duet.llm_prices', '');

CREATE TABLE duet.ask_usage (
    tenant     text,
    day        date NOT NULL,       -- UTC
    requests   bigint NOT NULL DEFAULT 0,
    tokens_in  bigint NOT NULL DEFAULT 0,
    tokens_out bigint NOT NULL DEFAULT 0,
    cost       numeric NOT NULL DEFAULT 0,
    CONSTRAINT ask_usage_tenant_day UNIQUE NULLS NOT DISTINCT (tenant, day)
);
COMMENT ON TABLE duet.ask_usage IS
    'language-model requests, tokens and cost per tenant and UTC day, written with each audit row; the limits restart from it';
ALTER TABLE duet.ask_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.ask_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY duet_tenant_isolation ON duet.ask_usage FOR SELECT
    USING (tenant = @extschema@.duet_current_tenant());
REVOKE ALL ON duet.ask_usage FROM PUBLIC;
GRANT SELECT ON duet.ask_usage TO PUBLIC;

CREATE VIEW duet.llm_usage WITH (security_invoker = true) AS
SELECT tenant, day, requests, tokens_in, tokens_out, tokens_in + tokens_out AS tokens, cost,
       sum(cost) OVER (PARTITION BY tenant, date_trunc('month', day) ORDER BY day) AS month_to_date_cost
  FROM duet.ask_usage;
COMMENT ON VIEW duet.llm_usage IS
    'language-model usage of the viewer''s tenant per UTC day: requests, tokens, cost and the month''s cost so far';
GRANT SELECT ON duet.llm_usage TO PUBLIC;

-- The limit keys: typed and validated by the Config Service (a tenant's value, else the default).
INSERT INTO duet.config_definitions (key, schema, description, updated_by) VALUES
    ('ask.limit.requests_per_minute', '{"type": "integer", "minimum": 0}',
     'language-model requests per UTC minute (each retry, fallback and correction counts); absent: unlimited', 'pg_duet'),
    ('ask.limit.tokens_per_day', '{"type": "integer", "minimum": 0}',
     'input + output tokens per UTC day; absent: unlimited', 'pg_duet'),
    ('ask.limit.cost_per_month', '{"type": "number", "minimum": 0}',
     'cost per UTC month at duet.llm_prices; absent: unlimited', 'pg_duet'),
    ('ask.clickhouse.access',
     '{"type": "object", "additionalProperties": {"type": "object", "required": ["databases"], "additionalProperties": false, "properties": {"databases": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,128}$"}}, "tables": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,128}\\.[A-Za-z0-9_]{1,128}$"}}}}}',
     'ClickHouse servers a tenant may ask about: {"server": {"databases": [...], "tables": ["db.table", ...]}}; tables, when given, narrows the databases', 'pg_duet');
-- The extension's own definitions come with CREATE EXTENSION: a dump must not restore them twice.
SELECT pg_catalog.pg_extension_config_dump('duet.config_definitions',
    'WHERE NOT (key OPERATOR(pg_catalog.~) ''^ask\.(limit|clickhouse)\.'')');

CREATE FUNCTION duet_ask_budget(OUT name text, OUT "limit" numeric, OUT used numeric, OUT in_flight int,
                                OUT resets_at timestamptz) RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_budget';
COMMENT ON FUNCTION duet_ask_budget() IS
    'the current tenant''s live language-model counters against its limits: used in the current window, requests in flight, when the window resets';

------------------------------------------------------------------------------------------------
-- ClickHouse targets: servers (superuser only), passwords (never shown, never dumped)
------------------------------------------------------------------------------------------------

CREATE TABLE duet.clickhouse_servers (
    name             text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    url              text NOT NULL CHECK (url ~ '^https?://[^[:space:]/?#]+/?$'),
    database         text NOT NULL DEFAULT 'default' CHECK (database ~ '^[A-Za-z0-9_]{1,128}$'),
    user_name        text NOT NULL DEFAULT 'default' CHECK (user_name ~ '^[A-Za-z0-9_.@-]{1,128}$'),
    timeout_ms       int NOT NULL DEFAULT 10000 CHECK (timeout_ms BETWEEN 100 AND 600000),
    max_memory_usage bigint NOT NULL DEFAULT 1000000000 CHECK (max_memory_usage > 0),
    max_rows_to_read bigint NOT NULL DEFAULT 100000000 CHECK (max_rows_to_read > 0),
    enabled          boolean NOT NULL DEFAULT true,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE duet.clickhouse_servers IS
    'ClickHouse servers duet_ask may target over HTTP (superuser only); tenants are given access with the config key ask.clickhouse.access';
REVOKE ALL ON duet.clickhouse_servers FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('duet.clickhouse_servers', '');

CREATE TABLE duet.clickhouse_server_passwords (
    server   text PRIMARY KEY REFERENCES duet.clickhouse_servers ON UPDATE CASCADE ON DELETE CASCADE,
    password text NOT NULL
);
COMMENT ON TABLE duet.clickhouse_server_passwords IS
    'passwords of ClickHouse servers (superuser only, not dumped: back them up separately)';
REVOKE ALL ON duet.clickhouse_server_passwords FROM PUBLIC;

CREATE FUNCTION duet_clickhouse_servers_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Even if a superuser grants these tables: a new URL could send the password elsewhere.
    IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'only superusers may manage ClickHouse servers and their passwords';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF TG_TABLE_NAME = 'clickhouse_servers' THEN
        NEW.updated_at := now();
        NEW.updated_by := current_user;
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION duet_clickhouse_servers_guard() IS
    'trigger: only superusers change ClickHouse servers or their passwords';
CREATE TRIGGER duet_clickhouse_servers_guard BEFORE INSERT OR UPDATE OR DELETE ON duet.clickhouse_servers
    FOR EACH ROW EXECUTE FUNCTION duet_clickhouse_servers_guard();
CREATE TRIGGER duet_clickhouse_servers_guard BEFORE INSERT OR UPDATE OR DELETE ON duet.clickhouse_server_passwords
    FOR EACH ROW EXECUTE FUNCTION duet_clickhouse_servers_guard();

CREATE FUNCTION duet_ask_clickhouse_guard(target text, sql text) RETURNS text
    LANGUAGE c STRICT VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_clickhouse_guard';
COMMENT ON FUNCTION duet_ask_clickhouse_guard(text, text) IS
    'NULL when the ClickHouse guard accepts this SQL on the target for the current tenant, else the reason (asks the server to analyze it, never runs it)';

CREATE FUNCTION duet_ask_clickhouse_schema(target text, OUT fingerprint text, OUT tables int,
                                           OUT cached boolean, OUT schema text)
    LANGUAGE c STRICT VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_clickhouse_schema';
COMMENT ON FUNCTION duet_ask_clickhouse_schema(text) IS
    'the ClickHouse schema the current tenant may see on the target, as sent to the model; cached says whether it came from this session''s cache';

-- With a target (options of duet_ask): overloads, so the 0.1.0 signatures and their grants stay.
CREATE FUNCTION duet_ask_run(question text, max_rows int, options jsonb) RETURNS SETOF jsonb
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_run';
COMMENT ON FUNCTION duet_ask_run(text, int, jsonb) IS
    'answers a question with duet_ask options (cache, max_corrections, target): runs the SQL read-only as the caller or on the ClickHouse target (row cap, duet.ask_run_timeout)';
CREATE FUNCTION duet_ask_feedback(question text, sql text, target text) RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_feedback';
COMMENT ON FUNCTION duet_ask_feedback(text, text, text) IS
    'records a verified question → SQL pair as an example for the current tenant and a target (NULL: PostgreSQL; else a ClickHouse server, whose guard the SQL must pass)';
REVOKE ALL ON FUNCTION duet_ask_run(text, int, jsonb), duet_ask_feedback(text, text, text) FROM PUBLIC;

-- They reach a server: granted with duet_ask, not public.
REVOKE ALL ON FUNCTION duet_ask_clickhouse_guard(text, text), duet_ask_clickhouse_schema(text) FROM PUBLIC;


-- pg_dump wrote Kafka secrets (sasl.password…) with duet.kafka_consumers: they move apart.
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
-- The secret names, as duet_kafka_property_secret() has them (this one-time move only).
INSERT INTO duet.kafka_consumer_secrets (consumer_id, properties)
SELECT c.id, p.secret
  FROM duet.kafka_consumers c,
       LATERAL (SELECT pg_catalog.jsonb_object_agg(e.key, e.value) AS secret
                  FROM pg_catalog.jsonb_each(c.properties) e
                 WHERE e.key ~ '(password|secret)' OR e.key IN ('ssl.key.pem', 'sasl.oauthbearer.config')) p
 WHERE p.secret IS NOT NULL;
UPDATE duet.kafka_consumers c
   SET properties = c.properties OPERATOR(pg_catalog.-)
                    ARRAY(SELECT pg_catalog.jsonb_object_keys(s.properties))
  FROM duet.kafka_consumer_secrets s
 WHERE s.consumer_id OPERATOR(pg_catalog.=) c.id;

-- duet.kafka_gaps, and the gap columns of duet.kafka_status
COMMENT ON COLUMN duet.kafka_gaps.id IS 'gap id';
COMMENT ON COLUMN duet.kafka_gaps.consumer_id IS 'the consumer (duet.kafka_consumers.id)';
COMMENT ON COLUMN duet.kafka_gaps.consumer IS 'consumer name';
COMMENT ON COLUMN duet.kafka_gaps.owner IS 'the consumer''s owner (its admins see its gaps)';
COMMENT ON COLUMN duet.kafka_gaps.topic IS 'Kafka topic';
COMMENT ON COLUMN duet.kafka_gaps.partition IS 'Kafka partition';
COMMENT ON COLUMN duet.kafka_gaps.reason IS 'why the range was skipped (e.g. retention deleted it)';
COMMENT ON COLUMN duet.kafka_gaps.at IS 'when the gap was found';
COMMENT ON COLUMN duet.kafka_status.gaps IS 'ranges of offsets skipped (duet.kafka_gaps)';
COMMENT ON COLUMN duet.kafka_status.gap_messages IS 'messages in those ranges';

-- Topic grants: a publisher could feed another tenant's consumer, an admin consume its topics.
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
-- Nothing changes for existing users on update: the roles that could publish or consume before
-- keep every topic. Replace these grants with narrower ones to separate tenants.
INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_publish, may_consume)
VALUES ('*', 'duet_kafka_publisher', true, false), ('*', 'duet_kafka_admin', true, true);

-- duet_kafka_publish checks the caller's grant (C, as the caller), then writes as the owner.
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
DROP FUNCTION duet_kafka_publish(text, text, jsonb, jsonb);
DROP FUNCTION duet_kafka_publish(text, text, text, jsonb);
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

CREATE OR REPLACE FUNCTION duet.duet_rule_check_target(caller oid, tbl regclass, topic text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tbl IS NOT NULL THEN
        IF (SELECT relkind FROM pg_class WHERE oid = tbl) NOT IN ('r', 'p') THEN
            RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
                MESSAGE = format('"%s" is not a table', tbl),
                DETAIL = 'Row rules are evaluated by an insert trigger on a table or partitioned table.';
        END IF;
        IF NOT has_table_privilege(caller, tbl, 'SELECT') OR NOT has_table_privilege(caller, tbl, 'TRIGGER') THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = format('permission denied for table %s', tbl),
                DETAIL = 'A row rule needs the SELECT and TRIGGER privileges on its table.';
        END IF;
        -- The trigger sees every inserted row. On a table with row-level security it keeps a rule to
        -- its tenant's rows through a text column "tenant"; without one it could not, so refuse.
        IF (SELECT relrowsecurity FROM pg_class WHERE oid = tbl) AND NOT EXISTS (
               SELECT FROM pg_attribute
                WHERE attrelid = tbl AND attname = 'tenant' AND NOT attisdropped
                  AND atttypid IN ('text'::regtype, 'character varying'::regtype)) THEN
            RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                MESSAGE = format('row rules on %s need its tenant in a text column named "tenant"', tbl),
                DETAIL = 'The table has row-level security; a rule must see only its own tenant''s rows.',
                HINT = 'Use a query rule on this table instead: its query runs under row-level security.';
        END IF;
    END IF;
    IF topic IS NOT NULL THEN
        IF topic !~ '^[A-Za-z0-9._-]{1,249}$' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('invalid topic name "%s"', topic),
                DETAIL = 'A Kafka topic name has 1-249 characters among letters, digits, ".", "_" and "-".';
        END IF;
        IF to_regprocedure('@extschema@.duet_kafka_publish(text,text,jsonb,jsonb)') IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                MESSAGE = 'rule topics need the Kafka outbox',
                DETAIL = 'duet_kafka_publish() is not installed.';
        END IF;
        -- Publishing is a privilege: a rule publishes only where its author may publish.
        IF NOT has_function_privilege(caller, '@extschema@.duet_kafka_publish(text,text,jsonb,jsonb)', 'EXECUTE') THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = format('permission denied to publish rule events to topic "%s"', topic),
                DETAIL = 'A rule with a topic needs the EXECUTE privilege on duet_kafka_publish().',
                HINT = 'An administrator grants the role duet_kafka_publisher.';
        END IF;
        IF NOT duet.duet_kafka_topic_allowed(caller, topic, 'publish') THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = format('permission denied to publish rule events to topic "%s"', topic),
                DETAIL = 'Topics are shared by every tenant; a superuser grants them in duet.kafka_topic_grants.';
        END IF;
    END IF;
END $$;

-- Documentation: the columns of duet_ask's audit, limits and ClickHouse targets (pg_duet/sql/90_comments.sql)
COMMENT ON COLUMN duet.ask_examples.target IS 'what the example is for: NULL for PostgreSQL, else a ClickHouse server (duet.clickhouse_servers.name)';
COMMENT ON COLUMN duet.ask_log.target IS 'what was asked about: NULL for this database, else the ClickHouse server (duet.clickhouse_servers.name)';
COMMENT ON COLUMN duet.ask_log.cost IS 'cost of the ask''s language-model requests at duet.llm_prices (0 when the model has no price)';

-- duet.llm_prices
COMMENT ON COLUMN duet.llm_prices.provider IS 'the provider (duet.llm_providers.name)';
COMMENT ON COLUMN duet.llm_prices.model IS 'model name, as in duet.llm_providers.model';
COMMENT ON COLUMN duet.llm_prices.input_per_mtok IS 'price of one million prompt tokens';
COMMENT ON COLUMN duet.llm_prices.output_per_mtok IS 'price of one million answer tokens';
COMMENT ON COLUMN duet.llm_prices.currency IS 'ISO 4217 code of the prices; informational: costs add up as they are, without conversion';

-- duet.ask_usage
COMMENT ON COLUMN duet.ask_usage.tenant IS 'tenant of the askers; NULL for asks without a tenant';
COMMENT ON COLUMN duet.ask_usage.day IS 'UTC day';
COMMENT ON COLUMN duet.ask_usage.requests IS 'HTTP requests sent to providers, retries, fallbacks and corrections included';
COMMENT ON COLUMN duet.ask_usage.tokens_in IS 'prompt tokens, as reported by the providers';
COMMENT ON COLUMN duet.ask_usage.tokens_out IS 'answer tokens, as reported by the providers';
COMMENT ON COLUMN duet.ask_usage.cost IS 'cost at duet.llm_prices';

-- duet.llm_usage
COMMENT ON COLUMN duet.llm_usage.tenant IS 'tenant (the viewer''s)';
COMMENT ON COLUMN duet.llm_usage.day IS 'UTC day';
COMMENT ON COLUMN duet.llm_usage.requests IS 'HTTP requests sent to providers, retries, fallbacks and corrections included';
COMMENT ON COLUMN duet.llm_usage.tokens_in IS 'prompt tokens';
COMMENT ON COLUMN duet.llm_usage.tokens_out IS 'answer tokens';
COMMENT ON COLUMN duet.llm_usage.tokens IS 'prompt and answer tokens together (what ask.limit.tokens_per_day counts)';
COMMENT ON COLUMN duet.llm_usage.cost IS 'cost of the day at duet.llm_prices';
COMMENT ON COLUMN duet.llm_usage.month_to_date_cost IS 'cost of the UTC month up to and including this day (what ask.limit.cost_per_month counts)';

-- duet.clickhouse_servers
COMMENT ON COLUMN duet.clickhouse_servers.name IS 'server name, the target option of duet_ask and the key in ask.clickhouse.access';
COMMENT ON COLUMN duet.clickhouse_servers.url IS 'base URL of the server''s HTTP interface, e.g. http://127.0.0.1:8123';
COMMENT ON COLUMN duet.clickhouse_servers.database IS 'database the queries run in: unqualified table names are its tables';
COMMENT ON COLUMN duet.clickhouse_servers.user_name IS 'ClickHouse user of the requests (HTTP basic authentication)';
COMMENT ON COLUMN duet.clickhouse_servers.timeout_ms IS 'time limit of a schema or guard request, in milliseconds (100 to 600000); a run has duet.ask_run_timeout';
COMMENT ON COLUMN duet.clickhouse_servers.max_memory_usage IS 'ClickHouse setting max_memory_usage of every run, in bytes';
COMMENT ON COLUMN duet.clickhouse_servers.max_rows_to_read IS 'ClickHouse setting max_rows_to_read of every run (read_overflow_mode=throw)';
COMMENT ON COLUMN duet.clickhouse_servers.enabled IS 'false: the server cannot be a target';
COMMENT ON COLUMN duet.clickhouse_servers.updated_at IS 'when the row was written';
COMMENT ON COLUMN duet.clickhouse_servers.updated_by IS 'role that wrote the row';

-- duet.clickhouse_server_passwords
COMMENT ON COLUMN duet.clickhouse_server_passwords.server IS 'the server (duet.clickhouse_servers.name)';
COMMENT ON COLUMN duet.clickhouse_server_passwords.password IS 'password of the server''s user_name (superuser only; never dumped, logged or shown in errors)';

-- Loud failure (issue 17): duet.kafka_status says not running and why; duet_doctor() checks
-- that the LLM endpoints and Kafka brokers accept connections.
CREATE OR REPLACE VIEW duet.kafka_status WITH (security_barrier = true) AS
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
       CASE WHEN NOT c.enabled THEN 'stopped'
            WHEN w.state IS NULL AND ws.problem IS NOT NULL THEN 'not running'
            ELSE coalesce(w.state, 'starting') END AS state,
       coalesce(w.workers, 0) AS workers, coalesce(w.rows, 0) AS rows, coalesce(w.bytes, 0) AS bytes,
       coalesce(w.batches, 0) AS batches, coalesce(w.errors, 0) AS errors,
       (SELECT count(*) FROM duet.kafka_dead_letters d WHERE d.consumer_id = c.id) AS dead_letters,
       w.last_error, w.last_error_at, p.lag, coalesce(w.rate, 0) AS rate, p.partitions,
       (SELECT count(*) FROM duet.kafka_gaps g WHERE g.consumer_id = c.id) AS gaps,
       (SELECT coalesce(sum(g.messages), 0)::bigint FROM duet.kafka_gaps g WHERE g.consumer_id = c.id) AS gap_messages,
       CASE WHEN c.enabled AND w.state IS NULL THEN ws.problem END AS reason
  FROM duet.kafka_consumers c
  LEFT JOIN w ON w.consumer_id = c.id
  LEFT JOIN p ON p.consumer_id = c.id
  -- no worker runs a consumer in a database the workers do not serve: say so, and why
  CROSS JOIN duet_workers_status() ws
 -- a consumer admin sees the consumers of roles it acts as; pg_monitor sees all
 WHERE pg_has_role(c.owner, 'USAGE') OR pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW duet.kafka_status IS
    'Kafka consumers: state, rows, bytes, batches, errors and last error since the workers started, dead letters, lag, rows/s, per-partition offsets, the gaps (ranges and messages skipped, see duet.kafka_gaps), and why it is not running';
COMMENT ON COLUMN duet.kafka_status.reason IS 'why the consumer is not running (state not running: pg_duet not preloaded, the database not in duet.databases); duet_doctor() gives the fix';

CREATE FUNCTION duet_doctor_reachability()
    RETURNS TABLE (check_name text, status text, detail text, hint text)
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_doctor_reachability';
COMMENT ON FUNCTION duet_doctor_reachability() IS
    'the reachability checks of duet_doctor(): whether the enabled LLM providers'' endpoints (superusers only) and the brokers of the caller''s enabled Kafka consumers accept a TCP connection, within two seconds';

CREATE OR REPLACE FUNCTION duet_doctor()
    RETURNS TABLE (check_name text, status text, detail text, hint text)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w        record;
    r        record;
    ndb      int;
    needed   int;
    max_w    int := current_setting('max_worker_processes')::int;
    n        bigint;
    oldest   interval;
BEGIN
    -- Runs as the caller: it reports what the caller may see (rules under row-level security,
    -- Kafka for duet_kafka_admin and pg_monitor).
    SELECT * INTO w FROM @extschema@.duet_workers_status();
    check_name := 'background workers';
    IF w.problem IS NULL THEN
        status := 'ok'; detail := 'pg_duet is preloaded and this database is in duet.databases'; hint := NULL;
    ELSE
        status := 'error'; detail := w.problem; hint := w.hint;
    END IF;
    RETURN NEXT;

    -- Two launchers, three workers per served database, one per consumer partition group here.
    ndb := array_length(string_to_array(current_setting('duet.databases'), ','), 1);
    needed := 2 + 3 * coalesce(ndb, 0);
    IF has_table_privilege('duet.kafka_status', 'SELECT') THEN
        needed := needed + coalesce((SELECT sum(s.parallelism) FROM duet.kafka_status s
                                      WHERE s.state <> 'stopped'), 0)::int;
    END IF;
    check_name := 'worker slots';
    IF needed > max_w THEN
        status := 'error';
        detail := format('pg_duet needs at least %s background workers; max_worker_processes is %s', needed, max_w);
        hint := format('Raise max_worker_processes to %s or more (it also bounds parallel query workers) and restart.',
                       needed + current_setting('max_parallel_workers')::int);
    ELSE
        status := 'ok';
        detail := format('pg_duet needs at least %s of max_worker_processes = %s', needed, max_w);
        hint := NULL;
    END IF;
    RETURN NEXT;

    check_name := 'kafka consumers';
    IF NOT has_table_privilege('duet.kafka_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading consumer state needs duet_kafka_admin or pg_monitor'; hint := NULL;
        RETURN NEXT;
    ELSE
        n := 0;
        FOR r IN SELECT s.name, s.state, s.last_error, s.reason FROM duet.kafka_status s
                  WHERE s.state NOT IN ('running', 'stopped', 'idle') ORDER BY s.name LOOP
            n := n + 1;
            status := CASE WHEN r.state = 'starting' THEN 'warning' ELSE 'error' END;
            detail := format('consumer %s is %s%s', r.name, r.state, coalesce(': ' || coalesce(r.reason, r.last_error), ''));
            hint := CASE WHEN r.state = 'not running' THEN w.hint
                         WHEN r.state = 'broker unreachable' THEN 'Check the brokers and the consumer''s security properties; it retries on its own.'
                         WHEN r.state = 'starting' THEN 'A consumer that stays starting means no worker slot was free: see "worker slots".'
                         ELSE 'See duet.kafka_dead_letters and the server log; duet_kafka_stop/start restarts it.' END;
            RETURN NEXT;
        END LOOP;
        IF n = 0 THEN
            status := 'ok'; detail := 'every enabled consumer is running'; hint := NULL;
            RETURN NEXT;
        END IF;
    END IF;

    check_name := 'rules';
    n := 0;
    FOR r IN SELECT ru.tenant, ru.name, a.error, count(*) AS instances
               FROM duet.alerts a JOIN duet.rules ru ON ru.id OPERATOR(pg_catalog.=) a.rule_id
              WHERE a.state = 'error' AND ru.enabled
              GROUP BY ru.tenant, ru.name, a.error ORDER BY ru.tenant, ru.name LOOP
        n := n + 1;
        status := 'warning';
        detail := format('rule %s of tenant %s fails: %s', r.name, r.tenant, r.error);
        hint := 'Fix the rule with duet_rule_alter (duet_rule_test tries it on a row); duet.alert_history keeps the errors.';
        RETURN NEXT;
    END LOOP;
    IF (SELECT count(*) FROM duet.rules ru WHERE ru.enabled AND ru.query IS NOT NULL) > 0 AND w.problem IS NOT NULL THEN
        n := n + 1;
        status := 'error'; detail := 'query rules are never evaluated: ' || w.problem; hint := w.hint;
        RETURN NEXT;
    END IF;
    IF n = 0 THEN
        status := 'ok'; detail := 'no enabled rule is failing'; hint := NULL;
        RETURN NEXT;
    END IF;

    check_name := 'outbox';
    IF NOT has_table_privilege('duet.kafka_outbox_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the outbox state needs duet_kafka_admin or pg_monitor'; hint := NULL;
    ELSE
        SELECT s.pending, now() - s.oldest_pending_at INTO n, oldest FROM duet.kafka_outbox_status s;
        IF n > 0 AND oldest > interval '1 minute' THEN
            status := 'error';
            detail := format('%s events wait to be published, the oldest for %s', n, date_trunc('second', oldest));
            hint := coalesce(w.hint, 'Check the brokers (duet.kafka_status) and the server log of the outbox worker.');
        ELSE
            status := 'ok'; detail := 'no event waits longer than a minute'; hint := NULL;
        END IF;
    END IF;
    RETURN NEXT;

    -- Reachability of the LLM endpoints and Kafka brokers: one TCP connection each, all at once,
    -- at most two seconds in all (C: pg_duet/doctor.c).
    RETURN QUERY SELECT x.check_name, x.status, x.detail, x.hint FROM @extschema@.duet_doctor_reachability() x;
END $$;
COMMENT ON FUNCTION duet_doctor() IS
    'lists what keeps pg_duet from working in this database (preload, duet.databases, worker slots, consumers, failing rules, stuck outbox, unreachable LLM endpoints and Kafka brokers), each with its fix';

-- Alert history pruning on demand (a pg_cron job, docs/pg_cron.md): the rules scheduler also
-- prunes after each evaluation, but only where it runs.
CREATE FUNCTION duet_rules_prune() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    retention int;
    n bigint;
BEGIN
    PERFORM @extschema@.duet_version();     -- loads the library, which defines the setting
    retention := coalesce(current_setting('duet.rules_history_retention', true), '90')::int;
    IF retention = 0 THEN
        RETURN 0;
    END IF;
    DELETE FROM duet.alert_transitions t WHERE t.at < now() - make_interval(days => retention);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION duet_rules_prune() IS
    'deletes alert history (duet.alert_transitions) older than duet.rules_history_retention days (admin); returns the count';
REVOKE ALL ON FUNCTION duet_rules_prune() FROM PUBLIC;

-- Code health (issue 18): the formula disassembler ----------------------------------------------

-- The disassembler: the compiled program as text, one line per instruction (docs/calc.md).
CREATE FUNCTION duet_formula_explain(formula text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_formula_explain';
COMMENT ON FUNCTION duet_formula_explain(text) IS
'the bytecode listing of a Duet formula, as luac -l prints Lua: one line per instruction with its index, source position, opcode, operands and the constant, variable, builtin or jump target they name; an invalid formula raises its error';

-- Prometheus metrics (issue 17 item 3): duet_metrics_*(), duet.health, the duet_monitor role ------
-- (pg_duet/sql/75_monitor.sql; C: pg_duet/monitor.c, monitor_stats.c; docs/monitoring.md)

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'duet_monitor') THEN
        CREATE ROLE duet_monitor NOLOGIN;
    END IF;
END
$$;

CREATE FUNCTION duet_metrics_rules(OUT tenant text, OUT severity text, OUT rules bigint,
        OUT enabled bigint, OUT evaluations bigint, OUT errors bigint, OUT rows_evaluated bigint,
        OUT pending bigint, OUT firing bigint, OUT recovering bigint, OUT in_error bigint,
        OUT last_evaluation_at timestamptz)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_rules';
COMMENT ON FUNCTION duet_metrics_rules() IS
    'rules per tenant and severity: rules, enabled, evaluations, failed evaluations and rows evaluated since the server started, alerts pending, firing, recovering and in error (monitors: every tenant; others: their tenant)';

CREATE FUNCTION duet_metrics_ask(OUT tenant text, OUT status text, OUT calls bigint,
        OUT http_requests bigint, OUT corrections bigint, OUT tokens_in bigint, OUT tokens_out bigint,
        OUT latency_ms_sum double precision, OUT latency_bounds double precision[],
        OUT latency_buckets bigint[])
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_ask';
COMMENT ON FUNCTION duet_metrics_ask() IS
    'duet_ask calls per tenant and status since the server started: calls, HTTP requests, corrections (answers the guard rejected), tokens, total latency, and a latency histogram (bucket upper bounds in seconds, cumulative counts) (monitors: every tenant; others: their tenant)';

CREATE FUNCTION duet_metrics_kafka(OUT consumer text, OUT topic text, OUT state text,
        OUT workers bigint, OUT rows bigint, OUT bytes bigint, OUT batches bigint, OUT errors bigint,
        OUT dead_letters bigint, OUT lag bigint, OUT rows_per_second double precision,
        OUT skipped_messages bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_kafka';
COMMENT ON FUNCTION duet_metrics_kafka() IS
    'Kafka consumers: state, workers, rows, bytes, batches, errors, dead letters, lag, rows/s, messages skipped (monitors: every consumer; others: the consumers of roles they act as)';

CREATE FUNCTION duet_metrics_outbox(OUT pending bigint, OUT oldest_pending_age_seconds double precision,
        OUT sent_last_hour bigint, OUT last_sent_at timestamptz)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_outbox';
COMMENT ON FUNCTION duet_metrics_outbox() IS
    'the Kafka outbox: events pending, age of the oldest pending event in seconds, events sent in the last hour, last sent (monitors and Kafka admins; no row for others)';

CREATE FUNCTION duet_metrics_server(OUT counters_available boolean, OUT workers_serving boolean,
        OUT config_cache_hits bigint, OUT config_cache_misses bigint, OUT config_cache_bypasses bigint,
        OUT config_cache_hit_ratio double precision, OUT counters_dropped bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_server';
COMMENT ON FUNCTION duet_metrics_server() IS
    'the server: whether the counters exist (preloaded), whether the workers serve this database, config cache hits, misses and bypasses of the whole server, counts lost to full counter tables (monitors only; no row for others)';

CREATE FUNCTION duet_metrics_workers(OUT worker text, OUT running bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_workers';
COMMENT ON FUNCTION duet_metrics_workers() IS
    'pg_duet''s background workers running for this database, by kind (the rule scheduler: the server''s), from pg_stat_activity (monitors only; no row for others)';

-- Everyone may call them: each returns only what its caller may see (pg_duet/monitor.c).
GRANT EXECUTE ON FUNCTION duet_metrics_rules(), duet_metrics_ask(), duet_metrics_kafka(),
    duet_metrics_outbox(), duet_metrics_server(), duet_metrics_workers() TO PUBLIC;

CREATE VIEW duet.health WITH (security_invoker = true) AS
SELECT r.tenant, 'rules'::text AS subsystem, m.metric,
       pg_catalog.jsonb_build_object('severity', r.severity) AS labels, m.value
  FROM duet_metrics_rules() r
 CROSS JOIN LATERAL (VALUES ('rules', r.rules::float8), ('enabled', r.enabled::float8),
                            ('evaluations', r.evaluations::float8), ('errors', r.errors::float8),
                            ('rows_evaluated', r.rows_evaluated::float8), ('pending', r.pending::float8),
                            ('firing', r.firing::float8), ('recovering', r.recovering::float8),
                            ('in_error', r.in_error::float8)) AS m(metric, value)
UNION ALL
SELECT a.tenant, 'ask', m.metric, pg_catalog.jsonb_build_object('status', a.status), m.value
  FROM duet_metrics_ask() a
 CROSS JOIN LATERAL (VALUES ('calls', a.calls::float8), ('http_requests', a.http_requests::float8),
                            ('guard_rejections', a.corrections::float8), ('tokens_in', a.tokens_in::float8),
                            ('tokens_out', a.tokens_out::float8), ('latency_seconds', a.latency_ms_sum / 1000))
       AS m(metric, value)
UNION ALL
SELECT NULL, 'kafka', m.metric,
       pg_catalog.jsonb_build_object('consumer', k.consumer, 'topic', k.topic, 'state', k.state), m.value
  FROM duet_metrics_kafka() k
 CROSS JOIN LATERAL (VALUES ('up', CASE WHEN k.state = 'running' THEN 1 ELSE 0 END::float8),
                            ('workers', k.workers::float8), ('rows', k.rows::float8),
                            ('bytes', k.bytes::float8), ('batches', k.batches::float8),
                            ('errors', k.errors::float8), ('dead_letters', k.dead_letters::float8),
                            ('lag', k.lag::float8), ('rows_per_second', k.rows_per_second),
                            ('skipped_messages', k.skipped_messages::float8)) AS m(metric, value)
UNION ALL
SELECT NULL, 'outbox', m.metric, '{}'::jsonb, m.value
  FROM duet_metrics_outbox() o
 CROSS JOIN LATERAL (VALUES ('pending', o.pending::float8),
                            ('oldest_pending_age_seconds', o.oldest_pending_age_seconds),
                            ('sent_last_hour', o.sent_last_hour::float8)) AS m(metric, value)
UNION ALL
SELECT NULL, 'server', m.metric, '{}'::jsonb, m.value
  FROM duet_metrics_server() s
 CROSS JOIN LATERAL (VALUES ('counters_available', CASE WHEN s.counters_available THEN 1 ELSE 0 END::float8),
                            ('workers_serving', CASE WHEN s.workers_serving THEN 1 ELSE 0 END::float8),
                            ('config_cache_hits', s.config_cache_hits::float8),
                            ('config_cache_misses', s.config_cache_misses::float8),
                            ('config_cache_bypasses', s.config_cache_bypasses::float8),
                            ('config_cache_hit_ratio', s.config_cache_hit_ratio),
                            ('counters_dropped', s.counters_dropped::float8)) AS m(metric, value)
UNION ALL
SELECT NULL, 'workers', 'running', pg_catalog.jsonb_build_object('worker', w.worker), w.running::float8
  FROM duet_metrics_workers() w;
COMMENT ON VIEW duet.health IS
    'pg_duet''s figures as rows for dashboards, the same as the Prometheus metrics (docs/monitoring.md): rules, ask, Kafka consumers, outbox, server, workers; a tenant member sees its own tenant''s rows, monitors (pg_monitor, duet_monitor) every tenant';
GRANT SELECT ON duet.health TO PUBLIC;

-- Documentation: the columns of duet.health (pg_duet/sql/90_comments.sql)
COMMENT ON COLUMN duet.health.tenant IS 'the tenant the figure is about; NULL for figures of no tenant (Kafka consumers, the outbox, the server, workers)';
COMMENT ON COLUMN duet.health.subsystem IS 'rules, ask, kafka, outbox, server or workers';
COMMENT ON COLUMN duet.health.metric IS 'the figure''s name within its subsystem, as docs/monitoring.md lists it (evaluations, firing, calls, lag, ...)';
COMMENT ON COLUMN duet.health.labels IS 'what the figure is about, as a JSON object: severity, ask status, consumer/topic/state; the Prometheus labels of the same metric';
COMMENT ON COLUMN duet.health.value IS 'the figure: a count since the server started (counters) or a current value (gauges)';

-- duet_uninstall() also drops duet_monitor (pg_duet/sql/95_cleanup.sql)
CREATE OR REPLACE FUNCTION duet_uninstall(cascade boolean DEFAULT false) RETURNS text[]
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    roles     text[] := ARRAY['duet_kafka_admin', 'duet_kafka_publisher', 'duet_monitor'];
    done      text[] := '{}';
    protected regclass[];
    t         regclass;
    r         text;
    elsewhere text;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'permission denied for function duet_uninstall',
            HINT = 'Only a superuser may remove pg_duet and its cluster-wide roles.';
    END IF;

    -- Tables duet_tenant_protect() protected: their isolation policy depends on the extension.
    SELECT pg_catalog.array_agg(DISTINCT p.polrelid::regclass ORDER BY p.polrelid::regclass) INTO protected
      FROM pg_catalog.pg_policy p
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid = p.oid
     WHERE p.polname = 'duet_tenant_isolation'
       AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND d.refobjid = '@extschema@.duet_current_tenant()'::pg_catalog.regprocedure
       AND p.polrelid NOT IN (SELECT e.objid FROM pg_catalog.pg_depend e
                               WHERE e.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                                 AND e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND e.deptype = 'e');

    IF cascade THEN
        DROP EXTENSION pg_duet CASCADE;
    ELSE
        DROP EXTENSION pg_duet;     -- refuses, naming them, while user objects depend on it
    END IF;
    done := done || 'extension pg_duet'::text;

    -- Fail closed: without its restrictive partner, duet_tenant_access (USING true) would open
    -- the table to every grantee. Row-level security stays forced, so only the owner's policies
    -- (none yet) and superusers can reach the rows until the DBA decides.
    FOREACH t IN ARRAY coalesce(protected, '{}') LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_policy WHERE polrelid = t AND polname = 'duet_tenant_access') THEN
            EXECUTE pg_catalog.format('DROP POLICY duet_tenant_access ON %s', t);
            done := done || pg_catalog.format('policy duet_tenant_access on %s (row-level security stays forced)', t);
        END IF;
    END LOOP;

    -- The roles, unless another database still uses them (pg_shdepend is shared by the cluster).
    SELECT pg_catalog.string_agg(DISTINCT db.datname, ', ' ORDER BY db.datname) INTO elsewhere
      FROM pg_catalog.pg_shdepend s JOIN pg_catalog.pg_database db ON db.oid = s.dbid
     WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND s.refobjid IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY (roles))
       AND db.datname <> pg_catalog.current_database();
    IF elsewhere IS NOT NULL THEN
        RAISE NOTICE 'roles % kept: still used in database %', pg_catalog.array_to_string(roles, ', '), elsewhere
            USING HINT = 'Run SELECT duet_uninstall() there too; the last one drops the roles.';
        RETURN done;
    END IF;
    FOREACH r IN ARRAY roles LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('DROP ROLE %I', r);
            done := done || pg_catalog.format('role %s', r);
        END IF;
    END LOOP;
    RETURN done;
END $$;
COMMENT ON FUNCTION duet_uninstall(boolean) IS
    'superuser: DROP EXTENSION pg_duet [CASCADE], then what it leaves behind: duet_tenant_protect''s permissive policies (fail closed) and, unless another database still uses them, the roles duet_kafka_admin, duet_kafka_publisher and duet_monitor; returns what it removed';
REVOKE ALL ON FUNCTION duet_uninstall(boolean) FROM PUBLIC;
-- Pipelines (issue 19): Bronze -> Silver -> Gold, pg_duet/sql/78_pipelines.sql and 79_pipeline_*.sql ----

CREATE TABLE duet.pipelines (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          text NOT NULL REFERENCES duet.tenants ON UPDATE CASCADE ON DELETE CASCADE,
    name            text NOT NULL CONSTRAINT pipeline_name_syntax CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    source          regclass NOT NULL,
    order_by        text NOT NULL,
    partition_by    text,
    target          regclass NOT NULL,
    transform       jsonb NOT NULL,
    key             text[] NOT NULL DEFAULT '{}',
    mode            text NOT NULL DEFAULT 'append'
                    CONSTRAINT pipeline_mode CHECK (mode IN ('append', 'upsert', 'aggregate')),
    batch_size      integer NOT NULL DEFAULT 10000
                    CONSTRAINT pipeline_batch_size CHECK (batch_size BETWEEN 1 AND 10000000),
    drift_column    text,
    drift_schema    jsonb,
    topic           text CONSTRAINT pipeline_topic CHECK (topic ~ '^[A-Za-z0-9._-]{1,249}$'),
    state           text NOT NULL DEFAULT 'active'
                    CONSTRAINT pipeline_state CHECK (state IN ('active', 'paused', 'error')),
    position        jsonb NOT NULL DEFAULT '{}',
    last_error      text,
    last_run_at     timestamptz,
    last_success_at timestamptz,
    owner           regrole NOT NULL,
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pipeline_name_unique UNIQUE (tenant, name)
);
CREATE INDEX pipelines_source ON duet.pipelines (source);
COMMENT ON TABLE duet.pipelines IS
    'pipelines per tenant: source rows past the stored position, transformed and checked, written to the target; manage with duet_pipeline_*';
COMMENT ON COLUMN duet.pipelines.id IS 'pipeline id';
COMMENT ON COLUMN duet.pipelines.tenant IS 'tenant the pipeline belongs to';
COMMENT ON COLUMN duet.pipelines.name IS 'pipeline name, unique per tenant';
COMMENT ON COLUMN duet.pipelines.source IS 'table the pipeline reads';
COMMENT ON COLUMN duet.pipelines.order_by IS 'monotone column of the source (at commit): rows past the position are new (Kafka: _offset)';
COMMENT ON COLUMN duet.pipelines.partition_by IS 'source column whose values each have their own position (Kafka: _partition); NULL: one position';
COMMENT ON COLUMN duet.pipelines.target IS 'table the pipeline writes';
COMMENT ON COLUMN duet.pipelines.transform IS 'target column -> SQL expression over source columns, or "=" and a Duet formula';
COMMENT ON COLUMN duet.pipelines.key IS 'target columns identifying a row (upsert: dedup key, latest by source order wins; aggregate: group key)';
COMMENT ON COLUMN duet.pipelines.mode IS 'append, upsert (by key) or aggregate (recompute the groups new rows touch)';
COMMENT ON COLUMN duet.pipelines.batch_size IS 'most source rows one run reads';
COMMENT ON COLUMN duet.pipelines.drift_column IS 'jsonb source column whose keys and value types are watched for schema drift';
COMMENT ON COLUMN duet.pipelines.drift_schema IS 'key -> JSON type of drift_column, taken from the first row read';
COMMENT ON COLUMN duet.pipelines.topic IS 'Kafka topic (through the outbox) that receives each committed target row; NULL: none';
COMMENT ON COLUMN duet.pipelines.state IS 'active, paused, or error (a fail expectation or a failed run stopped it: last_error says why)';
COMMENT ON COLUMN duet.pipelines.position IS 'partition -> last source order value read (as text); "" without partition_by';
COMMENT ON COLUMN duet.pipelines.last_error IS 'why the last run failed';
COMMENT ON COLUMN duet.pipelines.last_run_at IS 'when the last run ended';
COMMENT ON COLUMN duet.pipelines.last_success_at IS 'when the last successful run ended';
COMMENT ON COLUMN duet.pipelines.owner IS 'role the pipeline runs as (its creator)';
COMMENT ON COLUMN duet.pipelines.version IS 'incremented by each change';
COMMENT ON COLUMN duet.pipelines.created_at IS 'creation time';
COMMENT ON COLUMN duet.pipelines.updated_at IS 'time of the last change';

CREATE TABLE duet.pipeline_expectations (
    pipeline_id bigint NOT NULL REFERENCES duet.pipelines ON DELETE CASCADE,
    tenant      text NOT NULL,
    name        text NOT NULL CONSTRAINT expectation_name_syntax CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    predicate   text NOT NULL,
    action      text NOT NULL CONSTRAINT expectation_action CHECK (action IN ('warn', 'drop', 'fail')),
    PRIMARY KEY (pipeline_id, name)
);
COMMENT ON TABLE duet.pipeline_expectations IS 'named predicates over a pipeline''s output rows and what a row failing one does';
COMMENT ON COLUMN duet.pipeline_expectations.pipeline_id IS 'the pipeline';
COMMENT ON COLUMN duet.pipeline_expectations.tenant IS 'tenant of the pipeline';
COMMENT ON COLUMN duet.pipeline_expectations.name IS 'expectation name, unique per pipeline';
COMMENT ON COLUMN duet.pipeline_expectations.predicate IS 'SQL boolean expression over target columns, or "=" and a Duet formula; a row fails unless it is true';
COMMENT ON COLUMN duet.pipeline_expectations.action IS 'warn (keep and count), drop (quarantine) or fail (stop the pipeline, commit nothing)';

CREATE TABLE duet.pipeline_quarantine (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline_id    bigint NOT NULL REFERENCES duet.pipelines ON DELETE CASCADE,
    tenant         text NOT NULL,
    part           text NOT NULL,
    pos            text NOT NULL,
    failed         text[] NOT NULL,
    source_row     jsonb NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    replayed_at    timestamptz
);
CREATE INDEX pipeline_quarantine_pending ON duet.pipeline_quarantine (pipeline_id, id) WHERE replayed_at IS NULL;
COMMENT ON TABLE duet.pipeline_quarantine IS 'source rows a drop expectation kept out of the target, replayable with duet_pipeline_replay()';
COMMENT ON COLUMN duet.pipeline_quarantine.id IS 'quarantine entry id';
COMMENT ON COLUMN duet.pipeline_quarantine.pipeline_id IS 'the pipeline';
COMMENT ON COLUMN duet.pipeline_quarantine.tenant IS 'tenant of the pipeline';
COMMENT ON COLUMN duet.pipeline_quarantine.part IS 'source partition of the row ("" without partition_by)';
COMMENT ON COLUMN duet.pipeline_quarantine.pos IS 'source order value of the row (as text)';
COMMENT ON COLUMN duet.pipeline_quarantine.failed IS 'names of the expectations the row failed';
COMMENT ON COLUMN duet.pipeline_quarantine.source_row IS 'the source row';
COMMENT ON COLUMN duet.pipeline_quarantine.quarantined_at IS 'when the row was quarantined';
COMMENT ON COLUMN duet.pipeline_quarantine.replayed_at IS 'when duet_pipeline_replay() ran the row again (it then passed, or is quarantined anew)';

CREATE TABLE duet.pipeline_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline_id  bigint NOT NULL REFERENCES duet.pipelines ON DELETE CASCADE,
    tenant       text NOT NULL,
    kind         text NOT NULL CONSTRAINT pipeline_run_kind CHECK (kind IN ('incremental', 'backfill', 'replay')),
    status       text NOT NULL CONSTRAINT pipeline_run_status CHECK (status IN ('ok', 'error')),
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    rows_in      bigint NOT NULL DEFAULT 0,
    rows_out     bigint NOT NULL DEFAULT 0,
    rows_dropped bigint NOT NULL DEFAULT 0,
    failures     jsonb NOT NULL DEFAULT '{}',
    drift        jsonb NOT NULL DEFAULT '{}',
    position     jsonb,
    error        text
);
CREATE INDEX pipeline_runs_pipeline ON duet.pipeline_runs (pipeline_id, finished_at);
COMMENT ON TABLE duet.pipeline_runs IS 'history of pipeline runs that read rows or failed (append-only)';
COMMENT ON COLUMN duet.pipeline_runs.id IS 'run id';
COMMENT ON COLUMN duet.pipeline_runs.pipeline_id IS 'the pipeline';
COMMENT ON COLUMN duet.pipeline_runs.tenant IS 'tenant of the pipeline';
COMMENT ON COLUMN duet.pipeline_runs.kind IS 'incremental (past the position), backfill (a range again) or replay (quarantined rows)';
COMMENT ON COLUMN duet.pipeline_runs.status IS 'ok, or error (nothing of the run was committed)';
COMMENT ON COLUMN duet.pipeline_runs.started_at IS 'when the run started';
COMMENT ON COLUMN duet.pipeline_runs.finished_at IS 'when the run ended';
COMMENT ON COLUMN duet.pipeline_runs.rows_in IS 'source rows read';
COMMENT ON COLUMN duet.pipeline_runs.rows_out IS 'target rows written (inserted or updated)';
COMMENT ON COLUMN duet.pipeline_runs.rows_dropped IS 'rows quarantined by drop expectations';
COMMENT ON COLUMN duet.pipeline_runs.failures IS 'expectation name -> rows that failed it (warn, drop and fail)';
COMMENT ON COLUMN duet.pipeline_runs.drift IS 'schema drift of drift_column: {"new_keys": {key: rows}, "missing_keys": {...}, "type_changes": {...}}';
COMMENT ON COLUMN duet.pipeline_runs.position IS 'the position after the run';
COMMENT ON COLUMN duet.pipeline_runs.error IS 'why the run failed';

SELECT pg_catalog.pg_extension_config_dump('duet.pipelines', '');
SELECT pg_catalog.pg_extension_config_dump('duet.pipeline_expectations', '');
SELECT pg_catalog.pg_extension_config_dump('duet.pipeline_quarantine', '');
SELECT pg_catalog.pg_extension_config_dump('duet.pipeline_runs', '');

REVOKE ALL ON duet.pipelines, duet.pipeline_expectations, duet.pipeline_quarantine, duet.pipeline_runs FROM PUBLIC;
GRANT SELECT ON duet.pipelines, duet.pipeline_expectations, duet.pipeline_quarantine, duet.pipeline_runs TO PUBLIC;
ALTER TABLE duet.pipelines ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.pipelines FORCE ROW LEVEL SECURITY;
ALTER TABLE duet.pipeline_expectations ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.pipeline_expectations FORCE ROW LEVEL SECURITY;
ALTER TABLE duet.pipeline_quarantine ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.pipeline_quarantine FORCE ROW LEVEL SECURITY;
ALTER TABLE duet.pipeline_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.pipeline_runs FORCE ROW LEVEL SECURITY;
-- The owner sees every tenant; everyone else only the rows of duet_current_tenant().
CREATE POLICY pipelines_tenant ON duet.pipelines
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY pipeline_expectations_tenant ON duet.pipeline_expectations
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY pipeline_quarantine_tenant ON duet.pipeline_quarantine
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY pipeline_runs_tenant ON duet.pipeline_runs
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));

------------------------------------------------------------------------------------------------
-- Status
------------------------------------------------------------------------------------------------

-- Rows of the source past the position, counted as the caller (RLS applies to what it counts).
CREATE FUNCTION duet_pipeline_backlog(p duet.pipelines) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    typ text := (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = p.source AND attname = p.order_by AND NOT attisdropped);
BEGIN
    IF typ IS NULL OR NOT has_table_privilege(p.source, 'SELECT') THEN
        RETURN NULL;            -- the source or its column was dropped, or the caller may not read it
    END IF;
    IF p.partition_by IS NULL THEN
        EXECUTE format('SELECT count(*) FROM %s s WHERE ($1 OPERATOR(pg_catalog.->>) '''') IS NULL '
                       'OR s.%I OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.->>) '''')::%s',
                       p.source, p.order_by, typ) INTO n USING p.position;
    ELSE
        EXECUTE format('SELECT count(*) FROM %s s WHERE ($1 OPERATOR(pg_catalog.->>) (s.%I)::pg_catalog.text) IS NULL '
                       'OR s.%I OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.->>) (s.%I)::pg_catalog.text)::%s',
                       p.source, p.partition_by, p.order_by, p.partition_by, typ) INTO n USING p.position;
    END IF;
    RETURN n;
END $$;
COMMENT ON FUNCTION duet_pipeline_backlog(duet.pipelines) IS
    'source rows past a pipeline''s position that the caller can see (NULL when it may not read the source, or it was dropped)';

CREATE VIEW duet.pipeline_status WITH (security_invoker = true) AS
SELECT p.tenant, p.name, p.state, p.mode, p.source, p.target, p.position,
       b.n AS lag_rows,
       CASE WHEN p.last_success_at IS NULL THEN NULL
            WHEN b.n > 0 THEN now() - p.last_success_at
            ELSE interval '0' END AS lag_time,
       p.last_run_at, p.last_success_at, p.last_error,
       w.runs_5m, w.rows_in_5m, w.rows_out_5m, w.rows_dropped_5m,
       w.rows_in_1h, w.rows_out_1h, w.rows_dropped_1h,
       w.rows_in_24h, w.rows_out_24h, w.rows_dropped_24h, w.errors_24h,
       coalesce(f.failures_1h, '{}') AS failures_1h, coalesce(f.failures_24h, '{}') AS failures_24h,
       coalesce(d.drift_24h, '{}') AS drift_24h,
       (SELECT count(*) FROM duet.pipeline_quarantine q
         WHERE q.pipeline_id = p.id AND q.replayed_at IS NULL) AS quarantined
  FROM duet.pipelines p
  CROSS JOIN LATERAL (SELECT @extschema@.duet_pipeline_backlog(p) AS n) b
  LEFT JOIN LATERAL (
       SELECT count(*) FILTER (WHERE r.finished_at > now() - interval '5 minutes') AS runs_5m,
              coalesce(sum(r.rows_in) FILTER (WHERE r.finished_at > now() - interval '5 minutes'), 0) AS rows_in_5m,
              coalesce(sum(r.rows_out) FILTER (WHERE r.finished_at > now() - interval '5 minutes'), 0) AS rows_out_5m,
              coalesce(sum(r.rows_dropped) FILTER (WHERE r.finished_at > now() - interval '5 minutes'), 0) AS rows_dropped_5m,
              coalesce(sum(r.rows_in) FILTER (WHERE r.finished_at > now() - interval '1 hour'), 0) AS rows_in_1h,
              coalesce(sum(r.rows_out) FILTER (WHERE r.finished_at > now() - interval '1 hour'), 0) AS rows_out_1h,
              coalesce(sum(r.rows_dropped) FILTER (WHERE r.finished_at > now() - interval '1 hour'), 0) AS rows_dropped_1h,
              coalesce(sum(r.rows_in), 0) AS rows_in_24h,
              coalesce(sum(r.rows_out), 0) AS rows_out_24h,
              coalesce(sum(r.rows_dropped), 0) AS rows_dropped_24h,
              count(*) FILTER (WHERE r.status = 'error') AS errors_24h
         FROM duet.pipeline_runs r
        WHERE r.pipeline_id = p.id AND r.finished_at > now() - interval '24 hours') w ON true
  LEFT JOIN LATERAL (
       SELECT jsonb_object_agg(x.name, x.n1) FILTER (WHERE x.n1 > 0) AS failures_1h,
              jsonb_object_agg(x.name, x.n24) AS failures_24h
         FROM (SELECT e.key AS name,
                      sum(e.value::text::bigint) FILTER (WHERE r.finished_at > now() - interval '1 hour') AS n1,
                      sum(e.value::text::bigint) AS n24
                 FROM duet.pipeline_runs r, jsonb_each(r.failures) e
                WHERE r.pipeline_id = p.id AND r.finished_at > now() - interval '24 hours'
                GROUP BY e.key) x) f ON true
  LEFT JOIN LATERAL (
       SELECT jsonb_object_agg(y.kind, y.keys) AS drift_24h
         FROM (SELECT k.key AS kind, jsonb_object_agg(c.key, c.n) AS keys
                 FROM (SELECT k.key, c.key AS ckey, sum(c.value::text::bigint) AS n
                         FROM duet.pipeline_runs r, jsonb_each(r.drift) k, jsonb_each(k.value) c
                        WHERE r.pipeline_id = p.id AND r.finished_at > now() - interval '24 hours'
                        GROUP BY k.key, c.key) k
                 CROSS JOIN LATERAL (SELECT k.ckey AS key, k.n) c
                GROUP BY k.key) y) d ON true;
COMMENT ON VIEW duet.pipeline_status IS
    'pipelines of the current tenant: state, position, lag, rows in/out/dropped over 5 minutes, 1 hour and 24 hours, failures per expectation, schema drift, last error';
COMMENT ON COLUMN duet.pipeline_status.tenant IS 'tenant of the pipeline';
COMMENT ON COLUMN duet.pipeline_status.name IS 'pipeline name';
COMMENT ON COLUMN duet.pipeline_status.state IS 'active, paused or error';
COMMENT ON COLUMN duet.pipeline_status.mode IS 'append, upsert or aggregate';
COMMENT ON COLUMN duet.pipeline_status.source IS 'table the pipeline reads';
COMMENT ON COLUMN duet.pipeline_status.target IS 'table the pipeline writes';
COMMENT ON COLUMN duet.pipeline_status.position IS 'partition -> last source order value read';
COMMENT ON COLUMN duet.pipeline_status.lag_rows IS 'source rows past the position (that the caller can see)';
COMMENT ON COLUMN duet.pipeline_status.lag_time IS 'time since the last successful run while rows wait; 0 when caught up';
COMMENT ON COLUMN duet.pipeline_status.last_run_at IS 'when the last run ended';
COMMENT ON COLUMN duet.pipeline_status.last_success_at IS 'when the last successful run ended';
COMMENT ON COLUMN duet.pipeline_status.last_error IS 'why the last run failed (state error)';
COMMENT ON COLUMN duet.pipeline_status.runs_5m IS 'runs in the last 5 minutes';
COMMENT ON COLUMN duet.pipeline_status.rows_in_5m IS 'source rows read in the last 5 minutes';
COMMENT ON COLUMN duet.pipeline_status.rows_out_5m IS 'target rows written in the last 5 minutes';
COMMENT ON COLUMN duet.pipeline_status.rows_dropped_5m IS 'rows quarantined in the last 5 minutes';
COMMENT ON COLUMN duet.pipeline_status.rows_in_1h IS 'source rows read in the last hour';
COMMENT ON COLUMN duet.pipeline_status.rows_out_1h IS 'target rows written in the last hour';
COMMENT ON COLUMN duet.pipeline_status.rows_dropped_1h IS 'rows quarantined in the last hour';
COMMENT ON COLUMN duet.pipeline_status.rows_in_24h IS 'source rows read in the last 24 hours';
COMMENT ON COLUMN duet.pipeline_status.rows_out_24h IS 'target rows written in the last 24 hours';
COMMENT ON COLUMN duet.pipeline_status.rows_dropped_24h IS 'rows quarantined in the last 24 hours';
COMMENT ON COLUMN duet.pipeline_status.errors_24h IS 'failed runs in the last 24 hours';
COMMENT ON COLUMN duet.pipeline_status.failures_1h IS 'expectation name -> failing rows in the last hour';
COMMENT ON COLUMN duet.pipeline_status.failures_24h IS 'expectation name -> failing rows in the last 24 hours';
COMMENT ON COLUMN duet.pipeline_status.drift_24h IS 'schema drift in the last 24 hours: new_keys, missing_keys, type_changes, each key -> rows';
COMMENT ON COLUMN duet.pipeline_status.quarantined IS 'quarantined rows not replayed yet';
GRANT SELECT ON duet.pipeline_status TO PUBLIC;

------------------------------------------------------------------------------------------------
-- Checks and changes (run as the extension owner)
------------------------------------------------------------------------------------------------

-- Checks a pipeline's fields (as the owner, for the caller) and, through duet_pipeline_validate,
-- the statement of its runs as the caller: every expression, column, type, privilege and the
-- unique index an upsert needs are resolved there, so an invalid pipeline is never stored.
CREATE FUNCTION duet.duet_pipeline_check(p duet.pipelines, p_caller oid) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k   text;
    e   record;
    n   int;
BEGIN
    FOR k IN SELECT unnest(ARRAY[p.source, p.target]::regclass[]) LOOP
        IF (SELECT relkind FROM pg_class WHERE oid = k::regclass) NOT IN ('r', 'p') THEN
            RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
                MESSAGE = format('"%s" is not a table', k),
                DETAIL = 'A pipeline reads a table and writes a table.';
        END IF;
    END LOOP;
    IF p.source = p.target THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('pipeline "%s" reads and writes the same table', p.name);
    END IF;
    IF NOT has_table_privilege(p_caller, p.source, 'SELECT') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('permission denied for table %s', p.source),
            DETAIL = 'A pipeline runs as its creator, who needs SELECT on its source.';
    END IF;
    IF NOT has_table_privilege(p_caller, p.target, 'INSERT')
       OR (p.mode <> 'append' AND NOT has_table_privilege(p_caller, p.target, 'UPDATE')) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('permission denied for table %s', p.target),
            DETAIL = 'A pipeline runs as its creator, who needs INSERT on its target (and UPDATE for upsert and aggregate).';
    END IF;
    PERFORM duet.duet_pipeline_column_type(p.source, p.order_by, 'order_by');
    IF p.partition_by IS NOT NULL THEN
        PERFORM duet.duet_pipeline_column_type(p.source, p.partition_by, 'partition_by');
    END IF;
    IF p.drift_column IS NOT NULL
       AND duet.duet_pipeline_column_type(p.source, p.drift_column, 'drift_column') <> 'jsonb' THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = format('pipeline drift_column "%s" is not jsonb', p.drift_column);
    END IF;
    IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = p.source AND attname LIKE '\_\_duet\_%' AND NOT attisdropped) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('source %s has a column named __duet_*', p.source),
            DETAIL = 'Pipelines name their own columns so.';
    END IF;
    IF jsonb_typeof(p.transform) IS DISTINCT FROM 'object' OR p.transform = '{}' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'pipeline transform must be a non-empty JSON object',
            HINT = 'Map target columns to SQL expressions over source columns or "=" Duet formulas: {"amount": "(payload->>''amount'')::numeric", "ctr": "=clicks / impressions"}.';
    END IF;
    FOR k IN SELECT jsonb_object_keys(p.transform) LOOP
        IF jsonb_typeof(p.transform -> k) <> 'string' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('pipeline transform of column "%s" must be a string', k);
        END IF;
        PERFORM duet.duet_pipeline_column_type(p.target, k, 'target');
        PERFORM duet.duet_pipeline_check_expr(p.transform ->> k, format('transform of column "%s"', k));
        IF p.mode = 'aggregate' AND left(p.transform ->> k, 1) = '=' THEN
            RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                MESSAGE = format('aggregate pipeline column "%s" must be a SQL expression', k),
                HINT = 'Aggregate columns are SQL aggregates (sum, count, ratios of sums); compute formulas in the pipeline before.';
        END IF;
    END LOOP;
    IF p.mode IN ('upsert', 'aggregate') AND cardinality(p.key) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s pipeline "%s" needs a key', p.mode, p.name),
            HINT = 'key => ARRAY[...] names the target columns that identify a row; the target needs a unique index on them.';
    END IF;
    FOREACH k IN ARRAY p.key LOOP
        IF NOT p.transform ? k THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('pipeline key column "%s" is not in the transform', k);
        END IF;
    END LOOP;
    SELECT count(*) INTO n FROM duet.pipeline_expectations WHERE pipeline_id = p.id;
    IF n > 0 AND p.mode = 'aggregate' THEN
        RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
            MESSAGE = 'aggregate pipelines take no expectations',
            HINT = 'Check rows in the pipeline that feeds the aggregate.';
    END IF;
    FOR e IN SELECT name, predicate FROM duet.pipeline_expectations WHERE pipeline_id = p.id LOOP
        PERFORM duet.duet_pipeline_check_expr(e.predicate, format('expectation "%s"', e.name));
    END LOOP;
    IF p.topic IS NOT NULL THEN
        PERFORM duet.duet_rule_check_target(p_caller, NULL, p.topic);
    END IF;
    PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'incremental'));
    PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'tail'));
    PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'count'));
    PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'backfill'));
    IF EXISTS (SELECT FROM duet.pipeline_expectations WHERE pipeline_id = p.id AND action = 'drop') THEN
        PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'replay'));
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_check(duet.pipelines, oid) IS
    'internal: checks a pipeline''s fields and plans its statements as the caller, raising the first problem';
REVOKE ALL ON FUNCTION duet.duet_pipeline_check(duet.pipelines, oid) FROM PUBLIC;

-- The fields a table constraint would otherwise refuse with a less helpful message.
CREATE FUNCTION duet.duet_pipeline_check_fields(p_mode text, p_batch_size integer) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_mode NOT IN ('append', 'upsert', 'aggregate') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid pipeline mode "%s"', p_mode),
            HINT = 'A pipeline appends, upserts (by key) or aggregates (by key).';
    END IF;
    IF p_batch_size NOT BETWEEN 1 AND 10000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('pipeline batch_size %s is out of range', p_batch_size),
            HINT = 'One run reads 1 to 10000000 source rows.';
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_check_fields(text, integer) IS
    'internal: checks a pipeline''s mode and batch size';
REVOKE ALL ON FUNCTION duet.duet_pipeline_check_fields(text, integer) FROM PUBLIC;

-- expectations: [{"name": ..., "predicate": ..., "action": "warn" | "drop" | "fail"}, ...]
CREATE FUNCTION duet.duet_pipeline_set_expectations(p duet.pipelines, expectations jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e jsonb;
BEGIN
    IF jsonb_typeof(expectations) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'pipeline expectations must be a JSON array',
            HINT = 'For example: [{"name": "amount_positive", "predicate": "amount > 0", "action": "drop"}].';
    END IF;
    DELETE FROM duet.pipeline_expectations WHERE pipeline_id = p.id;
    FOR e IN SELECT jsonb_array_elements(expectations) LOOP
        IF jsonb_typeof(e) <> 'object' OR jsonb_typeof(e -> 'name') IS DISTINCT FROM 'string'
           OR jsonb_typeof(e -> 'predicate') IS DISTINCT FROM 'string'
           OR coalesce(e ->> 'action', 'warn') NOT IN ('warn', 'drop', 'fail')
           OR EXISTS (SELECT FROM jsonb_object_keys(e) k WHERE k NOT IN ('name', 'predicate', 'action')) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('invalid pipeline expectation %s', e),
                DETAIL = 'An expectation is {"name": text, "predicate": SQL or "=formula", "action": "warn", "drop" or "fail"}.';
        END IF;
        IF EXISTS (SELECT FROM duet.pipeline_expectations WHERE pipeline_id = p.id AND name = e ->> 'name') THEN
            RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
                MESSAGE = format('pipeline expectation "%s" is given twice', e ->> 'name');
        END IF;
        INSERT INTO duet.pipeline_expectations (pipeline_id, tenant, name, predicate, action)
        VALUES (p.id, p.tenant, e ->> 'name', e ->> 'predicate', coalesce(e ->> 'action', 'warn'));
    END LOOP;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_set_expectations(duet.pipelines, jsonb) IS
    'internal: replaces a pipeline''s expectations';
REVOKE ALL ON FUNCTION duet.duet_pipeline_set_expectations(duet.pipelines, jsonb) FROM PUBLIC;

-- The wake trigger of a source: present while a pipeline reads it.
CREATE FUNCTION duet.duet_pipeline_sync_trigger(tbl regclass) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted boolean := EXISTS (SELECT FROM duet.pipelines WHERE source = tbl);
    present boolean := EXISTS (SELECT FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'duet_pipeline_wake');
BEGIN
    IF wanted AND NOT present THEN
        EXECUTE format('CREATE TRIGGER duet_pipeline_wake AFTER INSERT OR UPDATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION duet.duet_pipeline_wake()', tbl);
    ELSIF present AND NOT wanted THEN
        EXECUTE format('DROP TRIGGER duet_pipeline_wake ON %s', tbl);
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_sync_trigger(regclass) IS
    'internal: creates or drops the trigger that wakes the pipeline worker at commit on a source table';
REVOKE ALL ON FUNCTION duet.duet_pipeline_sync_trigger(regclass) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_lookup(p_tenant text, p_name text) RETURNS duet.pipelines
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r duet.pipelines;
BEGIN
    SELECT * INTO r FROM duet.pipelines WHERE tenant = p_tenant AND name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('pipeline "%s" does not exist', p_name),
            DETAIL = format('Tenant "%s" has no pipeline of that name.', p_tenant);
    END IF;
    RETURN r;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_lookup(text, text) IS 'internal: a tenant''s pipeline by name, locked, or an error';
REVOKE ALL ON FUNCTION duet.duet_pipeline_lookup(text, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_create_apply(p_tenant text, p_caller oid, p_name text, p_source regclass,
        p_target regclass, p_transform jsonb, p_order_by text, p_partition_by text, p_key text[], p_mode text,
        p_expectations jsonb, p_batch_size integer, p_topic text, p_drift_column text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p duet.pipelines;
BEGIN
    IF p_name IS NULL OR p_source IS NULL OR p_target IS NULL OR p_transform IS NULL OR p_order_by IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'pipeline name, source, target, transform and order_by must not be NULL';
    END IF;
    PERFORM duet.duet_pipeline_check_fields(coalesce(p_mode, 'append'), coalesce(p_batch_size, 10000));
    IF EXISTS (SELECT FROM duet.pipelines WHERE tenant = p_tenant AND name = p_name) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('pipeline "%s" already exists', p_name),
            HINT = 'Change it with duet_pipeline_alter() or remove it with duet_pipeline_drop().';
    END IF;
    INSERT INTO duet.pipelines (tenant, name, source, target, transform, order_by, partition_by, key, mode,
                                batch_size, topic, drift_column, owner)
    VALUES (p_tenant, p_name, p_source, p_target, p_transform, p_order_by, p_partition_by,
            coalesce(p_key, '{}'), coalesce(p_mode, 'append'), coalesce(p_batch_size, 10000), p_topic,
            p_drift_column, p_caller)
    RETURNING * INTO p;
    PERFORM duet.duet_pipeline_set_expectations(p, coalesce(p_expectations, '[]'));
    PERFORM duet.duet_pipeline_check(p, p_caller);
    PERFORM duet.duet_pipeline_sync_trigger(p_source);
    RETURN p.id;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_create_apply(text, oid, text, regclass, regclass, jsonb, text, text, text[],
                                                    text, jsonb, integer, text, text) IS
    'internal: creates a pipeline for a tenant on behalf of a caller already identified by duet_pipeline_create';
REVOKE ALL ON FUNCTION duet.duet_pipeline_create_apply(text, oid, text, regclass, regclass, jsonb, text, text, text[],
                                                       text, jsonb, integer, text, text) FROM PUBLIC;

-- changes: a jsonb object of the fields to change; a JSON null clears an optional field.
CREATE FUNCTION duet.duet_pipeline_alter_apply(p_tenant text, p_caller oid, p_name text, p_changes jsonb)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p       duet.pipelines := duet.duet_pipeline_lookup(p_tenant, p_name);
    k       text;
    allowed text[] := ARRAY['name', 'transform', 'key', 'mode', 'expectations', 'batch_size', 'topic',
                            'drift_column'];
BEGIN
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'pipeline changes must be a JSON object',
            HINT = 'For example: {"batch_size": 50000, "expectations": [...]}.';
    END IF;
    IF p.owner <> p_caller AND NOT pg_has_role(p_caller, p.owner, 'USAGE') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('must be the owner of pipeline "%s"', p_name),
            DETAIL = format('It runs as role %s.', p.owner);
    END IF;
    FOR k IN SELECT jsonb_object_keys(p_changes) LOOP
        IF NOT k = ANY (allowed) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('unknown pipeline field "%s"', k),
                DETAIL = format('Fields that can change: %s.', array_to_string(allowed, ', '));
        END IF;
        IF k NOT IN ('topic', 'drift_column') AND jsonb_typeof(p_changes -> k) = 'null' THEN
            RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
                MESSAGE = format('pipeline field "%s" must not be null', k);
        END IF;
    END LOOP;
    p.name := coalesce(p_changes ->> 'name', p.name);
    p.transform := coalesce(p_changes -> 'transform', p.transform);
    IF p_changes ? 'key' THEN
        p.key := ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'key'));
    END IF;
    p.mode := coalesce(p_changes ->> 'mode', p.mode);
    p.batch_size := coalesce((p_changes ->> 'batch_size')::integer, p.batch_size);
    IF p_changes ? 'topic' THEN p.topic := p_changes ->> 'topic'; END IF;
    IF p_changes ? 'drift_column' THEN
        p.drift_column := p_changes ->> 'drift_column';
        p.drift_schema := NULL;
    END IF;
    PERFORM duet.duet_pipeline_check_fields(p.mode, p.batch_size);
    UPDATE duet.pipelines SET name = p.name, transform = p.transform, key = p.key, mode = p.mode,
           batch_size = p.batch_size, topic = p.topic, drift_column = p.drift_column,
           drift_schema = p.drift_schema, version = version + 1, updated_at = now()
     WHERE id = p.id;
    IF p_changes ? 'expectations' THEN
        PERFORM duet.duet_pipeline_set_expectations(p, p_changes -> 'expectations');
    END IF;
    PERFORM duet.duet_pipeline_check(p, p_caller);
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_alter_apply(text, oid, text, jsonb) IS
    'internal: changes a pipeline on behalf of a caller already identified by duet_pipeline_alter';
REVOKE ALL ON FUNCTION duet.duet_pipeline_alter_apply(text, oid, text, jsonb) FROM PUBLIC;

-- state: 'paused', 'active' (resume: also after an error) or 'drop'.
CREATE FUNCTION duet.duet_pipeline_state_apply(p_tenant text, p_caller oid, p_name text, p_state text)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p duet.pipelines := duet.duet_pipeline_lookup(p_tenant, p_name);
BEGIN
    IF p.owner <> p_caller AND NOT pg_has_role(p_caller, p.owner, 'USAGE') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('must be the owner of pipeline "%s"', p_name),
            DETAIL = format('It runs as role %s.', p.owner);
    END IF;
    IF p_state = 'drop' THEN
        DELETE FROM duet.pipelines WHERE id = p.id;
        PERFORM duet.duet_pipeline_sync_trigger(p.source);
    ELSE
        UPDATE duet.pipelines SET state = p_state, updated_at = now(),
               last_error = CASE WHEN p_state = 'active' THEN NULL ELSE last_error END
         WHERE id = p.id;
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_state_apply(text, oid, text, text) IS
    'internal: pauses, resumes or drops a pipeline on behalf of a caller already identified';
REVOKE ALL ON FUNCTION duet.duet_pipeline_state_apply(text, oid, text, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_pause_apply(p_tenant text, p_caller oid, p_name text) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT duet.duet_pipeline_state_apply(p_tenant, p_caller, p_name, 'paused') $$;
COMMENT ON FUNCTION duet.duet_pipeline_pause_apply(text, oid, text) IS
    'internal: pauses a pipeline on behalf of a caller already identified by duet_pipeline_pause';
REVOKE ALL ON FUNCTION duet.duet_pipeline_pause_apply(text, oid, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_resume_apply(p_tenant text, p_caller oid, p_name text) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT duet.duet_pipeline_state_apply(p_tenant, p_caller, p_name, 'active') $$;
COMMENT ON FUNCTION duet.duet_pipeline_resume_apply(text, oid, text) IS
    'internal: resumes a pipeline on behalf of a caller already identified by duet_pipeline_resume';
REVOKE ALL ON FUNCTION duet.duet_pipeline_resume_apply(text, oid, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_drop_apply(p_tenant text, p_caller oid, p_name text) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT duet.duet_pipeline_state_apply(p_tenant, p_caller, p_name, 'drop') $$;
COMMENT ON FUNCTION duet.duet_pipeline_drop_apply(text, oid, text) IS
    'internal: drops a pipeline on behalf of a caller already identified by duet_pipeline_drop';
REVOKE ALL ON FUNCTION duet.duet_pipeline_drop_apply(text, oid, text) FROM PUBLIC;

-- The id of a tenant's pipeline, for a run started by a caller who may change it.
CREATE FUNCTION duet.duet_pipeline_id_apply(p_tenant text, p_caller oid, p_name text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p duet.pipelines := duet.duet_pipeline_lookup(p_tenant, p_name);
BEGIN
    IF p.owner <> p_caller AND NOT pg_has_role(p_caller, p.owner, 'USAGE') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('must be the owner of pipeline "%s"', p_name),
            DETAIL = format('It runs as role %s.', p.owner);
    END IF;
    RETURN p.id;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_id_apply(text, oid, text) IS
    'internal: the id of a pipeline the caller owns';
REVOKE ALL ON FUNCTION duet.duet_pipeline_id_apply(text, oid, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_run_apply(p_tenant text, p_caller oid, p_name text) RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT duet.duet_pipeline_id_apply(p_tenant, p_caller, p_name) $$;
COMMENT ON FUNCTION duet.duet_pipeline_run_apply(text, oid, text) IS
    'internal: the id of the pipeline duet_pipeline_run runs, checking that the caller may';
REVOKE ALL ON FUNCTION duet.duet_pipeline_run_apply(text, oid, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_replay_apply(p_tenant text, p_caller oid, p_name text) RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT duet.duet_pipeline_id_apply(p_tenant, p_caller, p_name) $$;
COMMENT ON FUNCTION duet.duet_pipeline_replay_apply(text, oid, text) IS
    'internal: the id of the pipeline duet_pipeline_replay runs, checking that the caller may';
REVOKE ALL ON FUNCTION duet.duet_pipeline_replay_apply(text, oid, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_backfill_apply(p_tenant text, p_caller oid, p_name text, p_from text, p_to text, p_partition text) RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT duet.duet_pipeline_id_apply(p_tenant, p_caller, p_name) $$;
COMMENT ON FUNCTION duet.duet_pipeline_backfill_apply(text, oid, text, text, text, text) IS
    'internal: the id of the pipeline duet_pipeline_backfill runs, checking that the caller may';
REVOKE ALL ON FUNCTION duet.duet_pipeline_backfill_apply(text, oid, text, text, text, text) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- The public API
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet_pipeline_create(name text, source regclass, target regclass, transform jsonb,
                                     order_by text, partition_by text DEFAULT NULL, key text[] DEFAULT '{}',
                                     mode text DEFAULT 'append', expectations jsonb DEFAULT '[]',
                                     batch_size integer DEFAULT 10000, topic text DEFAULT NULL,
                                     drift_column text DEFAULT NULL) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_pipeline_create';
COMMENT ON FUNCTION duet_pipeline_create(text, regclass, regclass, jsonb, text, text, text[], text, jsonb,
                                         integer, text, text) IS
    'creates a pipeline of the current tenant from source to target (append, upsert or aggregate), run as the caller; returns its id';

CREATE FUNCTION duet_pipeline_alter(name text, changes jsonb) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_pipeline_alter';
COMMENT ON FUNCTION duet_pipeline_alter(text, jsonb) IS
    'changes a pipeline: name, transform, key, mode, expectations, batch_size, topic, drift_column';

CREATE FUNCTION duet_pipeline_pause(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_pipeline_pause';
COMMENT ON FUNCTION duet_pipeline_pause(text) IS 'stops a pipeline''s runs until duet_pipeline_resume()';

CREATE FUNCTION duet_pipeline_resume(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_pipeline_resume';
COMMENT ON FUNCTION duet_pipeline_resume(text) IS
    'resumes a paused pipeline, or one stopped by an error (after the fix), from its position';

CREATE FUNCTION duet_pipeline_drop(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_pipeline_drop';
COMMENT ON FUNCTION duet_pipeline_drop(text) IS
    'removes a pipeline with its expectations, quarantine and history (the target table stays)';

CREATE FUNCTION duet_pipeline_run(name text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_pipeline_run';
COMMENT ON FUNCTION duet_pipeline_run(text) IS
    'runs a pipeline now until it has read every source row past its position (in batches); returns the rows read; a failed run stops the pipeline in state error (a WARNING says why)';

CREATE FUNCTION duet_pipeline_backfill(name text, from_position text, to_position text,
                                       partition text DEFAULT NULL) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_pipeline_backfill';
COMMENT ON FUNCTION duet_pipeline_backfill(text, text, text, text) IS
    're-runs a pipeline over the source rows whose order value lies in [from_position, to_position] (of one partition when given); the position stays; returns the rows read';

CREATE FUNCTION duet_pipeline_replay(name text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_pipeline_replay';
COMMENT ON FUNCTION duet_pipeline_replay(text) IS
    'runs a pipeline''s quarantined rows again (after fixing the data or the expectation): passing rows are written, failing ones quarantined anew; returns the rows read';

------------------------------------------------------------------------------------------------
-- Internal functions (run as the extension owner)
------------------------------------------------------------------------------------------------

-- The column type of col in tbl as SQL text, or an error naming what is missing.
CREATE FUNCTION duet.duet_pipeline_column_type(tbl regclass, col text, what text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typ text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = tbl) THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_table',
            MESSAGE = 'a table of this pipeline was dropped',
            HINT = 'Drop the pipeline with duet_pipeline_drop() and create it again on the new table.';
    END IF;
    SELECT format_type(atttypid, atttypmod) INTO typ FROM pg_attribute
     WHERE attrelid = tbl AND attname = col AND attnum > 0 AND NOT attisdropped;
    IF typ IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_column',
            MESSAGE = format('pipeline %s column "%s" does not exist in %s', what, col, tbl);
    END IF;
    RETURN typ;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_column_type(regclass, text, text) IS
    'internal: the SQL type of a pipeline''s source or target column, or an error';
REVOKE ALL ON FUNCTION duet.duet_pipeline_column_type(regclass, text, text) FROM PUBLIC;

-- A transform entry or predicate as SQL: "=formula" becomes a duet_calc() call over vars.
CREATE FUNCTION duet.duet_pipeline_expr(expr text, vars text, typ text) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN left(expr, 1) = '=' AND vars IS NOT NULL
                THEN format('((@extschema@.duet_calc(%L::pg_catalog.text, %s) OPERATOR(pg_catalog.#>>) ''{}''::pg_catalog.text[])::%s)',
                            substr(expr, 2), vars, typ)
                ELSE format('(%s)', expr) END
$$;
COMMENT ON FUNCTION duet.duet_pipeline_expr(text, text, text) IS
    'internal: a transform expression or expectation predicate as SQL (a "=" Duet formula becomes a duet_calc call)';
REVOKE ALL ON FUNCTION duet.duet_pipeline_expr(text, text, text) FROM PUBLIC;

-- The statement of one run, executed as the pipeline's owner with
--   $1 jsonb position, $2 integer row limit (NULL: none), $3 text lower bound, $4 text upper bound,
--   $5 text partition (backfill), $6 bigint pipeline id (replay), $7 jsonb drift schema.
-- kind: incremental (at most $2 rows past $1, in order), tail (every row past $1: used when a count
-- found no more than $2), count (how many rows are past $1, up to $2 + 1), backfill (order value
-- between $3 and $4, of partition $5 when given) or replay (quarantined rows not yet replayed). It returns one row: rows_in,
-- rows_out, rows_dropped, failures (name -> rows), position (partition -> greatest order value),
-- quarantine (jsonb array of [part, pos, failed, row]), fail (the first row failing a fail
-- expectation, or NULL), replayed (quarantine ids read), published (target rows as jsonb when
-- the pipeline has a topic), drift.
-- Transform expressions and predicates were each checked to parse as one expression
-- (duet_pipeline_check_expr) and are enclosed in parentheses.
CREATE FUNCTION duet.duet_pipeline_sql(p duet.pipelines, kind text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ord_type  text := duet.duet_pipeline_column_type(p.source, p.order_by, 'order_by');
    part_sql  text := CASE WHEN p.partition_by IS NULL THEN '''''::pg_catalog.text'
                           ELSE format('(s.%I)::pg_catalog.text', p.partition_by) END;
    cols      text[] := ARRAY(SELECT jsonb_object_keys(p.transform) ORDER BY 1);
    collist   text := (SELECT string_agg(format('%I', x), ', ' ORDER BY x) FROM unnest(cols) x);
    keycols   text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(p.key) k);
    sets      text := (SELECT string_agg(format('%1$I = EXCLUDED.%1$I', x), ', ')
                         FROM unnest(cols) x WHERE x <> ALL (p.key));
    drops     text[] := ARRAY(SELECT name FROM duet.pipeline_expectations
                               WHERE pipeline_id = p.id AND action = 'drop' ORDER BY name);
    fails     text[] := ARRAY(SELECT name FROM duet.pipeline_expectations
                               WHERE pipeline_id = p.id AND action = 'fail' ORDER BY name);
    formulas  boolean := EXISTS (SELECT FROM jsonb_each_text(p.transform) t WHERE left(t.value, 1) = '=');
    drifting  boolean := p.drift_column IS NOT NULL AND kind <> 'replay';
    exprs     text := '';
    checks    text := '';
    vars      text;
    e         record;
    c         text;
    src       text;
    rows_sql  text;
    past      text;
    write     text;
    quarantine text := 'NULL::pg_catalog.jsonb';
    failure   text := 'NULL::pg_catalog.text';
    published text := 'NULL::pg_catalog.jsonb';
    drift     text := '''{}''::pg_catalog.jsonb';
    dschema   text := 'NULL::pg_catalog.jsonb';
BEGIN
    -- src: the rows of this run, with their partition, order value and what the quarantine and
    -- formulas need (the row itself only for formulas and replays; else its ctid, read again for
    -- the few quarantined rows within the same snapshot).
    IF kind = 'replay' THEN
        src := format('SELECT s AS __duet_src, s.*, q.part AS __duet_part, q.pos::%s AS __duet_ord, q.id AS __duet_qid, '
                      'NULL::pg_catalog.tid AS __duet_ctid '
                      'FROM duet.pipeline_quarantine q CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%s, q.source_row) s '
                      'WHERE q.pipeline_id OPERATOR(pg_catalog.=) $6 AND q.replayed_at IS NULL '
                      'ORDER BY q.id LIMIT $2', ord_type, p.source);
    ELSE
        src := format('SELECT %s s.*, %s AS __duet_part, s.%I AS __duet_ord, NULL::pg_catalog.int8 AS __duet_qid, '
                      's.ctid AS __duet_ctid FROM %s s WHERE ',
                      CASE WHEN formulas THEN 's AS __duet_src,' ELSE '' END, part_sql, p.order_by, p.source);
        IF kind IN ('incremental', 'tail', 'count') THEN
            past := format('(($1 OPERATOR(pg_catalog.->>) %1$s) IS NULL OR s.%2$I OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.->>) %1$s)::%3$s)',
                           part_sql, p.order_by, ord_type);
            src := src || past;
            IF kind = 'count' THEN
                -- How many rows are past the position, counting no further than one batch and one.
                RETURN format('SELECT pg_catalog.count(*) FROM (SELECT FROM %s s WHERE %s LIMIT $2 OPERATOR(pg_catalog.+) 1) c',
                              p.source, past);
            ELSIF kind = 'incremental' THEN
                -- A batch: ordered by the raw columns, each partition's rows are a prefix of its rows.
                -- ('tail': every row past the position fits in the batch, so no order is needed.)
                src := src || format(' ORDER BY s.%1$I%2$s LIMIT $2', p.order_by,
                                     CASE WHEN p.partition_by IS NULL THEN '' ELSE format(', s.%I', p.partition_by) END);
            END IF;
        ELSE
            src := src || format('s.%1$I OPERATOR(pg_catalog.>=) $3::%2$s AND s.%1$I OPERATOR(pg_catalog.<=) $4::%2$s '
                                 'AND ($5 IS NULL OR %3$s OPERATOR(pg_catalog.=) $5)', p.order_by, ord_type, part_sql);
        END IF;
    END IF;

    IF p.mode = 'aggregate' THEN
        -- SQL only (aggregates), checked at creation: no formulas, no expectations. The groups the
        -- new rows touch are recomputed from the whole source.
        rows_sql := 'v AS MATERIALIZED (SELECT src.*, NULL::pg_catalog.text[] AS __duet_failed FROM src), ';
        write := format('g AS (SELECT DISTINCT %s FROM v s), '
                        'w AS (INSERT INTO %s AS t (%s) SELECT %s FROM %s s WHERE (%s) IN (SELECT %s FROM g) GROUP BY %s '
                        'ON CONFLICT (%s) DO %s RETURNING %s), ',
                        (SELECT string_agg(format('%s AS %I', duet.duet_pipeline_expr(p.transform ->> k, NULL, NULL), k), ', ')
                           FROM unnest(p.key) k),
                        p.target, collist,
                        (SELECT string_agg(duet.duet_pipeline_expr(p.transform ->> x, NULL, NULL), ', ' ORDER BY x) FROM unnest(cols) x),
                        p.source,
                        (SELECT string_agg(duet.duet_pipeline_expr(p.transform ->> k, NULL, NULL), ', ') FROM unnest(p.key) k),
                        keycols,
                        (SELECT string_agg(duet.duet_pipeline_expr(p.transform ->> k, NULL, NULL), ', ') FROM unnest(p.key) k),
                        keycols,
                        CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END,
                        CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
    ELSE
        FOREACH c IN ARRAY cols LOOP
            exprs := exprs || format(', %s AS %I',
                                     duet.duet_pipeline_expr(p.transform ->> c, 's.__duet_src',
                                                             duet.duet_pipeline_column_type(p.target, c, 'target')), c);
        END LOOP;
        vars := (SELECT format('pg_catalog.jsonb_build_object(%s)', string_agg(format('%L::pg_catalog.text, x.%I', x, x), ', '))
                   FROM unnest(cols) x);
        FOR e IN SELECT name, predicate FROM duet.pipeline_expectations WHERE pipeline_id = p.id ORDER BY name LOOP
            checks := checks || format(', CASE WHEN %s IS NOT TRUE THEN %L::pg_catalog.text END',
                                       duet.duet_pipeline_expr(e.predicate, vars, 'pg_catalog.bool'), e.name);
        END LOOP;
        -- v: the transformed rows with the names of the expectations each failed; the transform is
        -- a subquery (not a CTE of its own) so that the rows are materialized once.
        rows_sql := format('v AS MATERIALIZED (SELECT x.*, %s AS __duet_failed FROM '
                           '(SELECT s.__duet_part, s.__duet_ord, s.__duet_qid, s.__duet_ctid%s%s%s FROM src s) x), ',
                           CASE WHEN checks = '' THEN 'NULL::pg_catalog.text[]'
                                ELSE format('pg_catalog.array_remove(ARRAY[NULL::pg_catalog.text%s], NULL)', checks) END,
                           CASE WHEN kind = 'replay' THEN ', s.__duet_src' ELSE '' END,
                           CASE WHEN drifting THEN format(', s.%I AS __duet_drift', p.drift_column) ELSE '' END,
                           exprs);
        IF p.mode = 'upsert' THEN
            write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM (SELECT DISTINCT ON (%s) * FROM v %s'
                            'ORDER BY %s, v.__duet_ord DESC, v.__duet_part DESC) d '
                            'ON CONFLICT (%s) DO %s RETURNING %s), ',
                            p.target, collist, collist, keycols,
                            CASE WHEN cardinality(drops) = 0 THEN ''
                                 ELSE format('WHERE NOT v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[] ', drops) END,
                            (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k),
                            keycols, CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END,
                            CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
        ELSE
            write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM v %s'
                            'ORDER BY v.__duet_ord, v.__duet_part RETURNING %s), ',
                            p.target, collist, collist,
                            CASE WHEN cardinality(drops) = 0 THEN ''
                                 ELSE format('WHERE NOT v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[] ', drops) END,
                            CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
        END IF;
        IF cardinality(drops) > 0 THEN
            quarantine := format('(SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(v.__duet_part, (v.__duet_ord)::pg_catalog.text, '
                                 'v.__duet_failed, %s)) FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[])',
                                 CASE WHEN kind = 'replay' THEN 'pg_catalog.to_jsonb(v.__duet_src)'
                                      ELSE format('(SELECT pg_catalog.to_jsonb(b) FROM %s b WHERE b.ctid OPERATOR(pg_catalog.=) v.__duet_ctid)', p.source) END,
                                 drops);
        END IF;
        IF cardinality(fails) > 0 THEN
            failure := format('(SELECT pg_catalog.format(''row at position %%s of partition "%%s" failed %%s'', v.__duet_ord, v.__duet_part, '
                              'pg_catalog.array_to_string(v.__duet_failed, '', '')) '
                              'FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[] ORDER BY v.__duet_ord LIMIT 1)', fails);
        END IF;
    END IF;

    IF p.topic IS NOT NULL THEN
        published := '(SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(w)) FROM w)';
    END IF;
    IF drifting AND p.mode <> 'aggregate' THEN
        -- The reference schema: the stored one ($7), else the key types of the first row read.
        rows_sql := rows_sql || 'ds AS (SELECT COALESCE($7, (SELECT pg_catalog.jsonb_object_agg(e.key, pg_catalog.jsonb_typeof(e.value)) '
                    'FROM (SELECT v.__duet_drift AS d FROM v WHERE pg_catalog.jsonb_typeof(v.__duet_drift) OPERATOR(pg_catalog.=) ''object'' '
                    'ORDER BY v.__duet_ord LIMIT 1) f, pg_catalog.jsonb_each(f.d) e)) AS schema), '
                    'de AS (SELECT e.key, e.value FROM v, pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(v.__duet_drift) '
                    'OPERATOR(pg_catalog.=) ''object'' THEN v.__duet_drift ELSE ''{}''::pg_catalog.jsonb END) e), ';
        dschema := '(SELECT ds.schema FROM ds)';
        drift := 'pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('
            '''new_keys'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT de.key AS k, pg_catalog.count(*) AS n FROM de '
                'WHERE NOT ((SELECT ds.schema FROM ds) OPERATOR(pg_catalog.?) de.key) GROUP BY 1) a), '
            '''type_changes'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT de.key AS k, pg_catalog.count(*) AS n FROM de '
                'WHERE ((SELECT ds.schema FROM ds) OPERATOR(pg_catalog.->>) de.key) OPERATOR(pg_catalog.<>) pg_catalog.jsonb_typeof(de.value) GROUP BY 1) b), '
            '''missing_keys'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT r.key AS k, pg_catalog.count(*) AS n '
                'FROM v, pg_catalog.jsonb_each_text((SELECT ds.schema FROM ds)) r '
                'WHERE pg_catalog.jsonb_typeof(v.__duet_drift) OPERATOR(pg_catalog.=) ''object'' AND NOT (v.__duet_drift OPERATOR(pg_catalog.?) r.key) GROUP BY 1) c)))';
    END IF;

    RETURN format('WITH src AS (%1$s), %2$s%3$s '
                  'SELECT (SELECT pg_catalog.count(*) FROM v), (SELECT pg_catalog.count(*) FROM w), %4$s, '
                  '%5$s, '
                  '(SELECT pg_catalog.jsonb_object_agg(__duet_part, m) FROM (SELECT __duet_part, (pg_catalog.max(__duet_ord))::pg_catalog.text AS m FROM v GROUP BY 1) m), '
                  '%6$s, %7$s, %8$s, %9$s, %10$s, %11$s',
                  src, rows_sql, left(write, -2),
                  CASE WHEN cardinality(drops) = 0 THEN '0::pg_catalog.int8'
                       ELSE format('(SELECT pg_catalog.count(*) FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[])', drops) END,
                  CASE WHEN checks = '' THEN 'NULL::pg_catalog.jsonb'
                       ELSE '(SELECT pg_catalog.jsonb_object_agg(f, n) FROM (SELECT f, pg_catalog.count(*) AS n FROM v, pg_catalog.unnest(v.__duet_failed) f GROUP BY f) c)' END,
                  quarantine, failure,
                  CASE WHEN kind = 'replay' THEN '(SELECT pg_catalog.array_agg(__duet_qid) FROM v)' ELSE 'NULL::pg_catalog.int8[]' END,
                  published, drift, dschema);
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_sql(duet.pipelines, text) IS
    'internal: the statement of one pipeline run (incremental, backfill or replay), run as the pipeline''s owner';
REVOKE ALL ON FUNCTION duet.duet_pipeline_sql(duet.pipelines, text) FROM PUBLIC;


-- A successful run: position, quarantine, replayed entries, outbox rows and history, in the
-- run's transaction.
CREATE FUNCTION duet.duet_pipeline_commit(p_id bigint, p_kind text, p_started timestamptz, p_in bigint,
        p_out bigint, p_dropped bigint, p_failures jsonb, p_position jsonb, p_quarantine jsonb,
        p_replayed bigint[], p_published jsonb, p_drift jsonb, p_schema jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p duet.pipelines;
BEGIN
    UPDATE duet.pipelines
       SET position = CASE WHEN p_kind = 'incremental' THEN position || coalesce(p_position, '{}') ELSE position END,
           drift_schema = coalesce(drift_schema, p_schema),
           last_run_at = clock_timestamp(), last_success_at = clock_timestamp()
     WHERE id = p_id
    RETURNING * INTO p;
    IF p_quarantine IS NOT NULL THEN
        INSERT INTO duet.pipeline_quarantine (pipeline_id, tenant, part, pos, failed, source_row)
        SELECT p.id, p.tenant, q ->> 0, q ->> 1, ARRAY(SELECT jsonb_array_elements_text(q -> 2)), q -> 3
          FROM jsonb_array_elements(p_quarantine) q;
    END IF;
    IF p_replayed IS NOT NULL THEN
        UPDATE duet.pipeline_quarantine SET replayed_at = now() WHERE pipeline_id = p.id AND id = ANY (p_replayed);
    END IF;
    IF p_published IS NOT NULL AND p.topic IS NOT NULL THEN
        INSERT INTO duet.kafka_outbox (topic, key, value, headers)
        SELECT p.topic, NULL, r::text, jsonb_build_object('tenant', p.tenant, 'pipeline', p.name)
          FROM jsonb_array_elements(p_published) r;
    END IF;
    IF p_in > 0 OR p_kind <> 'incremental' THEN
        INSERT INTO duet.pipeline_runs (pipeline_id, tenant, kind, status, started_at, rows_in, rows_out,
                                        rows_dropped, failures, drift, position)
        VALUES (p.id, p.tenant, p_kind, 'ok', p_started, p_in, p_out, p_dropped, coalesce(p_failures, '{}'),
                coalesce(p_drift, '{}'), p.position);
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_commit(bigint, text, timestamptz, bigint, bigint, bigint, jsonb, jsonb,
                                              jsonb, bigint[], jsonb, jsonb, jsonb) IS
    'internal: records a successful pipeline run in its transaction';
REVOKE ALL ON FUNCTION duet.duet_pipeline_commit(bigint, text, timestamptz, bigint, bigint, bigint, jsonb, jsonb,
                                                 jsonb, bigint[], jsonb, jsonb, jsonb) FROM PUBLIC;

-- A failed run (rolled back): the pipeline stops in state error with the reason.
CREATE FUNCTION duet.duet_pipeline_failed(p_id bigint, p_kind text, p_started timestamptz, p_error text)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p duet.pipelines;
BEGIN
    UPDATE duet.pipelines SET state = 'error', last_error = p_error, last_run_at = clock_timestamp()
     WHERE id = p_id
    RETURNING * INTO p;
    INSERT INTO duet.pipeline_runs (pipeline_id, tenant, kind, status, started_at, position, error)
    VALUES (p.id, p.tenant, p_kind, 'error', p_started, p.position, p_error);
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_failed(bigint, text, timestamptz, text) IS
    'internal: records a failed pipeline run and stops the pipeline';
REVOKE ALL ON FUNCTION duet.duet_pipeline_failed(bigint, text, timestamptz, text) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- C functions
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet.duet_pipeline_check_expr(expr text, what text) RETURNS void
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'duet_pipeline_check_expr';
COMMENT ON FUNCTION duet.duet_pipeline_check_expr(text, text) IS
    'internal: raises unless expr is one SQL expression (or "=" and a valid Duet formula)';
REVOKE ALL ON FUNCTION duet.duet_pipeline_check_expr(text, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_validate(caller oid, sql text) RETURNS void
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'duet_pipeline_validate';
COMMENT ON FUNCTION duet.duet_pipeline_validate(oid, text) IS
    'internal: plans a pipeline run''s statement as the caller (EXPLAIN), raising what does not resolve';
REVOKE ALL ON FUNCTION duet.duet_pipeline_validate(oid, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_wake() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_pipeline_wake';
COMMENT ON FUNCTION duet.duet_pipeline_wake() IS
    'internal: statement trigger on pipeline sources; wakes the pipeline worker when the transaction commits';
REVOKE ALL ON FUNCTION duet.duet_pipeline_wake() FROM PUBLIC;
-- Metrics layer (issue 13): metrics in every formula, versioned and tenant-aware ------------------
-- (pg_duet/sql/60_metrics.sql; docs/metrics.md)

-- Global metrics and tenant overrides: (name, tenant) is the key. Columns added without a default,
-- then filled (no "missing value" for old rows, as a fresh install stores them).
ALTER TABLE duet.metrics DROP CONSTRAINT metrics_pkey;
ALTER TABLE duet.metrics ADD COLUMN tenant text REFERENCES duet.tenants ON UPDATE CASCADE ON DELETE CASCADE;
ALTER TABLE duet.metrics ADD COLUMN version bigint;
UPDATE duet.metrics SET version = 1;
ALTER TABLE duet.metrics ALTER COLUMN version SET DEFAULT 1;
ALTER TABLE duet.metrics ALTER COLUMN version SET NOT NULL;
ALTER TABLE duet.metrics ADD CONSTRAINT metrics_version_positive CHECK (version > 0);
ALTER TABLE duet.metrics ADD COLUMN unit text CONSTRAINT metrics_unit CHECK (unit IN ('ratio', 'percent', 'currency', 'integer'));
ALTER TABLE duet.metrics ADD COLUMN owner text;
ALTER TABLE duet.metrics ADD COLUMN depends_on text[];
UPDATE duet.metrics SET depends_on = '{}';
ALTER TABLE duet.metrics ALTER COLUMN depends_on SET DEFAULT '{}';
ALTER TABLE duet.metrics ALTER COLUMN depends_on SET NOT NULL;
ALTER TABLE duet.metrics ADD CONSTRAINT metrics_name_tenant UNIQUE NULLS NOT DISTINCT (name, tenant);
COMMENT ON TABLE duet.metrics IS
    'named Duet formulas: global (tenant NULL) and tenant overrides, callable in every formula and as ClickHouse functions; written by duet_metric_define/duet_metric_set';
DROP POLICY metrics_global_read ON duet.metrics;
CREATE POLICY metrics_tenant_read ON duet.metrics FOR SELECT
    USING (tenant IS NULL OR tenant = @extschema@.duet_current_tenant());
CREATE TRIGGER duet_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duet.metrics
    FOR EACH STATEMENT EXECUTE FUNCTION duet_changed_trigger();

-- Append-only: one row per change of a metric of a scope (global or one tenant).
CREATE TABLE duet.metrics_history (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL,
    tenant         text REFERENCES duet.tenants ON UPDATE CASCADE ON DELETE CASCADE,
    version        bigint NOT NULL,
    operation      text NOT NULL CHECK (operation IN ('define', 'drop', 'rollback')),
    formula        text,            -- the definition from this version on; NULL after a drop
    description    text,
    arguments      text[],
    argument_types text[],
    return_type    text,
    unit           text,
    owner          text,
    depends_on     text[],
    rolled_back_to bigint,
    reason         text,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    changed_by     name NOT NULL,
    CONSTRAINT metrics_history_version UNIQUE NULLS NOT DISTINCT (name, tenant, version)
);
COMMENT ON TABLE duet.metrics_history IS
    'every change of every metric: who changed which metric of which scope, when, why, and the definition from then on (readable per tenant)';
SELECT pg_catalog.pg_extension_config_dump('duet.metrics_history', '');
SELECT pg_catalog.pg_extension_config_dump('duet.metrics_history_id_seq', '');
COMMENT ON SEQUENCE duet.metrics_history_id_seq IS 'ids of duet.metrics_history';
REVOKE ALL ON duet.metrics_history FROM PUBLIC;
GRANT SELECT ON duet.metrics_history TO PUBLIC;
ALTER TABLE duet.metrics_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.metrics_history FORCE ROW LEVEL SECURITY;
CREATE POLICY metrics_history_tenant_read ON duet.metrics_history FOR SELECT
    USING (tenant IS NULL OR tenant = @extschema@.duet_current_tenant());

-- The signature compiles calls of other metrics: it reads the table.
ALTER FUNCTION duet_metric_signature(text, text[], text[]) STABLE;
COMMENT ON FUNCTION duet_metric_signature(text, text[], text[]) IS
    'compiles a metric formula (calling the metrics the caller sees) and returns its ClickHouse signature: arguments, their types, result type';

-- The old write functions are replaced by versioned, tenant-aware ones (C: metrics_write.c).
DROP FUNCTION duet_metric_define(text, text, text, jsonb);
DROP FUNCTION duet_metric_drop(text);

-- Internal: stores a change already compiled and authorized by metrics_write.c (as the caller),
-- run as the owner. Checks what needs every scope: dependents of a drop or a signature change,
-- and that a tenant override keeps the global metric's signature.
CREATE FUNCTION duet.duet_metric_apply(p_op text, p_tenant text, p_name text, p_formula text, p_description text,
                                       p_arguments text[], p_argument_types text[], p_return_type text,
                                       p_depends_on text[], p_unit text, p_owner text, p_reason text,
                                       p_rolled_back_to bigint, p_actor text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur          duet.metrics;
    glob         duet.metrics;
    last_version bigint;
    new_version  bigint;
    users        text;
    scope        text := CASE WHEN p_tenant IS NULL THEN 'global metric' ELSE format('metric of tenant "%s"', p_tenant) END;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('duet.metrics'));
    SELECT * INTO cur FROM duet.metrics m WHERE m.name = p_name AND (m.tenant = p_tenant OR (p_tenant IS NULL AND m.tenant IS NULL)) FOR UPDATE;
    SELECT max(h.version) INTO last_version FROM duet.metrics_history h
     WHERE h.name = p_name AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL));
    new_version := greatest(coalesce(cur.version, 0), coalesce(last_version, 0)) + 1;

    -- Who would see a different metric: metrics calling this one in the scopes that resolve the
    -- name to this row (for a global row: every tenant without an override of its own).
    SELECT string_agg(CASE WHEN d.tenant IS NULL THEN d.name ELSE d.name || ' (tenant ' || d.tenant || ')' END,
                      ', ' ORDER BY d.tenant NULLS FIRST, d.name)
      INTO users
      FROM duet.metrics d
     WHERE p_name = ANY (d.depends_on)
       AND NOT (d.name = p_name AND (d.tenant = p_tenant OR (p_tenant IS NULL AND d.tenant IS NULL)))
       AND ((d.tenant = p_tenant OR (p_tenant IS NULL AND d.tenant IS NULL))
            OR (p_tenant IS NULL AND NOT EXISTS (SELECT FROM duet.metrics o
                                                  WHERE o.name = p_name AND o.tenant = d.tenant)));

    IF p_op = 'drop' THEN
        IF cur.name IS NULL THEN
            RETURN 0;
        END IF;
        IF users IS NOT NULL AND (p_tenant IS NULL OR NOT EXISTS (SELECT FROM duet.metrics g
                                                                  WHERE g.name = p_name AND g.tenant IS NULL)) THEN
            RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
                MESSAGE = format('cannot drop %s "%s": other metrics use it', scope, p_name),
                DETAIL = 'Used by: ' || users || '.',
                HINT = 'Drop or redefine those metrics first.';
        END IF;
        DELETE FROM duet.metrics m WHERE m.name = p_name AND (m.tenant = p_tenant OR (p_tenant IS NULL AND m.tenant IS NULL));
    ELSE
        IF cur.name IS NOT NULL AND users IS NOT NULL
           AND (cur.arguments, cur.argument_types, cur.return_type) IS DISTINCT FROM (p_arguments, p_argument_types, p_return_type) THEN
            RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
                MESSAGE = format('cannot change the signature of %s "%s": other metrics use it', scope, p_name),
                DETAIL = format('It is %s(%s) returning %s; the new definition is %s(%s) returning %s. Used by: %s.',
                                p_name, array_to_string(cur.arguments, ', '), cur.return_type,
                                p_name, array_to_string(p_arguments, ', '), p_return_type, users),
                HINT = 'Keep the parameters, their types and the result type, or change those metrics first.';
        END IF;
        IF p_tenant IS NULL AND cur.name IS NOT NULL
           AND (cur.arguments, cur.argument_types, cur.return_type) IS DISTINCT FROM (p_arguments, p_argument_types, p_return_type)
           AND EXISTS (SELECT FROM duet.metrics o WHERE o.name = p_name AND o.tenant IS NOT NULL) THEN
            RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
                MESSAGE = format('cannot change the signature of global metric "%s": tenants override it', p_name),
                DETAIL = 'Overridden by: ' || (SELECT string_agg(o.tenant, ', ' ORDER BY o.tenant) FROM duet.metrics o
                                                WHERE o.name = p_name AND o.tenant IS NOT NULL) || '.',
                HINT = 'An override has the global metric''s signature; keep it, or have the tenants drop their overrides first.';
        END IF;
        IF p_tenant IS NOT NULL THEN
            SELECT * INTO glob FROM duet.metrics g WHERE g.name = p_name AND g.tenant IS NULL;
            IF glob.name IS NOT NULL
               AND (glob.arguments, glob.argument_types, glob.return_type) IS DISTINCT FROM (p_arguments, p_argument_types, p_return_type) THEN
                RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
                    MESSAGE = format('an override of global metric "%s" must keep its signature', p_name),
                    DETAIL = format('The global metric is %s(%s) returning %s; the override is %s(%s) returning %s.',
                                    p_name, array_to_string(glob.arguments, ', '), glob.return_type,
                                    p_name, array_to_string(p_arguments, ', '), p_return_type),
                    HINT = 'Metrics of every tenant call it with those arguments: use the same parameters and result type.';
            END IF;
        END IF;
        INSERT INTO duet.metrics AS m (name, tenant, formula, description, arguments, argument_types, return_type,
                                       depends_on, unit, owner, version, defined_by, defined_at)
             VALUES (p_name, p_tenant, p_formula, p_description, p_arguments, p_argument_types, p_return_type,
                     p_depends_on, p_unit, p_owner, new_version, p_actor, now())
        ON CONFLICT ON CONSTRAINT metrics_name_tenant DO UPDATE
           SET formula = excluded.formula, description = excluded.description, arguments = excluded.arguments,
               argument_types = excluded.argument_types, return_type = excluded.return_type,
               depends_on = excluded.depends_on, unit = excluded.unit, owner = excluded.owner,
               version = excluded.version, defined_by = excluded.defined_by, defined_at = excluded.defined_at;
    END IF;
    INSERT INTO duet.metrics_history (name, tenant, version, operation, formula, description, arguments, argument_types,
                                      return_type, unit, owner, depends_on, rolled_back_to, reason, changed_at, changed_by)
         VALUES (p_name, p_tenant, new_version, p_op,
                 CASE WHEN p_op <> 'drop' THEN p_formula END, CASE WHEN p_op <> 'drop' THEN p_description END,
                 CASE WHEN p_op <> 'drop' THEN p_arguments END, CASE WHEN p_op <> 'drop' THEN p_argument_types END,
                 CASE WHEN p_op <> 'drop' THEN p_return_type END, CASE WHEN p_op <> 'drop' THEN p_unit END,
                 CASE WHEN p_op <> 'drop' THEN p_owner END, CASE WHEN p_op <> 'drop' THEN p_depends_on END,
                 p_rolled_back_to, p_reason, now(), p_actor);
    RETURN new_version;
END $$;
COMMENT ON FUNCTION duet.duet_metric_apply(text, text, text, text, text, text[], text[], text, text[], text, text, text, bigint, text) IS
    'internal: stores a metric change already compiled and authorized by the calling duet_metric_* function';
REVOKE ALL ON FUNCTION duet.duet_metric_apply(text, text, text, text, text, text[], text[], text, text[], text, text, text, bigint, text) FROM PUBLIC;

-- The API (C: metrics_write.c). Global metrics are the admin's; a tenant's members change the
-- tenant's overrides, the tenant being their verified duet_current_tenant().
CREATE FUNCTION duet_metric_define(name text, formula text, description text DEFAULT NULL,
                                   argument_types jsonb DEFAULT NULL, unit text DEFAULT NULL,
                                   owner text DEFAULT NULL, reason text DEFAULT NULL)
    RETURNS duet.metrics
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metric_define';
COMMENT ON FUNCTION duet_metric_define(text, text, text, jsonb, text, text, text) IS
    'defines or changes a global metric as a new version after compiling it (composition, types, cycles); argument_types maps variables to ClickHouse types (admin)';
REVOKE ALL ON FUNCTION duet_metric_define(text, text, text, jsonb, text, text, text) FROM PUBLIC;

CREATE FUNCTION duet_metric_set(name text, formula text, description text DEFAULT NULL,
                                argument_types jsonb DEFAULT NULL, unit text DEFAULT NULL,
                                owner text DEFAULT NULL, reason text DEFAULT NULL)
    RETURNS duet.metrics
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metric_set';
COMMENT ON FUNCTION duet_metric_set(text, text, text, jsonb, text, text, text) IS
    'defines or changes the current tenant''s metric (an override of a global one keeps its signature), as a new version';

CREATE FUNCTION duet_metric_drop(name text, reason text DEFAULT NULL) RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metric_drop';
COMMENT ON FUNCTION duet_metric_drop(text, text) IS
    'drops a global metric; refused while other metrics use it; false when it did not exist (admin)';
REVOKE ALL ON FUNCTION duet_metric_drop(text, text) FROM PUBLIC;

CREATE FUNCTION duet_metric_unset(name text, reason text DEFAULT NULL) RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metric_unset';
COMMENT ON FUNCTION duet_metric_unset(text, text) IS
    'drops the current tenant''s metric (the global one, if any, applies again); false when it had none';

CREATE FUNCTION duet_metric_rollback(name text, version bigint, reason text DEFAULT NULL) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metric_rollback';
COMMENT ON FUNCTION duet_metric_rollback(text, bigint, text) IS
    'restores the current tenant''s metric as of an earlier version (compiled and checked again), as a new version';

CREATE FUNCTION duet_metric_rollback_default(name text, version bigint, reason text DEFAULT NULL) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metric_rollback_default';
COMMENT ON FUNCTION duet_metric_rollback_default(text, bigint, text) IS
    'restores a global metric as of an earlier version, as a new version (admin)';
REVOKE ALL ON FUNCTION duet_metric_rollback_default(text, bigint, text) FROM PUBLIC;

-- Reads run as the caller: row-level security scopes them to the global metrics and its tenant's.
CREATE FUNCTION duet_metric_history(name text)
    RETURNS TABLE (version bigint, tenant text, operation text, formula text, description text,
                   arguments text[], return_type text, unit text, rolled_back_to bigint, reason text,
                   changed_at timestamptz, changed_by name)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT h.version, h.tenant, h.operation, h.formula, h.description, h.arguments, h.return_type, h.unit,
           h.rolled_back_to, h.reason, h.changed_at, h.changed_by
      FROM duet.metrics_history h
     WHERE h.name = duet_metric_history.name
     ORDER BY h.tenant NULLS FIRST, h.version;
END;
COMMENT ON FUNCTION duet_metric_history(text) IS
    'the versions of a metric the caller may see (global and its tenant''s), oldest first';

CREATE FUNCTION duet_metric_at(name text, at timestamptz)
    RETURNS TABLE (name text, tenant text, version bigint, formula text, description text, arguments text[],
                   argument_types text[], return_type text, unit text, owner text, changed_at timestamptz,
                   changed_by name)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    -- the latest change at or before "at" per scope; the tenant's wins unless it was a drop
    SELECT s.name, s.tenant, s.version, s.formula, s.description, s.arguments, s.argument_types, s.return_type,
           s.unit, s.owner, s.changed_at, s.changed_by
      FROM (SELECT DISTINCT ON (h.tenant) h.*
              FROM duet.metrics_history h
             WHERE h.name = duet_metric_at.name AND h.changed_at <= duet_metric_at.at
               AND (h.tenant IS NULL OR h.tenant = @extschema@.duet_current_tenant())
             ORDER BY h.tenant, h.version DESC) s
     WHERE s.operation <> 'drop'
     ORDER BY s.tenant NULLS LAST
     LIMIT 1;
END;
COMMENT ON FUNCTION duet_metric_at(text, timestamptz) IS
    'the definition of a metric the current tenant used at a point in time (its override, else the global metric); no row if none existed';

CREATE VIEW duet.metrics_catalog WITH (security_invoker = true) AS
    SELECT DISTINCT ON (m.name)
           m.name, m.description, m.unit, m.owner,
           CASE WHEN m.tenant IS NULL THEN 'global' ELSE 'tenant' END AS source,
           m.tenant, m.version, m.formula, m.arguments, m.argument_types, m.return_type, m.depends_on,
           m.defined_by, m.defined_at
      FROM duet.metrics m
     WHERE m.tenant IS NULL OR m.tenant = @extschema@.duet_current_tenant()
     ORDER BY m.name, m.tenant NULLS LAST;
COMMENT ON VIEW duet.metrics_catalog IS
    'the metrics the current tenant uses (its overrides, else the global ones) with display metadata, for dashboards';
GRANT SELECT ON duet.metrics_catalog TO PUBLIC;

CREATE OR REPLACE FUNCTION duet_clickhouse_config(format text DEFAULT 'RowBinary', pool boolean DEFAULT true,
                                       OUT xml text, OUT definitions text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    IF format IS NULL OR format NOT IN ('TabSeparated', 'CSV', 'JSONEachRow', 'RowBinary') THEN
        RAISE EXCEPTION 'unsupported ClickHouse format "%"', format
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use TabSeparated, CSV, JSONEachRow or RowBinary.';
    END IF;
    -- XML escaping, and %XX escaping of argument names for duet_udf's --arguments syntax
    -- the metrics the caller uses: its tenant's over the global ones (RLS shows no other tenant's)
    WITH m AS (
        SELECT DISTINCT ON (mt.name) mt.*,
               -- inside an XML comment only "--" is special
               regexp_replace(replace(coalesce(mt.description, ''), '--', '- -'), '-$', '- ') AS comment_text
          FROM duet.metrics mt
         WHERE mt.tenant IS NULL OR mt.tenant = @extschema@.duet_current_tenant()
         ORDER BY mt.name, mt.tenant NULLS LAST
    ), args AS (
        SELECT m.name, a.ord,
               '        <argument><type>' || a.typ || '</type><name>'
               || replace(replace(replace(a.arg, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')
               || '</name></argument>' AS xml_arg,
               (SELECT string_agg(CASE WHEN c.ch ~ '^[A-Za-z0-9_]$' THEN c.ch
                                       ELSE upper(regexp_replace(encode(convert_to(c.ch, 'UTF8'), 'hex'), '(..)', '%\1', 'g')) END,
                                  '' ORDER BY c.i)
                  FROM regexp_split_to_table(a.arg, '') WITH ORDINALITY c(ch, i)) || ':' || a.typ AS spec
          FROM m, unnest(m.arguments, m.argument_types) WITH ORDINALITY a(arg, typ, ord)
    )
    SELECT '<functions>' || E'\n'
           || coalesce(string_agg(
                '    <!-- pg_duet metric ' || m.name || CASE WHEN m.comment_text <> '' THEN ': ' || m.comment_text ELSE '' END || ' -->' || E'\n'
                || '    <function>' || E'\n'
                || '        <type>' || CASE WHEN pool THEN 'executable_pool' ELSE 'executable' END || '</type>' || E'\n'
                || '        <name>' || m.name || '</name>' || E'\n'
                || '        <return_type>' || m.return_type || '</return_type>' || E'\n'
                || coalesce((SELECT string_agg(a.xml_arg, E'\n' ORDER BY a.ord) FROM args a WHERE a.name = m.name) || E'\n', '')
                || '        <format>' || format || '</format>' || E'\n'
                || '        <command>duet_udf --metric ' || m.name || ' --format ' || format
                || CASE WHEN pool THEN ' --chunk-header' ELSE '' END || '</command>' || E'\n'
                || CASE WHEN pool THEN '        <send_chunk_header>true</send_chunk_header>' || E'\n' ELSE '' END
                || '        <deterministic>true</deterministic>' || E'\n'
                || '    </function>' || E'\n', '' ORDER BY m.name), '')
           || '</functions>' || E'\n',
           '# duet_udf metric definitions, generated by pg_duet duet_clickhouse_config()' || E'\n'
           || '# name<TAB>return type<TAB>arguments<TAB>formula' || E'\n'
           || coalesce(string_agg(m.name || E'\t' || m.return_type || E'\t'
                || coalesce((SELECT string_agg(a.spec, ',' ORDER BY a.ord) FROM args a WHERE a.name = m.name), '')
                || E'\t' || replace(replace(replace(m.formula, '\', '\\'), E'\n', '\n'), E'\t', '\t') || E'\n',
                '' ORDER BY m.name), '')
      INTO xml, definitions
      FROM m;
END
$$;
COMMENT ON FUNCTION duet_clickhouse_config(text, boolean) IS
    'ClickHouse <functions> XML declaring one executable UDF per metric the caller uses, and the duet_udf definitions file content';

-- Metrics layer (issue 13): versions, tenants, history, catalog ----------------------------------
COMMENT ON COLUMN duet.metrics.tenant IS 'the tenant whose metric this is (an override of the global metric of that name, or its own); NULL for a global metric';
COMMENT ON COLUMN duet.metrics.version IS 'version of this metric in its scope, increasing with every change (duet.metrics_history)';
COMMENT ON COLUMN duet.metrics.unit IS 'display unit: ratio, percent, currency or integer; NULL when unspecified';
COMMENT ON COLUMN duet.metrics.owner IS 'who answers for the metric (a team or a person), for catalogs; free text';
COMMENT ON COLUMN duet.metrics.depends_on IS 'the metrics the formula calls directly';
COMMENT ON COLUMN duet.metrics_history.id IS 'history entry id';
COMMENT ON COLUMN duet.metrics_history.name IS 'metric name';
COMMENT ON COLUMN duet.metrics_history.tenant IS 'the metric''s tenant; NULL for a global metric';
COMMENT ON COLUMN duet.metrics_history.version IS 'the version this change made';
COMMENT ON COLUMN duet.metrics_history.operation IS 'define, drop, or rollback (to rolled_back_to)';
COMMENT ON COLUMN duet.metrics_history.formula IS 'the formula from this version on; NULL after a drop';
COMMENT ON COLUMN duet.metrics_history.description IS 'the description from this version on';
COMMENT ON COLUMN duet.metrics_history.arguments IS 'the parameters from this version on';
COMMENT ON COLUMN duet.metrics_history.argument_types IS 'their ClickHouse types';
COMMENT ON COLUMN duet.metrics_history.return_type IS 'the ClickHouse result type';
COMMENT ON COLUMN duet.metrics_history.unit IS 'the display unit';
COMMENT ON COLUMN duet.metrics_history.owner IS 'the owner label';
COMMENT ON COLUMN duet.metrics_history.depends_on IS 'the metrics the formula called';
COMMENT ON COLUMN duet.metrics_history.rolled_back_to IS 'for a rollback: the version restored';
COMMENT ON COLUMN duet.metrics_history.reason IS 'why the change was made, as its author gave it';
COMMENT ON COLUMN duet.metrics_history.changed_at IS 'when';
COMMENT ON COLUMN duet.metrics_history.changed_by IS 'the role that made the change';
COMMENT ON COLUMN duet.metrics_catalog.name IS 'metric name: call it as name(arguments) in any formula';
COMMENT ON COLUMN duet.metrics_catalog.description IS 'what the metric measures';
COMMENT ON COLUMN duet.metrics_catalog.unit IS 'display unit: ratio, percent, currency or integer';
COMMENT ON COLUMN duet.metrics_catalog.owner IS 'who answers for the metric';
COMMENT ON COLUMN duet.metrics_catalog.source IS 'global, or tenant (the current tenant''s own or override)';
COMMENT ON COLUMN duet.metrics_catalog.tenant IS 'the tenant of a tenant metric; NULL for a global one';
COMMENT ON COLUMN duet.metrics_catalog.version IS 'current version in its scope';
COMMENT ON COLUMN duet.metrics_catalog.formula IS 'the Duet formula';
COMMENT ON COLUMN duet.metrics_catalog.arguments IS 'parameters, in call order';
COMMENT ON COLUMN duet.metrics_catalog.argument_types IS 'their ClickHouse types (Nullable(Float64) for numbers)';
COMMENT ON COLUMN duet.metrics_catalog.return_type IS 'ClickHouse result type';
COMMENT ON COLUMN duet.metrics_catalog.depends_on IS 'the metrics it calls';
COMMENT ON COLUMN duet.metrics_catalog.defined_by IS 'who made the current version';
COMMENT ON COLUMN duet.metrics_catalog.defined_at IS 'when the current version was made';
COMMENT ON COLUMN duet.metrics.defined_by IS 'the role that made the current version';
COMMENT ON COLUMN duet.metrics.defined_at IS 'when the current version was made';
-- Packaging (issue 18): retention settings in minutes (GUC_UNIT_MIN) -------------------------------

CREATE OR REPLACE FUNCTION duet_rules_prune() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    retention int;
    n bigint;
BEGIN
    PERFORM @extschema@.duet_version();     -- loads the library, which defines the setting
    -- minutes (GUC_UNIT_MIN): pg_settings gives the number, current_setting() the text '90d'
    SELECT s.setting::int INTO retention FROM pg_catalog.pg_settings s
     WHERE s.name OPERATOR(pg_catalog.=) 'duet.rules_history_retention';
    IF coalesce(retention, 0) = 0 THEN
        RETURN 0;
    END IF;
    DELETE FROM duet.alert_transitions t WHERE t.at < now() - make_interval(mins => retention);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION duet_rules_prune() IS
    'deletes alert history (duet.alert_transitions) older than duet.rules_history_retention (admin); returns the count';

-- Packaging (issue 18): Kafka workers woken at commit -----------------------------------------------

-- Workers woken at commit instead of polling (kafka_wake.c): a committed change of the consumers
-- wakes this database's supervisor, a committed outbox row its publisher.
CREATE FUNCTION duet_kafka_changed_trigger() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_kafka_changed_trigger';
COMMENT ON FUNCTION duet_kafka_changed_trigger() IS
    'statement trigger on duet.kafka_consumers (''consumers'') and duet.kafka_outbox (''outbox''): wakes this database''s Kafka supervisor or outbox publisher when the transaction commits';
REVOKE ALL ON FUNCTION duet_kafka_changed_trigger() FROM PUBLIC;
CREATE TRIGGER duet_kafka_wake AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duet.kafka_consumers
    FOR EACH STATEMENT EXECUTE FUNCTION duet_kafka_changed_trigger('consumers');
CREATE TRIGGER duet_kafka_wake AFTER INSERT ON duet.kafka_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION duet_kafka_changed_trigger('outbox');
-- The Kafka ingestion pool (issue 12, "consumers are not processes") ---------------------------

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

CREATE OR REPLACE VIEW duet.kafka_status WITH (security_barrier = true) AS
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
                                        'high_watermark', ps.high_watermark, 'lag', ps.lag)
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
COMMENT ON COLUMN duet.kafka_status.parallelism IS 'partition groups configured (each read by one pool worker at a time)';
COMMENT ON COLUMN duet.kafka_status.workers IS 'partition groups served now by the pool workers';
COMMENT ON COLUMN duet.kafka_status.pool_workers IS 'indexes of the pool workers (duet.kafka_pool) serving its partition groups now';
COMMENT ON COLUMN duet.kafka_pool.pool_worker IS 'index of the pool worker in this database''s pool, from 0';
COMMENT ON COLUMN duet.kafka_pool.pid IS 'process id of the pool worker; NULL when it is not running';
COMMENT ON COLUMN duet.kafka_pool.started_at IS 'when the pool worker started';
COMMENT ON COLUMN duet.kafka_pool.groups IS 'consumer partition groups the pool worker serves now';
COMMENT ON COLUMN duet.kafka_pool.clients IS 'librdkafka clients (rd_kafka_t) the pool worker runs now: its consumers with the same owner, brokers and properties share two (one fetches, one looks up metadata and offsets) and one fetch of a topic they read at the same position; a consumer behind the others reads in two more until it catches up; a consumer group member has one of its own';
COMMENT ON COLUMN duet.kafka_pool.problem IS 'why the pool worker is not running (no background worker slot: raise max_worker_processes); NULL when it runs';

-- duet_doctor(): the pool's workers, not one per partition group, in the worker slots needed
CREATE OR REPLACE FUNCTION duet_doctor()
    RETURNS TABLE (check_name text, status text, detail text, hint text)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w        record;
    r        record;
    ndb      int;
    needed   int;
    max_w    int := current_setting('max_worker_processes')::int;
    n        bigint;
    oldest   interval;
BEGIN
    -- Runs as the caller: it reports what the caller may see (rules under row-level security,
    -- Kafka for duet_kafka_admin and pg_monitor).
    SELECT * INTO w FROM @extschema@.duet_workers_status();
    check_name := 'background workers';
    IF w.problem IS NULL THEN
        status := 'ok'; detail := 'pg_duet is preloaded and this database is in duet.databases'; hint := NULL;
    ELSE
        status := 'error'; detail := w.problem; hint := w.hint;
    END IF;
    RETURN NEXT;

    -- Two launchers, three workers per served database, and here the Kafka pool: one worker per
    -- consumer partition group, at most duet.kafka_pool_size.
    ndb := array_length(string_to_array(current_setting('duet.databases'), ','), 1);
    needed := 2 + 3 * coalesce(ndb, 0);
    IF has_table_privilege('duet.kafka_status', 'SELECT') THEN
        needed := needed + LEAST(coalesce(current_setting('duet.kafka_pool_size', true), '2')::int,
                                 coalesce((SELECT sum(s.parallelism) FROM duet.kafka_status s
                                            WHERE s.state <> 'stopped'), 0))::int;
    END IF;
    check_name := 'worker slots';
    IF needed > max_w THEN
        status := 'error';
        detail := format('pg_duet needs at least %s background workers; max_worker_processes is %s', needed, max_w);
        hint := format('Raise max_worker_processes to %s or more (it also bounds parallel query workers) and restart.',
                       needed + current_setting('max_parallel_workers')::int);
    ELSE
        status := 'ok';
        detail := format('pg_duet needs at least %s of max_worker_processes = %s', needed, max_w);
        hint := NULL;
    END IF;
    RETURN NEXT;

    check_name := 'kafka consumers';
    IF NOT has_table_privilege('duet.kafka_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading consumer state needs duet_kafka_admin or pg_monitor'; hint := NULL;
        RETURN NEXT;
    ELSE
        n := 0;
        FOR r IN SELECT s.name, s.state, s.last_error, s.reason FROM duet.kafka_status s
                  WHERE s.state NOT IN ('running', 'stopped', 'idle') ORDER BY s.name LOOP
            n := n + 1;
            status := CASE WHEN r.state = 'starting' THEN 'warning' ELSE 'error' END;
            detail := format('consumer %s is %s%s', r.name, r.state, coalesce(': ' || coalesce(r.reason, r.last_error), ''));
            hint := CASE WHEN r.state = 'not running' THEN w.hint
                         WHEN r.state = 'broker unreachable' THEN 'Check the brokers and the consumer''s security properties; it retries on its own.'
                         WHEN r.state = 'starting' THEN 'A consumer that stays starting means no worker slot was free: see "worker slots".'
                         ELSE 'See duet.kafka_dead_letters and the server log; duet_kafka_stop/start restarts it.' END;
            RETURN NEXT;
        END LOOP;
        IF n = 0 THEN
            status := 'ok'; detail := 'every enabled consumer is running'; hint := NULL;
            RETURN NEXT;
        END IF;
    END IF;

    check_name := 'rules';
    n := 0;
    FOR r IN SELECT ru.tenant, ru.name, a.error, count(*) AS instances
               FROM duet.alerts a JOIN duet.rules ru ON ru.id OPERATOR(pg_catalog.=) a.rule_id
              WHERE a.state = 'error' AND ru.enabled
              GROUP BY ru.tenant, ru.name, a.error ORDER BY ru.tenant, ru.name LOOP
        n := n + 1;
        status := 'warning';
        detail := format('rule %s of tenant %s fails: %s', r.name, r.tenant, r.error);
        hint := 'Fix the rule with duet_rule_alter (duet_rule_test tries it on a row); duet.alert_history keeps the errors.';
        RETURN NEXT;
    END LOOP;
    IF (SELECT count(*) FROM duet.rules ru WHERE ru.enabled AND ru.query IS NOT NULL) > 0 AND w.problem IS NOT NULL THEN
        n := n + 1;
        status := 'error'; detail := 'query rules are never evaluated: ' || w.problem; hint := w.hint;
        RETURN NEXT;
    END IF;
    IF n = 0 THEN
        status := 'ok'; detail := 'no enabled rule is failing'; hint := NULL;
        RETURN NEXT;
    END IF;

    check_name := 'outbox';
    IF NOT has_table_privilege('duet.kafka_outbox_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the outbox state needs duet_kafka_admin or pg_monitor'; hint := NULL;
    ELSE
        SELECT s.pending, now() - s.oldest_pending_at INTO n, oldest FROM duet.kafka_outbox_status s;
        IF n > 0 AND oldest > interval '1 minute' THEN
            status := 'error';
            detail := format('%s events wait to be published, the oldest for %s', n, date_trunc('second', oldest));
            hint := coalesce(w.hint, 'Check the brokers (duet.kafka_status) and the server log of the outbox worker.');
        ELSE
            status := 'ok'; detail := 'no event waits longer than a minute'; hint := NULL;
        END IF;
    END IF;
    RETURN NEXT;

    -- Reachability of the LLM endpoints and Kafka brokers: one TCP connection each, all at once,
    -- at most two seconds in all (C: pg_duet/doctor.c).
    RETURN QUERY SELECT x.check_name, x.status, x.detail, x.hint FROM @extschema@.duet_doctor_reachability() x;
END $$;
COMMENT ON FUNCTION duet_doctor() IS
    'lists what keeps pg_duet from working in this database (preload, duet.databases, worker slots, consumers, failing rules, stuck outbox, unreachable LLM endpoints and Kafka brokers), each with its fix';
-- Kafka batch path (issue 12: upsert mode, duet_kafka_alter, duet_kafka_replay, masked config) ---

ALTER TABLE duet.kafka_consumers ADD COLUMN mode text NOT NULL DEFAULT 'append' CHECK (mode IN ('append', 'upsert'));
ALTER TABLE duet.kafka_consumers ADD COLUMN key_columns text[];
ALTER TABLE duet.kafka_consumers ADD COLUMN key_source text NOT NULL DEFAULT 'key' CHECK (key_source IN ('key', 'value'));
ALTER TABLE duet.kafka_consumers ADD CONSTRAINT kafka_consumers_upsert_keys CHECK ((mode = 'upsert') = (key_columns IS NOT NULL));
-- for duet_kafka_replay: what _timestamp and _headers take
ALTER TABLE duet.kafka_dead_letters ADD COLUMN message_timestamp timestamptz;
ALTER TABLE duet.kafka_dead_letters ADD COLUMN headers jsonb;

-- duet_kafka_consume takes mode, key_columns and key_source
DROP FUNCTION duet_kafka_consume(text, text, regclass, text, text, integer, integer, text, integer, jsonb, jsonb);
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

REVOKE ALL ON FUNCTION duet_kafka_consume(text, text, regclass, text, text, integer, integer, text, integer, jsonb, jsonb, text, text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION duet_kafka_consume(text, text, regclass, text, text, integer, integer, text, integer, jsonb, jsonb, text, text[], text) TO duet_kafka_admin;

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

-- issue 12, batch path: upsert mode, replayable dead letters, duet.kafka_consumer_config
COMMENT ON COLUMN duet.kafka_consumers.mode IS 'append: every message a new row; upsert: INSERT … ON CONFLICT (key_columns) DO UPDATE, a tombstone deletes its key''s row';
COMMENT ON COLUMN duet.kafka_consumers.key_columns IS 'upsert mode: the target''s columns of a unique index that identify a row; NULL in append mode';
COMMENT ON COLUMN duet.kafka_consumers.key_source IS 'upsert mode: key (the key columns come from the message key: its text, or its JSON fields) or value (from the message''s fields)';
COMMENT ON COLUMN duet.kafka_dead_letters.message_timestamp IS 'the message''s Kafka timestamp, for duet_kafka_replay (_timestamp)';
COMMENT ON COLUMN duet.kafka_dead_letters.headers IS 'the message''s headers as a JSON object, for duet_kafka_replay (_headers); JSON null when they were not valid UTF-8';
COMMENT ON COLUMN duet.kafka_consumer_config.name IS 'consumer name';
COMMENT ON COLUMN duet.kafka_consumer_config.topic IS 'Kafka topic consumed';
COMMENT ON COLUMN duet.kafka_consumer_config.target IS 'table the rows are written to';
COMMENT ON COLUMN duet.kafka_consumer_config.brokers IS 'bootstrap servers (host:port,...)';
COMMENT ON COLUMN duet.kafka_consumer_config.format IS 'message format: json, jsonb, csv or text';
COMMENT ON COLUMN duet.kafka_consumer_config.batch_size IS 'most messages per transaction';
COMMENT ON COLUMN duet.kafka_consumer_config.flush_interval_ms IS 'longest wait, in milliseconds, before a partial batch is committed';
COMMENT ON COLUMN duet.kafka_consumer_config.start_position IS 'where partitions without a stored offset start: earliest, latest or a timestamp';
COMMENT ON COLUMN duet.kafka_consumer_config.parallelism IS 'number of workers sharing the topic''s partitions';
COMMENT ON COLUMN duet.kafka_consumer_config.column_map IS 'message field to column mapping, when names differ';
COMMENT ON COLUMN duet.kafka_consumer_config.properties IS 'librdkafka properties; the secret ones (passwords, keys) show as ''********''';
COMMENT ON COLUMN duet.kafka_consumer_config.owner IS 'role the rows are written as';
COMMENT ON COLUMN duet.kafka_consumer_config.enabled IS 'false after duet_kafka_stop';
COMMENT ON COLUMN duet.kafka_consumer_config.created_at IS 'when the consumer was created';
COMMENT ON COLUMN duet.kafka_consumer_config.mode IS 'append or upsert';
COMMENT ON COLUMN duet.kafka_consumer_config.key_columns IS 'upsert mode: the key columns';
COMMENT ON COLUMN duet.kafka_consumer_config.key_source IS 'upsert mode: where the key columns come from (key or value)';

-- Alertmanager and alert content (issue 17, items 1 and 2; sql/45_alertmanager.sql) ------------
-- duet_alert_observe takes the rendered annotations: the 7-argument version goes.
DROP FUNCTION duet.duet_alert_observe(bigint, jsonb, text, jsonb, text, text, timestamptz);
-- Columns are added without a default, then filled: stored as in a fresh install (no "missing
-- value" for old rows, which a binary-upgrade dump would show).
ALTER TABLE duet.rules ADD COLUMN annotations jsonb;
UPDATE duet.rules SET annotations = '{}';
ALTER TABLE duet.rules ALTER COLUMN annotations SET DEFAULT '{}';
ALTER TABLE duet.rules ALTER COLUMN annotations SET NOT NULL;
ALTER TABLE duet.rules ADD CONSTRAINT rule_annotations CHECK (jsonb_typeof(annotations) = 'object');
ALTER TABLE duet.rules ADD COLUMN resolve_message text;

ALTER TABLE duet.alerts ADD COLUMN annotations jsonb;
ALTER TABLE duet.alerts ADD COLUMN resolve_message text;
ALTER TABLE duet.alerts ADD COLUMN started_at timestamptz;
ALTER TABLE duet.alerts ADD COLUMN resolved_at timestamptz;
ALTER TABLE duet.alerts ADD COLUMN notify_version bigint;
UPDATE duet.alerts SET notify_version = 0;
ALTER TABLE duet.alerts ALTER COLUMN notify_version SET DEFAULT 0;
ALTER TABLE duet.alerts ALTER COLUMN notify_version SET NOT NULL;
-- The sender's scan: alerts Alertmanager knows of (firing, or resolved and not yet forgotten).
CREATE INDEX alerts_notified ON duet.alerts (id) WHERE notify_version > 0;

-- Annotation names are Alertmanager label names; values are message templates.
CREATE FUNCTION duet.duet_rule_check_annotations(p_annotations jsonb) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
BEGIN
    IF jsonb_typeof(p_annotations) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'rule annotations must be a JSON object of templates',
            HINT = 'For example: {"summary": "campaign {campaign_id} overspent", "runbook_url": "https://wiki/budget"}.';
    END IF;
    FOR k IN SELECT e.key FROM jsonb_each(p_annotations) e LOOP
        IF k !~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_name',
                MESSAGE = format('invalid annotation name "%s"', k),
                DETAIL = 'Alertmanager annotation names have letters, digits and "_", not starting with a digit.';
        END IF;
        IF jsonb_typeof(p_annotations -> k) <> 'string' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('annotation "%s" must be a string template', k);
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION duet.duet_rule_check_annotations(jsonb) IS
    'internal: checks that a rule''s annotations are an object of string templates with Alertmanager names';
REVOKE ALL ON FUNCTION duet.duet_rule_check_annotations(jsonb) FROM PUBLIC;

-- Per-tenant routing defaults: the config key alertmanager.labels (a JSON object, a global
-- default and tenant overrides, docs/alerting.md), under the rule's labels, under alertname,
-- tenant and severity. Label names Alertmanager would refuse are made valid as Prometheus does
-- (every other character becomes "_"). Run as the caller: row-level security on duet.config
-- shows a tenant its own value and the default, the sender (the owner) every tenant's.
CREATE FUNCTION duet_alertmanager_labels(p_tenant text, p_rule text, p_severity text, p_labels jsonb)
    RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce(jsonb_object_agg(regexp_replace(regexp_replace(l.key, '[^A-Za-z0-9_]', '_', 'g'), '^([0-9])', '_\1'),
                                     l.value ORDER BY l.prio, l.key), '{}')
           || jsonb_build_object('alertname', p_rule, 'tenant', p_tenant, 'severity', p_severity)
      FROM (SELECT 1 AS prio, d.key, d.value
              FROM (SELECT c.value FROM duet.config c
                     WHERE c.key = 'alertmanager.labels' AND (c.tenant IS NULL OR c.tenant = p_tenant)
                       AND jsonb_typeof(c.value) = 'object'
                     ORDER BY c.tenant NULLS LAST LIMIT 1) AS cfg,
                   jsonb_each_text(cfg.value) AS d
            UNION ALL
            SELECT 2, e.key, e.value FROM jsonb_each_text(coalesce(p_labels, '{}')) AS e) AS l
     WHERE l.value IS NOT NULL AND l.value <> '';
END;
COMMENT ON FUNCTION duet_alertmanager_labels(text, text, text, jsonb) IS
    'the Alertmanager label set of an alert: the tenant''s alertmanager.labels config, then the rule''s labels, then alertname, tenant and severity';

-- Per alert and Alertmanager: which notify_version it accepted, and the last failure.
CREATE TABLE duet.alertmanager_deliveries (
    alert_id          bigint NOT NULL REFERENCES duet.alerts ON DELETE CASCADE,
    tenant            text NOT NULL,
    alertmanager      text NOT NULL,     -- the URL without user:password
    delivered_version bigint NOT NULL DEFAULT 0,
    sent_at           timestamptz,
    attempts          integer NOT NULL DEFAULT 0,
    last_attempt_at   timestamptz,
    last_error        text,
    PRIMARY KEY (alert_id, alertmanager)
);
COMMENT ON TABLE duet.alertmanager_deliveries IS
    'delivery state of each alert to each Alertmanager: the version it accepted and when; written by the sender';

-- Per Alertmanager: what the sender saw. Superusers and pg_monitor read it (URLs, errors).
CREATE TABLE duet.alertmanager_status (
    alertmanager         text PRIMARY KEY,
    configured           boolean NOT NULL DEFAULT true,
    last_attempt_at      timestamptz,
    last_success_at      timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz,
    last_error           text,
    alerts_sent          bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE duet.alertmanager_status IS
    'each Alertmanager of duet.alertmanager_urls as the sender saw it: last success, failures, backoff, last error';

REVOKE ALL ON duet.alertmanager_deliveries, duet.alertmanager_status FROM PUBLIC;
GRANT SELECT ON duet.alertmanager_deliveries TO PUBLIC;
GRANT SELECT ON duet.alertmanager_status TO pg_monitor;
ALTER TABLE duet.alertmanager_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.alertmanager_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY alertmanager_deliveries_tenant ON duet.alertmanager_deliveries
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));

-- Called by duet_alert_observe when an alert's notification changes: wakes this database's
-- sender when the transaction commits (C: alertmanager.c). Carries nothing.
CREATE FUNCTION duet_alertmanager_wake() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_alertmanager_wake';
COMMENT ON FUNCTION duet_alertmanager_wake() IS
    'internal: wakes the Alertmanager sender of this database at commit (no payload)';
REVOKE ALL ON FUNCTION duet_alertmanager_wake() FROM PUBLIC;

-- What the tenant sees of its alerts: content, the labels Alertmanager gets, delivery state.
CREATE OR REPLACE VIEW duet.alerts_active WITH (security_invoker = true) AS
SELECT a.id AS alert_id, a.tenant, r.name AS rule, r.severity, a.labels, a.state,
       a.pending_since, a.firing_since, a.recovering_since, a.last_eval_at, a.value, a.message, a.error,
       a.annotations,
       @extschema@.duet_alertmanager_labels(a.tenant, r.name, r.severity, a.labels) AS alertmanager_labels,
       a.notify_version,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('alertmanager', d.alertmanager,
                                                     'delivered', d.delivered_version >= a.notify_version,
                                                     'sent_at', d.sent_at, 'attempts', d.attempts,
                                                     'last_error', d.last_error)
                                  ORDER BY d.alertmanager), '[]')
          FROM duet.alertmanager_deliveries d WHERE d.alert_id = a.id) AS delivery
  FROM duet.alerts a JOIN duet.rules r ON r.id = a.rule_id
 WHERE a.state IN ('pending', 'firing', 'recovering', 'error', 'nodata');

SELECT pg_catalog.pg_extension_config_dump('duet.alertmanager_deliveries', '');

------------------------------------------------------------------------------------------------
-- The sender's queries (C: alertmanager.c), run as the extension owner.
------------------------------------------------------------------------------------------------

-- Alerts an Alertmanager must be sent now, as Alertmanager's v2 API takes them. Firing: when this
-- Alertmanager has not accepted the current notify_version, or not within p_resend (endsAt is
-- 4 x p_resend ahead, as Prometheus does). Resolved: until accepted where an earlier state was,
-- and every p_resend for 15 minutes (Prometheus' resolved retention), endsAt = resolved_at.
CREATE FUNCTION duet.duet_alertmanager_due(p_alertmanager text, p_resend interval, p_limit integer,
                                           p_generator_url text)
    RETURNS TABLE (alert_id bigint, notify_version bigint, tenant text, labels text,
                   annotations text, starts_at text, ends_at text, generator_url text)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT a.id, a.notify_version, a.tenant,
           @extschema@.duet_alertmanager_labels(a.tenant, r.name, r.severity, a.labels)::text,
           (CASE WHEN a.message IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('summary', a.message) END
            || coalesce(a.annotations, '{}')
            || CASE WHEN a.firing_since IS NULL AND a.resolve_message IS NOT NULL
                    THEN jsonb_build_object('summary', a.resolve_message) ELSE '{}'::jsonb END)::text,
           to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           -- (an evaluation at a future time, duet_rules_evaluate(at), may start it after now)
           to_char(CASE WHEN a.firing_since IS NOT NULL THEN greatest(now(), a.started_at) + 4 * p_resend
                        ELSE greatest(a.resolved_at, a.started_at) END
                   AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           CASE WHEN coalesce(p_generator_url, '') = ''
                THEN format('postgresql:///%s?duet_tenant=%s&duet_rule=%s', current_database(), a.tenant, r.name)
                ELSE format('%s%stenant=%s&rule=%s', p_generator_url,
                            CASE WHEN strpos(p_generator_url, '?') > 0 THEN '&' ELSE '?' END, a.tenant, r.name) END
      FROM duet.alerts a
      JOIN duet.rules r ON r.id = a.rule_id
      LEFT JOIN duet.alertmanager_deliveries d ON d.alert_id = a.id AND d.alertmanager = p_alertmanager
     WHERE a.notify_version > 0 AND a.started_at IS NOT NULL
       AND ((a.firing_since IS NOT NULL
             AND (d.alert_id IS NULL OR d.delivered_version < a.notify_version OR d.sent_at IS NULL
                  OR d.sent_at <= now() - p_resend))
         OR (a.firing_since IS NULL AND a.resolved_at IS NOT NULL
             AND ((d.delivered_version > 0 AND d.delivered_version < a.notify_version)
               OR (a.resolved_at > now() - interval '15 minutes'
                   AND (d.alert_id IS NULL OR d.sent_at IS NULL OR d.sent_at <= now() - p_resend)))))
     ORDER BY a.id
     LIMIT p_limit;
END;
COMMENT ON FUNCTION duet.duet_alertmanager_due(text, interval, integer, text) IS
    'internal: the alerts the sender must send to one Alertmanager now, with labels, annotations, startsAt, endsAt and generatorURL';
REVOKE ALL ON FUNCTION duet.duet_alertmanager_due(text, interval, integer, text) FROM PUBLIC;

-- When the next resend to an Alertmanager is due (NULL: none is).
CREATE FUNCTION duet.duet_alertmanager_next_due(p_alertmanager text, p_resend interval) RETURNS timestamptz
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT min(d.sent_at) + p_resend
      FROM duet.alertmanager_deliveries d JOIN duet.alerts a ON a.id = d.alert_id
     WHERE d.alertmanager = p_alertmanager AND d.sent_at IS NOT NULL AND a.notify_version > 0
       AND (a.firing_since IS NOT NULL OR a.resolved_at > now() - interval '15 minutes');
END;
COMMENT ON FUNCTION duet.duet_alertmanager_next_due(text, interval) IS
    'internal: when the sender must next resend to one Alertmanager';
REVOKE ALL ON FUNCTION duet.duet_alertmanager_next_due(text, interval) FROM PUBLIC;

-- The outcome of one POST of a batch. p_error NULL: accepted, the versions sent are delivered.
-- Otherwise p_error (about the Alertmanager, no alert content) goes to each alert's delivery
-- row and p_detail (the answer, which may name other tenants' alerts) to the admin status only.
-- p_rejected: Alertmanager refused the batch as invalid (HTTP 4xx): it took the valid alerts, and
-- sending the others again cannot help, so the versions count as delivered, the error stays.
CREATE FUNCTION duet.duet_alertmanager_record(p_alertmanager text, p_ids bigint[], p_versions bigint[],
                                              p_error text, p_detail text, p_next_attempt timestamptz,
                                              p_rejected boolean)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO duet.alertmanager_deliveries AS d (alert_id, tenant, alertmanager, delivered_version,
                                                   sent_at, attempts, last_attempt_at, last_error)
    SELECT a.id, a.tenant, p_alertmanager, CASE WHEN p_error IS NULL OR p_rejected THEN s.version ELSE 0 END,
           CASE WHEN p_error IS NULL OR p_rejected THEN now() END, 1, now(), p_error
      FROM unnest(p_ids, p_versions) AS s(id, version) JOIN duet.alerts a ON a.id = s.id
    ON CONFLICT (alert_id, alertmanager) DO UPDATE
       SET delivered_version = CASE WHEN p_error IS NULL OR p_rejected THEN excluded.delivered_version
                                    ELSE d.delivered_version END,
           sent_at = CASE WHEN p_error IS NULL OR p_rejected THEN excluded.sent_at ELSE d.sent_at END,
           attempts = d.attempts + 1, last_attempt_at = now(), last_error = p_error;
    INSERT INTO duet.alertmanager_status AS s (alertmanager, configured, last_attempt_at, last_success_at,
                                               consecutive_failures, next_attempt_at, last_error, alerts_sent)
    VALUES (p_alertmanager, true, now(), CASE WHEN p_error IS NULL THEN now() END,
            CASE WHEN p_error IS NULL THEN 0 ELSE 1 END, p_next_attempt,
            CASE WHEN p_error IS NOT NULL THEN concat_ws(': ', p_error, p_detail) END,
            CASE WHEN p_error IS NULL THEN coalesce(cardinality(p_ids), 0) ELSE 0 END)
    ON CONFLICT (alertmanager) DO UPDATE
       SET configured = true, last_attempt_at = now(),
           last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
           consecutive_failures = CASE WHEN p_error IS NULL THEN 0 ELSE s.consecutive_failures + 1 END,
           next_attempt_at = p_next_attempt,
           last_error = CASE WHEN p_error IS NULL THEN s.last_error ELSE excluded.last_error END,
           alerts_sent = s.alerts_sent + excluded.alerts_sent;
END $$;
COMMENT ON FUNCTION duet.duet_alertmanager_record(text, bigint[], bigint[], text, text, timestamptz, boolean) IS
    'internal: records the outcome of one POST to an Alertmanager in the delivery rows and its status';
REVOKE ALL ON FUNCTION duet.duet_alertmanager_record(text, bigint[], bigint[], text, text, timestamptz, boolean) FROM PUBLIC;

-- The sender's list of Alertmanagers (after a reload): others are marked not configured.
CREATE FUNCTION duet.duet_alertmanager_configure(p_alertmanagers text[]) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO duet.alertmanager_status (alertmanager)
    SELECT u FROM unnest(p_alertmanagers) AS u
    ON CONFLICT (alertmanager) DO UPDATE SET configured = true;
    UPDATE duet.alertmanager_status SET configured = false, next_attempt_at = NULL
     WHERE configured AND NOT alertmanager = ANY (p_alertmanagers);
END;
COMMENT ON FUNCTION duet.duet_alertmanager_configure(text[]) IS
    'internal: marks the Alertmanagers of duet.alertmanager_urls configured in duet.alertmanager_status, and the others not';
REVOKE ALL ON FUNCTION duet.duet_alertmanager_configure(text[]) FROM PUBLIC;

CREATE FUNCTION duet.duet_alert_observe(p_rule bigint, p_labels jsonb, p_outcome text, p_value jsonb,
                                        p_message text, p_error text, p_at timestamptz,
                                        p_annotations jsonb) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       duet.rules;
    a       duet.alerts;
    base    text;
    new     text;
    event   jsonb;
    transition bigint;
BEGIN
    SELECT * INTO r FROM duet.rules WHERE id = p_rule;
    IF NOT FOUND THEN
        RETURN NULL;    -- dropped concurrently
    END IF;
    INSERT INTO duet.alerts (rule_id, tenant, labels) VALUES (p_rule, r.tenant, p_labels)
        ON CONFLICT ON CONSTRAINT alert_instance DO NOTHING;
    SELECT * INTO a FROM duet.alerts WHERE rule_id = p_rule AND labels = p_labels FOR UPDATE;

    -- Error and No Data interrupt evaluation without ending an active alert: when data comes
    -- back, an alert that was firing is still firing (no second notification).
    base := CASE WHEN a.state IN ('error', 'nodata', 'resolved') THEN
                     CASE WHEN a.firing_since IS NOT NULL THEN 'firing'
                          WHEN a.pending_since IS NOT NULL THEN 'pending' ELSE 'normal' END
                 ELSE a.state END;

    IF p_outcome = 'error' THEN
        new := 'error';
    ELSIF p_outcome = 'nodata' THEN
        new := 'nodata';
    ELSIF p_outcome = 'true' THEN
        IF base IN ('firing', 'recovering') THEN
            new := 'firing';            -- a flap within keep_firing_for: still the same alert
            a.recovering_since := NULL;
        ELSIF base = 'pending' AND p_at - a.pending_since >= r.for_period THEN
            new := 'firing';
        ELSIF base = 'pending' THEN
            new := 'pending';
        ELSIF r.for_period = '0' THEN
            new := 'firing';
            a.pending_since := p_at;
        ELSE
            new := 'pending';
            a.pending_since := p_at;
        END IF;
        IF new = 'firing' AND a.firing_since IS NULL THEN
            a.firing_since := p_at;
        END IF;
    ELSIF p_outcome = 'false' THEN
        IF base = 'firing' AND r.keep_firing_for = '0' THEN
            new := 'resolved';
        ELSIF base = 'firing' THEN
            new := 'recovering';
            a.recovering_since := p_at;
        ELSIF base = 'recovering' AND p_at - a.recovering_since >= r.keep_firing_for THEN
            new := 'resolved';
        ELSIF base = 'recovering' THEN
            new := 'recovering';
        ELSIF a.state = 'resolved' THEN
            new := 'resolved';          -- stays resolved until the condition holds again
        ELSE
            new := 'normal';
        END IF;
        IF new IN ('resolved', 'normal') THEN
            a.pending_since := NULL;
            a.firing_since := NULL;
            a.recovering_since := NULL;
        END IF;
    ELSE
        RAISE EXCEPTION 'invalid alert outcome "%"', p_outcome;
    END IF;

    UPDATE duet.alerts
       SET state = new, pending_since = a.pending_since, firing_since = a.firing_since,
           recovering_since = a.recovering_since, last_eval_at = p_at,
           value = CASE WHEN p_outcome IN ('true', 'false') THEN p_value ELSE value END,
           message = CASE WHEN p_outcome = 'true' THEN p_message ELSE message END,
           annotations = CASE WHEN p_outcome = 'true' THEN p_annotations ELSE annotations END,
           error = CASE WHEN p_outcome = 'error' THEN p_error END
     WHERE id = a.id;

    -- What Alertmanager is told: a new firing episode (startsAt), or its end (endsAt).
    IF new = 'firing' AND base NOT IN ('firing', 'recovering') THEN
        UPDATE duet.alerts SET started_at = a.firing_since, resolved_at = NULL, resolve_message = NULL,
                               notify_version = notify_version + 1
         WHERE id = a.id;
        PERFORM @extschema@.duet_alertmanager_wake();
    ELSIF new = 'resolved' AND a.state <> 'resolved' THEN
        UPDATE duet.alerts SET resolved_at = p_at,
                               resolve_message = CASE WHEN p_outcome = 'false' THEN p_message END,
                               notify_version = notify_version + 1
         WHERE id = a.id;
        PERFORM @extschema@.duet_alertmanager_wake();
    END IF;

    IF new IS DISTINCT FROM a.state THEN
        INSERT INTO duet.alert_transitions (alert_id, rule_id, tenant, labels, from_state, to_state, at,
                                            value, message, error)
        VALUES (a.id, p_rule, r.tenant, p_labels, a.state, new, p_at, p_value,
                CASE WHEN p_outcome = 'true' OR (new = 'resolved' AND p_message IS NOT NULL) THEN p_message
                     ELSE a.message END,
                CASE WHEN p_outcome = 'error' THEN p_error END)
        RETURNING id INTO transition;
    END IF;

    -- Notify when an alert starts firing (not on a flap back from recovering) and when it resolves.
    IF (new = 'firing' AND base NOT IN ('firing', 'recovering')) OR (new = 'resolved' AND a.state <> 'resolved') THEN
        event := jsonb_build_object('tenant', r.tenant, 'rule', r.name, 'rule_id', r.id,
                                    'severity', r.severity, 'labels', p_labels, 'state', new,
                                    'at', to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                                    'value', p_value,
                                    'message', CASE WHEN new = 'firing' THEN p_message
                                                    ELSE coalesce(p_message, a.message) END,
                                    'alert_id', a.id);
        -- Every role can LISTEN: the channel carries only the transition's id, which a listener
        -- reads back through duet.alert_history under row-level security (its own tenant only).
        PERFORM pg_notify('duet_alerts', transition::text);
        IF r.topic IS NOT NULL THEN
            EXECUTE 'SELECT @extschema@.duet_kafka_publish($1, $2, $3, $4)'
                USING r.topic, r.tenant || '/' || r.name || '/' || p_labels::text, event,
                      jsonb_build_object('source', 'pg_duet rules', 'tenant', r.tenant, 'state', new);
        END IF;
    END IF;
    RETURN new;
END $$;
COMMENT ON FUNCTION duet.duet_alert_observe(bigint, jsonb, text, jsonb, text, text, timestamptz, jsonb) IS
    'internal: applies one observation to an alert instance (Normal, Pending, Firing, Recovering, Resolved, Error, No Data), with history, NOTIFY, outbox and Alertmanager notification';
REVOKE ALL ON FUNCTION duet.duet_alert_observe(bigint, jsonb, text, jsonb, text, text, timestamptz, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION duet.duet_alert_sweep(p_rule bigint, p_seen jsonb[], p_at timestamptz) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l jsonb;
BEGIN
    FOR l IN SELECT labels FROM duet.alerts
              WHERE rule_id = p_rule AND state NOT IN ('normal', 'resolved')
                AND NOT labels = ANY (coalesce(p_seen, '{}'))
              ORDER BY id LOOP
        PERFORM duet.duet_alert_observe(p_rule, l, 'false', NULL, NULL, NULL, p_at, NULL);
    END LOOP;
END $$;
COMMENT ON FUNCTION duet.duet_alert_sweep(bigint, jsonb[], timestamptz) IS
    'internal: observes as false the active instances of a query rule that its last result did not contain';
REVOKE ALL ON FUNCTION duet.duet_alert_sweep(bigint, jsonb[], timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION duet.duet_rule_alter_apply(p_tenant text, p_caller oid, p_name text, p_changes jsonb)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       duet.rules := duet.duet_rule_lookup(p_tenant, p_name);
    old_tbl regclass := r.target;
    k       text;
    allowed text[] := ARRAY['name', 'condition', 'value', 'severity', 'labels', 'message', 'for',
                            'keep_firing_for', 'topic', 'enabled', 'target', 'query', 'annotations',
                            'resolve_message'];
    tmpl    text;
BEGIN
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'rule changes must be a JSON object',
            HINT = 'For example: {"condition": "spend > 2 * budget", "for": "10 minutes"}.';
    END IF;
    FOR k IN SELECT jsonb_object_keys(p_changes) LOOP
        IF NOT k = ANY (allowed) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('unknown rule field "%s"', k),
                DETAIL = format('Fields that can change: %s.', array_to_string(allowed, ', '));
        END IF;
        IF k IN ('name', 'condition', 'severity', 'for', 'keep_firing_for', 'enabled', 'labels', 'annotations')
           AND jsonb_typeof(p_changes -> k) = 'null' THEN
            RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
                MESSAGE = format('rule field "%s" must not be null', k);
        END IF;
    END LOOP;
    BEGIN
        IF p_changes ? 'name' THEN r.name := p_changes ->> 'name'; END IF;
        IF p_changes ? 'condition' THEN r.condition := p_changes ->> 'condition'; END IF;
        IF p_changes ? 'value' THEN r.value := p_changes ->> 'value'; END IF;
        IF p_changes ? 'severity' THEN r.severity := p_changes ->> 'severity'; END IF;
        IF p_changes ? 'message' THEN r.message := p_changes ->> 'message'; END IF;
        IF p_changes ? 'topic' THEN r.topic := p_changes ->> 'topic'; END IF;
        IF p_changes ? 'query' THEN r.query := p_changes ->> 'query'; END IF;
        IF p_changes ? 'target' THEN r.target := (p_changes ->> 'target')::regclass; END IF;
        IF p_changes ? 'enabled' THEN r.enabled := (p_changes ->> 'enabled')::boolean; END IF;
        IF p_changes ? 'for' THEN r.for_period := (p_changes ->> 'for')::interval; END IF;
        IF p_changes ? 'keep_firing_for' THEN r.keep_firing_for := (p_changes ->> 'keep_firing_for')::interval; END IF;
        IF p_changes ? 'labels' THEN
            r.labels := ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'labels'));
        END IF;
        IF p_changes ? 'annotations' THEN r.annotations := p_changes -> 'annotations'; END IF;
        IF p_changes ? 'resolve_message' THEN r.resolve_message := p_changes ->> 'resolve_message'; END IF;
    EXCEPTION WHEN data_exception OR undefined_table OR invalid_text_representation THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid rule change: %s', SQLERRM);
    END;
    IF (r.target IS NULL) = (r.query IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rule "%s" needs exactly one of target and query', r.name),
            HINT = 'Set the other one to null in the same change.';
    END IF;
    IF r.name <> p_name AND EXISTS (SELECT FROM duet.rules WHERE tenant = p_tenant AND name = r.name) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('rule "%s" already exists', r.name);
    END IF;
    PERFORM duet.duet_rule_check_fields(r.name, r.severity, r.for_period, r.keep_firing_for);
    PERFORM duet.duet_rule_check_target(p_caller, r.target, r.topic);
    PERFORM duet.duet_rule_validate(p_caller, r.condition, r.value, r.labels, r.message, r.target, r.query);
    -- Annotations and the resolve message are templates like the message (docs/alerting.md).
    PERFORM duet.duet_rule_check_annotations(r.annotations);
    FOR tmpl IN SELECT t FROM jsonb_each_text(r.annotations) AS e(k, t) UNION ALL SELECT r.resolve_message LOOP
        IF tmpl IS NOT NULL THEN
            PERFORM duet.duet_rule_validate(p_caller, r.condition, r.value, r.labels, tmpl, r.target, r.query);
        END IF;
    END LOOP;
    UPDATE duet.rules SET name = r.name, condition = r.condition, value = r.value, severity = r.severity,
           labels = r.labels, message = r.message, annotations = r.annotations,
           resolve_message = r.resolve_message, for_period = r.for_period,
           keep_firing_for = r.keep_firing_for, topic = r.topic, enabled = r.enabled, target = r.target,
           query = r.query, owner = p_caller, version = version + 1, updated_at = now()
     WHERE id = r.id;
    -- Instances are keyed by the label set: new labels start new instances.
    IF p_changes ? 'labels' OR p_changes ? 'target' OR p_changes ? 'query' THEN
        DELETE FROM duet.alerts WHERE rule_id = r.id;
    END IF;
    IF old_tbl IS NOT NULL THEN PERFORM duet.duet_rule_sync_trigger(old_tbl); END IF;
    IF r.target IS NOT NULL THEN PERFORM duet.duet_rule_sync_trigger(r.target); END IF;
END $$;
COMMENT ON FUNCTION duet.duet_rule_alter_apply(text, oid, text, jsonb) IS
    'internal: changes a tenant''s rule on behalf of a caller identified by duet_rule_alter';
REVOKE ALL ON FUNCTION duet.duet_rule_alter_apply(text, oid, text, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION duet_doctor()
    RETURNS TABLE (check_name text, status text, detail text, hint text)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w        record;
    r        record;
    ndb      int;
    needed   int;
    max_w    int := current_setting('max_worker_processes')::int;
    n        bigint;
    oldest   interval;
BEGIN
    -- Runs as the caller: it reports what the caller may see (rules under row-level security,
    -- Kafka for duet_kafka_admin and pg_monitor).
    SELECT * INTO w FROM @extschema@.duet_workers_status();
    check_name := 'background workers';
    IF w.problem IS NULL THEN
        status := 'ok'; detail := 'pg_duet is preloaded and this database is in duet.databases'; hint := NULL;
    ELSE
        status := 'error'; detail := w.problem; hint := w.hint;
    END IF;
    RETURN NEXT;

    -- Two launchers, three workers per served database (four with an Alertmanager), one per
    -- consumer partition group here.
    ndb := array_length(string_to_array(current_setting('duet.databases'), ','), 1);
    needed := 2 + 3 * coalesce(ndb, 0);
    IF coalesce((SELECT s.setting FROM pg_settings s WHERE s.name = 'duet.alertmanager_urls'), '') <> '' THEN
        needed := needed + coalesce(ndb, 0);
    END IF;
    IF has_table_privilege('duet.kafka_status', 'SELECT') THEN
        needed := needed + coalesce((SELECT sum(s.parallelism) FROM duet.kafka_status s
                                      WHERE s.state <> 'stopped'), 0)::int;
    END IF;
    check_name := 'worker slots';
    IF needed > max_w THEN
        status := 'error';
        detail := format('pg_duet needs at least %s background workers; max_worker_processes is %s', needed, max_w);
        hint := format('Raise max_worker_processes to %s or more (it also bounds parallel query workers) and restart.',
                       needed + current_setting('max_parallel_workers')::int);
    ELSE
        status := 'ok';
        detail := format('pg_duet needs at least %s of max_worker_processes = %s', needed, max_w);
        hint := NULL;
    END IF;
    RETURN NEXT;

    check_name := 'kafka consumers';
    IF NOT has_table_privilege('duet.kafka_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading consumer state needs duet_kafka_admin or pg_monitor'; hint := NULL;
        RETURN NEXT;
    ELSE
        n := 0;
        FOR r IN SELECT s.name, s.state, s.last_error, s.reason FROM duet.kafka_status s
                  WHERE s.state NOT IN ('running', 'stopped', 'idle') ORDER BY s.name LOOP
            n := n + 1;
            status := CASE WHEN r.state = 'starting' THEN 'warning' ELSE 'error' END;
            detail := format('consumer %s is %s%s', r.name, r.state, coalesce(': ' || coalesce(r.reason, r.last_error), ''));
            hint := CASE WHEN r.state = 'not running' THEN w.hint
                         WHEN r.state = 'broker unreachable' THEN 'Check the brokers and the consumer''s security properties; it retries on its own.'
                         WHEN r.state = 'starting' THEN 'A consumer that stays starting means no worker slot was free: see "worker slots".'
                         ELSE 'See duet.kafka_dead_letters and the server log; duet_kafka_stop/start restarts it.' END;
            RETURN NEXT;
        END LOOP;
        IF n = 0 THEN
            status := 'ok'; detail := 'every enabled consumer is running'; hint := NULL;
            RETURN NEXT;
        END IF;
    END IF;

    check_name := 'rules';
    n := 0;
    FOR r IN SELECT ru.tenant, ru.name, a.error, count(*) AS instances
               FROM duet.alerts a JOIN duet.rules ru ON ru.id OPERATOR(pg_catalog.=) a.rule_id
              WHERE a.state = 'error' AND ru.enabled
              GROUP BY ru.tenant, ru.name, a.error ORDER BY ru.tenant, ru.name LOOP
        n := n + 1;
        status := 'warning';
        detail := format('rule %s of tenant %s fails: %s', r.name, r.tenant, r.error);
        hint := 'Fix the rule with duet_rule_alter (duet_rule_test tries it on a row); duet.alert_history keeps the errors.';
        RETURN NEXT;
    END LOOP;
    IF (SELECT count(*) FROM duet.rules ru WHERE ru.enabled AND ru.query IS NOT NULL) > 0 AND w.problem IS NOT NULL THEN
        n := n + 1;
        status := 'error'; detail := 'query rules are never evaluated: ' || w.problem; hint := w.hint;
        RETURN NEXT;
    END IF;
    IF n = 0 THEN
        status := 'ok'; detail := 'no enabled rule is failing'; hint := NULL;
        RETURN NEXT;
    END IF;

    check_name := 'outbox';
    IF NOT has_table_privilege('duet.kafka_outbox_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the outbox state needs duet_kafka_admin or pg_monitor'; hint := NULL;
    ELSE
        SELECT s.pending, now() - s.oldest_pending_at INTO n, oldest FROM duet.kafka_outbox_status s;
        IF n > 0 AND oldest > interval '1 minute' THEN
            status := 'error';
            detail := format('%s events wait to be published, the oldest for %s', n, date_trunc('second', oldest));
            hint := coalesce(w.hint, 'Check the brokers (duet.kafka_status) and the server log of the outbox worker.');
        ELSE
            status := 'ok'; detail := 'no event waits longer than a minute'; hint := NULL;
        END IF;
    END IF;
    RETURN NEXT;

    -- Alertmanager (sql/45_alertmanager.sql): what the sender saw of each configured one.
    check_name := 'alertmanager';
    IF NOT has_table_privilege('duet.alertmanager_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the Alertmanager state needs a superuser or pg_monitor'; hint := NULL;
        RETURN NEXT;
    ELSIF coalesce((SELECT s.setting FROM pg_settings s WHERE s.name = 'duet.alertmanager_urls'), 'x') = '' THEN
        status := 'ok'; detail := 'no Alertmanager is configured (duet.alertmanager_urls is empty)'; hint := NULL;
        RETURN NEXT;
    ELSE
        n := 0;
        FOR r IN SELECT s.alertmanager, s.consecutive_failures, s.last_error FROM duet.alertmanager_status s
                  WHERE s.configured AND s.consecutive_failures > 0 ORDER BY s.alertmanager LOOP
            status := 'error';
            detail := format('Alertmanager %s is unreachable or refuses alerts (%s failed attempts in a row): %s',
                             r.alertmanager, r.consecutive_failures, r.last_error);
            hint := coalesce(w.hint, 'Check that Alertmanager runs at that URL of duet.alertmanager_urls and that this server may connect to it; pg_duet keeps the alerts and sends them again with backoff.');
            n := n + 1;
            RETURN NEXT;
        END LOOP;
        IF n = 0 THEN
            status := 'ok';
            detail := format('%s configured Alertmanagers accept alerts',
                             (SELECT count(*) FROM duet.alertmanager_status s WHERE s.configured));
            hint := w.hint;
            RETURN NEXT;
        END IF;
    END IF;

    -- Reachability of the LLM endpoints and Kafka brokers: one TCP connection each, all at once,
    -- at most two seconds in all (C: pg_duet/doctor.c).
    RETURN QUERY SELECT x.check_name, x.status, x.detail, x.hint FROM @extschema@.duet_doctor_reachability() x;
END $$;
COMMENT ON FUNCTION duet_doctor() IS
    'lists what keeps pg_duet from working in this database (preload, duet.databases, worker slots, consumers, failing rules, stuck outbox, unreachable Alertmanagers, LLM endpoints and Kafka brokers), each with its fix';

-- Column comments (pg_duet/sql/90_comments.sql)
COMMENT ON COLUMN duet.rules.annotations IS 'Alertmanager annotations: name -> template ({column}, {value} or a Duet formula), e.g. summary, description, runbook_url';
COMMENT ON COLUMN duet.rules.resolve_message IS 'template rendered with the row that resolves the alert; sent as the resolved alert''s summary';
COMMENT ON COLUMN duet.alerts.annotations IS 'annotations rendered with the row that last met the condition';
COMMENT ON COLUMN duet.alerts.resolve_message IS 'resolve message rendered when the alert resolved (NULL when no row showed it, e.g. a query rule''s instance that disappeared)';
COMMENT ON COLUMN duet.alerts.started_at IS 'startsAt sent to Alertmanager: when the current or last firing episode began';
COMMENT ON COLUMN duet.alerts.resolved_at IS 'endsAt sent to Alertmanager once the alert resolved';
COMMENT ON COLUMN duet.alerts.notify_version IS 'bumped when the alert starts firing and when it resolves; Alertmanagers are sent each version';
COMMENT ON COLUMN duet.alertmanager_deliveries.alert_id IS 'the alert (duet.alerts.id)';
COMMENT ON COLUMN duet.alertmanager_deliveries.tenant IS 'tenant of the alert';
COMMENT ON COLUMN duet.alertmanager_deliveries.alertmanager IS 'the Alertmanager: its URL from duet.alertmanager_urls without user:password';
COMMENT ON COLUMN duet.alertmanager_deliveries.delivered_version IS 'the notify_version this Alertmanager accepted last (0: none)';
COMMENT ON COLUMN duet.alertmanager_deliveries.sent_at IS 'when this Alertmanager last accepted the alert';
COMMENT ON COLUMN duet.alertmanager_deliveries.attempts IS 'POSTs that carried the alert to this Alertmanager, accepted or not';
COMMENT ON COLUMN duet.alertmanager_deliveries.last_attempt_at IS 'when the alert was last sent to this Alertmanager';
COMMENT ON COLUMN duet.alertmanager_deliveries.last_error IS 'why the last attempt failed (about the Alertmanager only; NULL after a success)';
COMMENT ON COLUMN duet.alertmanager_status.alertmanager IS 'the Alertmanager: its URL from duet.alertmanager_urls without user:password';
COMMENT ON COLUMN duet.alertmanager_status.configured IS 'whether it is in duet.alertmanager_urls now';
COMMENT ON COLUMN duet.alertmanager_status.last_attempt_at IS 'when the sender last posted to it';
COMMENT ON COLUMN duet.alertmanager_status.last_success_at IS 'when it last accepted alerts';
COMMENT ON COLUMN duet.alertmanager_status.consecutive_failures IS 'failed posts in a row (0: healthy)';
COMMENT ON COLUMN duet.alertmanager_status.next_attempt_at IS 'end of the backoff after a failure';
COMMENT ON COLUMN duet.alertmanager_status.last_error IS 'the last failure, with the start of Alertmanager''s answer';
COMMENT ON COLUMN duet.alertmanager_status.alerts_sent IS 'alerts it accepted since the row was created';
COMMENT ON COLUMN duet.alerts_active.annotations IS 'rendered annotations of the alert';
COMMENT ON COLUMN duet.alerts_active.alertmanager_labels IS 'the label set Alertmanager gets: the tenant''s alertmanager.labels config, the rule''s labels, alertname, tenant, severity';
COMMENT ON COLUMN duet.alerts_active.notify_version IS 'version of the alert''s notification (see duet.alerts.notify_version)';
COMMENT ON COLUMN duet.alerts_active.delivery IS 'per Alertmanager: whether it accepted the current version, when, attempts and last error';

-- duet_rule_create takes annotations and a resolve message (docs/alerting.md): new signatures.
DROP FUNCTION duet_rule_create(text, text, regclass, text, text, text, text[], text, interval, interval, text, boolean);
DROP FUNCTION duet.duet_rule_create_apply(text, oid, text, text, regclass, text, text, text, text[],
                                          text, interval, interval, text, boolean);
CREATE FUNCTION duet.duet_rule_create_apply(p_tenant text, p_caller oid, p_name text, p_condition text,
        p_target regclass, p_query text, p_value text, p_severity text, p_labels text[], p_message text,
        p_for interval, p_keep_firing_for interval, p_topic text, p_enabled boolean,
        p_annotations jsonb, p_resolve_message text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
    tmpl   text;
BEGIN
    IF p_name IS NULL OR p_condition IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'rule name and condition must not be NULL';
    END IF;
    IF (p_target IS NULL) = (p_query IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rule "%s" needs exactly one of target and query', p_name),
            HINT = 'A row rule names its table (target => ...); a query rule gives a SQL query (query => ...).';
    END IF;
    IF EXISTS (SELECT FROM duet.rules WHERE tenant = p_tenant AND name = p_name) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('rule "%s" already exists', p_name),
            HINT = 'Change it with duet_rule_alter() or remove it with duet_rule_drop().';
    END IF;
    PERFORM duet.duet_rule_check_fields(p_name, coalesce(p_severity, 'warning'), coalesce(p_for, '0'),
                                        coalesce(p_keep_firing_for, '0'));
    PERFORM duet.duet_rule_check_target(p_caller, p_target, p_topic);
    PERFORM duet.duet_rule_validate(p_caller, p_condition, p_value, coalesce(p_labels, '{}'), p_message,
                                    p_target, p_query);
    -- Annotations and the resolve message are templates like the message (docs/alerting.md).
    PERFORM duet.duet_rule_check_annotations(coalesce(p_annotations, '{}'));
    FOR tmpl IN SELECT t FROM jsonb_each_text(coalesce(p_annotations, '{}')) AS e(k, t) UNION ALL SELECT p_resolve_message LOOP
        IF tmpl IS NOT NULL THEN
            PERFORM duet.duet_rule_validate(p_caller, p_condition, p_value, coalesce(p_labels, '{}'), tmpl,
                                            p_target, p_query);
        END IF;
    END LOOP;
    INSERT INTO duet.rules (tenant, name, target, query, condition, value, severity, labels, message,
                            for_period, keep_firing_for, topic, enabled, owner, annotations, resolve_message)
    VALUES (p_tenant, p_name, p_target, p_query, p_condition, p_value, coalesce(p_severity, 'warning'),
            coalesce(p_labels, '{}'), p_message, coalesce(p_for, '0'), coalesce(p_keep_firing_for, '0'),
            p_topic, coalesce(p_enabled, true), p_caller, coalesce(p_annotations, '{}'), p_resolve_message)
    RETURNING id INTO new_id;
    IF p_target IS NOT NULL THEN
        PERFORM duet.duet_rule_sync_trigger(p_target);
    END IF;
    RETURN new_id;
END $$;
COMMENT ON FUNCTION duet.duet_rule_create_apply(text, oid, text, text, regclass, text, text, text, text[],
                                                text, interval, interval, text, boolean, jsonb, text) IS
    'internal: creates a rule for a tenant on behalf of a caller already identified by duet_rule_create';
REVOKE ALL ON FUNCTION duet.duet_rule_create_apply(text, oid, text, text, regclass, text, text, text, text[],
                                                   text, interval, interval, text, boolean, jsonb, text) FROM PUBLIC;
CREATE FUNCTION duet_rule_create(name text, condition text, target regclass DEFAULT NULL,
                                 query text DEFAULT NULL, value text DEFAULT NULL,
                                 severity text DEFAULT 'warning', labels text[] DEFAULT '{}',
                                 message text DEFAULT NULL, for_period interval DEFAULT '0',
                                 keep_firing_for interval DEFAULT '0', topic text DEFAULT NULL,
                                 enabled boolean DEFAULT true, annotations jsonb DEFAULT '{}',
                                 resolve_message text DEFAULT NULL) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_create';
COMMENT ON FUNCTION duet_rule_create(text, text, regclass, text, text, text, text[], text, interval,
                                     interval, text, boolean, jsonb, text) IS
    'creates a rule of the current tenant: a row rule on target or a query rule; condition and value are Duet formulas; annotations and resolve_message are templates for Alertmanager; returns its id';

-- duet_doctor() after the Kafka pool and the Alertmanager blocks above: both checks (merge) ------
CREATE OR REPLACE FUNCTION duet_doctor()
    RETURNS TABLE (check_name text, status text, detail text, hint text)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w        record;
    r        record;
    ndb      int;
    needed   int;
    max_w    int := current_setting('max_worker_processes')::int;
    n        bigint;
    oldest   interval;
BEGIN
    -- Runs as the caller: it reports what the caller may see (rules under row-level security,
    -- Kafka for duet_kafka_admin and pg_monitor).
    SELECT * INTO w FROM @extschema@.duet_workers_status();
    check_name := 'background workers';
    IF w.problem IS NULL THEN
        status := 'ok'; detail := 'pg_duet is preloaded and this database is in duet.databases'; hint := NULL;
    ELSE
        status := 'error'; detail := w.problem; hint := w.hint;
    END IF;
    RETURN NEXT;

    -- Two launchers, three workers per served database (four with an Alertmanager), and here the
    -- Kafka pool: one worker per consumer partition group, at most duet.kafka_pool_size.
    ndb := array_length(string_to_array(current_setting('duet.databases'), ','), 1);
    needed := 2 + 3 * coalesce(ndb, 0);
    IF coalesce((SELECT s.setting FROM pg_settings s WHERE s.name = 'duet.alertmanager_urls'), '') <> '' THEN
        needed := needed + coalesce(ndb, 0);
    END IF;
    IF has_table_privilege('duet.kafka_status', 'SELECT') THEN
        needed := needed + LEAST(coalesce(current_setting('duet.kafka_pool_size', true), '2')::int,
                                 coalesce((SELECT sum(s.parallelism) FROM duet.kafka_status s
                                            WHERE s.state <> 'stopped'), 0))::int;
    END IF;
    check_name := 'worker slots';
    IF needed > max_w THEN
        status := 'error';
        detail := format('pg_duet needs at least %s background workers; max_worker_processes is %s', needed, max_w);
        hint := format('Raise max_worker_processes to %s or more (it also bounds parallel query workers) and restart.',
                       needed + current_setting('max_parallel_workers')::int);
    ELSE
        status := 'ok';
        detail := format('pg_duet needs at least %s of max_worker_processes = %s', needed, max_w);
        hint := NULL;
    END IF;
    RETURN NEXT;

    check_name := 'kafka consumers';
    IF NOT has_table_privilege('duet.kafka_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading consumer state needs duet_kafka_admin or pg_monitor'; hint := NULL;
        RETURN NEXT;
    ELSE
        n := 0;
        FOR r IN SELECT s.name, s.state, s.last_error, s.reason FROM duet.kafka_status s
                  WHERE s.state NOT IN ('running', 'stopped', 'idle') ORDER BY s.name LOOP
            n := n + 1;
            status := CASE WHEN r.state = 'starting' THEN 'warning' ELSE 'error' END;
            detail := format('consumer %s is %s%s', r.name, r.state, coalesce(': ' || coalesce(r.reason, r.last_error), ''));
            hint := CASE WHEN r.state = 'not running' THEN w.hint
                         WHEN r.state = 'broker unreachable' THEN 'Check the brokers and the consumer''s security properties; it retries on its own.'
                         WHEN r.state = 'starting' THEN 'A consumer that stays starting means no worker slot was free: see "worker slots".'
                         ELSE 'See duet.kafka_dead_letters and the server log; duet_kafka_stop/start restarts it.' END;
            RETURN NEXT;
        END LOOP;
        IF n = 0 THEN
            status := 'ok'; detail := 'every enabled consumer is running'; hint := NULL;
            RETURN NEXT;
        END IF;
    END IF;

    check_name := 'rules';
    n := 0;
    FOR r IN SELECT ru.tenant, ru.name, a.error, count(*) AS instances
               FROM duet.alerts a JOIN duet.rules ru ON ru.id OPERATOR(pg_catalog.=) a.rule_id
              WHERE a.state = 'error' AND ru.enabled
              GROUP BY ru.tenant, ru.name, a.error ORDER BY ru.tenant, ru.name LOOP
        n := n + 1;
        status := 'warning';
        detail := format('rule %s of tenant %s fails: %s', r.name, r.tenant, r.error);
        hint := 'Fix the rule with duet_rule_alter (duet_rule_test tries it on a row); duet.alert_history keeps the errors.';
        RETURN NEXT;
    END LOOP;
    IF (SELECT count(*) FROM duet.rules ru WHERE ru.enabled AND ru.query IS NOT NULL) > 0 AND w.problem IS NOT NULL THEN
        n := n + 1;
        status := 'error'; detail := 'query rules are never evaluated: ' || w.problem; hint := w.hint;
        RETURN NEXT;
    END IF;
    IF n = 0 THEN
        status := 'ok'; detail := 'no enabled rule is failing'; hint := NULL;
        RETURN NEXT;
    END IF;

    check_name := 'outbox';
    IF NOT has_table_privilege('duet.kafka_outbox_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the outbox state needs duet_kafka_admin or pg_monitor'; hint := NULL;
    ELSE
        SELECT s.pending, now() - s.oldest_pending_at INTO n, oldest FROM duet.kafka_outbox_status s;
        IF n > 0 AND oldest > interval '1 minute' THEN
            status := 'error';
            detail := format('%s events wait to be published, the oldest for %s', n, date_trunc('second', oldest));
            hint := coalesce(w.hint, 'Check the brokers (duet.kafka_status) and the server log of the outbox worker.');
        ELSE
            status := 'ok'; detail := 'no event waits longer than a minute'; hint := NULL;
        END IF;
    END IF;
    RETURN NEXT;

    -- Alertmanager (sql/45_alertmanager.sql): what the sender saw of each configured one.
    check_name := 'alertmanager';
    IF NOT has_table_privilege('duet.alertmanager_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the Alertmanager state needs a superuser or pg_monitor'; hint := NULL;
        RETURN NEXT;
    ELSIF coalesce((SELECT s.setting FROM pg_settings s WHERE s.name = 'duet.alertmanager_urls'), 'x') = '' THEN
        status := 'ok'; detail := 'no Alertmanager is configured (duet.alertmanager_urls is empty)'; hint := NULL;
        RETURN NEXT;
    ELSE
        n := 0;
        FOR r IN SELECT s.alertmanager, s.consecutive_failures, s.last_error FROM duet.alertmanager_status s
                  WHERE s.configured AND s.consecutive_failures > 0 ORDER BY s.alertmanager LOOP
            status := 'error';
            detail := format('Alertmanager %s is unreachable or refuses alerts (%s failed attempts in a row): %s',
                             r.alertmanager, r.consecutive_failures, r.last_error);
            hint := coalesce(w.hint, 'Check that Alertmanager runs at that URL of duet.alertmanager_urls and that this server may connect to it; pg_duet keeps the alerts and sends them again with backoff.');
            n := n + 1;
            RETURN NEXT;
        END LOOP;
        IF n = 0 THEN
            status := 'ok';
            detail := format('%s configured Alertmanagers accept alerts',
                             (SELECT count(*) FROM duet.alertmanager_status s WHERE s.configured));
            hint := w.hint;
            RETURN NEXT;
        END IF;
    END IF;

    -- Reachability of the LLM endpoints and Kafka brokers: one TCP connection each, all at once,
    -- at most two seconds in all (C: pg_duet/doctor.c).
    RETURN QUERY SELECT x.check_name, x.status, x.detail, x.hint FROM @extschema@.duet_doctor_reachability() x;
END $$;

-- Pipelines in the Prometheus export and duet.health (issue 19 item 4, issue 17 item 3) ----------

CREATE FUNCTION duet_metrics_pipelines(OUT tenant text, OUT pipeline text, OUT mode text,
        OUT state text, OUT lag_rows bigint, OUT lag_seconds double precision, OUT runs_5m bigint,
        OUT rows_in_5m bigint, OUT rows_out_5m bigint, OUT rows_dropped_5m bigint,
        OUT errors_24h bigint, OUT quarantined bigint, OUT last_run_age_seconds double precision,
        OUT last_success_age_seconds double precision)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_pipelines';
COMMENT ON FUNCTION duet_metrics_pipelines() IS
    'pipelines per tenant and name: state, mode, lag in rows and seconds, runs and rows read, written and quarantined in the last 5 minutes, failed runs in 24 hours, rows in quarantine, ages of the last run and success; counts only, never transforms, error texts or rows (monitors: every tenant; others: their tenant)';

GRANT EXECUTE ON FUNCTION duet_metrics_pipelines() TO PUBLIC;

CREATE OR REPLACE VIEW duet.health WITH (security_invoker = true) AS
SELECT r.tenant, 'rules'::text AS subsystem, m.metric,
       pg_catalog.jsonb_build_object('severity', r.severity) AS labels, m.value
  FROM duet_metrics_rules() r
 CROSS JOIN LATERAL (VALUES ('rules', r.rules::float8), ('enabled', r.enabled::float8),
                            ('evaluations', r.evaluations::float8), ('errors', r.errors::float8),
                            ('rows_evaluated', r.rows_evaluated::float8), ('pending', r.pending::float8),
                            ('firing', r.firing::float8), ('recovering', r.recovering::float8),
                            ('in_error', r.in_error::float8)) AS m(metric, value)
UNION ALL
SELECT a.tenant, 'ask', m.metric, pg_catalog.jsonb_build_object('status', a.status), m.value
  FROM duet_metrics_ask() a
 CROSS JOIN LATERAL (VALUES ('calls', a.calls::float8), ('http_requests', a.http_requests::float8),
                            ('guard_rejections', a.corrections::float8), ('tokens_in', a.tokens_in::float8),
                            ('tokens_out', a.tokens_out::float8), ('latency_seconds', a.latency_ms_sum / 1000))
       AS m(metric, value)
UNION ALL
SELECT NULL, 'kafka', m.metric,
       pg_catalog.jsonb_build_object('consumer', k.consumer, 'topic', k.topic, 'state', k.state), m.value
  FROM duet_metrics_kafka() k
 CROSS JOIN LATERAL (VALUES ('up', CASE WHEN k.state = 'running' THEN 1 ELSE 0 END::float8),
                            ('workers', k.workers::float8), ('rows', k.rows::float8),
                            ('bytes', k.bytes::float8), ('batches', k.batches::float8),
                            ('errors', k.errors::float8), ('dead_letters', k.dead_letters::float8),
                            ('lag', k.lag::float8), ('rows_per_second', k.rows_per_second),
                            ('skipped_messages', k.skipped_messages::float8)) AS m(metric, value)
UNION ALL
SELECT NULL, 'outbox', m.metric, '{}'::jsonb, m.value
  FROM duet_metrics_outbox() o
 CROSS JOIN LATERAL (VALUES ('pending', o.pending::float8),
                            ('oldest_pending_age_seconds', o.oldest_pending_age_seconds),
                            ('sent_last_hour', o.sent_last_hour::float8)) AS m(metric, value)
UNION ALL
SELECT NULL, 'server', m.metric, '{}'::jsonb, m.value
  FROM duet_metrics_server() s
 CROSS JOIN LATERAL (VALUES ('counters_available', CASE WHEN s.counters_available THEN 1 ELSE 0 END::float8),
                            ('workers_serving', CASE WHEN s.workers_serving THEN 1 ELSE 0 END::float8),
                            ('config_cache_hits', s.config_cache_hits::float8),
                            ('config_cache_misses', s.config_cache_misses::float8),
                            ('config_cache_bypasses', s.config_cache_bypasses::float8),
                            ('config_cache_hit_ratio', s.config_cache_hit_ratio),
                            ('counters_dropped', s.counters_dropped::float8)) AS m(metric, value)
UNION ALL
SELECT p.tenant, 'pipelines', m.metric, pg_catalog.jsonb_build_object('pipeline', p.pipeline, 'mode', p.mode), m.value
  FROM duet_metrics_pipelines() p
 CROSS JOIN LATERAL (VALUES ('active', CASE WHEN p.state = 'active' THEN 1 ELSE 0 END::float8),
                            ('paused', CASE WHEN p.state = 'paused' THEN 1 ELSE 0 END::float8),
                            ('in_error', CASE WHEN p.state = 'error' THEN 1 ELSE 0 END::float8),
                            ('lag_rows', p.lag_rows::float8), ('lag_seconds', p.lag_seconds),
                            ('runs_5m', p.runs_5m::float8), ('rows_in_5m', p.rows_in_5m::float8),
                            ('rows_out_5m', p.rows_out_5m::float8), ('rows_dropped_5m', p.rows_dropped_5m::float8),
                            ('errors_24h', p.errors_24h::float8), ('quarantined', p.quarantined::float8),
                            ('last_run_age_seconds', p.last_run_age_seconds),
                            ('last_success_age_seconds', p.last_success_age_seconds)) AS m(metric, value)
UNION ALL
SELECT NULL, 'workers', 'running', pg_catalog.jsonb_build_object('worker', w.worker), w.running::float8
  FROM duet_metrics_workers() w;
COMMENT ON VIEW duet.health IS
    'pg_duet''s figures as rows for dashboards, the same as the Prometheus metrics (docs/monitoring.md): rules, ask, Kafka consumers, outbox, server, workers, pipelines; a tenant member sees its own tenant''s rows, monitors (pg_monitor, duet_monitor) every tenant';
COMMENT ON COLUMN duet.health.subsystem IS 'rules, ask, kafka, outbox, server, workers or pipelines';
COMMENT ON COLUMN duet.health.labels IS 'what the figure is about, as a JSON object: severity, ask status, consumer/topic/state, pipeline/mode; the Prometheus labels of the same metric';

-- Pipelines: replay in upsert mode respects source order (issue 19, known gap) ------------------

-- A replayed row is skipped when a later row of its key was already read and written.
CREATE OR REPLACE FUNCTION duet.duet_pipeline_sql(p duet.pipelines, kind text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ord_type  text := duet.duet_pipeline_column_type(p.source, p.order_by, 'order_by');
    part_sql  text := CASE WHEN p.partition_by IS NULL THEN '''''::pg_catalog.text'
                           ELSE format('(s.%I)::pg_catalog.text', p.partition_by) END;
    cols      text[] := ARRAY(SELECT jsonb_object_keys(p.transform) ORDER BY 1);
    collist   text := (SELECT string_agg(format('%I', x), ', ' ORDER BY x) FROM unnest(cols) x);
    keycols   text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(p.key) k);
    sets      text := (SELECT string_agg(format('%1$I = EXCLUDED.%1$I', x), ', ')
                         FROM unnest(cols) x WHERE x <> ALL (p.key));
    drops     text[] := ARRAY(SELECT name FROM duet.pipeline_expectations
                               WHERE pipeline_id = p.id AND action = 'drop' ORDER BY name);
    fails     text[] := ARRAY(SELECT name FROM duet.pipeline_expectations
                               WHERE pipeline_id = p.id AND action = 'fail' ORDER BY name);
    formulas  boolean := EXISTS (SELECT FROM jsonb_each_text(p.transform) t WHERE left(t.value, 1) = '=');
    drifting  boolean := p.drift_column IS NOT NULL AND kind <> 'replay';
    exprs     text := '';
    checks    text := '';
    vars      text;
    e         record;
    c         text;
    src       text;
    rows_sql  text;
    past      text;
    write     text;
    keep      text;
    quarantine text := 'NULL::pg_catalog.jsonb';
    failure   text := 'NULL::pg_catalog.text';
    published text := 'NULL::pg_catalog.jsonb';
    drift     text := '''{}''::pg_catalog.jsonb';
    dschema   text := 'NULL::pg_catalog.jsonb';
BEGIN
    -- src: the rows of this run, with their partition, order value and what the quarantine and
    -- formulas need (the row itself only for formulas and replays; else its ctid, read again for
    -- the few quarantined rows within the same snapshot).
    IF kind = 'replay' THEN
        src := format('SELECT s AS __duet_src, s.*, q.part AS __duet_part, q.pos::%s AS __duet_ord, q.id AS __duet_qid, '
                      'NULL::pg_catalog.tid AS __duet_ctid '
                      'FROM duet.pipeline_quarantine q CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%s, q.source_row) s '
                      'WHERE q.pipeline_id OPERATOR(pg_catalog.=) $6 AND q.replayed_at IS NULL '
                      'ORDER BY q.id LIMIT $2', ord_type, p.source);
    ELSE
        src := format('SELECT %s s.*, %s AS __duet_part, s.%I AS __duet_ord, NULL::pg_catalog.int8 AS __duet_qid, '
                      's.ctid AS __duet_ctid FROM %s s WHERE ',
                      CASE WHEN formulas THEN 's AS __duet_src,' ELSE '' END, part_sql, p.order_by, p.source);
        IF kind IN ('incremental', 'tail', 'count') THEN
            past := format('(($1 OPERATOR(pg_catalog.->>) %1$s) IS NULL OR s.%2$I OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.->>) %1$s)::%3$s)',
                           part_sql, p.order_by, ord_type);
            src := src || past;
            IF kind = 'count' THEN
                -- How many rows are past the position, counting no further than one batch and one.
                RETURN format('SELECT pg_catalog.count(*) FROM (SELECT FROM %s s WHERE %s LIMIT $2 OPERATOR(pg_catalog.+) 1) c',
                              p.source, past);
            ELSIF kind = 'incremental' THEN
                -- A batch: ordered by the raw columns, each partition's rows are a prefix of its rows.
                -- ('tail': every row past the position fits in the batch, so no order is needed.)
                src := src || format(' ORDER BY s.%1$I%2$s LIMIT $2', p.order_by,
                                     CASE WHEN p.partition_by IS NULL THEN '' ELSE format(', s.%I', p.partition_by) END);
            END IF;
        ELSE
            src := src || format('s.%1$I OPERATOR(pg_catalog.>=) $3::%2$s AND s.%1$I OPERATOR(pg_catalog.<=) $4::%2$s '
                                 'AND ($5 IS NULL OR %3$s OPERATOR(pg_catalog.=) $5)', p.order_by, ord_type, part_sql);
        END IF;
    END IF;

    IF p.mode = 'aggregate' THEN
        -- SQL only (aggregates), checked at creation: no formulas, no expectations. The groups the
        -- new rows touch are recomputed from the whole source.
        rows_sql := 'v AS MATERIALIZED (SELECT src.*, NULL::pg_catalog.text[] AS __duet_failed FROM src), ';
        write := format('g AS (SELECT DISTINCT %s FROM v s), '
                        'w AS (INSERT INTO %s AS t (%s) SELECT %s FROM %s s WHERE (%s) IN (SELECT %s FROM g) GROUP BY %s '
                        'ON CONFLICT (%s) DO %s RETURNING %s), ',
                        (SELECT string_agg(format('%s AS %I', duet.duet_pipeline_expr(p.transform ->> k, NULL, NULL), k), ', ')
                           FROM unnest(p.key) k),
                        p.target, collist,
                        (SELECT string_agg(duet.duet_pipeline_expr(p.transform ->> x, NULL, NULL), ', ' ORDER BY x) FROM unnest(cols) x),
                        p.source,
                        (SELECT string_agg(duet.duet_pipeline_expr(p.transform ->> k, NULL, NULL), ', ') FROM unnest(p.key) k),
                        keycols,
                        (SELECT string_agg(duet.duet_pipeline_expr(p.transform ->> k, NULL, NULL), ', ') FROM unnest(p.key) k),
                        keycols,
                        CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END,
                        CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
    ELSE
        FOREACH c IN ARRAY cols LOOP
            exprs := exprs || format(', %s AS %I',
                                     duet.duet_pipeline_expr(p.transform ->> c, 's.__duet_src',
                                                             duet.duet_pipeline_column_type(p.target, c, 'target')), c);
        END LOOP;
        vars := (SELECT format('pg_catalog.jsonb_build_object(%s)', string_agg(format('%L::pg_catalog.text, x.%I', x, x), ', '))
                   FROM unnest(cols) x);
        FOR e IN SELECT name, predicate FROM duet.pipeline_expectations WHERE pipeline_id = p.id ORDER BY name LOOP
            checks := checks || format(', CASE WHEN %s IS NOT TRUE THEN %L::pg_catalog.text END',
                                       duet.duet_pipeline_expr(e.predicate, vars, 'pg_catalog.bool'), e.name);
        END LOOP;
        -- v: the transformed rows with the names of the expectations each failed; the transform is
        -- a subquery (not a CTE of its own) so that the rows are materialized once.
        rows_sql := format('v AS MATERIALIZED (SELECT x.*, %s AS __duet_failed FROM '
                           '(SELECT s.__duet_part, s.__duet_ord, s.__duet_qid, s.__duet_ctid%s%s%s FROM src s) x), ',
                           CASE WHEN checks = '' THEN 'NULL::pg_catalog.text[]'
                                ELSE format('pg_catalog.array_remove(ARRAY[NULL::pg_catalog.text%s], NULL)', checks) END,
                           CASE WHEN kind = 'replay' THEN ', s.__duet_src' ELSE '' END,
                           CASE WHEN drifting THEN format(', s.%I AS __duet_drift', p.drift_column) ELSE '' END,
                           exprs);
        IF p.mode = 'upsert' THEN
            keep := CASE WHEN cardinality(drops) = 0 THEN 'true'
                         ELSE format('NOT v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[]', drops) END;
            IF kind IN ('replay', 'backfill') THEN
                -- A replayed or backfilled row may be older than what the pipeline has written of its
                -- key: it is skipped when the source holds a later row (by order value, then
                -- partition) of the same key that a run already read and wrote (not in quarantine).
                -- lw maps each key of v to its latest such row, in one scan of the source whatever
                -- the estimates: the IN tests stay hashed subplans (IS TRUE keeps them from becoming
                -- joins, which a one-row estimate of v would make nested loops over the source).
                rows_sql := rows_sql || format('lw AS MATERIALIZED (SELECT pg_catalog.jsonb_object_agg(m.k, '
                    'pg_catalog.jsonb_build_array(m.o, m.p) ORDER BY m.o, m.p) AS map FROM ('
                    'SELECT (pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text AS k, s.%2$I AS o, %3$s AS p FROM %4$s s '
                    'WHERE s.%2$I OPERATOR(pg_catalog.<=) ($1 OPERATOR(pg_catalog.->>) %3$s)::%5$s '
                    'AND ((%1$s) IN (SELECT %6$s FROM v)) IS TRUE '
                    'AND ((%3$s, (s.%2$I)::pg_catalog.text) IN (SELECT q.part, q.pos FROM duet.pipeline_quarantine q '
                    'WHERE q.pipeline_id OPERATOR(pg_catalog.=) $6 AND q.replayed_at IS NULL)) IS NOT TRUE) m), ',
                    (SELECT string_agg(duet.duet_pipeline_expr(p.transform ->> k, 's',
                                                               duet.duet_pipeline_column_type(p.target, k, 'target')), ', ')
                       FROM unnest(p.key) k),
                    p.order_by, part_sql, p.source, ord_type,
                    (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k));
                keep := keep || format(' AND ((((SELECT lw.map FROM lw) OPERATOR(pg_catalog.->) '
                    '(pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text) OPERATOR(pg_catalog.->>) 0)::%2$s '
                    'OPERATOR(pg_catalog.>) v.__duet_ord '
                    'OR (((((SELECT lw.map FROM lw) OPERATOR(pg_catalog.->) (pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text) '
                    'OPERATOR(pg_catalog.->>) 0)::%2$s OPERATOR(pg_catalog.=) v.__duet_ord) '
                    'AND ((((SELECT lw.map FROM lw) OPERATOR(pg_catalog.->) (pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text) '
                    'OPERATOR(pg_catalog.->>) 1) OPERATOR(pg_catalog.>) v.__duet_part))) IS NOT TRUE',
                    (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k), ord_type);
            END IF;
            write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM (SELECT DISTINCT ON (%s) * FROM v %s'
                            'ORDER BY %s, v.__duet_ord DESC, v.__duet_part DESC) d '
                            'ON CONFLICT (%s) DO %s RETURNING %s), ',
                            p.target, collist, collist, keycols,
                            CASE WHEN keep = 'true' THEN '' ELSE 'WHERE ' || keep || ' ' END,
                            (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k),
                            keycols, CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END,
                            CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
        ELSE
            write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM v %s'
                            'ORDER BY v.__duet_ord, v.__duet_part RETURNING %s), ',
                            p.target, collist, collist,
                            CASE WHEN cardinality(drops) = 0 THEN ''
                                 ELSE format('WHERE NOT v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[] ', drops) END,
                            CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
        END IF;
        IF cardinality(drops) > 0 THEN
            quarantine := format('(SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(v.__duet_part, (v.__duet_ord)::pg_catalog.text, '
                                 'v.__duet_failed, %s)) FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[])',
                                 CASE WHEN kind = 'replay' THEN 'pg_catalog.to_jsonb(v.__duet_src)'
                                      ELSE format('(SELECT pg_catalog.to_jsonb(b) FROM %s b WHERE b.ctid OPERATOR(pg_catalog.=) v.__duet_ctid)', p.source) END,
                                 drops);
        END IF;
        IF cardinality(fails) > 0 THEN
            failure := format('(SELECT pg_catalog.format(''row at position %%s of partition "%%s" failed %%s'', v.__duet_ord, v.__duet_part, '
                              'pg_catalog.array_to_string(v.__duet_failed, '', '')) '
                              'FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[] ORDER BY v.__duet_ord LIMIT 1)', fails);
        END IF;
    END IF;

    IF p.topic IS NOT NULL THEN
        published := '(SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(w)) FROM w)';
    END IF;
    IF drifting AND p.mode <> 'aggregate' THEN
        -- The reference schema: the stored one ($7), else the key types of the first row read.
        rows_sql := rows_sql || 'ds AS (SELECT COALESCE($7, (SELECT pg_catalog.jsonb_object_agg(e.key, pg_catalog.jsonb_typeof(e.value)) '
                    'FROM (SELECT v.__duet_drift AS d FROM v WHERE pg_catalog.jsonb_typeof(v.__duet_drift) OPERATOR(pg_catalog.=) ''object'' '
                    'ORDER BY v.__duet_ord LIMIT 1) f, pg_catalog.jsonb_each(f.d) e)) AS schema), '
                    'de AS (SELECT e.key, e.value FROM v, pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(v.__duet_drift) '
                    'OPERATOR(pg_catalog.=) ''object'' THEN v.__duet_drift ELSE ''{}''::pg_catalog.jsonb END) e), ';
        dschema := '(SELECT ds.schema FROM ds)';
        drift := 'pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('
            '''new_keys'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT de.key AS k, pg_catalog.count(*) AS n FROM de '
                'WHERE NOT ((SELECT ds.schema FROM ds) OPERATOR(pg_catalog.?) de.key) GROUP BY 1) a), '
            '''type_changes'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT de.key AS k, pg_catalog.count(*) AS n FROM de '
                'WHERE ((SELECT ds.schema FROM ds) OPERATOR(pg_catalog.->>) de.key) OPERATOR(pg_catalog.<>) pg_catalog.jsonb_typeof(de.value) GROUP BY 1) b), '
            '''missing_keys'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT r.key AS k, pg_catalog.count(*) AS n '
                'FROM v, pg_catalog.jsonb_each_text((SELECT ds.schema FROM ds)) r '
                'WHERE pg_catalog.jsonb_typeof(v.__duet_drift) OPERATOR(pg_catalog.=) ''object'' AND NOT (v.__duet_drift OPERATOR(pg_catalog.?) r.key) GROUP BY 1) c)))';
    END IF;

    RETURN format('WITH src AS (%1$s), %2$s%3$s '
                  'SELECT (SELECT pg_catalog.count(*) FROM v), (SELECT pg_catalog.count(*) FROM w), %4$s, '
                  '%5$s, '
                  '(SELECT pg_catalog.jsonb_object_agg(__duet_part, m) FROM (SELECT __duet_part, (pg_catalog.max(__duet_ord))::pg_catalog.text AS m FROM v GROUP BY 1) m), '
                  '%6$s, %7$s, %8$s, %9$s, %10$s, %11$s',
                  src, rows_sql, left(write, -2),
                  CASE WHEN cardinality(drops) = 0 THEN '0::pg_catalog.int8'
                       ELSE format('(SELECT pg_catalog.count(*) FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[])', drops) END,
                  CASE WHEN checks = '' THEN 'NULL::pg_catalog.jsonb'
                       ELSE '(SELECT pg_catalog.jsonb_object_agg(f, n) FROM (SELECT f, pg_catalog.count(*) AS n FROM v, pg_catalog.unnest(v.__duet_failed) f GROUP BY f) c)' END,
                  quarantine, failure,
                  CASE WHEN kind = 'replay' THEN '(SELECT pg_catalog.array_agg(__duet_qid) FROM v)' ELSE 'NULL::pg_catalog.int8[]' END,
                  published, drift, dschema);
END $$;

-- Metrics as native SQL (issue 13 item 3) ---------------------------------------------------------

-- issue 13 item 3: a metric as native SQL (metrics_sql.c, calc/sqlgen.c; docs/metrics.md "Native SQL")
CREATE FUNCTION duet_metric_sql(name text, dialect text DEFAULT 'postgres') RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_metric_sql';
COMMENT ON FUNCTION duet_metric_sql(text, text) IS
    'the metric the caller uses as one SQL expression over its parameters with exactly Duet''s semantics (dialect ''postgres''); refuses, naming the construct, what has no exact SQL equivalent';
CREATE FUNCTION duet_formula_sql(formula text, typed_names text[] DEFAULT '{}', typed_types text[] DEFAULT '{}',
                                 dialect text DEFAULT 'postgres') RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_formula_sql';
COMMENT ON FUNCTION duet_formula_sql(text, text[], text[], text) IS
    'a formula (calling the metrics the caller sees) as one SQL expression over its variables with exactly Duet''s semantics; variables typed as for duet_metric_signature (undeclared: numbers); refuses, naming the construct, what has no exact SQL equivalent';

-- One inlinable SQL function per global metric that compiles to PostgreSQL, regenerated by every
-- change of a global metric in its transaction (metrics_sql.c); tenant overrides have none.
CREATE SCHEMA duet_metrics;
COMMENT ON SCHEMA duet_metrics IS
    'generated: one LANGUAGE sql IMMUTABLE function per global metric that compiles to PostgreSQL (duet_metrics.roas(revenue, spend)); see duet.metric_functions';
GRANT USAGE ON SCHEMA duet_metrics TO PUBLIC;
CREATE TABLE duet.metric_functions (
    name          text PRIMARY KEY,
    function      text,
    not_compiled  text,
    CHECK ((function IS NULL) <> (not_compiled IS NULL))
);
COMMENT ON TABLE duet.metric_functions IS
    'per global metric: its generated function in schema duet_metrics, or why it has none';
COMMENT ON COLUMN duet.metric_functions.name IS 'the global metric';
COMMENT ON COLUMN duet.metric_functions.function IS 'the generated function''s signature (duet_metrics.roas(revenue double precision, spend double precision)); NULL when the metric does not compile to PostgreSQL';
COMMENT ON COLUMN duet.metric_functions.not_compiled IS 'why the metric has no function: the construct without an exact SQL form; NULL when it has one';
REVOKE ALL ON duet.metric_functions FROM PUBLIC;
GRANT SELECT ON duet.metric_functions TO PUBLIC;
-- global metrics only, so everyone reads every row; RLS says so explicitly
ALTER TABLE duet.metric_functions ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.metric_functions FORCE ROW LEVEL SECURITY;
CREATE POLICY metric_functions_read ON duet.metric_functions FOR SELECT USING (true);
CREATE FUNCTION duet_metric_functions_refresh() RETURNS integer
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metric_functions_refresh_sql';
COMMENT ON FUNCTION duet_metric_functions_refresh() IS
    'regenerates schema duet_metrics from the global metrics (admin; done by every global metric change, needed after a restore since pg_dump skips the generated functions); returns how many it holds';
REVOKE ALL ON FUNCTION duet_metric_functions_refresh() FROM PUBLIC;

-- Red team (advisory-lock DoS): metric writers serialize on a table lock no other role can take ---
CREATE OR REPLACE FUNCTION duet.duet_metric_apply(p_op text, p_tenant text, p_name text, p_formula text, p_description text,
                                       p_arguments text[], p_argument_types text[], p_return_type text,
                                       p_depends_on text[], p_unit text, p_owner text, p_reason text,
                                       p_rolled_back_to bigint, p_actor text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur          duet.metrics;
    glob         duet.metrics;
    last_version bigint;
    new_version  bigint;
    users        text;
    scope        text := CASE WHEN p_tenant IS NULL THEN 'global metric' ELSE format('metric of tenant "%s"', p_tenant) END;
BEGIN
    -- the writers' lock of metrics_write.c (lock_metrics): a table lock no other role can take, not an advisory key any role could hold
    LOCK TABLE duet.metrics IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO cur FROM duet.metrics m WHERE m.name = p_name AND (m.tenant = p_tenant OR (p_tenant IS NULL AND m.tenant IS NULL)) FOR UPDATE;
    SELECT max(h.version) INTO last_version FROM duet.metrics_history h
     WHERE h.name = p_name AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL));
    new_version := greatest(coalesce(cur.version, 0), coalesce(last_version, 0)) + 1;

    -- Who would see a different metric: metrics calling this one in the scopes that resolve the
    -- name to this row (for a global row: every tenant without an override of its own).
    SELECT string_agg(CASE WHEN d.tenant IS NULL THEN d.name ELSE d.name || ' (tenant ' || d.tenant || ')' END,
                      ', ' ORDER BY d.tenant NULLS FIRST, d.name)
      INTO users
      FROM duet.metrics d
     WHERE p_name = ANY (d.depends_on)
       AND NOT (d.name = p_name AND (d.tenant = p_tenant OR (p_tenant IS NULL AND d.tenant IS NULL)))
       AND ((d.tenant = p_tenant OR (p_tenant IS NULL AND d.tenant IS NULL))
            OR (p_tenant IS NULL AND NOT EXISTS (SELECT FROM duet.metrics o
                                                  WHERE o.name = p_name AND o.tenant = d.tenant)));

    IF p_op = 'drop' THEN
        IF cur.name IS NULL THEN
            RETURN 0;
        END IF;
        IF users IS NOT NULL AND (p_tenant IS NULL OR NOT EXISTS (SELECT FROM duet.metrics g
                                                                  WHERE g.name = p_name AND g.tenant IS NULL)) THEN
            RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
                MESSAGE = format('cannot drop %s "%s": other metrics use it', scope, p_name),
                DETAIL = 'Used by: ' || users || '.',
                HINT = 'Drop or redefine those metrics first.';
        END IF;
        DELETE FROM duet.metrics m WHERE m.name = p_name AND (m.tenant = p_tenant OR (p_tenant IS NULL AND m.tenant IS NULL));
    ELSE
        IF cur.name IS NOT NULL AND users IS NOT NULL
           AND (cur.arguments, cur.argument_types, cur.return_type) IS DISTINCT FROM (p_arguments, p_argument_types, p_return_type) THEN
            RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
                MESSAGE = format('cannot change the signature of %s "%s": other metrics use it', scope, p_name),
                DETAIL = format('It is %s(%s) returning %s; the new definition is %s(%s) returning %s. Used by: %s.',
                                p_name, array_to_string(cur.arguments, ', '), cur.return_type,
                                p_name, array_to_string(p_arguments, ', '), p_return_type, users),
                HINT = 'Keep the parameters, their types and the result type, or change those metrics first.';
        END IF;
        IF p_tenant IS NULL AND cur.name IS NOT NULL
           AND (cur.arguments, cur.argument_types, cur.return_type) IS DISTINCT FROM (p_arguments, p_argument_types, p_return_type)
           AND EXISTS (SELECT FROM duet.metrics o WHERE o.name = p_name AND o.tenant IS NOT NULL) THEN
            RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
                MESSAGE = format('cannot change the signature of global metric "%s": tenants override it', p_name),
                DETAIL = 'Overridden by: ' || (SELECT string_agg(o.tenant, ', ' ORDER BY o.tenant) FROM duet.metrics o
                                                WHERE o.name = p_name AND o.tenant IS NOT NULL) || '.',
                HINT = 'An override has the global metric''s signature; keep it, or have the tenants drop their overrides first.';
        END IF;
        IF p_tenant IS NOT NULL THEN
            SELECT * INTO glob FROM duet.metrics g WHERE g.name = p_name AND g.tenant IS NULL;
            IF glob.name IS NOT NULL
               AND (glob.arguments, glob.argument_types, glob.return_type) IS DISTINCT FROM (p_arguments, p_argument_types, p_return_type) THEN
                RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
                    MESSAGE = format('an override of global metric "%s" must keep its signature', p_name),
                    DETAIL = format('The global metric is %s(%s) returning %s; the override is %s(%s) returning %s.',
                                    p_name, array_to_string(glob.arguments, ', '), glob.return_type,
                                    p_name, array_to_string(p_arguments, ', '), p_return_type),
                    HINT = 'Metrics of every tenant call it with those arguments: use the same parameters and result type.';
            END IF;
        END IF;
        INSERT INTO duet.metrics AS m (name, tenant, formula, description, arguments, argument_types, return_type,
                                       depends_on, unit, owner, version, defined_by, defined_at)
             VALUES (p_name, p_tenant, p_formula, p_description, p_arguments, p_argument_types, p_return_type,
                     p_depends_on, p_unit, p_owner, new_version, p_actor, now())
        ON CONFLICT ON CONSTRAINT metrics_name_tenant DO UPDATE
           SET formula = excluded.formula, description = excluded.description, arguments = excluded.arguments,
               argument_types = excluded.argument_types, return_type = excluded.return_type,
               depends_on = excluded.depends_on, unit = excluded.unit, owner = excluded.owner,
               version = excluded.version, defined_by = excluded.defined_by, defined_at = excluded.defined_at;
    END IF;
    INSERT INTO duet.metrics_history (name, tenant, version, operation, formula, description, arguments, argument_types,
                                      return_type, unit, owner, depends_on, rolled_back_to, reason, changed_at, changed_by)
         VALUES (p_name, p_tenant, new_version, p_op,
                 CASE WHEN p_op <> 'drop' THEN p_formula END, CASE WHEN p_op <> 'drop' THEN p_description END,
                 CASE WHEN p_op <> 'drop' THEN p_arguments END, CASE WHEN p_op <> 'drop' THEN p_argument_types END,
                 CASE WHEN p_op <> 'drop' THEN p_return_type END, CASE WHEN p_op <> 'drop' THEN p_unit END,
                 CASE WHEN p_op <> 'drop' THEN p_owner END, CASE WHEN p_op <> 'drop' THEN p_depends_on END,
                 p_rolled_back_to, p_reason, now(), p_actor);
    RETURN new_version;
END $$;

-- Red team: a pipeline's backlog is counted as its owner (the tenant's code in its source table ran as
-- whoever read duet.pipeline_status, a superuser included) --------------------------------------
-- The statement counting a pipeline's backlog, made as the owner: the source rows past the
-- position ($1), or NULL when the source or its column was dropped or the pipeline's owner may not
-- read the source. duet_pipeline_backlog runs it as the pipeline's owner (pipeline_api.c).
CREATE FUNCTION duet.duet_pipeline_backlog_sql(p duet.pipelines) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typ text := (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = p.source AND attname = p.order_by AND NOT attisdropped);
BEGIN
    IF typ IS NULL OR NOT has_table_privilege(p.owner, p.source, 'SELECT') THEN
        RETURN NULL;
    END IF;
    IF p.partition_by IS NULL THEN
        RETURN format('SELECT pg_catalog.count(*) FROM %s s WHERE ($1 OPERATOR(pg_catalog.->>) '''') IS NULL '
                      'OR s.%I OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.->>) '''')::%s',
                      p.source, p.order_by, typ);
    END IF;
    RETURN format('SELECT pg_catalog.count(*) FROM %s s WHERE ($1 OPERATOR(pg_catalog.->>) (s.%I)::pg_catalog.text) IS NULL '
                  'OR s.%I OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.->>) (s.%I)::pg_catalog.text)::%s',
                  p.source, p.partition_by, p.order_by, p.partition_by, typ);
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_backlog_sql(duet.pipelines) IS
    'internal: the statement counting a pipeline''s backlog, or NULL when its owner may not read the source or it was dropped';
REVOKE ALL ON FUNCTION duet.duet_pipeline_backlog_sql(duet.pipelines) FROM PUBLIC;

-- Rows of the source past the position, counted as the pipeline's owner whoever asks: counting
-- runs the tenant's code (a domain CHECK on its order column), which must never run as a
-- superuser or another member of the tenant.
CREATE OR REPLACE FUNCTION duet_pipeline_backlog(p duet.pipelines) RETURNS bigint
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'duet_pipeline_backlog';
COMMENT ON FUNCTION duet_pipeline_backlog(duet.pipelines) IS
    'source rows past a pipeline''s position, counted as the pipeline''s owner (NULL when the caller cannot see the pipeline, the owner may not read the source, or it was dropped)';
COMMENT ON COLUMN duet.pipeline_status.lag_rows IS 'source rows past the position, counted as the pipeline''s owner (NULL when it may not read the source)';

-- Red team (advisory-lock DoS): a config writer's lock is one no role can take from SQL ---------------
-- The lock of one writer of a (tenant, key), held until the transaction ends (config_write.c).
CREATE FUNCTION duet.duet_config_lock(p_tenant text, p_key text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_config_lock';
COMMENT ON FUNCTION duet.duet_config_lock(text, text) IS
    'internal: takes the lock of one writer of a tenant''s config key until the transaction ends (no role can hold it from SQL)';
REVOKE ALL ON FUNCTION duet.duet_config_lock(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION duet.duet_config_apply(op text, p_tenant text, p_key text, p_value jsonb,
                                       p_version bigint, p_actor text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur          duet.config;
    target       duet.config_history;
    def_schema   jsonb;
    last_version bigint;
    new_version  bigint;
    new_value    jsonb;
    retention    int;
    history_id   bigint;
    scope        text := CASE WHEN p_tenant IS NULL THEN 'the default' ELSE format('tenant "%s"', p_tenant) END;
BEGIN
    -- One writer per (tenant, key) at a time: no lost update, versions strictly increase. Not an
    -- advisory key any role could hold: a lock only C can take (config_write.c).
    PERFORM duet.duet_config_lock(p_tenant, p_key);

    SELECT * INTO cur FROM duet.config c
     WHERE c.key = p_key AND (c.tenant = p_tenant OR (p_tenant IS NULL AND c.tenant IS NULL))
       FOR UPDATE;
    SELECT max(h.version) INTO last_version FROM duet.config_history h
     WHERE h.key = p_key AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL));
    new_version := greatest(coalesce(cur.version, 0), coalesce(last_version, 0)) + 1;

    IF op = 'set' THEN
        new_value := p_value;
    ELSIF op = 'unset' THEN
        IF cur.key IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = format('config key "%s" is not set for %s', p_key, scope);
        END IF;
        new_value := NULL;
    ELSIF op = 'rollback' THEN
        SELECT * INTO target FROM duet.config_history h
         WHERE h.key = p_key AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL))
           AND h.version = p_version;
        IF target.id IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = format('version %s of config key "%s" does not exist for %s', p_version, p_key, scope),
                HINT = format('duet_config_history(%L) lists the versions still kept.', p_key);
        END IF;
        new_value := target.value;
    ELSE
        RAISE EXCEPTION 'unknown config operation "%"', op;
    END IF;

    IF new_value IS NOT NULL THEN
        IF octet_length(new_value::text) > 1048576 THEN
            RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
                MESSAGE = format('value for config key "%s" is too large', p_key),
                DETAIL = format('Its JSON text has %s bytes; the limit is 1 MiB.', octet_length(new_value::text));
        END IF;
        SELECT d.schema INTO def_schema FROM duet.config_definitions d WHERE d.key = p_key;
        IF def_schema IS NOT NULL THEN
            PERFORM @extschema@.duet_config_schema_validate(def_schema, new_value, p_key);
        END IF;
        INSERT INTO duet.config AS c (key, tenant, value, version, updated_at, updated_by)
             VALUES (p_key, p_tenant, new_value, new_version, now(), p_actor)
        ON CONFLICT ON CONSTRAINT config_key_tenant DO UPDATE
            SET value = excluded.value, version = excluded.version,
                updated_at = excluded.updated_at, updated_by = excluded.updated_by;
    ELSIF cur.key IS NOT NULL THEN
        DELETE FROM duet.config c
         WHERE c.key = p_key AND (c.tenant = p_tenant OR (p_tenant IS NULL AND c.tenant IS NULL));
    END IF;

    INSERT INTO duet.config_history (key, tenant, version, operation, value, previous_value,
                                     rolled_back_to, changed_at, changed_by)
         VALUES (p_key, p_tenant, new_version, CASE WHEN op = 'set' AND new_value IS NULL THEN 'unset' ELSE op END,
                 new_value, cur.value, CASE WHEN op = 'rollback' THEN p_version END, now(), p_actor)
      RETURNING id INTO history_id;

    -- Delivered to listeners when (and only if) the transaction commits. Every role can LISTEN:
    -- the channel carries only the history row's id, read back under row-level security.
    PERFORM pg_notify('duet_config', history_id::text);

    -- Bounded retention, pruned where we write; the newest entry of the key always stays.
    SELECT s.setting::int INTO retention FROM pg_settings s WHERE s.name = 'duet.config_history_retention';
    IF retention > 0 THEN
        DELETE FROM duet.config_history h
         WHERE h.key = p_key AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL))
           AND h.changed_at < now() - make_interval(mins => retention) AND h.version < new_version;
    END IF;
    RETURN new_version;
END $$;

-- Dates and timestamps in formulas (issue 15 item 1): date and timestamp columns bind.
COMMENT ON FUNCTION duet_calc(text, anyelement) IS
'evaluates a Duet formula with variables bound by name to the columns of a row (number, text, boolean, date and timestamp columns); the result is a jsonb number, string (a date or timestamp as its text), boolean or null';

-- issue 13 item 3: the ClickHouse dialect of the metric SQL compiler (sql/60_metrics.sql, metrics_ch_sql.c)
CREATE FUNCTION duet_clickhouse_sql_functions(OUT name text, OUT arguments text[], OUT expression text,
                                              OUT ddl text, OUT not_compiled text)
    RETURNS SETOF record LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'duet_clickhouse_sql_functions';
COMMENT ON FUNCTION duet_metric_sql(text, text) IS
    'the metric the caller uses as one SQL expression over its parameters with exactly Duet''s semantics (dialect ''postgres'' or ''clickhouse''); refuses, naming the construct, what has no exact SQL equivalent';
COMMENT ON FUNCTION duet_clickhouse_sql_functions() IS
    'per metric the caller uses: its ClickHouse expression with exactly Duet''s semantics (composed metrics inlined; runs on 18.16) and the DROP/CREATE FUNCTION statements of a SQL user-defined function (ClickHouse 21.10 and later), or in not_compiled the construct without an exact ClickHouse form';

-- issue 13 item 3: Duet's + - * / on double precision for the generated PostgreSQL SQL (metrics_sql_ops.c)
CREATE FUNCTION duet_num_add(a double precision, b double precision) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'duet_num_add';
CREATE FUNCTION duet_num_sub(a double precision, b double precision) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'duet_num_sub';
CREATE FUNCTION duet_num_mul(a double precision, b double precision) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'duet_num_mul';
CREATE FUNCTION duet_num_div(a double precision, b double precision) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'duet_num_div';
COMMENT ON FUNCTION duet_num_add(double precision, double precision) IS
    'Duet''s a + b on double precision (generated metric SQL): NULL for a non-finite operand or result, never -0, never an overflow error';
COMMENT ON FUNCTION duet_num_sub(double precision, double precision) IS
    'Duet''s a - b on double precision (generated metric SQL): NULL for a non-finite operand or result, never -0, never an overflow error';
COMMENT ON FUNCTION duet_num_mul(double precision, double precision) IS
    'Duet''s a * b on double precision (generated metric SQL): NULL for a non-finite operand or result, never -0, no overflow or underflow error';
COMMENT ON FUNCTION duet_num_div(double precision, double precision) IS
    'Duet''s a / b on double precision (generated metric SQL): NULL for b = 0 and for a non-finite operand or result, never -0, no overflow or underflow error';

-- Formulas read now() (the statement's start), the caller's tenant's metrics and the metric
-- definitions: STABLE, as PostgreSQL's now() is, not IMMUTABLE (docs/calc.md, "Volatility").
ALTER FUNCTION duet_calc(text, jsonb) STABLE;
ALTER FUNCTION duet_calc(text, anyelement) STABLE;
ALTER FUNCTION duet_calc_number(text, jsonb) STABLE;
ALTER FUNCTION duet_calc_number(text, anyelement) STABLE;
ALTER FUNCTION duet_calc_args(text, VARIADIC "any") STABLE;
ALTER FUNCTION duet_calc_number_args(text, VARIADIC "any") STABLE;
ALTER FUNCTION duet_formula_check(text) STABLE;
ALTER FUNCTION duet_formula_explain(text) STABLE;

-- Issue 19, gold pipelines: "=" formula and metric columns over the group's aggregates, a source
-- row that changes group has its old group recomputed (duet.pipeline_groups), NULL keys are a group.
-- Aggregate pipelines: the group each source row (by the source's primary key) last contributed
-- to, so that a row moving to another group has its old group recomputed too.
CREATE TABLE duet.pipeline_groups (
    pipeline_id    bigint NOT NULL REFERENCES duet.pipelines ON DELETE CASCADE,
    tenant         text NOT NULL,
    src_key        text NOT NULL,
    grp            jsonb NOT NULL,
    PRIMARY KEY (pipeline_id, src_key)
);
COMMENT ON TABLE duet.pipeline_groups IS 'aggregate pipelines: the group each source row last contributed to (a row that changes group has its old group recomputed)';
COMMENT ON COLUMN duet.pipeline_groups.pipeline_id IS 'the aggregate pipeline';
COMMENT ON COLUMN duet.pipeline_groups.tenant IS 'tenant of the pipeline';
COMMENT ON COLUMN duet.pipeline_groups.src_key IS 'the source row''s primary key (a JSON array, as text)';
COMMENT ON COLUMN duet.pipeline_groups.grp IS 'the group key values the row contributed to (a JSON array in key order)';
SELECT pg_catalog.pg_extension_config_dump('duet.pipeline_groups', '');
REVOKE ALL ON duet.pipeline_groups FROM PUBLIC;
GRANT SELECT ON duet.pipeline_groups TO PUBLIC;
ALTER TABLE duet.pipeline_groups ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.pipeline_groups FORCE ROW LEVEL SECURITY;
CREATE POLICY pipeline_groups_tenant ON duet.pipeline_groups
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
DROP FUNCTION duet.duet_pipeline_commit(bigint, text, timestamptz, bigint, bigint, bigint, jsonb, jsonb,
                                        jsonb, bigint[], jsonb, jsonb, jsonb);
CREATE FUNCTION duet.duet_pipeline_commit(p_id bigint, p_kind text, p_started timestamptz, p_in bigint,
        p_out bigint, p_dropped bigint, p_failures jsonb, p_position jsonb, p_quarantine jsonb,
        p_replayed bigint[], p_published jsonb, p_drift jsonb, p_schema jsonb, p_members jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p duet.pipelines;
BEGIN
    UPDATE duet.pipelines
       SET position = CASE WHEN p_kind = 'incremental' THEN position || coalesce(p_position, '{}') ELSE position END,
           drift_schema = coalesce(drift_schema, p_schema),
           last_run_at = clock_timestamp(), last_success_at = clock_timestamp()
     WHERE id = p_id
    RETURNING * INTO p;
    IF p_quarantine IS NOT NULL THEN
        INSERT INTO duet.pipeline_quarantine (pipeline_id, tenant, part, pos, failed, source_row)
        SELECT p.id, p.tenant, q ->> 0, q ->> 1, ARRAY(SELECT jsonb_array_elements_text(q -> 2)), q -> 3
          FROM jsonb_array_elements(p_quarantine) q;
    END IF;
    IF p_members IS NOT NULL THEN
        INSERT INTO duet.pipeline_groups AS g (pipeline_id, tenant, src_key, grp)
        SELECT p.id, p.tenant, m ->> 0, m -> 1 FROM jsonb_array_elements(p_members) m
        ON CONFLICT (pipeline_id, src_key) DO UPDATE SET grp = EXCLUDED.grp WHERE g.grp IS DISTINCT FROM EXCLUDED.grp;
    END IF;
    IF p_replayed IS NOT NULL THEN
        UPDATE duet.pipeline_quarantine SET replayed_at = now() WHERE pipeline_id = p.id AND id = ANY (p_replayed);
    END IF;
    IF p_published IS NOT NULL AND p.topic IS NOT NULL THEN
        INSERT INTO duet.kafka_outbox (topic, key, value, headers)
        SELECT p.topic, NULL, r::text, jsonb_build_object('tenant', p.tenant, 'pipeline', p.name)
          FROM jsonb_array_elements(p_published) r;
    END IF;
    IF p_in > 0 OR p_kind <> 'incremental' THEN
        INSERT INTO duet.pipeline_runs (pipeline_id, tenant, kind, status, started_at, rows_in, rows_out,
                                        rows_dropped, failures, drift, position)
        VALUES (p.id, p.tenant, p_kind, 'ok', p_started, p_in, p_out, p_dropped, coalesce(p_failures, '{}'),
                coalesce(p_drift, '{}'), p.position);
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_commit(bigint, text, timestamptz, bigint, bigint, bigint, jsonb, jsonb,
                                              jsonb, bigint[], jsonb, jsonb, jsonb, jsonb) IS
    'internal: records a successful pipeline run in its transaction';
REVOKE ALL ON FUNCTION duet.duet_pipeline_commit(bigint, text, timestamptz, bigint, bigint, bigint, jsonb, jsonb,
                                                 jsonb, bigint[], jsonb, jsonb, jsonb, jsonb) FROM PUBLIC;
CREATE OR REPLACE FUNCTION duet.duet_pipeline_sql(p duet.pipelines, kind text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ord_type  text := duet.duet_pipeline_column_type(p.source, p.order_by, 'order_by');
    part_sql  text := CASE WHEN p.partition_by IS NULL THEN '''''::pg_catalog.text'
                           ELSE format('(s.%I)::pg_catalog.text', p.partition_by) END;
    cols      text[] := ARRAY(SELECT jsonb_object_keys(p.transform) ORDER BY 1);
    collist   text := (SELECT string_agg(format('%I', x), ', ' ORDER BY x) FROM unnest(cols) x);
    keycols   text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(p.key) k);
    sets      text := (SELECT string_agg(format('%1$I = EXCLUDED.%1$I', x), ', ')
                         FROM unnest(cols) x WHERE x <> ALL (p.key));
    drops     text[] := ARRAY(SELECT name FROM duet.pipeline_expectations
                               WHERE pipeline_id = p.id AND action = 'drop' ORDER BY name);
    fails     text[] := ARRAY(SELECT name FROM duet.pipeline_expectations
                               WHERE pipeline_id = p.id AND action = 'fail' ORDER BY name);
    formulas  boolean := p.mode <> 'aggregate' AND EXISTS (SELECT FROM jsonb_each_text(p.transform) t WHERE left(t.value, 1) = '=');
    -- aggregate: the source's primary key, the identity whose group duet.pipeline_groups tracks
    srckey    text := coalesce((SELECT format('(pg_catalog.jsonb_build_array(%s))::pg_catalog.text',
                                              string_agg(format('s.%I', a.attname), ', ' ORDER BY k.n))
                                  FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(att, n)
                                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att
                                 WHERE i.indrelid = p.source AND i.indisprimary AND p.mode = 'aggregate'
                                HAVING count(*) > 0), 'NULL::pg_catalog.text');
    gex       text[];
    gnull     text;
    gcols     text;
    members   text := 'NULL::pg_catalog.jsonb';
    drifting  boolean := p.drift_column IS NOT NULL AND kind <> 'replay';
    exprs     text := '';
    checks    text := '';
    vars      text;
    e         record;
    c         text;
    src       text;
    rows_sql  text;
    past      text;
    write     text;
    keep      text;
    quarantine text := 'NULL::pg_catalog.jsonb';
    failure   text := 'NULL::pg_catalog.text';
    published text := 'NULL::pg_catalog.jsonb';
    drift     text := '''{}''::pg_catalog.jsonb';
    dschema   text := 'NULL::pg_catalog.jsonb';
BEGIN
    -- src: the rows of this run, with their partition, order value and what the quarantine and
    -- formulas need (the row itself only for formulas and replays; else its ctid, read again for
    -- the few quarantined rows within the same snapshot).
    IF kind = 'replay' THEN
        src := format('SELECT s AS __duet_src, s.*, q.part AS __duet_part, q.pos::%s AS __duet_ord, q.id AS __duet_qid, '
                      'NULL::pg_catalog.tid AS __duet_ctid '
                      'FROM duet.pipeline_quarantine q CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%s, q.source_row) s '
                      'WHERE q.pipeline_id OPERATOR(pg_catalog.=) $6 AND q.replayed_at IS NULL '
                      'ORDER BY q.id LIMIT $2', ord_type, p.source);
    ELSE
        src := format('SELECT %s s.*, %s AS __duet_part, s.%I AS __duet_ord, NULL::pg_catalog.int8 AS __duet_qid, '
                      's.ctid AS __duet_ctid FROM %s s WHERE ',
                      CASE WHEN formulas THEN 's AS __duet_src,' ELSE '' END, part_sql, p.order_by, p.source);
        IF kind IN ('incremental', 'tail', 'count') THEN
            past := format('(($1 OPERATOR(pg_catalog.->>) %1$s) IS NULL OR s.%2$I OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.->>) %1$s)::%3$s)',
                           part_sql, p.order_by, ord_type);
            src := src || past;
            IF kind = 'count' THEN
                -- How many rows are past the position, counting no further than one batch and one.
                RETURN format('SELECT pg_catalog.count(*) FROM (SELECT FROM %s s WHERE %s LIMIT $2 OPERATOR(pg_catalog.+) 1) c',
                              p.source, past);
            ELSIF kind = 'incremental' THEN
                -- A batch: ordered by the raw columns, each partition's rows are a prefix of its rows.
                -- ('tail': every row past the position fits in the batch, so no order is needed.)
                src := src || format(' ORDER BY s.%1$I%2$s LIMIT $2', p.order_by,
                                     CASE WHEN p.partition_by IS NULL THEN '' ELSE format(', s.%I', p.partition_by) END);
            END IF;
        ELSE
            src := src || format('s.%1$I OPERATOR(pg_catalog.>=) $3::%2$s AND s.%1$I OPERATOR(pg_catalog.<=) $4::%2$s '
                                 'AND ($5 IS NULL OR %3$s OPERATOR(pg_catalog.=) $5)', p.order_by, ord_type, part_sql);
        END IF;
    END IF;

    IF p.mode = 'aggregate' THEN
        -- No expectations (checked at creation). The groups the new rows touch, with the groups
        -- their source keys contributed to before (duet.pipeline_groups: a row that moved to
        -- another group leaves its old group to recompute), are recomputed from the whole source;
        -- a NULL key is a group of its own. Key and SQL columns are the GROUP BY's select list (a),
        -- "=" columns Duet formulas over a's columns. A group left with no row is deleted.
        gex := ARRAY(SELECT format('(%s)::%s', duet.duet_pipeline_expr(p.transform ->> k, NULL, NULL),
                                   duet.duet_pipeline_column_type(p.target, k, 'target'))
                       FROM unnest(p.key) WITH ORDINALITY u(k, i) ORDER BY i);
        -- g's columns are named __duet_k1.. so that a key expression (source columns, unqualified)
        -- in a subquery over g never resolves to a column of g
        gcols := (SELECT string_agg(format('__duet_k%s', i), ', ') FROM generate_subscripts(p.key, 1) i);
        gnull := (SELECT string_agg(format('g.__duet_k%s IS NULL', i), ' OR ') FROM generate_subscripts(p.key, 1) i);
        rows_sql := 'v AS MATERIALIZED (SELECT src.*, NULL::pg_catalog.text[] AS __duet_failed FROM src), '
            || format('nv AS MATERIALIZED (SELECT DISTINCT %s, %s AS __duet_sk FROM v s), ',
                      (SELECT string_agg(format('%s AS %I', gex[i], p.key[i]), ', ') FROM generate_subscripts(p.key, 1) i),
                      srckey)
            -- og: the groups the rows' earlier versions contributed to, new ones excepted
            || format('og(%s) AS MATERIALIZED (SELECT %s FROM duet.pipeline_groups m '
                      'WHERE m.pipeline_id OPERATOR(pg_catalog.=) $6 AND m.src_key OPERATOR(pg_catalog.=) ANY '
                      '(SELECT nv.__duet_sk FROM nv WHERE nv.__duet_sk IS NOT NULL) EXCEPT SELECT %s FROM nv), '
                      'g(%1$s) AS (SELECT %3$s FROM nv UNION ALL SELECT %1$s FROM og), ',
                      gcols,
                      (SELECT string_agg(format('(m.grp OPERATOR(pg_catalog.->>) %s)::%s', i - 1,
                                                duet.duet_pipeline_column_type(p.target, p.key[i], 'target')), ', ')
                         FROM generate_subscripts(p.key, 1) i),
                      keycols)
            -- the source rows of those groups: of the new rows' groups by equality (a join the
            -- planner sizes on the rows read, as a GROUP BY of them), of the earlier groups only
            -- when there are any, and those with a NULL key column only when a group has one
            -- (one-time filters), matched NULL to NULL
            || format('a AS MATERIALIZED (SELECT %s FROM (SELECT s.* FROM %s s WHERE (%s) OPERATOR(pg_catalog.=) ANY (SELECT DISTINCT %3$s FROM v) '
                      'UNION ALL SELECT s.* FROM %2$s s WHERE EXISTS (SELECT FROM og) AND (%3$s) OPERATOR(pg_catalog.=) ANY (SELECT %4$s FROM og) '
                      'UNION ALL SELECT s.* FROM %2$s s WHERE EXISTS (SELECT FROM g WHERE %5$s) AND (%6$s) '
                      'AND EXISTS (SELECT FROM g WHERE %7$s)) s GROUP BY %8$s), ',
                      (SELECT string_agg(format('%s AS %I', CASE WHEN x = ANY (p.key) THEN gex[array_position(p.key, x)]
                                                                 ELSE duet.duet_pipeline_expr(p.transform ->> x, NULL, NULL) END, x), ', ' ORDER BY x)
                         FROM unnest(cols) x WHERE left(p.transform ->> x, 1) <> '=' OR x = ANY (p.key)),
                      p.source, array_to_string(gex, ', '), gcols,
                      gnull,
                      (SELECT string_agg(format('%s IS NULL', ge), ' OR ') FROM unnest(gex) ge),
                      (SELECT string_agg(format('(g.__duet_k%1$s OPERATOR(pg_catalog.=) %2$s OR (g.__duet_k%1$s IS NULL AND %2$s IS NULL))', i, gex[i]), ' AND ')
                         FROM generate_subscripts(p.key, 1) i),
                      array_to_string(gex, ', '))
            || format('gone AS (SELECT %s FROM g EXCEPT SELECT %s FROM a), ', gcols, keycols);
        write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM a ON CONFLICT (%s) DO %s RETURNING %s), '
                        'dg AS (DELETE FROM %s t WHERE EXISTS (SELECT FROM gone) AND EXISTS (SELECT FROM gone g WHERE %s)), ',
                        p.target, collist,
                        (SELECT string_agg(CASE WHEN left(p.transform ->> x, 1) = '=' AND x <> ALL (p.key)
                                                THEN duet.duet_pipeline_expr(p.transform ->> x, 'a',
                                                         duet.duet_pipeline_column_type(p.target, x, 'target'))
                                                ELSE format('a.%I', x) END, ', ' ORDER BY x) FROM unnest(cols) x),
                        keycols,
                        CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END,
                        CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END,
                        p.target,
                        (SELECT string_agg(format('(g.__duet_k%1$s OPERATOR(pg_catalog.=) t.%2$I OR (g.__duet_k%1$s IS NULL AND t.%2$I IS NULL))', i, p.key[i]), ' AND ')
                           FROM generate_subscripts(p.key, 1) i));
        IF srckey <> 'NULL::pg_catalog.text' THEN
            members := format('(SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(nv.__duet_sk, pg_catalog.jsonb_build_array(%s))) FROM nv)',
                              (SELECT string_agg(format('nv.%I', k), ', ') FROM unnest(p.key) k));
        END IF;
    ELSE
        FOREACH c IN ARRAY cols LOOP
            exprs := exprs || format(', %s AS %I',
                                     duet.duet_pipeline_expr(p.transform ->> c, 's.__duet_src',
                                                             duet.duet_pipeline_column_type(p.target, c, 'target')), c);
        END LOOP;
        vars := (SELECT format('pg_catalog.jsonb_build_object(%s)', string_agg(format('%L::pg_catalog.text, x.%I', x, x), ', '))
                   FROM unnest(cols) x);
        FOR e IN SELECT name, predicate FROM duet.pipeline_expectations WHERE pipeline_id = p.id ORDER BY name LOOP
            checks := checks || format(', CASE WHEN %s IS NOT TRUE THEN %L::pg_catalog.text END',
                                       duet.duet_pipeline_expr(e.predicate, vars, 'pg_catalog.bool'), e.name);
        END LOOP;
        -- v: the transformed rows with the names of the expectations each failed; the transform is
        -- a subquery (not a CTE of its own) so that the rows are materialized once.
        rows_sql := format('v AS MATERIALIZED (SELECT x.*, %s AS __duet_failed FROM '
                           '(SELECT s.__duet_part, s.__duet_ord, s.__duet_qid, s.__duet_ctid%s%s%s FROM src s) x), ',
                           CASE WHEN checks = '' THEN 'NULL::pg_catalog.text[]'
                                ELSE format('pg_catalog.array_remove(ARRAY[NULL::pg_catalog.text%s], NULL)', checks) END,
                           CASE WHEN kind = 'replay' THEN ', s.__duet_src' ELSE '' END,
                           CASE WHEN drifting THEN format(', s.%I AS __duet_drift', p.drift_column) ELSE '' END,
                           exprs);
        IF p.mode = 'upsert' THEN
            keep := CASE WHEN cardinality(drops) = 0 THEN 'true'
                         ELSE format('NOT v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[]', drops) END;
            IF kind IN ('replay', 'backfill') THEN
                -- A replayed or backfilled row may be older than what the pipeline has written of its
                -- key: it is skipped when the source holds a later row (by order value, then
                -- partition) of the same key that a run already read and wrote (not in quarantine).
                -- lw maps each key of v to its latest such row, in one scan of the source whatever
                -- the estimates: the IN tests stay hashed subplans (IS TRUE keeps them from becoming
                -- joins, which a one-row estimate of v would make nested loops over the source).
                rows_sql := rows_sql || format('lw AS MATERIALIZED (SELECT pg_catalog.jsonb_object_agg(m.k, '
                    'pg_catalog.jsonb_build_array(m.o, m.p) ORDER BY m.o, m.p) AS map FROM ('
                    'SELECT (pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text AS k, s.%2$I AS o, %3$s AS p FROM %4$s s '
                    'WHERE s.%2$I OPERATOR(pg_catalog.<=) ($1 OPERATOR(pg_catalog.->>) %3$s)::%5$s '
                    'AND ((%1$s) IN (SELECT %6$s FROM v)) IS TRUE '
                    'AND ((%3$s, (s.%2$I)::pg_catalog.text) IN (SELECT q.part, q.pos FROM duet.pipeline_quarantine q '
                    'WHERE q.pipeline_id OPERATOR(pg_catalog.=) $6 AND q.replayed_at IS NULL)) IS NOT TRUE) m), ',
                    (SELECT string_agg(duet.duet_pipeline_expr(p.transform ->> k, 's',
                                                               duet.duet_pipeline_column_type(p.target, k, 'target')), ', ')
                       FROM unnest(p.key) k),
                    p.order_by, part_sql, p.source, ord_type,
                    (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k));
                keep := keep || format(' AND ((((SELECT lw.map FROM lw) OPERATOR(pg_catalog.->) '
                    '(pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text) OPERATOR(pg_catalog.->>) 0)::%2$s '
                    'OPERATOR(pg_catalog.>) v.__duet_ord '
                    'OR (((((SELECT lw.map FROM lw) OPERATOR(pg_catalog.->) (pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text) '
                    'OPERATOR(pg_catalog.->>) 0)::%2$s OPERATOR(pg_catalog.=) v.__duet_ord) '
                    'AND ((((SELECT lw.map FROM lw) OPERATOR(pg_catalog.->) (pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text) '
                    'OPERATOR(pg_catalog.->>) 1) OPERATOR(pg_catalog.>) v.__duet_part))) IS NOT TRUE',
                    (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k), ord_type);
            END IF;
            write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM (SELECT DISTINCT ON (%s) * FROM v %s'
                            'ORDER BY %s, v.__duet_ord DESC, v.__duet_part DESC) d '
                            'ON CONFLICT (%s) DO %s RETURNING %s), ',
                            p.target, collist, collist, keycols,
                            CASE WHEN keep = 'true' THEN '' ELSE 'WHERE ' || keep || ' ' END,
                            (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k),
                            keycols, CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END,
                            CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
        ELSE
            write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM v %s'
                            'ORDER BY v.__duet_ord, v.__duet_part RETURNING %s), ',
                            p.target, collist, collist,
                            CASE WHEN cardinality(drops) = 0 THEN ''
                                 ELSE format('WHERE NOT v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[] ', drops) END,
                            CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
        END IF;
        IF cardinality(drops) > 0 THEN
            quarantine := format('(SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(v.__duet_part, (v.__duet_ord)::pg_catalog.text, '
                                 'v.__duet_failed, %s)) FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[])',
                                 CASE WHEN kind = 'replay' THEN 'pg_catalog.to_jsonb(v.__duet_src)'
                                      ELSE format('(SELECT pg_catalog.to_jsonb(b) FROM %s b WHERE b.ctid OPERATOR(pg_catalog.=) v.__duet_ctid)', p.source) END,
                                 drops);
        END IF;
        IF cardinality(fails) > 0 THEN
            failure := format('(SELECT pg_catalog.format(''row at position %%s of partition "%%s" failed %%s'', v.__duet_ord, v.__duet_part, '
                              'pg_catalog.array_to_string(v.__duet_failed, '', '')) '
                              'FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[] ORDER BY v.__duet_ord LIMIT 1)', fails);
        END IF;
    END IF;

    IF p.topic IS NOT NULL THEN
        published := '(SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(w)) FROM w)';
    END IF;
    IF drifting AND p.mode <> 'aggregate' THEN
        -- The reference schema: the stored one ($7), else the key types of the first row read.
        rows_sql := rows_sql || 'ds AS (SELECT COALESCE($7, (SELECT pg_catalog.jsonb_object_agg(e.key, pg_catalog.jsonb_typeof(e.value)) '
                    'FROM (SELECT v.__duet_drift AS d FROM v WHERE pg_catalog.jsonb_typeof(v.__duet_drift) OPERATOR(pg_catalog.=) ''object'' '
                    'ORDER BY v.__duet_ord LIMIT 1) f, pg_catalog.jsonb_each(f.d) e)) AS schema), '
                    'de AS (SELECT e.key, e.value FROM v, pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(v.__duet_drift) '
                    'OPERATOR(pg_catalog.=) ''object'' THEN v.__duet_drift ELSE ''{}''::pg_catalog.jsonb END) e), ';
        dschema := '(SELECT ds.schema FROM ds)';
        drift := 'pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('
            '''new_keys'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT de.key AS k, pg_catalog.count(*) AS n FROM de '
                'WHERE NOT ((SELECT ds.schema FROM ds) OPERATOR(pg_catalog.?) de.key) GROUP BY 1) a), '
            '''type_changes'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT de.key AS k, pg_catalog.count(*) AS n FROM de '
                'WHERE ((SELECT ds.schema FROM ds) OPERATOR(pg_catalog.->>) de.key) OPERATOR(pg_catalog.<>) pg_catalog.jsonb_typeof(de.value) GROUP BY 1) b), '
            '''missing_keys'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT r.key AS k, pg_catalog.count(*) AS n '
                'FROM v, pg_catalog.jsonb_each_text((SELECT ds.schema FROM ds)) r '
                'WHERE pg_catalog.jsonb_typeof(v.__duet_drift) OPERATOR(pg_catalog.=) ''object'' AND NOT (v.__duet_drift OPERATOR(pg_catalog.?) r.key) GROUP BY 1) c)))';
    END IF;

    RETURN format('WITH src AS (%1$s), %2$s%3$s '
                  'SELECT (SELECT pg_catalog.count(*) FROM v), (SELECT pg_catalog.count(*) FROM w), %4$s, '
                  '%5$s, '
                  '(SELECT pg_catalog.jsonb_object_agg(__duet_part, m) FROM (SELECT __duet_part, (pg_catalog.max(__duet_ord))::pg_catalog.text AS m FROM v GROUP BY 1) m), '
                  '%6$s, %7$s, %8$s, %9$s, %10$s, %11$s, %12$s',
                  src, rows_sql, left(write, -2),
                  CASE WHEN cardinality(drops) = 0 THEN '0::pg_catalog.int8'
                       ELSE format('(SELECT pg_catalog.count(*) FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[])', drops) END,
                  CASE WHEN checks = '' THEN 'NULL::pg_catalog.jsonb'
                       ELSE '(SELECT pg_catalog.jsonb_object_agg(f, n) FROM (SELECT f, pg_catalog.count(*) AS n FROM v, pg_catalog.unnest(v.__duet_failed) f GROUP BY f) c)' END,
                  quarantine, failure,
                  CASE WHEN kind = 'replay' THEN '(SELECT pg_catalog.array_agg(__duet_qid) FROM v)' ELSE 'NULL::pg_catalog.int8[]' END,
                  published, drift, dschema, members);
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_sql(duet.pipelines, text) IS
    'internal: the statement of one pipeline run (incremental, backfill or replay), run as the pipeline''s owner';
REVOKE ALL ON FUNCTION duet.duet_pipeline_sql(duet.pipelines, text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION duet.duet_pipeline_check(p duet.pipelines, p_caller oid) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k   text;
    e   record;
    n   int;
BEGIN
    FOR k IN SELECT unnest(ARRAY[p.source, p.target]::regclass[]) LOOP
        IF (SELECT relkind FROM pg_class WHERE oid = k::regclass) NOT IN ('r', 'p') THEN
            RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
                MESSAGE = format('"%s" is not a table', k),
                DETAIL = 'A pipeline reads a table and writes a table.';
        END IF;
    END LOOP;
    IF p.source = p.target THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('pipeline "%s" reads and writes the same table', p.name);
    END IF;
    IF NOT has_table_privilege(p_caller, p.source, 'SELECT') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('permission denied for table %s', p.source),
            DETAIL = 'A pipeline runs as its creator, who needs SELECT on its source.';
    END IF;
    IF NOT has_table_privilege(p_caller, p.target, 'INSERT')
       OR (p.mode <> 'append' AND NOT has_table_privilege(p_caller, p.target, 'UPDATE'))
       OR (p.mode = 'aggregate' AND NOT has_table_privilege(p_caller, p.target, 'DELETE')) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('permission denied for table %s', p.target),
            DETAIL = 'A pipeline runs as its creator, who needs INSERT on its target (and UPDATE for upsert, UPDATE and DELETE for aggregate).';
    END IF;
    PERFORM duet.duet_pipeline_column_type(p.source, p.order_by, 'order_by');
    IF p.partition_by IS NOT NULL THEN
        PERFORM duet.duet_pipeline_column_type(p.source, p.partition_by, 'partition_by');
    END IF;
    IF p.drift_column IS NOT NULL
       AND duet.duet_pipeline_column_type(p.source, p.drift_column, 'drift_column') <> 'jsonb' THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = format('pipeline drift_column "%s" is not jsonb', p.drift_column);
    END IF;
    IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = p.source AND attname LIKE '\_\_duet\_%' AND NOT attisdropped) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('source %s has a column named __duet_*', p.source),
            DETAIL = 'Pipelines name their own columns so.';
    END IF;
    IF jsonb_typeof(p.transform) IS DISTINCT FROM 'object' OR p.transform = '{}' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'pipeline transform must be a non-empty JSON object',
            HINT = 'Map target columns to SQL expressions over source columns or "=" Duet formulas: {"amount": "(payload->>''amount'')::numeric", "ctr": "=clicks / impressions"}.';
    END IF;
    FOR k IN SELECT jsonb_object_keys(p.transform) LOOP
        IF jsonb_typeof(p.transform -> k) <> 'string' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('pipeline transform of column "%s" must be a string', k);
        END IF;
        PERFORM duet.duet_pipeline_column_type(p.target, k, 'target');
        PERFORM duet.duet_pipeline_check_expr(p.transform ->> k, format('transform of column "%s"', k));
        IF p.mode = 'aggregate' AND left(p.transform ->> k, 1) = '=' AND k = ANY (p.key) THEN
            RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                MESSAGE = format('aggregate pipeline key column "%s" must be a SQL expression', k),
                HINT = 'Key columns are the GROUP BY expressions; "=" formulas compute the other columns from the group''s aggregates.';
        END IF;
    END LOOP;
    IF p.mode IN ('upsert', 'aggregate') AND cardinality(p.key) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s pipeline "%s" needs a key', p.mode, p.name),
            HINT = 'key => ARRAY[...] names the target columns that identify a row; the target needs a unique index on them.';
    END IF;
    FOREACH k IN ARRAY p.key LOOP
        IF NOT p.transform ? k THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('pipeline key column "%s" is not in the transform', k);
        END IF;
    END LOOP;
    -- A NULL key is a group of its own: a nullable key needs a unique index that treats NULLs
    -- as equal, or each run would insert the NULL group again.
    IF p.mode = 'aggregate'
       AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = p.target AND a.attname = ANY (p.key) AND NOT a.attnotnull)
       AND NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = p.target AND i.indisunique AND i.indnullsnotdistinct
                          AND i.indnkeyatts = cardinality(p.key) AND i.indexprs IS NULL
                          AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
                                WHERE a.attrelid = p.target AND a.attnum = ANY (i.indkey::int2[]))
                              = (SELECT array_agg(u.c ORDER BY u.c) FROM unnest(p.key) u(c))) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('aggregate pipeline target %s needs a unique index NULLS NOT DISTINCT on its key', p.target),
            DETAIL = 'A NULL key is a group of its own, and a key column of the target may be NULL.',
            HINT = 'CREATE UNIQUE INDEX ON the target (key columns) NULLS NOT DISTINCT, or declare the key columns NOT NULL.';
    END IF;
    SELECT count(*) INTO n FROM duet.pipeline_expectations WHERE pipeline_id = p.id;
    IF n > 0 AND p.mode = 'aggregate' THEN
        RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
            MESSAGE = 'aggregate pipelines take no expectations',
            HINT = 'Check rows in the pipeline that feeds the aggregate.';
    END IF;
    FOR e IN SELECT name, predicate FROM duet.pipeline_expectations WHERE pipeline_id = p.id LOOP
        PERFORM duet.duet_pipeline_check_expr(e.predicate, format('expectation "%s"', e.name));
    END LOOP;
    IF p.topic IS NOT NULL THEN
        PERFORM duet.duet_rule_check_target(p_caller, NULL, p.topic);
    END IF;
    PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'incremental'));
    PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'tail'));
    PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'count'));
    PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'backfill'));
    IF EXISTS (SELECT FROM duet.pipeline_expectations WHERE pipeline_id = p.id AND action = 'drop') THEN
        PERFORM duet.duet_pipeline_validate(p_caller, duet.duet_pipeline_sql(p, 'replay'));
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_check(duet.pipelines, oid) IS
    'internal: checks a pipeline''s fields and plans its statements as the caller, raising the first problem';
REVOKE ALL ON FUNCTION duet.duet_pipeline_check(duet.pipelines, oid) FROM PUBLIC;

-- 0.2.0: how fresh each partition's high watermark is (duet.kafka_partition_status.high_watermark_at,
-- also in duet.kafka_status.partitions): duet_kafka_worker_stats() gets a column, so it and the
-- two views over it are made again.
DROP VIEW duet.kafka_status;
DROP VIEW duet.kafka_partition_status;
DROP FUNCTION duet_kafka_worker_stats();
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
COMMENT ON VIEW duet.kafka_status IS 'Kafka consumers: state, rows, bytes, batches, errors and last error since the workers started, dead letters, lag, rows/s, per-partition offsets, the gaps (ranges and messages skipped, see duet.kafka_gaps), and why it is not running';
COMMENT ON COLUMN duet.kafka_status.name IS 'consumer name';
COMMENT ON COLUMN duet.kafka_status.topic IS 'Kafka topic';
COMMENT ON COLUMN duet.kafka_status.target IS 'target table';
COMMENT ON COLUMN duet.kafka_status.format IS 'message format';
COMMENT ON COLUMN duet.kafka_status.parallelism IS 'partition groups configured (each read by one pool worker at a time)';
COMMENT ON COLUMN duet.kafka_status.owner IS 'role the rows are written as';
COMMENT ON COLUMN duet.kafka_status.state IS 'stopped, starting, running, idle, broker unreachable, error, or not running (no worker serves this database: see reason)';
COMMENT ON COLUMN duet.kafka_status.workers IS 'partition groups served now by the pool workers';
COMMENT ON COLUMN duet.kafka_status.rows IS 'rows ingested since the workers started';
COMMENT ON COLUMN duet.kafka_status.bytes IS 'message bytes ingested since the workers started';
COMMENT ON COLUMN duet.kafka_status.batches IS 'batches committed since the workers started';
COMMENT ON COLUMN duet.kafka_status.errors IS 'errors since the workers started (messages sent to dead letters included)';
COMMENT ON COLUMN duet.kafka_status.dead_letters IS 'rows of duet.kafka_dead_letters for this consumer';
COMMENT ON COLUMN duet.kafka_status.last_error IS 'the most recent error of any of its workers';
COMMENT ON COLUMN duet.kafka_status.last_error_at IS 'when the most recent error happened';
COMMENT ON COLUMN duet.kafka_status.lag IS 'messages not yet ingested, summed over partitions';
COMMENT ON COLUMN duet.kafka_status.rate IS 'rows per second ingested recently';
COMMENT ON COLUMN duet.kafka_status.partitions IS 'per partition: committed_offset, high_watermark, lag, high_watermark_at (a jsonb array)';
COMMENT ON COLUMN duet.kafka_status.gaps IS 'ranges of offsets skipped (duet.kafka_gaps)';
COMMENT ON COLUMN duet.kafka_status.gap_messages IS 'messages in those ranges';
COMMENT ON COLUMN duet.kafka_status.reason IS 'why the consumer is not running (state not running: pg_duet not preloaded, the database not in duet.databases, no background worker slot for the pool); duet_doctor() gives the fix';
COMMENT ON COLUMN duet.kafka_status.pool_workers IS 'indexes of the pool workers (duet.kafka_pool) serving its partition groups now';
COMMENT ON COLUMN duet.kafka_partition_status.name IS 'consumer name';
COMMENT ON COLUMN duet.kafka_partition_status.partition IS 'Kafka partition';
COMMENT ON COLUMN duet.kafka_partition_status.committed_offset IS 'next offset to ingest, as committed with the rows';
COMMENT ON COLUMN duet.kafka_partition_status.high_watermark IS 'the partition''s high watermark as last seen by a running worker; NULL when none runs';
COMMENT ON COLUMN duet.kafka_partition_status.lag IS 'messages not yet ingested: high watermark minus committed offset';
COMMENT ON COLUMN duet.kafka_partition_status.committed_at IS 'when the offset was last committed';
COMMENT ON COLUMN duet.kafka_partition_status.high_watermark_at IS 'when the high watermark was last known current (its leader broker connected, from librdkafka''s statistics, duet.kafka_statistics_interval); older during an outage, when lag is the last one known';
GRANT SELECT ON duet.kafka_status, duet.kafka_partition_status TO duet_kafka_admin, pg_monitor;

-- The age of the watermarks behind a consumer's lag reaches Prometheus and duet.health
-- (lag_age_seconds): a lag that stopped moving during an outage says how old it is.
DROP VIEW duet.health;
DROP FUNCTION duet_metrics_kafka();
CREATE FUNCTION duet_metrics_kafka(OUT consumer text, OUT topic text, OUT state text,
        OUT workers bigint, OUT rows bigint, OUT bytes bigint, OUT batches bigint, OUT errors bigint,
        OUT dead_letters bigint, OUT lag bigint, OUT rows_per_second double precision,
        OUT skipped_messages bigint, OUT lag_age_seconds double precision)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_kafka';
COMMENT ON FUNCTION duet_metrics_kafka() IS
    'Kafka consumers: state, workers, rows, bytes, batches, errors, dead letters, lag, rows/s, messages skipped, age of the oldest high watermark behind the lag (monitors: every consumer; others: the consumers of roles they act as)';
GRANT EXECUTE ON FUNCTION duet_metrics_kafka() TO PUBLIC;
CREATE VIEW duet.health WITH (security_invoker = true) AS
SELECT r.tenant, 'rules'::text AS subsystem, m.metric,
       pg_catalog.jsonb_build_object('severity', r.severity) AS labels, m.value
  FROM duet_metrics_rules() r
 CROSS JOIN LATERAL (VALUES ('rules', r.rules::float8), ('enabled', r.enabled::float8),
                            ('evaluations', r.evaluations::float8), ('errors', r.errors::float8),
                            ('rows_evaluated', r.rows_evaluated::float8), ('pending', r.pending::float8),
                            ('firing', r.firing::float8), ('recovering', r.recovering::float8),
                            ('in_error', r.in_error::float8)) AS m(metric, value)
UNION ALL
SELECT a.tenant, 'ask', m.metric, pg_catalog.jsonb_build_object('status', a.status), m.value
  FROM duet_metrics_ask() a
 CROSS JOIN LATERAL (VALUES ('calls', a.calls::float8), ('http_requests', a.http_requests::float8),
                            ('guard_rejections', a.corrections::float8), ('tokens_in', a.tokens_in::float8),
                            ('tokens_out', a.tokens_out::float8), ('latency_seconds', a.latency_ms_sum / 1000))
       AS m(metric, value)
UNION ALL
SELECT NULL, 'kafka', m.metric,
       pg_catalog.jsonb_build_object('consumer', k.consumer, 'topic', k.topic, 'state', k.state), m.value
  FROM duet_metrics_kafka() k
 CROSS JOIN LATERAL (VALUES ('up', CASE WHEN k.state = 'running' THEN 1 ELSE 0 END::float8),
                            ('workers', k.workers::float8), ('rows', k.rows::float8),
                            ('bytes', k.bytes::float8), ('batches', k.batches::float8),
                            ('errors', k.errors::float8), ('dead_letters', k.dead_letters::float8),
                            ('lag', k.lag::float8), ('rows_per_second', k.rows_per_second),
                            ('skipped_messages', k.skipped_messages::float8),
                            ('lag_age_seconds', k.lag_age_seconds)) AS m(metric, value)
UNION ALL
SELECT NULL, 'outbox', m.metric, '{}'::jsonb, m.value
  FROM duet_metrics_outbox() o
 CROSS JOIN LATERAL (VALUES ('pending', o.pending::float8),
                            ('oldest_pending_age_seconds', o.oldest_pending_age_seconds),
                            ('sent_last_hour', o.sent_last_hour::float8)) AS m(metric, value)
UNION ALL
SELECT NULL, 'server', m.metric, '{}'::jsonb, m.value
  FROM duet_metrics_server() s
 CROSS JOIN LATERAL (VALUES ('counters_available', CASE WHEN s.counters_available THEN 1 ELSE 0 END::float8),
                            ('workers_serving', CASE WHEN s.workers_serving THEN 1 ELSE 0 END::float8),
                            ('config_cache_hits', s.config_cache_hits::float8),
                            ('config_cache_misses', s.config_cache_misses::float8),
                            ('config_cache_bypasses', s.config_cache_bypasses::float8),
                            ('config_cache_hit_ratio', s.config_cache_hit_ratio),
                            ('counters_dropped', s.counters_dropped::float8)) AS m(metric, value)
UNION ALL
SELECT p.tenant, 'pipelines', m.metric, pg_catalog.jsonb_build_object('pipeline', p.pipeline, 'mode', p.mode), m.value
  FROM duet_metrics_pipelines() p
 CROSS JOIN LATERAL (VALUES ('active', CASE WHEN p.state = 'active' THEN 1 ELSE 0 END::float8),
                            ('paused', CASE WHEN p.state = 'paused' THEN 1 ELSE 0 END::float8),
                            ('in_error', CASE WHEN p.state = 'error' THEN 1 ELSE 0 END::float8),
                            ('lag_rows', p.lag_rows::float8), ('lag_seconds', p.lag_seconds),
                            ('runs_5m', p.runs_5m::float8), ('rows_in_5m', p.rows_in_5m::float8),
                            ('rows_out_5m', p.rows_out_5m::float8), ('rows_dropped_5m', p.rows_dropped_5m::float8),
                            ('errors_24h', p.errors_24h::float8), ('quarantined', p.quarantined::float8),
                            ('last_run_age_seconds', p.last_run_age_seconds),
                            ('last_success_age_seconds', p.last_success_age_seconds)) AS m(metric, value)
UNION ALL
SELECT NULL, 'workers', 'running', pg_catalog.jsonb_build_object('worker', w.worker), w.running::float8
  FROM duet_metrics_workers() w;
COMMENT ON VIEW duet.health IS
    'pg_duet''s figures as rows for dashboards, the same as the Prometheus metrics (docs/monitoring.md): rules, ask, Kafka consumers, outbox, server, workers, pipelines; a tenant member sees its own tenant''s rows, monitors (pg_monitor, duet_monitor) every tenant';
GRANT SELECT ON duet.health TO PUBLIC;
COMMENT ON COLUMN duet.health.tenant IS 'the tenant the figure is about; NULL for figures of no tenant (Kafka consumers, the outbox, the server, workers)';
COMMENT ON COLUMN duet.health.subsystem IS 'rules, ask, kafka, outbox, server, workers or pipelines';
COMMENT ON COLUMN duet.health.metric IS 'the figure''s name within its subsystem, as docs/monitoring.md lists it (evaluations, firing, calls, lag, ...)';
COMMENT ON COLUMN duet.health.labels IS 'what the figure is about, as a JSON object: severity, ask status, consumer/topic/state, pipeline/mode; the Prometheus labels of the same metric';
COMMENT ON COLUMN duet.health.value IS 'the figure: a count since the server started (counters) or a current value (gauges)';

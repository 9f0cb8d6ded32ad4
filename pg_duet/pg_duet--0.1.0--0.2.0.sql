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

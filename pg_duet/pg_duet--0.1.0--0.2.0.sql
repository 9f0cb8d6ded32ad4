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
CREATE OR REPLACE VIEW duet.kafka_partition_status AS
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
       w.last_error, w.last_error_at, p.lag, coalesce(w.rate, 0) AS rate, p.partitions
  FROM duet.kafka_consumers c
  LEFT JOIN w ON w.consumer_id = c.id
  LEFT JOIN p ON p.consumer_id = c.id
 -- a consumer admin sees the consumers of roles it acts as; pg_monitor sees all
 WHERE pg_has_role(c.owner, 'USAGE') OR pg_has_role('pg_monitor', 'USAGE');
REVOKE SELECT ON duet.kafka_outbox FROM duet_kafka_admin;
COMMENT ON TABLE duet.kafka_outbox IS 'events to publish to Kafka; sent_at is set once the broker acknowledged them (superuser only: events of every tenant)';
-- The outbox carries every tenant's events (alert messages among them): admins see its state only.
CREATE VIEW duet.kafka_outbox_status AS
SELECT count(*) FILTER (WHERE o.sent_at IS NULL) AS pending,
       min(o.created_at) FILTER (WHERE o.sent_at IS NULL) AS oldest_pending_at,
       count(*) FILTER (WHERE o.sent_at > now() - interval '1 hour') AS sent_last_hour,
       max(o.sent_at) AS last_sent_at
  FROM duet.kafka_outbox o;
COMMENT ON VIEW duet.kafka_outbox_status IS
    'the outbox''s state without its content: events pending, the oldest pending, sent in the last hour, last sent';
GRANT SELECT ON duet.kafka_outbox_status TO duet_kafka_admin, pg_monitor;

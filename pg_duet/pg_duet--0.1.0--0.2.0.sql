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
    IF NOT has_table_privilege('duet.kafka_outbox', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the outbox needs duet_kafka_admin'; hint := NULL;
    ELSE
        SELECT count(*), now() - min(o.created_at) INTO n, oldest
          FROM duet.kafka_outbox o WHERE o.sent_at IS NULL AND o.created_at < now() - interval '1 minute';
        IF n > 0 THEN
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

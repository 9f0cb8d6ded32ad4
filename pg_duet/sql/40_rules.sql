-- pg_duet install script, part 40: the rule engine (DESIGN.md §7).
-- (C: pg_duet/rules_api.c, rules_formula.c, rules_trigger.c, rules_query.c, rules_worker.c)
--
-- Tables are written only by the extension owner: the public duet_rule_* functions (C) check the
-- caller and its verified tenant, then run the internal duet.duet_rule_*_apply functions as the
-- owner. Everyone reads rules and alerts through row-level security on duet_current_tenant().

------------------------------------------------------------------------------------------------
-- Rules
------------------------------------------------------------------------------------------------

CREATE TABLE duet.rules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          text NOT NULL REFERENCES duet.tenants ON UPDATE CASCADE ON DELETE CASCADE,
    name            text NOT NULL CONSTRAINT rule_name_syntax CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    target          regclass,       -- row rules: the table whose inserts are evaluated
    query           text,           -- query rules: SQL returning label and metric columns
    condition       text NOT NULL,  -- Duet formula; true means the alert condition holds
    value           text,           -- optional Duet formula: the value reported with the alert
    severity        text NOT NULL DEFAULT 'warning'
                    CONSTRAINT rule_severity CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    labels          text[] NOT NULL DEFAULT '{}',  -- columns identifying an alert instance
    message         text,           -- template with {column} placeholders
    for_period      interval NOT NULL DEFAULT '0' CHECK (for_period >= '0'),
    keep_firing_for interval NOT NULL DEFAULT '0' CHECK (keep_firing_for >= '0'),
    topic           text,           -- outbox topic for Firing/Resolved events, e.g. rules.alerts
    enabled         boolean NOT NULL DEFAULT true,
    owner           regrole NOT NULL,  -- query rules run as this role
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rule_name_unique UNIQUE (tenant, name),
    CONSTRAINT rule_kind CHECK ((target IS NULL) <> (query IS NULL))
);
CREATE INDEX rules_target ON duet.rules (target) WHERE target IS NOT NULL;
COMMENT ON TABLE duet.rules IS
    'alert rules per tenant: row rules (target table, evaluated on insert) and query rules (evaluated by duet_rules_evaluate); manage with duet_rule_*';

CREATE TABLE duet.alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id          bigint NOT NULL REFERENCES duet.rules ON DELETE CASCADE,
    tenant           text NOT NULL,
    labels           jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'normal'
                     CONSTRAINT alert_state CHECK (state IN ('normal', 'pending', 'firing', 'recovering',
                                                             'resolved', 'error', 'nodata')),
    pending_since    timestamptz,
    firing_since     timestamptz,   -- set while the alert is active (firing or recovering)
    recovering_since timestamptz,
    last_eval_at     timestamptz,
    value            jsonb,
    message          text,
    error            text,
    CONSTRAINT alert_instance UNIQUE (rule_id, labels)
);
COMMENT ON TABLE duet.alerts IS 'alert instances, one per rule and label set, with their current state';

-- Append-only history of state transitions, with the value and message that caused them.
CREATE TABLE duet.alert_transitions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES duet.alerts ON DELETE CASCADE,
    rule_id    bigint NOT NULL,
    tenant     text NOT NULL,
    labels     jsonb NOT NULL,
    from_state text NOT NULL,
    to_state   text NOT NULL,
    at         timestamptz NOT NULL,
    value      jsonb,
    message    text,
    error      text
);
CREATE INDEX alert_transitions_alert ON duet.alert_transitions (alert_id, at);
COMMENT ON TABLE duet.alert_transitions IS 'history of alert state transitions (append-only)';

SELECT pg_catalog.pg_extension_config_dump('duet.rules', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alert_transitions', '');

REVOKE ALL ON duet.rules, duet.alerts, duet.alert_transitions FROM PUBLIC;
GRANT SELECT ON duet.rules, duet.alerts, duet.alert_transitions TO PUBLIC;
ALTER TABLE duet.rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.rules FORCE ROW LEVEL SECURITY;
ALTER TABLE duet.alerts ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.alerts FORCE ROW LEVEL SECURITY;
ALTER TABLE duet.alert_transitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.alert_transitions FORCE ROW LEVEL SECURITY;
-- The owner (who runs the internal functions, the trigger's bookkeeping and the scheduler) sees
-- every tenant; everyone else only the rows of duet_current_tenant().
CREATE POLICY rules_tenant ON duet.rules
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY alerts_tenant ON duet.alerts
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY alert_transitions_tenant ON duet.alert_transitions
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));

-- duet.alerts_active: in sql/45_alertmanager.sql, with the alerts' Alertmanager columns.

CREATE VIEW duet.alert_history WITH (security_invoker = true) AS
SELECT t.id, t.tenant, r.name AS rule, r.severity, t.labels, t.from_state, t.to_state, t.at,
       t.value, t.message, t.error
  FROM duet.alert_transitions t JOIN duet.rules r ON r.id = t.rule_id;
COMMENT ON VIEW duet.alert_history IS 'state transitions of the current tenant''s alerts, with value and message';
GRANT SELECT ON duet.alert_history TO PUBLIC;

------------------------------------------------------------------------------------------------
-- Validation (C): formulas compile, their variables and the labels are columns of the target
-- table or of the query's result, run as the rule's owner.
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet.duet_rule_validate(caller oid, condition text, value text, labels text[],
                                        message text, target regclass, query text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_rule_validate';
COMMENT ON FUNCTION duet.duet_rule_validate(oid, text, text, text[], text, regclass, text) IS
    'internal: checks a rule''s formulas, labels and template against its target or query, as the caller';
REVOKE ALL ON FUNCTION duet.duet_rule_validate(oid, text, text, text[], text, regclass, text) FROM PUBLIC;

CREATE FUNCTION duet_rules_row_trigger() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_rules_row_trigger';
COMMENT ON FUNCTION duet_rules_row_trigger() IS
    'statement trigger with a transition table: evaluates the row rules of the table on the inserted rows';
REVOKE ALL ON FUNCTION duet_rules_row_trigger() FROM PUBLIC;

-- A dropped table takes its row rules (and their alerts and history) with it.
CREATE FUNCTION duet_rules_on_drop() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM duet.rules r USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND r.target::oid = d.objid;
END $$;
COMMENT ON FUNCTION duet_rules_on_drop() IS
    'event trigger on sql_drop: removes the row rules of dropped tables';
REVOKE ALL ON FUNCTION duet_rules_on_drop() FROM PUBLIC;
CREATE EVENT TRIGGER duet_rules_on_drop ON sql_drop EXECUTE FUNCTION duet_rules_on_drop();

------------------------------------------------------------------------------------------------
-- Internal management functions: run as the owner by rules_api.c after it identified the caller
------------------------------------------------------------------------------------------------

-- The row-rule trigger exists on a table exactly while the table has row rules.
CREATE FUNCTION duet.duet_rule_sync_trigger(tbl regclass) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted boolean := EXISTS (SELECT FROM duet.rules WHERE target = tbl);
    has    boolean := EXISTS (SELECT FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'duet_rules');
BEGIN
    IF wanted AND NOT has THEN
        EXECUTE format('CREATE TRIGGER duet_rules AFTER INSERT ON %s REFERENCING NEW TABLE AS duet_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.duet_rules_row_trigger()', tbl);
    ELSIF has AND NOT wanted THEN
        EXECUTE format('DROP TRIGGER duet_rules ON %s', tbl);
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_rule_sync_trigger(regclass) IS
    'internal: creates or drops the duet_rules trigger of a table so that it exists while the table has row rules';
REVOKE ALL ON FUNCTION duet.duet_rule_sync_trigger(regclass) FROM PUBLIC;

CREATE FUNCTION duet.duet_rule_check_target(caller oid, tbl regclass, topic text) RETURNS void
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
COMMENT ON FUNCTION duet.duet_rule_check_target(oid, regclass, text) IS
    'internal: checks the caller''s privileges on a row rule''s table and the rule''s topic';
REVOKE ALL ON FUNCTION duet.duet_rule_check_target(oid, regclass, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_rule_check_fields(p_name text, p_severity text, p_for interval,
                                            p_keep_firing_for interval) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_name',
            MESSAGE = format('invalid rule name "%s"', p_name),
            DETAIL = 'A rule name has 1-128 characters among letters, digits, "_", ".", ":" and "-", starting with a letter or digit.';
    END IF;
    IF p_severity IS NULL OR p_severity NOT IN ('info', 'warning', 'error', 'critical') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid severity "%s"', p_severity),
            HINT = 'Severity is one of info, warning, error, critical.';
    END IF;
    IF p_for < '0' OR p_keep_firing_for < '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'for_period and keep_firing_for must not be negative';
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_rule_check_fields(text, text, interval, interval) IS
    'internal: checks a rule''s name, severity and periods';
REVOKE ALL ON FUNCTION duet.duet_rule_check_fields(text, text, interval, interval) FROM PUBLIC;

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

CREATE FUNCTION duet.duet_rule_lookup(p_tenant text, p_name text) RETURNS duet.rules
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r duet.rules;
BEGIN
    SELECT * INTO r FROM duet.rules WHERE tenant = p_tenant AND name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('rule "%s" does not exist', p_name),
            DETAIL = format('Tenant "%s" has no rule of that name.', p_tenant);
    END IF;
    RETURN r;
END $$;
COMMENT ON FUNCTION duet.duet_rule_lookup(text, text) IS 'internal: a tenant''s rule by name, locked, or an error';
REVOKE ALL ON FUNCTION duet.duet_rule_lookup(text, text) FROM PUBLIC;

-- changes: a jsonb object of the fields to change; a JSON null clears an optional field.
CREATE FUNCTION duet.duet_rule_alter_apply(p_tenant text, p_caller oid, p_name text, p_changes jsonb)
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

CREATE FUNCTION duet.duet_rule_drop_apply(p_tenant text, p_caller oid, p_name text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r duet.rules := duet.duet_rule_lookup(p_tenant, p_name);
BEGIN
    DELETE FROM duet.rules WHERE id = r.id;
    IF r.target IS NOT NULL THEN
        PERFORM duet.duet_rule_sync_trigger(r.target);
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_rule_drop_apply(text, oid, text) IS
    'internal: drops a tenant''s rule, its alerts and their history';
REVOKE ALL ON FUNCTION duet.duet_rule_drop_apply(text, oid, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_rule_enable_apply(p_tenant text, p_caller oid, p_name text, p_enabled boolean)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r duet.rules := duet.duet_rule_lookup(p_tenant, p_name);
BEGIN
    UPDATE duet.rules SET enabled = p_enabled, version = version + 1, updated_at = now() WHERE id = r.id;
END $$;
COMMENT ON FUNCTION duet.duet_rule_enable_apply(text, oid, text, boolean) IS
    'internal: enables or disables a tenant''s rule';
REVOKE ALL ON FUNCTION duet.duet_rule_enable_apply(text, oid, text, boolean) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- The state machine (DESIGN §7): one observation of one alert instance at a time `at`.
--   outcome: 'true' (condition holds), 'false', 'error' (p_error says why), 'nodata'
--   p_message: the rendered message ('true') or resolve message ('false'); p_annotations: the
--   rendered annotations ('true'). Alertmanager (sql/45_alertmanager.sql) is told through
--   notify_version: bumped when the alert starts firing and when it resolves.
------------------------------------------------------------------------------------------------

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

-- Query rules: an instance whose labels the query no longer returns is observed as false.
CREATE FUNCTION duet.duet_alert_sweep(p_rule bigint, p_seen jsonb[], p_at timestamptz) RETURNS void
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

------------------------------------------------------------------------------------------------
-- Public API (C, rules_api.c / rules_formula.c / rules_query.c)
------------------------------------------------------------------------------------------------

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

CREATE FUNCTION duet_rule_alter(name text, changes jsonb) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_alter';
COMMENT ON FUNCTION duet_rule_alter(text, jsonb) IS
    'changes fields of a rule of the current tenant, e.g. {"condition": "...", "for": "5 minutes", "topic": null}';

CREATE FUNCTION duet_rule_drop(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_drop';
COMMENT ON FUNCTION duet_rule_drop(text) IS 'drops a rule of the current tenant with its alerts and history';

CREATE FUNCTION duet_rule_enable(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_enable';
COMMENT ON FUNCTION duet_rule_enable(text) IS 'enables a rule of the current tenant';

CREATE FUNCTION duet_rule_disable(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_disable';
COMMENT ON FUNCTION duet_rule_disable(text) IS 'disables a rule of the current tenant (its alerts keep their state)';

CREATE FUNCTION duet_rule_test(rule text, "row" jsonb) RETURNS jsonb
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'duet_rule_test';
COMMENT ON FUNCTION duet_rule_test(text, jsonb) IS
    'dry-runs a rule of the current tenant on one row (a JSON object): condition, value, labels and rendered message; changes nothing';

CREATE FUNCTION duet_rules_evaluate(at timestamptz DEFAULT now()) RETURNS integer
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rules_evaluate';
COMMENT ON FUNCTION duet_rules_evaluate(timestamptz) IS
    'evaluates every tenant''s enabled query rules as of at (each query runs as its rule''s owner, in its tenant); returns the number of rules evaluated';
-- Privileged: `at` moves alert clocks, so only the scheduler, pg_cron jobs and granted roles call it.
REVOKE ALL ON FUNCTION duet_rules_evaluate(timestamptz) FROM PUBLIC;

-- pg_dump: the identity sequences of the dumped tables, so a restored database continues their numbering.
SELECT pg_catalog.pg_extension_config_dump('duet.rules_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alerts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alert_transitions_id_seq', '');

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
REVOKE ALL ON FUNCTION duet_rules_prune() FROM PUBLIC;

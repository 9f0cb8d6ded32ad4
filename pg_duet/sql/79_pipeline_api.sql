-- pg_duet install script, part 79 (api): creating, checking, changing and running pipelines.
-- (C: pg_duet/pipeline_api.c; the tables are in part 78, the run's statement in 79_pipeline_run.sql)
-- The public duet_pipeline_* functions identify the caller and its tenant, then run the internal
-- duet.duet_pipeline_*_apply functions as the extension owner, as rules do.

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

-- pg_duet install script, part 78: Bronze -> Silver -> Gold pipelines (docs/pipelines.md).
-- (C: pg_duet/pipeline_api.c, pipeline_run.c, pipeline_worker.c)
--
-- A pipeline belongs to a tenant and runs as its owner: it reads the source rows past its stored
-- position, maps them to the target's columns (SQL expressions or "=" Duet formulas), checks its
-- expectations, writes the target (append, upsert by key, or aggregate: recompute the groups the
-- new rows touch) and advances its position, all in one transaction. Tables are written only by
-- the extension owner; the public duet_pipeline_* functions (C) identify the caller and tenant and
-- run the internal duet.duet_pipeline_*_apply functions as the owner, as rules do.

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

-- pg_duet install script, part 78: Bronze -> Silver -> Gold pipelines (docs/pipelines.md): the tables
-- and the status view. The run's statement and bookkeeping are in 79_pipeline_run.sql, the API in
-- 79_pipeline_api.sql. (C: pg_duet/pipeline_api.c, pipeline_run.c, pipeline_worker.c)
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
SELECT pg_catalog.pg_extension_config_dump('duet.pipeline_groups', '');

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
REVOKE ALL ON duet.pipeline_groups FROM PUBLIC;
GRANT SELECT ON duet.pipeline_groups TO PUBLIC;
ALTER TABLE duet.pipeline_groups ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.pipeline_groups FORCE ROW LEVEL SECURITY;
-- The owner sees every tenant; everyone else only the rows of duet_current_tenant().
CREATE POLICY pipelines_tenant ON duet.pipelines
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY pipeline_expectations_tenant ON duet.pipeline_expectations
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY pipeline_quarantine_tenant ON duet.pipeline_quarantine
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY pipeline_runs_tenant ON duet.pipeline_runs
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY pipeline_groups_tenant ON duet.pipeline_groups
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));

------------------------------------------------------------------------------------------------
-- Status
------------------------------------------------------------------------------------------------

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
CREATE FUNCTION duet_pipeline_backlog(p duet.pipelines) RETURNS bigint
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'duet_pipeline_backlog';
COMMENT ON FUNCTION duet_pipeline_backlog(duet.pipelines) IS
    'source rows past a pipeline''s position, counted as the pipeline''s owner (NULL when the caller cannot see the pipeline, the owner may not read the source, or it was dropped)';

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
COMMENT ON COLUMN duet.pipeline_status.lag_rows IS 'source rows past the position, counted as the pipeline''s owner (NULL when it may not read the source)';
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

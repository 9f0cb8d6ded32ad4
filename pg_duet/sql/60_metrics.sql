-- pg_duet install script, part 60: named metrics and the ClickHouse UDF configuration (DESIGN.md §9).
-- A metric is defined once here and used in both databases: duet_clickhouse_config() returns the
-- <functions> XML declaring one ClickHouse function per metric and the definitions file that
-- ch_udfs' duet_udf reads (ClickHouse splits a command on spaces, so formulas cannot travel there).

CREATE TABLE duet.metrics (
    name            text NOT NULL
                    CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND length(name) <= 63),
    formula         text NOT NULL,
    description     text,
    arguments       text[] NOT NULL,
    argument_types  text[] NOT NULL,
    return_type     text NOT NULL,
    defined_by      name NOT NULL DEFAULT session_user,
    defined_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(arguments) = cardinality(argument_types)),
    -- issue 13: versioned, tenant-aware metrics (docs/metrics.md)
    tenant          text REFERENCES duet.tenants ON UPDATE CASCADE ON DELETE CASCADE,
    version         bigint NOT NULL DEFAULT 1 CONSTRAINT metrics_version_positive CHECK (version > 0),
    unit            text CONSTRAINT metrics_unit CHECK (unit IN ('ratio', 'percent', 'currency', 'integer')),
    owner           text,
    depends_on      text[] NOT NULL DEFAULT '{}',
    CONSTRAINT metrics_name_tenant UNIQUE NULLS NOT DISTINCT (name, tenant)
);
COMMENT ON TABLE duet.metrics IS
    'named Duet formulas: global (tenant NULL) and tenant overrides, callable in every formula and as ClickHouse functions; written by duet_metric_define/duet_metric_set';
COMMENT ON COLUMN duet.metrics.arguments IS 'the formula''s variables, in order of first appearance: the ClickHouse function''s arguments';
COMMENT ON COLUMN duet.metrics.argument_types IS 'ClickHouse types of the arguments (Nullable(Float64) unless declared)';
COMMENT ON COLUMN duet.metrics.return_type IS 'ClickHouse result type: Nullable(Float64), Nullable(UInt8) for conditions, Nullable(String)';
SELECT pg_catalog.pg_extension_config_dump('duet.metrics', '');
REVOKE ALL ON duet.metrics FROM PUBLIC;
GRANT SELECT ON duet.metrics TO PUBLIC;
-- Everyone reads the global metrics and their own tenant's; only the owner writes (below).
ALTER TABLE duet.metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.metrics FORCE ROW LEVEL SECURITY;
CREATE POLICY metrics_tenant_read ON duet.metrics FOR SELECT
    USING (tenant IS NULL OR tenant = @extschema@.duet_current_tenant());
-- Compiled formulas that expanded a metric are recompiled after a change commits (change_epoch.c).
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

CREATE FUNCTION duet_metric_signature(formula text, typed_names text[] DEFAULT '{}', typed_types text[] DEFAULT '{}',
                                      OUT arguments text[], OUT argument_types text[], OUT return_type text)
    LANGUAGE c STABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_metric_signature';
COMMENT ON FUNCTION duet_metric_signature(text, text[], text[]) IS
    'compiles a metric formula (calling the metrics the caller sees) and returns its ClickHouse signature: arguments, their types, result type';

-- issue 13 item 3: a metric as native SQL (metrics_sql.c, calc/sqlgen.c; docs/metrics.md "Native SQL")
CREATE FUNCTION duet_metric_sql(name text, dialect text DEFAULT 'postgres') RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_metric_sql';
COMMENT ON FUNCTION duet_metric_sql(text, text) IS
    'the metric the caller uses as one SQL expression over its parameters with exactly Duet''s semantics (dialect ''postgres'' or ''clickhouse''); refuses, naming the construct, what has no exact SQL equivalent';
CREATE FUNCTION duet_formula_sql(formula text, typed_names text[] DEFAULT '{}', typed_types text[] DEFAULT '{}',
                                 dialect text DEFAULT 'postgres') RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_formula_sql';
COMMENT ON FUNCTION duet_formula_sql(text, text[], text[], text) IS
    'a formula (calling the metrics the caller sees) as one SQL expression over its variables with exactly Duet''s semantics; variables typed as for duet_metric_signature (undeclared: numbers); refuses, naming the construct, what has no exact SQL equivalent';

-- Duet's + - * / on double precision for the generated PostgreSQL SQL (metrics_sql_ops.c)
CREATE FUNCTION duet_num_add(a double precision, b double precision) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'duet_num_add';
CREATE FUNCTION duet_num_sub(a double precision, b double precision) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'duet_num_sub';
CREATE FUNCTION duet_num_mul(a double precision, b double precision) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'duet_num_mul';
CREATE FUNCTION duet_num_div(a double precision, b double precision) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'duet_num_div';

-- The metrics as ClickHouse SQL user-defined functions (metrics_ch_sql.c, calc/sqlgen_ch.c)
CREATE FUNCTION duet_clickhouse_sql_functions(OUT name text, OUT arguments text[], OUT expression text,
                                              OUT ddl text, OUT not_compiled text)
    RETURNS SETOF record LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'duet_clickhouse_sql_functions';

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

CREATE FUNCTION duet_clickhouse_config(format text DEFAULT 'RowBinary', pool boolean DEFAULT true,
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

-- pg_duet install script, part 60: named metrics and the ClickHouse UDF configuration (DESIGN.md §9).
-- A metric is defined once here and used in both databases: duet_clickhouse_config() returns the
-- <functions> XML declaring one ClickHouse function per metric and the definitions file that
-- ch_udfs' duet_udf reads (ClickHouse splits a command on spaces, so formulas cannot travel there).

CREATE TABLE duet.metrics (
    name            text PRIMARY KEY
                    CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND length(name) <= 63),
    formula         text NOT NULL,
    description     text,
    arguments       text[] NOT NULL,
    argument_types  text[] NOT NULL,
    return_type     text NOT NULL,
    defined_by      name NOT NULL DEFAULT session_user,
    defined_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(arguments) = cardinality(argument_types))
);
COMMENT ON TABLE duet.metrics IS
    'named Duet formulas, callable as ClickHouse functions through duet_clickhouse_config(); written by duet_metric_define';
COMMENT ON COLUMN duet.metrics.arguments IS 'the formula''s variables, in order of first appearance: the ClickHouse function''s arguments';
COMMENT ON COLUMN duet.metrics.argument_types IS 'ClickHouse types of the arguments (Nullable(Float64) unless declared)';
COMMENT ON COLUMN duet.metrics.return_type IS 'ClickHouse result type: Nullable(Float64), Nullable(UInt8) for conditions, Nullable(String)';
SELECT pg_catalog.pg_extension_config_dump('duet.metrics', '');
REVOKE ALL ON duet.metrics FROM PUBLIC;
GRANT SELECT ON duet.metrics TO PUBLIC;
-- Metrics are global and readable by all; RLS says so explicitly.
ALTER TABLE duet.metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.metrics FORCE ROW LEVEL SECURITY;
CREATE POLICY metrics_global_read ON duet.metrics FOR SELECT USING (true);

CREATE FUNCTION duet_metric_signature(formula text, typed_names text[] DEFAULT '{}', typed_types text[] DEFAULT '{}',
                                      OUT arguments text[], OUT argument_types text[], OUT return_type text)
    LANGUAGE c IMMUTABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_metric_signature';
COMMENT ON FUNCTION duet_metric_signature(text, text[], text[]) IS
    'compiles a metric formula and returns its ClickHouse signature: arguments, their types, result type';

CREATE FUNCTION duet_metric_define(name text, formula text, description text DEFAULT NULL,
                                   argument_types jsonb DEFAULT NULL)
    RETURNS duet.metrics
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    typed_names text[];
    typed_types text[];
    sig record;
    result duet.metrics;
BEGIN
    IF name IS NULL OR formula IS NULL THEN
        RAISE EXCEPTION 'metric name and formula must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name !~ '^[A-Za-z_][A-Za-z0-9_]*$' OR length(name) > 63 THEN
        RAISE EXCEPTION 'invalid metric name "%"', name
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'The name becomes a ClickHouse function name and part of its command line.',
                  HINT = 'Use letters, digits and underscores (at most 63), starting with a letter or underscore.';
    END IF;
    IF argument_types IS NOT NULL AND jsonb_typeof(argument_types) <> 'object' THEN
        RAISE EXCEPTION 'argument_types must be a JSON object of variable name to ClickHouse type'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example: {"campaign": "String"}.';
    END IF;
    IF EXISTS (SELECT FROM jsonb_each(coalesce(argument_types, '{}')) e WHERE jsonb_typeof(e.value) <> 'string') THEN
        RAISE EXCEPTION 'argument types must be strings such as "Float64" or "String"'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    typed_names := ARRAY(SELECT e.key FROM jsonb_each_text(coalesce(argument_types, '{}')) e ORDER BY e.key);
    typed_types := ARRAY(SELECT e.value FROM jsonb_each_text(coalesce(argument_types, '{}')) e ORDER BY e.key);
    sig := @extschema@.duet_metric_signature(formula, typed_names, typed_types);
    INSERT INTO duet.metrics AS m (name, formula, description, arguments, argument_types, return_type)
    VALUES (name, formula, description, sig.arguments, sig.argument_types, sig.return_type)
    ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE
       SET formula = excluded.formula, description = excluded.description, arguments = excluded.arguments,
           argument_types = excluded.argument_types, return_type = excluded.return_type,
           defined_by = session_user, defined_at = now()
    RETURNING m.* INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION duet_metric_define(text, text, text, jsonb) IS
    'defines or replaces a named metric after compiling its formula; argument_types optionally maps variables to ClickHouse types (admin)';
REVOKE ALL ON FUNCTION duet_metric_define(text, text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION duet_metric_drop(name text) RETURNS boolean
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (DELETE FROM duet.metrics m WHERE m.name = $1 RETURNING 1) SELECT count(*) > 0 FROM d
$$;
COMMENT ON FUNCTION duet_metric_drop(text) IS 'drops a named metric; false when it did not exist (admin)';
REVOKE ALL ON FUNCTION duet_metric_drop(text) FROM PUBLIC;

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
    WITH m AS (
        SELECT mt.*,
               -- inside an XML comment only "--" is special
               regexp_replace(replace(coalesce(mt.description, ''), '--', '- -'), '-$', '- ') AS comment_text
          FROM duet.metrics mt
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
    'ClickHouse <functions> XML declaring one executable UDF per metric, and the duet_udf definitions file content';

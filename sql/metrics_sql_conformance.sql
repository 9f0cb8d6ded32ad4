-- metrics_sql_conformance: the conformance vectors (test/conformance/*.tsv) through the SQL that
-- duet_formula_sql generates, evaluated natively by PostgreSQL over the vector's inputs
-- (jsonb_to_record, each variable typed by its JSON value: number → float8, string → text,
-- boolean → boolean, null → float8). Every case expecting a value gives exactly it, or is refused
-- by name: the refusals are listed below, so a new refusal or a new success changes this output.
-- Cases expecting an error are compile or binding errors of the language itself, not of SQL.
-- An integer input (a JSON number without fraction or exponent) is an exact integer to Duet but a
-- double precision value to the generated SQL, whose parameters are double precision: such a case
-- is compared with Duet over the same inputs as doubles (written with ".0"), and where that
-- differs from the vector's expectation (integer semantics: exact beyond 2^53) it is listed as
-- 'integer input' below instead of being compared with the expectation.
CREATE TEMP TABLE msc_case (file text, line int, formula_escaped text, inputs text, expected text);
\copy msc_case FROM PROGRAM 'sh "$PG_ABS_SRCDIR/test/conformance-cases.sh"' WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x02')

CREATE FUNCTION pg_temp.msc_unescape(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(replace(s, '\\', E'\x01'), '\n', E'\n'), '\t', E'\t'), E'\x01', '\')
$$;

-- 'ok', 'refused: <construct>', or what the generated SQL gave instead
CREATE FUNCTION pg_temp.msc_check(formula text, inputs jsonb, expected text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    names text[];
    types text[];
    cols text;
    sql text;
    got jsonb;
    want jsonb := expected::jsonb;
    doubles jsonb;
    null_type text;
    as_double jsonb;
    num text;
BEGIN
    -- a number a double precision parameter cannot take (1e400, 1e-400: duet_calc binds NULL and 0,
    -- float8 input refuses them) is not a question for the generated SQL
    FOR num IN SELECT value #>> '{}' FROM jsonb_each(inputs) WHERE jsonb_typeof(value) = 'number' LOOP
        BEGIN
            PERFORM num::float8;
        EXCEPTION WHEN numeric_value_out_of_range THEN
            RETURN 'outside float8: ' || left(num, 24);
        END;
    END LOOP;
    -- the inputs as the double precision parameters see them
    SELECT coalesce(jsonb_object_agg(key, CASE WHEN jsonb_typeof(value) = 'number' AND value::text ~ '^-?[0-9]+$'
                                               THEN (value::text || '.0')::jsonb ELSE value END), '{}')
      INTO doubles FROM jsonb_each(inputs);
    -- a null input has no type of its own: a number, else a string, else a boolean, whichever the
    -- formula accepts (ifnull(x, 'none') needs a string x)
    FOREACH null_type IN ARRAY ARRAY['Float64', 'String', 'Bool'] LOOP
        SELECT coalesce(array_agg(key ORDER BY key), '{}'),
               coalesce(array_agg(CASE jsonb_typeof(value) WHEN 'string' THEN 'String' WHEN 'boolean' THEN 'Bool'
                                       WHEN 'null' THEN null_type ELSE 'Float64' END ORDER BY key), '{}'),
               string_agg(format('%I %s', key, CASE coalesce(nullif(jsonb_typeof(value), 'null'), null_type)
                                                   WHEN 'string' THEN 'text' WHEN 'String' THEN 'text'
                                                   WHEN 'boolean' THEN 'boolean' WHEN 'Bool' THEN 'boolean'
                                                   ELSE 'float8' END), ', ' ORDER BY key)
          INTO names, types, cols
          FROM jsonb_each(inputs);
        BEGIN
            sql := duet_formula_sql(formula, names, types);
            EXIT;
        EXCEPTION WHEN feature_not_supported THEN
            RETURN 'refused: ' || regexp_replace(SQLERRM, '^formula has no exact SQL translation: (.*) does not compile to PostgreSQL SQL$', '\1');
        WHEN OTHERS THEN
            -- the inputs do not bind as declared types (a variable named in another case): not an SQL matter
            IF null_type = 'Bool' OR NOT inputs::text LIKE '%null%' THEN
                RETURN 'typed: ' || SQLERRM;
            END IF;
        END;
    END LOOP;
    BEGIN
        IF cols IS NULL THEN
            EXECUTE format('SELECT to_jsonb(%s)', sql) INTO got;
        ELSE
            EXECUTE format('SELECT to_jsonb(%s) FROM jsonb_to_record($1) AS v(%s)', sql, cols) INTO got USING inputs;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RETURN 'raised: ' || SQLERRM;
    END;
    got := coalesce(got, 'null');
    IF doubles::text <> inputs::text THEN
        BEGIN
            as_double := duet_calc(formula, doubles);
        EXCEPTION WHEN OTHERS THEN
            as_double := to_jsonb('error: ' || SQLERRM);
        END;
        IF NOT (as_double = want OR (jsonb_typeof(as_double) = 'number' AND jsonb_typeof(want) = 'number'
                                     AND as_double::float8 = want::float8)) THEN
            IF jsonb_typeof(got) = 'number' AND jsonb_typeof(as_double) = 'number' AND got::float8 = as_double::float8
               OR got = as_double THEN
                RETURN 'integer input: ' || as_double::text || ' as doubles';
            END IF;
            RETURN 'gave ' || got::text || ' (Duet over doubles: ' || as_double::text || ')';
        END IF;
    END IF;
    IF jsonb_typeof(got) = 'number' AND jsonb_typeof(want) = 'number' THEN
        IF got::float8 = want::float8 THEN
            RETURN 'ok';
        END IF;
    ELSIF got = want THEN
        RETURN 'ok';
    END IF;
    RETURN 'gave ' || got::text;
END
$$;

CREATE TEMP TABLE msc_result AS
SELECT c.file, c.line, c.formula_escaped AS formula, c.expected,
       pg_temp.msc_check(pg_temp.msc_unescape(c.formula_escaped), c.inputs::jsonb, c.expected) AS result
  FROM msc_case c
 WHERE c.expected NOT LIKE 'error:%';

SELECT count(*) >= 300 AS at_least_300_value_cases FROM msc_result;
-- how the cases fare: compiled and equal, or refused (no case may differ or raise)
SELECT CASE WHEN result = 'ok' THEN 'ok' WHEN result LIKE 'refused:%' THEN 'refused'
            WHEN result LIKE 'typed:%' THEN 'typed' WHEN result LIKE 'integer input:%' THEN 'integer input'
            WHEN result LIKE 'outside float8:%' THEN 'outside float8'
            ELSE 'WRONG' END AS outcome, count(*)
  FROM msc_result GROUP BY 1 ORDER BY 1;
-- every case that differs or raises (none)
SELECT file, line, formula, expected, result FROM msc_result
 WHERE result <> 'ok' AND result NOT LIKE 'refused:%' AND result NOT LIKE 'typed:%'
   AND result NOT LIKE 'integer input:%' AND result NOT LIKE 'outside float8:%' ORDER BY file, line;
-- the expected refusals, by construct and case
SELECT substr(result, 10) AS construct, count(*),
       string_agg(file || ':' || line, ' ' ORDER BY file, line) AS cases
  FROM msc_result WHERE result LIKE 'refused:%' GROUP BY 1 ORDER BY 1;
-- cases this harness cannot type from their inputs (variable names differing in case from the inputs')
SELECT file, line, formula, result FROM msc_result WHERE result LIKE 'typed:%' ORDER BY file, line;
-- cases whose integer inputs Duet reads exactly, the double precision parameters as doubles (the
-- generated SQL agrees with Duet over the doubles)
SELECT file, line, formula, expected, result FROM msc_result WHERE result LIKE 'integer input:%' ORDER BY file, line;
-- cases with an input no double precision parameter can take
SELECT file, line, formula, result FROM msc_result WHERE result LIKE 'outside float8:%' ORDER BY file, line;

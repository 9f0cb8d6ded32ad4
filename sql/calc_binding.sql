-- calc_binding: one PostgreSQL <-> Duet value layer (calc_value.c). The same row through
-- duet_calc (row form and the planner's positional rewrite) and through a rule gives the same
-- answer: every conformance vector (test/conformance/*.tsv) as a row of SQL values, and a row of
-- every kind of column (the docs/calc.md "PostgreSQL values" table). Prints only disagreements
-- for the vectors. No temporary objects: duet_rules_evaluate() refuses sessions that made any.
CREATE SCHEMA calc_binding;
SELECT duet_tenant_create('calc-binding');
SELECT duet_set_tenant('calc-binding');
CREATE TABLE calc_binding.vec (
    file text, line int, formula_escaped text, inputs text, expected text, n serial);
\copy calc_binding.vec (file, line, formula_escaped, inputs, expected) FROM PROGRAM 'sh "$PG_ABS_SRCDIR/test/conformance-cases.sh"' WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x02')

CREATE FUNCTION calc_binding.unescape(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(replace(s, '\\', E'\x01'), '\n', E'\n'), '\t', E'\t'), E'\x01', '\')
$$;

-- The vector's inputs as one SQL row: integers bigint, other numbers numeric, strings text,
-- booleans boolean, nulls text (a column always has a type, unlike a jsonb null).
CREATE FUNCTION calc_binding.row_query(inputs jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT 'SELECT 0 AS duet_row_' || coalesce(string_agg(', ' ||
             CASE jsonb_typeof(value)
               WHEN 'number' THEN quote_literal(value #>> '{}') ||
                    CASE WHEN (value #>> '{}') ~ '^-?[0-9]+$' AND (value #>> '{}')::numeric
                              BETWEEN -9223372036854775808 AND 9223372036854775807
                         THEN '::bigint' ELSE '::numeric' END
               WHEN 'string' THEN quote_literal(value #>> '{}') || '::text'
               WHEN 'boolean' THEN value #>> '{}'
               ELSE 'NULL::text' END || ' AS ' || quote_ident(key), '' ORDER BY key), '')
      FROM jsonb_each(inputs)
$$;

-- An error as both paths can say it: SQLSTATE, then the engine's message and position when the
-- engine raised it (the wrappers differ: "invalid formula: m" + detail "At line l, column c" in
-- duet_calc, "invalid rule value: m at line l, column c" for a rule, "error: m" in its message).
CREATE FUNCTION calc_binding.err(state text, msg text, detail text) RETURNS text LANGUAGE sql AS $$
    SELECT 'error ' || state || CASE WHEN state = '42703' THEN '' ELSE ' ' ||
           coalesce(regexp_replace(msg, '^(invalid formula|formula evaluation failed|invalid rule value): | at line \d+, column \d+$', '', 'g'), '') ||
           coalesce('@' || (regexp_match(coalesce(detail, '') || ' ' || msg, 'line (\d+), column (\d+)'))[1] || ':' ||
                    (regexp_match(coalesce(detail, '') || ' ' || msg, 'line (\d+), column (\d+)'))[2], '') END
$$;

-- duet_calc(formula, r) FROM <from_item> r: a subquery binds the row form, a plain table the
-- planner's positional rewrite (calc_support.c).
CREATE FUNCTION calc_binding.via_calc(formula text, from_item text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    got jsonb;
    state text; msg text; detail text;
BEGIN
    EXECUTE format('SELECT duet_calc(%L, r) FROM %s r', formula, from_item) INTO got;
    RETURN got::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
    RETURN calc_binding.err(state, msg, detail);
END $$;

-- Creates the vector's rule (condition true, value = the formula, over the row as a query rule);
-- NULL when created, else the compile error.
CREATE FUNCTION calc_binding.make_rule(name text, formula text, query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text; msg text; detail text;
BEGIN
    PERFORM duet_rule_create(name, 'true', query => query, value => formula, message => '{value}');
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
    RETURN calc_binding.err(state, msg, detail);
END $$;

CREATE TABLE calc_binding.result AS
SELECT v.*, calc_binding.unescape(coalesce(formula_escaped, '')) AS formula,
       calc_binding.row_query(inputs::jsonb) AS query, NULL::text AS calc, NULL::text AS rule_error
  FROM calc_binding.vec v;
UPDATE calc_binding.result SET calc = calc_binding.via_calc(formula, '(' || query || ')'),
                               rule_error = calc_binding.make_rule('v' || n, formula, query);

SELECT count(*) >= 300 AS at_least_300_vectors, count(rule_error) > 0 AS some_do_not_compile,
       count(*) FILTER (WHERE calc LIKE 'error 42703%') > 0 AS some_miss_a_column
  FROM calc_binding.result;
SELECT duet_rules_evaluate(timestamptz '2026-01-01 00:00+00') = count(*) FILTER (WHERE rule_error IS NULL) AS all_evaluated
  FROM calc_binding.result;

-- The rule's answer: its compile error, or the value (jsonb) the alert reports, or its error.
CREATE VIEW calc_binding.compared AS
SELECT r.file, r.line, r.formula_escaped, r.inputs, r.calc,
       coalesce(r.rule_error,
                CASE WHEN a.message LIKE 'error: %' THEN
                          calc_binding.err(CASE WHEN r.calc LIKE 'error %' THEN split_part(r.calc, ' ', 2) END,
                                           substr(a.message, 8), NULL)
                     ELSE coalesce(a.value::text, 'null') END) AS rule,
       r.rule_error IS NULL AND a.message LIKE 'error: %' AS run_time
  FROM calc_binding.result r
  LEFT JOIN duet.rules ru ON ru.name = 'v' || r.n AND ru.tenant = 'calc-binding'
  LEFT JOIN duet.alerts a ON a.rule_id = ru.id;

-- Every vector: the rule says what duet_calc says (a run-time error's SQLSTATE and position are
-- duet_calc's: a rule records only the message).
SELECT file, line, formula_escaped AS formula, inputs, calc, rule
  FROM calc_binding.compared
 WHERE calc IS DISTINCT FROM rule
   AND NOT (run_time AND regexp_replace(calc, '@[0-9]+:[0-9]+$', '') = rule)
 ORDER BY file, line;
-- and the agreement is not vacuous: values, syntax errors, type errors and integer overflows occur
SELECT count(*) FILTER (WHERE calc NOT LIKE 'error %') > 200 AS values,
       count(*) FILTER (WHERE calc LIKE 'error 42601 %@%') > 10 AS syntax_errors,
       count(*) FILTER (WHERE calc LIKE 'error 42804 %') > 10 AS type_errors,
       count(*) FILTER (WHERE run_time AND calc LIKE 'error 22003 %') > 5 AS run_time_overflows
  FROM calc_binding.compared;

-- Every kind of column, one row: what each becomes (docs/calc.md "PostgreSQL values"), the same in
-- duet_calc's row form, its positional rewrite (a plain table) and a query rule over the table;
-- date, jsonb and arrays are not formula values (their text depends on session settings) in any.
CREATE DOMAIN calc_binding.posint AS int CHECK (VALUE > 0);
CREATE TYPE calc_binding.mood AS ENUM ('sad', 'ok');
CREATE TABLE calc_binding.kinds (
    c_int2 int2, c_int4 int4, c_int8 int8, c_oid oid, c_float4 float4, c_float8 float8,
    c_numeric numeric, c_huge numeric, c_nan float8, c_text text, c_varchar varchar(10),
    c_char char(5), c_name name, c_bool bool, c_domain calc_binding.posint, c_enum calc_binding.mood,
    c_uuid uuid, c_date date, c_jsonb jsonb, c_array int[], "Mixed" int, c_null text);
INSERT INTO calc_binding.kinds VALUES (
    -3, 2147483647, 9007199254740993, 4000000000, 0.1, 0.1, 12.50, 1e400, 'NaN', 'é', 'v',
    'ab', 'nm', true, 7, 'ok', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-01-31',
    '{"b": 1, "a": [2]}', '{1,2}', 5, NULL);
CREATE TABLE calc_binding.kind_formula (n serial, formula text);
INSERT INTO calc_binding.kind_formula (formula) VALUES
    ('c_int2 * 2'), ('c_int4 + 1'), ('c_int8'), ('c_oid + 0'), ('c_float4'), ('c_float8 * 3'),
    ('c_numeric / 4'), ('c_huge is null'), ('c_nan is null'), ('length(c_text) || c_text'),
    ('c_varchar || c_varchar'), ('''['' || c_char || '']'''), ('c_char = ''ab'''),
    ('length(c_char)'), ('upper(c_name)'), ('not c_bool'), ('c_domain + 1'), ('c_enum || ''!'''),
    ('length(c_uuid)'), ('c_date || ''T00:00'''), ('c_jsonb'), ('c_array'), ('mixed * 2'),
    ('MIXED + "Mixed"'), ('coalesce(c_null, ''none'')'), ('c_text * 2'), ('c_int8 - 9007199254740992');
SELECT f.n, f.formula,
       calc_binding.via_calc(f.formula, '(SELECT * FROM calc_binding.kinds)') AS row_form,
       calc_binding.via_calc(f.formula, 'calc_binding.kinds') AS rewritten,
       calc_binding.make_rule('k' || f.n, f.formula, 'SELECT * FROM calc_binding.kinds') AS rule_error
  FROM calc_binding.kind_formula f ORDER BY f.n;
SELECT duet_rules_evaluate(timestamptz '2026-01-01 00:01+00') > 0 AS evaluated;
SELECT f.n, f.formula, a.value AS rule_value
  FROM calc_binding.kind_formula f
  JOIN duet.rules ru ON ru.name = 'k' || f.n AND ru.tenant = 'calc-binding'
  JOIN duet.alerts a ON a.rule_id = ru.id
 WHERE coalesce(a.value::text, 'null') IS DISTINCT FROM calc_binding.via_calc(f.formula, 'calc_binding.kinds')
 ORDER BY f.n;
-- the rewrite really is positional for the plain table (all columns supported now)
EXPLAIN (VERBOSE, COSTS OFF) SELECT duet_calc('c_int8 + mixed', k) FROM calc_binding.kinds k;

-- Two columns that match a variable only ignoring case: neither is chosen, in either path.
CREATE TABLE calc_binding.twocase ("Spend" int, "SPEND" int);
INSERT INTO calc_binding.twocase VALUES (1, 2);
SELECT calc_binding.via_calc('spend', 'calc_binding.twocase');
SELECT duet_calc('spend', t) FROM (SELECT * FROM calc_binding.twocase) t;
SELECT calc_binding.make_rule('twocase', 'spend > 0', 'SELECT * FROM calc_binding.twocase');
SELECT calc_binding.via_calc('"Spend" + "SPEND"', 'calc_binding.twocase');

-- duet_rule_test binds its jsonb row as duet_calc binds jsonb: 1e400 is beyond the doubles, NULL
SELECT duet_rule_create('jsonb_row', 'x is null', query => 'SELECT 1::numeric AS x, 1::numeric AS y',
                        value => 'y * 2') > 0 AS created;
SELECT duet_rule_test('jsonb_row', '{"x": 1e400, "y": 0.1}') ->> 'fires' AS fires,
       duet_rule_test('jsonb_row', '{"x": 1e400, "y": 0.1}') -> 'value' AS value,
       duet_calc('x is null', '{"x": 1e400}'::jsonb) AS calc;

SELECT count(*) > 0 AS dropped FROM (SELECT duet_rule_drop(name) FROM duet.rules WHERE tenant = 'calc-binding') d;
SET client_min_messages = warning;
DROP SCHEMA calc_binding CASCADE;

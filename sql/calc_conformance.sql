-- calc: the conformance vectors (test/conformance/*.tsv, DESIGN §4) through duet_calc() in PostgreSQL.
-- Prints only the cases whose result differs, so the expected output has none; numbers compare as
-- exact doubles, errors by class (from the SQLSTATE) and, where the vector gives one, position.
CREATE TEMP TABLE calc_conf_case (
    file text, line int, formula_escaped text, inputs text, expected text);
\copy calc_conf_case FROM PROGRAM 'sh "$PG_ABS_SRCDIR/test/conformance-cases.sh"' WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x02')

-- The formula column escapes newline, tab and backslash (\n \t \\).
CREATE FUNCTION pg_temp.calc_conf_unescape(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(replace(s, '\\', E'\x01'), '\n', E'\n'), '\t', E'\t'), E'\x01', '\')
$$;

-- An engine error class from the error duet_calc raised; arity and unknown functions share
-- PostgreSQL's undefined_function, which duet_formula_check's error_class tells apart.
CREATE FUNCTION pg_temp.calc_conf_class(state text, formula text) RETURNS text LANGUAGE sql AS $$
    SELECT CASE state
        WHEN '42601' THEN 'syntax'
        WHEN '42804' THEN 'type'
        WHEN '42883' THEN coalesce((SELECT error_class FROM duet_formula_check(formula)
                                     WHERE error_class IN ('arity', 'unknown_function')), 'unknown_function')
        WHEN '54000' THEN 'limit'
        WHEN '42703' THEN 'unknown_variable'
        WHEN '53200' THEN 'nomem'
        WHEN '22003' THEN 'range'
        WHEN '22007' THEN 'input'
        ELSE 'sqlstate ' || state END
$$;

-- One case: NULL when it conforms, else what duet_calc gave.
CREATE FUNCTION pg_temp.calc_conf_check(formula text, inputs text, expected text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    got jsonb;
    want jsonb;
    state text;
    msg text;
    detail text;
    cls text;
    pos text[];
BEGIN
    BEGIN
        got := duet_calc(formula, inputs::jsonb);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
        cls := pg_temp.calc_conf_class(state, formula);
        pos := regexp_match(detail, 'line (\d+), column (\d+)');
        IF expected = 'error:' || cls
           OR expected = 'error:' || cls || '@' || pos[1] || ':' || pos[2] THEN
            RETURN NULL;
        END IF;
        RETURN 'error:' || cls || coalesce('@' || pos[1] || ':' || pos[2], '') || ' (' || msg || ')';
    END;
    IF expected LIKE 'error:%' THEN
        RETURN got::text;
    END IF;
    want := expected::jsonb;
    IF jsonb_typeof(got) = 'number' AND jsonb_typeof(want) = 'number' THEN
        -- as doubles; an expected integer beyond 2^53 digit for digit (exact integers)
        IF got::float8 = want::float8 AND (expected !~ '^-?[0-9]+$' OR abs(want::numeric) <= 9007199254740992
                                           OR got::numeric = want::numeric) THEN
            RETURN NULL;
        END IF;
    ELSIF got = want THEN
        RETURN NULL;
    END IF;
    RETURN got::text;
END
$$;

SELECT count(*) >= 300 AS at_least_300_cases,
       count(DISTINCT file) >= 1 AS files
  FROM calc_conf_case;

SELECT file, line, formula_escaped AS formula, inputs, expected, got
  FROM (SELECT c.*, pg_temp.calc_conf_check(pg_temp.calc_conf_unescape(formula_escaped), inputs, expected) AS got
          FROM calc_conf_case c) r
 WHERE got IS NOT NULL
 ORDER BY file, line;

-- metrics_sql: duet_metric_sql compiles a metric to one PostgreSQL expression with exactly Duet's
-- semantics. Each compilable metric is evaluated natively on every pair of edge values (±0,
-- subnormals, the float8 extremes, the bounds of the native ranges, ±inf, NaN, NULL) and compared
-- with duet_calc on the same row, as text (so -0 against 0 counts); the constructs without an
-- exact form are refused by name.
CREATE TABLE ms_vals AS
    SELECT x.a, y.b
      FROM unnest(ARRAY[0, '-0', 1, -1, 3, 0.1, -2.5, 1e308, -1e308, 1.7976931348623157e308,
                        4.9e-324, -4.9e-324, 1e-300, 1e300, 2.2250738585072014e-308,
                        6.703903964971299e+153, 1.4916681462400413e-154, 4.49423283715579e+307,
                        -8.98846567431158e307, 'Infinity', '-Infinity', 'NaN', NULL]::float8[]) x(a),
           unnest(ARRAY[0, '-0', 1, -1, 3, 0.1, -2.5, 1e308, -1e308, 1.7976931348623157e308,
                        4.9e-324, -4.9e-324, 1e-300, 1e300, 2.2250738585072014e-308,
                        6.703903964971299e+153, 1.4916681462400413e-154, 4.49423283715579e+307,
                        -8.98846567431158e307, 'Infinity', '-Infinity', 'NaN', NULL]::float8[]) y(b);
SELECT count(*) AS pairs FROM ms_vals;

-- rows where the generated SQL and duet_calc differ (number or boolean results, as text)
CREATE FUNCTION ms_mismatches(metric text, native text DEFAULT NULL) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n bigint := 0;
    first text;
BEGIN
    FOR r IN EXECUTE format(
        'SELECT v.a, v.b, (%s)::text AS native, duet_calc(%L, v) #>> ''{}'' AS duet FROM ms_vals v',
        coalesce(native, duet_metric_sql(metric)), metric || '()')
    LOOP
        -- duet_calc's jsonb number text is not float8's: compare numbers as float8 text
        IF r.native IS DISTINCT FROM
           (CASE WHEN r.duet ~ '^-?[0-9]' THEN r.duet::float8::text ELSE r.duet END) THEN
            n := n + 1;
            first := coalesce(first, format('a=%s b=%s native=%s duet=%s', r.a, r.b, r.native, r.duet));
        END IF;
    END LOOP;
    RETURN n || coalesce(' (' || first || ')', '');
END $$;

SELECT name FROM duet_metric_define('ms_add', 'a + b');
SELECT name FROM duet_metric_define('ms_sub', 'a - b');
SELECT name FROM duet_metric_define('ms_mul', 'a * b');
SELECT name FROM duet_metric_define('ms_div', 'a / b');
SELECT name FROM duet_metric_define('ms_neg', '-a + -b');
SELECT name FROM duet_metric_define('ms_nested', '(a * b) / (a - b) + a * 1e300');
SELECT name FROM duet_metric_define('ms_roas', 'a / b');
SELECT name FROM duet_metric_define('ms_composed', 'ms_roas(a * 2, b) - ms_roas(b, a)');
SELECT name FROM duet_metric_define('ms_funcs1', 'abs(a) - sign(b) + floor(a / 3) + ceil(b) - trunc(a)');
SELECT name FROM duet_metric_define('ms_funcs2', 'sqrt(a) + ln(b) - log10(a)');
SELECT name FROM duet_metric_define('ms_funcs3', 'clamp(a, -1, b) + least(a, b, 0) - greatest(a, b)');
SELECT name FROM duet_metric_define('ms_coalesce', 'coalesce(a, b, 7) + nullif(a, b)');
SELECT name FROM duet_metric_define('ms_if', 'if(a > b, a, b) * case when a between 0 and b then 1 when a in (1, b, 3) then 2 end');
SELECT name FROM duet_metric_define('ms_case_noelse', 'case when a < b then a - b when a is null then b end');
SELECT name FROM duet_metric_define('ms_logic', '(a > b and b < 0) or not (a = b) or a is null');
SELECT name FROM duet_metric_define('ms_logic2', 'a not between b and 1 and a not in (0, b) or b is not null and a <> b');
SELECT name FROM duet_metric_define('ms_consts', 'a * 0.1 + 1.7976931348623157e308 - b / -0.5');
-- integer constants (exact integers in Duet) are float8 literals: within ±2^53 the same number,
-- and integer arithmetic on them (least(a, 0) is the integer 0 when a is NULL) stays within 2^53
SELECT name FROM duet_metric_define('ms_ints', 'least(a, 0) - if(a > b, 2, -5) * if(b > 1, 3, 4)');
-- helpers from the language: ifnull is coalesce, safe_divide the division guard with its default
SELECT name FROM duet_metric_define('ms_helpers', 'safe_divide(a, b, 7) + ifnull(a, b) - safe_divide(b, a) + ifnull(safe_divide(a, b), 1)');
SELECT name FROM duet_metric_define('ms_log', 'log(a, b) + log(2, b) - log(a, 10)');
SELECT m, ms_mismatches(m) AS mismatches
  FROM unnest(ARRAY['ms_add', 'ms_sub', 'ms_mul', 'ms_div', 'ms_neg', 'ms_nested', 'ms_composed',
                    'ms_funcs1', 'ms_funcs2', 'ms_funcs3', 'ms_coalesce', 'ms_if', 'ms_case_noelse',
                    'ms_logic', 'ms_logic2', 'ms_consts', 'ms_ints', 'ms_helpers', 'ms_log']) m;

-- strings compare bytewise, as Duet's do (COLLATE "C")
SELECT name FROM duet_metric_define('ms_str', 's < t or s = ''é'' or coalesce(s, ''x'') > t',
                                    argument_types => '{"s": "String", "t": "String"}');
CREATE TABLE ms_strs AS SELECT x.s, y.t FROM unnest(ARRAY['a', 'B', 'é', 'z', '', NULL]) x(s),
                                            unnest(ARRAY['a', 'B', 'é', 'Z', '', NULL]) y(t);
DO $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM ms_strs v WHERE (%s)::text IS DISTINCT FROM duet_calc(''ms_str()'', v) #>> ''{}''',
                   duet_metric_sql('ms_str')) INTO n;
    RAISE NOTICE 'string mismatches: %', n;
END $$;

-- a string constant is a literal: quotes and backslashes cannot end it
SELECT name FROM duet_metric_define('ms_quote', 's = ''x''''); DROP TABLE ms_vals; --\''',
                                    argument_types => '{"s": "String"}');
SELECT duet_metric_sql('ms_quote');
SELECT (SELECT count(*) FROM ms_vals) AS still_there;

-- what has no exact PostgreSQL form is refused, naming it
SELECT name FROM duet_metric_define('ms_round', 'round(a / b, 2)');
SELECT duet_metric_sql('ms_round');
SELECT name FROM duet_metric_define('ms_mod', 'a % b');
SELECT duet_metric_sql('ms_mod');
SELECT name FROM duet_metric_define('ms_pow', 'a ^ 2');
SELECT duet_metric_sql('ms_pow');
SELECT name FROM duet_metric_define('ms_concat', 'a || ''%''');
SELECT duet_metric_sql('ms_concat');
SELECT name FROM duet_metric_define('ms_exp', 'exp(a)');
SELECT duet_metric_sql('ms_exp');
SELECT name FROM duet_metric_define('ms_upper', 'upper(s)', argument_types => '{"s": "String"}');
SELECT duet_metric_sql('ms_upper');
-- exact integers: arithmetic that may leave ±2^53 (Duet: exact, or error range), a constant
-- beyond 2^53 (Duet compares it exactly), div()
SELECT name FROM duet_metric_define('ms_bigmul', 'if(a > 0, 4294967296, 1) * if(b > 0, 4294967296, 1) + a');
SELECT duet_metric_sql('ms_bigmul');
SELECT name FROM duet_metric_define('ms_bigconst', 'a > 9007199254740993');
SELECT duet_metric_sql('ms_bigconst');
SELECT name FROM duet_metric_define('ms_div_int', 'div(a, 2)');
SELECT duet_metric_sql('ms_div_int');
SELECT name FROM duet_metric_define('ms_uses_round', 'ms_round(a, b) + 1');
SELECT duet_metric_sql('ms_uses_round');
SELECT duet_metric_sql('ms_roas', 'clickhouse');
SELECT duet_metric_sql('ms_roas', 'oracle');
SELECT duet_metric_sql('ms_missing');

-- + - * / are pg_duet's duet_num_* (Duet's operation in C, one call like PostgreSQL's own operators)
SELECT duet_metric_sql('ms_roas');

-- generated functions: one per global metric that compiles, the others say why they have none
SELECT name, function, not_compiled FROM duet.metric_functions WHERE name LIKE 'ms\_%' ORDER BY name;
-- they inline: the plan shows the expression, not a call of the function
EXPLAIN (VERBOSE, COSTS OFF) SELECT duet_metrics.ms_roas(a, b) FROM ms_vals;
-- and give Duet's results on every pair, through the function
SELECT m, ms_mismatches(m, format('duet_metrics.%I(a => v.a, b => v.b)', m)) AS mismatches
  FROM unnest(ARRAY['ms_add', 'ms_mul', 'ms_div', 'ms_nested', 'ms_composed', 'ms_funcs1',
                    'ms_funcs3', 'ms_if', 'ms_logic', 'ms_logic2', 'ms_ints', 'ms_helpers', 'ms_log']) m;
SELECT duet_metrics.ms_str('a', 'b') AS str_fn, duet_metrics.ms_quote('x''); DROP TABLE ms_vals; --\') AS quote_fn;
-- parameter names are quoted identifiers in the DDL: this one stays a name
SELECT name FROM duet_metric_define('ms_evil', '"a float8) RETURNS int AS $x$ DROP TABLE ms_vals $x$; --" * 2');
SELECT name FROM duet_metric_define('ms_long', 'a_parameter_name_longer_than_sixty_three_bytes_is_not_a_postgres_name + 1');
SELECT not_compiled FROM duet.metric_functions WHERE name = 'ms_long';
SELECT function FROM duet.metric_functions WHERE name = 'ms_evil';
SELECT duet_metrics.ms_evil(21) AS evil, (SELECT count(*) FROM ms_vals) AS still_there;
-- regenerated in the transaction of the change: a rollback restores the old function
BEGIN;
SELECT name FROM duet_metric_define('ms_roas', 'a / b * 10');
SELECT duet_metrics.ms_roas(6, 3) AS changed;
ROLLBACK;
SELECT duet_metrics.ms_roas(6, 3) AS restored;
-- a metric redefined so that it no longer compiles loses its function; dropped, its row
SELECT name FROM duet_metric_define('ms_add', 'round(a + b)');
SELECT name, function IS NULL AS no_function, not_compiled FROM duet.metric_functions WHERE name = 'ms_add';
SELECT duet_metric_drop('ms_evil');
SELECT count(*) AS evil_rows FROM duet.metric_functions WHERE name = 'ms_evil';
SELECT count(*) AS evil_functions FROM pg_proc WHERE proname = 'ms_evil';
-- only the admin regenerates by hand
SELECT duet_metric_functions_refresh() > 0 AS refreshed;
CREATE ROLE ms_user;
SET ROLE ms_user;
SELECT duet_metric_functions_refresh();
RESET ROLE;
DROP ROLE ms_user;
DROP TABLE ms_vals, ms_strs;
DROP FUNCTION ms_mismatches(text, text);
-- callers first, then what they call: the generated functions go with their metrics
SELECT duet_metric_drop(m) FROM unnest(ARRAY['ms_uses_round', 'ms_composed']) m;
SELECT count(*) > 0 AS dropped FROM duet.metrics m, LATERAL duet_metric_drop(m.name) d
 WHERE m.name LIKE 'ms\_%' AND m.tenant IS NULL;
SELECT count(*) AS left_functions FROM pg_proc p WHERE p.pronamespace = 'duet_metrics'::regnamespace AND p.proname LIKE 'ms\_%';

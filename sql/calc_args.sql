-- calc: positional variables (duet_calc_args) and the planner's rewrite of duet_calc(f, row) to them.
SELECT duet_calc_args('clicks / impressions', 31, 1000) AS ctr,
       duet_calc_number_args('revenue / spend', 40.25::numeric, 12.5::float8) AS roas;
-- values bind in order of first appearance, as duet_formula_check lists the variables
SELECT (duet_formula_check('b - a * b')).variables, duet_calc_args('b - a * b', 10, 2) AS b_10_a_2;
-- NULL values are NULL variables (not strict); a NULL formula gives NULL
SELECT duet_calc_args('coalesce(x, 7)', NULL::int) AS null_value, duet_calc_args(NULL, 1) IS NULL AS null_formula;
SELECT duet_calc_args('upper(s)', 'literal') AS untyped_literal, duet_calc_args('upper(s)', 'x'::char(3) || '') AS text;
-- wrong count, a type that cannot be a variable, a VARIADIC array
SELECT duet_calc_args('a + b', 1);
SELECT duet_calc_args('a + b', 1, 2, 3);
SELECT duet_calc_args('a + 1', '1 day'::interval);
SELECT duet_calc_args('a + 1', VARIADIC ARRAY[1]);
-- types are known from the arguments: a type error is a compile error with its position
SELECT duet_calc_args('a * 2', 'x'::text);

-- The rewrite: a constant formula over a table's whole row passes only the columns it reads.
CREATE TABLE calc_args_daily (day int, clicks bigint, impressions bigint, spend float8, revenue float8,
                              note text, started date);
INSERT INTO calc_args_daily SELECT i, i * 3 % 40, 1000 + i, i * 1.5, i * 2.25, 'n' || i, date '2026-10-01' + i
  FROM generate_series(0, 99) i;
EXPLAIN (VERBOSE, COSTS OFF) SELECT duet_calc('revenue / spend', d), duet_calc_number('clicks / impressions', d)
  FROM calc_args_daily d;
-- same results either way
SELECT count(*) FILTER (WHERE duet_calc('revenue / spend', d) = duet_calc('revenue / spend', row_to_json(d)::jsonb)) AS same_jsonb,
       count(*) FILTER (WHERE duet_calc_number('clicks / impressions', d) = clicks::float8 / impressions) AS same_number
  FROM calc_args_daily d;
-- not rewritten: a formula that does not compile, an unknown variable or an unsupported column
-- (their errors stay run-time errors: none when no row is evaluated) ...
EXPLAIN (COSTS OFF, VERBOSE) SELECT duet_calc('clicks / / 2', d), duet_calc('nope', d), duet_calc('started', d)
  FROM calc_args_daily d WHERE false;
SELECT duet_calc('clicks / / 2', d) FROM calc_args_daily d WHERE false;
SELECT duet_calc('started', d) FROM calc_args_daily d WHERE day = 1;
-- ... and an outer join, where a missing row must stay a NULL row
EXPLAIN (COSTS OFF, VERBOSE) SELECT duet_calc('coalesce(clicks, -1)', d)
  FROM (VALUES (1), (1000)) v(day) LEFT JOIN calc_args_daily d USING (day);
SELECT v.day, duet_calc('coalesce(clicks, -1)', d)
  FROM (VALUES (1), (1000)) v(day) LEFT JOIN calc_args_daily d USING (day) ORDER BY v.day;
-- a formula read from a table (not a constant) keeps the row form
CREATE TABLE calc_args_formula (f text);
INSERT INTO calc_args_formula VALUES ('clicks * 2');
EXPLAIN (COSTS OFF, VERBOSE) SELECT duet_calc(f, d) FROM calc_args_daily d, calc_args_formula t;
SELECT sum((duet_calc(f, d) #>> '{}')::float8) FROM calc_args_daily d, calc_args_formula t;
DROP TABLE calc_args_daily, calc_args_formula;

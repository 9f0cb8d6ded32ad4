-- calc: duet_calc(formula, row) binds variables to a row's columns by name, without jsonb.
CREATE DOMAIN calc_row_money AS numeric(12,2) CHECK (VALUE >= 0);
CREATE TABLE calc_row_stats (
    id int2, impressions int4, clicks int8, spend float8, revenue numeric, ratio float4,
    budget calc_row_money, name text, channel varchar(20), code char(6), owner name, active bool,
    started date, "Click Rate" float8);
INSERT INTO calc_row_stats VALUES
    (1, 1000, 31, 12.5, 40.25, 0.5, 500, 'spring', 'search', 'ab', 'alice', true, '2026-10-01', 0.031),
    (2, 0, 0, 0, 0, 0.25, 0, 'winter', 'video', 'cd', 'bob', false, '2026-10-02', NULL),
    (3, 2000, 90, 'NaN', 'NaN', 'Infinity', 100, 'crème', 'social', 'xyzxyz', 'carol', NULL, NULL, 0.045);
SELECT id, duet_calc('revenue / spend', s) AS roas, duet_calc('clicks / impressions', s) AS ctr
  FROM calc_row_stats s ORDER BY id;
-- every supported column type maps to a duet value
SELECT id, duet_calc('id + impressions + clicks', s) AS ints, duet_calc('ratio * 2', s) AS float4,
       duet_calc('budget / 3', s) AS domain_numeric, duet_calc('active', s) AS bool
  FROM calc_row_stats s ORDER BY id;
SELECT id, duet_calc('name || ''/'' || channel || ''/'' || code || ''/'' || owner', s) AS strings,
       duet_calc('length(code)', s) AS char_without_padding
  FROM calc_row_stats s ORDER BY id;
SELECT id, duet_calc('"Click Rate" * 100', s) AS quoted FROM calc_row_stats s ORDER BY id;
-- a row built in the query (type record), and a view
SELECT duet_calc('a * b', t) FROM (SELECT 6 AS a, 7 AS b) t;
SELECT duet_calc('a || b', t) FROM (SELECT 'x'::text AS a, 'y'::varchar AS b) t;
CREATE VIEW calc_row_view AS SELECT id, clicks::float8 / nullif(impressions, 0) AS ctr, to_char(started, 'YYYY-MM-DD') AS started FROM calc_row_stats;
SELECT id, duet_calc('round(ctr * 100, 2)', v), duet_calc('started', v) FROM calc_row_view v ORDER BY id;
-- a column of another type is an error only when the formula reads it
-- (a date column is a formula date: docs/calc.md, "Dates and timestamps")
SELECT duet_calc('started', s) FROM calc_row_stats s WHERE id = 1;
SELECT duet_calc('x', r) FROM (SELECT '1 day'::interval AS x) r;
-- dropped columns are skipped
ALTER TABLE calc_row_stats DROP COLUMN ratio;
SELECT id, duet_calc('clicks * 2', s) FROM calc_row_stats s ORDER BY id;
SELECT duet_calc('ratio', s) FROM calc_row_stats s WHERE id = 1;
-- an unknown variable names itself and the row type; a case-only mismatch binds the one such column
SELECT duet_calc('clicks / impresions', s) FROM calc_row_stats s;
SELECT duet_calc('Clicks * 2', s) FROM calc_row_stats s;
SELECT duet_calc('x', t) FROM (SELECT 1 AS a) t;
-- the second argument must be a row
SELECT duet_calc('a', 42);
SELECT duet_calc('a', 'text'::text);
-- the columns' types are known when the formula compiles: a type error carries its position
SELECT duet_calc('name * 2', s) FROM calc_row_stats s WHERE id = 2;
DROP VIEW calc_row_view;
DROP TABLE calc_row_stats;
DROP DOMAIN calc_row_money;

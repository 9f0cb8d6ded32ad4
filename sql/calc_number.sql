-- calc: duet_calc_number(formula, row | jsonb) → float8 for numeric formulas.
CREATE TABLE calc_number_daily (day int, impressions bigint, clicks bigint, spend float8, revenue float8, label text);
INSERT INTO calc_number_daily
SELECT i, 1000 + i * 37, i * 3 % 50, i * 1.37, i * 2.11, 'd' || i FROM generate_series(0, 999) i;
-- the same doubles as the native SQL expression, on every row (division by zero: NULL, like nullif)
SELECT count(*) AS rows,
       count(*) FILTER (WHERE duet_calc_number('clicks / impressions', d)
                              IS NOT DISTINCT FROM clicks::float8 / impressions) AS ctr_same,
       count(*) FILTER (WHERE duet_calc_number('revenue / spend', d)
                              IS NOT DISTINCT FROM revenue / nullif(spend, 0)) AS roas_same,
       count(*) FILTER (WHERE duet_calc_number('spend / clicks', d) IS NULL) AS cpc_nulls,
       count(*) FILTER (WHERE clicks = 0) AS zero_clicks
  FROM calc_number_daily d;
SELECT duet_calc_number('clicks / impressions', '{"clicks": 12, "impressions": 400}'::jsonb) AS ctr,
       pg_typeof(duet_calc_number('1 + 1', '{}'::jsonb));
SELECT duet_calc_number('0.1 + 0.2', '{}'::jsonb) = 0.1::float8 + 0.2::float8 AS exact_double;
-- a null result is SQL NULL
SELECT duet_calc_number('x * 2', '{"x": null}'::jsonb) IS NULL AS sql_null;
-- a formula of another type is an error, even where it would give NULL
SELECT duet_calc_number('label', d) FROM calc_number_daily d WHERE day = 1;
SELECT duet_calc_number('x > 1', '{"x": null}'::jsonb);
SELECT duet_calc_number('if(x, ''a'', 1)', '{"x": true}'::jsonb);
-- a formula in a PL/pgSQL variable: one expression, evaluated with a new formula each time (only a
-- constant formula is looked up once per call site; a parameter may change between calls)
DO $$
DECLARE
    f text;
    got text := '';
BEGIN
    FOREACH f IN ARRAY ARRAY['x + y', 'x * y', 'x - y', 'x / y'] LOOP
        got := got || duet_calc_number(f, '{"x": 6, "y": 3}'::jsonb) || ' ';
    END LOOP;
    RAISE NOTICE 'results: %', got;
END $$;
-- formulas from a column: each row its own
SELECT v.f, duet_calc_number(v.f, d) FROM (VALUES ('clicks * 0 + 1'), ('clicks * 0 + 2')) v(f),
       calc_number_daily d WHERE day = 1 ORDER BY v.f;
DROP TABLE calc_number_daily;

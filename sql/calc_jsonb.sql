-- calc: duet_calc(formula, vars jsonb) binds variables to the keys of a jsonb object.
SELECT duet_calc('clicks / impressions', '{"clicks": 12, "impressions": 400}'::jsonb) AS ctr;
-- an untyped literal could be the row or the jsonb form: cast it (or build it with jsonb_build_object)
SELECT duet_calc('a + 1', '{"a": 1}') AS untyped_literal;
SELECT duet_calc('a + 1', jsonb_build_object('a', 1)) AS built;
-- numbers are the exact double, printed shortest (not float8 -> numeric's 15 digits)
SELECT duet_calc('a + b', '{"a": 0.1, "b": 0.2}'::jsonb) AS point_three;
SELECT duet_calc('x * 10', '{"x": 1e299}'::jsonb) AS huge, duet_calc('x / 10', '{"x": 5e-323}'::jsonb) AS tiny;
SELECT duet_calc('1 / 3', '{}'::jsonb) AS third;
-- strings (UTF-8), booleans and null come back as jsonb of their kind
SELECT duet_calc('upper(name) || ''!''', '{"name": "crème brûlée"}'::jsonb) AS string;
SELECT duet_calc('length(name)', '{"name": "crème"}'::jsonb) AS code_points;
SELECT duet_calc('spend > budget', '{"spend": 510, "budget": 500}'::jsonb) AS boolean;
SELECT duet_calc('not paused and active', '{"paused": false, "active": true}'::jsonb) AS bool_inputs;
SELECT duet_calc('x + 1', '{"x": null}'::jsonb) AS null_input, jsonb_typeof(duet_calc('x + 1', '{"x": null}'::jsonb));
SELECT duet_calc('clicks / impressions', '{"clicks": 5, "impressions": 0}'::jsonb) AS divide_by_zero_is_null;
-- extra keys are ignored; key lookup is exact
SELECT duet_calc('a', '{"a": 1, "A": 2, "b": 3}'::jsonb) AS exact_key;
SELECT duet_calc('"Click Rate" * 100', '{"Click Rate": 0.031}'::jsonb) AS quoted_name;
-- numbers beyond the doubles are NULL, as results outside the doubles are
SELECT duet_calc('x', '{"x": 1e400}'::jsonb) AS beyond_double;
-- value types may change between rows: each signature gets its program
SELECT v, duet_calc('coalesce(x, y)', v) FROM (VALUES
    ('{"x": 1, "y": 2}'::jsonb), ('{"x": null, "y": 2}'), ('{"x": "a", "y": "b"}'), ('{"x": true, "y": false}')) t(v);
-- the formula may change between rows too
SELECT f, duet_calc(f, '{"a": 6, "b": 4}'::jsonb) FROM (VALUES ('a + b'), ('a * b'), ('a + b'), ('a > b')) t(f);
-- errors: a missing key, a non-object, a composite value
SELECT duet_calc('clicks / impressions', '{"clicks": 5}'::jsonb);
SELECT duet_calc('a', '[1, 2]'::jsonb);
SELECT duet_calc('a', '3'::jsonb);
SELECT duet_calc('a + 1', '{"a": [1]}'::jsonb);
SELECT duet_calc('a + 1', '{"a": {"b": 1}}'::jsonb);
-- types known from the values make type errors compile-time errors, with their position
SELECT duet_calc('a * 2', '{"a": "x"}'::jsonb);

-- calc: errors are PostgreSQL errors: SQLSTATE per class, errdetail with line:column and a caret excerpt.
SELECT duet_calc('revenue / / spend', '{"revenue": 1, "spend": 2}'::jsonb);
SELECT duet_calc(E'clicks\n  / (impressions + ', '{}'::jsonb);
SELECT duet_calc('''unterminated', '{}'::jsonb);
SELECT duet_calc('nosuch(clicks)', '{"clicks": 1}'::jsonb);
SELECT duet_calc('round(1, 2, 3)', '{}'::jsonb);
SELECT duet_calc('''a'' * 2', '{}'::jsonb);
SELECT duet_calc('1 + ''a''', '{}'::jsonb);
-- limits: nesting depth and length are clear errors, not a crash
SELECT duet_calc(repeat('(', 10000) || '1' || repeat(')', 10000), '{}'::jsonb);
SELECT duet_calc(repeat('1 + ', 40000) || '1', '{}'::jsonb);
-- SQLSTATE per class (clients need not parse messages)
CREATE FUNCTION pg_temp.calc_errors_state(f text, v jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM duet_calc(f, v);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT left(f, 20) AS formula, v, pg_temp.calc_errors_state(f, v) AS sqlstate FROM (VALUES
    ('1 +', '{}'::jsonb), ('''a'' * 2', '{}'), ('nosuch(1)', '{}'), ('round(1, 2, 3)', '{}'),
    (repeat('(', 10000) || '1' || repeat(')', 10000), '{}'), ('missing + 1', '{}'), ('a', '[]'),
    ('a * 2', '{"a": "x"}'), ('1 + 1', '{}')) t(f, v);

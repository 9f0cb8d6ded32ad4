-- calc: PostgreSQL date, timestamp and timestamptz values in formulas (docs/calc.md, "Dates and
-- timestamps"): bound from columns and positional values, results as jsonb text, now() the
-- statement's start, values outside 0001-01-01 .. 9999-12-31 an error.
SET TimeZone = 'America/New_York';
CREATE TEMP TABLE calc_dates_flight (id int, d date, ts timestamp, tz timestamptz,
                                     spend float8, budget float8);
INSERT INTO calc_dates_flight VALUES
    (1, '2026-12-01', '2026-12-01 00:00:00', '2026-12-01 00:00:00+00', 300, 1000),
    (2, '2024-02-29', '2024-02-29 23:59:59.5', '2024-03-01 04:59:59.5+05', 10, 20),
    (3, NULL, NULL, NULL, 1, 1);
-- a timestamptz binds as its UTC instant whatever the session's TimeZone
SELECT id, duet_calc('d', f), duet_calc('ts', f), duet_calc('tz', f),
       duet_calc('date_diff(''hour'', ts, tz)', f), duet_calc('day_of_week(d)', f)
  FROM calc_dates_flight f ORDER BY id;
-- the same through the positional form and the planner's rewrite
SELECT duet_calc_args('date_add(''month'', 1, a)', d), duet_calc_args('extract(''epoch'', a)', tz)
  FROM calc_dates_flight WHERE id = 2;
EXPLAIN (COSTS OFF, VERBOSE) SELECT duet_calc('date_trunc(''week'', d)', f) FROM calc_dates_flight f;
-- pacing written directly against the flight's dates
SELECT id, duet_calc('spend / (budget * date_diff(''hour'', ts, date_add(''day'', 2, ts)) / date_diff(''hour'', ts, date_add(''day'', 10, ts)))', f)
  FROM calc_dates_flight f WHERE id = 1;
-- now() and today() are the statement's start, in UTC; duet_calc_number refuses a date result
BEGIN;
SELECT duet_calc('now()', '{}'::jsonb) = to_jsonb(to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'))
    OR duet_calc('now()', '{}'::jsonb) = to_jsonb(rtrim(rtrim(to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '0'), '.'))
    AS now_is_statement_start,
       duet_calc('today()', '{}'::jsonb) = to_jsonb(to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD')) AS today_utc;
COMMIT;
SELECT duet_calc_number('today()', '{}'::jsonb);
-- outside the formula range: an error naming the value, never a wrap
SELECT duet_calc_args('a', 'infinity'::date);
SELECT duet_calc_args('a', '10000-01-01'::timestamp);
SELECT duet_calc_args('a', '0001-01-01 BC'::date);
-- bad text and units: SQLSTATE 22007 (invalid_datetime_format), out of range 22003
SELECT duet_calc('date(x)', '{"x": "2026-02-30"}'::jsonb);
SELECT duet_calc('date_trunc(''fortnight'', d)', f) FROM calc_dates_flight f WHERE id = 1;
SELECT duet_calc('date_add(''year'', 8000, d)', f) FROM calc_dates_flight f WHERE id = 1;
SELECT result_type FROM duet_formula_check('date ''2026-12-02''');
SELECT result_type FROM duet_formula_check('now()');
RESET TimeZone;
-- time zones: the same tz database as PostgreSQL's AT TIME ZONE, both directions, every half hour
-- of the days around 2026's transitions and of 1900, in zones with and without DST
SET TimeZone = 'UTC';
WITH z(zone) AS (VALUES ('Europe/Paris'), ('America/New_York'), ('Asia/Kolkata'), ('Australia/Lord_Howe'),
                        ('America/Sao_Paulo'), ('Pacific/Chatham'), ('UTC')),
     t(ts) AS (SELECT generate_series(d, d + interval '2 days', interval '30 minutes')::timestamp
                 FROM unnest(ARRAY['2026-03-07', '2026-03-28', '2026-04-04', '2026-09-26', '2026-10-24',
                                   '2026-10-31', '1900-01-01', '1970-01-01']::timestamp[]) d)
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE duet_calc_args('to_timezone(t, z)', ts, zone) #>> '{}'
                              <> to_char((ts AT TIME ZONE 'UTC') AT TIME ZONE zone, 'YYYY-MM-DD HH24:MI:SS')) AS to_differ,
       count(*) FILTER (WHERE duet_calc_args('from_timezone(t, z)', ts, zone) #>> '{}'
                              <> to_char((ts AT TIME ZONE zone) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')) AS from_differ
  FROM z, t;
SELECT duet_calc_args('to_timezone(t, z)', now(), 'Europe/Nowhere');
RESET TimeZone;
-- Volatility: formulas are STABLE (now(), the tenant's metrics), so a generic plan does not fold
-- now() at planning time and no index or generated column can freeze one
SELECT p.proname, p.provolatile FROM pg_proc p
 WHERE p.proname IN ('duet_calc', 'duet_calc_number', 'duet_calc_args', 'duet_calc_number_args',
                     'duet_formula_check', 'duet_formula_explain')
 ORDER BY 1, 2;
SET plan_cache_mode = force_generic_plan;
CREATE TEMP TABLE calc_dates_seen (t jsonb);
PREPARE calc_dates_now AS INSERT INTO calc_dates_seen SELECT duet_calc('now()', '{}'::jsonb);
EXECUTE calc_dates_now;
SELECT pg_sleep(0.01);
EXECUTE calc_dates_now;
SELECT count(DISTINCT t) AS distinct_nows FROM calc_dates_seen;
DEALLOCATE calc_dates_now;
RESET plan_cache_mode;
CREATE TEMP TABLE calc_dates_idx (d date);
CREATE INDEX ON calc_dates_idx ((duet_calc_number('date_diff(''day'', d, now())', calc_dates_idx)));

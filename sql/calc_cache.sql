-- calc: a formula compiles once per query (call site), and once per backend (bounded cache).
CREATE TABLE calc_cache_rows AS SELECT i AS a, i * 2 AS b, 'r' || i AS s FROM generate_series(1, 1000) i;
CREATE TEMP TABLE calc_cache_before AS SELECT * FROM duet_calc_cache_stats();
CREATE FUNCTION pg_temp.calc_cache_delta(OUT lookups bigint, OUT compiles bigint, OUT evictions bigint)
LANGUAGE sql AS $$
    SELECT n.lookups - o.lookups, n.compiles - o.compiles, n.evictions - o.evictions
      FROM duet_calc_cache_stats() n, calc_cache_before o
$$;
CREATE FUNCTION pg_temp.calc_cache_mark() RETURNS void LANGUAGE sql AS $$
    DELETE FROM calc_cache_before; INSERT INTO calc_cache_before SELECT * FROM duet_calc_cache_stats();
$$;
-- 1000 rows, a new formula: one untyped compile, one typed compile (the columns are numbers)
SELECT sum(duet_calc_number('a * 3 + b', r)) FROM calc_cache_rows r;
SELECT * FROM pg_temp.calc_cache_delta();
-- the same formula in the next query: looked up, not compiled
SELECT pg_temp.calc_cache_mark();
SELECT sum(duet_calc_number('a * 3 + b', r)) FROM calc_cache_rows r;
SELECT * FROM pg_temp.calc_cache_delta();
-- jsonb inputs: the same, once per query
SELECT pg_temp.calc_cache_mark();
SELECT count(duet_calc('x - 1', jsonb_build_object('x', a))) FROM calc_cache_rows;
SELECT * FROM pg_temp.calc_cache_delta();
-- with the backend cache off, each query still compiles only once, not per row
SET duet.calc_cache_size = 0;
SELECT entries FROM duet_calc_cache_stats();
SELECT pg_temp.calc_cache_mark();
SELECT sum(duet_calc_number('a * 3 + b', r)) FROM calc_cache_rows r;
SELECT * FROM pg_temp.calc_cache_delta();
-- a call site that sees rows of different types (record typmods) maps each, and reuses programs
SET duet.calc_cache_size = 256;
SELECT pg_temp.calc_cache_mark();
SELECT duet_calc('f1', r) FROM (VALUES (ROW(2)), (ROW(2.5::float8)), (ROW('ab'::text)), (ROW(7))) v(r);
SELECT * FROM pg_temp.calc_cache_delta();
-- a bounded cache: older programs are evicted (and freed once no call site holds them)
SET duet.calc_cache_size = 2;
SELECT entries FROM duet_calc_cache_stats();
SELECT pg_temp.calc_cache_mark();
SELECT f, duet_calc(f, '{}'::jsonb) FROM (VALUES ('1 + 1'), ('2 + 2'), ('3 + 3'), ('1 + 1')) t(f);
SELECT * FROM pg_temp.calc_cache_delta();
SELECT entries FROM duet_calc_cache_stats();
-- a program evicted while a query still evaluates it stays valid for that query
SELECT count(*) FILTER (WHERE duet_calc_number('a * 3 + b', r) = a * 3 + b) AS correct,
       count(DISTINCT duet_calc('''k'' || s', r)) AS other, count(DISTINCT duet_calc('a - b', r)) AS third
  FROM calc_cache_rows r;
RESET duet.calc_cache_size;
SET duet.calc_cache_size = -1;
DROP TABLE calc_cache_rows;

#!/usr/bin/env bash
# Config: cached duet_config_get() against an indexed SELECT of the same value in a SQL function,
# measured in the same session (a tenant member, so the tenant context and RLS are live).
# Prints ns per lookup and the ratio; the loop's own cost is measured and shown separately.
set -euo pipefail
N=${DUET_BENCH_CONFIG_N:-200000}
source "$(dirname "$0")/../test/lib.sh"
psql() { "$DUET_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

PGOPTIONS="-c client_min_messages=warning" psql -d postgres -o /dev/null <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_duet;
DROP TABLE IF EXISTS bench_config;
DROP ROLE IF EXISTS duet_bench_member;
CREATE ROLE duet_bench_member LOGIN;
DELETE FROM duet.config WHERE key LIKE 'bench.%';
DELETE FROM duet.config_history WHERE key LIKE 'bench.%';
DELETE FROM duet.tenants WHERE name = 'bench-tenant' OR name LIKE 'bench-filler-%';
SELECT duet_tenant_create('bench-tenant');
SELECT duet_tenant_add_member('bench-tenant', 'duet_bench_member');
-- 100 keys with a default; every other key overridden for the tenant
SELECT count(duet_config_set_default('bench.k' || i, to_jsonb(i))) FROM generate_series(0, 99) i;
SET duet.tenant = 'bench-tenant';
SELECT count(duet_config_set('bench.k' || i, to_jsonb(i * 10))) FROM generate_series(0, 98, 2) i;
RESET duet.tenant;
-- Other tenants' overrides, so that the table has a realistic size (200 tenants x 100 keys):
-- written directly, as a restore would, since only their presence matters here.
INSERT INTO duet.tenants (name) SELECT 'bench-filler-' || t FROM generate_series(1, 200) t;
INSERT INTO duet.config (key, tenant, value, version, updated_by)
     SELECT 'bench.k' || k, 'bench-filler-' || t, to_jsonb(k + t), 1, 'bench'
       FROM generate_series(1, 200) t, generate_series(0, 99) k;
ANALYZE duet.config;
-- The baseline: the same lookup (tenant override, else default) as an indexed SELECT in a SQL
-- function, on a plain copy of the table (no RLS) ...
CREATE TABLE bench_config AS SELECT key, tenant, value FROM duet.config WHERE key LIKE 'bench.%';
CREATE UNIQUE INDEX ON bench_config (key, tenant) NULLS NOT DISTINCT;
ANALYZE bench_config;
GRANT SELECT ON bench_config TO duet_bench_member;
CREATE OR REPLACE FUNCTION bench_config_select(k text, t text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT value FROM bench_config WHERE key = k AND (tenant = t OR tenant IS NULL)
     ORDER BY tenant NULLS LAST LIMIT 1 $$;
-- ... and on duet.config itself, through its row-level security.
CREATE OR REPLACE FUNCTION bench_config_select_rls(k text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT value FROM duet.config WHERE key = k ORDER BY tenant NULLS LAST LIMIT 1 $$;
SQL

PGOPTIONS="-c bench.n=$N" psql -d postgres -U duet_bench_member -v n="$N" <<'SQL'
\set QUIET on
SELECT duet_current_tenant() AS tenant \gset
-- check that every method returns the same values before timing them
SELECT count(*) AS mismatches FROM generate_series(0, 99) i
 WHERE duet_config_get('bench.k' || i) IS DISTINCT FROM bench_config_select('bench.k' || i, :'tenant')
    OR duet_config_get('bench.k' || i) IS DISTINCT FROM bench_config_select_rls('bench.k' || i) \gset
\if :mismatches
  \echo 'config bench: methods disagree' :mismatches
  \quit
\endif
CREATE TEMP TABLE timings (method text, ns_per_call float8);
DO $$
DECLARE
    n int := current_setting('bench.n')::int;
    t0 timestamptz;
    best float8;
    m text;
    r int;
BEGIN
    FOREACH m IN ARRAY ARRAY['loop', 'duet_config_get', 'indexed SELECT', 'indexed SELECT (RLS)'] LOOP
        best := 'infinity';
        FOR r IN 1 .. 3 LOOP
            t0 := clock_timestamp();
            CASE m
                WHEN 'loop' THEN
                    PERFORM count(('bench.k' || (i % 100))::text) FROM generate_series(1, n) i;
                WHEN 'duet_config_get' THEN
                    PERFORM count(duet_config_get('bench.k' || (i % 100))) FROM generate_series(1, n) i;
                WHEN 'indexed SELECT' THEN
                    PERFORM count(bench_config_select('bench.k' || (i % 100), 'bench-tenant')) FROM generate_series(1, n) i;
                ELSE
                    PERFORM count(bench_config_select_rls('bench.k' || (i % 100))) FROM generate_series(1, n) i;
            END CASE;
            best := least(best, extract(epoch FROM clock_timestamp() - t0) * 1e9 / n);
        END LOOP;
        INSERT INTO timings VALUES (m, best);
    END LOOP;
END $$;
SELECT ns_per_call AS loop_ns FROM timings WHERE method = 'loop' \gset
\pset tuples_only on
\pset format unaligned
\pset fieldsep '\n'
\echo 'config lookups:' :n 'calls over 100 keys (half overridden by the tenant), 20k rows, best of 3'
SELECT format('  %-24s %8s ns/call', method, round(ns_per_call::numeric, 0)) FROM timings;
SELECT format('  ratio indexed SELECT / duet_config_get: %sx (net of the loop''s own %s ns: %sx)',
              round((s.ns_per_call / g.ns_per_call)::numeric, 1), round(:loop_ns::numeric, 0),
              round(((s.ns_per_call - :loop_ns) / greatest(g.ns_per_call - :loop_ns, 1))::numeric, 1)),
       format('  ratio indexed SELECT through RLS / duet_config_get: %sx (net: %sx)',
              round((r.ns_per_call / g.ns_per_call)::numeric, 1),
              round(((r.ns_per_call - :loop_ns) / greatest(g.ns_per_call - :loop_ns, 1))::numeric, 1))
  FROM timings g, timings s, timings r
 WHERE g.method = 'duet_config_get' AND s.method = 'indexed SELECT' AND r.method = 'indexed SELECT (RLS)';
SQL

# Leave the bench cluster as we found it.
PGOPTIONS="-c client_min_messages=warning" psql -d postgres -o /dev/null <<'SQL'
DROP FUNCTION bench_config_select(text, text), bench_config_select_rls(text);
DROP TABLE bench_config;
DELETE FROM duet.config WHERE key LIKE 'bench.%';
DELETE FROM duet.config_history WHERE key LIKE 'bench.%';
DELETE FROM duet.tenants WHERE name = 'bench-tenant' OR name LIKE 'bench-filler-%';
DROP ROLE duet_bench_member;
SQL

-- Security suite: a non-superuser member of tenant A (config_sec_mallory) attacks tenant B.
-- Every attack must fail with an error or see nothing of B. The B secrets are the value
-- "b-secret", the key csec.b_only, and B's rows in a protected user table.
CREATE ROLE config_sec_mallory LOGIN;     -- member of csec-a, the attacker
CREATE ROLE config_sec_victim LOGIN;      -- member of csec-b
CREATE ROLE config_sec_owner LOGIN;       -- owns a protected application table
SELECT duet_tenant_create('csec-a'), duet_tenant_create('csec-b');
SELECT duet_tenant_add_member('csec-a', 'config_sec_mallory'), duet_tenant_add_member('csec-b', 'config_sec_victim');
SELECT duet_config_set_default('csec.limit', '1');
SET ROLE config_sec_victim;
SELECT duet_config_set('csec.limit', '"b-secret"'), duet_config_set('csec.b_only', '"b-secret"');
RESET ROLE;
SET ROLE config_sec_mallory;
SELECT duet_config_set('csec.limit', '"a-value"');
RESET ROLE;
CREATE TABLE config_sec_orders (id int PRIMARY KEY, tenant text NOT NULL, note text);
INSERT INTO config_sec_orders VALUES (1, 'csec-a', 'a order'), (2, 'csec-b', 'b-secret order');
ALTER TABLE config_sec_orders OWNER TO config_sec_owner;
SET ROLE config_sec_owner;
SELECT duet_tenant_protect('config_sec_orders');
GRANT SELECT, INSERT, UPDATE, DELETE ON config_sec_orders TO config_sec_mallory;
RESET ROLE;
ANALYZE duet.config;
CREATE SCHEMA config_sec_mallory AUTHORIZATION config_sec_mallory;

-- the attacker logs in as itself (a superuser's SET ROLE would leave a superuser session behind)
\c - config_sec_mallory
SELECT current_user, session_user, duet_current_tenant();

-- == switching the tenant context ==
-- attack 1: SET the underlying setting
SET duet.tenant = 'csec-b';
-- attack 2: SET LOCAL inside a transaction
BEGIN;
SET LOCAL duet.tenant = 'csec-b';
ROLLBACK;
-- attack 3: set_config(), session
SELECT set_config('duet.tenant', 'csec-b', false);
-- attack 4: set_config(), transaction-local
SELECT set_config('duet.tenant', 'csec-b', true);
-- attack 5: RESET hoping for a different default
RESET duet.tenant;
-- attack 6: duet_set_tenant() for a tenant it is not in
SELECT duet_set_tenant('csec-b');
-- attack 7: duet_set_tenant(), transaction-local
BEGIN;
SELECT duet_set_tenant('csec-b', true);
ROLLBACK;
-- attack 8: look-alike names
SELECT duet_set_tenant('CSEC-B');
SELECT duet_set_tenant('csec-b ');
-- attack 9: a per-role default
ALTER ROLE config_sec_mallory SET duet.tenant = 'csec-b';
-- attack 10: a per-database default
ALTER DATABASE contrib_regression SET duet.tenant = 'csec-b';
-- attack 11: a function with a SET clause
CREATE FUNCTION config_sec_mallory.switch() RETURNS text LANGUAGE sql SET duet.tenant = 'csec-b'
    AS $$ SELECT duet_current_tenant() $$;
-- attack 12: a SECURITY DEFINER function of its own (runs as itself: no gain)
CREATE FUNCTION config_sec_mallory.definer() RETURNS text LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT duet_set_tenant('csec-b') $$;
SELECT config_sec_mallory.definer();
-- attack 13: become the victim
SET ROLE config_sec_victim;
-- attack 14: SET SESSION AUTHORIZATION
SET SESSION AUTHORIZATION config_sec_victim;
-- attack 15: call the library's internals through a C function of its own
CREATE FUNCTION config_sec_mallory.evil(text) RETURNS text LANGUAGE c
    AS '$libdir/pg_duet', 'duet_set_tenant';
-- attack 16: grant itself membership
SELECT duet_tenant_add_member('csec-b', 'config_sec_mallory');
-- attack 17: write the membership table directly
INSERT INTO duet.tenant_members (tenant, member) VALUES ('csec-b', 'config_sec_mallory');
-- attack 18: read the tenant tables or the admin listing
SELECT * FROM duet.tenants;
SELECT * FROM duet_tenant_list();
SELECT duet_my_tenants();
-- still tenant A after all of the above
SELECT duet_current_tenant();

-- == reading B's config ==
-- attack 19: query the config table for B
SELECT key, tenant, value FROM duet.config WHERE tenant = 'csec-b' OR value = '"b-secret"';
-- attack 20: query the history for B
SELECT key, tenant, value FROM duet.config_history WHERE tenant = 'csec-b' OR value = '"b-secret"';
-- attack 21: the API: history, point-in-time, effective config, get
SELECT * FROM duet_config_history('csec.b_only');
SELECT duet_config_at('csec.b_only', now()) AS at_b_only, duet_config_get('csec.b_only') AS get_b_only;
SELECT key, value FROM duet.config_effective WHERE key LIKE 'csec.%' ORDER BY key;
-- attack 22: COPY the table out
COPY duet.config (key, tenant, value) TO STDOUT;
-- attack 23: switch row security off to read everything
SET row_security = off;
SELECT count(*) FROM duet.config;
RESET row_security;
-- attack 24: a leaky function in WHERE sees only rows that pass the policy first
CREATE FUNCTION config_sec_mallory.leak(jsonb) RETURNS boolean LANGUAGE plpgsql COST 0.0000001
    AS $$ BEGIN IF $1::text LIKE '%b-secret%' THEN RAISE NOTICE 'leaked %', $1; END IF; RETURN true; END $$;
SELECT count(*) FROM duet.config WHERE config_sec_mallory.leak(value);
-- attack 25: planner statistics of the table
SELECT count(*) FROM pg_stats WHERE schemaname = 'duet' AND tablename = 'config';
-- attack 26: shadow duet_current_tenant() earlier in the search path
CREATE FUNCTION config_sec_mallory.duet_current_tenant() RETURNS text LANGUAGE sql AS $$ SELECT 'csec-b'::text $$;
SET search_path = config_sec_mallory, public;
SELECT duet_current_tenant() AS shadowed;
SELECT count(*) FROM duet.config WHERE tenant = 'csec-b';
SELECT public.duet_config_get('csec.limit');
RESET search_path;
-- attack 27: a view of its own over the table (runs with its own rights: RLS applies)
CREATE VIEW config_sec_mallory.all_config AS SELECT * FROM duet.config;
SELECT count(*) FROM config_sec_mallory.all_config WHERE tenant = 'csec-b';

-- == writing B's config ==
-- attack 28: UPDATE, INSERT, DELETE, TRUNCATE the tables directly
UPDATE duet.config SET value = '"pwned"' WHERE tenant = 'csec-b';
INSERT INTO duet.config (key, tenant, value, version, updated_by) VALUES ('csec.x', 'csec-b', '1', 1, 'm');
DELETE FROM duet.config WHERE tenant = 'csec-b';
TRUNCATE duet.config;
-- attack 29: call the internal write function with B as the tenant
SELECT duet.duet_config_apply('set', 'csec-b', 'csec.limit', '"pwned"', NULL, 'config_sec_mallory');
-- attack 30: change the global default B falls back to
SELECT duet_config_set_default('csec.limit', '"pwned"');
-- attack 31: roll back to one of B's versions (versions are per tenant: A's own, or none)
SELECT duet_config_rollback('csec.b_only', 1);
-- attack 32: redefine B's key so that its value becomes invalid
SELECT duet_config_define('csec.limit', '{"type": "number"}');
SELECT duet.duet_config_define_apply('csec.limit', '{"type": "number"}', NULL, 'm');
-- attack 33: forge audit history
INSERT INTO duet.config_history (key, tenant, version, operation, value, changed_by)
     VALUES ('csec.limit', 'csec-b', 100, 'set', '"pwned"', 'config_sec_victim');
-- attack 34: fire the cache-invalidation trigger function by hand
SELECT duet_changed_trigger();
-- attack 35: prune B's history
SELECT duet_config_history_prune();
SET duet.config_history_retention = '1min';

-- == B's rows in a protected application table ==
-- attack 36: read them
SELECT id, tenant, note FROM config_sec_orders ORDER BY id;
-- attack 37: insert a row for B, or move its own row to B
INSERT INTO config_sec_orders VALUES (3, 'csec-b', 'planted');
UPDATE config_sec_orders SET tenant = 'csec-b' WHERE id = 1;
-- attack 38: update or delete B's row blindly
UPDATE config_sec_orders SET note = 'pwned' WHERE id = 2;
DELETE FROM config_sec_orders WHERE id = 2;
-- attack 39: remove the protection
ALTER TABLE config_sec_orders DISABLE ROW LEVEL SECURITY;
ALTER TABLE config_sec_orders NO FORCE ROW LEVEL SECURITY;
DROP POLICY duet_tenant_isolation ON config_sec_orders;
SELECT duet_tenant_protect('config_sec_orders', 'note');
-- attack 40: widen with a permissive policy of its own (not the owner: refused; and restrictive anyway)
CREATE POLICY open ON config_sec_orders USING (true);
\c - postgres

-- nothing of B changed
SELECT tenant, key, value, version FROM duet.config WHERE key LIKE 'csec.%' ORDER BY tenant NULLS FIRST, key;
SELECT count(*) AS history_rows FROM duet.config_history WHERE key LIKE 'csec.%';
SELECT id, tenant, note FROM config_sec_orders ORDER BY id;
SELECT rolconfig FROM pg_roles WHERE rolname = 'config_sec_mallory';
-- clean up
DROP SCHEMA config_sec_mallory CASCADE;
DROP TABLE config_sec_orders;
DELETE FROM duet.config WHERE key LIKE 'csec.%';
DELETE FROM duet.config_history WHERE key LIKE 'csec.%';
DELETE FROM duet.tenants WHERE name LIKE 'csec-%';
DROP ROLE config_sec_mallory, config_sec_victim, config_sec_owner;

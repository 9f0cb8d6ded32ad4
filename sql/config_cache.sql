-- the per-backend cache never serves a value older than what this session may see
CREATE ROLE config_cache_a LOGIN;
SELECT duet_tenant_create('ccache-a'), duet_tenant_create('ccache-b');
SELECT duet_tenant_add_member('ccache-a', 'config_cache_a');
SELECT duet_config_set_default('ccache.k', '1');
SET ROLE config_cache_a;
SELECT duet_config_get('ccache.k');                 -- fills the cache
SELECT duet_config_set('ccache.k', '2');
SELECT duet_config_get('ccache.k');                 -- own write, next statement
SELECT duet_config_set('ccache.k', '3'), duet_config_get('ccache.k');   -- same statement
-- inside a transaction: own uncommitted writes are visible, and gone after ROLLBACK
BEGIN;
SELECT duet_config_get('ccache.k');
SELECT duet_config_set('ccache.k', '4');
SELECT duet_config_get('ccache.k');
ROLLBACK;
SELECT duet_config_get('ccache.k');
-- ... and after ROLLBACK TO SAVEPOINT
BEGIN;
SAVEPOINT s;
SELECT duet_config_set('ccache.k', '5');
SELECT duet_config_get('ccache.k');
ROLLBACK TO SAVEPOINT s;
SELECT duet_config_get('ccache.k');
COMMIT;
-- unset falls back to the default at once
SELECT duet_config_unset('ccache.k');
SELECT duet_config_get('ccache.k');
RESET ROLE;
-- a change made without the API (a superuser's UPDATE, a restore) is seen too
SELECT duet_config_get('ccache.k');
UPDATE duet.config SET value = '10' WHERE key = 'ccache.k' AND tenant IS NULL;
SELECT duet_config_get('ccache.k');
DELETE FROM duet.config WHERE key = 'ccache.k' AND tenant IS NULL;
SELECT duet_config_get('ccache.k') IS NULL AS deleted;
-- switching tenant or role switches values, never serving one tenant's cached value to another
SELECT duet_config_set_default('ccache.k', '1');
SELECT duet_set_tenant('ccache-b');
SELECT duet_config_set('ccache.k', '"b"');
SELECT duet_config_get('ccache.k');
SET ROLE config_cache_a;        -- the session asks for ccache-b, which this role is not in: defaults only
SELECT duet_current_tenant(), duet_config_get('ccache.k');
RESET ROLE;
SELECT duet_set_tenant(NULL);
SET ROLE config_cache_a;
SELECT duet_current_tenant(), duet_config_get('ccache.k');
RESET ROLE;
-- membership removal takes the tenant's values away at once
SELECT duet_set_tenant('ccache-a');
SELECT duet_config_set('ccache.k', '"a"');
SELECT duet_set_tenant(NULL);
SET ROLE config_cache_a;
SELECT duet_config_get('ccache.k');
RESET ROLE;
SELECT duet_tenant_remove_member('ccache-a', 'config_cache_a');
SET ROLE config_cache_a;
SELECT duet_config_get('ccache.k');
RESET ROLE;
-- clean up
DELETE FROM duet.config WHERE key LIKE 'ccache.%';
DELETE FROM duet.config_history WHERE key LIKE 'ccache.%';
DELETE FROM duet.tenants WHERE name LIKE 'ccache-%';
DROP ROLE config_cache_a;

-- config writes: versions, unset, rollback, defaults, errors, who/when
CREATE ROLE config_write_a LOGIN;
CREATE ROLE config_write_none LOGIN;
SELECT duet_tenant_create('cwr-a');
SELECT duet_tenant_add_member('cwr-a', 'config_write_a');
SET ROLE config_write_a;
-- versions start at 1 and strictly increase per (tenant, key)
SELECT duet_config_set('cwr.k', '1') AS v1, duet_config_set('cwr.k', '2') AS v2, duet_config_set('cwr.k', '3') AS v3;
SELECT key, tenant, value, version, updated_by FROM duet.config WHERE key = 'cwr.k';
-- unset removes the override and is itself a version; setting again continues the sequence
SELECT duet_config_unset('cwr.k');
SELECT duet_config_get('cwr.k') IS NULL AS gone;
SELECT duet_config_unset('cwr.k');
SELECT duet_config_set('cwr.k', '"again"');
-- rollback restores the value of an earlier version, as a new version
SELECT duet_config_rollback('cwr.k', 2);
SELECT duet_config_get('cwr.k');
-- rolling back to an unset version unsets
SELECT duet_config_rollback('cwr.k', 4);
SELECT duet_config_get('cwr.k') IS NULL AS unset_again;
SELECT duet_config_rollback('cwr.k', 99);
SELECT duet_config_rollback('cwr.k', 0);
SELECT duet_config_rollback('cwr.k', NULL);
SELECT version, operation, value, previous_value, rolled_back_to, changed_by
  FROM duet_config_history('cwr.k');
-- bad input loses nothing
SELECT duet_config_set('cwr.k', NULL);
SELECT duet_config_set(NULL, '1');
SELECT duet_config_set('Not.Valid', '1');
SELECT duet_config_set('9starts.with.digit', '1');
SELECT duet_config_set('cwr.big', to_jsonb(repeat('x', 1100000)));
SELECT duet_config_unset('cwr.never');
-- JSON null is a value, distinct from unset
SELECT duet_config_set('cwr.null', 'null');
SELECT value FROM duet.config WHERE key = 'cwr.null';
-- defaults are for administrators
SELECT duet_config_set_default('cwr.d', '1');
SELECT duet_config_unset_default('cwr.d');
SELECT duet_config_rollback_default('cwr.d', 1);
RESET ROLE;
SELECT duet_config_set_default('cwr.d', '1'), duet_config_set_default('cwr.d', '2');
SELECT duet_config_rollback_default('cwr.d', 1);
SELECT duet_config_unset_default('cwr.d');
SELECT duet_config_unset_default('cwr.d');
SELECT version, tenant, operation, value FROM duet_config_history('cwr.d');
-- a superuser without a tenant cannot set a tenant value by accident
SELECT duet_set_tenant(NULL);
SELECT duet_config_set('cwr.k', '1');
-- a role in no tenant cannot either
SET ROLE config_write_none;
SELECT duet_config_set('cwr.k', '1');
SELECT duet_config_unset('cwr.k');
SELECT duet_config_rollback('cwr.k', 1);
RESET ROLE;
-- writes are transactional: a rolled-back set leaves nothing behind
SET ROLE config_write_a;
BEGIN;
SELECT duet_config_set('cwr.tx', '1');
ROLLBACK;
SELECT count(*) FROM duet.config_history WHERE key = 'cwr.tx';
RESET ROLE;
-- the tables are dumped with user data
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
 WHERE e.extname = 'pg_duet' AND c.relname LIKE 'config%' ORDER BY 1;
-- clean up
DELETE FROM duet.config WHERE key LIKE 'cwr.%';
DELETE FROM duet.config_history WHERE key LIKE 'cwr.%';
DELETE FROM duet.tenants WHERE name LIKE 'cwr-%';
DROP ROLE config_write_a, config_write_none;

-- duet_config_effective() and the duet.config_effective view: tenant-scoped, with the source
CREATE ROLE config_eff_a LOGIN;
CREATE ROLE config_eff_b LOGIN;
CREATE ROLE config_eff_none LOGIN;
SELECT duet_tenant_create('ceff-a'), duet_tenant_create('ceff-b');
SELECT duet_tenant_add_member('ceff-a', 'config_eff_a'), duet_tenant_add_member('ceff-b', 'config_eff_b');
SELECT duet_config_set_default('ceff.budget', '100'), duet_config_set_default('ceff.mode', '"on"');
SET ROLE config_eff_a;
SELECT duet_config_set('ceff.budget', '250'), duet_config_set('ceff.only_a', 'true');
SELECT key, value, source, tenant, version, updated_by FROM duet.config_effective WHERE key LIKE 'ceff.%' ORDER BY key;
RESET ROLE;
SET ROLE config_eff_b;
SELECT key, value, source, tenant, version FROM duet_config_effective() WHERE key LIKE 'ceff.%' ORDER BY key;
RESET ROLE;
SET ROLE config_eff_none;
SELECT key, value, source FROM duet.config_effective WHERE key LIKE 'ceff.%' ORDER BY key;
RESET ROLE;
-- the view runs as the caller (security_invoker), so row-level security applies to it
SELECT reloptions FROM pg_class WHERE oid = 'duet.config_effective'::regclass;
-- clean up
DELETE FROM duet.config WHERE key LIKE 'ceff.%';
DELETE FROM duet.config_history WHERE key LIKE 'ceff.%';
DELETE FROM duet.tenants WHERE name LIKE 'ceff-%';
DROP ROLE config_eff_a, config_eff_b, config_eff_none;

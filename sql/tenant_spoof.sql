-- the tenant context cannot be switched by a non-member through the setting behind it
CREATE ROLE tenant_spoof_alice LOGIN;    -- member of tspoof-a only
SELECT duet_tenant_create('tspoof-a'), duet_tenant_create('tspoof-b');
SELECT duet_tenant_add_member('tspoof-a', 'tenant_spoof_alice');
CREATE SCHEMA tenant_spoof AUTHORIZATION tenant_spoof_alice;
SET ROLE tenant_spoof_alice;
SELECT duet_current_tenant();
SET duet.tenant = 'tspoof-b';
SET LOCAL duet.tenant = 'tspoof-b';
SELECT set_config('duet.tenant', 'tspoof-b', false);
SELECT set_config('duet.tenant', 'tspoof-b', true);
RESET duet.tenant;
ALTER ROLE tenant_spoof_alice SET duet.tenant = 'tspoof-b';
CREATE FUNCTION tenant_spoof.fn() RETURNS text LANGUAGE sql SET duet.tenant = 'tspoof-b'
    AS $$ SELECT duet_current_tenant() $$;
SELECT duet_current_tenant();
-- RESET ALL / DISCARD ALL return to the role's default, never to another tenant
RESET ALL;
SELECT duet_current_tenant();
RESET ROLE;
DISCARD ALL;
SET ROLE tenant_spoof_alice;
SELECT duet_current_tenant();
RESET ROLE;
-- even a value a superuser put in the setting is honoured only for members
ALTER ROLE tenant_spoof_alice SET duet.tenant = 'tspoof-b';
SET duet.tenant = 'tspoof-b';
SET ROLE tenant_spoof_alice;
SHOW duet.tenant;
SELECT duet_current_tenant();
RESET ROLE;
GRANT SET ON PARAMETER duet.tenant TO tenant_spoof_alice;
SET ROLE tenant_spoof_alice;
SET duet.tenant = 'tspoof-b';
SELECT duet_current_tenant();
RESET ROLE;
REVOKE SET ON PARAMETER duet.tenant FROM tenant_spoof_alice;
ALTER ROLE tenant_spoof_alice RESET duet.tenant;
-- the setting's syntax is checked even for superusers
SET duet.tenant = 'Not A Tenant';
RESET duet.tenant;
-- clean up
DELETE FROM duet.tenants WHERE name LIKE 'tspoof-%';
DROP SCHEMA tenant_spoof;
DROP ROLE tenant_spoof_alice;

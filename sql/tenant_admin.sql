-- tenant administration: create, list, disable/enable, members; errors; admin-only functions
CREATE ROLE tenant_admin_member LOGIN;
CREATE ROLE tenant_admin_outsider LOGIN;
SELECT duet_tenant_create('tadm-one', 'Tenant One');
SELECT duet_tenant_create('tadm.two');
-- bad names and duplicates are clear errors
SELECT duet_tenant_create('Upper');
SELECT duet_tenant_create('');
SELECT duet_tenant_create(NULL);
SELECT duet_tenant_create('-dash-first');
SELECT duet_tenant_create(repeat('x', 64));
SELECT duet_tenant_create('tadm-one');
-- members
SELECT duet_tenant_add_member('tadm-one', 'tenant_admin_member');
SELECT duet_tenant_add_member('tadm-one', 'tenant_admin_member');   -- idempotent
SELECT duet_tenant_add_member('tadm-none', 'tenant_admin_member');
SELECT duet_tenant_add_member('tadm-one', 'tenant_admin_no_such_role');
SELECT tenant, display_name, enabled, created_by, members
  FROM duet_tenant_list() WHERE tenant LIKE 'tadm%';
SELECT duet_tenant_remove_member('tadm.two', 'tenant_admin_member');
-- disable / enable
SELECT duet_tenant_disable('tadm.two');
SELECT tenant, enabled FROM duet_tenant_list() WHERE tenant LIKE 'tadm%';
SELECT duet_tenant_enable('tadm.two');
SELECT duet_tenant_disable('tadm-none');
-- tenant admin functions and tables are not for PUBLIC
SET ROLE tenant_admin_outsider;
SELECT duet_tenant_create('tadm-three');
SELECT duet_tenant_add_member('tadm-one', 'tenant_admin_outsider');
SELECT duet_tenant_disable('tadm-one');
SELECT duet_tenant_remove_member('tadm-one', 'tenant_admin_member');
SELECT * FROM duet_tenant_list();
SELECT * FROM duet.tenants;
SELECT * FROM duet.tenant_members;
INSERT INTO duet.tenant_members VALUES ('tadm-one', 'tenant_admin_outsider');
SELECT duet_my_tenants();
RESET ROLE;
-- a granted administrator can manage tenants without being a superuser
GRANT EXECUTE ON FUNCTION duet_tenant_create(text, text), duet_tenant_add_member(text, regrole)
    TO tenant_admin_outsider;
SET ROLE tenant_admin_outsider;
SELECT duet_tenant_create('tadm-three');
SELECT duet_tenant_add_member('tadm-three', 'tenant_admin_member');
RESET ROLE;
SELECT tenant, created_by, members FROM duet_tenant_list() WHERE tenant = 'tadm-three';
-- removing a member
SELECT duet_tenant_remove_member('tadm-three', 'tenant_admin_member');
SELECT duet_tenant_remove_member('tadm-three', 'tenant_admin_member');
-- tenant tables are dumped with the extension's user data
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
 WHERE e.extname = 'pg_duet' AND c.relname LIKE 'tenant%' ORDER BY 1;
-- clean up
REVOKE EXECUTE ON FUNCTION duet_tenant_create(text, text), duet_tenant_add_member(text, regrole)
    FROM tenant_admin_outsider;
DELETE FROM duet.tenants WHERE name LIKE 'tadm%';
DROP ROLE tenant_admin_member, tenant_admin_outsider;

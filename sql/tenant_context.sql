-- tenant context: membership checks, default tenant, session and transaction-local modes
CREATE ROLE tenant_ctx_alice LOGIN;       -- member of tctx-a only
CREATE ROLE tenant_ctx_bob LOGIN;         -- member of tctx-a and tctx-b
CREATE ROLE tenant_ctx_group NOLOGIN;     -- member of tctx-b
CREATE ROLE tenant_ctx_carol LOGIN IN ROLE tenant_ctx_group;        -- inherits tctx-b
CREATE ROLE tenant_ctx_dave LOGIN NOINHERIT IN ROLE tenant_ctx_group; -- does not inherit
CREATE ROLE tenant_ctx_nobody LOGIN;
SELECT duet_tenant_create('tctx-a'), duet_tenant_create('tctx-b'), duet_tenant_create('tctx-off');
SELECT duet_tenant_add_member('tctx-a', 'tenant_ctx_alice'), duet_tenant_add_member('tctx-a', 'tenant_ctx_bob'),
       duet_tenant_add_member('tctx-b', 'tenant_ctx_bob'), duet_tenant_add_member('tctx-b', 'tenant_ctx_group'),
       duet_tenant_add_member('tctx-off', 'tenant_ctx_alice');
SELECT duet_tenant_disable('tctx-off');
-- a role in exactly one (enabled) tenant acts for it by default
SET ROLE tenant_ctx_alice;
SELECT duet_current_tenant(), duet_my_tenants();
-- a member may choose its tenant; a non-member cannot, and learns nothing about existence
SELECT duet_set_tenant('tctx-a');
SELECT duet_set_tenant('tctx-b');
SELECT duet_set_tenant('tctx-no-such');
SELECT duet_set_tenant('tctx-off');                 -- disabled
SELECT duet_set_tenant('Bad Name');
RESET ROLE;
-- the session's choice stays while the role in effect is a member: bob is in tctx-a too
SET ROLE tenant_ctx_bob;
SELECT duet_current_tenant();
-- a role in two tenants has no default; it chooses
SELECT duet_set_tenant(NULL);
SELECT duet_current_tenant(), duet_my_tenants();
SELECT duet_set_tenant('tctx-b');
SELECT duet_current_tenant();
-- transaction-local: lasts until COMMIT or ROLLBACK, then the session's choice is back
BEGIN;
SELECT duet_set_tenant('tctx-a', local => true);
SELECT duet_current_tenant();
COMMIT;
SELECT duet_current_tenant();
BEGIN;
SELECT duet_set_tenant('tctx-a', true);
ROLLBACK;
SELECT duet_current_tenant();
-- a session-level choice made in a rolled-back transaction is rolled back too
BEGIN;
SELECT duet_set_tenant('tctx-a');
ROLLBACK;
SELECT duet_current_tenant();
-- ... and in a rolled-back savepoint
BEGIN;
SAVEPOINT s1;
SELECT duet_set_tenant('tctx-a');
ROLLBACK TO SAVEPOINT s1;
SELECT duet_current_tenant();
COMMIT;
-- outside a transaction block, local lasts one statement (with a warning)
SELECT duet_set_tenant('tctx-a', true);
SELECT duet_current_tenant();
-- NULL returns to the default (bob has none)
SELECT duet_set_tenant(NULL);
SELECT duet_current_tenant();
RESET ROLE;
-- membership through a group role counts when inherited
SET ROLE tenant_ctx_carol;
SELECT duet_current_tenant();
RESET ROLE;
SET ROLE tenant_ctx_dave;
SELECT duet_current_tenant();
SELECT duet_set_tenant('tctx-b');
RESET ROLE;
-- the context follows the role in effect: after SET ROLE to a non-member it is not honoured
SET ROLE tenant_ctx_bob;
SELECT duet_set_tenant('tctx-b');
RESET ROLE;
SET ROLE tenant_ctx_nobody;
SHOW duet.tenant;
SELECT duet_current_tenant();
RESET ROLE;
-- superusers may act for any tenant, disabled ones included; they have no default
SELECT duet_set_tenant(NULL);
SELECT duet_current_tenant();
SELECT duet_set_tenant('tctx-off');
SELECT duet_set_tenant('tctx-none');
SELECT duet_set_tenant(NULL);
-- membership changes take effect at once
SET ROLE tenant_ctx_alice;
SELECT duet_current_tenant();
RESET ROLE;
SELECT duet_tenant_remove_member('tctx-a', 'tenant_ctx_alice');
SET ROLE tenant_ctx_alice;
SELECT duet_current_tenant(), duet_my_tenants();
RESET ROLE;
SELECT duet_tenant_add_member('tctx-a', 'tenant_ctx_alice');
-- disabling a tenant takes its members out at once
SET ROLE tenant_ctx_alice;
SELECT duet_set_tenant('tctx-a');
RESET ROLE;
SELECT duet_tenant_disable('tctx-a');
SET ROLE tenant_ctx_alice;
SELECT duet_current_tenant();
RESET ROLE;
SELECT duet_tenant_enable('tctx-a');
-- group membership granted or revoked takes effect at once
SELECT duet_set_tenant(NULL);
SET ROLE tenant_ctx_nobody;
SELECT duet_current_tenant();
RESET ROLE;
GRANT tenant_ctx_group TO tenant_ctx_nobody;
SET ROLE tenant_ctx_nobody;
SELECT duet_current_tenant();
RESET ROLE;
REVOKE tenant_ctx_group FROM tenant_ctx_nobody;
SET ROLE tenant_ctx_nobody;
SELECT duet_current_tenant();
RESET ROLE;
-- clean up
DELETE FROM duet.tenants WHERE name LIKE 'tctx-%';
DROP ROLE tenant_ctx_alice, tenant_ctx_bob, tenant_ctx_carol, tenant_ctx_dave, tenant_ctx_nobody, tenant_ctx_group;

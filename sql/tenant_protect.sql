-- duet_tenant_protect: forced RLS on a user's table, keyed by duet_current_tenant()
CREATE ROLE tenant_prot_owner LOGIN;     -- owns the table, member of tprot-a
CREATE ROLE tenant_prot_reader LOGIN;    -- member of tprot-b
SELECT duet_tenant_create('tprot-a'), duet_tenant_create('tprot-b');
SELECT duet_tenant_add_member('tprot-a', 'tenant_prot_owner'), duet_tenant_add_member('tprot-b', 'tenant_prot_reader');
CREATE TABLE tenant_prot_orders (id int PRIMARY KEY, tenant text NOT NULL, amount int);
INSERT INTO tenant_prot_orders VALUES (1, 'tprot-a', 10), (2, 'tprot-a', 20), (3, 'tprot-b', 30);
ALTER TABLE tenant_prot_orders OWNER TO tenant_prot_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_prot_orders TO tenant_prot_reader;
-- only the owner may protect its table
SET ROLE tenant_prot_reader;
SELECT duet_tenant_protect('tenant_prot_orders');
SET ROLE tenant_prot_owner;
SELECT duet_tenant_protect('tenant_prot_orders');
SELECT duet_tenant_protect('tenant_prot_orders');    -- idempotent
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'tenant_prot_orders'::regclass;
SELECT polname, polpermissive FROM pg_policy WHERE polrelid = 'tenant_prot_orders'::regclass ORDER BY 1;
-- the owner is subject to it too (FORCE), and sees its tenant only
SELECT * FROM tenant_prot_orders ORDER BY id;
-- inserts default to the current tenant; another tenant's rows cannot be written
INSERT INTO tenant_prot_orders (id, amount) VALUES (4, 40) RETURNING *;
INSERT INTO tenant_prot_orders VALUES (5, 'tprot-b', 50);
UPDATE tenant_prot_orders SET tenant = 'tprot-b' WHERE id = 1;
UPDATE tenant_prot_orders SET amount = 0 WHERE id = 3;        -- not visible: 0 rows
DELETE FROM tenant_prot_orders WHERE id = 3;                  -- not visible: 0 rows
-- another tenant's member sees its own rows only
SET ROLE tenant_prot_reader;
SELECT * FROM tenant_prot_orders ORDER BY id;
-- a role without a tenant sees nothing and can insert nothing
RESET ROLE;
SELECT duet_tenant_remove_member('tprot-b', 'tenant_prot_reader');
SET ROLE tenant_prot_reader;
SELECT count(*) FROM tenant_prot_orders;
INSERT INTO tenant_prot_orders VALUES (6, 'tprot-b', 60);
RESET ROLE;
SELECT duet_tenant_add_member('tprot-b', 'tenant_prot_reader');
-- other permissive policies cannot widen access beyond the tenant (restrictive policy)
SET ROLE tenant_prot_owner;
CREATE POLICY everything ON tenant_prot_orders USING (true);
SELECT array_agg(id ORDER BY id) AS ids, array_agg(DISTINCT tenant) AS tenants FROM tenant_prot_orders;
DROP POLICY everything ON tenant_prot_orders;
RESET ROLE;
-- the policy holds in parallel workers too (the tenant setting travels to them)
CREATE TABLE tenant_prot_big (tenant text NOT NULL, n int);
INSERT INTO tenant_prot_big SELECT CASE WHEN g % 3 = 0 THEN 'tprot-b' ELSE 'tprot-a' END, g
  FROM generate_series(1, 30000) g;
ANALYZE tenant_prot_big;
ALTER TABLE tenant_prot_big OWNER TO tenant_prot_owner;
GRANT SELECT ON tenant_prot_big TO tenant_prot_reader;
SET ROLE tenant_prot_owner;
SELECT duet_tenant_protect('tenant_prot_big');
SET ROLE tenant_prot_reader;
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM tenant_prot_big;
SELECT count(*), min(n), max(n) FROM tenant_prot_big;
RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather; RESET parallel_leader_participation;
RESET ROLE;
-- bad arguments
SELECT duet_tenant_protect('tenant_prot_orders', 'no_such_column');
SELECT duet_tenant_protect('tenant_prot_orders', 'amount');
CREATE VIEW tenant_prot_view AS SELECT 1 AS tenant;
SELECT duet_tenant_protect('tenant_prot_view');
SELECT duet_tenant_protect('no_such_table');
-- a varchar tenant column under another name works, and an existing default is kept
CREATE TABLE tenant_prot_vc (org varchar(63) DEFAULT 'tprot-a', v int);
SELECT duet_tenant_protect('tenant_prot_vc', 'org');
SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'tenant_prot_vc'::regclass;
SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'tenant_prot_vc'::regclass AND polname = 'duet_tenant_isolation';
-- clean up
DROP VIEW tenant_prot_view;
DROP TABLE tenant_prot_orders, tenant_prot_big, tenant_prot_vc;
DELETE FROM duet.tenants WHERE name LIKE 'tprot-%';
DROP ROLE tenant_prot_owner, tenant_prot_reader;

-- rules_tenant: rules, alerts and history are per tenant, by row-level security on the verified
-- tenant context; another tenant's rules cannot be seen, tested, changed or dropped.
SELECT duet_tenant_create('rules-t1');
SELECT duet_tenant_create('rules-t2');
CREATE ROLE rules_t1_user;
CREATE ROLE rules_t2_user;
SELECT duet_tenant_add_member('rules-t1', 'rules_t1_user');
SELECT duet_tenant_add_member('rules-t2', 'rules_t2_user');
CREATE TABLE rules_tenant_events (tenant text NOT NULL DEFAULT duet_current_tenant(), id int, amount float8);
SELECT duet_tenant_protect('rules_tenant_events');
GRANT SELECT, INSERT, TRIGGER ON rules_tenant_events TO rules_t1_user, rules_t2_user;

SET ROLE rules_t1_user;
SELECT duet_rule_create('big', 'amount > 100', target => 'rules_tenant_events', labels => '{id}',
                        message => 't1 saw {amount}') > 0 AS created;
INSERT INTO rules_tenant_events (id, amount) VALUES (1, 500);
RESET ROLE;

-- a table whose row-level security uses another column: a row rule could not keep to its tenant
CREATE TABLE rules_tenant_org (org text NOT NULL DEFAULT duet_current_tenant(), amount float8);
SELECT duet_tenant_protect('rules_tenant_org', 'org');
GRANT SELECT, INSERT, TRIGGER ON rules_tenant_org TO rules_t1_user;
SET ROLE rules_t1_user;
SELECT duet_rule_create('org_big', 'amount > 100', target => 'rules_tenant_org');
SELECT duet_rule_create('org_big', 'amount > 100', query => 'SELECT amount FROM rules_tenant_org') > 0 AS created;
SELECT duet_rule_drop('org_big');
RESET ROLE;
DROP TABLE rules_tenant_org;

SET ROLE rules_t2_user;
-- the same rule name is free in another tenant
SELECT duet_rule_create('big', 'amount > 1000', target => 'rules_tenant_events', labels => '{id}',
                        message => 't2 saw {amount}') > 0 AS created;
INSERT INTO rules_tenant_events (id, amount) VALUES (1, 5000), (2, 50);
SELECT tenant, name, condition FROM duet.rules;
SELECT tenant, rule, labels, state, message FROM duet.alerts_active;
SELECT tenant, rule, to_state, message FROM duet.alert_history;
SELECT tenant, state FROM duet.alerts ORDER BY labels::text;
-- t1's rule is out of reach
SELECT duet_rule_drop('nosuch');
SELECT duet_rule_alter('big', '{"condition": "amount > 1"}');
SELECT condition FROM duet.rules WHERE name = 'big';
-- a plain SET of the tenant setting is refused
SET duet.tenant = 'rules-t1';
RESET ROLE;

SET ROLE rules_t1_user;
SELECT tenant, rule, labels, state, message FROM duet.alerts_active;
SELECT tenant, name, condition FROM duet.rules;
SELECT duet_rule_test('big', '{"id": 9, "amount": 101}') ->> 'message' AS message;
SELECT duet_set_tenant('rules-t2');
SELECT duet_rule_drop('big');
RESET ROLE;

-- a role in no tenant sees nothing
CREATE ROLE rules_t0_user;
SET ROLE rules_t0_user;
SELECT count(*) FROM duet.rules;
SELECT count(*) FROM duet.alerts_active;
SELECT count(*) FROM duet.alert_history;
RESET ROLE;

SET ROLE rules_t2_user;
SELECT duet_rule_drop('big');
RESET ROLE;
DROP TABLE rules_tenant_events;
DELETE FROM duet.tenants WHERE name IN ('rules-t1', 'rules-t2');
DROP ROLE rules_t0_user, rules_t1_user, rules_t2_user;

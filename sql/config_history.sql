-- config history: audit per tenant, duet_config_at, bounded retention
CREATE ROLE config_hist_a LOGIN;
CREATE ROLE config_hist_b LOGIN;
SELECT duet_tenant_create('chist-a'), duet_tenant_create('chist-b');
SELECT duet_tenant_add_member('chist-a', 'config_hist_a'), duet_tenant_add_member('chist-b', 'config_hist_b');
SELECT duet_config_set_default('chist.k', '"d1"');
SELECT clock_timestamp() AS t_before_a \gset
SET ROLE config_hist_a;
SELECT duet_config_set('chist.k', '"a1"');
RESET ROLE;
SELECT clock_timestamp() AS t_a1 \gset
SET ROLE config_hist_a;
SELECT duet_config_set('chist.k', '"a2"');
RESET ROLE;
SELECT clock_timestamp() AS t_a2 \gset
SET ROLE config_hist_a;
SELECT duet_config_unset('chist.k');
RESET ROLE;
SELECT clock_timestamp() AS t_unset \gset
SET ROLE config_hist_b;
SELECT duet_config_set('chist.k', '"b1"'), duet_config_set('chist.k', '"b2"');
-- each tenant reads its own audit trail and the default's, never the other tenant's
SELECT version, tenant, operation, value, previous_value, changed_by FROM duet_config_history('chist.k');
SELECT tenant, version, operation, changed_by FROM duet.config_history WHERE key = 'chist.k' ORDER BY id;
RESET ROLE;
SET ROLE config_hist_a;
SELECT version, tenant, operation, value, previous_value, changed_by FROM duet_config_history('chist.k');
SELECT changed_at <= now() AND changed_at > now() - interval '1 hour' AS recent
  FROM duet.config_history WHERE key = 'chist.k' AND tenant = 'chist-a' LIMIT 1;
-- the value as of a past time: the tenant's at that time, else the default's
SELECT duet_config_at('chist.k', :'t_before_a') AS before_override,
       duet_config_at('chist.k', :'t_a1') AS after_a1,
       duet_config_at('chist.k', :'t_a2') AS after_a2,
       duet_config_at('chist.k', :'t_unset') AS after_unset,
       duet_config_at('chist.k', '2000-01-01') IS NULL AS before_anything;
-- history is append-only for everyone but the owner
UPDATE duet.config_history SET value = '"forged"' WHERE key = 'chist.k';
DELETE FROM duet.config_history WHERE key = 'chist.k';
INSERT INTO duet.config_history (key, tenant, version, operation, value, changed_by)
     VALUES ('chist.k', 'chist-a', 99, 'set', '"forged"', 'someone');
RESET ROLE;
-- retention: entries older than duet.config_history_retention go, the newest of each key stays
SHOW duet.config_history_retention;
SET ROLE config_hist_a;
SET duet.config_history_retention = '1d';
RESET ROLE;
UPDATE duet.config_history SET changed_at = changed_at - interval '3 days' WHERE key = 'chist.k';
SET duet.config_history_retention = '2d';
SELECT duet_set_tenant('chist-a');
SELECT duet_config_set('chist.k', '"a3"');     -- prunes this key's old entries for chist-a
SELECT tenant, version, operation FROM duet.config_history WHERE key = 'chist.k' ORDER BY tenant NULLS FIRST, version;
SELECT duet_config_history_prune();             -- the rest: all keys and tenants
SELECT tenant, version, operation FROM duet.config_history WHERE key = 'chist.k' ORDER BY tenant NULLS FIRST, version;
-- versions keep increasing after pruning
SELECT duet_config_set('chist.k', '"a4"');
SET duet.config_history_retention = 0;
SELECT duet_config_history_prune();
RESET duet.config_history_retention;
SET ROLE config_hist_a;
SELECT duet_config_history_prune();
RESET ROLE;
SELECT duet_set_tenant(NULL);
-- clean up
DELETE FROM duet.config WHERE key LIKE 'chist.%';
DELETE FROM duet.config_history WHERE key LIKE 'chist.%';
DELETE FROM duet.tenants WHERE name LIKE 'chist-%';
DROP ROLE config_hist_a, config_hist_b;

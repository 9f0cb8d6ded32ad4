-- Multi-tenant configuration: acme and globex, different settings, isolated from each other
-- Tenants and their analysts (a role in exactly one tenant acts for it by default).
CREATE ROLE acme_analyst LOGIN;
CREATE ROLE globex_analyst LOGIN;
SELECT duet_tenant_create('acme', 'ACME Corp'), duet_tenant_create('globex', 'Globex Corporation');
SELECT duet_tenant_add_member('acme', 'acme_analyst'), duet_tenant_add_member('globex', 'globex_analyst');

-- Definitions: every value written is checked against them.
SELECT duet_config_define('alerts.min_ctr', '{"type": "number", "minimum": 0, "maximum": 1}',
                          'CTR below which a campaign is flagged');
SELECT duet_config_define('pacing.mode', '{"enum": ["even", "asap"]}', 'how daily budget is spent');
SELECT duet_config_define('report.currency', '{"type": "string", "pattern": "^[A-Z]{3}$"}', 'ISO 4217 code');

-- Global defaults (administrators), then each tenant's overrides.
SELECT duet_config_set_default('alerts.min_ctr', '0.01'), duet_config_set_default('pacing.mode', '"even"'),
       duet_config_set_default('report.currency', '"USD"');
SET ROLE acme_analyst;
SELECT duet_current_tenant();
SELECT duet_config_set('alerts.min_ctr', '0.015'), duet_config_set('pacing.mode', '"asap"');
RESET ROLE;
SET ROLE globex_analyst;
SELECT duet_config_set('report.currency', '"EUR"');
RESET ROLE;

-- Each tenant sees its effective configuration, and where each value comes from.
SET ROLE acme_analyst;
SELECT key, value, source, version FROM duet.config_effective ORDER BY key;
RESET ROLE;
SET ROLE globex_analyst;
SELECT key, value, source, version FROM duet.config_effective ORDER BY key;
SELECT duet_config_get_float8('alerts.min_ctr') AS min_ctr, duet_config_get_text('report.currency') AS currency;
RESET ROLE;

-- Bad values are refused with the key and the violated constraint; nothing is lost.
\set ON_ERROR_STOP 0
SET ROLE acme_analyst;
\echo 'expected error: 1.5 is above the definition''s maximum of 1'
SELECT duet_config_set('alerts.min_ctr', '1.5');
\echo 'expected error: "dollars" does not match the pattern ^[A-Z]{3}$'
SELECT duet_config_set('report.currency', '"dollars"');
-- ... and acme cannot act for globex, whatever it tries.
\echo 'expected error: acme_analyst is not a member of globex'
SELECT duet_set_tenant('globex');
\echo 'expected error: only superusers may set duet.tenant directly'
SET duet.tenant = 'globex';
RESET ROLE;
\set ON_ERROR_STOP 1

-- History and rollback: who changed what, when; roll back to an earlier version.
SET ROLE acme_analyst;
SELECT duet_config_set('alerts.min_ctr', '0.05');
SELECT version, operation, value, previous_value, changed_by FROM duet_config_history('alerts.min_ctr');
SELECT duet_config_rollback('alerts.min_ctr', 1) AS new_version, duet_config_get('alerts.min_ctr') AS min_ctr;
RESET ROLE;

-- The sample tables get the same tenant isolation (forced RLS on duet_current_tenant()).
SELECT duet_tenant_protect('campaigns'), duet_tenant_protect('campaign_daily');
GRANT SELECT ON campaigns, campaign_daily TO acme_analyst, globex_analyst;
-- Each analyst sees only its tenant's campaigns, judged by its tenant's own CTR threshold.
SET ROLE acme_analyst;
SELECT c.name, round(sum(d.clicks)::numeric / sum(d.impressions), 4) AS ctr,
       duet_config_get_float8('alerts.min_ctr') AS min_ctr,
       sum(d.clicks)::float8 / sum(d.impressions) < duet_config_get_float8('alerts.min_ctr') AS flagged,
       duet_config_get_text('pacing.mode') AS pacing
  FROM campaign_daily d JOIN campaigns c ON c.id = d.campaign_id
 GROUP BY c.name ORDER BY c.name;
RESET ROLE;
SET ROLE globex_analyst;
SELECT c.name, round(sum(d.clicks)::numeric / sum(d.impressions), 4) AS ctr,
       duet_config_get_float8('alerts.min_ctr') AS min_ctr,
       sum(d.clicks)::float8 / sum(d.impressions) < duet_config_get_float8('alerts.min_ctr') AS flagged,
       duet_config_get_text('pacing.mode') AS pacing
  FROM campaign_daily d JOIN campaigns c ON c.id = d.campaign_id
 GROUP BY c.name ORDER BY c.name;
RESET ROLE;

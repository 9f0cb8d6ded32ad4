-- rules_content: annotations and resolve message templates ({column}, {value}, Duet formulas),
-- what duet_alert_observe stores and tells Alertmanager (notify_version, started_at, resolved_at),
-- the Alertmanager label set with the tenant's routing labels from the Config Service, and
-- duet.alerts_active for a tenant.
SELECT duet_tenant_create('content-a'), duet_tenant_create('content-b');
CREATE ROLE content_a; CREATE ROLE content_b;
SELECT duet_tenant_add_member('content-a', 'content_a'), duet_tenant_add_member('content-b', 'content_b');
CREATE TABLE content_spend (tenant text NOT NULL, campaign_id int, spend float8, budget float8);
GRANT SELECT, INSERT, TRIGGER ON content_spend TO content_a, content_b;
SELECT duet_config_set_default('alertmanager.labels', '{"team": "default-team"}');

SET ROLE content_a;
SELECT duet_set_tenant('content-a');
SELECT duet_config_set('alertmanager.labels', '{"team": "ads", "on-call": "alice"}');
SELECT duet_rule_create('roas_low', 'spend > budget', target => 'content_spend', labels => '{campaign_id}',
                        value => 'spend - budget', message => 'campaign {campaign_id} over by {value}') > 0 AS created;
SELECT duet_rule_alter('roas_low', '{"annotations": {"summary": "ratio {spend / budget * 100}%",
                                                      "description": "{{literal}} {if(spend > 1000, ''big'', ''small'')}",
                                                      "runbook_url": "https://wiki/roas"},
                                     "resolve_message": "campaign {campaign_id} fine again at {spend}"}');
SELECT annotations, resolve_message FROM duet.rules WHERE name = 'roas_low';
-- bad content: each a clear error, the rule unchanged
SELECT duet_rule_alter('roas_low', '{"annotations": "text"}');
SELECT duet_rule_alter('roas_low', '{"annotations": {"summary": 3}}');
SELECT duet_rule_alter('roas_low', '{"annotations": {"9lives": "x"}}');
SELECT duet_rule_alter('roas_low', '{"annotations": {"summary": "{missing_col}"}}');
SELECT duet_rule_alter('roas_low', '{"annotations": {"summary": "{spend *}"}}');
SELECT duet_rule_alter('roas_low', '{"annotations": null}');
SELECT duet_rule_alter('roas_low', '{"resolve_message": "{nope}"}');
SELECT annotations ->> 'summary' FROM duet.rules WHERE name = 'roas_low';

-- at creation too, checked the same way
SELECT duet_rule_create('born_annotated', 'spend > 2 * budget', target => 'content_spend',
                        annotations => '{"summary": "{campaign_id} at {spend / budget}x"}',
                        resolve_message => '{campaign_id} fine') > 0 AS created;
SELECT annotations, resolve_message FROM duet.rules WHERE name = 'born_annotated';
SELECT duet_rule_create('born_broken', 'spend > budget', target => 'content_spend',
                        annotations => '{"summary": "{budgett}"}');
SELECT duet_rule_create('born_broken', 'spend > budget', target => 'content_spend',
                        annotations => '["summary"]');
SELECT count(*) FROM duet.rules WHERE name = 'born_broken';
SELECT duet_rule_drop('born_annotated');

-- dry run: rendered annotations for a firing row, the resolve message for another
SELECT duet_rule_test('roas_low', '{"campaign_id": 1, "spend": 1500, "budget": 1000}');
SELECT duet_rule_test('roas_low', '{"campaign_id": 1, "spend": 10, "budget": 1000}');

-- fire: the alert carries the rendered annotations and a first notify_version
INSERT INTO content_spend VALUES ('content-a', 1, 1500, 1000);
SELECT state, message, annotations, notify_version, started_at = firing_since AS started, resolved_at
  FROM duet.alerts;
SELECT rule, annotations ->> 'summary' AS summary, alertmanager_labels, notify_version, delivery
  FROM duet.alerts_active;
-- still firing: nothing new to tell Alertmanager
INSERT INTO content_spend VALUES ('content-a', 1, 2000, 1000);
SELECT notify_version, annotations ->> 'summary' AS summary FROM duet.alerts;
-- resolve: the resolve message, a second notify_version, started_at kept for Alertmanager
INSERT INTO content_spend VALUES ('content-a', 1, 5, 1000);
SELECT state, resolve_message, notify_version, started_at IS NOT NULL AS started, resolved_at IS NOT NULL AS resolved
  FROM duet.alerts;
SELECT to_state, message FROM duet.alert_history ORDER BY id;
-- fires again: a new episode
INSERT INTO content_spend VALUES ('content-a', 1, 1200, 1000);
SELECT state, resolve_message, notify_version, resolved_at FROM duet.alerts;
RESET ROLE;

-- another tenant: its own routing labels (the default), none of content-a's alerts or deliveries
SET ROLE content_b;
SELECT duet_set_tenant('content-b');
SELECT duet_rule_create('b_rule', 'spend > budget', target => 'content_spend') > 0 AS created;
INSERT INTO content_spend VALUES ('content-b', 2, 50, 10);
SELECT rule, alertmanager_labels FROM duet.alerts_active;
SELECT count(*) FROM duet.alertmanager_deliveries;
SELECT duet_alertmanager_labels('content-a', 'x', 'info', '{}');  -- RLS: not content-a's config
SELECT * FROM duet.alertmanager_status;
SELECT duet.duet_alertmanager_record('x', '{1}', '{1}', NULL, NULL, NULL, false);
SELECT duet_alertmanager_wake();
RESET ROLE;

-- the rule's labels override the tenant's routing labels; alertname, tenant, severity win
SELECT duet_alertmanager_labels('content-a', 'r', 'warning', '{"team": "from-rule", "severity": "x"}');

DROP TABLE content_spend;
DROP ROLE content_a, content_b;

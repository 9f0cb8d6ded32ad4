-- rules_api: creating, changing and dropping rules; every bad input is a clear error.
SELECT duet_tenant_create('rules-api');
CREATE ROLE rules_api_owner;
CREATE ROLE rules_api_stranger;
SELECT duet_tenant_add_member('rules-api', 'rules_api_owner');
CREATE TABLE rules_api_spend (campaign_id int, spend float8, budget numeric(12,2), note text, day date);
GRANT SELECT, INSERT, TRIGGER ON rules_api_spend TO rules_api_owner;
CREATE TABLE rules_api_secret (x int);

-- no tenant: rules belong to one
SET ROLE rules_api_stranger;
SELECT duet_rule_create('r', 'spend > budget', target => 'rules_api_spend');
RESET ROLE;

SET ROLE rules_api_owner;
SELECT duet_current_tenant();
SELECT duet_rule_create('over_budget', 'spend > budget', target => 'rules_api_spend',
                        labels => '{campaign_id}', value => 'spend / budget', severity => 'critical',
                        message => 'campaign {campaign_id} spent {spend} of {budget} ({value}x)') > 0 AS created;
SELECT name, target, condition, value, severity, labels, message, for_period, keep_firing_for, topic,
       enabled, owner, version
  FROM duet.rules;
-- the trigger exists while the table has row rules
SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'rules_api_spend'::regclass;

-- positioned compile errors from the formula engine
SELECT duet_rule_create('bad', 'spend >', target => 'rules_api_spend');
SELECT duet_rule_create('bad', E'spend > budget and\n  (note = ', target => 'rules_api_spend');
SELECT duet_rule_create('bad', 'spend > budget)', target => 'rules_api_spend');
SELECT duet_rule_create('bad', 'nosuch(spend) > 1', target => 'rules_api_spend');
-- type errors known at creation: column types are the formula's variable types
SELECT duet_rule_create('bad', 'note * 2 > 1', target => 'rules_api_spend');
SELECT duet_rule_create('bad', 'spend + 1', target => 'rules_api_spend');
-- unknown columns in the condition, the value, the labels, the message
SELECT duet_rule_create('bad', 'spent > 1', target => 'rules_api_spend');
SELECT duet_rule_create('bad', 'spend > 1', value => 'spend / budgt', target => 'rules_api_spend');
SELECT duet_rule_create('bad', 'spend > 1', labels => '{campaign}', target => 'rules_api_spend');
SELECT duet_rule_create('bad', 'spend > 1', message => 'over by {delta}', target => 'rules_api_spend');
SELECT duet_rule_create('bad', 'spend > 1', message => 'no value here: {value}', target => 'rules_api_spend');
SELECT duet_rule_create('bad', 'spend > 1', message => 'open {spend', target => 'rules_api_spend');
-- shape of the rule
SELECT duet_rule_create('bad', 'spend > 1');
SELECT duet_rule_create('bad', 'spend > 1', target => 'rules_api_spend', query => 'SELECT 1 AS spend');
SELECT duet_rule_create('over_budget', 'spend > 1', target => 'rules_api_spend');
SELECT duet_rule_create('bad name', 'spend > 1', target => 'rules_api_spend');
SELECT duet_rule_create('bad', 'spend > 1', target => 'rules_api_spend', severity => 'urgent');
SELECT duet_rule_create('bad', 'spend > 1', target => 'rules_api_spend', for_period => '-1 minute');
SELECT duet_rule_create('bad', NULL, target => 'rules_api_spend');
-- a table the caller may not attach a trigger to
SELECT duet_rule_create('bad', 'x > 1', target => 'rules_api_secret');
-- query rules: one SELECT, analysed with the caller's privileges
SELECT duet_rule_create('bad', 'n > 1', query => 'SELECT 1 AS n; SELECT 2 AS n');
SELECT duet_rule_create('bad', 'n > 1', query => 'DELETE FROM rules_api_spend RETURNING 1 AS n');
SELECT duet_rule_create('bad', 'x > 1', query => 'SELECT x FROM rules_api_secret');
SELECT duet_rule_create('bad', 'total > 1', query => 'SELECT campaign_id, sum(spend) AS n FROM rules_api_spend GROUP BY 1');
SELECT duet_rule_create('spend_total', 'total > 100', query => 'SELECT campaign_id, sum(spend) AS total FROM rules_api_spend GROUP BY 1',
                        labels => '{campaign_id}', for_period => '10 minutes', keep_firing_for => '5 minutes') > 0 AS created;
-- nothing failed above left a rule behind
SELECT name FROM duet.rules ORDER BY name;

-- dry run on one row: result, value, labels and the rendered message
SELECT duet_rule_test('over_budget', '{"campaign_id": 3, "spend": 150, "budget": 100}');
SELECT duet_rule_test('over_budget', '{"campaign_id": 3, "spend": 50, "budget": 100}');
SELECT duet_rule_test('over_budget', '{"campaign_id": 3, "spend": null, "budget": 100}');
SELECT duet_rule_test('over_budget', '{"campaign_id": 3, "spend": "lots", "budget": 100}');
SELECT duet_rule_test('over_budget', '{"campaign_id": 3, "budget": 100}');
SELECT duet_rule_test('over_budget', '[1, 2]');
SELECT duet_rule_test('nosuch', '{}');

-- alter: any field, validated like a creation
SELECT duet_rule_alter('over_budget', '{"condition": "spend > 2 * budget", "for": "5 minutes", "message": "{campaign_id}: {value}"}');
SELECT condition, for_period, message, version FROM duet.rules WHERE name = 'over_budget';
SELECT duet_rule_alter('over_budget', '{"condition": "spend >"}');
SELECT duet_rule_alter('over_budget', '{"colour": "red"}');
SELECT duet_rule_alter('over_budget', '{"for": "soon"}');
SELECT duet_rule_alter('over_budget', '{"condition": null}');
SELECT duet_rule_alter('over_budget', '[]');
SELECT duet_rule_alter('over_budget', '{"name": "spend_total"}');
-- a topic needs the right to publish
SELECT duet_rule_alter('over_budget', '{"topic": "rules.alerts"}');
SELECT duet_rule_alter('over_budget', '{"topic": "no topic"}');
RESET ROLE;
GRANT duet_kafka_publisher TO rules_api_owner;
SET ROLE rules_api_owner;
-- the EXECUTE privilege is not enough: topics are a superuser's grant
SELECT duet_rule_alter('over_budget', '{"topic": "rules.alerts"}');
RESET ROLE;
INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_publish) VALUES ('rules.*', 'rules_api_owner', true);
SET ROLE rules_api_owner;
SELECT duet_rule_alter('over_budget', '{"topic": "rules.alerts"}');
SELECT topic FROM duet.rules WHERE name = 'over_budget';
SELECT duet_rule_alter('nosuch', '{"enabled": false}');
SELECT condition, version FROM duet.rules WHERE name = 'over_budget';

SELECT duet_rule_disable('over_budget');
SELECT enabled FROM duet.rules WHERE name = 'over_budget';
SELECT duet_rule_enable('over_budget');
SELECT enabled FROM duet.rules WHERE name = 'over_budget';

-- the tables are written only through the functions
INSERT INTO duet.rules (tenant, name, target, condition, owner) VALUES ('rules-api', 'x', 'rules_api_spend', 'true', 'postgres');
UPDATE duet.rules SET owner = 'postgres';
DELETE FROM duet.alerts;
SELECT duet_rules_evaluate();

SELECT duet_rule_drop('over_budget');
SELECT duet_rule_drop('over_budget');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'rules_api_spend'::regclass;
SELECT duet_rule_drop('spend_total');
RESET ROLE;

DROP TABLE rules_api_spend, rules_api_secret;
DELETE FROM duet.tenants WHERE name = 'rules-api';
DELETE FROM duet.kafka_topic_grants;
DROP ROLE rules_api_owner, rules_api_stranger;

-- rules_units: a placeholder that is one call of a metric with a unit, and {value} of a rule whose
-- value is one, render by the metric's unit (percent points 95.0%, ratio and currency 1,234.50, integer
-- 1,234); anything else over a metric prints the plain number; the rule's tenant's unit wins.
SELECT duet_tenant_create('units-a'), duet_tenant_create('units-b');
CREATE ROLE units_a; CREATE ROLE units_b;
SELECT duet_tenant_add_member('units-a', 'units_a'), duet_tenant_add_member('units-b', 'units_b');
SELECT (duet_metric_define('u_pacing', 'spend / budget * 100', unit => 'percent')).version,
       (duet_metric_define('u_roas', 'revenue / spend', unit => 'ratio')).version,
       (duet_metric_define('u_spend', 'spend', unit => 'currency')).version,
       (duet_metric_define('u_imps', 'impressions', unit => 'integer')).version,
       (duet_metric_define('u_plain', 'revenue - spend')).version;
CREATE TABLE units_daily (tenant text NOT NULL, campaign int, spend float8, budget float8,
                          revenue float8, impressions bigint);
GRANT SELECT, INSERT, TRIGGER ON units_daily TO units_a, units_b;

SET ROLE units_a;
SELECT duet_set_tenant('units-a');
SELECT duet_rule_create('units_pacing', 'u_pacing() > 90', target => 'units_daily', labels => '{campaign}',
                        value => 'u_pacing()',
                        message => 'pacing {value} of {u_spend()} budget, roas {u_roas(revenue, spend)}, '
                                   '{u_imps()} impressions, margin {u_plain()}') > 0 AS created;
SELECT duet_rule_alter('units_pacing', '{"annotations": {
  "summary": "raw {u_pacing() * 1} nested {u_roas(revenue, if(spend > 0, spend, 1))} spaced { u_pacing( ) }",
  "description": "quoted {u_roas(revenue, if(''a)'' = ''a)'', spend, 1))} on {campaign}, no budget {u_pacing(spend, nullif(budget, budget))}"}}');
INSERT INTO units_daily VALUES ('units-a', 7, 1234.5, 1300, 3703.5, 1234567);
SELECT message, value, annotations ->> 'summary' AS summary, annotations ->> 'description' AS description
  FROM duet.alerts_active;
-- NULL stays null; the stored value is the number, only its text is formatted
INSERT INTO units_daily VALUES ('units-a', 8, 99, 100, NULL, NULL);
SELECT message, value FROM duet.alerts_active WHERE labels ->> 'campaign' = '8';
RESET ROLE;

-- the rule's tenant's unit: units-b overrides u_pacing as an integer
SET ROLE units_b;
SELECT duet_set_tenant('units-b');
SELECT (duet_metric_set('u_pacing', 'spend / budget * 1000', unit => 'integer')).version;
SELECT duet_rule_create('units_pacing_b', 'u_pacing() > 900', target => 'units_daily',
                        value => 'u_pacing()', message => 'pacing {value} per mille, {u_pacing()}') > 0 AS created;
INSERT INTO units_daily VALUES ('units-b', 1, 1234.5, 1300, 1, 1);
SELECT message, value FROM duet.alerts_active;
RESET ROLE;
-- a unit change reaches the next evaluation
SELECT (duet_metric_define('u_spend', 'spend', unit => 'integer')).version;
SET ROLE units_a;
SELECT duet_set_tenant('units-a');
INSERT INTO units_daily VALUES ('units-a', 7, 1250.75, 1300, 3703.5, 1234567);
SELECT message FROM duet.alerts_active WHERE labels ->> 'campaign' = '7';
RESET ROLE;

DROP TABLE units_daily;
SELECT duet_metric_drop(m) FROM unnest('{u_pacing,u_roas,u_spend,u_imps,u_plain}'::text[]) m;
DROP ROLE units_a, units_b;

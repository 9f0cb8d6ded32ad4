-- Rules and alerts: a campaign over budget and a ROAS below 1 raise alerts, with history and NOTIFY
-- acme's analyst may read and append delivery rows and attach rules to the table.
GRANT SELECT, INSERT, TRIGGER ON campaign_daily TO acme_analyst;
SET ROLE acme_analyst;

-- A row rule: every INSERT into campaign_daily (a Kafka batch, a COPY, one row) is evaluated in
-- one pass by a statement trigger. Labels identify an alert instance: one per campaign.
SELECT duet_rule_create('over_budget', 'spend > budget', target => 'campaign_daily',
                        labels => '{campaign_id}', value => 'round(spend - budget, 2)', severity => 'critical',
                        message => 'campaign {campaign_id} spent {spend} on {day}, {value} over its budget of {budget}');
-- A query rule: evaluated on a schedule by the rule scheduler (or pg_cron), as its author, in its tenant.
SELECT duet_rule_create('roas_below_1', 'revenue / spend < 1',
                        query => 'SELECT campaign_id, sum(revenue) AS revenue, sum(spend) AS spend FROM campaign_daily GROUP BY 1',
                        labels => '{campaign_id}', value => 'round(revenue / spend, 2)',
                        message => 'campaign {campaign_id} returns {value} per dollar spent over the last 30 days',
                        for_period => '1 hour');
-- Conditions are Duet formulas, checked at creation against the table's columns.
\set ON_ERROR_STOP 0
\echo 'expected error: the condition names a column campaign_daily does not have (budgett)'
SELECT duet_rule_create('broken', 'spend > budgett', target => 'campaign_daily');
\set ON_ERROR_STOP 1
-- Dry run on one row.
SELECT jsonb_pretty(duet_rule_test('over_budget', '{"campaign_id": 1, "day": "2026-10-31", "spend": 620.5, "budget": 500}'));

-- A listener is told when an alert fires or resolves (after commit).
LISTEN duet_alerts;
INSERT INTO campaign_daily (tenant, campaign_id, day, impressions, clicks, spend, revenue, budget)
VALUES ('acme', 1, '2026-10-31', 120000, 2400, 612.40, 700, 500),
       ('acme', 3, '2026-10-31', 200000, 5000, 640.00, 1900, 1000);
SELECT rule, labels, state, value, message FROM duet.alerts_active ORDER BY rule, labels::text;

-- The next day campaign 1 is back within budget: resolved.
INSERT INTO campaign_daily (tenant, campaign_id, day, impressions, clicks, spend, revenue, budget)
VALUES ('acme', 1, '2026-11-01', 90000, 2000, 410.00, 600, 500);
RESET ROLE;

-- The scheduler evaluates query rules every duet.rules_interval; here we evaluate now, then as of
-- two hours later: pending for its `for` period of 1 hour, then firing.
SELECT duet_rules_evaluate(now());
SELECT duet_rules_evaluate(now() + interval '2 hours');
SET ROLE acme_analyst;
SELECT rule, labels, state, value, message FROM duet.alerts_active ORDER BY rule, labels::text;
SELECT rule, labels, from_state, to_state, value FROM duet.alert_history ORDER BY id;
RESET ROLE;

-- rules_state: the alert state machine, driven by duet_rules_evaluate(at) on a query rule.
-- Normal → Pending → Firing (after `for`) → Recovering → Resolved (after keep_firing_for), flaps
-- within keep_firing_for suppressed, Error and No Data.
SELECT duet_tenant_create('rules-state');
SELECT duet_set_tenant('rules-state');
CREATE TABLE rules_state_ctr (campaign_id int, ctr float8, divisor int DEFAULT 1);
INSERT INTO rules_state_ctr VALUES (1, 0.005), (2, 0.02);
SELECT duet_rule_create('low_ctr', 'ctr < 0.01',
                        query => 'SELECT campaign_id, ctr, 1 / divisor AS one FROM rules_state_ctr',
                        labels => '{campaign_id}', value => 'ctr * 100', severity => 'warning',
                        message => 'campaign {campaign_id}: CTR {value}%',
                        for_period => '10 minutes', keep_firing_for => '5 minutes',
                        topic => 'rules-state.alerts') > 0 AS created;
-- a disabled rule is not evaluated
SELECT duet_rule_create('off', 'ctr > 0', query => 'SELECT ctr FROM rules_state_ctr', enabled => false) > 0 AS created;

-- evaluates as of 00:00 + minutes and shows the low_ctr instances
CREATE FUNCTION rules_state_at(minutes int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n int := duet_rules_evaluate(timestamptz '2026-01-01 00:00+00' + minutes * interval '1 minute');
BEGIN
    RETURN n || ' evaluated; ' ||
           coalesce((SELECT string_agg(format('%s %s', a.labels, a.state), ', ' ORDER BY a.labels::text)
                       FROM duet.alerts a JOIN duet.rules r ON r.id = a.rule_id WHERE r.name = 'low_ctr'), '');
END $$;

SELECT rules_state_at(0);    -- 1 pending, 2 normal
SELECT rules_state_at(5);    -- still pending: 5 min < for
SELECT rules_state_at(10);   -- firing: pending for 10 min
UPDATE rules_state_ctr SET ctr = 0.03 WHERE campaign_id = 1;
SELECT rules_state_at(12);   -- recovering: keep firing for 5 min
UPDATE rules_state_ctr SET ctr = 0.004 WHERE campaign_id = 1;
SELECT rules_state_at(14);   -- a flap: firing again, the same alert
UPDATE rules_state_ctr SET ctr = 0.03 WHERE campaign_id = 1;
SELECT rules_state_at(15);   -- recovering from 15
SELECT rules_state_at(18);   -- 3 min < 5: still recovering
SELECT rules_state_at(20);   -- resolved
SELECT rules_state_at(21);   -- stays resolved

-- the alert fired once and resolved once, with the value and message that caused each step
SELECT labels, from_state, to_state, to_char(at AT TIME ZONE 'UTC', 'HH24:MI') AS at, value, message
  FROM duet.alert_history WHERE rule = 'low_ctr' ORDER BY id;
SELECT firing_since IS NULL AS cleared, state FROM duet.alerts WHERE labels = '{"campaign_id": "1"}';
-- Firing and Resolved (not the flap) went to the rule's topic through the outbox
SELECT topic, key, value::jsonb - 'rule_id' - 'alert_id' AS event, headers FROM duet.kafka_outbox
 WHERE topic = 'rules-state.alerts' ORDER BY id;

-- pending that does not last goes back to normal
UPDATE rules_state_ctr SET ctr = 0.001 WHERE campaign_id = 2;
SELECT rules_state_at(22);
UPDATE rules_state_ctr SET ctr = 0.5 WHERE campaign_id = 2;
SELECT rules_state_at(23);

-- fire campaign 1 again, then break the query: Error on the rule's {} instance, with the message;
-- the firing alert is neither resolved nor re-notified
UPDATE rules_state_ctr SET ctr = 0.001 WHERE campaign_id = 1;
SELECT rules_state_at(30);
SELECT rules_state_at(40);
UPDATE rules_state_ctr SET divisor = 0;
SELECT rules_state_at(41);
SELECT labels, state, error FROM duet.alerts_active WHERE rule = 'low_ctr' ORDER BY labels::text;
UPDATE rules_state_ctr SET divisor = 1;
SELECT rules_state_at(42);   -- fixed: {} back to normal, campaign 1 still firing

-- No Data: the query returns no rows; active instances end as their series ended
DELETE FROM rules_state_ctr;
SELECT rules_state_at(50);
SELECT rules_state_at(56);
INSERT INTO rules_state_ctr VALUES (3, 0.5);
SELECT rules_state_at(60);
SELECT labels, from_state, to_state, to_char(at AT TIME ZONE 'UTC', 'HH24:MI') AS at, error
  FROM duet.alert_history WHERE rule = 'low_ctr' AND at >= '2026-01-01 00:30+00' ORDER BY id;

-- a rule whose owner left the tenant evaluates to Error, not as someone else
CREATE ROLE rules_state_member;
SELECT duet_tenant_add_member('rules-state', 'rules_state_member');
GRANT SELECT ON rules_state_ctr TO rules_state_member;
SET ROLE rules_state_member;
SELECT duet_rule_create('member_rule', 'ctr > 0', query => 'SELECT ctr FROM rules_state_ctr') > 0 AS created;
RESET ROLE;
SELECT duet_tenant_remove_member('rules-state', 'rules_state_member');
SELECT rules_state_at(61);
SELECT rule, labels, state, error FROM duet.alerts_active WHERE rule = 'member_rule';

-- a query returning more than duet.rules_max_rows rows is an Error, not an unbounded result
INSERT INTO rules_state_ctr VALUES (4, 0.5);
SET duet.rules_max_rows = 1;
SELECT rules_state_at(62);
RESET duet.rules_max_rows;
SELECT rules_state_at(63);
SELECT labels, from_state, to_state, error FROM duet.alert_history
 WHERE rule = 'low_ctr' AND at >= '2026-01-01 01:02+00' ORDER BY id;

SELECT duet_rule_drop('low_ctr');
SELECT duet_rule_drop('off');
SELECT duet_rule_drop('member_rule');
SELECT count(*) FROM duet.alerts;
SELECT duet_set_tenant(NULL);
DELETE FROM duet.kafka_outbox WHERE topic = 'rules-state.alerts';
DROP FUNCTION rules_state_at(int);
DROP TABLE rules_state_ctr;
DROP ROLE rules_state_member;
DELETE FROM duet.tenants WHERE name = 'rules-state';

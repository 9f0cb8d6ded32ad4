-- rules_rows: row rules evaluate every INSERT's rows in one pass (transition table), including
-- bulk inserts; evaluation problems never fail the insert; rows of other tenants are not seen.
SELECT duet_tenant_create('rules-rows');
SELECT duet_tenant_create('rules-rows-other');
SELECT duet_set_tenant('rules-rows');
CREATE TABLE rules_rows_daily (
    tenant text NOT NULL DEFAULT duet_current_tenant(),
    campaign_id int, day date, spend float8, budget numeric(12,2), revenue float8, note text);
SELECT duet_rule_create('over_budget', 'spend > budget', target => 'rules_rows_daily',
                        labels => '{campaign_id}', value => 'spend - budget',
                        message => 'campaign {campaign_id} overspent by {value} on {day}') > 0 AS created;
SELECT duet_rule_create('roas_below_1', 'revenue / spend < 1', target => 'rules_rows_daily',
                        labels => '{campaign_id}', value => 'round(revenue / spend, 2)', severity => 'critical',
                        message => 'ROAS {value} for campaign {campaign_id}') > 0 AS created;

-- other transition-table triggers before and after ours read the same rows, all of them
CREATE TABLE rules_rows_batches (trigger text, n bigint);
CREATE FUNCTION rules_rows_count() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO rules_rows_batches SELECT TG_NAME, count(*) FROM new_rows; RETURN NULL; END $$;
CREATE TRIGGER aaa_count AFTER INSERT ON rules_rows_daily REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rules_rows_count();
CREATE TRIGGER zzz_count AFTER INSERT ON rules_rows_daily REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rules_rows_count();

-- 10,000 rows in one INSERT: 100 campaigns; campaigns 0-9 overspend on one day, 90-99 have ROAS < 1
INSERT INTO rules_rows_daily (campaign_id, day, spend, budget, revenue)
SELECT g % 100, date '2026-10-01' + g / 100,
       CASE WHEN g % 100 < 10 AND g / 100 = 42 THEN 150 ELSE 80 END, 100,
       CASE WHEN g % 100 >= 90 THEN 60 ELSE 200 END
  FROM generate_series(0, 9999) g;
SELECT rule, count(*) AS alerts, min(labels->>'campaign_id') AS first, max(labels->>'campaign_id') AS last
  FROM duet.alerts_active GROUP BY rule ORDER BY rule;
SELECT trigger, n FROM rules_rows_batches ORDER BY trigger;
DROP TRIGGER aaa_count ON rules_rows_daily;
DROP TRIGGER zzz_count ON rules_rows_daily;
DROP TABLE rules_rows_batches;
DROP FUNCTION rules_rows_count();
-- the alert reports the row that met the condition
SELECT labels, state, value, message FROM duet.alerts_active
 WHERE rule = 'over_budget' AND labels IN ('{"campaign_id": "3"}', '{"campaign_id": "7"}') ORDER BY labels::text;
-- instances are deduplicated by label set, and only label sets that left Normal are stored:
-- 10,000 rows of 100 campaigns make 10 instances per rule
SELECT r.name, count(*) FROM duet.alerts a JOIN duet.rules r ON r.id = a.rule_id GROUP BY 1 ORDER BY 1;

-- a later insert where campaign 3 is within budget resolves it; the others stay firing
INSERT INTO rules_rows_daily (campaign_id, day, spend, budget, revenue) VALUES (3, '2026-11-01', 10, 100, 50);
SELECT labels, state FROM duet.alerts WHERE labels = '{"campaign_id": "3"}' ORDER BY rule_id;
SELECT count(*) FROM duet.alerts_active WHERE rule = 'over_budget';

-- COPY goes through the same trigger
COPY rules_rows_daily (campaign_id, day, spend, budget, revenue) FROM stdin;
500	2026-11-02	900	100	1000
\.
SELECT labels, value, message FROM duet.alerts_active WHERE labels = '{"campaign_id": "500"}' AND rule = 'over_budget';

-- an evaluation error (a string over the engine's 1 MiB limit) is an Error state, not a failed insert
SELECT duet_rule_create('long_note', 'length(note || note) > 10', target => 'rules_rows_daily',
                        labels => '{campaign_id}') > 0 AS created;
INSERT INTO rules_rows_daily (campaign_id, day, spend, budget, revenue, note)
VALUES (600, '2026-11-03', 1, 100, 1, repeat('x', 600000)), (601, '2026-11-03', 1, 100, 1, repeat('x', 6));
SELECT count(*) FROM rules_rows_daily WHERE campaign_id IN (600, 601);
SELECT labels, state, left(error, 60) AS error FROM duet.alerts WHERE rule_id = (SELECT id FROM duet.rules WHERE name = 'long_note')
 ORDER BY labels::text;

-- a schema change that breaks a rule: the insert succeeds, the rule records why it could not run
ALTER TABLE rules_rows_daily DROP COLUMN note;
INSERT INTO rules_rows_daily (campaign_id, day, spend, budget, revenue) VALUES (700, '2026-11-04', 1, 100, 1);
SELECT count(*) FROM rules_rows_daily WHERE campaign_id = 700;
SELECT labels, state, error FROM duet.alerts_active WHERE rule = 'long_note' ORDER BY labels::text;
SELECT duet_rule_drop('long_note');

-- a rule sees only its tenant's rows of a shared table
SELECT duet_set_tenant('rules-rows-other');
INSERT INTO rules_rows_daily (campaign_id, day, spend, budget, revenue) VALUES (800, '2026-11-05', 999, 1, 1);
SELECT count(*) FROM duet.alerts WHERE tenant = 'rules-rows-other';
SELECT duet_set_tenant('rules-rows');
SELECT count(*) FROM duet.alerts WHERE labels = '{"campaign_id": "800"}';

-- a disabled rule is skipped; an insert of zero rows observes nothing
SELECT duet_rule_disable('roas_below_1');
INSERT INTO rules_rows_daily (campaign_id, day, spend, budget, revenue) VALUES (900, '2026-11-06', 1, 100, 0);
INSERT INTO rules_rows_daily SELECT * FROM rules_rows_daily WHERE false;
SELECT rule, labels FROM duet.alerts_active WHERE labels = '{"campaign_id": "900"}';

-- history: one transition per change of state
SELECT rule, from_state, to_state, count(*) FROM duet.alert_history GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- dropping a table drops its row rules
CREATE TABLE rules_rows_gone (x int);
SELECT duet_rule_create('gone', 'x > 1', target => 'rules_rows_gone') > 0 AS created;
DROP TABLE rules_rows_gone;
SELECT count(*) FROM duet.rules WHERE name = 'gone';

SELECT duet_rule_drop('over_budget');
SELECT duet_rule_drop('roas_below_1');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'rules_rows_daily'::regclass;
SELECT duet_set_tenant(NULL);
DROP TABLE rules_rows_daily;
DELETE FROM duet.tenants WHERE name IN ('rules-rows', 'rules-rows-other');

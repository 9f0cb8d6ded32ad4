-- metrics_formulas: a metric defined once is callable in every formula — duet_calc (jsonb, row,
-- positional), duet_formula_check/explain, rule conditions and values, other metrics — with
-- arguments or by parameter name; arity and types checked at the call; cycles refused at define
-- time; a change reaches every compiled formula; versions, history, time travel and rollback.
SELECT name, arguments, return_type, unit FROM duet_metric_define('mf_roas', 'revenue / spend', 'return on ad spend', unit => 'ratio', reason => 'launch');
SELECT name, arguments, depends_on FROM duet_metric_define('mf_pacing',
    'case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end',
    'share of the budget spent against the share of the period elapsed', unit => 'percent', owner => 'growth team');
-- composition: metrics calling metrics, with arguments or by parameter name (name())
SELECT name, arguments, depends_on FROM duet_metric_define('mf_roas_pct', 'round(mf_roas(revenue, spend) * 100, 1)', unit => 'percent');
SELECT name, arguments, depends_on FROM duet_metric_define('mf_profitable', 'mf_roas() > 1');

-- duet_calc: jsonb, row and positional forms
SELECT duet_calc('mf_roas(r, s)', '{"r": 120, "s": 40}'::jsonb) AS with_args,
       duet_calc('mf_roas()', '{"revenue": 120, "spend": 40}'::jsonb) AS by_name,
       duet_calc('mf_roas_pct() || ''%''', '{"revenue": 10, "spend": 3}'::jsonb) AS composed,
       duet_calc('mf_roas(1, 0)', '{}'::jsonb) AS div_by_zero,
       duet_calc('mf_pacing(spend, budget, elapsed, period)', '{"spend": 50, "budget": 100, "elapsed": 1, "period": 4}'::jsonb) AS pacing;
CREATE TABLE mf_daily (campaign text, revenue float8, spend numeric, budget int, elapsed int, period int);
INSERT INTO mf_daily VALUES ('a', 120, 40, 100, 1, 4), ('b', 10, 0, 0, 1, 4), ('c', NULL, 5, NULL, 2, 4);
SELECT campaign, duet_calc('mf_roas()', d) AS roas, duet_calc('mf_pacing()', d) AS pacing,
       duet_calc('mf_profitable()', d) AS profitable FROM mf_daily d ORDER BY campaign;
SELECT duet_calc_args('mf_roas(a, b) * 2', 9, 3) AS positional;
-- the call compiles to the inline formula's program
SELECT regexp_replace(duet_formula_explain('mf_roas_pct(a, b)'), '\[\d+:\d+\] *', '', 'g')
     = regexp_replace(duet_formula_explain('round(a / b * 100, 1)'), '\[\d+:\d+\] *', '', 'g') AS same_program;
SELECT valid, variables, result_type FROM duet_formula_check('mf_roas_pct()');

-- errors at the call, with its position
SELECT duet_calc('mf_roas(r)', '{"r": 1}'::jsonb);
SELECT duet_calc('1 + mf_roas(r, ''x'')', '{"r": 1}'::jsonb);
SELECT duet_calc('mf_nope(1)', '{}'::jsonb);
SELECT valid, error_class, message, col FROM duet_formula_check('mf_pacing(1, 2)');

-- define time: cycles (shown), builtin names, unknown units, dependents
SELECT duet_metric_define('mf_a', 'mf_b(x) + 1');
SELECT name FROM duet_metric_define('mf_b', 'x * 2');
SELECT name, depends_on FROM duet_metric_define('mf_a', 'mf_b(x) + 1');
SELECT duet_metric_define('mf_b', 'mf_a(x) * 2');
SELECT duet_metric_define('mf_b', 'mf_b(x)');
SELECT duet_metric_define('coalesce', 'x');
SELECT duet_metric_define('mf_c', 'x', unit => 'furlongs');
SELECT duet_metric_define('mf_b', 'x || ''!''');
SELECT duet_metric_define('mf_b', 'x * y');
SELECT duet_metric_drop('mf_b');

-- a change reaches compiled formulas at once (same session, same formula text)
SELECT duet_calc('mf_a(10)', '{}'::jsonb) AS before;
SELECT name, version FROM duet_metric_define('mf_b', 'x * 3', reason => 'triple it');
SELECT duet_calc('mf_a(10)', '{}'::jsonb) AS after;
SELECT campaign, duet_calc('mf_a(revenue)', d) AS row_form FROM mf_daily d WHERE campaign = 'a';
-- rolled back with the transaction: the old definition again
BEGIN;
SELECT name, version FROM duet_metric_define('mf_b', 'x * 4');
SELECT duet_calc('mf_a(10)', '{}'::jsonb) AS inside;
ROLLBACK;
SELECT duet_calc('mf_a(10)', '{}'::jsonb) AS rolled_back;

-- history, rollback (a new version), time travel
SELECT version, operation, formula, rolled_back_to, reason, changed_by FROM duet_metric_history('mf_b');
SELECT duet_metric_rollback_default('mf_b', 1, 'back to double') AS new_version;
SELECT duet_calc('mf_a(10)', '{}'::jsonb) AS after_rollback;
SELECT version, operation, formula, rolled_back_to, reason FROM duet_metric_history('mf_b');
SELECT duet_metric_rollback_default('mf_b', 99);
UPDATE duet.metrics_history SET changed_at = '2026-01-01' WHERE name = 'mf_b' AND version = 1;
UPDATE duet.metrics_history SET changed_at = '2026-02-01' WHERE name = 'mf_b' AND version = 2;
SELECT version, formula FROM duet_metric_at('mf_b', '2026-01-15');
SELECT version, formula FROM duet_metric_at('mf_b', '2026-02-15');
SELECT count(*) FROM duet_metric_at('mf_b', '2025-12-31');

-- rules: conditions and values call metrics
SELECT duet_tenant_create('mf-rules');
SELECT duet_set_tenant('mf-rules');
CREATE TABLE mf_rule_rows (tenant text NOT NULL DEFAULT duet_current_tenant(), campaign text, revenue float8, spend float8);
SELECT duet_rule_create('mf_unprofitable', 'not mf_profitable()', target => 'mf_rule_rows', labels => '{campaign}',
                        value => 'mf_roas_pct()', message => 'ROAS {value} for {campaign}') > 0 AS created;
SELECT duet_rule_create('mf_bad', 'mf_roas(revenue) < 1', target => 'mf_rule_rows');
INSERT INTO mf_rule_rows (campaign, revenue, spend) VALUES ('x', 50, 100), ('y', 300, 100);
SELECT labels, state, value, message FROM duet.alerts_active WHERE rule = 'mf_unprofitable';
-- a query rule calling the tenant's own metric, evaluated without a tenant (as the scheduler does)
SELECT name, tenant FROM duet_metric_set('mf_t_double', 'x * 2', 'the tenant''s own metric');
SELECT duet_rule_create('mf_query', 'mf_t_double(v) > 5', query => 'SELECT 3 AS v', value => 'mf_t_double(v)') > 0 AS created;
SELECT duet_set_tenant(NULL);
SELECT duet_rules_evaluate() >= 1 AS evaluated;
SELECT state, value FROM duet.alerts WHERE rule_id = (SELECT id FROM duet.rules WHERE name = 'mf_query');
SELECT duet_set_tenant('mf-rules');
SELECT duet_rule_drop('mf_query');
SELECT duet_metric_unset('mf_t_double');
SELECT duet_rule_drop('mf_unprofitable');
DROP TABLE mf_rule_rows;
SELECT duet_set_tenant(NULL);
DELETE FROM duet.metrics_history WHERE tenant = 'mf-rules';
DELETE FROM duet.tenants WHERE name = 'mf-rules';

-- the catalog for dashboards
SELECT name, description, unit, owner, source, version, arguments, depends_on
  FROM duet.metrics_catalog WHERE name LIKE 'mf\_%' ORDER BY name;

-- dropping in dependency order
SELECT duet_metric_drop('mf_a'), duet_metric_drop('mf_b'), duet_metric_drop('mf_profitable'),
       duet_metric_drop('mf_roas_pct'), duet_metric_drop('mf_roas'), duet_metric_drop('mf_pacing');
SELECT duet_metric_drop('mf_roas');
SELECT operation, count(*) FROM duet.metrics_history WHERE name LIKE 'mf\_%' GROUP BY 1 ORDER BY 1;
DELETE FROM duet.metrics_history WHERE name LIKE 'mf\_%';
DROP TABLE mf_daily;

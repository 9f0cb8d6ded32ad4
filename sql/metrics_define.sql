-- metrics: duet_metric_define compiles the formula with calc and stores its ClickHouse signature
SELECT name, formula, description, arguments, argument_types, return_type
  FROM duet_metric_define('ctr', 'clicks / impressions', 'click-through rate');
SELECT name, arguments, argument_types, return_type
  FROM duet_metric_define('over_budget', 'spend > budget * 1.1', 'spend beyond the budget plus 10%');
SELECT name, arguments, argument_types, return_type
  FROM duet_metric_define('label', 'campaign || '' ('' || country || '')''', 'display label',
                          '{"campaign": "String", "country": "Nullable(String)"}');
-- redefining replaces the formula and the signature
SELECT name, formula, arguments FROM duet_metric_define('ctr', 'clicks / nullif(impressions, 0)', 'click-through rate');
SELECT name, formula, arguments, return_type FROM duet.metrics ORDER BY name;
-- a formula that does not compile is refused with its position, and nothing is stored
SELECT duet_metric_define('broken', 'clicks / (impressions', NULL);
-- declared types reach the compiler: a string used as a number is a type error here, not in ClickHouse
SELECT duet_metric_define('bad_type', 'campaign * 2', NULL, '{"campaign": "String"}');
SELECT duet_metric_define('unused', 'a + 1', NULL, '{"b": "Float64"}');
SELECT duet_metric_define('odd_type', 'a + 1', NULL, '{"a": "Decimal(10,2)"}');
SELECT duet_metric_define('odd_json', 'a + 1', NULL, '["a"]');
-- names become ClickHouse function names and command-line words
SELECT duet_metric_define('no spaces', '1', NULL);
SELECT duet_metric_define('1st', '1', NULL);
SELECT count(*) FROM duet.metrics WHERE name IN ('broken', 'bad_type', 'unused', 'odd_type', 'odd_json');
SELECT duet_metric_drop('label'), duet_metric_drop('label');
SELECT duet_metric_drop('ctr'), duet_metric_drop('over_budget');

-- metrics: everyone reads metrics and the ClickHouse config; only admins define or drop them
CREATE ROLE metrics_reader;
CREATE ROLE metrics_admin;
GRANT EXECUTE ON FUNCTION duet_metric_define(text, text, text, jsonb, text, text, text), duet_metric_drop(text, text) TO metrics_admin;
SELECT (duet_metric_define('cpc', 'spend / clicks', 'cost per click')).name;
SET ROLE metrics_reader;
SELECT name, formula FROM duet.metrics;
SELECT definitions FROM duet_clickhouse_config();
SELECT duet_metric_define('cpm', 'spend / impressions * 1000', NULL);
SELECT duet_metric_drop('cpc');
INSERT INTO duet.metrics (name, formula, arguments, argument_types, return_type)
VALUES ('sneaky', '1', '{}', '{}', 'Nullable(Float64)');
UPDATE duet.metrics SET formula = '0' WHERE name = 'cpc';
RESET ROLE;
-- a granted admin defines through the function (no table privileges needed); defined_by is the role that made the change
SET ROLE metrics_admin;
SELECT name, defined_by FROM duet_metric_define('cpm', 'spend / impressions * 1000', 'cost per mille');
SELECT duet_metric_drop('cpc'), duet_metric_drop('cpm');
RESET ROLE;
SELECT count(*) FROM duet.metrics;
REVOKE EXECUTE ON FUNCTION duet_metric_define(text, text, text, jsonb, text, text, text), duet_metric_drop(text, text) FROM metrics_admin;
DROP ROLE metrics_reader;
DROP ROLE metrics_admin;

-- pipelines_metrics: a pipeline's formula transform calls a metric of the metrics layer (issue 19
-- with issue 13): the global definition, then the pipeline's tenant's override, each applying to
-- the runs after it; another tenant's override changes nothing here.
SELECT duet_tenant_create('pipes-metrics');
SELECT duet_tenant_create('pipes-metrics-other');
CREATE ROLE pipes_metrics_owner;
CREATE ROLE pipes_metrics_other;
SELECT duet_tenant_add_member('pipes-metrics', 'pipes_metrics_owner');
SELECT duet_tenant_add_member('pipes-metrics-other', 'pipes_metrics_other');
CREATE TABLE pipes_metrics_src (seq bigint PRIMARY KEY, campaign text, revenue float8, spend float8);
CREATE TABLE pipes_metrics_out (seq bigint, campaign text, roas float8);
GRANT SELECT ON pipes_metrics_src TO pipes_metrics_owner;
GRANT SELECT, INSERT ON pipes_metrics_out TO pipes_metrics_owner;
SELECT name, formula FROM duet_metric_define('pm_roas', 'revenue / spend', 'return on ad spend', unit => 'ratio');
INSERT INTO pipes_metrics_src VALUES (1, 'a', 120, 40), (2, 'b', 10, 0);

SET ROLE pipes_metrics_owner;
SELECT duet_pipeline_create('pm', 'pipes_metrics_src', 'pipes_metrics_out',
    '{"seq": "seq", "campaign": "campaign", "roas": "=pm_roas(revenue, spend)"}', order_by => 'seq') IS NOT NULL AS created;
SELECT duet_pipeline_run('pm');
RESET ROLE;
-- the global metric: 120 / 40 = 3, and division by zero is NULL
SELECT seq, campaign, roas FROM pipes_metrics_out ORDER BY seq;

-- another tenant's override does not reach this pipeline
SET ROLE pipes_metrics_other;
SELECT name, formula FROM duet_metric_set('pm_roas', 'revenue / spend * 1000');
RESET ROLE;
INSERT INTO pipes_metrics_src VALUES (3, 'c', 50, 25);
SET ROLE pipes_metrics_owner;
SELECT duet_pipeline_run('pm');
-- its own tenant's override does, from the next run on
SELECT name, formula FROM duet_metric_set('pm_roas', 'round(revenue / spend * 100, 1)');
RESET ROLE;
INSERT INTO pipes_metrics_src VALUES (4, 'd', 10, 3);
SET ROLE pipes_metrics_owner;
SELECT duet_pipeline_run('pm');
RESET ROLE;
SELECT seq, campaign, roas FROM pipes_metrics_out ORDER BY seq;

SET ROLE pipes_metrics_owner;
SELECT duet_pipeline_drop('pm');
SELECT duet_metric_unset('pm_roas');
RESET ROLE;
SET ROLE pipes_metrics_other;
SELECT duet_metric_unset('pm_roas');
RESET ROLE;
SELECT duet_metric_drop('pm_roas');
DROP TABLE pipes_metrics_src, pipes_metrics_out;

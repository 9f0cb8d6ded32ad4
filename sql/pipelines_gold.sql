-- pipelines_gold: aggregate pipelines (issue 19) — "=" columns are Duet formulas and metrics over
-- the group's aggregates, computed under the owner's tenant; a source row that moves to another
-- group has its old group recomputed (and an emptied group deleted); a NULL key is a group.
SELECT duet_tenant_create('pipes-gold');
SELECT duet_tenant_create('pipes-gold-other');
CREATE ROLE pipes_gold_owner;
CREATE ROLE pipes_gold_other;
SELECT duet_tenant_add_member('pipes-gold', 'pipes_gold_owner');
SELECT duet_tenant_add_member('pipes-gold-other', 'pipes_gold_other');
CREATE TABLE pipes_gold_src (id int PRIMARY KEY, campaign text, day date, revenue float8, spend float8, seq bigint NOT NULL);
CREATE TABLE pipes_gold_out (campaign text, day date, revenue_sum float8, spend_sum float8, n bigint,
                             roas float8, label text);
CREATE UNIQUE INDEX ON pipes_gold_out (campaign, day) NULLS NOT DISTINCT;
CREATE TABLE pipes_gold_pk (campaign text, day date, revenue_sum float8, PRIMARY KEY (campaign, day));
CREATE TABLE pipes_gold_plain (campaign text, day date, revenue_sum float8, UNIQUE (campaign, day));
GRANT SELECT ON pipes_gold_src TO pipes_gold_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON pipes_gold_out, pipes_gold_pk, pipes_gold_plain TO pipes_gold_owner;
SELECT name, formula FROM duet_metric_define('pg_roas', 'revenue / spend', 'return on ad spend', unit => 'ratio');
INSERT INTO pipes_gold_src VALUES
    (1, 'a', '2026-01-01', 120, 40, 1), (2, 'a', '2026-01-01', 30, 10, 2), (3, 'b', '2026-01-01', 10, 0, 3),
    (4, NULL, '2026-01-01', 5, 5, 4), (5, NULL, '2026-01-01', 15, 5, 5), (6, 'c', NULL, 8, 2, 6);

SET ROLE pipes_gold_owner;
-- a key column cannot be a formula
SELECT duet_pipeline_create('bad', 'pipes_gold_src', 'pipes_gold_out',
    '{"campaign": "=campaign", "day": "day", "revenue_sum": "sum(revenue)"}',
    order_by => 'seq', key => '{campaign,day}', mode => 'aggregate');
-- a nullable key needs a unique index NULLS NOT DISTINCT
SELECT duet_pipeline_create('bad', 'pipes_gold_src', 'pipes_gold_plain',
    '{"campaign": "campaign", "day": "day", "revenue_sum": "sum(revenue)"}',
    order_by => 'seq', key => '{campaign,day}', mode => 'aggregate');
-- sums are SQL aggregates; roas is the metric over them, label a formula over the group
SELECT duet_pipeline_create('gold', 'pipes_gold_src', 'pipes_gold_out',
    '{"campaign": "campaign", "day": "day", "revenue_sum": "sum(revenue)", "spend_sum": "sum(spend)",
      "n": "count(*)", "roas": "=pg_roas(revenue_sum, spend_sum)",
      "label": "=concat(campaign, '':'', n)"}',
    order_by => 'seq', key => '{campaign,day}', mode => 'aggregate') IS NOT NULL AS created;
SELECT duet_pipeline_run('gold');
RESET ROLE;
-- the NULL campaign and the NULL day are groups; roas = revenue_sum / spend_sum (NULL for b)
SELECT * FROM pipes_gold_out ORDER BY campaign NULLS FIRST, day NULLS FIRST;

-- row 2 moves from a to b, row 5 from the NULL campaign to a, row 6 to a new day: both groups
-- of each move are recomputed; group (c, NULL) is left empty and goes
UPDATE pipes_gold_src SET campaign = 'b', seq = 7 WHERE id = 2;
UPDATE pipes_gold_src SET campaign = 'a', seq = 8 WHERE id = 5;
UPDATE pipes_gold_src SET day = '2026-01-02', seq = 9 WHERE id = 6;
SET ROLE pipes_gold_owner;
SELECT duet_pipeline_run('gold');
RESET ROLE;
SELECT * FROM pipes_gold_out ORDER BY campaign NULLS FIRST, day NULLS FIRST;
-- gold equals the aggregate computed directly (groups by IS NOT DISTINCT FROM)
SELECT count(*) AS differing FROM (
    (SELECT campaign, day, sum(revenue), sum(spend), count(*) FROM pipes_gold_src GROUP BY 1, 2
     EXCEPT SELECT campaign, day, revenue_sum, spend_sum, n FROM pipes_gold_out)
    UNION ALL
    (SELECT campaign, day, revenue_sum, spend_sum, n FROM pipes_gold_out
     EXCEPT SELECT campaign, day, sum(revenue), sum(spend), count(*) FROM pipes_gold_src GROUP BY 1, 2)) d;
-- one tracked group per source row
SELECT src_key, grp FROM duet.pipeline_groups ORDER BY src_key;

-- another tenant's override of the metric changes nothing here; the owner's tenant's does,
-- on the groups recomputed after it
SET ROLE pipes_gold_other;
SELECT name, formula FROM duet_metric_set('pg_roas', 'revenue / spend * 1000');
RESET ROLE;
SET ROLE pipes_gold_owner;
SELECT name, formula FROM duet_metric_set('pg_roas', 'round(revenue / spend * 100, 1)');
RESET ROLE;
INSERT INTO pipes_gold_src VALUES (7, 'a', '2026-01-01', 10, 10, 10);
SET ROLE pipes_gold_owner;
SELECT duet_pipeline_run('gold');
RESET ROLE;
SELECT campaign, day, revenue_sum, spend_sum, roas FROM pipes_gold_out ORDER BY campaign NULLS FIRST, day NULLS FIRST;

-- a row of a new NULL-campaign group recomputes that group only, not the other NULL group
INSERT INTO pipes_gold_src VALUES (8, NULL, '2026-01-03', 1, 1, 11);
SET ROLE pipes_gold_owner;
SELECT duet_pipeline_run('gold');
SELECT rows_in, rows_out FROM duet.pipeline_runs WHERE pipeline_id = (SELECT id FROM duet.pipelines WHERE name = 'gold') ORDER BY id DESC LIMIT 1;
RESET ROLE;
SELECT campaign, day, revenue_sum, n FROM pipes_gold_out WHERE campaign IS NULL ORDER BY day;

-- a target whose key is NOT NULL: a NULL group stops the pipeline (nothing is lost or partial)
SET ROLE pipes_gold_owner;
SELECT duet_pipeline_create('gold_pk', 'pipes_gold_src', 'pipes_gold_pk',
    '{"campaign": "campaign", "day": "day", "revenue_sum": "sum(revenue)"}',
    order_by => 'seq', key => '{campaign,day}', mode => 'aggregate') IS NOT NULL AS created;
SELECT duet_pipeline_run('gold_pk');
SELECT state, last_error FROM duet.pipeline_status WHERE name = 'gold_pk';
SELECT count(*) FROM pipes_gold_pk;

SELECT duet_pipeline_drop('gold'), duet_pipeline_drop('gold_pk');
SELECT duet_metric_unset('pg_roas');
RESET ROLE;
SELECT count(*) AS groups_left FROM duet.pipeline_groups;
SET ROLE pipes_gold_other;
SELECT duet_metric_unset('pg_roas');
RESET ROLE;
SELECT duet_metric_drop('pg_roas');
DROP TABLE pipes_gold_src, pipes_gold_out, pipes_gold_pk, pipes_gold_plain;
DROP ROLE pipes_gold_owner, pipes_gold_other;

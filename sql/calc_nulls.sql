-- calc: NULL formulas, NULL rows and NULL columns.
CREATE TABLE calc_nulls_campaign (id int PRIMARY KEY, name text);
CREATE TABLE calc_nulls_daily (campaign_id int, clicks int, impressions int);
INSERT INTO calc_nulls_campaign VALUES (1, 'a'), (2, 'b');
INSERT INTO calc_nulls_daily VALUES (1, 10, 100), (1, NULL, 100);
-- a NULL formula or a NULL row (an outer join's missing side) gives SQL NULL
SELECT duet_calc(NULL, '{}'::jsonb) IS NULL AS null_formula, duet_calc('1', NULL::jsonb) IS NULL AS null_vars;
SELECT c.id, duet_calc('clicks / impressions', d) AS ctr, duet_calc('clicks / impressions', d) IS NULL AS sql_null
  FROM calc_nulls_campaign c LEFT JOIN calc_nulls_daily d ON d.campaign_id = c.id ORDER BY c.id, d.clicks;
SELECT duet_calc_number('1', NULL::calc_nulls_daily) IS NULL AS null_row_number;
-- NULL columns are NULL values: SQL NULL semantics inside the formula, jsonb null out
SELECT duet_calc('clicks / impressions', d) AS ctr, duet_calc('coalesce(clicks, 0) / impressions', d) AS coalesced,
       duet_calc('clicks is null', d) AS is_null
  FROM calc_nulls_daily d ORDER BY clicks NULLS LAST;
-- a row whose columns are all NULL is still a row
SELECT duet_calc('coalesce(clicks, impressions, -1)', ROW(NULL, NULL, NULL)::calc_nulls_daily) AS all_null_columns;
DROP TABLE calc_nulls_daily, calc_nulls_campaign;

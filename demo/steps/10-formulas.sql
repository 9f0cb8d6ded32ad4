-- Duet formulas over the sample: CTR, CPC, ROAS and pacing per campaign (calc/ through duet_calc)
-- Each formula binds its variables to the columns of the row by name; it compiles once per query.
WITH totals AS (
    SELECT c.tenant, c.name, sum(d.impressions) AS impressions, sum(d.clicks) AS clicks,
           sum(d.spend) AS spend, sum(d.revenue) AS revenue, sum(d.budget) AS budget
      FROM campaign_daily d JOIN campaigns c ON c.id = d.campaign_id
     GROUP BY c.tenant, c.name)
SELECT tenant, name,
       duet_calc('round(100 * clicks / impressions, 2)', t) AS ctr_pct,
       duet_calc('round(spend / clicks, 3)', t)             AS cpc,
       duet_calc('round(revenue / spend, 2)', t)            AS roas,
       duet_calc('round(100 * spend / budget, 1)', t)       AS pacing_pct,
       duet_calc('case when revenue < spend then ''losing money''
                       when spend > 0.9 * budget then ''near budget'' else ''ok'' end', t) AS status
  FROM totals t
 ORDER BY tenant, name;

-- The float8 variant for numeric formulas, here ranking days by ROAS; jsonb variables for ad-hoc values.
SELECT c.name, d.day, duet_calc_number('revenue / spend', d) AS roas
  FROM campaign_daily d JOIN campaigns c ON c.id = d.campaign_id
 ORDER BY roas DESC, d.day LIMIT 3;
SELECT duet_calc('clicks / impressions > threshold', '{"clicks": 31, "impressions": 1000, "threshold": 0.02}'::jsonb) AS above_threshold;

-- A broken formula: duet_formula_check reports where and what, without raising.
SELECT valid, error_class, message, line, col, expected, excerpt
  FROM duet_formula_check(E'round(revenue /\n      (spend + , 2)');

-- Duet formulas over the sample: CTR, CPC, ROAS and pacing per campaign (calc/ through duet_calc)
SELECT c.name,
       sum(d.impressions) AS impressions, sum(d.clicks) AS clicks,
       round(sum(d.spend)::numeric, 2) AS spend, round(sum(d.revenue)::numeric, 2) AS revenue
  FROM campaign_daily d JOIN campaigns c ON c.id = d.campaign_id
 GROUP BY c.name ORDER BY c.name;

-- The ad-tech sample: two tenants' campaigns with 30 days of delivery each. Deterministic (no random()).
CREATE TABLE campaigns (
    id          int PRIMARY KEY,
    tenant      text NOT NULL,
    name        text NOT NULL,
    daily_budget numeric(12,2) NOT NULL
);
CREATE TABLE campaign_daily (
    tenant      text NOT NULL,
    campaign_id int NOT NULL REFERENCES campaigns,
    day         date NOT NULL,
    impressions bigint NOT NULL,
    clicks      bigint NOT NULL,
    spend       double precision NOT NULL,
    revenue     double precision NOT NULL,
    budget      double precision NOT NULL,
    PRIMARY KEY (campaign_id, day)
);
COMMENT ON TABLE campaigns IS 'advertising campaigns per tenant';
COMMENT ON TABLE campaign_daily IS 'daily delivery per campaign: impressions, clicks, spend, revenue and budget';

INSERT INTO campaigns VALUES
    (1, 'acme',   'acme-spring-sale',  500), (2, 'acme',   'acme-retargeting', 200),
    (3, 'acme',   'acme-brand',       1000), (4, 'globex', 'globex-launch',     800),
    (5, 'globex', 'globex-search',     300), (6, 'globex', 'globex-video',     1500);

INSERT INTO campaign_daily
SELECT c.tenant, c.id, d::date,
       imp, clk,
       round((imp / 1000.0 * (1.5 + c.id % 3))::numeric, 2)::float8            AS spend,
       round((clk * (0.05 + (c.id * 7 + i) % 5 * 0.08))::numeric, 2)::float8      AS revenue,
       c.daily_budget::float8
  FROM campaigns c,
       generate_series(date '2026-10-01', date '2026-10-30', interval '1 day') WITH ORDINALITY AS g(d, i),
       LATERAL (SELECT (20000 + c.id * 9000 + (i * 7919 * c.id) % 40000)::bigint AS imp) m,
       LATERAL (SELECT (m.imp * (5 + (i * c.id) % 23) / 1000)::bigint AS clk) k;

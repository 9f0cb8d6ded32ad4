-- pg_duet install script, part 75: figures for monitoring (docs/monitoring.md). (C: pg_duet/monitor.c)
--
-- The duet_metrics_*() functions return counts and names only, never tenant content, and decide
-- themselves what the caller sees: monitors (superusers, pg_monitor, duet_monitor) every tenant,
-- anyone else its own tenant (duet_current_tenant()), the consumers of the roles it acts as, and
-- the outbox only as a Kafka admin. Prometheus's postgres_exporter reads them
-- (exporter/pg_duet_queries.yaml); duet.health shows the same figures as rows for dashboards.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'duet_monitor') THEN
        CREATE ROLE duet_monitor NOLOGIN;
    END IF;
END
$$;

CREATE FUNCTION duet_metrics_rules(OUT tenant text, OUT severity text, OUT rules bigint,
        OUT enabled bigint, OUT evaluations bigint, OUT errors bigint, OUT rows_evaluated bigint,
        OUT pending bigint, OUT firing bigint, OUT recovering bigint, OUT in_error bigint,
        OUT last_evaluation_at timestamptz)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_rules';
COMMENT ON FUNCTION duet_metrics_rules() IS
    'rules per tenant and severity: rules, enabled, evaluations, failed evaluations and rows evaluated since the server started, alerts pending, firing, recovering and in error (monitors: every tenant; others: their tenant)';

CREATE FUNCTION duet_metrics_ask(OUT tenant text, OUT status text, OUT calls bigint,
        OUT http_requests bigint, OUT corrections bigint, OUT tokens_in bigint, OUT tokens_out bigint,
        OUT latency_ms_sum double precision, OUT latency_bounds double precision[],
        OUT latency_buckets bigint[])
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_ask';
COMMENT ON FUNCTION duet_metrics_ask() IS
    'duet_ask calls per tenant and status since the server started: calls, HTTP requests, corrections (answers the guard rejected), tokens, total latency, and a latency histogram (bucket upper bounds in seconds, cumulative counts) (monitors: every tenant; others: their tenant)';

CREATE FUNCTION duet_metrics_kafka(OUT consumer text, OUT topic text, OUT state text,
        OUT workers bigint, OUT rows bigint, OUT bytes bigint, OUT batches bigint, OUT errors bigint,
        OUT dead_letters bigint, OUT lag bigint, OUT rows_per_second double precision,
        OUT skipped_messages bigint, OUT lag_age_seconds double precision)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_kafka';
COMMENT ON FUNCTION duet_metrics_kafka() IS
    'Kafka consumers: state, workers, rows, bytes, batches, errors, dead letters, lag, rows/s, messages skipped, age of the oldest high watermark behind the lag (monitors: every consumer; others: the consumers of roles they act as)';

CREATE FUNCTION duet_metrics_outbox(OUT pending bigint, OUT oldest_pending_age_seconds double precision,
        OUT sent_last_hour bigint, OUT last_sent_at timestamptz)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_outbox';
COMMENT ON FUNCTION duet_metrics_outbox() IS
    'the Kafka outbox: events pending, age of the oldest pending event in seconds, events sent in the last hour, last sent (monitors and Kafka admins; no row for others)';

CREATE FUNCTION duet_metrics_server(OUT counters_available boolean, OUT workers_serving boolean,
        OUT config_cache_hits bigint, OUT config_cache_misses bigint, OUT config_cache_bypasses bigint,
        OUT config_cache_hit_ratio double precision, OUT counters_dropped bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_server';
COMMENT ON FUNCTION duet_metrics_server() IS
    'the server: whether the counters exist (preloaded), whether the workers serve this database, config cache hits, misses and bypasses of the whole server, counts lost to full counter tables (monitors only; no row for others)';

CREATE FUNCTION duet_metrics_workers(OUT worker text, OUT running bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_workers';
COMMENT ON FUNCTION duet_metrics_workers() IS
    'pg_duet''s background workers running for this database, by kind (the rule scheduler: the server''s), from pg_stat_activity (monitors only; no row for others)';

CREATE FUNCTION duet_metrics_pipelines(OUT tenant text, OUT pipeline text, OUT mode text,
        OUT state text, OUT lag_rows bigint, OUT lag_seconds double precision, OUT runs_5m bigint,
        OUT rows_in_5m bigint, OUT rows_out_5m bigint, OUT rows_dropped_5m bigint,
        OUT errors_24h bigint, OUT quarantined bigint, OUT last_run_age_seconds double precision,
        OUT last_success_age_seconds double precision)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_metrics_pipelines';
COMMENT ON FUNCTION duet_metrics_pipelines() IS
    'pipelines per tenant and name: state, mode, lag in rows and seconds, runs and rows read, written and quarantined in the last 5 minutes, failed runs in 24 hours, rows in quarantine, ages of the last run and success; counts only, never transforms, error texts or rows (monitors: every tenant; others: their tenant)';

-- Everyone may call them: each returns only what its caller may see (pg_duet/monitor.c).
GRANT EXECUTE ON FUNCTION duet_metrics_rules(), duet_metrics_ask(), duet_metrics_kafka(),
    duet_metrics_outbox(), duet_metrics_server(), duet_metrics_workers(), duet_metrics_pipelines() TO PUBLIC;

CREATE VIEW duet.health WITH (security_invoker = true) AS
SELECT r.tenant, 'rules'::text AS subsystem, m.metric,
       pg_catalog.jsonb_build_object('severity', r.severity) AS labels, m.value
  FROM duet_metrics_rules() r
 CROSS JOIN LATERAL (VALUES ('rules', r.rules::float8), ('enabled', r.enabled::float8),
                            ('evaluations', r.evaluations::float8), ('errors', r.errors::float8),
                            ('rows_evaluated', r.rows_evaluated::float8), ('pending', r.pending::float8),
                            ('firing', r.firing::float8), ('recovering', r.recovering::float8),
                            ('in_error', r.in_error::float8)) AS m(metric, value)
UNION ALL
SELECT a.tenant, 'ask', m.metric, pg_catalog.jsonb_build_object('status', a.status), m.value
  FROM duet_metrics_ask() a
 CROSS JOIN LATERAL (VALUES ('calls', a.calls::float8), ('http_requests', a.http_requests::float8),
                            ('guard_rejections', a.corrections::float8), ('tokens_in', a.tokens_in::float8),
                            ('tokens_out', a.tokens_out::float8), ('latency_seconds', a.latency_ms_sum / 1000))
       AS m(metric, value)
UNION ALL
SELECT NULL, 'kafka', m.metric,
       pg_catalog.jsonb_build_object('consumer', k.consumer, 'topic', k.topic, 'state', k.state), m.value
  FROM duet_metrics_kafka() k
 CROSS JOIN LATERAL (VALUES ('up', CASE WHEN k.state = 'running' THEN 1 ELSE 0 END::float8),
                            ('workers', k.workers::float8), ('rows', k.rows::float8),
                            ('bytes', k.bytes::float8), ('batches', k.batches::float8),
                            ('errors', k.errors::float8), ('dead_letters', k.dead_letters::float8),
                            ('lag', k.lag::float8), ('rows_per_second', k.rows_per_second),
                            ('skipped_messages', k.skipped_messages::float8),
                            ('lag_age_seconds', k.lag_age_seconds)) AS m(metric, value)
UNION ALL
SELECT NULL, 'outbox', m.metric, '{}'::jsonb, m.value
  FROM duet_metrics_outbox() o
 CROSS JOIN LATERAL (VALUES ('pending', o.pending::float8),
                            ('oldest_pending_age_seconds', o.oldest_pending_age_seconds),
                            ('sent_last_hour', o.sent_last_hour::float8)) AS m(metric, value)
UNION ALL
SELECT NULL, 'server', m.metric, '{}'::jsonb, m.value
  FROM duet_metrics_server() s
 CROSS JOIN LATERAL (VALUES ('counters_available', CASE WHEN s.counters_available THEN 1 ELSE 0 END::float8),
                            ('workers_serving', CASE WHEN s.workers_serving THEN 1 ELSE 0 END::float8),
                            ('config_cache_hits', s.config_cache_hits::float8),
                            ('config_cache_misses', s.config_cache_misses::float8),
                            ('config_cache_bypasses', s.config_cache_bypasses::float8),
                            ('config_cache_hit_ratio', s.config_cache_hit_ratio),
                            ('counters_dropped', s.counters_dropped::float8)) AS m(metric, value)
UNION ALL
SELECT p.tenant, 'pipelines', m.metric, pg_catalog.jsonb_build_object('pipeline', p.pipeline, 'mode', p.mode), m.value
  FROM duet_metrics_pipelines() p
 CROSS JOIN LATERAL (VALUES ('active', CASE WHEN p.state = 'active' THEN 1 ELSE 0 END::float8),
                            ('paused', CASE WHEN p.state = 'paused' THEN 1 ELSE 0 END::float8),
                            ('in_error', CASE WHEN p.state = 'error' THEN 1 ELSE 0 END::float8),
                            ('lag_rows', p.lag_rows::float8), ('lag_seconds', p.lag_seconds),
                            ('runs_5m', p.runs_5m::float8), ('rows_in_5m', p.rows_in_5m::float8),
                            ('rows_out_5m', p.rows_out_5m::float8), ('rows_dropped_5m', p.rows_dropped_5m::float8),
                            ('errors_24h', p.errors_24h::float8), ('quarantined', p.quarantined::float8),
                            ('last_run_age_seconds', p.last_run_age_seconds),
                            ('last_success_age_seconds', p.last_success_age_seconds)) AS m(metric, value)
UNION ALL
SELECT NULL, 'workers', 'running', pg_catalog.jsonb_build_object('worker', w.worker), w.running::float8
  FROM duet_metrics_workers() w;
COMMENT ON VIEW duet.health IS
    'pg_duet''s figures as rows for dashboards, the same as the Prometheus metrics (docs/monitoring.md): rules, ask, Kafka consumers, outbox, server, workers, pipelines; a tenant member sees its own tenant''s rows, monitors (pg_monitor, duet_monitor) every tenant';
GRANT SELECT ON duet.health TO PUBLIC;

-- pg_duet install script, part 45: alert content and Alertmanager delivery (docs/alerting.md).
-- (C: pg_duet/alertmanager.c, the sender; templates in rules_formula.c)
--
-- A rule's annotations (summary, description, runbook_url, ...) and resolve message are templates
-- rendered with the row that fired (resolved). The sender pushes every firing alert, and every
-- resolved one, to each Alertmanager of duet.alertmanager_urls and records, per alert and
-- Alertmanager, which notify_version it delivered: nothing is lost across restarts of PostgreSQL
-- or of Alertmanager. The statements below are the same in the update script (0.1.0 -> 0.2.0).

-- Columns are added without a default, then filled: stored as in a fresh install (no "missing
-- value" for old rows, which a binary-upgrade dump would show).
ALTER TABLE duet.rules ADD COLUMN annotations jsonb;
UPDATE duet.rules SET annotations = '{}';
ALTER TABLE duet.rules ALTER COLUMN annotations SET DEFAULT '{}';
ALTER TABLE duet.rules ALTER COLUMN annotations SET NOT NULL;
ALTER TABLE duet.rules ADD CONSTRAINT rule_annotations CHECK (jsonb_typeof(annotations) = 'object');
ALTER TABLE duet.rules ADD COLUMN resolve_message text;

ALTER TABLE duet.alerts ADD COLUMN annotations jsonb;
ALTER TABLE duet.alerts ADD COLUMN resolve_message text;
ALTER TABLE duet.alerts ADD COLUMN started_at timestamptz;
ALTER TABLE duet.alerts ADD COLUMN resolved_at timestamptz;
ALTER TABLE duet.alerts ADD COLUMN notify_version bigint;
UPDATE duet.alerts SET notify_version = 0;
ALTER TABLE duet.alerts ALTER COLUMN notify_version SET DEFAULT 0;
ALTER TABLE duet.alerts ALTER COLUMN notify_version SET NOT NULL;
-- The sender's scan: alerts Alertmanager knows of (firing, or resolved and not yet forgotten).
CREATE INDEX alerts_notified ON duet.alerts (id) WHERE notify_version > 0;

-- Annotation names are Alertmanager label names; values are message templates.
CREATE FUNCTION duet.duet_rule_check_annotations(p_annotations jsonb) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
BEGIN
    IF jsonb_typeof(p_annotations) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'rule annotations must be a JSON object of templates',
            HINT = 'For example: {"summary": "campaign {campaign_id} overspent", "runbook_url": "https://wiki/budget"}.';
    END IF;
    FOR k IN SELECT e.key FROM jsonb_each(p_annotations) e LOOP
        IF k !~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_name',
                MESSAGE = format('invalid annotation name "%s"', k),
                DETAIL = 'Alertmanager annotation names have letters, digits and "_", not starting with a digit.';
        END IF;
        IF jsonb_typeof(p_annotations -> k) <> 'string' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('annotation "%s" must be a string template', k);
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION duet.duet_rule_check_annotations(jsonb) IS
    'internal: checks that a rule''s annotations are an object of string templates with Alertmanager names';
REVOKE ALL ON FUNCTION duet.duet_rule_check_annotations(jsonb) FROM PUBLIC;

-- Per-tenant routing defaults: the config key alertmanager.labels (a JSON object, a global
-- default and tenant overrides, docs/alerting.md), under the rule's labels, under alertname,
-- tenant and severity. Label names Alertmanager would refuse are made valid as Prometheus does
-- (every other character becomes "_"). Run as the caller: row-level security on duet.config
-- shows a tenant its own value and the default, the sender (the owner) every tenant's.
CREATE FUNCTION duet_alertmanager_labels(p_tenant text, p_rule text, p_severity text, p_labels jsonb)
    RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce(jsonb_object_agg(regexp_replace(regexp_replace(l.key, '[^A-Za-z0-9_]', '_', 'g'), '^([0-9])', '_\1'),
                                     l.value ORDER BY l.prio, l.key), '{}')
           || jsonb_build_object('alertname', p_rule, 'tenant', p_tenant, 'severity', p_severity)
      FROM (SELECT 1 AS prio, d.key, d.value
              FROM (SELECT c.value FROM duet.config c
                     WHERE c.key = 'alertmanager.labels' AND (c.tenant IS NULL OR c.tenant = p_tenant)
                       AND jsonb_typeof(c.value) = 'object'
                     ORDER BY c.tenant NULLS LAST LIMIT 1) AS cfg,
                   jsonb_each_text(cfg.value) AS d
            UNION ALL
            SELECT 2, e.key, e.value FROM jsonb_each_text(coalesce(p_labels, '{}')) AS e) AS l
     WHERE l.value IS NOT NULL AND l.value <> '';
END;
COMMENT ON FUNCTION duet_alertmanager_labels(text, text, text, jsonb) IS
    'the Alertmanager label set of an alert: the tenant''s alertmanager.labels config, then the rule''s labels, then alertname, tenant and severity';

-- Per alert and Alertmanager: which notify_version it accepted, and the last failure.
CREATE TABLE duet.alertmanager_deliveries (
    alert_id          bigint NOT NULL REFERENCES duet.alerts ON DELETE CASCADE,
    tenant            text NOT NULL,
    alertmanager      text NOT NULL,     -- the URL without user:password
    delivered_version bigint NOT NULL DEFAULT 0,
    sent_at           timestamptz,
    attempts          integer NOT NULL DEFAULT 0,
    last_attempt_at   timestamptz,
    last_error        text,
    PRIMARY KEY (alert_id, alertmanager)
);
COMMENT ON TABLE duet.alertmanager_deliveries IS
    'delivery state of each alert to each Alertmanager: the version it accepted and when; written by the sender';

-- Per Alertmanager: what the sender saw. Superusers and pg_monitor read it (URLs, errors).
CREATE TABLE duet.alertmanager_status (
    alertmanager         text PRIMARY KEY,
    configured           boolean NOT NULL DEFAULT true,
    last_attempt_at      timestamptz,
    last_success_at      timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz,
    last_error           text,
    alerts_sent          bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE duet.alertmanager_status IS
    'each Alertmanager of duet.alertmanager_urls as the sender saw it: last success, failures, backoff, last error';

REVOKE ALL ON duet.alertmanager_deliveries, duet.alertmanager_status FROM PUBLIC;
GRANT SELECT ON duet.alertmanager_deliveries TO PUBLIC;
GRANT SELECT ON duet.alertmanager_status TO pg_monitor;
ALTER TABLE duet.alertmanager_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.alertmanager_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY alertmanager_deliveries_tenant ON duet.alertmanager_deliveries
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));

-- Called by duet_alert_observe when an alert's notification changes: wakes this database's
-- sender when the transaction commits (C: alertmanager.c). Carries nothing.
CREATE FUNCTION duet_alertmanager_wake() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_alertmanager_wake';
COMMENT ON FUNCTION duet_alertmanager_wake() IS
    'internal: wakes the Alertmanager sender of this database at commit (no payload)';
REVOKE ALL ON FUNCTION duet_alertmanager_wake() FROM PUBLIC;

-- What the tenant sees of its alerts: content, the labels Alertmanager gets, delivery state.
-- (Here, not in 40_rules.sql: it reads the columns added above.)
CREATE VIEW duet.alerts_active WITH (security_invoker = true) AS
SELECT a.id AS alert_id, a.tenant, r.name AS rule, r.severity, a.labels, a.state,
       a.pending_since, a.firing_since, a.recovering_since, a.last_eval_at, a.value, a.message, a.error,
       a.annotations,
       @extschema@.duet_alertmanager_labels(a.tenant, r.name, r.severity, a.labels) AS alertmanager_labels,
       a.notify_version,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('alertmanager', d.alertmanager,
                                                     'delivered', d.delivered_version >= a.notify_version,
                                                     'sent_at', d.sent_at, 'attempts', d.attempts,
                                                     'last_error', d.last_error)
                                  ORDER BY d.alertmanager), '[]')
          FROM duet.alertmanager_deliveries d WHERE d.alert_id = a.id) AS delivery
  FROM duet.alerts a JOIN duet.rules r ON r.id = a.rule_id
 WHERE a.state IN ('pending', 'firing', 'recovering', 'error', 'nodata');
COMMENT ON VIEW duet.alerts_active IS
    'alerts of the current tenant that are pending, firing, recovering, in error or without data';
GRANT SELECT ON duet.alerts_active TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('duet.alertmanager_deliveries', '');

------------------------------------------------------------------------------------------------
-- The sender's queries (C: alertmanager.c), run as the extension owner.
------------------------------------------------------------------------------------------------

-- Alerts an Alertmanager must be sent now, as Alertmanager's v2 API takes them. Firing: when this
-- Alertmanager has not accepted the current notify_version, or not within p_resend (endsAt is
-- 4 x p_resend ahead, as Prometheus does). Resolved: until accepted where an earlier state was,
-- and every p_resend for 15 minutes (Prometheus' resolved retention), endsAt = resolved_at.
CREATE FUNCTION duet.duet_alertmanager_due(p_alertmanager text, p_resend interval, p_limit integer,
                                           p_generator_url text)
    RETURNS TABLE (alert_id bigint, notify_version bigint, tenant text, labels text,
                   annotations text, starts_at text, ends_at text, generator_url text)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT a.id, a.notify_version, a.tenant,
           @extschema@.duet_alertmanager_labels(a.tenant, r.name, r.severity, a.labels)::text,
           (CASE WHEN a.message IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('summary', a.message) END
            || coalesce(a.annotations, '{}')
            || CASE WHEN a.firing_since IS NULL AND a.resolve_message IS NOT NULL
                    THEN jsonb_build_object('summary', a.resolve_message) ELSE '{}'::jsonb END)::text,
           to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           -- (an evaluation at a future time, duet_rules_evaluate(at), may start it after now)
           to_char(CASE WHEN a.firing_since IS NOT NULL THEN greatest(now(), a.started_at) + 4 * p_resend
                        ELSE greatest(a.resolved_at, a.started_at) END
                   AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           CASE WHEN coalesce(p_generator_url, '') = ''
                THEN format('postgresql:///%s?duet_tenant=%s&duet_rule=%s', current_database(), a.tenant, r.name)
                ELSE format('%s%stenant=%s&rule=%s', p_generator_url,
                            CASE WHEN strpos(p_generator_url, '?') > 0 THEN '&' ELSE '?' END, a.tenant, r.name) END
      FROM duet.alerts a
      JOIN duet.rules r ON r.id = a.rule_id
      LEFT JOIN duet.alertmanager_deliveries d ON d.alert_id = a.id AND d.alertmanager = p_alertmanager
     WHERE a.notify_version > 0 AND a.started_at IS NOT NULL
       AND ((a.firing_since IS NOT NULL
             AND (d.alert_id IS NULL OR d.delivered_version < a.notify_version OR d.sent_at IS NULL
                  OR d.sent_at <= now() - p_resend))
         OR (a.firing_since IS NULL AND a.resolved_at IS NOT NULL
             AND ((d.delivered_version > 0 AND d.delivered_version < a.notify_version)
               OR (a.resolved_at > now() - interval '15 minutes'
                   AND (d.alert_id IS NULL OR d.sent_at IS NULL OR d.sent_at <= now() - p_resend)))))
     ORDER BY a.id
     LIMIT p_limit;
END;
COMMENT ON FUNCTION duet.duet_alertmanager_due(text, interval, integer, text) IS
    'internal: the alerts the sender must send to one Alertmanager now, with labels, annotations, startsAt, endsAt and generatorURL';
REVOKE ALL ON FUNCTION duet.duet_alertmanager_due(text, interval, integer, text) FROM PUBLIC;

-- When the next resend to an Alertmanager is due (NULL: none is).
CREATE FUNCTION duet.duet_alertmanager_next_due(p_alertmanager text, p_resend interval) RETURNS timestamptz
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT min(d.sent_at) + p_resend
      FROM duet.alertmanager_deliveries d JOIN duet.alerts a ON a.id = d.alert_id
     WHERE d.alertmanager = p_alertmanager AND d.sent_at IS NOT NULL AND a.notify_version > 0
       AND (a.firing_since IS NOT NULL OR a.resolved_at > now() - interval '15 minutes');
END;
COMMENT ON FUNCTION duet.duet_alertmanager_next_due(text, interval) IS
    'internal: when the sender must next resend to one Alertmanager';
REVOKE ALL ON FUNCTION duet.duet_alertmanager_next_due(text, interval) FROM PUBLIC;

-- The outcome of one POST of a batch. p_error NULL: accepted, the versions sent are delivered.
-- Otherwise p_error (about the Alertmanager, no alert content) goes to each alert's delivery
-- row and p_detail (the answer, which may name other tenants' alerts) to the admin status only.
-- p_rejected: Alertmanager refused the batch as invalid (HTTP 4xx): it took the valid alerts, and
-- sending the others again cannot help, so the versions count as delivered, the error stays.
CREATE FUNCTION duet.duet_alertmanager_record(p_alertmanager text, p_ids bigint[], p_versions bigint[],
                                              p_error text, p_detail text, p_next_attempt timestamptz,
                                              p_rejected boolean)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO duet.alertmanager_deliveries AS d (alert_id, tenant, alertmanager, delivered_version,
                                                   sent_at, attempts, last_attempt_at, last_error)
    SELECT a.id, a.tenant, p_alertmanager, CASE WHEN p_error IS NULL OR p_rejected THEN s.version ELSE 0 END,
           CASE WHEN p_error IS NULL OR p_rejected THEN now() END, 1, now(), p_error
      FROM unnest(p_ids, p_versions) AS s(id, version) JOIN duet.alerts a ON a.id = s.id
    ON CONFLICT (alert_id, alertmanager) DO UPDATE
       SET delivered_version = CASE WHEN p_error IS NULL OR p_rejected THEN excluded.delivered_version
                                    ELSE d.delivered_version END,
           sent_at = CASE WHEN p_error IS NULL OR p_rejected THEN excluded.sent_at ELSE d.sent_at END,
           attempts = d.attempts + 1, last_attempt_at = now(), last_error = p_error;
    INSERT INTO duet.alertmanager_status AS s (alertmanager, configured, last_attempt_at, last_success_at,
                                               consecutive_failures, next_attempt_at, last_error, alerts_sent)
    VALUES (p_alertmanager, true, now(), CASE WHEN p_error IS NULL THEN now() END,
            CASE WHEN p_error IS NULL THEN 0 ELSE 1 END, p_next_attempt,
            CASE WHEN p_error IS NOT NULL THEN concat_ws(': ', p_error, p_detail) END,
            CASE WHEN p_error IS NULL THEN coalesce(cardinality(p_ids), 0) ELSE 0 END)
    ON CONFLICT (alertmanager) DO UPDATE
       SET configured = true, last_attempt_at = now(),
           last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
           consecutive_failures = CASE WHEN p_error IS NULL THEN 0 ELSE s.consecutive_failures + 1 END,
           next_attempt_at = p_next_attempt,
           last_error = CASE WHEN p_error IS NULL THEN s.last_error ELSE excluded.last_error END,
           alerts_sent = s.alerts_sent + excluded.alerts_sent;
END $$;
COMMENT ON FUNCTION duet.duet_alertmanager_record(text, bigint[], bigint[], text, text, timestamptz, boolean) IS
    'internal: records the outcome of one POST to an Alertmanager in the delivery rows and its status';
REVOKE ALL ON FUNCTION duet.duet_alertmanager_record(text, bigint[], bigint[], text, text, timestamptz, boolean) FROM PUBLIC;

-- The sender's list of Alertmanagers (after a reload): others are marked not configured.
CREATE FUNCTION duet.duet_alertmanager_configure(p_alertmanagers text[]) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO duet.alertmanager_status (alertmanager)
    SELECT u FROM unnest(p_alertmanagers) AS u
    ON CONFLICT (alertmanager) DO UPDATE SET configured = true;
    UPDATE duet.alertmanager_status SET configured = false, next_attempt_at = NULL
     WHERE configured AND NOT alertmanager = ANY (p_alertmanagers);
END;
COMMENT ON FUNCTION duet.duet_alertmanager_configure(text[]) IS
    'internal: marks the Alertmanagers of duet.alertmanager_urls configured in duet.alertmanager_status, and the others not';
REVOKE ALL ON FUNCTION duet.duet_alertmanager_configure(text[]) FROM PUBLIC;

-- pg_duet install script, part 70: duet_doctor() — what keeps pg_duet from working here, with
-- the fix for each. (C: pg_duet/doctor.c)

-- duet_workers_status() is in part 00: duet.kafka_status uses it too.
CREATE FUNCTION duet.duet_workers_warn(what text) RETURNS void
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'duet_workers_warn_sql';
COMMENT ON FUNCTION duet.duet_workers_warn(text) IS
    'internal: a WARNING (once per transaction) that what needs the background workers will not run here';
REVOKE ALL ON FUNCTION duet.duet_workers_warn(text) FROM PUBLIC;

CREATE FUNCTION duet_doctor_reachability()
    RETURNS TABLE (check_name text, status text, detail text, hint text)
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_doctor_reachability';
COMMENT ON FUNCTION duet_doctor_reachability() IS
    'the reachability checks of duet_doctor(): whether the enabled LLM providers'' endpoints (superusers only) and the brokers of the caller''s enabled Kafka consumers accept a TCP connection, within two seconds';

CREATE FUNCTION duet_doctor()
    RETURNS TABLE (check_name text, status text, detail text, hint text)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w        record;
    r        record;
    ndb      int;
    needed   int;
    max_w    int := current_setting('max_worker_processes')::int;
    n        bigint;
    oldest   interval;
BEGIN
    -- Runs as the caller: it reports what the caller may see (rules under row-level security,
    -- Kafka for duet_kafka_admin and pg_monitor).
    SELECT * INTO w FROM @extschema@.duet_workers_status();
    check_name := 'background workers';
    IF w.problem IS NULL THEN
        status := 'ok'; detail := 'pg_duet is preloaded and this database is in duet.databases'; hint := NULL;
    ELSE
        status := 'error'; detail := w.problem; hint := w.hint;
    END IF;
    RETURN NEXT;

    -- Two launchers, three workers per served database (four with an Alertmanager), and here the
    -- Kafka pool: one worker per consumer partition group, at most duet.kafka_pool_size.
    ndb := array_length(string_to_array(current_setting('duet.databases'), ','), 1);
    needed := 2 + 3 * coalesce(ndb, 0);
    IF coalesce((SELECT s.setting FROM pg_settings s WHERE s.name = 'duet.alertmanager_urls'), '') <> '' THEN
        needed := needed + coalesce(ndb, 0);
    END IF;
    IF has_table_privilege('duet.kafka_status', 'SELECT') THEN
        needed := needed + LEAST(coalesce(current_setting('duet.kafka_pool_size', true), '2')::int,
                                 coalesce((SELECT sum(s.parallelism) FROM duet.kafka_status s
                                            WHERE s.state <> 'stopped'), 0))::int;
    END IF;
    check_name := 'worker slots';
    IF needed > max_w THEN
        status := 'error';
        detail := format('pg_duet needs at least %s background workers; max_worker_processes is %s', needed, max_w);
        hint := format('Raise max_worker_processes to %s or more (it also bounds parallel query workers) and restart.',
                       needed + current_setting('max_parallel_workers')::int);
    ELSE
        status := 'ok';
        detail := format('pg_duet needs at least %s of max_worker_processes = %s', needed, max_w);
        hint := NULL;
    END IF;
    RETURN NEXT;

    check_name := 'kafka consumers';
    IF NOT has_table_privilege('duet.kafka_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading consumer state needs duet_kafka_admin or pg_monitor'; hint := NULL;
        RETURN NEXT;
    ELSE
        n := 0;
        FOR r IN SELECT s.name, s.state, s.last_error, s.reason FROM duet.kafka_status s
                  WHERE s.state NOT IN ('running', 'stopped', 'idle') ORDER BY s.name LOOP
            n := n + 1;
            status := CASE WHEN r.state = 'starting' THEN 'warning' ELSE 'error' END;
            detail := format('consumer %s is %s%s', r.name, r.state, coalesce(': ' || coalesce(r.reason, r.last_error), ''));
            hint := CASE WHEN r.state = 'not running' THEN w.hint
                         WHEN r.state = 'broker unreachable' THEN 'Check the brokers and the consumer''s security properties; it retries on its own.'
                         WHEN r.state = 'starting' THEN 'A consumer that stays starting means no worker slot was free: see "worker slots".'
                         ELSE 'See duet.kafka_dead_letters and the server log; duet_kafka_stop/start restarts it.' END;
            RETURN NEXT;
        END LOOP;
        IF n = 0 THEN
            status := 'ok'; detail := 'every enabled consumer is running'; hint := NULL;
            RETURN NEXT;
        END IF;
    END IF;

    check_name := 'rules';
    n := 0;
    FOR r IN SELECT ru.tenant, ru.name, a.error, count(*) AS instances
               FROM duet.alerts a JOIN duet.rules ru ON ru.id OPERATOR(pg_catalog.=) a.rule_id
              WHERE a.state = 'error' AND ru.enabled
              GROUP BY ru.tenant, ru.name, a.error ORDER BY ru.tenant, ru.name LOOP
        n := n + 1;
        status := 'warning';
        detail := format('rule %s of tenant %s fails: %s', r.name, r.tenant, r.error);
        hint := 'Fix the rule with duet_rule_alter (duet_rule_test tries it on a row); duet.alert_history keeps the errors.';
        RETURN NEXT;
    END LOOP;
    IF (SELECT count(*) FROM duet.rules ru WHERE ru.enabled AND ru.query IS NOT NULL) > 0 AND w.problem IS NOT NULL THEN
        n := n + 1;
        status := 'error'; detail := 'query rules are never evaluated: ' || w.problem; hint := w.hint;
        RETURN NEXT;
    END IF;
    IF n = 0 THEN
        status := 'ok'; detail := 'no enabled rule is failing'; hint := NULL;
        RETURN NEXT;
    END IF;

    check_name := 'outbox';
    IF NOT has_table_privilege('duet.kafka_outbox_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the outbox state needs duet_kafka_admin or pg_monitor'; hint := NULL;
    ELSE
        SELECT s.pending, now() - s.oldest_pending_at INTO n, oldest FROM duet.kafka_outbox_status s;
        IF n > 0 AND oldest > interval '1 minute' THEN
            status := 'error';
            detail := format('%s events wait to be published, the oldest for %s', n, date_trunc('second', oldest));
            hint := coalesce(w.hint, 'Check the brokers (duet.kafka_status) and the server log of the outbox worker.');
        ELSE
            status := 'ok'; detail := 'no event waits longer than a minute'; hint := NULL;
        END IF;
    END IF;
    RETURN NEXT;

    -- Alertmanager (sql/45_alertmanager.sql): what the sender saw of each configured one.
    check_name := 'alertmanager';
    IF NOT has_table_privilege('duet.alertmanager_status', 'SELECT') THEN
        status := 'skipped'; detail := 'reading the Alertmanager state needs a superuser or pg_monitor'; hint := NULL;
        RETURN NEXT;
    ELSIF coalesce((SELECT s.setting FROM pg_settings s WHERE s.name = 'duet.alertmanager_urls'), 'x') = '' THEN
        status := 'ok'; detail := 'no Alertmanager is configured (duet.alertmanager_urls is empty)'; hint := NULL;
        RETURN NEXT;
    ELSE
        n := 0;
        FOR r IN SELECT s.alertmanager, s.consecutive_failures, s.last_error FROM duet.alertmanager_status s
                  WHERE s.configured AND s.consecutive_failures > 0 ORDER BY s.alertmanager LOOP
            status := 'error';
            detail := format('Alertmanager %s is unreachable or refuses alerts (%s failed attempts in a row): %s',
                             r.alertmanager, r.consecutive_failures, r.last_error);
            hint := coalesce(w.hint, 'Check that Alertmanager runs at that URL of duet.alertmanager_urls and that this server may connect to it; pg_duet keeps the alerts and sends them again with backoff.');
            n := n + 1;
            RETURN NEXT;
        END LOOP;
        IF n = 0 THEN
            status := 'ok';
            detail := format('%s configured Alertmanagers accept alerts',
                             (SELECT count(*) FROM duet.alertmanager_status s WHERE s.configured));
            hint := w.hint;
            RETURN NEXT;
        END IF;
    END IF;

    -- Reachability of the LLM endpoints and Kafka brokers: one TCP connection each, all at once,
    -- at most two seconds in all (C: pg_duet/doctor.c).
    RETURN QUERY SELECT x.check_name, x.status, x.detail, x.hint FROM @extschema@.duet_doctor_reachability() x;
END $$;
COMMENT ON FUNCTION duet_doctor() IS
    'lists what keeps pg_duet from working in this database (preload, duet.databases, worker slots, consumers, failing rules, stuck outbox, unreachable Alertmanagers, LLM endpoints and Kafka brokers), each with its fix';

-- pg_duet install script, part 55: duet_ask's audit queue, per-tenant limits and ClickHouse targets.
-- (C: pg_duet/ask_audit.c, ask_budget.c, ask_clickhouse.c, ask_ch_guard.c; docs/ask.md)

------------------------------------------------------------------------------------------------
-- The audit queue: rows reach duet.ask_log through a background worker (survive rollback)
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet_ask_audit_flush(timeout_ms int DEFAULT 10000) RETURNS boolean
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_audit_flush';
COMMENT ON FUNCTION duet_ask_audit_flush(int) IS
    'waits until every ask audit row this session queued is committed to duet.ask_log (true), or timeout_ms passes (false)';

CREATE FUNCTION duet_ask_audit_status(OUT shared_memory boolean, OUT worker_pid int, OUT rows_queued bigint,
                                      OUT rows_written bigint, OUT rows_skipped bigint, OUT bytes_waiting bigint)
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_audit_status';
COMMENT ON FUNCTION duet_ask_audit_status() IS
    'the ask audit queue of this database: whether it exists, its worker, rows queued, written and skipped since start, bytes not yet written';

------------------------------------------------------------------------------------------------
-- Limits: prices, durable usage, config keys
------------------------------------------------------------------------------------------------

CREATE TABLE duet.llm_prices (
    provider        text NOT NULL REFERENCES duet.llm_providers ON UPDATE CASCADE ON DELETE CASCADE,
    model           text NOT NULL CHECK (model <> ''),
    input_per_mtok  numeric NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok numeric NOT NULL CHECK (output_per_mtok >= 0),
    currency        text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    PRIMARY KEY (provider, model)
);
COMMENT ON TABLE duet.llm_prices IS
    'price per million input and output tokens of a provider''s model (superuser only); the cost of asks and ask.limit.cost_per_month use it';
REVOKE ALL ON duet.llm_prices FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('duet.llm_prices', '');

CREATE TABLE duet.ask_usage (
    tenant     text,
    day        date NOT NULL,       -- UTC
    requests   bigint NOT NULL DEFAULT 0,
    tokens_in  bigint NOT NULL DEFAULT 0,
    tokens_out bigint NOT NULL DEFAULT 0,
    cost       numeric NOT NULL DEFAULT 0,
    CONSTRAINT ask_usage_tenant_day UNIQUE NULLS NOT DISTINCT (tenant, day)
);
COMMENT ON TABLE duet.ask_usage IS
    'language-model requests, tokens and cost per tenant and UTC day, written with each audit row; the limits restart from it';
ALTER TABLE duet.ask_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.ask_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY duet_tenant_isolation ON duet.ask_usage FOR SELECT
    USING (tenant = @extschema@.duet_current_tenant());
REVOKE ALL ON duet.ask_usage FROM PUBLIC;
GRANT SELECT ON duet.ask_usage TO PUBLIC;

CREATE VIEW duet.llm_usage WITH (security_invoker = true) AS
SELECT tenant, day, requests, tokens_in, tokens_out, tokens_in + tokens_out AS tokens, cost,
       sum(cost) OVER (PARTITION BY tenant, date_trunc('month', day) ORDER BY day) AS month_to_date_cost
  FROM duet.ask_usage;
COMMENT ON VIEW duet.llm_usage IS
    'language-model usage of the viewer''s tenant per UTC day: requests, tokens, cost and the month''s cost so far';
GRANT SELECT ON duet.llm_usage TO PUBLIC;

-- The limit keys: typed and validated by the Config Service (a tenant's value, else the default).
INSERT INTO duet.config_definitions (key, schema, description, updated_by) VALUES
    ('ask.limit.requests_per_minute', '{"type": "integer", "minimum": 0}',
     'language-model requests per UTC minute (each retry, fallback and correction counts); absent: unlimited', 'pg_duet'),
    ('ask.limit.tokens_per_day', '{"type": "integer", "minimum": 0}',
     'input + output tokens per UTC day; absent: unlimited', 'pg_duet'),
    ('ask.limit.cost_per_month', '{"type": "number", "minimum": 0}',
     'cost per UTC month at duet.llm_prices; absent: unlimited', 'pg_duet'),
    ('ask.clickhouse.access',
     '{"type": "object", "additionalProperties": {"type": "object", "required": ["databases"], "additionalProperties": false, "properties": {"databases": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,128}$"}}, "tables": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,128}\\.[A-Za-z0-9_]{1,128}$"}}}}}',
     'ClickHouse servers a tenant may ask about: {"server": {"databases": [...], "tables": ["db.table", ...]}}; tables, when given, narrows the databases', 'pg_duet');
-- The extension's own definitions come with CREATE EXTENSION: a dump must not restore them twice.
SELECT pg_catalog.pg_extension_config_dump('duet.config_definitions',
    'WHERE NOT (key OPERATOR(pg_catalog.~) ''^ask\.(limit|clickhouse)\.'')');

CREATE FUNCTION duet_ask_budget(OUT name text, OUT "limit" numeric, OUT used numeric, OUT in_flight int,
                                OUT resets_at timestamptz) RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_budget';
COMMENT ON FUNCTION duet_ask_budget() IS
    'the current tenant''s live language-model counters against its limits: used in the current window, requests in flight, when the window resets';

------------------------------------------------------------------------------------------------
-- ClickHouse targets: servers (superuser only), passwords (never shown, never dumped)
------------------------------------------------------------------------------------------------

CREATE TABLE duet.clickhouse_servers (
    name             text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    url              text NOT NULL CHECK (url ~ '^https?://[^[:space:]/?#]+/?$'),
    database         text NOT NULL DEFAULT 'default' CHECK (database ~ '^[A-Za-z0-9_]{1,128}$'),
    user_name        text NOT NULL DEFAULT 'default' CHECK (user_name ~ '^[A-Za-z0-9_.@-]{1,128}$'),
    timeout_ms       int NOT NULL DEFAULT 10000 CHECK (timeout_ms BETWEEN 100 AND 600000),
    max_memory_usage bigint NOT NULL DEFAULT 1000000000 CHECK (max_memory_usage > 0),
    max_rows_to_read bigint NOT NULL DEFAULT 100000000 CHECK (max_rows_to_read > 0),
    enabled          boolean NOT NULL DEFAULT true,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE duet.clickhouse_servers IS
    'ClickHouse servers duet_ask may target over HTTP (superuser only); tenants are given access with the config key ask.clickhouse.access';
REVOKE ALL ON duet.clickhouse_servers FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('duet.clickhouse_servers', '');

CREATE TABLE duet.clickhouse_server_passwords (
    server   text PRIMARY KEY REFERENCES duet.clickhouse_servers ON UPDATE CASCADE ON DELETE CASCADE,
    password text NOT NULL
);
COMMENT ON TABLE duet.clickhouse_server_passwords IS
    'passwords of ClickHouse servers (superuser only, not dumped: back them up separately)';
REVOKE ALL ON duet.clickhouse_server_passwords FROM PUBLIC;

CREATE FUNCTION duet_clickhouse_servers_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Even if a superuser grants these tables: a new URL could send the password elsewhere.
    IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'only superusers may manage ClickHouse servers and their passwords';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF TG_TABLE_NAME = 'clickhouse_servers' THEN
        NEW.updated_at := now();
        NEW.updated_by := current_user;
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION duet_clickhouse_servers_guard() IS
    'trigger: only superusers change ClickHouse servers or their passwords';
CREATE TRIGGER duet_clickhouse_servers_guard BEFORE INSERT OR UPDATE OR DELETE ON duet.clickhouse_servers
    FOR EACH ROW EXECUTE FUNCTION duet_clickhouse_servers_guard();
CREATE TRIGGER duet_clickhouse_servers_guard BEFORE INSERT OR UPDATE OR DELETE ON duet.clickhouse_server_passwords
    FOR EACH ROW EXECUTE FUNCTION duet_clickhouse_servers_guard();

CREATE FUNCTION duet_ask_clickhouse_guard(target text, sql text) RETURNS text
    LANGUAGE c STRICT VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_clickhouse_guard';
COMMENT ON FUNCTION duet_ask_clickhouse_guard(text, text) IS
    'NULL when the ClickHouse guard accepts this SQL on the target for the current tenant, else the reason (asks the server to analyze it, never runs it)';

CREATE FUNCTION duet_ask_clickhouse_schema(target text, OUT fingerprint text, OUT tables int,
                                           OUT cached boolean, OUT schema text)
    LANGUAGE c STRICT VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_clickhouse_schema';
COMMENT ON FUNCTION duet_ask_clickhouse_schema(text) IS
    'the ClickHouse schema the current tenant may see on the target, as sent to the model; cached says whether it came from this session''s cache';

-- With a target (options of duet_ask): overloads, so the 0.1.0 signatures and their grants stay.
CREATE FUNCTION duet_ask_run(question text, max_rows int, options jsonb) RETURNS SETOF jsonb
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_run';
COMMENT ON FUNCTION duet_ask_run(text, int, jsonb) IS
    'answers a question with duet_ask options (cache, max_corrections, target): runs the SQL read-only as the caller or on the ClickHouse target (row cap, duet.ask_run_timeout)';
CREATE FUNCTION duet_ask_feedback(question text, sql text, target text) RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_feedback';
COMMENT ON FUNCTION duet_ask_feedback(text, text, text) IS
    'records a verified question → SQL pair as an example for the current tenant and a target (NULL: PostgreSQL; else a ClickHouse server, whose guard the SQL must pass)';
REVOKE ALL ON FUNCTION duet_ask_run(text, int, jsonb), duet_ask_feedback(text, text, text) FROM PUBLIC;

-- They reach a server: granted with duet_ask, not public.
REVOKE ALL ON FUNCTION duet_ask_clickhouse_guard(text, text), duet_ask_clickhouse_schema(text) FROM PUBLIC;

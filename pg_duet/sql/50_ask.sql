-- pg_duet install script, part 50: duet_ask — LLM text-to-SQL with a strict guard.
-- (C: pg_duet/ask*.c; README "duet_ask: text-to-SQL")

------------------------------------------------------------------------------------------------
-- Providers and keys: superuser-only (no grants). duet_ask reads them in C as superuser.
------------------------------------------------------------------------------------------------

CREATE TABLE duet.llm_providers (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    kind        text NOT NULL CHECK (kind IN ('openai', 'anthropic')),
    base_url    text NOT NULL CHECK (base_url ~ '^https?://[^[:space:]]+$'),
    model       text NOT NULL CHECK (model <> ''),
    priority    int  NOT NULL DEFAULT 100,
    timeout_ms  int  NOT NULL DEFAULT 30000 CHECK (timeout_ms BETWEEN 100 AND 600000),
    max_retries int  NOT NULL DEFAULT 2 CHECK (max_retries BETWEEN 0 AND 10),
    max_tokens  int  NOT NULL DEFAULT 1024 CHECK (max_tokens BETWEEN 16 AND 100000),
    headers     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
    api_key_env text CHECK (api_key_env ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'),
    enabled     boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE duet.llm_providers IS
    'language-model endpoints duet_ask tries in priority order (superuser only); kind openai appends /chat/completions to base_url, anthropic appends /messages';

CREATE TABLE duet.llm_provider_keys (
    provider text PRIMARY KEY REFERENCES duet.llm_providers ON UPDATE CASCADE ON DELETE CASCADE,
    api_key  text NOT NULL CHECK (api_key <> '')
);
COMMENT ON TABLE duet.llm_provider_keys IS
    'API keys of providers (superuser only; or name an environment variable of the server in llm_providers.api_key_env)';

REVOKE ALL ON duet.llm_providers, duet.llm_provider_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('duet.llm_providers', '');
-- Keys are not dumped: pg_dump of the database must not write secrets (back them up with COPY).

-- Even if a superuser grants these tables to someone, only a superuser may attach a key or
-- change a keyed provider (a new base_url would send the key to an endpoint of their choosing).
-- The trigger runs as the role making the change, so it can tell who that is; whether a key
-- exists is asked of a C helper that answers only roles allowed to change providers.
CREATE FUNCTION duet_ask_provider_has_key(provider text) RETURNS boolean
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'duet_ask_provider_has_key';
COMMENT ON FUNCTION duet_ask_provider_has_key(text) IS
    'whether a provider has a stored key (for the provider guard trigger; only roles that may change duet.llm_providers may ask)';

CREATE FUNCTION duet_ask_providers_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    is_super boolean := (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user);
    keyed    boolean := false;
BEGIN
    IF NOT is_super THEN
        IF TG_TABLE_NAME = 'llm_provider_keys' THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = 'only superusers may manage provider keys';
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            keyed := OLD.api_key_env IS NOT NULL OR OLD.headers <> '{}'
                     OR @extschema@.duet_ask_provider_has_key(OLD.name);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            keyed := keyed OR NEW.api_key_env IS NOT NULL OR NEW.headers <> '{}';
        END IF;
        IF keyed THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = 'only superusers may change a provider that has a key',
                DETAIL = 'A provider with a key, a key variable or extra headers could be redirected to leak them.';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF TG_TABLE_NAME = 'llm_providers' THEN
        NEW.updated_at := now();
        NEW.updated_by := current_user;
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION duet_ask_providers_guard() IS
    'trigger: only superusers attach keys to providers or change a keyed provider';
CREATE TRIGGER duet_ask_providers_guard BEFORE INSERT OR UPDATE OR DELETE ON duet.llm_providers
    FOR EACH ROW EXECUTE FUNCTION duet_ask_providers_guard();
CREATE TRIGGER duet_ask_providers_guard BEFORE INSERT OR UPDATE OR DELETE ON duet.llm_provider_keys
    FOR EACH ROW EXECUTE FUNCTION duet_ask_providers_guard();

------------------------------------------------------------------------------------------------
-- Few-shot examples, the cache and the log: tenant-scoped
------------------------------------------------------------------------------------------------

CREATE TABLE duet.ask_examples (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant     text DEFAULT @extschema@.duet_current_tenant(),
    question   text NOT NULL,
    sql        text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by name NOT NULL DEFAULT session_user,
    target     text                 -- NULL: PostgreSQL; else a ClickHouse server (duet.clickhouse_servers)
);
CREATE INDEX ON duet.ask_examples (tenant, created_at DESC);
COMMENT ON TABLE duet.ask_examples IS
    'verified question → SQL pairs shown to the model as examples, per tenant; add with duet_ask_feedback()';
ALTER TABLE duet.ask_examples ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.ask_examples FORCE ROW LEVEL SECURITY;
CREATE POLICY duet_tenant_isolation ON duet.ask_examples FOR SELECT
    USING (tenant IS NOT DISTINCT FROM @extschema@.duet_current_tenant());
-- Examples without a tenant are the owner's (duet_ask_feedback makes them for superusers only).
CREATE POLICY duet_tenant_delete ON duet.ask_examples FOR DELETE
    USING (tenant IS NOT NULL AND tenant = @extschema@.duet_current_tenant());
REVOKE ALL ON duet.ask_examples FROM PUBLIC;
GRANT SELECT, DELETE ON duet.ask_examples TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('duet.ask_examples', '');

CREATE TABLE duet.ask_cache (
    cache_key   text PRIMARY KEY,   -- md5 of (tenant, question, schema fingerprint, model)
    tenant      text,
    question    text NOT NULL,
    fingerprint text NOT NULL,
    model       text NOT NULL,
    sql         text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE duet.ask_cache IS
    'accepted answers of duet_ask by tenant, question, schema fingerprint and model (private; expires after duet.ask_cache_ttl)';
REVOKE ALL ON duet.ask_cache FROM PUBLIC;

CREATE TABLE duet.ask_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    tenant      text,
    role        name NOT NULL,
    question    text NOT NULL,
    sql         text,
    provider    text,
    model       text,
    attempts    int NOT NULL,       -- HTTP requests sent, retries and fallbacks included
    corrections int NOT NULL,       -- rejected answers sent back to the model
    tokens_in   int NOT NULL,
    tokens_out  int NOT NULL,
    latency_ms  double precision NOT NULL,
    status      text NOT NULL,
    error       text,
    target      text,               -- NULL: this database; else the ClickHouse server asked about
    cost        numeric NOT NULL DEFAULT 0,  -- from duet.llm_prices
    CONSTRAINT ask_log_status_check
        CHECK (status IN ('ok', 'cached', 'rejected', 'failed', 'over_budget', 'cancelled'))
);
CREATE INDEX ON duet.ask_log (at);
CREATE INDEX ON duet.ask_log (tenant, at);
COMMENT ON TABLE duet.ask_log IS
    'audit of every duet_ask call (answered, cached, rejected, failed, over budget, cancelled), written by the audit worker so it survives the caller''s rollback and session; rows older than duet.ask_log_retention_days are removed; each role sees its tenant''s rows (its own when no tenant)';
ALTER TABLE duet.ask_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.ask_log FORCE ROW LEVEL SECURITY;
CREATE POLICY duet_tenant_isolation ON duet.ask_log FOR SELECT
    USING (tenant IS NOT DISTINCT FROM @extschema@.duet_current_tenant()
           AND (tenant IS NOT NULL OR role = current_user));
REVOKE ALL ON duet.ask_log FROM PUBLIC;
GRANT SELECT ON duet.ask_log TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('duet.ask_log', '');

CREATE VIEW duet.ask_stats WITH (security_invoker = true) AS
SELECT tenant, model,
       array_agg(DISTINCT provider) FILTER (WHERE provider IS NOT NULL) AS providers,
       count(*)                                               AS asks,
       count(*) FILTER (WHERE status = 'ok')                  AS answered,
       count(*) FILTER (WHERE status = 'cached')              AS cache_hits,
       count(*) FILTER (WHERE status = 'rejected')            AS rejected,
       count(*) FILTER (WHERE status = 'failed')              AS failed,
       round(avg(latency_ms)::numeric, 1)                     AS avg_latency_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms))::numeric, 1) AS p95_latency_ms,
       sum(attempts)                                          AS http_requests,
       sum(corrections)                                       AS corrections,
       sum(tokens_in)                                         AS tokens_in,
       sum(tokens_out)                                        AS tokens_out,
       max(at)                                                AS last_ask
  FROM duet.ask_log
 GROUP BY tenant, model;
COMMENT ON VIEW duet.ask_stats IS
    'duet_ask dashboard: asks, cache hits, rejections, failures, latency, tokens per tenant and model (rows the viewer may see)';
GRANT SELECT ON duet.ask_stats TO PUBLIC;

------------------------------------------------------------------------------------------------
-- Functions
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet_ask_guard(sql text) RETURNS text
    LANGUAGE c STRICT VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_guard';
COMMENT ON FUNCTION duet_ask_guard(text) IS
    'NULL when the duet_ask guard would let this SQL run as the current role, else the reason it is refused (never executes it)';

CREATE FUNCTION duet_ask(question text, options jsonb DEFAULT '{}') RETURNS text
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask';
COMMENT ON FUNCTION duet_ask(text, jsonb) IS
    'SQL answering a question, written by a language model and accepted by the guard (not executed); options: cache, max_corrections, target (a ClickHouse server)';

CREATE FUNCTION duet_ask_run(question text, max_rows int DEFAULT NULL) RETURNS SETOF jsonb
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_run';
COMMENT ON FUNCTION duet_ask_run(text, int) IS
    'answers a question: duet_ask, then runs the SQL read-only as the caller (row cap max_rows or duet.ask_max_rows, timeout duet.ask_run_timeout)';

CREATE FUNCTION duet_ask_feedback(question text, sql text) RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_feedback';
COMMENT ON FUNCTION duet_ask_feedback(text, text) IS
    'records a verified question → SQL pair as an example for the current tenant (the SQL must pass the guard)';

CREATE FUNCTION duet_ask_prune() RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_ask_prune';
COMMENT ON FUNCTION duet_ask_prune() IS
    'deletes ask log rows past duet.ask_log_retention_days and expired cache entries now (admin)';

-- Asking costs money and reveals the schema to a provider: granted, not public.
REVOKE ALL ON FUNCTION duet_ask(text, jsonb), duet_ask_run(text, int), duet_ask_feedback(text, text),
    duet_ask_prune() FROM PUBLIC;

-- pg_dump: the identity sequences of the dumped tables, so a restored database continues their
-- numbering. duet.llm_provider_keys holds API keys and is not dumped (nor is the ask_cache).
SELECT pg_catalog.pg_extension_config_dump('duet.ask_examples_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.ask_log_id_seq', '');

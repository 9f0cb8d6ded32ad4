-- pg_duet 0.1.0 install script (frozen at release: never edit; changes go into update scripts).

\echo Use "CREATE EXTENSION pg_duet" to load this file. \quit

CREATE SCHEMA duet;
COMMENT ON SCHEMA duet IS 'pg_duet tables and views (functions are named duet_* in the extension schema)';
GRANT USAGE ON SCHEMA duet TO PUBLIC;

CREATE FUNCTION duet_version() RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_version';
COMMENT ON FUNCTION duet_version() IS 'version of the loaded pg_duet library';
-- pg_duet install script, part 10: the Duet formula engine in SQL (calc_*.c, DESIGN §4).

-- Planner support: rewrites duet_calc(f, row) to duet_calc_args(f, col, …) when that is equivalent.
CREATE FUNCTION duet_calc_support(internal) RETURNS internal
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_support';
COMMENT ON FUNCTION duet_calc_support(internal) IS
'planner support for duet_calc(formula, row): passes only the columns a constant formula reads';

CREATE FUNCTION duet_calc(formula text, vars jsonb) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_jsonb';
COMMENT ON FUNCTION duet_calc(text, jsonb) IS
'evaluates a Duet formula with variables from a jsonb object (numbers, strings, booleans, null); the result is a jsonb number, string, boolean or null';

CREATE FUNCTION duet_calc(formula text, "row" anyelement) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE SUPPORT duet_calc_support
    AS 'MODULE_PATHNAME', 'duet_calc_row';
COMMENT ON FUNCTION duet_calc(text, anyelement) IS
'evaluates a Duet formula with variables bound by name to the columns of a row (number, text and boolean columns); the result is a jsonb number, string, boolean or null';

CREATE FUNCTION duet_calc_number(formula text, vars jsonb) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_number_jsonb';
COMMENT ON FUNCTION duet_calc_number(text, jsonb) IS
'evaluates a numeric Duet formula with variables from a jsonb object; a null result is SQL NULL, a string or boolean result an error';

CREATE FUNCTION duet_calc_number(formula text, "row" anyelement) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE SUPPORT duet_calc_support
    AS 'MODULE_PATHNAME', 'duet_calc_number_row';
COMMENT ON FUNCTION duet_calc_number(text, anyelement) IS
'evaluates a numeric Duet formula with variables bound by name to the columns of a row; a null result is SQL NULL, a string or boolean result an error';

-- Positional variables: value i binds the formula's i-th variable in order of first appearance.
-- Not strict: a NULL value is a NULL variable.
CREATE FUNCTION duet_calc_args(formula text, VARIADIC "values" "any") RETURNS jsonb
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_args';
COMMENT ON FUNCTION duet_calc_args(text, "any") IS
'evaluates a Duet formula with its variables bound positionally, in order of first appearance (see duet_formula_check().variables); the result is a jsonb number, string, boolean or null';

CREATE FUNCTION duet_calc_number_args(formula text, VARIADIC "values" "any") RETURNS double precision
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_number_args';
COMMENT ON FUNCTION duet_calc_number_args(text, "any") IS
'evaluates a numeric Duet formula with its variables bound positionally, in order of first appearance; a null result is SQL NULL, a string or boolean result an error';

CREATE FUNCTION duet_formula_check(formula text,
        OUT valid boolean, OUT error_class text, OUT message text, OUT line integer, OUT col integer,
        OUT expected text, OUT excerpt text, OUT variables text[], OUT result_type text)
    RETURNS record
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_formula_check';
COMMENT ON FUNCTION duet_formula_check(text) IS
'checks a Duet formula without raising: validity, error class, message, 1-based line and column, expected token and caret excerpt, or the variables it reads and its result type';

CREATE FUNCTION duet_calc_cache_stats(
        OUT entries integer, OUT lookups bigint, OUT compiles bigint, OUT evictions bigint)
    RETURNS record
    LANGUAGE c VOLATILE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'duet_calc_cache_stats';
COMMENT ON FUNCTION duet_calc_cache_stats() IS
'this backend''s cache of compiled formulas: programs cached, lookups, compiles (misses) and evictions since the backend started';
-- pg_duet install script, part 20: tenants, the tenant context, and the Config Service.
-- (C: pg_duet/tenant.c, pg_duet/change_epoch.c, pg_duet/config*.c)

------------------------------------------------------------------------------------------------
-- Tenants and membership
------------------------------------------------------------------------------------------------

CREATE TABLE duet.tenants (
    name         text PRIMARY KEY
                 CONSTRAINT tenant_name_syntax CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    display_name text,
    enabled      boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE duet.tenants IS 'tenants of pg_duet; manage with duet_tenant_create/disable/enable (admin)';

-- regrole: stored as the role's OID (survives ALTER ROLE RENAME), dumped by name.
CREATE TABLE duet.tenant_members (
    tenant   text NOT NULL REFERENCES duet.tenants ON UPDATE CASCADE ON DELETE CASCADE,
    member   regrole NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    added_by name NOT NULL DEFAULT session_user,
    PRIMARY KEY (tenant, member)
);
COMMENT ON TABLE duet.tenant_members IS
    'roles that may act for a tenant (and roles having their privileges); manage with duet_tenant_add_member/remove_member';

-- Only the extension owner reads or writes these; everyone else goes through the functions.
REVOKE ALL ON duet.tenants, duet.tenant_members FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('duet.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('duet.tenant_members', '');

CREATE FUNCTION duet_changed_trigger() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_changed_trigger';
COMMENT ON FUNCTION duet_changed_trigger() IS
    'statement trigger on tenant and config tables: invalidates every backend''s caches at commit';
REVOKE ALL ON FUNCTION duet_changed_trigger() FROM PUBLIC;

CREATE TRIGGER duet_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duet.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION duet_changed_trigger();
CREATE TRIGGER duet_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duet.tenant_members
    FOR EACH STATEMENT EXECUTE FUNCTION duet_changed_trigger();

------------------------------------------------------------------------------------------------
-- The tenant context
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet_current_tenant() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_current_tenant';
COMMENT ON FUNCTION duet_current_tenant() IS
    'tenant the current role acts for (set by duet_set_tenant, or the role''s only tenant); NULL when none';

CREATE FUNCTION duet_set_tenant(tenant text, local boolean DEFAULT false) RETURNS text
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'duet_set_tenant';
COMMENT ON FUNCTION duet_set_tenant(text, boolean) IS
    'act for a tenant the current role is a member of (superusers: any), for the session or with local => true the transaction; NULL returns to the default';

CREATE FUNCTION duet_my_tenants() RETURNS text[]
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'duet_my_tenants';
COMMENT ON FUNCTION duet_my_tenants() IS 'enabled tenants the current role may act for';

------------------------------------------------------------------------------------------------
-- Tenant administration (REVOKEd from PUBLIC; GRANT EXECUTE to tenant administrators)
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet_tenant_create(tenant text, display_name text DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'tenant name must not be NULL';
    END IF;
    IF tenant !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid tenant name "%s"', tenant),
            DETAIL = 'A tenant name has 1 to 63 lower-case letters, digits, "_", "-" and ".", starting with a letter or a digit.';
    END IF;
    INSERT INTO duet.tenants (name, display_name, created_by) VALUES (tenant, display_name, session_user);
    RETURN tenant;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION USING ERRCODE = 'duplicate_object', MESSAGE = format('tenant "%s" already exists', tenant);
END $$;
COMMENT ON FUNCTION duet_tenant_create(text, text) IS 'creates a tenant (admin)';

CREATE FUNCTION duet_tenant_set_enabled(tenant text, enabled boolean) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE duet.tenants t SET enabled = duet_tenant_set_enabled.enabled WHERE t.name = tenant;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object', MESSAGE = format('tenant "%s" does not exist', tenant);
    END IF;
END $$;
COMMENT ON FUNCTION duet_tenant_set_enabled(text, boolean) IS
    'disables a tenant (nobody but superusers acts for it; its data stays) or enables it again (admin)';

CREATE FUNCTION duet_tenant_disable(tenant text) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    BEGIN ATOMIC SELECT @extschema@.duet_tenant_set_enabled(tenant, false); END;
COMMENT ON FUNCTION duet_tenant_disable(text) IS 'disables a tenant: its members can no longer act for it (admin)';

CREATE FUNCTION duet_tenant_enable(tenant text) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    BEGIN ATOMIC SELECT @extschema@.duet_tenant_set_enabled(tenant, true); END;
COMMENT ON FUNCTION duet_tenant_enable(text) IS 'enables a disabled tenant again (admin)';

CREATE FUNCTION duet_tenant_add_member(tenant text, member regrole) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM duet.tenants t WHERE t.name = tenant) THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object', MESSAGE = format('tenant "%s" does not exist', tenant);
    END IF;
    IF member IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'member role must not be NULL';
    END IF;
    INSERT INTO duet.tenant_members AS m (tenant, member, added_by) VALUES (tenant, member, session_user)
        ON CONFLICT ON CONSTRAINT tenant_members_pkey DO NOTHING;
END $$;
COMMENT ON FUNCTION duet_tenant_add_member(text, regrole) IS
    'lets a role (and the roles having its privileges) act for a tenant (admin)';

CREATE FUNCTION duet_tenant_remove_member(tenant text, member regrole) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM duet.tenant_members m WHERE m.tenant = duet_tenant_remove_member.tenant
                                        AND m.member = duet_tenant_remove_member.member;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('role "%s" is not a member of tenant "%s"', member, tenant);
    END IF;
END $$;
COMMENT ON FUNCTION duet_tenant_remove_member(text, regrole) IS 'removes a role from a tenant (admin)';

CREATE FUNCTION duet_tenant_list()
    RETURNS TABLE (tenant text, display_name text, enabled boolean, created_at timestamptz,
                   created_by name, members regrole[])
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT t.name, t.display_name, t.enabled, t.created_at, t.created_by,
           coalesce((SELECT array_agg(m.member ORDER BY m.member::text)
                       FROM duet.tenant_members m WHERE m.tenant = t.name), '{}')
      FROM duet.tenants t ORDER BY t.name;
END;
COMMENT ON FUNCTION duet_tenant_list() IS 'every tenant with its members (admin; members see duet_my_tenants())';

REVOKE ALL ON FUNCTION duet_tenant_create(text, text), duet_tenant_set_enabled(text, boolean),
    duet_tenant_disable(text), duet_tenant_enable(text), duet_tenant_add_member(text, regrole),
    duet_tenant_remove_member(text, regrole), duet_tenant_list() FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- Row-level security on the tenant context
------------------------------------------------------------------------------------------------

-- A restrictive policy, so that other (permissive) policies on the table can narrow access
-- further but never widen it past the tenant; the permissive one lets the restrictive one act.
CREATE FUNCTION duet_tenant_protect(tbl regclass, tenant_column name DEFAULT 'tenant') RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col_type    regtype;
    col_has_def boolean;
    kind        "char";
BEGIN
    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = tbl;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
            MESSAGE = format('"%s" is not a table', tbl),
            DETAIL = 'Row-level security applies to tables and partitioned tables.';
    END IF;
    SELECT a.atttypid::regtype, a.atthasdef INTO col_type, col_has_def
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = tenant_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_column',
            MESSAGE = format('column "%s" of relation %s does not exist', tenant_column, tbl),
            HINT = 'Pass the column holding the tenant name as the second argument.';
    END IF;
    IF col_type NOT IN ('text'::regtype, 'character varying'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = format('tenant column "%s" of relation %s has type %s', tenant_column, tbl, col_type),
            DETAIL = 'The tenant column must be text or varchar.';
    END IF;
    -- ALTER TABLE checks that the caller owns the table.
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    IF EXISTS (SELECT FROM pg_policy WHERE polrelid = tbl AND polname = 'duet_tenant_isolation') THEN
        EXECUTE format('DROP POLICY duet_tenant_isolation ON %s', tbl);
    END IF;
    IF EXISTS (SELECT FROM pg_policy WHERE polrelid = tbl AND polname = 'duet_tenant_access') THEN
        EXECUTE format('DROP POLICY duet_tenant_access ON %s', tbl);
    END IF;
    EXECUTE format('CREATE POLICY duet_tenant_isolation ON %s AS RESTRICTIVE '
                   'USING (%I = @extschema@.duet_current_tenant()) '
                   'WITH CHECK (%I = @extschema@.duet_current_tenant())', tbl, tenant_column, tenant_column);
    EXECUTE format('CREATE POLICY duet_tenant_access ON %s USING (true) WITH CHECK (true)', tbl);
    IF NOT col_has_def THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT @extschema@.duet_current_tenant()',
                       tbl, tenant_column);
    END IF;
END $$;
COMMENT ON FUNCTION duet_tenant_protect(regclass, name) IS
    'forces row-level security on a table so that every role, its owner included, sees and writes only rows of duet_current_tenant() (superusers and BYPASSRLS roles excepted)';

------------------------------------------------------------------------------------------------
-- Config: definitions, values, history
------------------------------------------------------------------------------------------------

CREATE TABLE duet.config_definitions (
    key         text PRIMARY KEY CONSTRAINT config_key_syntax CHECK (key ~ '^[a-z][a-z0-9_.-]{0,127}$'),
    schema      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(schema) = 'object'),
    description text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  name NOT NULL
);
COMMENT ON TABLE duet.config_definitions IS
    'optional JSON-Schema-style definition per config key, checked on every write; set with duet_config_define (admin)';

-- tenant NULL: the global default; otherwise the tenant's override.
CREATE TABLE duet.config (
    key        text NOT NULL CONSTRAINT config_key_syntax CHECK (key ~ '^[a-z][a-z0-9_.-]{0,127}$'),
    tenant     text REFERENCES duet.tenants ON UPDATE CASCADE ON DELETE CASCADE,
    value      jsonb NOT NULL,
    version    bigint NOT NULL CHECK (version > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by name NOT NULL,
    CONSTRAINT config_key_tenant UNIQUE NULLS NOT DISTINCT (key, tenant)
);
COMMENT ON TABLE duet.config IS
    'config values: global defaults (tenant NULL) and tenant overrides, with version and who/when; written through duet_config_* functions';

-- Append-only: rows are only inserted (and pruned past duet.config_history_retention).
CREATE TABLE duet.config_history (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key            text NOT NULL,
    tenant         text REFERENCES duet.tenants ON UPDATE CASCADE ON DELETE CASCADE,
    version        bigint NOT NULL,
    operation      text NOT NULL CHECK (operation IN ('set', 'unset', 'rollback')),
    value          jsonb,            -- the value from this version on; NULL when unset
    previous_value jsonb,
    rolled_back_to bigint,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    changed_by     name NOT NULL,
    CONSTRAINT config_history_version UNIQUE NULLS NOT DISTINCT (key, tenant, version)
);
CREATE INDEX config_history_changed_at ON duet.config_history (changed_at);
COMMENT ON TABLE duet.config_history IS
    'audit of config changes: who changed which key of which tenant, when, from what to what (readable per tenant)';

SELECT pg_catalog.pg_extension_config_dump('duet.config_definitions', '');
SELECT pg_catalog.pg_extension_config_dump('duet.config', '');
SELECT pg_catalog.pg_extension_config_dump('duet.config_history', '');

CREATE TRIGGER duet_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duet.config
    FOR EACH STATEMENT EXECUTE FUNCTION duet_changed_trigger();

-- Everyone reads through row-level security: the defaults and their own tenant's rows. Nobody but
-- the owner writes; the duet_config_* functions write on the caller's behalf after checking it.
REVOKE ALL ON duet.config, duet.config_history, duet.config_definitions FROM PUBLIC;
GRANT SELECT ON duet.config, duet.config_history, duet.config_definitions TO PUBLIC;
ALTER TABLE duet.config ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.config FORCE ROW LEVEL SECURITY;
ALTER TABLE duet.config_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.config_history FORCE ROW LEVEL SECURITY;
CREATE POLICY config_tenant_read ON duet.config FOR SELECT
    USING (tenant IS NULL OR tenant = @extschema@.duet_current_tenant());
CREATE POLICY config_history_tenant_read ON duet.config_history FOR SELECT
    USING (tenant IS NULL OR tenant = @extschema@.duet_current_tenant());

------------------------------------------------------------------------------------------------
-- Definitions (C: config_schema.c)
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet_config_schema_check(schema jsonb) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_config_schema_check';
COMMENT ON FUNCTION duet_config_schema_check(jsonb) IS
    'true if schema is a valid config definition, else an error naming the problem';

CREATE FUNCTION duet_config_schema_validate(schema jsonb, value jsonb, key text DEFAULT NULL) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_config_schema_validate_value';
COMMENT ON FUNCTION duet_config_schema_validate(jsonb, jsonb, text) IS
    'true if value satisfies schema, else a check_violation naming the key, the keyword and the JSON path';

CREATE FUNCTION duet_config_validate(key text, value jsonb) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT coalesce((SELECT @extschema@.duet_config_schema_validate(d.schema, value, key)
                           FROM duet.config_definitions d WHERE d.key = duet_config_validate.key), true);
    END;
COMMENT ON FUNCTION duet_config_validate(text, jsonb) IS
    'true if value is valid for the config key (keys without a definition accept any value), else the error a write would raise';

------------------------------------------------------------------------------------------------
-- Internal write functions: run as the owner by config_write.c, never by PUBLIC
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet.duet_config_apply(op text, p_tenant text, p_key text, p_value jsonb,
                                       p_version bigint, p_actor text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur          duet.config;
    target       duet.config_history;
    def_schema   jsonb;
    last_version bigint;
    new_version  bigint;
    new_value    jsonb;
    retention    int;
    scope        text := CASE WHEN p_tenant IS NULL THEN 'the default' ELSE format('tenant "%s"', p_tenant) END;
BEGIN
    -- One writer per (tenant, key) at a time: no lost update, versions strictly increase.
    PERFORM pg_advisory_xact_lock(hashtext('duet.config/' || coalesce(p_tenant, '')), hashtext(p_key));

    SELECT * INTO cur FROM duet.config c
     WHERE c.key = p_key AND (c.tenant = p_tenant OR (p_tenant IS NULL AND c.tenant IS NULL))
       FOR UPDATE;
    SELECT max(h.version) INTO last_version FROM duet.config_history h
     WHERE h.key = p_key AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL));
    new_version := greatest(coalesce(cur.version, 0), coalesce(last_version, 0)) + 1;

    IF op = 'set' THEN
        new_value := p_value;
    ELSIF op = 'unset' THEN
        IF cur.key IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = format('config key "%s" is not set for %s', p_key, scope);
        END IF;
        new_value := NULL;
    ELSIF op = 'rollback' THEN
        SELECT * INTO target FROM duet.config_history h
         WHERE h.key = p_key AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL))
           AND h.version = p_version;
        IF target.id IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = format('version %s of config key "%s" does not exist for %s', p_version, p_key, scope),
                HINT = format('duet_config_history(%L) lists the versions still kept.', p_key);
        END IF;
        new_value := target.value;
    ELSE
        RAISE EXCEPTION 'unknown config operation "%"', op;
    END IF;

    IF new_value IS NOT NULL THEN
        IF octet_length(new_value::text) > 1048576 THEN
            RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
                MESSAGE = format('value for config key "%s" is too large', p_key),
                DETAIL = format('Its JSON text has %s bytes; the limit is 1 MiB.', octet_length(new_value::text));
        END IF;
        SELECT d.schema INTO def_schema FROM duet.config_definitions d WHERE d.key = p_key;
        IF def_schema IS NOT NULL THEN
            PERFORM @extschema@.duet_config_schema_validate(def_schema, new_value, p_key);
        END IF;
        INSERT INTO duet.config AS c (key, tenant, value, version, updated_at, updated_by)
             VALUES (p_key, p_tenant, new_value, new_version, now(), p_actor)
        ON CONFLICT ON CONSTRAINT config_key_tenant DO UPDATE
            SET value = excluded.value, version = excluded.version,
                updated_at = excluded.updated_at, updated_by = excluded.updated_by;
    ELSIF cur.key IS NOT NULL THEN
        DELETE FROM duet.config c
         WHERE c.key = p_key AND (c.tenant = p_tenant OR (p_tenant IS NULL AND c.tenant IS NULL));
    END IF;

    INSERT INTO duet.config_history (key, tenant, version, operation, value, previous_value,
                                     rolled_back_to, changed_at, changed_by)
         VALUES (p_key, p_tenant, new_version, CASE WHEN op = 'set' AND new_value IS NULL THEN 'unset' ELSE op END,
                 new_value, cur.value, CASE WHEN op = 'rollback' THEN p_version END, now(), p_actor);

    -- Delivered to listeners when (and only if) the transaction commits.
    PERFORM pg_notify('duet_config', json_build_object('tenant', p_tenant, 'key', p_key,
                                                       'version', new_version, 'operation', op)::text);

    -- Bounded retention, pruned where we write; the newest entry of the key always stays.
    SELECT s.setting::int INTO retention FROM pg_settings s WHERE s.name = 'duet.config_history_retention';
    IF retention > 0 THEN
        DELETE FROM duet.config_history h
         WHERE h.key = p_key AND (h.tenant = p_tenant OR (p_tenant IS NULL AND h.tenant IS NULL))
           AND h.changed_at < now() - make_interval(mins => retention) AND h.version < new_version;
    END IF;
    RETURN new_version;
END $$;
COMMENT ON FUNCTION duet.duet_config_apply(text, text, text, jsonb, bigint, text) IS
    'internal: applies a config change already authorized by the calling duet_config_* function';

CREATE FUNCTION duet.duet_config_define_apply(p_key text, p_schema jsonb, p_description text, p_actor text)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       record;
    msg     text;
    detail  text;
BEGIN
    IF p_schema IS NULL THEN
        DELETE FROM duet.config_definitions d WHERE d.key = p_key;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = format('config key "%s" has no definition', p_key);
        END IF;
        RETURN 0;
    END IF;
    PERFORM @extschema@.duet_config_schema_check(p_schema);
    -- Values already stored must satisfy the new definition, or the definition is refused.
    FOR r IN SELECT c.tenant, c.value FROM duet.config c WHERE c.key = p_key ORDER BY c.tenant NULLS FIRST LOOP
        BEGIN
            PERFORM @extschema@.duet_config_schema_validate(p_schema, r.value, p_key);
        EXCEPTION WHEN check_violation THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            RAISE EXCEPTION USING ERRCODE = 'check_violation',
                MESSAGE = format('the current value of config key "%s" for %s violates the new definition',
                                 p_key, CASE WHEN r.tenant IS NULL THEN 'the default' ELSE format('tenant "%s"', r.tenant) END),
                DETAIL = msg || ': ' || detail,
                HINT = 'Change the value first, or define a schema that admits it.';
        END;
    END LOOP;
    INSERT INTO duet.config_definitions AS d (key, schema, description, updated_at, updated_by)
         VALUES (p_key, p_schema, p_description, now(), p_actor)
    ON CONFLICT (key) DO UPDATE SET schema = excluded.schema, description = excluded.description,
                                    updated_at = excluded.updated_at, updated_by = excluded.updated_by;
    RETURN 0;
END $$;
COMMENT ON FUNCTION duet.duet_config_define_apply(text, jsonb, text, text) IS
    'internal: stores a config definition after checking it and the values it would govern';

REVOKE ALL ON FUNCTION duet.duet_config_apply(text, text, text, jsonb, bigint, text),
    duet.duet_config_define_apply(text, jsonb, text, text) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- Config API (C: config_cache.c for reads, config_write.c for writes)
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet_config_get(key text, fallback jsonb DEFAULT NULL) RETURNS jsonb
    LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'duet_config_get';
COMMENT ON FUNCTION duet_config_get(text, jsonb) IS
    'effective config value: the current tenant''s override, else the global default, else fallback (cached per backend, never stale)';
CREATE FUNCTION duet_config_get_text(key text, fallback text DEFAULT NULL) RETURNS text
    LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'duet_config_get_text';
COMMENT ON FUNCTION duet_config_get_text(text, text) IS 'effective config value as text; an error if it is not a JSON string';
CREATE FUNCTION duet_config_get_int(key text, fallback integer DEFAULT NULL) RETURNS integer
    LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'duet_config_get_int';
COMMENT ON FUNCTION duet_config_get_int(text, integer) IS 'effective config value as integer; an error if it is not an integral JSON number in range';
CREATE FUNCTION duet_config_get_numeric(key text, fallback numeric DEFAULT NULL) RETURNS numeric
    LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'duet_config_get_numeric';
COMMENT ON FUNCTION duet_config_get_numeric(text, numeric) IS 'effective config value as numeric; an error if it is not a JSON number';
CREATE FUNCTION duet_config_get_float8(key text, fallback double precision DEFAULT NULL) RETURNS double precision
    LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'duet_config_get_float8';
COMMENT ON FUNCTION duet_config_get_float8(text, double precision) IS 'effective config value as double precision; an error if it is not a JSON number';
CREATE FUNCTION duet_config_get_bool(key text, fallback boolean DEFAULT NULL) RETURNS boolean
    LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'duet_config_get_bool';
COMMENT ON FUNCTION duet_config_get_bool(text, boolean) IS 'effective config value as boolean; an error if it is not a JSON boolean';

CREATE FUNCTION duet_config_set(key text, value jsonb) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_config_set';
COMMENT ON FUNCTION duet_config_set(text, jsonb) IS
    'sets the current tenant''s value of a key (validated against its definition); returns the new version';
CREATE FUNCTION duet_config_unset(key text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_config_unset';
COMMENT ON FUNCTION duet_config_unset(text) IS
    'removes the current tenant''s override of a key, so the default applies again; returns the new version';
CREATE FUNCTION duet_config_rollback(key text, version bigint) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_config_rollback';
COMMENT ON FUNCTION duet_config_rollback(text, bigint) IS
    'restores the current tenant''s value of a key as of an earlier version (as a new version)';
CREATE FUNCTION duet_config_set_default(key text, value jsonb) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_config_set_default';
COMMENT ON FUNCTION duet_config_set_default(text, jsonb) IS 'sets the global default of a key (admin); returns the new version';
CREATE FUNCTION duet_config_unset_default(key text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_config_unset_default';
COMMENT ON FUNCTION duet_config_unset_default(text) IS 'removes the global default of a key (admin)';
CREATE FUNCTION duet_config_rollback_default(key text, version bigint) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_config_rollback_default';
COMMENT ON FUNCTION duet_config_rollback_default(text, bigint) IS 'restores the global default of a key as of an earlier version (admin)';
CREATE FUNCTION duet_config_define(key text, schema jsonb, description text DEFAULT NULL) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_config_define';
COMMENT ON FUNCTION duet_config_define(text, jsonb, text) IS
    'defines a key: a JSON-Schema-style schema (type, minimum/maximum, enum, pattern, required, ...) every value must satisfy (admin)';
CREATE FUNCTION duet_config_undefine(key text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_config_undefine';
COMMENT ON FUNCTION duet_config_undefine(text) IS 'drops the definition of a key (admin)';

REVOKE ALL ON FUNCTION duet_config_set_default(text, jsonb), duet_config_unset_default(text),
    duet_config_rollback_default(text, bigint), duet_config_define(text, jsonb, text),
    duet_config_undefine(text) FROM PUBLIC;

-- Reads below run as the caller: row-level security scopes them to its tenant and the defaults.
CREATE FUNCTION duet_config_effective()
    RETURNS TABLE (key text, value jsonb, source text, tenant text, version bigint,
                   updated_at timestamptz, updated_by name)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT DISTINCT ON (c.key) c.key, c.value, CASE WHEN c.tenant IS NULL THEN 'default' ELSE 'tenant' END,
           c.tenant, c.version, c.updated_at, c.updated_by
      FROM duet.config c
     WHERE c.tenant IS NULL OR c.tenant = @extschema@.duet_current_tenant()
     ORDER BY c.key, c.tenant NULLS LAST;
END;
COMMENT ON FUNCTION duet_config_effective() IS
    'every key with its effective value for the current tenant and where it comes from (tenant or default)';

CREATE VIEW duet.config_effective WITH (security_invoker = true) AS
    SELECT * FROM @extschema@.duet_config_effective();
COMMENT ON VIEW duet.config_effective IS 'effective config of the current tenant, for dashboards (tenant-scoped)';
GRANT SELECT ON duet.config_effective TO PUBLIC;

CREATE FUNCTION duet_config_history(key text)
    RETURNS TABLE (version bigint, tenant text, operation text, value jsonb, previous_value jsonb,
                   rolled_back_to bigint, changed_at timestamptz, changed_by name)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT h.version, h.tenant, h.operation, h.value, h.previous_value, h.rolled_back_to, h.changed_at, h.changed_by
      FROM duet.config_history h
     WHERE h.key = duet_config_history.key
       AND (h.tenant IS NULL OR h.tenant = @extschema@.duet_current_tenant())
     ORDER BY h.tenant NULLS FIRST, h.version;
END;
COMMENT ON FUNCTION duet_config_history(text) IS
    'changes of a key visible to the current tenant: its own and the default''s, oldest first';

CREATE FUNCTION duet_config_at(key text, at timestamptz) RETURNS jsonb
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT coalesce(
        (SELECT h.value FROM duet.config_history h
          WHERE h.key = duet_config_at.key AND h.tenant = @extschema@.duet_current_tenant()
            AND h.changed_at <= duet_config_at.at
          ORDER BY h.version DESC LIMIT 1),
        (SELECT h.value FROM duet.config_history h
          WHERE h.key = duet_config_at.key AND h.tenant IS NULL AND h.changed_at <= duet_config_at.at
          ORDER BY h.version DESC LIMIT 1));
END;
COMMENT ON FUNCTION duet_config_at(text, timestamptz) IS
    'effective value of a key for the current tenant at a past time (within the retained history)';

CREATE FUNCTION duet_config_history_prune() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    retention int;
    n bigint;
BEGIN
    SELECT s.setting::int INTO retention FROM pg_settings s WHERE s.name = 'duet.config_history_retention';
    IF retention = 0 THEN
        RETURN 0;
    END IF;
    DELETE FROM duet.config_history h
     WHERE h.changed_at < now() - make_interval(mins => retention)
       AND EXISTS (SELECT FROM duet.config_history newer
                    WHERE newer.key = h.key AND newer.tenant IS NOT DISTINCT FROM h.tenant
                      AND newer.version > h.version);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION duet_config_history_prune() IS
    'deletes config history older than duet.config_history_retention, keeping each key''s latest entry (admin); returns the count';
REVOKE ALL ON FUNCTION duet_config_history_prune() FROM PUBLIC;
-- pg_duet install script, part 30: Kafka ingestion by background workers, and the outbox.
-- Workers need shared_preload_libraries = 'pg_duet' and the database in duet.databases.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'duet_kafka_admin') THEN
        CREATE ROLE duet_kafka_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'duet_kafka_publisher') THEN
        CREATE ROLE duet_kafka_publisher NOLOGIN;
    END IF;
END
$$;
GRANT duet_kafka_publisher TO duet_kafka_admin;

-- Consumers. Holds librdkafka properties (SASL passwords, keys): superusers only; the
-- duet_kafka_* functions write it, duet.kafka_status shows it without the properties.
CREATE TABLE duet.kafka_consumers (
    id                serial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    topic             text NOT NULL,
    target            regclass NOT NULL,
    brokers           text NOT NULL,
    format            text NOT NULL CHECK (format IN ('json', 'jsonb', 'csv', 'text')),
    batch_size        integer NOT NULL,
    flush_interval_ms integer NOT NULL,
    start_position    text NOT NULL,
    parallelism       integer NOT NULL,
    column_map        jsonb,
    properties        jsonb,
    owner             regrole NOT NULL,
    enabled           boolean NOT NULL DEFAULT true,
    generation        integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON duet.kafka_consumers FROM PUBLIC;
COMMENT ON TABLE duet.kafka_consumers IS 'Kafka consumers run by pg_duet workers (superuser only: properties may hold secrets)';
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_consumers', '');
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_consumers_id_seq', '');

-- Next offset per partition, committed in the same transaction as the rows: exactly once.
CREATE TABLE duet.kafka_offsets (
    consumer_id integer NOT NULL REFERENCES duet.kafka_consumers (id) ON DELETE CASCADE,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    skip_before timestamptz,    -- after a reset to a timestamp: older messages are passed over
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_id, partition)
);
REVOKE ALL ON duet.kafka_offsets FROM PUBLIC;
COMMENT ON TABLE duet.kafka_offsets IS 'next Kafka offset per consumer and partition, committed with the ingested rows';
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_offsets', '');

-- Messages that could not be ingested, with their raw bytes and the error.
CREATE TABLE duet.kafka_dead_letters (
    id          bigserial PRIMARY KEY,
    consumer_id integer NOT NULL,
    consumer    text NOT NULL,
    owner       regrole NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    key         bytea,
    value       bytea NOT NULL,
    error       text NOT NULL,
    detail      text,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON duet.kafka_dead_letters (consumer_id, failed_at);
REVOKE ALL ON duet.kafka_dead_letters FROM PUBLIC;
GRANT SELECT, DELETE ON duet.kafka_dead_letters TO duet_kafka_admin;
ALTER TABLE duet.kafka_dead_letters ENABLE ROW LEVEL SECURITY;
-- Admins see the dead letters of consumers they own (the raw bytes are their data).
CREATE POLICY kafka_dead_letters_owner ON duet.kafka_dead_letters
    USING (pg_catalog.pg_has_role(current_user, owner, 'USAGE'));
COMMENT ON TABLE duet.kafka_dead_letters IS 'Kafka messages that failed to parse or violated a constraint: raw bytes, offset and error';
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_dead_letters_id_seq', '');

CREATE FUNCTION duet_kafka_consume(name text, topic text, target regclass, brokers text,
                                   format text DEFAULT 'json',
                                   batch_size integer DEFAULT 10000,
                                   flush_interval_ms integer DEFAULT 500,
                                   start_offset text DEFAULT 'earliest',
                                   parallelism integer DEFAULT 1,
                                   column_map jsonb DEFAULT NULL,
                                   properties jsonb DEFAULT NULL)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_consume';
COMMENT ON FUNCTION duet_kafka_consume(text, text, regclass, text, text, integer, integer, text, integer, jsonb, jsonb)
    IS 'create a Kafka consumer: a background worker ingests topic into target exactly once';

CREATE FUNCTION duet_kafka_stop(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_stop';
COMMENT ON FUNCTION duet_kafka_stop(text) IS 'stop a Kafka consumer (its offsets are kept)';
CREATE FUNCTION duet_kafka_start(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_start';
COMMENT ON FUNCTION duet_kafka_start(text) IS 'restart a stopped Kafka consumer from its committed offsets';
CREATE FUNCTION duet_kafka_drop(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_drop';
COMMENT ON FUNCTION duet_kafka_drop(text) IS 'drop a Kafka consumer and its offsets (dead letters are kept)';
CREATE FUNCTION duet_kafka_reset(name text, start_at text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_reset';
COMMENT ON FUNCTION duet_kafka_reset(text, text)
    IS 'move a Kafka consumer to ''earliest'', ''latest'' or a timestamp, forgetting its offsets';
CREATE FUNCTION duet_kafka_reset(name text, start_at timestamptz) RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC SELECT duet_kafka_reset(name, start_at::text); END;
COMMENT ON FUNCTION duet_kafka_reset(text, timestamptz)
    IS 'move a Kafka consumer to the first messages at or after a timestamp';

REVOKE ALL ON FUNCTION duet_kafka_consume(text, text, regclass, text, text, integer, integer, text, integer, jsonb, jsonb),
    duet_kafka_stop(text), duet_kafka_start(text), duet_kafka_drop(text),
    duet_kafka_reset(text, text), duet_kafka_reset(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION duet_kafka_consume(text, text, regclass, text, text, integer, integer, text, integer, jsonb, jsonb),
    duet_kafka_stop(text), duet_kafka_start(text), duet_kafka_drop(text),
    duet_kafka_reset(text, text), duet_kafka_reset(text, timestamptz) TO duet_kafka_admin;

CREATE FUNCTION duet_kafka_worker_stats(
        OUT consumer_id integer, OUT worker_group integer, OUT pid integer, OUT state text,
        OUT rows bigint, OUT bytes bigint, OUT batches bigint, OUT errors bigint, OUT rate double precision,
        OUT last_error text, OUT last_error_at timestamptz, OUT started_at timestamptz,
        OUT last_batch_at timestamptz, OUT partition integer, OUT high_watermark bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_kafka_worker_stats';
COMMENT ON FUNCTION duet_kafka_worker_stats()
    IS 'live counters of this database''s Kafka workers, one row per worker and partition (feeds duet.kafka_status)';
REVOKE ALL ON FUNCTION duet_kafka_worker_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION duet_kafka_worker_stats() TO duet_kafka_admin, pg_monitor;

CREATE VIEW duet.kafka_partition_status AS
SELECT c.name, o.partition, o.next_offset AS committed_offset, w.high_watermark,
       GREATEST(w.high_watermark - o.next_offset, 0) AS lag, o.updated_at AS committed_at
  FROM duet.kafka_consumers c
  JOIN duet.kafka_offsets o ON o.consumer_id = c.id
  LEFT JOIN (SELECT DISTINCT ON (consumer_id, partition) consumer_id, partition, high_watermark
               FROM duet_kafka_worker_stats() WHERE partition IS NOT NULL
              ORDER BY consumer_id, partition, started_at DESC) w
         ON w.consumer_id = c.id AND w.partition = o.partition;
COMMENT ON VIEW duet.kafka_partition_status
    IS 'per Kafka consumer and partition: committed offset, high watermark and lag';

CREATE VIEW duet.kafka_status AS
WITH w AS (
    SELECT consumer_id, count(*) AS workers, sum(rows) AS rows, sum(bytes) AS bytes,
           sum(batches) AS batches, sum(errors) AS errors, sum(rate) AS rate,
           CASE WHEN bool_or(state = 'error') THEN 'error'
                WHEN bool_or(state = 'broker unreachable') THEN 'broker unreachable'
                WHEN bool_or(state = 'running') THEN 'running'
                WHEN bool_or(state = 'starting') THEN 'starting'
                ELSE 'idle' END AS state,
           (array_agg(last_error ORDER BY last_error_at DESC NULLS LAST))[1] AS last_error,
           max(last_error_at) AS last_error_at
      FROM (SELECT DISTINCT ON (pid) * FROM duet_kafka_worker_stats()) s
     GROUP BY consumer_id),
p AS (
    SELECT c.id AS consumer_id, sum(ps.lag)::bigint AS lag,
           jsonb_agg(jsonb_build_object('partition', ps.partition, 'committed_offset', ps.committed_offset,
                                        'high_watermark', ps.high_watermark, 'lag', ps.lag)
                     ORDER BY ps.partition) AS partitions
      FROM duet.kafka_partition_status ps JOIN duet.kafka_consumers c USING (name)
     GROUP BY c.id)
SELECT c.name, c.topic, c.target, c.format, c.parallelism, c.owner,
       CASE WHEN NOT c.enabled THEN 'stopped' ELSE coalesce(w.state, 'starting') END AS state,
       coalesce(w.workers, 0) AS workers, coalesce(w.rows, 0) AS rows, coalesce(w.bytes, 0) AS bytes,
       coalesce(w.batches, 0) AS batches, coalesce(w.errors, 0) AS errors,
       (SELECT count(*) FROM duet.kafka_dead_letters d WHERE d.consumer_id = c.id) AS dead_letters,
       w.last_error, w.last_error_at, p.lag, coalesce(w.rate, 0) AS rate, p.partitions
  FROM duet.kafka_consumers c
  LEFT JOIN w ON w.consumer_id = c.id
  LEFT JOIN p ON p.consumer_id = c.id;
COMMENT ON VIEW duet.kafka_status IS
    'Kafka consumers: state, rows, bytes, batches, errors and last error since the workers started, dead letters, lag, rows/s and per-partition offsets';
GRANT SELECT ON duet.kafka_status, duet.kafka_partition_status TO duet_kafka_admin, pg_monitor;

-- The outbox: rows written in the caller's transaction, published by a worker once committed.
CREATE TABLE duet.kafka_outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        text,
    value      text NOT NULL,
    headers    jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    partition  integer,
    "offset"   bigint
);
CREATE INDEX kafka_outbox_pending ON duet.kafka_outbox (id) WHERE sent_at IS NULL;
REVOKE ALL ON duet.kafka_outbox FROM PUBLIC;
GRANT SELECT ON duet.kafka_outbox TO duet_kafka_admin;
COMMENT ON TABLE duet.kafka_outbox IS 'events to publish to Kafka; sent_at is set once the broker acknowledged them';
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_outbox', '');
SELECT pg_catalog.pg_extension_config_dump('duet.kafka_outbox_id_seq', '');

CREATE FUNCTION duet_kafka_publish(topic text, key text, value text, headers jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF topic IS NULL OR topic !~ '^[A-Za-z0-9._-]{1,249}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_name', MESSAGE = format('invalid Kafka topic name %L', topic),
            DETAIL = 'A topic has 1 to 249 letters, digits, ''_'', ''.'' or ''-''.';
    END IF;
    IF value IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'value must not be null';
    END IF;
    IF headers IS NOT NULL AND (jsonb_typeof(headers) <> 'object' OR EXISTS (
            SELECT FROM jsonb_each(headers) h WHERE jsonb_typeof(h.value) NOT IN ('string', 'null'))) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'headers must be a JSON object of strings',
            HINT = 'For example {"source": "rules"}.';
    END IF;
    INSERT INTO duet.kafka_outbox (topic, key, value, headers)
    VALUES (topic, key, value, headers) RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION duet_kafka_publish(text, text, text, jsonb)
    IS 'publish a message to Kafka if and only if the calling transaction commits (outbox)';
CREATE FUNCTION duet_kafka_publish(topic text, key text, value jsonb, headers jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE sql VOLATILE
    BEGIN ATOMIC SELECT duet_kafka_publish(topic, key, value::text, headers); END;
COMMENT ON FUNCTION duet_kafka_publish(text, text, jsonb, jsonb)
    IS 'publish a JSON message to Kafka if and only if the calling transaction commits (outbox)';
REVOKE ALL ON FUNCTION duet_kafka_publish(text, text, text, jsonb), duet_kafka_publish(text, text, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION duet_kafka_publish(text, text, text, jsonb), duet_kafka_publish(text, text, jsonb, jsonb)
    TO duet_kafka_publisher;
-- pg_duet install script, part 40: the rule engine (DESIGN.md §7).
-- (C: pg_duet/rules_api.c, rules_formula.c, rules_trigger.c, rules_query.c, rules_worker.c)
--
-- Tables are written only by the extension owner: the public duet_rule_* functions (C) check the
-- caller and its verified tenant, then run the internal duet.duet_rule_*_apply functions as the
-- owner. Everyone reads rules and alerts through row-level security on duet_current_tenant().

------------------------------------------------------------------------------------------------
-- Rules
------------------------------------------------------------------------------------------------

CREATE TABLE duet.rules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          text NOT NULL REFERENCES duet.tenants ON UPDATE CASCADE ON DELETE CASCADE,
    name            text NOT NULL CONSTRAINT rule_name_syntax CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    target          regclass,       -- row rules: the table whose inserts are evaluated
    query           text,           -- query rules: SQL returning label and metric columns
    condition       text NOT NULL,  -- Duet formula; true means the alert condition holds
    value           text,           -- optional Duet formula: the value reported with the alert
    severity        text NOT NULL DEFAULT 'warning'
                    CONSTRAINT rule_severity CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    labels          text[] NOT NULL DEFAULT '{}',  -- columns identifying an alert instance
    message         text,           -- template with {column} placeholders
    for_period      interval NOT NULL DEFAULT '0' CHECK (for_period >= '0'),
    keep_firing_for interval NOT NULL DEFAULT '0' CHECK (keep_firing_for >= '0'),
    topic           text,           -- outbox topic for Firing/Resolved events, e.g. rules.alerts
    enabled         boolean NOT NULL DEFAULT true,
    owner           regrole NOT NULL,  -- query rules run as this role
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rule_name_unique UNIQUE (tenant, name),
    CONSTRAINT rule_kind CHECK ((target IS NULL) <> (query IS NULL))
);
CREATE INDEX rules_target ON duet.rules (target) WHERE target IS NOT NULL;
COMMENT ON TABLE duet.rules IS
    'alert rules per tenant: row rules (target table, evaluated on insert) and query rules (evaluated by duet_rules_evaluate); manage with duet_rule_*';

CREATE TABLE duet.alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id          bigint NOT NULL REFERENCES duet.rules ON DELETE CASCADE,
    tenant           text NOT NULL,
    labels           jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'normal'
                     CONSTRAINT alert_state CHECK (state IN ('normal', 'pending', 'firing', 'recovering',
                                                             'resolved', 'error', 'nodata')),
    pending_since    timestamptz,
    firing_since     timestamptz,   -- set while the alert is active (firing or recovering)
    recovering_since timestamptz,
    last_eval_at     timestamptz,
    value            jsonb,
    message          text,
    error            text,
    CONSTRAINT alert_instance UNIQUE (rule_id, labels)
);
COMMENT ON TABLE duet.alerts IS 'alert instances, one per rule and label set, with their current state';

-- Append-only history of state transitions, with the value and message that caused them.
CREATE TABLE duet.alert_transitions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES duet.alerts ON DELETE CASCADE,
    rule_id    bigint NOT NULL,
    tenant     text NOT NULL,
    labels     jsonb NOT NULL,
    from_state text NOT NULL,
    to_state   text NOT NULL,
    at         timestamptz NOT NULL,
    value      jsonb,
    message    text,
    error      text
);
CREATE INDEX alert_transitions_alert ON duet.alert_transitions (alert_id, at);
COMMENT ON TABLE duet.alert_transitions IS 'history of alert state transitions (append-only)';

SELECT pg_catalog.pg_extension_config_dump('duet.rules', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alert_transitions', '');

REVOKE ALL ON duet.rules, duet.alerts, duet.alert_transitions FROM PUBLIC;
GRANT SELECT ON duet.rules, duet.alerts, duet.alert_transitions TO PUBLIC;
ALTER TABLE duet.rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.rules FORCE ROW LEVEL SECURITY;
ALTER TABLE duet.alerts ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.alerts FORCE ROW LEVEL SECURITY;
ALTER TABLE duet.alert_transitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.alert_transitions FORCE ROW LEVEL SECURITY;
-- The owner (who runs the internal functions, the trigger's bookkeeping and the scheduler) sees
-- every tenant; everyone else only the rows of duet_current_tenant().
CREATE POLICY rules_tenant ON duet.rules
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY alerts_tenant ON duet.alerts
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));
CREATE POLICY alert_transitions_tenant ON duet.alert_transitions
    USING (tenant = @extschema@.duet_current_tenant() OR pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'duet'), 'USAGE'));

CREATE VIEW duet.alerts_active WITH (security_invoker = true) AS
SELECT a.id AS alert_id, a.tenant, r.name AS rule, r.severity, a.labels, a.state,
       a.pending_since, a.firing_since, a.recovering_since, a.last_eval_at, a.value, a.message, a.error
  FROM duet.alerts a JOIN duet.rules r ON r.id = a.rule_id
 WHERE a.state IN ('pending', 'firing', 'recovering', 'error', 'nodata');
COMMENT ON VIEW duet.alerts_active IS
    'alerts of the current tenant that are pending, firing, recovering, in error or without data';
GRANT SELECT ON duet.alerts_active TO PUBLIC;

CREATE VIEW duet.alert_history WITH (security_invoker = true) AS
SELECT t.id, t.tenant, r.name AS rule, r.severity, t.labels, t.from_state, t.to_state, t.at,
       t.value, t.message, t.error
  FROM duet.alert_transitions t JOIN duet.rules r ON r.id = t.rule_id;
COMMENT ON VIEW duet.alert_history IS 'state transitions of the current tenant''s alerts, with value and message';
GRANT SELECT ON duet.alert_history TO PUBLIC;

------------------------------------------------------------------------------------------------
-- Validation (C): formulas compile, their variables and the labels are columns of the target
-- table or of the query's result, run as the rule's owner.
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet.duet_rule_validate(caller oid, condition text, value text, labels text[],
                                        message text, target regclass, query text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_rule_validate';
COMMENT ON FUNCTION duet.duet_rule_validate(oid, text, text, text[], text, regclass, text) IS
    'internal: checks a rule''s formulas, labels and template against its target or query, as the caller';
REVOKE ALL ON FUNCTION duet.duet_rule_validate(oid, text, text, text[], text, regclass, text) FROM PUBLIC;

CREATE FUNCTION duet_rules_row_trigger() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_rules_row_trigger';
COMMENT ON FUNCTION duet_rules_row_trigger() IS
    'statement trigger with a transition table: evaluates the row rules of the table on the inserted rows';
REVOKE ALL ON FUNCTION duet_rules_row_trigger() FROM PUBLIC;

-- A dropped table takes its row rules (and their alerts and history) with it.
CREATE FUNCTION duet_rules_on_drop() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM duet.rules r USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND r.target::oid = d.objid;
END $$;
COMMENT ON FUNCTION duet_rules_on_drop() IS
    'event trigger on sql_drop: removes the row rules of dropped tables';
REVOKE ALL ON FUNCTION duet_rules_on_drop() FROM PUBLIC;
CREATE EVENT TRIGGER duet_rules_on_drop ON sql_drop EXECUTE FUNCTION duet_rules_on_drop();

------------------------------------------------------------------------------------------------
-- Internal management functions: run as the owner by rules_api.c after it identified the caller
------------------------------------------------------------------------------------------------

-- The row-rule trigger exists on a table exactly while the table has row rules.
CREATE FUNCTION duet.duet_rule_sync_trigger(tbl regclass) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted boolean := EXISTS (SELECT FROM duet.rules WHERE target = tbl);
    has    boolean := EXISTS (SELECT FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'duet_rules');
BEGIN
    IF wanted AND NOT has THEN
        EXECUTE format('CREATE TRIGGER duet_rules AFTER INSERT ON %s REFERENCING NEW TABLE AS duet_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.duet_rules_row_trigger()', tbl);
    ELSIF has AND NOT wanted THEN
        EXECUTE format('DROP TRIGGER duet_rules ON %s', tbl);
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_rule_sync_trigger(regclass) IS
    'internal: creates or drops the duet_rules trigger of a table so that it exists while the table has row rules';
REVOKE ALL ON FUNCTION duet.duet_rule_sync_trigger(regclass) FROM PUBLIC;

CREATE FUNCTION duet.duet_rule_check_target(caller oid, tbl regclass, topic text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tbl IS NOT NULL THEN
        IF (SELECT relkind FROM pg_class WHERE oid = tbl) NOT IN ('r', 'p') THEN
            RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
                MESSAGE = format('"%s" is not a table', tbl),
                DETAIL = 'Row rules are evaluated by an insert trigger on a table or partitioned table.';
        END IF;
        IF NOT has_table_privilege(caller, tbl, 'SELECT') OR NOT has_table_privilege(caller, tbl, 'TRIGGER') THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = format('permission denied for table %s', tbl),
                DETAIL = 'A row rule needs the SELECT and TRIGGER privileges on its table.';
        END IF;
        -- The trigger sees every inserted row. On a table with row-level security it keeps a rule to
        -- its tenant's rows through a text column "tenant"; without one it could not, so refuse.
        IF (SELECT relrowsecurity FROM pg_class WHERE oid = tbl) AND NOT EXISTS (
               SELECT FROM pg_attribute
                WHERE attrelid = tbl AND attname = 'tenant' AND NOT attisdropped
                  AND atttypid IN ('text'::regtype, 'character varying'::regtype)) THEN
            RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                MESSAGE = format('row rules on %s need its tenant in a text column named "tenant"', tbl),
                DETAIL = 'The table has row-level security; a rule must see only its own tenant''s rows.',
                HINT = 'Use a query rule on this table instead: its query runs under row-level security.';
        END IF;
    END IF;
    IF topic IS NOT NULL THEN
        IF topic !~ '^[A-Za-z0-9._-]{1,249}$' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('invalid topic name "%s"', topic),
                DETAIL = 'A Kafka topic name has 1-249 characters among letters, digits, ".", "_" and "-".';
        END IF;
        IF to_regprocedure('@extschema@.duet_kafka_publish(text,text,jsonb,jsonb)') IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                MESSAGE = 'rule topics need the Kafka outbox',
                DETAIL = 'duet_kafka_publish() is not installed.';
        END IF;
        -- Publishing is a privilege: a rule publishes only where its author may publish.
        IF NOT has_function_privilege(caller, '@extschema@.duet_kafka_publish(text,text,jsonb,jsonb)', 'EXECUTE') THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = format('permission denied to publish rule events to topic "%s"', topic),
                DETAIL = 'A rule with a topic needs the EXECUTE privilege on duet_kafka_publish().',
                HINT = 'An administrator grants the role duet_kafka_publisher.';
        END IF;
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_rule_check_target(oid, regclass, text) IS
    'internal: checks the caller''s privileges on a row rule''s table and the rule''s topic';
REVOKE ALL ON FUNCTION duet.duet_rule_check_target(oid, regclass, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_rule_check_fields(p_name text, p_severity text, p_for interval,
                                            p_keep_firing_for interval) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_name',
            MESSAGE = format('invalid rule name "%s"', p_name),
            DETAIL = 'A rule name has 1-128 characters among letters, digits, "_", ".", ":" and "-", starting with a letter or digit.';
    END IF;
    IF p_severity IS NULL OR p_severity NOT IN ('info', 'warning', 'error', 'critical') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid severity "%s"', p_severity),
            HINT = 'Severity is one of info, warning, error, critical.';
    END IF;
    IF p_for < '0' OR p_keep_firing_for < '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'for_period and keep_firing_for must not be negative';
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_rule_check_fields(text, text, interval, interval) IS
    'internal: checks a rule''s name, severity and periods';
REVOKE ALL ON FUNCTION duet.duet_rule_check_fields(text, text, interval, interval) FROM PUBLIC;

CREATE FUNCTION duet.duet_rule_create_apply(p_tenant text, p_caller oid, p_name text, p_condition text,
        p_target regclass, p_query text, p_value text, p_severity text, p_labels text[], p_message text,
        p_for interval, p_keep_firing_for interval, p_topic text, p_enabled boolean) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF p_name IS NULL OR p_condition IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'rule name and condition must not be NULL';
    END IF;
    IF (p_target IS NULL) = (p_query IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rule "%s" needs exactly one of target and query', p_name),
            HINT = 'A row rule names its table (target => ...); a query rule gives a SQL query (query => ...).';
    END IF;
    IF EXISTS (SELECT FROM duet.rules WHERE tenant = p_tenant AND name = p_name) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('rule "%s" already exists', p_name),
            HINT = 'Change it with duet_rule_alter() or remove it with duet_rule_drop().';
    END IF;
    PERFORM duet.duet_rule_check_fields(p_name, coalesce(p_severity, 'warning'), coalesce(p_for, '0'),
                                        coalesce(p_keep_firing_for, '0'));
    PERFORM duet.duet_rule_check_target(p_caller, p_target, p_topic);
    PERFORM duet.duet_rule_validate(p_caller, p_condition, p_value, coalesce(p_labels, '{}'), p_message,
                                    p_target, p_query);
    INSERT INTO duet.rules (tenant, name, target, query, condition, value, severity, labels, message,
                            for_period, keep_firing_for, topic, enabled, owner)
    VALUES (p_tenant, p_name, p_target, p_query, p_condition, p_value, coalesce(p_severity, 'warning'),
            coalesce(p_labels, '{}'), p_message, coalesce(p_for, '0'), coalesce(p_keep_firing_for, '0'),
            p_topic, coalesce(p_enabled, true), p_caller)
    RETURNING id INTO new_id;
    IF p_target IS NOT NULL THEN
        PERFORM duet.duet_rule_sync_trigger(p_target);
    END IF;
    RETURN new_id;
END $$;
COMMENT ON FUNCTION duet.duet_rule_create_apply(text, oid, text, text, regclass, text, text, text, text[],
                                                text, interval, interval, text, boolean) IS
    'internal: creates a rule for a tenant on behalf of a caller already identified by duet_rule_create';
REVOKE ALL ON FUNCTION duet.duet_rule_create_apply(text, oid, text, text, regclass, text, text, text, text[],
                                                   text, interval, interval, text, boolean) FROM PUBLIC;

CREATE FUNCTION duet.duet_rule_lookup(p_tenant text, p_name text) RETURNS duet.rules
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r duet.rules;
BEGIN
    SELECT * INTO r FROM duet.rules WHERE tenant = p_tenant AND name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('rule "%s" does not exist', p_name),
            DETAIL = format('Tenant "%s" has no rule of that name.', p_tenant);
    END IF;
    RETURN r;
END $$;
COMMENT ON FUNCTION duet.duet_rule_lookup(text, text) IS 'internal: a tenant''s rule by name, locked, or an error';
REVOKE ALL ON FUNCTION duet.duet_rule_lookup(text, text) FROM PUBLIC;

-- changes: a jsonb object of the fields to change; a JSON null clears an optional field.
CREATE FUNCTION duet.duet_rule_alter_apply(p_tenant text, p_caller oid, p_name text, p_changes jsonb)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       duet.rules := duet.duet_rule_lookup(p_tenant, p_name);
    old_tbl regclass := r.target;
    k       text;
    allowed text[] := ARRAY['name', 'condition', 'value', 'severity', 'labels', 'message', 'for',
                            'keep_firing_for', 'topic', 'enabled', 'target', 'query'];
BEGIN
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'rule changes must be a JSON object',
            HINT = 'For example: {"condition": "spend > 2 * budget", "for": "10 minutes"}.';
    END IF;
    FOR k IN SELECT jsonb_object_keys(p_changes) LOOP
        IF NOT k = ANY (allowed) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('unknown rule field "%s"', k),
                DETAIL = format('Fields that can change: %s.', array_to_string(allowed, ', '));
        END IF;
        IF k IN ('name', 'condition', 'severity', 'for', 'keep_firing_for', 'enabled', 'labels')
           AND jsonb_typeof(p_changes -> k) = 'null' THEN
            RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
                MESSAGE = format('rule field "%s" must not be null', k);
        END IF;
    END LOOP;
    BEGIN
        IF p_changes ? 'name' THEN r.name := p_changes ->> 'name'; END IF;
        IF p_changes ? 'condition' THEN r.condition := p_changes ->> 'condition'; END IF;
        IF p_changes ? 'value' THEN r.value := p_changes ->> 'value'; END IF;
        IF p_changes ? 'severity' THEN r.severity := p_changes ->> 'severity'; END IF;
        IF p_changes ? 'message' THEN r.message := p_changes ->> 'message'; END IF;
        IF p_changes ? 'topic' THEN r.topic := p_changes ->> 'topic'; END IF;
        IF p_changes ? 'query' THEN r.query := p_changes ->> 'query'; END IF;
        IF p_changes ? 'target' THEN r.target := (p_changes ->> 'target')::regclass; END IF;
        IF p_changes ? 'enabled' THEN r.enabled := (p_changes ->> 'enabled')::boolean; END IF;
        IF p_changes ? 'for' THEN r.for_period := (p_changes ->> 'for')::interval; END IF;
        IF p_changes ? 'keep_firing_for' THEN r.keep_firing_for := (p_changes ->> 'keep_firing_for')::interval; END IF;
        IF p_changes ? 'labels' THEN
            r.labels := ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'labels'));
        END IF;
    EXCEPTION WHEN data_exception OR undefined_table OR invalid_text_representation THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid rule change: %s', SQLERRM);
    END;
    IF (r.target IS NULL) = (r.query IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rule "%s" needs exactly one of target and query', r.name),
            HINT = 'Set the other one to null in the same change.';
    END IF;
    IF r.name <> p_name AND EXISTS (SELECT FROM duet.rules WHERE tenant = p_tenant AND name = r.name) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('rule "%s" already exists', r.name);
    END IF;
    PERFORM duet.duet_rule_check_fields(r.name, r.severity, r.for_period, r.keep_firing_for);
    PERFORM duet.duet_rule_check_target(p_caller, r.target, r.topic);
    PERFORM duet.duet_rule_validate(p_caller, r.condition, r.value, r.labels, r.message, r.target, r.query);
    UPDATE duet.rules SET name = r.name, condition = r.condition, value = r.value, severity = r.severity,
           labels = r.labels, message = r.message, for_period = r.for_period,
           keep_firing_for = r.keep_firing_for, topic = r.topic, enabled = r.enabled, target = r.target,
           query = r.query, owner = p_caller, version = version + 1, updated_at = now()
     WHERE id = r.id;
    -- Instances are keyed by the label set: new labels start new instances.
    IF p_changes ? 'labels' OR p_changes ? 'target' OR p_changes ? 'query' THEN
        DELETE FROM duet.alerts WHERE rule_id = r.id;
    END IF;
    IF old_tbl IS NOT NULL THEN PERFORM duet.duet_rule_sync_trigger(old_tbl); END IF;
    IF r.target IS NOT NULL THEN PERFORM duet.duet_rule_sync_trigger(r.target); END IF;
END $$;
COMMENT ON FUNCTION duet.duet_rule_alter_apply(text, oid, text, jsonb) IS
    'internal: changes a tenant''s rule on behalf of a caller identified by duet_rule_alter';
REVOKE ALL ON FUNCTION duet.duet_rule_alter_apply(text, oid, text, jsonb) FROM PUBLIC;

CREATE FUNCTION duet.duet_rule_drop_apply(p_tenant text, p_caller oid, p_name text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r duet.rules := duet.duet_rule_lookup(p_tenant, p_name);
BEGIN
    DELETE FROM duet.rules WHERE id = r.id;
    IF r.target IS NOT NULL THEN
        PERFORM duet.duet_rule_sync_trigger(r.target);
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_rule_drop_apply(text, oid, text) IS
    'internal: drops a tenant''s rule, its alerts and their history';
REVOKE ALL ON FUNCTION duet.duet_rule_drop_apply(text, oid, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_rule_enable_apply(p_tenant text, p_caller oid, p_name text, p_enabled boolean)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r duet.rules := duet.duet_rule_lookup(p_tenant, p_name);
BEGIN
    UPDATE duet.rules SET enabled = p_enabled, version = version + 1, updated_at = now() WHERE id = r.id;
END $$;
COMMENT ON FUNCTION duet.duet_rule_enable_apply(text, oid, text, boolean) IS
    'internal: enables or disables a tenant''s rule';
REVOKE ALL ON FUNCTION duet.duet_rule_enable_apply(text, oid, text, boolean) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- The state machine (DESIGN §7): one observation of one alert instance at a time `at`.
--   outcome: 'true' (condition holds), 'false', 'error' (p_error says why), 'nodata'
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet.duet_alert_observe(p_rule bigint, p_labels jsonb, p_outcome text, p_value jsonb,
                                        p_message text, p_error text, p_at timestamptz) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       duet.rules;
    a       duet.alerts;
    base    text;
    new     text;
    event   jsonb;
BEGIN
    SELECT * INTO r FROM duet.rules WHERE id = p_rule;
    IF NOT FOUND THEN
        RETURN NULL;    -- dropped concurrently
    END IF;
    INSERT INTO duet.alerts (rule_id, tenant, labels) VALUES (p_rule, r.tenant, p_labels)
        ON CONFLICT ON CONSTRAINT alert_instance DO NOTHING;
    SELECT * INTO a FROM duet.alerts WHERE rule_id = p_rule AND labels = p_labels FOR UPDATE;

    -- Error and No Data interrupt evaluation without ending an active alert: when data comes
    -- back, an alert that was firing is still firing (no second notification).
    base := CASE WHEN a.state IN ('error', 'nodata', 'resolved') THEN
                     CASE WHEN a.firing_since IS NOT NULL THEN 'firing'
                          WHEN a.pending_since IS NOT NULL THEN 'pending' ELSE 'normal' END
                 ELSE a.state END;

    IF p_outcome = 'error' THEN
        new := 'error';
    ELSIF p_outcome = 'nodata' THEN
        new := 'nodata';
    ELSIF p_outcome = 'true' THEN
        IF base IN ('firing', 'recovering') THEN
            new := 'firing';            -- a flap within keep_firing_for: still the same alert
            a.recovering_since := NULL;
        ELSIF base = 'pending' AND p_at - a.pending_since >= r.for_period THEN
            new := 'firing';
        ELSIF base = 'pending' THEN
            new := 'pending';
        ELSIF r.for_period = '0' THEN
            new := 'firing';
            a.pending_since := p_at;
        ELSE
            new := 'pending';
            a.pending_since := p_at;
        END IF;
        IF new = 'firing' AND a.firing_since IS NULL THEN
            a.firing_since := p_at;
        END IF;
    ELSIF p_outcome = 'false' THEN
        IF base = 'firing' AND r.keep_firing_for = '0' THEN
            new := 'resolved';
        ELSIF base = 'firing' THEN
            new := 'recovering';
            a.recovering_since := p_at;
        ELSIF base = 'recovering' AND p_at - a.recovering_since >= r.keep_firing_for THEN
            new := 'resolved';
        ELSIF base = 'recovering' THEN
            new := 'recovering';
        ELSIF a.state = 'resolved' THEN
            new := 'resolved';          -- stays resolved until the condition holds again
        ELSE
            new := 'normal';
        END IF;
        IF new IN ('resolved', 'normal') THEN
            a.pending_since := NULL;
            a.firing_since := NULL;
            a.recovering_since := NULL;
        END IF;
    ELSE
        RAISE EXCEPTION 'invalid alert outcome "%"', p_outcome;
    END IF;

    UPDATE duet.alerts
       SET state = new, pending_since = a.pending_since, firing_since = a.firing_since,
           recovering_since = a.recovering_since, last_eval_at = p_at,
           value = CASE WHEN p_outcome IN ('true', 'false') THEN p_value ELSE value END,
           message = CASE WHEN p_outcome = 'true' THEN p_message ELSE message END,
           error = CASE WHEN p_outcome = 'error' THEN p_error END
     WHERE id = a.id;

    IF new IS DISTINCT FROM a.state THEN
        INSERT INTO duet.alert_transitions (alert_id, rule_id, tenant, labels, from_state, to_state, at,
                                            value, message, error)
        VALUES (a.id, p_rule, r.tenant, p_labels, a.state, new, p_at, p_value,
                CASE WHEN p_outcome = 'true' THEN p_message ELSE a.message END,
                CASE WHEN p_outcome = 'error' THEN p_error END);
    END IF;

    -- Notify when an alert starts firing (not on a flap back from recovering) and when it resolves.
    IF (new = 'firing' AND base NOT IN ('firing', 'recovering')) OR (new = 'resolved' AND a.state <> 'resolved') THEN
        event := jsonb_build_object('tenant', r.tenant, 'rule', r.name, 'rule_id', r.id,
                                    'severity', r.severity, 'labels', p_labels, 'state', new,
                                    'at', to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                                    'value', p_value,
                                    'message', CASE WHEN new = 'firing' THEN p_message ELSE a.message END,
                                    'alert_id', a.id);
        PERFORM pg_notify('duet_alerts', left(event::text, 7900));
        IF r.topic IS NOT NULL THEN
            EXECUTE 'SELECT @extschema@.duet_kafka_publish($1, $2, $3, $4)'
                USING r.topic, r.tenant || '/' || r.name || '/' || p_labels::text, event,
                      jsonb_build_object('source', 'pg_duet rules', 'tenant', r.tenant, 'state', new);
        END IF;
    END IF;
    RETURN new;
END $$;
COMMENT ON FUNCTION duet.duet_alert_observe(bigint, jsonb, text, jsonb, text, text, timestamptz) IS
    'internal: applies one observation to an alert instance (Normal, Pending, Firing, Recovering, Resolved, Error, No Data), with history, NOTIFY and outbox';
REVOKE ALL ON FUNCTION duet.duet_alert_observe(bigint, jsonb, text, jsonb, text, text, timestamptz) FROM PUBLIC;

-- Query rules: an instance whose labels the query no longer returns is observed as false.
CREATE FUNCTION duet.duet_alert_sweep(p_rule bigint, p_seen jsonb[], p_at timestamptz) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l jsonb;
BEGIN
    FOR l IN SELECT labels FROM duet.alerts
              WHERE rule_id = p_rule AND state NOT IN ('normal', 'resolved')
                AND NOT labels = ANY (coalesce(p_seen, '{}'))
              ORDER BY id LOOP
        PERFORM duet.duet_alert_observe(p_rule, l, 'false', NULL, NULL, NULL, p_at);
    END LOOP;
END $$;
COMMENT ON FUNCTION duet.duet_alert_sweep(bigint, jsonb[], timestamptz) IS
    'internal: observes as false the active instances of a query rule that its last result did not contain';
REVOKE ALL ON FUNCTION duet.duet_alert_sweep(bigint, jsonb[], timestamptz) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- Public API (C, rules_api.c / rules_formula.c / rules_query.c)
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet_rule_create(name text, condition text, target regclass DEFAULT NULL,
                                 query text DEFAULT NULL, value text DEFAULT NULL,
                                 severity text DEFAULT 'warning', labels text[] DEFAULT '{}',
                                 message text DEFAULT NULL, for_period interval DEFAULT '0',
                                 keep_firing_for interval DEFAULT '0', topic text DEFAULT NULL,
                                 enabled boolean DEFAULT true) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_create';
COMMENT ON FUNCTION duet_rule_create(text, text, regclass, text, text, text, text[], text, interval,
                                     interval, text, boolean) IS
    'creates a rule of the current tenant: a row rule on target or a query rule; condition and value are Duet formulas; returns its id';

CREATE FUNCTION duet_rule_alter(name text, changes jsonb) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_alter';
COMMENT ON FUNCTION duet_rule_alter(text, jsonb) IS
    'changes fields of a rule of the current tenant, e.g. {"condition": "...", "for": "5 minutes", "topic": null}';

CREATE FUNCTION duet_rule_drop(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_drop';
COMMENT ON FUNCTION duet_rule_drop(text) IS 'drops a rule of the current tenant with its alerts and history';

CREATE FUNCTION duet_rule_enable(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_enable';
COMMENT ON FUNCTION duet_rule_enable(text) IS 'enables a rule of the current tenant';

CREATE FUNCTION duet_rule_disable(name text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rule_disable';
COMMENT ON FUNCTION duet_rule_disable(text) IS 'disables a rule of the current tenant (its alerts keep their state)';

CREATE FUNCTION duet_rule_test(rule text, "row" jsonb) RETURNS jsonb
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'duet_rule_test';
COMMENT ON FUNCTION duet_rule_test(text, jsonb) IS
    'dry-runs a rule of the current tenant on one row (a JSON object): condition, value, labels and rendered message; changes nothing';

CREATE FUNCTION duet_rules_evaluate(at timestamptz DEFAULT now()) RETURNS integer
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'duet_rules_evaluate';
COMMENT ON FUNCTION duet_rules_evaluate(timestamptz) IS
    'evaluates every tenant''s enabled query rules as of at (each query runs as its rule''s owner, in its tenant); returns the number of rules evaluated';
-- Privileged: `at` moves alert clocks, so only the scheduler, pg_cron jobs and granted roles call it.
REVOKE ALL ON FUNCTION duet_rules_evaluate(timestamptz) FROM PUBLIC;
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
SELECT pg_catalog.pg_extension_config_dump('duet.llm_provider_keys', '');

-- Even if a superuser grants these tables to someone, only a superuser may attach a key or
-- change a keyed provider (a new base_url would send the key to an endpoint of their choosing).
-- The trigger runs as the role making the change, so it can tell who that is; whether a key
-- exists is asked of a SECURITY DEFINER helper that reveals nothing else.
CREATE FUNCTION duet_ask_provider_has_key(provider text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    BEGIN ATOMIC SELECT EXISTS (SELECT FROM duet.llm_provider_keys k WHERE k.provider = duet_ask_provider_has_key.provider); END;
COMMENT ON FUNCTION duet_ask_provider_has_key(text) IS
    'whether a provider has a stored key (used by the provider guard trigger; reveals no key)';

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
    created_by name NOT NULL DEFAULT session_user
);
CREATE INDEX ON duet.ask_examples (tenant, created_at DESC);
COMMENT ON TABLE duet.ask_examples IS
    'verified question → SQL pairs shown to the model as examples, per tenant; add with duet_ask_feedback()';
ALTER TABLE duet.ask_examples ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.ask_examples FORCE ROW LEVEL SECURITY;
CREATE POLICY duet_tenant_isolation ON duet.ask_examples
    USING (tenant IS NOT DISTINCT FROM @extschema@.duet_current_tenant());
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
    status      text NOT NULL CHECK (status IN ('ok', 'cached', 'rejected', 'failed')),
    error       text
);
CREATE INDEX ON duet.ask_log (at);
CREATE INDEX ON duet.ask_log (tenant, at);
COMMENT ON TABLE duet.ask_log IS
    'audit of every duet_ask call; rows older than duet.ask_log_retention_days are removed; each role sees its tenant''s rows (its own when no tenant)';
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
    'SQL answering a question, written by a language model and accepted by the guard (not executed); options: cache, max_corrections';

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
-- pg_duet install script, part 60: named metrics and the ClickHouse UDF configuration (DESIGN.md §9).
-- A metric is defined once here and used in both databases: duet_clickhouse_config() returns the
-- <functions> XML declaring one ClickHouse function per metric and the definitions file that
-- ch_udfs' duet_udf reads (ClickHouse splits a command on spaces, so formulas cannot travel there).

CREATE TABLE duet.metrics (
    name            text PRIMARY KEY
                    CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND length(name) <= 63),
    formula         text NOT NULL,
    description     text,
    arguments       text[] NOT NULL,
    argument_types  text[] NOT NULL,
    return_type     text NOT NULL,
    defined_by      name NOT NULL DEFAULT session_user,
    defined_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(arguments) = cardinality(argument_types))
);
COMMENT ON TABLE duet.metrics IS
    'named Duet formulas, callable as ClickHouse functions through duet_clickhouse_config(); written by duet_metric_define';
COMMENT ON COLUMN duet.metrics.arguments IS 'the formula''s variables, in order of first appearance: the ClickHouse function''s arguments';
COMMENT ON COLUMN duet.metrics.argument_types IS 'ClickHouse types of the arguments (Nullable(Float64) unless declared)';
COMMENT ON COLUMN duet.metrics.return_type IS 'ClickHouse result type: Nullable(Float64), Nullable(UInt8) for conditions, Nullable(String)';
SELECT pg_catalog.pg_extension_config_dump('duet.metrics', '');
REVOKE ALL ON duet.metrics FROM PUBLIC;
GRANT SELECT ON duet.metrics TO PUBLIC;

CREATE FUNCTION duet_metric_signature(formula text, typed_names text[] DEFAULT '{}', typed_types text[] DEFAULT '{}',
                                      OUT arguments text[], OUT argument_types text[], OUT return_type text)
    LANGUAGE c IMMUTABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_metric_signature';
COMMENT ON FUNCTION duet_metric_signature(text, text[], text[]) IS
    'compiles a metric formula and returns its ClickHouse signature: arguments, their types, result type';

CREATE FUNCTION duet_metric_define(name text, formula text, description text DEFAULT NULL,
                                   argument_types jsonb DEFAULT NULL)
    RETURNS duet.metrics
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    typed_names text[];
    typed_types text[];
    sig record;
    result duet.metrics;
BEGIN
    IF name IS NULL OR formula IS NULL THEN
        RAISE EXCEPTION 'metric name and formula must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name !~ '^[A-Za-z_][A-Za-z0-9_]*$' OR length(name) > 63 THEN
        RAISE EXCEPTION 'invalid metric name "%"', name
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'The name becomes a ClickHouse function name and part of its command line.',
                  HINT = 'Use letters, digits and underscores (at most 63), starting with a letter or underscore.';
    END IF;
    IF argument_types IS NOT NULL AND jsonb_typeof(argument_types) <> 'object' THEN
        RAISE EXCEPTION 'argument_types must be a JSON object of variable name to ClickHouse type'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example: {"campaign": "String"}.';
    END IF;
    IF EXISTS (SELECT FROM jsonb_each(coalesce(argument_types, '{}')) e WHERE jsonb_typeof(e.value) <> 'string') THEN
        RAISE EXCEPTION 'argument types must be strings such as "Float64" or "String"'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    typed_names := ARRAY(SELECT e.key FROM jsonb_each_text(coalesce(argument_types, '{}')) e ORDER BY e.key);
    typed_types := ARRAY(SELECT e.value FROM jsonb_each_text(coalesce(argument_types, '{}')) e ORDER BY e.key);
    sig := @extschema@.duet_metric_signature(formula, typed_names, typed_types);
    INSERT INTO duet.metrics AS m (name, formula, description, arguments, argument_types, return_type)
    VALUES (name, formula, description, sig.arguments, sig.argument_types, sig.return_type)
    ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE
       SET formula = excluded.formula, description = excluded.description, arguments = excluded.arguments,
           argument_types = excluded.argument_types, return_type = excluded.return_type,
           defined_by = session_user, defined_at = now()
    RETURNING m.* INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION duet_metric_define(text, text, text, jsonb) IS
    'defines or replaces a named metric after compiling its formula; argument_types optionally maps variables to ClickHouse types (admin)';
REVOKE ALL ON FUNCTION duet_metric_define(text, text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION duet_metric_drop(name text) RETURNS boolean
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (DELETE FROM duet.metrics m WHERE m.name = $1 RETURNING 1) SELECT count(*) > 0 FROM d
$$;
COMMENT ON FUNCTION duet_metric_drop(text) IS 'drops a named metric; false when it did not exist (admin)';
REVOKE ALL ON FUNCTION duet_metric_drop(text) FROM PUBLIC;

CREATE FUNCTION duet_clickhouse_config(format text DEFAULT 'RowBinary', pool boolean DEFAULT true,
                                       OUT xml text, OUT definitions text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    IF format IS NULL OR format NOT IN ('TabSeparated', 'CSV', 'JSONEachRow', 'RowBinary') THEN
        RAISE EXCEPTION 'unsupported ClickHouse format "%"', format
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use TabSeparated, CSV, JSONEachRow or RowBinary.';
    END IF;
    -- XML escaping, and %XX escaping of argument names for duet_udf's --arguments syntax
    WITH m AS (
        SELECT mt.*,
               -- inside an XML comment only "--" is special
               regexp_replace(replace(coalesce(mt.description, ''), '--', '- -'), '-$', '- ') AS comment_text
          FROM duet.metrics mt
    ), args AS (
        SELECT m.name, a.ord,
               '        <argument><type>' || a.typ || '</type><name>'
               || replace(replace(replace(a.arg, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')
               || '</name></argument>' AS xml_arg,
               (SELECT string_agg(CASE WHEN c.ch ~ '^[A-Za-z0-9_]$' THEN c.ch
                                       ELSE upper(regexp_replace(encode(convert_to(c.ch, 'UTF8'), 'hex'), '(..)', '%\1', 'g')) END,
                                  '' ORDER BY c.i)
                  FROM regexp_split_to_table(a.arg, '') WITH ORDINALITY c(ch, i)) || ':' || a.typ AS spec
          FROM m, unnest(m.arguments, m.argument_types) WITH ORDINALITY a(arg, typ, ord)
    )
    SELECT '<functions>' || E'\n'
           || coalesce(string_agg(
                '    <!-- pg_duet metric ' || m.name || CASE WHEN m.comment_text <> '' THEN ': ' || m.comment_text ELSE '' END || ' -->' || E'\n'
                || '    <function>' || E'\n'
                || '        <type>' || CASE WHEN pool THEN 'executable_pool' ELSE 'executable' END || '</type>' || E'\n'
                || '        <name>' || m.name || '</name>' || E'\n'
                || '        <return_type>' || m.return_type || '</return_type>' || E'\n'
                || coalesce((SELECT string_agg(a.xml_arg, E'\n' ORDER BY a.ord) FROM args a WHERE a.name = m.name) || E'\n', '')
                || '        <format>' || format || '</format>' || E'\n'
                || '        <command>duet_udf --metric ' || m.name || ' --format ' || format
                || CASE WHEN pool THEN ' --chunk-header' ELSE '' END || '</command>' || E'\n'
                || CASE WHEN pool THEN '        <send_chunk_header>true</send_chunk_header>' || E'\n' ELSE '' END
                || '        <deterministic>true</deterministic>' || E'\n'
                || '    </function>' || E'\n', '' ORDER BY m.name), '')
           || '</functions>' || E'\n',
           '# duet_udf metric definitions, generated by pg_duet duet_clickhouse_config()' || E'\n'
           || '# name<TAB>return type<TAB>arguments<TAB>formula' || E'\n'
           || coalesce(string_agg(m.name || E'\t' || m.return_type || E'\t'
                || coalesce((SELECT string_agg(a.spec, ',' ORDER BY a.ord) FROM args a WHERE a.name = m.name), '')
                || E'\t' || replace(replace(replace(m.formula, '\', '\\'), E'\n', '\n'), E'\t', '\t') || E'\n',
                '' ORDER BY m.name), '')
      INTO xml, definitions
      FROM m;
END
$$;
COMMENT ON FUNCTION duet_clickhouse_config(text, boolean) IS
    'ClickHouse <functions> XML declaring one executable UDF per metric, and the duet_udf definitions file content';

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
-- Key definitions are global and readable by all; RLS says so explicitly.
ALTER TABLE duet.config_definitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.config_definitions FORCE ROW LEVEL SECURITY;
CREATE POLICY config_definitions_global_read ON duet.config_definitions FOR SELECT USING (true);
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

-- The lock of one writer of a (tenant, key), held until the transaction ends (config_write.c).
CREATE FUNCTION duet.duet_config_lock(p_tenant text, p_key text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_config_lock';
COMMENT ON FUNCTION duet.duet_config_lock(text, text) IS
    'internal: takes the lock of one writer of a tenant''s config key until the transaction ends (no role can hold it from SQL)';
REVOKE ALL ON FUNCTION duet.duet_config_lock(text, text) FROM PUBLIC;

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
    history_id   bigint;
    scope        text := CASE WHEN p_tenant IS NULL THEN 'the default' ELSE format('tenant "%s"', p_tenant) END;
BEGIN
    -- One writer per (tenant, key) at a time: no lost update, versions strictly increase. Not an
    -- advisory key any role could hold: a lock only C can take (config_write.c).
    PERFORM duet.duet_config_lock(p_tenant, p_key);

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
                 new_value, cur.value, CASE WHEN op = 'rollback' THEN p_version END, now(), p_actor)
      RETURNING id INTO history_id;

    -- Delivered to listeners when (and only if) the transaction commits. Every role can LISTEN:
    -- the channel carries only the history row's id, read back under row-level security.
    PERFORM pg_notify('duet_config', history_id::text);

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

-- pg_dump: the identity sequence of a dumped table, so a restored database continues its numbering.
SELECT pg_catalog.pg_extension_config_dump('duet.config_history_id_seq', '');

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

-- pg_duet install script, part 95: removing pg_duet completely (docs/design.md, "Uninstalling").
--
-- DROP EXTENSION removes every object of the extension in this database, but not
--   - the roles duet_kafka_admin, duet_kafka_publisher and duet_monitor: roles are cluster-wide, and another
--     database of the cluster may have the extension too;
--   - with CASCADE, the permissive policy duet_tenant_access that duet_tenant_protect() put on a
--     user's table next to the restrictive duet_tenant_isolation (which CASCADE drops, as it calls
--     duet_current_tenant()): the table would be left readable by every grantee, across tenants.
-- duet_uninstall() drops the extension and both. It is the extension's own function, so it is
-- gone afterwards; a DBA who already ran DROP EXTENSION drops the roles by hand (same docs).

CREATE FUNCTION duet_uninstall(cascade boolean DEFAULT false) RETURNS text[]
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    roles     text[] := ARRAY['duet_kafka_admin', 'duet_kafka_publisher', 'duet_monitor'];
    done      text[] := '{}';
    protected regclass[];
    t         regclass;
    r         text;
    elsewhere text;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'permission denied for function duet_uninstall',
            HINT = 'Only a superuser may remove pg_duet and its cluster-wide roles.';
    END IF;

    -- Tables duet_tenant_protect() protected: their isolation policy depends on the extension.
    SELECT pg_catalog.array_agg(DISTINCT p.polrelid::regclass ORDER BY p.polrelid::regclass) INTO protected
      FROM pg_catalog.pg_policy p
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid = p.oid
     WHERE p.polname = 'duet_tenant_isolation'
       AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND d.refobjid = '@extschema@.duet_current_tenant()'::pg_catalog.regprocedure
       AND p.polrelid NOT IN (SELECT e.objid FROM pg_catalog.pg_depend e
                               WHERE e.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                                 AND e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND e.deptype = 'e');

    IF cascade THEN
        DROP EXTENSION pg_duet CASCADE;
    ELSE
        DROP EXTENSION pg_duet;     -- refuses, naming them, while user objects depend on it
    END IF;
    done := done || 'extension pg_duet'::text;

    -- Fail closed: without its restrictive partner, duet_tenant_access (USING true) would open
    -- the table to every grantee. Row-level security stays forced, so only the owner's policies
    -- (none yet) and superusers can reach the rows until the DBA decides.
    FOREACH t IN ARRAY coalesce(protected, '{}') LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_policy WHERE polrelid = t AND polname = 'duet_tenant_access') THEN
            EXECUTE pg_catalog.format('DROP POLICY duet_tenant_access ON %s', t);
            done := done || pg_catalog.format('policy duet_tenant_access on %s (row-level security stays forced)', t);
        END IF;
    END LOOP;

    -- The roles, unless another database still uses them (pg_shdepend is shared by the cluster).
    SELECT pg_catalog.string_agg(DISTINCT db.datname, ', ' ORDER BY db.datname) INTO elsewhere
      FROM pg_catalog.pg_shdepend s JOIN pg_catalog.pg_database db ON db.oid = s.dbid
     WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND s.refobjid IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY (roles))
       AND db.datname <> pg_catalog.current_database();
    IF elsewhere IS NOT NULL THEN
        RAISE NOTICE 'roles % kept: still used in database %', pg_catalog.array_to_string(roles, ', '), elsewhere
            USING HINT = 'Run SELECT duet_uninstall() there too; the last one drops the roles.';
        RETURN done;
    END IF;
    FOREACH r IN ARRAY roles LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('DROP ROLE %I', r);
            done := done || pg_catalog.format('role %s', r);
        END IF;
    END LOOP;
    RETURN done;
END $$;
COMMENT ON FUNCTION duet_uninstall(boolean) IS
    'superuser: DROP EXTENSION pg_duet [CASCADE], then what it leaves behind: duet_tenant_protect''s permissive policies (fail closed) and, unless another database still uses them, the roles duet_kafka_admin, duet_kafka_publisher and duet_monitor; returns what it removed';
REVOKE ALL ON FUNCTION duet_uninstall(boolean) FROM PUBLIC;

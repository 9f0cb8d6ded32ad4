-- pg_duet install script, part 00: the schema and core functions.
-- The install script pg_duet--<version>.sql is these parts concatenated in name order.

\echo Use "CREATE EXTENSION pg_duet" to load this file. \quit

CREATE SCHEMA duet;
COMMENT ON SCHEMA duet IS 'pg_duet tables and views (functions are named duet_* in the extension schema)';
GRANT USAGE ON SCHEMA duet TO PUBLIC;

CREATE FUNCTION duet_version() RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE STRICT
    AS 'MODULE_PATHNAME', 'duet_version';
COMMENT ON FUNCTION duet_version() IS 'version of the loaded pg_duet library';

-- Whether the background workers serve this database (C: pg_duet/doctor.c); duet.kafka_status
-- and duet_doctor() (part 70) say why not.
CREATE FUNCTION duet_workers_status(OUT problem text, OUT hint text)
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'duet_workers_status';
COMMENT ON FUNCTION duet_workers_status() IS
    'why pg_duet''s background workers do not serve this database, and the fix (NULLs when they do)';

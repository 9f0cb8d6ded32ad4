-- pg_duet update 0.1.0 -> 0.2.0.
-- Every SQL change after the frozen 0.1.0 release goes here AND into pg_duet/sql/NN_*.sql (the
-- full install script of the current version); test/t/090_upgrade.pl checks that both give the
-- same schema.

\echo Use "ALTER EXTENSION pg_duet UPDATE TO '0.2.0'" to load this file. \quit

-- Security (issue 11) ---------------------------------------------------------------------------

-- Global examples (tenant NULL) could be deleted by any role without a tenant.
DROP POLICY duet_tenant_isolation ON duet.ask_examples;
CREATE POLICY duet_tenant_isolation ON duet.ask_examples FOR SELECT
    USING (tenant IS NOT DISTINCT FROM @extschema@.duet_current_tenant());
-- Examples without a tenant are the owner's (duet_ask_feedback makes them for superusers only).
CREATE POLICY duet_tenant_delete ON duet.ask_examples FOR DELETE
    USING (tenant IS NOT NULL AND tenant = @extschema@.duet_current_tenant());

-- Keys are not dumped: pg_dump of the database must not write secrets (back them up with COPY).
-- pg_extension_config_dump has no inverse; this is what it would undo, done as it does it.
UPDATE pg_catalog.pg_extension e
   SET extconfig = (SELECT pg_catalog.array_agg(c.oid ORDER BY c.ord)
                      FROM pg_catalog.unnest(e.extconfig) WITH ORDINALITY AS c(oid, ord)
                     WHERE c.oid OPERATOR(pg_catalog.<>) 'duet.llm_provider_keys'::pg_catalog.regclass),
       extcondition = (SELECT pg_catalog.array_agg(w.cond ORDER BY w.ord)
                         FROM pg_catalog.unnest(e.extconfig, e.extcondition) WITH ORDINALITY AS w(oid, cond, ord)
                        WHERE w.oid OPERATOR(pg_catalog.<>) 'duet.llm_provider_keys'::pg_catalog.regclass)
 WHERE e.extname OPERATOR(pg_catalog.=) 'pg_duet';

-- Key definitions are global and readable by all; RLS says so explicitly.
ALTER TABLE duet.config_definitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.config_definitions FORCE ROW LEVEL SECURITY;
CREATE POLICY config_definitions_global_read ON duet.config_definitions FOR SELECT USING (true);
-- Metrics are global and readable by all; RLS says so explicitly.
ALTER TABLE duet.metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE duet.metrics FORCE ROW LEVEL SECURITY;
CREATE POLICY metrics_global_read ON duet.metrics FOR SELECT USING (true);

-- docs_uninstall: duet_uninstall() removes the extension and what DROP EXTENSION leaves behind
-- (docs/design.md, "Uninstalling"). Here another database (contrib_regression) keeps using the
-- cluster-wide roles, so they are kept; test/suites/25-docs.sh checks that the last uninstall
-- drops them.

-- Superusers only: not executable by PUBLIC.
SELECT has_function_privilege('public', 'duet_uninstall(boolean)', 'EXECUTE') AS public_may_execute;
CREATE ROLE docs_uninstall_user;
SET ROLE docs_uninstall_user;
SELECT duet_uninstall();
RESET ROLE;
DROP ROLE docs_uninstall_user;

CREATE DATABASE docs_uninstall;
\c docs_uninstall
CREATE EXTENSION pg_duet;
CREATE TABLE campaigns (tenant text, name text);
SELECT duet_tenant_protect('campaigns');

-- Without cascade, DROP EXTENSION's own refusal, naming what depends on the extension.
\set SHOW_CONTEXT never
SELECT duet_uninstall();
\set SHOW_CONTEXT errors
SELECT count(*) AS extension_still_there FROM pg_extension WHERE extname = 'pg_duet';

-- With cascade: the table's isolation policy goes with the extension; its permissive partner is
-- dropped too, so the table fails closed (row-level security forced, no policy) instead of open.
-- (The notices name the other databases using the roles: not part of this test's output.)
SET client_min_messages = warning;
SELECT unnest(duet_uninstall(cascade => true)) AS removed;
RESET client_min_messages;
SELECT relrowsecurity, relforcerowsecurity,
       (SELECT count(*) FROM pg_policy WHERE polrelid = 'campaigns'::regclass) AS policies
  FROM pg_class WHERE oid = 'campaigns'::regclass;
SELECT count(*) AS objects_left FROM pg_proc WHERE proname LIKE 'duet\_%';
SELECT count(*) AS schema_left FROM pg_namespace WHERE nspname = 'duet';
-- The roles are kept while contrib_regression uses them.
SELECT rolname FROM pg_roles WHERE rolname IN ('duet_kafka_admin', 'duet_kafka_publisher') ORDER BY 1;

\c contrib_regression
DROP DATABASE docs_uninstall;

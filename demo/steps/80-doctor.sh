#!/usr/bin/env bash
# duet_doctor() on a misconfigured database: one the background workers do not serve
# duet.databases lists duet_demo only, so in duet_demo_unserved rules and the outbox would never run.
# pg_duet says so at once (a WARNING with the fix, at the call that needs a worker), and
# duet_doctor() lists every problem it finds, each with its hint. The demo database is healthy.
set -euo pipefail
cd "$(dirname "$0")/../.."
psql -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS duet_demo_unserved" \
  -c "CREATE DATABASE duet_demo_unserved"
psql -d duet_demo_unserved -e <<'SQL'
CREATE EXTENSION pg_duet;
SELECT duet_tenant_create('acme');
SELECT duet_set_tenant('acme');
CREATE TABLE spend (campaign_id int, spend float8);
-- expected WARNING: the query rule would never be evaluated here
SELECT duet_rule_create('big_spend', 'spend > 10', query => 'SELECT 1 AS campaign_id, 20::float8 AS spend') > 0 AS created;
-- expected WARNING: the outbox publisher does not serve this database
SELECT duet_kafka_publish('alerts', 'k', 'v') IS NOT NULL AS queued;
SELECT check_name, status, detail, hint FROM duet_doctor() WHERE status <> 'ok';
SQL
echo
echo "The demo database itself, served by the workers:"
psql -e -c "SELECT check_name, status FROM duet_doctor() ORDER BY check_name"

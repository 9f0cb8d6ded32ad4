# Issue 17 (Prometheus metrics): the duet_metrics_*() functions and duet.health are granted to
# PUBLIC and decide themselves what their caller sees. Attacks: a tenant member, a role in no
# tenant and a Kafka admin read the victim tenant's figures (through each function, the view, a
# spoofed tenant setting, a leaky function in WHERE); the monitoring role (duet_monitor) reads
# tenant content (alert messages, rule and ask SQL, dead letters, outbox events, config values,
# pipelines' transforms, expectations, error texts and quarantined rows).
# Every attack must come back with nothing of globex; the monitor must still see globex's counts.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_metrics');
my $mock = start_mock($node);
$node->safe_psql('postgres', qq{
CREATE ROLE mon LOGIN IN ROLE duet_monitor;
-- globex's activity: an ask (counted per tenant), dead letters and outbox events with the canary
SET ROLE bob;
SELECT duet_set_tenant('globex');
SELECT duet_ask('$CANARY how many?', '{"cache": false}');
RESET ROLE;
INSERT INTO duet.kafka_dead_letters (consumer_id, consumer, owner, topic, partition, "offset", value, error)
    SELECT id, name, owner, topic, 0, 0, '$CANARY', '$CANARY bad' FROM duet.kafka_consumers WHERE name = 'canary_globex_7731_c';
INSERT INTO duet.kafka_outbox (topic, key, value) VALUES ('globex-topic', '$CANARY', '$CANARY');
-- globex's pipelines (issue 19): the canary in a transform, an expectation, a quarantined row and
-- an error text; their names carry no canary, so the monitor's view of them may be checked for it
SET ROLE bob;
SELECT duet_set_tenant('globex');
CREATE TABLE globex.msrc (id bigint PRIMARY KEY, note text);
CREATE TABLE globex.mdst (id bigint PRIMARY KEY, note text);
CREATE TABLE globex.msrc2 (id bigint PRIMARY KEY, note text);
CREATE TABLE globex.mdst2 (id bigint PRIMARY KEY, note text);
INSERT INTO globex.msrc VALUES (1, '$CANARY row'), (2, 'fine');
INSERT INTO globex.msrc2 VALUES (1, '$CANARY row');
SELECT duet_pipeline_create('gx_pipe', 'globex.msrc', 'globex.mdst', '{"id": "id", "note": "note || ''-$CANARY''"}',
    order_by => 'id', key => '{id}', mode => 'upsert',
    expectations => '[{"name": "canary_globex_7731_drop", "predicate": "note NOT LIKE ''$CANARY%''", "action": "drop"}]');
SELECT duet_pipeline_create('gx_fail', 'globex.msrc2', 'globex.mdst2', '{"id": "id", "note": "note"}', order_by => 'id',
    expectations => '[{"name": "canary_globex_7731_fail", "predicate": "note NOT LIKE ''$CANARY%''", "action": "fail"}]');
SELECT duet_pipeline_run('gx_pipe'), duet_pipeline_run('gx_fail');
RESET ROLE;
-- acme's own pipeline, that alice must see
CREATE SCHEMA acme_m AUTHORIZATION alice;
SET ROLE alice;
SELECT duet_set_tenant('acme');
CREATE TABLE acme_m.src (id bigint PRIMARY KEY, v int);
CREATE TABLE acme_m.dst (id bigint PRIMARY KEY, v int);
INSERT INTO acme_m.src VALUES (1, 1);
SELECT duet_pipeline_create('acme_pipe', 'acme_m.src', 'acme_m.dst', '{"id": "id", "v": "v"}', order_by => 'id');
RESET ROLE;
});

# The superuser's view: globex has rules with firing alerts, an ask, a consumer with a dead letter.
my $all = $node->safe_psql('postgres', q{
SELECT (SELECT sum(firing) FROM duet_metrics_rules() WHERE tenant = 'globex'),
       (SELECT sum(calls) FROM duet_metrics_ask() WHERE tenant = 'globex'),
       (SELECT dead_letters FROM duet_metrics_kafka() WHERE consumer = 'canary_globex_7731_c')});
is($all, '2|1|1', 'setup: globex has firing alerts, an ask and a dead letter in the metrics');
is($node->safe_psql('postgres', q{
SELECT string_agg(pipeline || ':' || state || ':' || quarantined || ':' || errors_24h || ':' || lag_rows, ',' ORDER BY pipeline)
  FROM duet_metrics_pipelines() WHERE tenant = 'globex'}),
	'gx_fail:error:0:1:1,gx_pipe:active:1:0:0',
	'setup: globex has a pipeline with a quarantined row and one stopped in error');
like($node->safe_psql('postgres', q{SELECT string_agg(last_error, ',') FROM duet.pipelines WHERE tenant = 'globex'}),
	qr/canary_globex_7731/i, 'setup: the failed pipeline\'s error text carries the canary');

my $READ_ALL = q{
SELECT 'rules', row_to_json(r)::text FROM duet_metrics_rules() r
UNION ALL SELECT 'ask', row_to_json(a)::text FROM duet_metrics_ask() a
UNION ALL SELECT 'kafka', row_to_json(k)::text FROM duet_metrics_kafka() k
UNION ALL SELECT 'outbox', row_to_json(o)::text FROM duet_metrics_outbox() o
UNION ALL SELECT 'server', row_to_json(s)::text FROM duet_metrics_server() s
UNION ALL SELECT 'workers', row_to_json(w)::text FROM duet_metrics_workers() w
UNION ALL SELECT 'pipelines', row_to_json(p)::text FROM duet_metrics_pipelines() p
UNION ALL SELECT 'health', row_to_json(h)::text FROM duet.health h;
};

for my $r (@ATTACKERS)
{
	my $tenant = { nobody => undef, alice => 'acme', kadmin => 'initech' }->{$r};
	my $set = $tenant ? "SELECT duet_set_tenant('$tenant');" : '';
	my ($rc, $out, $err) = as_role($node, $r, "$set $READ_ALL");
	is($rc, 0, "$KIND{$r}: the metrics functions and duet.health may be called") or diag($err);
	unlike($out, qr/globex/, "$KIND{$r}: no figure of tenant globex, no globex consumer")
	  or diag($out);
	no_canary($out, "$KIND{$r}: nothing of globex's content through the metrics");
	unlike($out, qr/^(server|workers)\|/m, "$KIND{$r}: no server or workers row (monitors only)");
	if ($r eq 'alice')
	{
		like($out, qr/^pipelines\|.*"acme_pipe"/m, "$KIND{$r}: its own tenant's pipeline is there");
		is(scalar(() = $out =~ /^pipelines\|/mg), 1, "$KIND{$r}: and only it");
	}
	else
	{
		unlike($out, qr/^pipelines\|/m, "$KIND{$r}: no pipeline row (no pipeline of its tenant)");
	}
	unlike($out, qr/^outbox\|/m, "$KIND{$r}: no outbox row (monitors and Kafka admins only)")
	  unless $r eq 'kadmin';

	# Spoofing the tenant: a plain SET of the underlying setting, then the functions.
	($rc, $out, $err) = as_role($node, $r, qq{
SET duet.tenant = 'globex';
SELECT set_config('duet.tenant', 'globex', false);
SELECT coalesce(string_agg(tenant, ','), 'none') FROM duet_metrics_rules();
SELECT coalesce(string_agg(tenant, ','), 'none') FROM duet_metrics_ask();
SELECT coalesce(string_agg(tenant, ','), 'none') FROM duet_metrics_pipelines();
SELECT coalesce(string_agg(DISTINCT tenant, ','), 'none') FROM duet.health WHERE tenant IS NOT NULL;});
	unlike($out, qr/globex/, "$KIND{$r}: a spoofed duet.tenant shows no globex figure") or diag("$out $err");

	# A cheap leaky function in the reader's WHERE sees only the rows the function returned.
	($rc, $out, $err) = as_role($node, $r, qq{
CREATE FUNCTION pg_temp.peek(t text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
  \$\$ BEGIN RAISE NOTICE 'peek %', t; RETURN true; END \$\$;
$set
SELECT count(*) FROM duet.health WHERE pg_temp.peek(coalesce(tenant, '') || labels::text);
SELECT count(*) FROM duet_metrics_kafka() WHERE pg_temp.peek(consumer);
SELECT count(*) FROM duet_metrics_pipelines() WHERE pg_temp.peek(tenant || pipeline);});
	unlike($err, qr/globex/i, "$KIND{$r}: a leaky function in WHERE sees no globex row") or diag($err);
}

# kadmin's Kafka figures: its own consumers only (the rule of duet.kafka_status).
$node->safe_psql('postgres', q{
SET ROLE kadmin;
SELECT duet_kafka_consume('own_c', 'own-topic', 'public.shared_events', '127.0.0.1:1', 'json');
RESET ROLE;});
my ($rc, $out, $err) = as_role($node, 'kadmin', 'SELECT string_agg(consumer, \',\') FROM duet_metrics_kafka();');
is($out, 'own_c', '(c) kafka admin: duet_metrics_kafka shows its own consumer and not globex\'s') or diag($err);

# The monitoring role sees every tenant's counts...
($rc, $out, $err) = as_role($node, 'mon', q{
SELECT sum(firing) FROM duet_metrics_rules() WHERE tenant = 'globex';
SELECT sum(calls) FROM duet_metrics_ask() WHERE tenant = 'globex';
SELECT count(*) FROM duet_metrics_kafka();
SELECT pending FROM duet_metrics_outbox();
SELECT count(*) FROM duet_metrics_server();
SELECT count(*) FROM duet_metrics_workers() WHERE worker = 'rule scheduler' AND running = 1;
SELECT count(DISTINCT tenant) FROM duet.health WHERE tenant IS NOT NULL;
SELECT string_agg(tenant || '/' || pipeline || ':' || state || ':' || quarantined, ',' ORDER BY tenant, pipeline) FROM duet_metrics_pipelines();
SELECT value FROM duet.health WHERE subsystem = 'pipelines' AND metric = 'quarantined' AND labels->>'pipeline' = 'gx_pipe';});
is($out, "2\n1\n2\n1\n1\n1\n2\nacme/acme_pipe:active:0,globex/gx_fail:error:0,globex/gx_pipe:active:1\n1",
	'duet_monitor: every tenant\'s counts (globex firing 2, asks 1; 2 consumers; outbox; server; workers; pipelines of acme and globex)')
  or diag($err);

# ...and none of their content: the functions carry no text of it, and the tables stay closed.
($rc, $out, $err) = as_role($node, 'mon', q{
SELECT row_to_json(r)::text FROM duet_metrics_rules() r;
SELECT row_to_json(a)::text FROM duet_metrics_ask() a;
SELECT row_to_json(o)::text FROM duet_metrics_outbox() o;
SELECT row_to_json(p)::text FROM duet_metrics_pipelines() p;
SELECT row_to_json(h)::text FROM duet.health h WHERE subsystem <> 'kafka';});
no_canary($out, 'duet_monitor: the metrics carry no alert message, question, SQL, event, transform, expectation, pipeline error or quarantined row');
for my $q (
	[ 'duet.alerts', 'SELECT count(*) FROM duet.alerts' ],
	[ 'duet.alerts_active', 'SELECT count(*) FROM duet.alerts_active' ],
	[ 'duet.alert_history', 'SELECT count(*) FROM duet.alert_history' ],
	[ 'duet.rules', 'SELECT count(*) FROM duet.rules' ],
	[ 'duet.ask_log', 'SELECT count(*) FROM duet.ask_log' ],
	[ 'duet.config', q{SELECT count(*) FROM duet.config WHERE tenant IS NOT NULL} ],
	[ 'duet.pipelines', 'SELECT count(*) FROM duet.pipelines' ],
	[ 'duet.pipeline_expectations', 'SELECT count(*) FROM duet.pipeline_expectations' ],
	[ 'duet.pipeline_quarantine', 'SELECT count(*) FROM duet.pipeline_quarantine' ],
	[ 'duet.pipeline_runs', 'SELECT count(*) FROM duet.pipeline_runs' ],
	[ 'duet.pipeline_status', 'SELECT count(*) FROM duet.pipeline_status' ])
{
	($rc, $out, $err) = as_role($node, 'mon', $q->[1]);
	is($out, '0', "duet_monitor: no row of $q->[0] (row-level security)") or diag($err);
}
for my $t (qw(duet.kafka_dead_letters duet.kafka_outbox duet.kafka_status duet.kafka_consumers duet.ask_cache))
{
	($rc, $out, $err) = as_role($node, 'mon', "SELECT * FROM $t");
	like($err, qr/permission denied/, "duet_monitor: $t is closed");
}
($rc, $out, $err) = as_role($node, 'mon', q{SELECT duet_set_tenant('globex')});
like($err, qr/not a member|permission denied|may not/i, 'duet_monitor: cannot take tenant globex\'s context');

done_testing();

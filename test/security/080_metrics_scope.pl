# Issue 17 (Prometheus metrics): the duet_metrics_*() functions and duet.health are granted to
# PUBLIC and decide themselves what their caller sees. Attacks: a tenant member, a role in no
# tenant and a Kafka admin read the victim tenant's figures (through each function, the view, a
# spoofed tenant setting, a leaky function in WHERE); the monitoring role (duet_monitor) reads
# tenant content (alert messages, rule and ask SQL, dead letters, outbox events, config values).
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
});

# The superuser's view: globex has rules with firing alerts, an ask, a consumer with a dead letter.
my $all = $node->safe_psql('postgres', q{
SELECT (SELECT sum(firing) FROM duet_metrics_rules() WHERE tenant = 'globex'),
       (SELECT sum(calls) FROM duet_metrics_ask() WHERE tenant = 'globex'),
       (SELECT dead_letters FROM duet_metrics_kafka() WHERE consumer = 'canary_globex_7731_c')});
is($all, '2|1|1', 'setup: globex has firing alerts, an ask and a dead letter in the metrics');

my $READ_ALL = q{
SELECT 'rules', row_to_json(r)::text FROM duet_metrics_rules() r
UNION ALL SELECT 'ask', row_to_json(a)::text FROM duet_metrics_ask() a
UNION ALL SELECT 'kafka', row_to_json(k)::text FROM duet_metrics_kafka() k
UNION ALL SELECT 'outbox', row_to_json(o)::text FROM duet_metrics_outbox() o
UNION ALL SELECT 'server', row_to_json(s)::text FROM duet_metrics_server() s
UNION ALL SELECT 'workers', row_to_json(w)::text FROM duet_metrics_workers() w
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
	unlike($out, qr/^outbox\|/m, "$KIND{$r}: no outbox row (monitors and Kafka admins only)")
	  unless $r eq 'kadmin';

	# Spoofing the tenant: a plain SET of the underlying setting, then the functions.
	($rc, $out, $err) = as_role($node, $r, qq{
SET duet.tenant = 'globex';
SELECT set_config('duet.tenant', 'globex', false);
SELECT coalesce(string_agg(tenant, ','), 'none') FROM duet_metrics_rules();
SELECT coalesce(string_agg(tenant, ','), 'none') FROM duet_metrics_ask();
SELECT coalesce(string_agg(DISTINCT tenant, ','), 'none') FROM duet.health WHERE tenant IS NOT NULL;});
	unlike($out, qr/globex/, "$KIND{$r}: a spoofed duet.tenant shows no globex figure") or diag("$out $err");

	# A cheap leaky function in the reader's WHERE sees only the rows the function returned.
	($rc, $out, $err) = as_role($node, $r, qq{
CREATE FUNCTION pg_temp.peek(t text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
  \$\$ BEGIN RAISE NOTICE 'peek %', t; RETURN true; END \$\$;
$set
SELECT count(*) FROM duet.health WHERE pg_temp.peek(coalesce(tenant, '') || labels::text);
SELECT count(*) FROM duet_metrics_kafka() WHERE pg_temp.peek(consumer);});
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
SELECT count(DISTINCT tenant) FROM duet.health WHERE tenant IS NOT NULL;});
is($out, "2\n1\n2\n1\n1\n1\n1", 'duet_monitor: every tenant\'s counts (globex firing 2, asks 1; 2 consumers; outbox; server; workers)')
  or diag($err);

# ...and none of their content: the functions carry no text of it, and the tables stay closed.
($rc, $out, $err) = as_role($node, 'mon', q{
SELECT row_to_json(r)::text FROM duet_metrics_rules() r;
SELECT row_to_json(a)::text FROM duet_metrics_ask() a;
SELECT row_to_json(o)::text FROM duet_metrics_outbox() o;
SELECT row_to_json(h)::text FROM duet.health h WHERE subsystem <> 'kafka';});
no_canary($out, 'duet_monitor: the metrics carry no alert message, question, SQL or event');
for my $q (
	[ 'duet.alerts', 'SELECT count(*) FROM duet.alerts' ],
	[ 'duet.alerts_active', 'SELECT count(*) FROM duet.alerts_active' ],
	[ 'duet.alert_history', 'SELECT count(*) FROM duet.alert_history' ],
	[ 'duet.rules', 'SELECT count(*) FROM duet.rules' ],
	[ 'duet.ask_log', 'SELECT count(*) FROM duet.ask_log' ],
	[ 'duet.config', q{SELECT count(*) FROM duet.config WHERE tenant IS NOT NULL} ])
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

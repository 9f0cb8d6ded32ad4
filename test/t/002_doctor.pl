# Loud failure, never silence: duet_doctor() names what keeps pg_duet from working, with the fix,
# and what needs the background workers warns when they will not serve it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub doctor_rows {
	my ($node, $db) = @_;
	return $node->safe_psql($db, q{SELECT check_name || ' | ' || status || ' | ' || detail || ' | ' || coalesce(hint, '')
	                                 FROM duet_doctor()});
}

# 1. Not preloaded: CREATE EXTENSION works (calc, config need no workers), the workers do not run.
my $bare = PostgreSQL::Test::Cluster->new('bare');
$bare->init;
$bare->start;
$bare->safe_psql('postgres', 'CREATE EXTENSION pg_duet');
my $rows = doctor_rows($bare, 'postgres');
like($rows, qr/^background workers \| error \| pg_duet is not in shared_preload_libraries.*\| Add pg_duet to shared_preload_libraries/m,
	'doctor: not preloaded, with the fix');
like($rows, qr/^rules \| ok /m, 'doctor: no rule, nothing failing');
$bare->safe_psql('postgres', q{
	SELECT duet_tenant_create('acme');
	SELECT duet_set_tenant('acme');
	CREATE TABLE spend (campaign_id int, spend float8);
});
my ($rc, $out, $err) = $bare->psql('postgres', q{SELECT duet_set_tenant('acme');
	SELECT duet_rule_create('q', 'spend > 10', query => 'SELECT 1 AS one, 20::float8 AS spend')});
like($err, qr/WARNING:  query rule "q" will not run: pg_duet is not in shared_preload_libraries/, 'a query rule warns at creation');
like($err, qr/HINT:  Add pg_duet to shared_preload_libraries/, '... with the fix');
($rc, $out, $err) = $bare->psql('postgres', q{SELECT duet_set_tenant('acme');
	SELECT duet_rule_create('r', 'spend > 10', target => 'spend')});
unlike($err, qr/WARNING/, 'a row rule (run by its trigger) does not warn');
like(doctor_rows($bare, 'postgres'), qr/^rules \| error \| query rules are never evaluated/m,
	'doctor: query rules are never evaluated');
($rc, $out, $err) = $bare->psql('postgres', q{BEGIN;
	SELECT duet_kafka_publish('t', 'k', 'v1'); SELECT duet_kafka_publish('t', 'k', 'v2'); COMMIT;});
my @warnings = $err =~ /WARNING:  publishing to the Kafka outbox will not run/g;
is(scalar(@warnings), 1, 'the outbox warns once per transaction, not once per event');
$bare->stop;

# 2. Preloaded, but the database is not served: the warning names the setting to change.
my $node = PostgreSQL::Test::Cluster->new('served');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'\nduet.databases = 'postgres'");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION pg_duet');
like(doctor_rows($node, 'other'),
	qr/^background workers \| error \| database "other" is not in duet\.databases .*\| Add it: ALTER SYSTEM SET duet\.databases = 'postgres,other'/m,
	'doctor: database not served, with the exact ALTER SYSTEM');

# 3. All well: every check is ok.
$node->safe_psql('postgres', 'CREATE EXTENSION pg_duet');
$rows = doctor_rows($node, 'postgres');
like($rows, qr/^background workers \| ok /m, 'doctor: workers serve the database');
like($rows, qr/^worker slots \| ok \| pg_duet needs at least \d+ of max_worker_processes = \d+/m, 'doctor: worker slots counted');
unlike($rows, qr/\| (error|warning) \|/, 'doctor: nothing wrong on a healthy database');

# 4. Too few worker slots.
$node->append_conf('postgresql.conf', "max_worker_processes = 2");
$node->restart;
like(doctor_rows($node, 'postgres'), qr/^worker slots \| error \| pg_duet needs at least 5 background workers; max_worker_processes is 2/m,
	'doctor: too few worker slots');
$node->stop;
done_testing();

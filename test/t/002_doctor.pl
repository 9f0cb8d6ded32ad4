# Loud failure, never silence: duet_doctor() names what keeps pg_duet from working, with the fix,
# and what needs the background workers warns when they will not serve it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time);

# Two loopback ports: one that listens (this process never accepts; the kernel completes the
# handshake) and one that is closed (bound, then released).
my $listener = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
	or die "listen: $!";
my $open_port = $listener->sockport;
my $closed = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
	or die "listen: $!";
my $closed_port = $closed->sockport;
close($closed);

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

# A consumer where no worker runs is "not running", with the reason, not "starting" forever.
$bare->safe_psql('postgres', qq{
	CREATE TABLE ev (v jsonb);
	SELECT duet_kafka_consume('c1', 'events', 'ev', '127.0.0.1:$closed_port, 127.0.0.1:$open_port', format => 'jsonb');
});
is($bare->safe_psql('postgres', q{SELECT state || ' | ' || reason FROM duet.kafka_status WHERE name = 'c1'}),
	'not running | pg_duet is not in shared_preload_libraries, so its background workers do not run',
	'kafka_status: not running, with the reason');
$bare->safe_psql('postgres', q{SELECT duet_kafka_stop('c1')});
is($bare->safe_psql('postgres', q{SELECT state || ' | ' || coalesce(reason, '-') FROM duet.kafka_status WHERE name = 'c1'}),
	'stopped | -', 'kafka_status: a stopped consumer has no reason');
$bare->safe_psql('postgres', q{SELECT duet_kafka_start('c1')});

# Reachability: the closed broker and the closed provider endpoint are named, the open ones not.
$bare->safe_psql('postgres', qq{
	INSERT INTO duet.llm_providers (name, kind, base_url, model) VALUES
		('down', 'openai', 'http://127.0.0.1:$closed_port/v1', 'm'),
		('up', 'openai', 'http://127.0.0.1:$open_port/v1', 'm');
});
my $t0 = time();
$rows = doctor_rows($bare, 'postgres');
my $took = time() - $t0;
like($rows, qr/^kafka consumers \| error \| consumer c1 is not running: pg_duet is not in shared_preload_libraries.*\| Add pg_duet to shared_preload_libraries/m,
	'doctor: the consumer is not running, with the fix');
like($rows, qr/^kafka brokers \| warning \| broker 127\.0\.0\.1:$closed_port of Kafka consumer c1 is unreachable: .*\| Check the consumer's brokers/m,
	'doctor: the closed broker port is unreachable (a warning: another broker answers)');
unlike($rows, qr/broker 127\.0\.0\.1:$open_port /, 'doctor: the listening broker port is reachable');
like($rows, qr/^llm endpoints \| error \| LLM provider down at http:\/\/127\.0\.0\.1:$closed_port\/v1 is unreachable: .*\| Check the provider's base_url/m,
	'doctor: the closed provider endpoint is unreachable');
unlike($rows, qr/LLM provider up /, 'doctor: the listening provider endpoint is reachable');
cmp_ok($took, '<', 10, 'doctor: bounded in time');
$bare->safe_psql('postgres', q{UPDATE duet.llm_providers SET enabled = false WHERE name = 'down'});
$bare->safe_psql('postgres', qq{CREATE TABLE ev2 (v jsonb);
	SELECT duet_kafka_consume('c2', 'events', 'ev2', '127.0.0.1:$closed_port', format => 'jsonb')});
$rows = doctor_rows($bare, 'postgres');
like($rows, qr/^llm endpoints \| ok \| the endpoints of the 1 enabled LLM providers accept connections/m,
	'doctor: only enabled providers are checked');
like($rows, qr/^kafka brokers \| error \| broker 127\.0\.0\.1:$closed_port of Kafka consumer c2 is unreachable/m,
	'doctor: a consumer with no broker reachable is an error');
# Not a superuser nor a Kafka admin: providers and brokers are not read, so not checked.
$bare->safe_psql('postgres', 'CREATE ROLE nobody LOGIN');
$rows = $bare->safe_psql('postgres', q{SET ROLE nobody; SELECT check_name || ' | ' || status FROM duet_doctor()});
like($rows, qr/^llm endpoints \| skipped$/m, 'doctor: providers skipped for a non-superuser');
like($rows, qr/^kafka brokers \| skipped$/m, 'doctor: brokers skipped without duet_kafka_admin');
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
$node->safe_psql('other', q{CREATE TABLE ev (v jsonb);
	SELECT duet_kafka_consume('c1', 'events', 'ev', '127.0.0.1:9', format => 'jsonb')});
is($node->safe_psql('other', q{SELECT state || ' | ' || reason FROM duet.kafka_status}),
	'not running | database "other" is not in duet.databases ("postgres"), so no pg_duet worker serves it',
	'kafka_status: not running in a database the workers do not serve');

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

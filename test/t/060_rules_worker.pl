# Rules: the scheduler worker evaluates query rules on its own every duet.rules_interval, follows
# a reload of the interval, and NOTIFY duet_alerts reaches a listener on Firing and Resolved,
# only for committed changes.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

sub wait_until
{
	my ($cond, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}

my $node = PostgreSQL::Test::Cluster->new('rules_worker');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'pg_duet'",
	"duet.databases = 'postgres'",
	"duet.rules_interval = 1",
	"max_worker_processes = 32") . "\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_duet;
SELECT duet_tenant_create('acme');
CREATE TABLE metrics (campaign_id int, ctr float8);
INSERT INTO metrics VALUES (1, 0.001), (2, 0.5);
CREATE TABLE spend (tenant text DEFAULT 'acme', campaign_id int, spend float8, budget float8);
});

# 1. The scheduler, not us, evaluates the query rule.
$node->safe_psql('postgres', q{
SELECT duet_set_tenant('acme');
SELECT duet_rule_create('low_ctr', 'ctr < 0.01', query => 'SELECT campaign_id, ctr FROM metrics',
                        labels => '{campaign_id}');
});
ok(wait_until(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM duet.alerts WHERE state = 'firing'}) eq '1' }, 30),
	'the scheduler fired the query rule');
is($node->safe_psql('postgres', q{SELECT labels FROM duet.alerts WHERE state = 'firing'}),
	'{"campaign_id": "1"}', 'the low-CTR campaign fires');
$node->safe_psql('postgres', 'UPDATE metrics SET ctr = 0.5');
ok(wait_until(sub {
	$node->safe_psql('postgres', q{SELECT state FROM duet.alerts WHERE labels = '{"campaign_id": "1"}'}) eq 'resolved' }, 30),
	'the scheduler resolved it on a later run');
my $evals = $node->safe_psql('postgres', q{SELECT count(DISTINCT last_eval_at) >= 1 FROM duet.alerts});
is($evals, 't', 'evaluations recorded');

# The interval follows a reload: 0 turns the scheduler off.
$node->safe_psql('postgres', q{ALTER SYSTEM SET duet.rules_interval = 0; SELECT pg_reload_conf();});
usleep(2_500_000);
my $last = $node->safe_psql('postgres', 'SELECT max(last_eval_at) FROM duet.alerts');
$node->safe_psql('postgres', 'UPDATE metrics SET ctr = 0.001');
usleep(3_000_000);
is($node->safe_psql('postgres', 'SELECT max(last_eval_at) FROM duet.alerts'), $last, 'interval 0: no evaluation');
$node->safe_psql('postgres', q{ALTER SYSTEM SET duet.rules_interval = 1; SELECT pg_reload_conf();});
ok(wait_until(sub {
	$node->safe_psql('postgres', q{SELECT state FROM duet.alerts WHERE labels = '{"campaign_id": "1"}'}) eq 'firing' }, 30),
	'interval back to 1 s: evaluating again');
$node->safe_psql('postgres', q{ALTER SYSTEM SET duet.rules_interval = 0; SELECT pg_reload_conf();});

# A database without the extension is skipped quietly; the scheduler keeps serving the others.
$node->safe_psql('postgres', 'CREATE DATABASE plain');
$node->safe_psql('postgres', q{ALTER SYSTEM SET duet.databases = 'plain, postgres'; ALTER SYSTEM SET duet.rules_interval = 1; SELECT pg_reload_conf();});
$node->safe_psql('postgres', 'UPDATE metrics SET ctr = 0.5');
ok(wait_until(sub {
	$node->safe_psql('postgres', q{SELECT state FROM duet.alerts WHERE labels = '{"campaign_id": "1"}'}) eq 'resolved' }, 30),
	'a database without pg_duet does not stop the scheduler');

# History older than duet.rules_history_retention days is pruned after scheduled evaluations.
$node->safe_psql('postgres', q{UPDATE duet.alert_transitions SET at = now() - interval '91 days'
                                WHERE id = (SELECT min(id) FROM duet.alert_transitions)});
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM duet.alert_transitions');
ok(wait_until(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM duet.alert_transitions WHERE at < now() - interval '90 days'}) eq '0' }, 30),
	'old history pruned');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM duet.alert_transitions'), '>=', $before - 1,
	'recent history kept');
$node->safe_psql('postgres', q{ALTER SYSTEM SET duet.rules_interval = 0; SELECT pg_reload_conf();});

# 2. NOTIFY duet_alerts: a listener gets Firing and Resolved of committed changes only.
$node->safe_psql('postgres', q{
SELECT duet_set_tenant('acme');
SELECT duet_rule_create('over_budget', 'spend > budget', target => 'spend', labels => '{campaign_id}',
                        message => 'campaign {campaign_id} spent {spend}');
});
my ($in, $out, $err) = ('', '', '');
my $listener = IPC::Run::start([ 'psql', '-X', '-q', '-d', $node->connstr('postgres') ], \$in, \$out, \$err);
$in .= "LISTEN duet_alerts;\nSELECT 'listening';\n";
ok(wait_until(sub { $listener->pump_nb; $out =~ /listening/ }, 30), 'listener ready');

$node->safe_psql('postgres', q{BEGIN; INSERT INTO spend (campaign_id, spend, budget) VALUES (7, 900, 100); ROLLBACK;});
$node->safe_psql('postgres', q{INSERT INTO spend (campaign_id, spend, budget) VALUES (8, 900, 100), (9, 1, 100);});
$node->safe_psql('postgres', q{INSERT INTO spend (campaign_id, spend, budget) VALUES (8, 1, 100);});
# psql prints notifications when it next reads from the server
my $poll = sub { $in .= "SELECT 'poll';\n"; $listener->pump_nb; () = $out =~ /Asynchronous notification "duet_alerts"/g };
ok(wait_until(sub { $poll->() >= 2 }, 30), 'two notifications arrived');
usleep(300_000);
$poll->();
my @payloads = $out =~ /with payload "(.*?)" received/g;
is(scalar(@payloads), 2, 'exactly two: firing and resolved, nothing from the rolled-back insert');
like($payloads[0], qr/^\d+$/, 'the payload is only an id (the channel is readable by every role)');
# The id is read back through the history view, under the reader's row-level security.
my $read_back = sub {
	$node->safe_psql('postgres', "SELECT to_state || ' ' || labels::text || ' ' || coalesce(message, '') "
		. "FROM duet.alert_history WHERE id = $_[0]");
};
like($read_back->($payloads[0]), qr/^firing \{"campaign_id": "8"\} campaign 8 spent 900$/,
	'first is firing, for campaign 8, with the rendered message');
like($read_back->($payloads[1]), qr/^resolved /, 'then resolved');
unlike($out, qr/"campaign_id": "7"/, 'no notification for the rolled-back row');
$in .= "\\q\n";
$listener->finish;

# 3. Concurrent inserts flipping the same alerts in random row orders queue on the alert rows in
# one (key) order: no deadlock, no failed insert.
$node->pgbench('-n -c 4 -j 2 -t 40', 0,
	[ qr{processed: 160/160} ], [ qr{^$} ],
	'concurrent inserts into a table with row rules never fail',
	{ 'rules_concurrent' => q{
INSERT INTO spend (campaign_id, spend, budget)
SELECT g, CASE WHEN random() < 0.5 THEN 900 ELSE 1 END, 100 FROM generate_series(100, 130) g ORDER BY random();
} });
is($node->safe_psql('postgres', q{SELECT count(*) FROM spend WHERE campaign_id >= 100}), '4960', 'every row inserted');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.alerts WHERE (labels->>'campaign_id')::int >= 100 AND state = 'error'}),
	'0', 'no instance in error');

$node->stop;
done_testing();

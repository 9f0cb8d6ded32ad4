# Housekeeping with pg_cron (Debian's postgresql-15-cron): a cron job in one database prunes
# pg_duet's histories in another through cron.schedule_in_database, calling the prune functions
# (duet_config_history_prune, duet_rules_prune, duet_ask_prune) within a bounded wait.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
# duet.databases does not name "app", so no pg_duet worker prunes there: only the cron job does.
$node->append_conf('postgresql.conf', qq{shared_preload_libraries = 'pg_cron,pg_duet'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 20
duet.databases = 'postgres'
duet.config_history_retention = 1
duet.rules_history_retention = '1d'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
$node->safe_psql('app', q{
	CREATE EXTENSION pg_duet;
	SELECT duet_tenant_create('acme');
	SELECT duet_config_set_default('cron.k', '0');
	SELECT duet_set_tenant('acme');
	SELECT duet_config_set('cron.k', '1');
	SELECT duet_config_set('cron.k', '2');
	CREATE TABLE spend (campaign_id int, spend float8);
	SELECT duet_rule_create('big', 'spend > 10', target => 'spend');
	INSERT INTO spend VALUES (1, 20);
});
# Make the first config version and the alert's transitions old enough to be pruned.
$node->safe_psql('app', q{
	UPDATE duet.config_history SET changed_at = now() - interval '1 day'
	 WHERE key = 'cron.k' AND tenant = 'acme' AND version = (SELECT min(version) FROM duet.config_history WHERE key = 'cron.k' AND tenant = 'acme');
	UPDATE duet.alert_transitions SET at = now() - interval '2 days';
});
my $history = $node->safe_psql('app', q{SELECT count(*) FROM duet.config_history WHERE key = 'cron.k' AND tenant = 'acme'});
my $transitions = $node->safe_psql('app', 'SELECT count(*) FROM duet.alert_transitions');
cmp_ok($transitions, '>', 0, 'the rule fired: there is alert history to prune');

# The prune functions are not PUBLIC: a cron job runs them as a superuser (or a granted role).
my ($rc, $out, $err) = $node->psql('app', 'CREATE ROLE plain LOGIN; SET ROLE plain; SELECT duet_rules_prune()');
like($err, qr/permission denied for function duet_rules_prune/, 'duet_rules_prune is not PUBLIC');

# pg_cron 1.5 and later schedule in seconds; Debian 12's 1.4 in minutes.
my $version = $node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'});
my $schedule = ($version =~ /^1\.(\d+)/ && $1 >= 5) || $version =~ /^[2-9]/ ? '5 seconds' : '* * * * *';
note "pg_cron $version, schedule '$schedule'";
my $job = $node->safe_psql('postgres', qq{SELECT cron.schedule_in_database('duet-prune', '$schedule',
	'SELECT duet_config_history_prune(), duet_rules_prune(), duet_ask_prune()', 'app')});
like($job, qr/^\d+$/, 'cron.schedule_in_database accepts the prune job');

my $deadline = time() + 150;
my $runs = '';
while (time() < $deadline)
{
	$runs = $node->safe_psql('postgres', qq{SELECT status || ' ' || coalesce(return_message, '')
		FROM cron.job_run_details WHERE jobid = $job AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1});
	last if $runs ne '';
	usleep(500_000);
}
like($runs, qr/^succeeded/, 'the cron job ran the prune functions within the bounded wait');
is($node->safe_psql('app', 'SELECT count(*) FROM duet.alert_transitions'), '0',
	'duet_rules_prune removed the alert history past duet.rules_history_retention');
is($node->safe_psql('app', q{SELECT count(*) FROM duet.config_history WHERE key = 'cron.k' AND tenant = 'acme'}),
	$history - 1, 'duet_config_history_prune removed the old version, kept the latest');
$node->safe_psql('postgres', qq{SELECT cron.unschedule($job)});
$node->stop;
done_testing();

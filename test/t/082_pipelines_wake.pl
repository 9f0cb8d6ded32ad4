# A commit on a pipeline source while a runner's pass is under way starts another pass. With
# duet.pipeline_interval = 0 only commits start runs, so a wake that went missing would leave the
# row where it is for good: the scheduler, waiting for the runner to end, had its latch reset by
# that wait (WaitForBackgroundWorkerShutdown), and a wake-up set meanwhile was gone (one run of the
# red-team test 085 in CI). Pipeline "quick" runs first in a pass (lower id); "slow" takes ~2 s per
# batch; the row for "quick" is committed while "slow" runs, after "quick" had its turn.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kafka_node('pipelines_wake', 'duet.pipeline_interval = 0', 'duet.rules_interval = 0');
$node->safe_psql('postgres', q{
SELECT duet_tenant_create('acme');
SELECT duet_set_tenant('acme');
CREATE TABLE quick_src (id int PRIMARY KEY, v int);
CREATE TABLE quick_dst (id int PRIMARY KEY, v int);
CREATE TABLE slow_src (id int PRIMARY KEY, v int);
CREATE TABLE slow_dst (id int PRIMARY KEY, v int);
SELECT duet_pipeline_create('quick', 'quick_src', 'quick_dst', '{"id": "id", "v": "v"}',
    order_by => 'id', key => '{id}', mode => 'upsert');
SELECT duet_pipeline_create('slow', 'slow_src', 'slow_dst',
    '{"id": "id", "v": "(SELECT v FROM pg_catalog.pg_sleep(0.5))"}',
    order_by => 'id', key => '{id}', mode => 'upsert');
});
cmp_ok($node->safe_psql('postgres', q{SELECT id FROM duet.pipelines WHERE name = 'quick'}), '<',
	$node->safe_psql('postgres', q{SELECT id FROM duet.pipelines WHERE name = 'slow'}),
	'"quick" has its turn first in a pass');

for my $round (1 .. 3)
{
	$node->safe_psql('postgres', "INSERT INTO slow_src SELECT g, g FROM generate_series($round * 10, $round * 10 + 3) g");
	ok(wait_until(sub { $node->safe_psql('postgres',
				q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_duet pipeline runner' AND wait_event = 'PgSleep'}) ne '0' }, 30),
		"round $round: the runner is in the slow pipeline's batch");
	$node->safe_psql('postgres', "INSERT INTO quick_src VALUES ($round, $round)");
	ok(wait_until(sub { $node->safe_psql('postgres', "SELECT count(*) FROM quick_dst WHERE id = $round") eq '1' }, 30),
		"round $round: the row committed during the pass is run by the next pass");
	ok(wait_until(sub { $node->safe_psql('postgres', 'SELECT count(*) FROM slow_dst') eq 4 * $round }, 30),
		"round $round: the slow pipeline's rows landed too");
}
$node->stop;
done_testing();

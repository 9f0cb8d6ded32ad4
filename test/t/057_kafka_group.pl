# Several servers, one consumer group (duet.kafka_group_mode, issue 12): two PostgreSQL clusters on
# one machine against one dev broker. The consumers named "shared" on both join the Kafka consumer
# group pg_duet.shared and split the topic's partitions; the offsets stay in each database with its
# rows; at every rebalance (a consumer stopped, started again) the partitions are handed over
# cleanly, and every message lands exactly once across the union of the two databases.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker('shared:6', 'gretain:1');
my $b = $broker->{bootstrap};
my @nodes = map { kafka_node("server$_", 'duet.kafka_group_mode = on') } 1 .. 2;
for my $n (@nodes)
{
	$n->safe_psql('postgres', "CREATE TABLE t (n int, _partition int, _offset bigint);
		SELECT duet_kafka_consume('shared', 'shared', 't', '$b', 'json', batch_size => 100, flush_interval_ms => 50)");
}
sub msgs { my ($from, $to) = @_; return [ map { "{\"n\": $_}" } $from .. $to ]; }
sub counts { return map { $_->safe_psql('postgres', 'SELECT count(*) FROM t') } @nodes; }
# Every (partition, offset) of both databases: how many rows, how many distinct.
sub union_check
{
	my %seen;
	my $rows = 0;
	for my $n (@nodes)
	{
		for (split /\n/, $n->safe_psql('postgres', q{SELECT _partition || ':' || _offset FROM t}))
		{
			$rows++;
			$seen{$_}++;
		}
	}
	return "$rows|" . scalar(keys %seen);
}
sub wait_union
{
	my ($want, $name) = @_;
	my $got;
	ok(wait_until(sub { $got = union_check(); $got eq "$want|$want" }, 120), $name) or diag("rows|distinct: $got");
}
sub assigned_log
{
	my ($n, $parts) = @_;
	return wait_until(sub { slurp_file($n->logfile) =~ /Kafka consumer "shared" group 0 was assigned $parts partitions of topic "shared" by consumer group "pg_duet.shared"/ }, 90);
}

ok(assigned_log($nodes[0], 3) && assigned_log($nodes[1], 3), 'the two servers split the six partitions, three each');
produce($broker, 'shared', msgs(1, 600));
wait_union(600, 'every message once across the two databases');
my @c = counts();
ok($c[0] > 0 && $c[1] > 0, "both servers ingest their share ($c[0] + $c[1])");

# A clean hand-over: the consumer stops on server 1 (its member leaves, committing its offsets to
# the group first); server 2 gets all six partitions and starts where server 1 stopped.
my $log2 = -s $nodes[1]->logfile;
$nodes[0]->safe_psql('postgres', "SELECT duet_kafka_stop('shared')");
produce($broker, 'shared', msgs(601, 1200));
ok(wait_until(sub { substr(slurp_file($nodes[1]->logfile), $log2) =~ /group 0 was assigned 6 partitions/ }, 90),
	'server 2 takes over all partitions');
wait_union(1200, 'after the hand-over: every message once, none repeated by the new owner');

# And back: server 1 joins again, gets three partitions, resumes at the later of the group's and its
# own offsets.
my $log1 = -s $nodes[0]->logfile;
$nodes[0]->safe_psql('postgres', "SELECT duet_kafka_start('shared')");
ok(wait_until(sub { substr(slurp_file($nodes[0]->logfile), $log1) =~ /group 0 was assigned 3 partitions/ }, 90),
	'server 1 rejoins and gets its share back');
produce($broker, 'shared', msgs(1201, 1800));
wait_union(1800, 'after the second hand-over: every message once');
my %n;
for my $node (@nodes) { $n{$_}++ for split /\n/, $node->safe_psql('postgres', 'SELECT n FROM t'); }
is(scalar(grep { $n{$_} != 1 } 1 .. 1800), 0, 'each of the 1800 values exactly once');

# A crash of server 1 (SIGKILL of its postmaster while it ingests: no revoke, no last commit to
# the group), then its restart: its partitions start again at the later of the group's committed
# offsets and its database's. Nothing is lost; what is repeated is bounded by the batches committed
# in server 1's database whose asynchronous group commit was not yet acknowledged: the last one or
# two. Meanwhile server 2 takes them over once the crashed member's session expires (its pool
# worker ended with its postmaster, so nothing heartbeats for it).
my $log1b = -s $nodes[0]->logfile;
my $log2b = -s $nodes[1]->logfile;
produce($broker, 'shared', msgs(1801, 2400));
my $pid1 = $nodes[0]->{_pid};
$nodes[0]->kill9;    # while it ingests those
ok(wait_until(sub { !kill(0, $pid1) }, 30), 'server 1 killed');
produce($broker, 'shared', msgs(2401, 3000));
ok(wait_until(sub { substr(slurp_file($nodes[1]->logfile), $log2b) =~ /group 0 was assigned 6 partitions/ }, 90),
	'server 2 takes over all partitions once server 1\'s member expires (session.timeout.ms)');
ok(wait_until(sub { $nodes[0]->start(fail_ok => 1) }, 60), 'server 1 restarted');
ok(wait_until(sub { substr(slurp_file($nodes[0]->logfile), $log1b) =~ /group 0 was assigned 3 partitions/ }, 90),
	'server 1 rejoins the group after its crash');
my ($rows, $distinct);
ok(wait_until(sub { ($rows, $distinct) = split /\|/, union_check(); $distinct == 3000 }, 120),
	'after the crash: no message lost') or diag("rows|distinct: $rows|$distinct");
cmp_ok($rows - $distinct, '<=', 2 * 100, "repeated after the crash: " . ($rows - $distinct) . " (bound: the last batches of 100 whose group commit was not acknowledged)");

# An offset out of range in group mode (retention deleted what a stopped member had not read):
# the gap is recorded, the partition resumes at the low watermark and goes on. A partition that
# librdkafka stopped on the error cannot be sought; it is assigned again.
my $g = $nodes[1];
$g->safe_psql('postgres', "CREATE TABLE gretain (n int, pad text, _offset bigint);
	SELECT duet_kafka_consume('gretain', 'gretain', 'gretain', '$b', 'json', batch_size => 2000, flush_interval_ms => 50)");
produce($broker, 'gretain', [ map { "{\"n\": $_}" } 1 .. 100 ]);
wait_for($g, 'SELECT count(*) FROM gretain', '100', 'group retention: first 100 messages ingested', 90);
$g->safe_psql('postgres', "SELECT duet_kafka_stop('gretain')");
wait_for($g, q{SELECT state, workers FROM duet.kafka_status WHERE name = 'gretain'}, 'stopped|0', 'group retention: consumer stopped', 30);
my $low = outrun_retention($broker, 'gretain', 101, 7100);
ok($low =~ /^\d+$/ && $low > 100, "group retention: low watermark $low > stored offset 100");
$g->safe_psql('postgres', "SELECT duet_kafka_start('gretain')");
my $expect = 100 + (7100 - $low);
wait_for($g, 'SELECT count(*), count(DISTINCT _offset) FROM gretain', "$expect|$expect",
	"group retention: resumes at the low watermark ($expect rows)", 90);
is($g->safe_psql('postgres', q{SELECT from_offset, to_offset, messages FROM duet.kafka_gaps WHERE consumer = 'gretain'}),
	"100|$low|" . ($low - 100), 'group retention: the gap is recorded');
produce($broker, 'gretain', [ map { "{\"n\": $_}" } 7101 .. 7110 ]);
wait_for($g, 'SELECT count(*) FROM gretain', $expect + 10, 'group retention: new messages follow', 30);

$_->stop for @nodes;
stop_broker($broker);
done_testing();

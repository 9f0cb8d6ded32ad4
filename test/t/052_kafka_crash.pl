# Exactly once under crashes: 200,000 messages with the postmaster SIGKILLed and restarted twice
# mid-ingest; a consumer worker SIGKILLed mid-batch; the outbox across a postmaster crash
# (published iff committed, checked with kcat).
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $broker = start_broker('big:16', 'slow:4', 'alerts:3');
my $boot = $broker->{bootstrap};
my $node = kafka_node('crash', 'restart_after_crash = on', "duet.outbox_brokers = '$boot'");

# Restart after kill9: the old children must be gone before shared memory can be reused.
sub crash_and_restart
{
	my $pid = $node->{_pid};
	$node->kill9;
	wait_until(sub { !kill(0, $pid) }, 30) or die "postmaster $pid survived SIGKILL";
	my $up = wait_until(sub { $node->start(fail_ok => 1) }, 60);
	die "node did not restart after SIGKILL" unless $up;
}

$node->safe_psql('postgres', q{
CREATE TABLE big (n int NOT NULL, payload text, _partition int, _offset bigint);
CREATE TABLE slow (n int NOT NULL, _partition int, _offset bigint);
-- Slow batches (0.3 s in a statement trigger), so a kill lands inside one.
CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
CREATE TRIGGER slow_batch AFTER INSERT ON slow FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
});

# 1. 200,000 messages in four rounds of 50,000, spread evenly over 16 partitions (the mock
#    broker keeps only ~5 MiB per partition); SIGKILL the postmaster during rounds 1 and 3.
my $total = 200_000;
sub produce_round
{
	my ($round) = @_;
	my $from = $round * 50_000 + 1;
	for my $p (0 .. 15)
	{
		produce($broker, 'big', [ map { "{\"n\": $_, \"payload\": \"event-$_-abcdefghij\"}" } grep { $_ % 16 == $p } $from .. $from + 49_999 ],
			partition => $p);
	}
}
$node->safe_psql('postgres', "SELECT duet_kafka_consume('big', 'big', 'big', '$boot', 'json', batch_size => 1000, flush_interval_ms => 100, parallelism => 2)");
my @at_kill;
for my $round (0 .. 3)
{
	produce_round($round);
	next unless $round == 0 || $round == 2;
	my $produced = ($round + 1) * 50_000;
	my $seen;
	ok(wait_until(sub { $seen = $node->safe_psql('postgres', 'SELECT count(*) FROM big'); $seen >= $produced - 45_000 }, 120),
		"round $round being ingested");
	crash_and_restart();
	push @at_kill, "$seen/$produced";
}
note("rows seen just before each kill / messages produced: @at_kill");
wait_for($node, 'SELECT count(*) FROM big', "$total", 'every message ingested after two postmaster kills', 240);
is($node->safe_psql('postgres', 'SELECT count(DISTINCT n), count(DISTINCT (_partition, _offset)) FROM big'),
	"$total|$total", 'each message exactly once (distinct values and offsets)');
is($node->safe_psql('postgres', q{SELECT sum(committed_offset), sum(high_watermark), sum(lag) FROM duet.kafka_partition_status WHERE name = 'big'}),
	"$total|$total|0", 'committed offsets match the rows');

# 2. A consumer worker SIGKILLed inside a batch: the server resets, the batch is redone once.
produce($broker, 'slow', [ map { "{\"n\": $_}" } 1 .. 20_000 ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('slow', 'slow', 'slow', '$boot', 'json', batch_size => 1000, flush_interval_ms => 100)");
my $victim;
ok(wait_until(sub {
	$victim = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_duet kafka pool' AND query LIKE 'ingesting % of consumer slow %' AND state = 'active'});
	$victim ne '' }, 60), 'caught the worker inside a batch');
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM slow');
kill 'KILL', $victim;
ok(wait_until(sub { my ($rc) = $node->psql('postgres', 'SELECT 1'); $rc == 0 }, 60), 'server back after the worker crash');
note("rows before the worker kill: $before");
wait_for($node, 'SELECT count(*), count(DISTINCT n), count(DISTINCT (_partition, _offset)) FROM slow', '20000|20000|20000', 'worker crash: every message exactly once', 120);

# 3. Outbox across a postmaster crash: committed events published, rolled-back and in-flight never.
$node->safe_psql('postgres', q{
SELECT duet_kafka_publish('alerts', 'c' || i, jsonb_build_object('i', i)) FROM generate_series(1, 3000) i;
BEGIN; SELECT duet_kafka_publish('alerts', 'r' || i, 'rolled back') FROM generate_series(1, 100) i; ROLLBACK;
});
my ($in, $out, $err) = ('', '', '');
my $h = IPC::Run::start([ 'psql', '-X', '-d', $node->connstr('postgres') ], \$in, \$out, \$err);
$in .= "BEGIN; SELECT count(duet_kafka_publish('alerts', 'inflight', 'never')) FROM generate_series(1, 100);\n";
ok(wait_until(sub { $h->pump_nb; $out =~ /100/ }, 30), 'an outbox transaction is in flight');
crash_and_restart();
$h->kill_kill;
$node->safe_psql('postgres', q{SELECT duet_kafka_publish('alerts', 'c' || i, jsonb_build_object('i', i)) FROM generate_series(3001, 4000) i});
wait_for($node, 'SELECT count(*) FILTER (WHERE sent_at IS NOT NULL), count(*) FROM duet.kafka_outbox', '4000|4000', 'every committed outbox row sent', 120);
my $committed_ids = $node->safe_psql('postgres', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM duet.kafka_outbox');
my $consumed = `kcat -C -b $boot -t alerts -e -q -f '%k %h\\n' 2>/dev/null`;
my (%ids, $dups, $bad);
for my $line (split /\n/, $consumed)
{
	my ($key, $hdr) = split / /, $line, 2;
	$bad++ if $key !~ /^c\d+$/;
	my ($id) = $hdr =~ /duet-outbox-id=(\d+)/;
	$dups++ if $ids{$id}++;
}
is($bad // 0, 0, 'no rolled-back or in-flight event published');
is(join(',', sort { $a <=> $b } keys %ids), $committed_ids, 'every committed event published');
note('duplicates re-sent after the crash: ' . ($dups // 0));

$node->stop;
stop_broker($broker);
done_testing();

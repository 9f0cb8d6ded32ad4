# Consumers of one topic at one position share one fetch (issue 12, kafka_lane.c): one librdkafka
# client for all of them (duet.kafka_pool.clients), every message once in every target. A consumer
# that falls behind (its batches fail) reads in a client of its own while the others go on, and
# moves back once it has caught up; a consumer started behind them (from the earliest offset,
# three partition groups) does the same; another owner's consumers never share the client, nor
# does a consumer with another batch size share the lane.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker('shared:3');
my $b = $broker->{bootstrap};
my $node = kafka_node('shared', 'duet.kafka_pool_size = 1');
$node->safe_psql('postgres', q{
CREATE ROLE feeder LOGIN IN ROLE duet_kafka_admin;
CREATE ROLE other_feeder LOGIN IN ROLE duet_kafka_admin;
INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_consume)
    VALUES ('shared', 'feeder', true), ('shared', 'other_feeder', true);
CREATE SCHEMA f AUTHORIZATION feeder;
CREATE SCHEMA o AUTHORIZATION other_feeder;
});
my @names = map { "s$_" } 1 .. 4;
# Batches of 10: the inboxes fill and empty many times per round of messages (lane_pump's room).
$node->safe_psql('postgres', join("\n", 'SET ROLE feeder;', map {
	"CREATE TABLE f.$_ (n int); SELECT duet_kafka_consume('$_', 'shared', 'f.$_', '$b', 'json', flush_interval_ms => 50, batch_size => 10);" } @names));

my $next = 1;
sub produce_n
{
	my ($count) = @_;
	my @lines = map { "{\"n\": $_}" } $next .. $next + $count - 1;
	# spread over the three partitions
	for my $p (0 .. 2)
	{
		produce($broker, 'shared', [ grep { defined } @lines[ map { $_ * 3 + $p } 0 .. int(@lines / 3) ] ], partition => $p);
	}
	$next += $count;
}
# "count distinct" of every named table, one line: exactly-once is count = distinct = produced.
sub counts
{
	my (@tables) = @_;
	return join(' ', map { $node->safe_psql('postgres', "SELECT count(*) || '/' || count(DISTINCT n) FROM f.$_") } @tables);
}
sub clients { $node->safe_psql('postgres', 'SELECT clients FROM duet.kafka_pool WHERE pid IS NOT NULL') }

wait_for($node, q{SELECT count(*) FROM duet.kafka_status WHERE state = 'idle'}, '4', 'four consumers of one topic run');
wait_for($node, 'SELECT clients FROM duet.kafka_pool WHERE pid IS NOT NULL', '2',
	'they share one shared client (two librdkafka handles: fetch, lookups): one fetch of the topic');

produce_n(300);
wait_for($node, "SELECT min(n) FROM (SELECT count(*) AS n FROM f.s1 UNION ALL SELECT count(*) FROM f.s2
                 UNION ALL SELECT count(*) FROM f.s3 UNION ALL SELECT count(*) FROM f.s4) x", '300',
	'every consumer ingests every message of the shared fetch');
is(counts(@names), join(' ', ('300/300') x 4), 'each message once in each table');
is(clients(), '2', 'still one shared client');

# ---- s2's batches fail (its owner cannot insert): it leaves, the others go on ----
$node->safe_psql('postgres', 'SET ROLE feeder; REVOKE INSERT ON f.s2 FROM feeder');
produce_n(150);
wait_for($node, "SELECT min(n) FROM (SELECT count(*) AS n FROM f.s1 UNION ALL SELECT count(*) FROM f.s3
                 UNION ALL SELECT count(*) FROM f.s4) x", '450', 'the others ingest while s2 fails');
is(counts('s2'), '300/300', 's2 has nothing of what it could not write');
wait_for($node, q{SELECT last_error LIKE '%permission denied%' FROM duet.kafka_status WHERE name = 's2'}, 't',
	's2 says why it stands still');
wait_for($node, 'SELECT clients FROM duet.kafka_pool WHERE pid IS NOT NULL', '4',
	's2 reads from its committed offsets in a client of its own');

$node->safe_psql('postgres', 'SET ROLE feeder; GRANT INSERT ON f.s2 TO feeder');
wait_for($node, 'SELECT count(*) FROM f.s2', '450', 's2 catches up once it can write', 90);
wait_for($node, 'SELECT clients FROM duet.kafka_pool WHERE pid IS NOT NULL', '2',
	'caught up, s2 moves back into the shared fetch; its client closes', 90);
produce_n(30);
wait_for($node, "SELECT min(n) FROM (SELECT count(*) AS n FROM f.s1 UNION ALL SELECT count(*) FROM f.s2
                 UNION ALL SELECT count(*) FROM f.s3 UNION ALL SELECT count(*) FROM f.s4) x", '480',
	'all four ingest what follows');
is(counts(@names), join(' ', ('480/480') x 4), 'each message once in each table across the move');

# ---- a consumer behind the others: three partition groups from the earliest offset ----
$node->safe_psql('postgres', "SET ROLE feeder; CREATE TABLE f.s5 (n int);
    SELECT duet_kafka_consume('s5', 'shared', 'f.s5', '$b', 'json', flush_interval_ms => 50, batch_size => 10, parallelism => 3)");
wait_for($node, 'SELECT count(*) FROM f.s5', '480', 'the late consumer reads the topic from the start', 90);
wait_for($node, 'SELECT clients FROM duet.kafka_pool WHERE pid IS NOT NULL', '2',
	'caught up, its three partition groups join the shared fetch', 90);
produce_n(20);
wait_for($node, "SELECT min(n) FROM (SELECT count(*) AS n FROM f.s1 UNION ALL SELECT count(*) FROM f.s2
                 UNION ALL SELECT count(*) FROM f.s3 UNION ALL SELECT count(*) FROM f.s4
                 UNION ALL SELECT count(*) FROM f.s5) x", '500', 'five consumers, one fetch');
is(counts(@names, 's5'), join(' ', ('500/500') x 5), 'each message once in each table');

# ---- another owner's consumer of the same topic never shares the client ----
$node->safe_psql('postgres', "SET ROLE other_feeder; CREATE TABLE o.t (n int);
    SELECT duet_kafka_consume('o1', 'shared', 'o.t', '$b', 'json', flush_interval_ms => 50)");
wait_for($node, 'SELECT count(*) FROM o.t', '500', "another owner's consumer reads the topic");
wait_for($node, 'SELECT clients FROM duet.kafka_pool WHERE pid IS NOT NULL', '4',
	"it has a client of its own (one tenant's client is never another's)");
# ---- nor does a consumer with another batch size: a lane's inboxes are one batch long ----
$node->safe_psql('postgres', "SET ROLE feeder; CREATE TABLE f.s6 (n int);
    SELECT duet_kafka_consume('s6', 'shared', 'f.s6', '$b', 'json', flush_interval_ms => 50, batch_size => 7)");
wait_for($node, 'SELECT count(*) FROM f.s6', '500', 'a consumer with batches of 7 reads the topic', 90);
wait_for($node, 'SELECT clients FROM duet.kafka_pool WHERE pid IS NOT NULL', '6',
	'it reads in a client of its own, not in the lane of batches of 10');
is($node->safe_psql('postgres', 'SELECT count(*) FROM duet.kafka_dead_letters'), '0', 'no dead letters');

# ---- a dropped follower leaves the others reading ----
$node->safe_psql('postgres', "SELECT duet_kafka_drop('s1')");
produce_n(10);
wait_for($node, "SELECT min(n) FROM (SELECT count(*) AS n FROM f.s2 UNION ALL SELECT count(*) FROM f.s3
                 UNION ALL SELECT count(*) FROM f.s4 UNION ALL SELECT count(*) FROM f.s5
                 UNION ALL SELECT count(*) FROM f.s6) x", '510',
	'the followers of a dropped consumer go on');
is(counts('s2', 's3', 's4', 's5', 's6'), join(' ', ('510/510') x 5), 'each message once');

$node->stop;
stop_broker($broker);
done_testing();

# New partitions of a topic are read without a restart (issue 12, "Operate it"). The dev broker
# (librdkafka's mock cluster) cannot add partitions to a topic, so the topic is created with 4 and
# the consumer reaches it through test/kafka/metadata_proxy.py, which shows only the first 2 in
# every Metadata response until the test "adds" the other 2. Messages already in the new
# partitions are read from their first offset, each exactly once, and new ones follow.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker('grow:4');
my $visible = "$broker->{dir}/visible";
my $port_file = "$broker->{dir}/proxy_port";
PostgreSQL::Test::Utils::append_to_file($visible, "2\n");
my $proxy = IPC::Run::start(['python3', "$ENV{DUET_ROOT}/test/kafka/metadata_proxy.py",
	$broker->{bootstrap}, 'grow', $visible, $port_file], '>', "$broker->{dir}/proxy.out", '2>', "$broker->{dir}/proxy.err");
END { local $?; $proxy->kill_kill if $proxy }
ok(wait_until(sub { -s $port_file }, 30), 'the metadata proxy listens');
my $proxied = '127.0.0.1:' . slurp_file($port_file);

my $node = kafka_node('new_partitions');
$node->safe_psql('postgres', q{CREATE TABLE grow (p int, n int, _partition int, _offset bigint)});

# 5 messages in each of the 4 partitions before the consumer starts
for my $p (0 .. 3)
{
	produce($broker, 'grow', [ map { "{\"p\": $p, \"n\": $_}" } 1 .. 5 ], partition => $p);
}
$node->safe_psql('postgres', "SELECT duet_kafka_consume('grow', 'grow', 'grow', '$proxied', 'json', flush_interval_ms => 100)");
wait_for($node, 'SELECT count(*) FROM grow', '10', 'the 10 messages of the 2 visible partitions land');
usleep(2_000_000);
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT _partition::text, ',' ORDER BY _partition::text) FROM grow}),
	'0,1', 'only partitions 0 and 1 are read');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.kafka_partition_status WHERE name = 'grow'}),
	'2', 'the consumer knows 2 partitions');

# the topic "grows": the next metadata lookup (every 30 s) finds partitions 2 and 3
my $log_offset = -s $node->logfile;
open(my $fh, '>', $visible) or die "write $visible: $!";
print $fh "4\n";
close $fh;
wait_for($node, 'SELECT count(*) FROM grow', '20', 'the messages already in the new partitions land, without a restart', 90);
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.kafka_partition_status WHERE name = 'grow'}),
	'4', 'the consumer now has 4 partitions');
ok($node->log_contains(qr/Kafka consumer "grow" group 0 now reads 4 partitions of topic "grow"/, $log_offset),
	'the server log says so');
is($node->safe_psql('postgres', q{SELECT min(_offset) FROM grow WHERE _partition IN (2, 3)}), '0',
	'a new partition is read from its first message');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.kafka_status WHERE name = 'grow' AND pool_workers IS NOT NULL}),
	'1', 'the same consumer, still served');

# new messages in a new partition follow, and nothing is read twice
produce($broker, 'grow', [ '{"p": 3, "n": 6}', '{"p": 3, "n": 7}' ], partition => 3);
wait_for($node, 'SELECT count(*) FROM grow', '22', 'new messages in a new partition land');
is($node->safe_psql('postgres', q{SELECT count(DISTINCT (p, n)) FROM grow WHERE p = _partition}), '22',
	'every message once, each in its own partition');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.kafka_dead_letters}), '0', 'no dead letters');

$node->stop;
stop_broker($broker);
done_testing();

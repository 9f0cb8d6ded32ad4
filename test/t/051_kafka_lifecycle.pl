# Kafka consumers over their life: stop/start, reset to earliest/latest/a timestamp, parallelism,
# consumers created and dropped while others run, and a broker down for 30 s then back.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $broker = start_broker('life:2', 'wide:8', 'side:1', 'outage:4', 'tenant:1');
my $b = $broker->{bootstrap};
# librdkafka's statistics every 2 s rather than 15 (the watermarks' freshness, the end of an outage)
my $node = kafka_node('lifecycle', 'duet.kafka_statistics_interval = 2s');
$node->safe_psql('postgres', q{
CREATE TABLE life (n int, _partition int, _offset bigint);
CREATE TABLE wide (n int, _partition int, _offset bigint);
CREATE TABLE side (v jsonb);
CREATE TABLE outage (n int, _partition int, _offset bigint);
});
sub msgs { my ($from, $to) = @_; return [ map { "{\"n\": $_}" } $from .. $to ]; }

# stop / start: nothing is read while stopped; everything after start, once.
produce($broker, 'life', msgs(1, 100));
$node->safe_psql('postgres', "SELECT duet_kafka_consume('life', 'life', 'life', '$b', 'json', flush_interval_ms => 50)");
wait_for($node, 'SELECT count(*) FROM life', '100', 'consumer ingests');
$node->safe_psql('postgres', "SELECT duet_kafka_stop('life')");
wait_for($node, q{SELECT state, workers FROM duet.kafka_status WHERE name = 'life'}, 'stopped|0', 'stop ends the worker');
produce($broker, 'life', msgs(101, 200));
sleep 2;
is($node->safe_psql('postgres', 'SELECT count(*) FROM life'), '100', 'nothing ingested while stopped');
$node->safe_psql('postgres', "SELECT duet_kafka_start('life')");
wait_for($node, 'SELECT count(*), count(DISTINCT n) FROM life', '200|200', 'start resumes at the committed offsets');

# reset: earliest re-reads everything; latest skips what is there; a timestamp starts there.
$node->safe_psql('postgres', "SELECT duet_kafka_reset('life', 'earliest')");
wait_for($node, 'SELECT count(*), count(DISTINCT n) FROM life', '400|200', 'reset earliest re-reads every message once more');
$node->safe_psql('postgres', "SELECT duet_kafka_reset('life', 'latest')");
wait_for($node, q{SELECT sum(committed_offset) FROM duet.kafka_partition_status WHERE name = 'life'}, '200', 'reset latest stores the end offsets');
produce($broker, 'life', msgs(201, 210));
wait_for($node, 'SELECT count(*) FROM life', '410', 'after reset latest only new messages arrive');
sleep 1;
my $mark = $node->safe_psql('postgres', 'SELECT now()');
sleep 1;
produce($broker, 'life', msgs(211, 220));
wait_for($node, 'SELECT count(*) FROM life', '420', 'new messages arrive');
$node->safe_psql('postgres', "SELECT duet_kafka_reset('life', '$mark'::timestamptz)");
wait_for($node, 'SELECT count(*), count(*) FILTER (WHERE n > 210) FROM life', '430|20', 'reset to a timestamp re-reads from there');
my ($rc, $out, $err) = $node->psql('postgres', "SELECT duet_kafka_reset('life', 'tomorrowish')");
like($err, qr/invalid start offset "tomorrowish"/, 'reset rejects a bad position');

# parallelism: 8 partitions over 3 workers, each partition read by exactly one.
produce($broker, 'wide', msgs(1, 800));
$node->safe_psql('postgres', "SELECT duet_kafka_consume('wide', 'wide', 'wide', '$b', 'json', flush_interval_ms => 50, parallelism => 3)");
wait_for($node, 'SELECT count(*), count(DISTINCT (_partition, _offset)), count(DISTINCT _partition) FROM wide', '800|800|8', 'parallel workers ingest every partition once');
wait_for($node, q{SELECT workers, lag FROM duet.kafka_status WHERE name = 'wide'}, '3|0', 'three workers, no lag');
# Consumers are not processes: the three groups of 'wide' and the one of 'life' share the pool
# (duet.kafka_pool_size = 2), units in (consumer, group) order round robin: life/0 and wide/1 on
# worker 0, wide/0 and wide/2 on worker 1.
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_duet kafka pool'}),
	'2', 'two pool worker processes serve four partition groups');
is($node->safe_psql('postgres', q{SELECT pool_workers FROM duet.kafka_status WHERE name = 'wide'}),
	'{0,1}', 'kafka_status: which pool workers serve the consumer');
is($node->safe_psql('postgres', q{SELECT string_agg(pool_worker || ':' || groups, ' ' ORDER BY pool_worker) FROM duet.kafka_pool WHERE pid IS NOT NULL}),
	'0:2 1:2', 'kafka_pool: two groups each');

# Consumers created and dropped while others run.
$node->safe_psql('postgres', "SELECT duet_kafka_consume('side', 'side', 'side', '$b', 'jsonb', flush_interval_ms => 50)");
produce($broker, 'side', msgs(1, 10));
wait_for($node, 'SELECT count(*) FROM side', '10', 'consumer created while others run');
$node->safe_psql('postgres', "SELECT duet_kafka_drop('side')");
wait_for($node, q{SELECT count(*) FROM duet_kafka_worker_stats() WHERE consumer_id NOT IN (SELECT id FROM duet.kafka_consumers)}, '0', 'dropped consumer is no longer served');
produce($broker, 'side', msgs(11, 20));
produce($broker, 'wide', msgs(801, 880));
wait_for($node, 'SELECT count(*) FROM wide', '880', 'others keep running');
is($node->safe_psql('postgres', 'SELECT count(*) FROM side'), '10', 'dropped consumer reads no more');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.kafka_offsets o WHERE NOT EXISTS (SELECT FROM duet.kafka_consumers c WHERE c.id = o.consumer_id)}), '0', 'drop removes its offsets');

# Broker down for 30 s while messages are pending, then back: resumes, nothing lost or doubled.
# Another owner's consumer, same brokers and properties: the pool worker's consumers share a
# librdkafka client only with consumers of the same owner (pg_duet/kafka_client.c).
$node->safe_psql('postgres', qq{
CREATE ROLE tenant_k LOGIN IN ROLE duet_kafka_admin;
INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_consume) VALUES ('tenant', 'tenant_k', true);
CREATE TABLE tenant_t (n int);
GRANT INSERT ON tenant_t TO tenant_k;
SET ROLE tenant_k;
SELECT duet_kafka_consume('tenant_c', 'tenant', 'tenant_t', '$b', 'json', flush_interval_ms => 50);
RESET ROLE;
});
$node->safe_psql('postgres', "SELECT duet_kafka_consume('outage', 'outage', 'outage', '$b', 'json', flush_interval_ms => 50)");
produce($broker, 'outage', msgs(1, 500));
wait_for($node, 'SELECT count(*) FROM outage', '500', 'ingesting before the outage');
produce($broker, 'outage', msgs(501, 1000));
broker_down($broker);
my $down_at = time();
# Outages are visible: librdkafka's error callback (run on the pool worker's thread) sets the state
# and its words; its log lines reach the server log with the consumer's name (with those of the
# consumers sharing its librdkafka client: "Kafka consumers "life", "wide", "outage" librdkafka …").
wait_for($node, q{SELECT state, last_error IS NOT NULL FROM duet.kafka_status WHERE name = 'outage'},
	'broker unreachable|t', 'during the outage: state broker unreachable, with librdkafka\'s error', 25);
sleep(30 - (time() - $down_at)) if time() - $down_at < 30;
like(slurp_file($node->logfile), qr/LOG:  Kafka consumers? (?:"\w+", )*"outage"(?:, "\w+")* librdkafka \S+ \(level \d\): /,
	'librdkafka\'s log lines in the server log, with the consumer\'s name');
{
	my $log = slurp_file($node->logfile);
	like($log, qr/LOG:  Kafka consumers (?:"\w+", )*"outage"(?:, "\w+")* librdkafka /,
		'control: consumers of one owner share a librdkafka client (its log lines name them all)');
	like($log, qr/LOG:  Kafka consumer "tenant_c" librdkafka /, 'the other owner\'s consumer has its own client');
	unlike($log, qr/LOG:  Kafka consumers [^\n]*"tenant_c"/, 'no client is shared with another owner\'s consumer');
}
my $during = $node->safe_psql('postgres', 'SELECT count(*) FROM outage');
ok($during <= 1000, "during the outage: $during rows, none invented");
broker_up($broker);
produce($broker, 'outage', msgs(1001, 1500));
wait_for($node, 'SELECT count(*), count(DISTINCT n), count(DISTINCT (_partition, _offset)) FROM outage', '1500|1500|1500', 'after the outage every message exactly once', 90);
wait_for($node, q{SELECT lag FROM duet.kafka_status WHERE name = 'outage'}, '0', 'lag back to zero');

# An outage of an idle consumer (nothing to fetch before, during or after): the state says
# "broker unreachable" while it lasts and goes back to "idle" when the broker is back, with no
# message to prove it; the watermarks' time says how fresh the lag is.
wait_for($node, q{SELECT state FROM duet.kafka_status WHERE name = 'outage'}, 'idle', 'idle before the second outage', 30);
wait_for($node, q{SELECT bool_and(high_watermark_at > pg_catalog.now() - interval '6 seconds') FROM duet.kafka_partition_status WHERE name = 'outage'},
	't', 'while connected the watermarks are fresh (librdkafka\'s statistics every 2 s here)', 20);
broker_down($broker);
wait_for($node, q{SELECT state FROM duet.kafka_status WHERE name = 'outage'}, 'broker unreachable',
	'second outage: broker unreachable', 25);
# A reset needs the brokers: it fails, says why, and leaves the offsets and the generation as they were.
my $before = $node->safe_psql('postgres', q{SELECT c.generation || '/' || sum(o.next_offset) FROM duet.kafka_consumers c
    JOIN duet.kafka_offsets o ON o.consumer_id = c.id WHERE c.name = 'outage' GROUP BY c.generation});
($rc, $out, $err) = $node->psql('postgres', "SELECT duet_kafka_reset('outage', 'earliest')");
like($err, qr/cannot resolve position "earliest" of Kafka consumer "outage".*DETAIL:  cannot read metadata of topic "outage"/s,
	'during the outage a reset fails and says why');
is($node->safe_psql('postgres', q{SELECT c.generation || '/' || sum(o.next_offset) FROM duet.kafka_consumers c
    JOIN duet.kafka_offsets o ON o.consumer_id = c.id WHERE c.name = 'outage' GROUP BY c.generation}), $before,
	'the failed reset changed neither the offsets nor the generation');
sleep(8);
is($node->safe_psql('postgres', qq{SELECT bool_and(high_watermark_at < pg_catalog.now() - interval '5 seconds') FROM duet.kafka_partition_status WHERE name = 'outage'}),
	't', 'during the outage the watermarks are not refreshed: their time ages');
my $back = $node->safe_psql('postgres', q{SELECT pg_catalog.now()});
broker_up($broker);
wait_for($node, q{SELECT state FROM duet.kafka_status WHERE name = 'outage'}, 'idle',
	'second outage over: idle again without a message', 40);
wait_for($node, qq{SELECT bool_and(high_watermark_at > '$back') FROM duet.kafka_partition_status WHERE name = 'outage'},
	't', 'after the outage the watermarks are fresh again', 30);

# A new consumer starts where start_offset says, every partition resolved in one lookup: 'latest'
# stores the end offsets and reads only what follows; a time reads from there (the mock broker
# has no lookup by time: from the start, older messages passed over). 'life' holds 1..220.
$node->safe_psql('postgres', qq{
CREATE TABLE life_latest (n int);
CREATE TABLE life_mark (n int);
SELECT duet_kafka_consume('life_latest', 'life', 'life_latest', '$b', 'json', flush_interval_ms => 50, start_offset => 'latest');
SELECT duet_kafka_consume('life_mark', 'life', 'life_mark', '$b', 'json', flush_interval_ms => 50, start_offset => '$mark');
});
wait_for($node, q{SELECT count(*), sum(committed_offset) FROM duet.kafka_partition_status WHERE name = 'life_latest'}, '2|220',
	'start_offset latest: both partitions start at their end offsets');
produce($broker, 'life', msgs(221, 230));
wait_for($node, 'SELECT count(*), min(n) FROM life_latest', '10|221', 'start_offset latest: only what follows');
wait_for($node, 'SELECT count(*), min(n), count(DISTINCT n) FROM life_mark', '20|211|20', 'start_offset at a time: from there on, once');

$node->stop;
stop_broker($broker);
done_testing();

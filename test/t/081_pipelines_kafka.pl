# Pipelines fed by Kafka, end to end: messages on bronze.data.cleaned (four partitions) → a consumer
# worker lands them in a jsonb bronze table with their partition and offset → the silver pipeline
# (woken by the consumer's commits) types, deduplicates and checks them → each committed silver row
# is published through the outbox to silver.data.processed, read back with kcat: exactly the
# committed rows, once each.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker('bronze.data.cleaned:4', 'silver.data.processed:1');
my $boot = $broker->{bootstrap};
my $node = kafka_node('pipelines_kafka', "duet.outbox_brokers = '$boot'", 'duet.pipeline_interval = 1',
	'duet.rules_interval = 0');

$node->safe_psql('postgres', qq{
SELECT duet_tenant_create('acme');
SELECT duet_set_tenant('acme');
CREATE TABLE bronze (payload jsonb NOT NULL, _partition int NOT NULL, _offset bigint NOT NULL,
                     PRIMARY KEY (_partition, _offset));
CREATE TABLE silver (event_id text PRIMARY KEY, campaign int, cost numeric);
SELECT duet_pipeline_create('silver', 'bronze', 'silver',
    '{"event_id": "payload->>''id''", "campaign": "(payload->>''campaign'')::int", "cost": "(payload->>''cost'')::numeric"}',
    order_by => '_offset', partition_by => '_partition', key => '{event_id}', mode => 'upsert',
    expectations => '[{"name": "cost_nonnegative", "predicate": "cost >= 0", "action": "drop"}]',
    batch_size => 300, topic => 'silver.data.processed');
SELECT duet_kafka_consume('bronze', 'bronze.data.cleaned', 'bronze', '$boot', 'jsonb', batch_size => 250,
                          flush_interval_ms => 100);
});

# 2,000 messages: 1 in 50 with a negative cost; 1 in 10 an update of an earlier event. Keyed by
# event id, as Kafka orders the versions of a key only within its partition.
my @lines;
for my $i (1 .. 2000)
{
	my $id = $i % 10 == 0 ? 'e' . ($i - 5) : "e$i";
	push @lines, "$id:" . encode_json({ id => $id, campaign => $i % 7, cost => ($i % 50 == 0 ? -1 : $i % 13) });
}
produce($broker, 'bronze.data.cleaned', \@lines, delimiter => ':');

wait_for($node, 'SELECT count(*) FROM bronze', '2000', 'every message landed in bronze', 120);
wait_for($node, q{SELECT lag_rows = 0 AND state = 'active' FROM duet.pipeline_status WHERE name = 'silver'}, 't', 'the worker ran silver to the end of bronze', 120);
is($node->safe_psql('postgres', 'SELECT count(DISTINCT _partition) FROM bronze'), '4', 'bronze came from four partitions');

# Silver: the latest passing message of each event by (offset, partition) order.
is($node->safe_psql('postgres', q{SELECT count(*) FROM (
    (SELECT DISTINCT ON (payload->>'id') payload->>'id', (payload->>'campaign')::int, (payload->>'cost')::numeric
       FROM bronze WHERE (payload->>'cost')::numeric >= 0 ORDER BY payload->>'id', _offset DESC, _partition DESC)
    EXCEPT SELECT * FROM silver) d}), '0', 'silver holds the latest passing version of every event');
is($node->safe_psql('postgres', q{SELECT (SELECT count(*) FROM silver) =
    (SELECT count(DISTINCT payload->>'id') FROM bronze WHERE (payload->>'cost')::numeric >= 0)}), 't', 'and nothing else');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.pipeline_quarantine}), '40', 'the 40 negative costs are quarantined');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.pipeline_quarantine q JOIN bronze b
    ON b._partition::text = q.part AND b._offset::text = q.pos AND q.source_row -> 'payload' = b.payload
    WHERE q.failed = '{cost_nonnegative}'}), '40', 'each with its partition, offset, row and reason');

# The outbox carries exactly the committed silver rows: one event per row written, sent to Kafka.
my $written = $node->safe_psql('postgres', q{SELECT sum(rows_out) FROM duet.pipeline_runs WHERE status = 'ok'});
wait_for($node, q{SELECT count(*) FROM duet.kafka_outbox WHERE topic = 'silver.data.processed' AND sent_at IS NOT NULL},
	$written, 'every silver row written was published', 120);
my $consumed = `kcat -C -b $boot -t silver.data.processed -e -q -f '%s\\n' 2>/dev/null`;
my @events = map { decode_json($_) } grep { length } split /\n/, $consumed;
is(scalar(@events), $written, 'as many events on silver.data.processed as rows written');
my %latest;
$latest{ $_->{event_id} } = $_ for @events;
my $silver = $node->safe_psql('postgres', q{SELECT string_agg(event_id || ':' || campaign || ':' || cost, ',' ORDER BY event_id COLLATE "C") FROM silver});
is(join(',', map { "$_->{event_id}:$_->{campaign}:$_->{cost}" } sort { $a->{event_id} cmp $b->{event_id} } values %latest),
	$silver, 'the last event of each key is its silver row');

$node->stop;
stop_broker($broker);
done_testing();

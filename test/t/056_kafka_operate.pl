# Operating consumers (issue 12, "Operate it"):
#  - duet_kafka_replay: dead letters back through the ingest path once the target is fixed —
#    selected by ids, by partition and offset range, or all; each lands once and leaves the dead
#    letters in the same transaction (a rolled-back replay changes nothing), a still-bad one
#    stays with its new error; timestamps and headers come back as they were;
#  - duet_kafka_alter: column map, batch size, properties (merged, secrets kept apart) and
#    brokers changed on a running consumer, keeping its offsets: nothing lost or doubled;
#  - duet.kafka_consumer_config: the configuration with secrets masked.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker('replay:2', 'alter:1', 'replayup:1');
my $bs = $broker->{bootstrap};
my $node = kafka_node('operate');

sub q_node
{
	my ($rc, $out, $err) = $node->psql('postgres', $_[0]);
	return $rc == 0 ? $out : "ERROR: $err";
}

$node->safe_psql('postgres', q{
CREATE TABLE replay_t (id int, v int CONSTRAINT small CHECK (v < 100), _partition int, _offset bigint,
                       _timestamp timestamptz, _headers jsonb);
CREATE TABLE alter_t (id int, v text, w text, _offset bigint);
CREATE TABLE replayup (id int PRIMARY KEY, v int CONSTRAINT small_up CHECK (v < 100));
});

# ---- replay ------------------------------------------------------------------------------------
# Partition 0: ids 1..10, v = id * 20 (ids 5..10 are >= 100: dead letters); partition 1: ids
# 11..14, v = 200, and one that no fix will cure ("x").
produce($broker, 'replay', [ map { qq({"id": $_, "v": ) . ($_ * 20) . '}' } 1 .. 10 ], partition => 0,
	headers => [ 'src=test' ]);
produce($broker, 'replay', [ (map { qq({"id": $_, "v": 200}) } 11 .. 14), '{"id": 15, "v": "x"}' ], partition => 1);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('replay', 'replay', 'replay_t', '$bs', flush_interval_ms => 200)");
wait_for($node, q{SELECT (SELECT count(*) FROM replay_t) || '+' || (SELECT count(*) FROM duet.kafka_dead_letters WHERE consumer = 'replay')},
	'4+11', 'replay: 4 rows and 11 dead letters to begin with', 60);
is(q_node(q{SELECT count(*) FROM duet.kafka_dead_letters WHERE consumer = 'replay' AND message_timestamp IS NOT NULL AND (partition = 1 OR headers = '{"src": "test"}')}),
	'11', 'replay: dead letters keep the timestamp and the headers');
is(q_node(q{SELECT * FROM duet_kafka_replay('replay')}), '0|11', 'replay before the fix: all fail again');
is(q_node(q{SELECT count(*) FROM duet.kafka_dead_letters WHERE consumer = 'replay' AND failed_at > now() - interval '1 minute'}),
	'11', 'replay: the failures stay, with a fresh failed_at');

$node->safe_psql('postgres', q{ALTER TABLE replay_t DROP CONSTRAINT small, ADD CONSTRAINT small CHECK (v < 250)});
my $one = q_node(q{SELECT id FROM duet.kafka_dead_letters WHERE consumer = 'replay' AND partition = 0 AND "offset" = 4});
is(q_node("SELECT * FROM duet_kafka_replay('replay', ids => '{$one}')"), '1|0', 'replay by id: one lands');
is(q_node('SELECT id, v, _partition, _offset FROM replay_t WHERE id = 5'), '5|100|0|4', 'replay by id: the row, with its partition and offset');
is(q_node(q{SELECT count(*) FROM duet.kafka_dead_letters WHERE id = } . $one), '0', 'replay by id: the dead letter is gone');
is(q_node(q{SELECT _timestamp IS NOT NULL, _headers FROM replay_t WHERE id = 5}), 't|{"src": "test"}',
	'replay: the row gets the message\'s timestamp and headers');

# A replay rolled back changes nothing.
$node->safe_psql('postgres', q{BEGIN; SELECT duet_kafka_replay('replay'); ROLLBACK;});
is(q_node(q{SELECT (SELECT count(*) FROM replay_t) || '+' || (SELECT count(*) FROM duet.kafka_dead_letters WHERE consumer = 'replay')}),
	'5+10', 'replay rolled back: rows and dead letters as they were');

is(q_node(q{SELECT * FROM duet_kafka_replay('replay', partition => 0, from_offset => 5, to_offset => 8)}), '3|0',
	'replay by offset range [5, 8) of partition 0');
is(q_node(q{SELECT string_agg(id::text, ',' ORDER BY id) FROM replay_t WHERE id BETWEEN 5 AND 10}), '5,6,7,8',
	'replay by range: exactly those offsets');
is(q_node(q{SELECT * FROM duet_kafka_replay('replay')}), '6|1', 'replay of the rest: all but the incurable one land');
is(q_node(q{SELECT "offset", error FROM duet.kafka_dead_letters WHERE consumer = 'replay'}),
	'4|invalid input syntax for type integer: "x"', 'replay: the still-bad one stays, with its new error');
is(q_node(q{SELECT count(*), count(DISTINCT id) FROM replay_t}), '14|14', 'replay: every message is a row exactly once');
is(q_node(q{SELECT * FROM duet_kafka_replay('replay')}), '0|1', 'replay again: nothing lands twice');
like(q_node(q{SELECT duet_kafka_replay('nosuch')}), qr/Kafka consumer "nosuch" does not exist/, 'replay of an unknown consumer');

# Upsert mode: a replayed tombstone deletes, a replayed value upserts.
produce_msgs($broker, 'replayup', [ '{"v": 1}', '{"v": 500}', '{"v": 2}', undef ], keys => [ 1, 2, 3, 3 ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('replayup', 'replayup', 'replayup', '$bs', flush_interval_ms => 200, mode => 'upsert', key_columns => '{id}')");
wait_for($node, q{SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM replayup}, '1:1', 'replay (upsert): one row, key 3 deleted', 30);
wait_for($node, q{SELECT count(*) FROM duet.kafka_dead_letters WHERE consumer = 'replayup'}, '1', 'replay (upsert): one dead letter', 30);
$node->safe_psql('postgres', q{ALTER TABLE replayup DROP CONSTRAINT small_up});
is(q_node(q{SELECT * FROM duet_kafka_replay('replayup')}), '1|0', 'replay (upsert): the fixed message lands');
is(q_node(q{SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM replayup}), '1:1,2:500', 'replay (upsert): upserted');

# ---- alter ---------------------------------------------------------------------------------------
produce($broker, 'alter', [ map { qq({"id": $_, "v": "a$_"}) } 1 .. 50 ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('alter', 'alter', 'alter_t', '$bs', flush_interval_ms => 100, properties => '{\"sasl.password\": \"s3cret\", \"fetch.wait.max.ms\": \"100\"}')");
wait_for($node, 'SELECT count(*) FROM alter_t', '50', 'alter: the first 50 land', 30);
is(q_node(q{SELECT properties FROM duet.kafka_consumer_config WHERE name = 'alter'}),
	'{"sasl.password": "********", "fetch.wait.max.ms": "100"}', 'config view: the secret is masked');

# column map and batch size while it runs; a property merged in, the secret changed
$node->safe_psql('postgres', q{SELECT duet_kafka_alter('alter', column_map => '{"val": "w"}', batch_size => 7,
    properties => '{"sasl.password": "n3w", "fetch.min.bytes": "1"}')});
is(q_node(q{SELECT batch_size, column_map, properties FROM duet.kafka_consumer_config WHERE name = 'alter'}),
	'7|{"val": "w"}|{"sasl.password": "********", "fetch.min.bytes": "1", "fetch.wait.max.ms": "100"}',
	'alter: the new settings, properties merged');
is(q_node(q{SELECT s.properties FROM duet.kafka_consumer_secrets s JOIN duet.kafka_consumers c ON c.id = s.consumer_id WHERE c.name = 'alter'}),
	'{"sasl.password": "n3w"}', 'alter: the new secret is in the secrets table');
is(q_node(q{SELECT properties ? 'sasl.password' FROM duet.kafka_consumers WHERE name = 'alter'}), 'f',
	'alter: and not in duet.kafka_consumers');
produce($broker, 'alter', [ map { qq({"id": $_, "val": "b$_"}) } 51 .. 100 ]);
wait_for($node, 'SELECT count(*), count(DISTINCT id) FROM alter_t', '100|100', 'alter: offsets kept, nothing lost or doubled', 30);
is(q_node('SELECT count(*) FROM alter_t WHERE id > 50 AND w = \'b\' || id AND v IS NULL'), '50', 'alter: later messages use the new column map');

# unreachable brokers, then back: the messages produced meanwhile arrive once
$node->safe_psql('postgres', q{SELECT duet_kafka_alter('alter', brokers => '127.0.0.1:1')});
produce($broker, 'alter', [ map { qq({"id": $_, "val": "c$_"}) } 101 .. 120 ]);
wait_for($node, q{SELECT brokers FROM duet.kafka_consumer_config WHERE name = 'alter'}, '127.0.0.1:1', 'alter: brokers changed', 10);
$node->safe_psql('postgres', "SELECT duet_kafka_alter('alter', brokers => '$bs', properties => '{\"sasl.password\": null}')");
wait_for($node, 'SELECT count(*), count(DISTINCT id) FROM alter_t', '120|120', 'alter: back on the right brokers, every message once', 30);
is(q_node(q{SELECT count(*) FROM duet.kafka_consumer_secrets s JOIN duet.kafka_consumers c ON c.id = s.consumer_id WHERE c.name = 'alter'}),
	'0', 'alter: a property given as null is removed');

like(q_node(q{SELECT duet_kafka_alter('alter', format => 'csv')}), qr/column_map must be a JSON array for format csv/,
	'alter: the new settings are checked together');
like(q_node(q{SELECT duet_kafka_alter('alter', mode => 'upsert', key_columns => '{id}')}),
	qr/table alter_t has no unique index on the key columns/, 'alter: upsert is checked against the target');
$node->safe_psql('postgres', q{ALTER TABLE alter_t ADD PRIMARY KEY (id)});
$node->safe_psql('postgres', q{SELECT duet_kafka_alter('alter', mode => 'upsert', key_columns => '{id}', key_source => 'value')});
produce($broker, 'alter', [ '{"id": 1, "val": "updated"}' ]);
wait_for($node, q{SELECT w FROM alter_t WHERE id = 1}, 'updated', 'alter: switched to upsert mode, keeping offsets', 30);
is(q_node('SELECT count(*) FROM alter_t'), '120', 'alter: the upsert updated a row, added none');
$node->safe_psql('postgres', q{SELECT duet_kafka_alter('alter', mode => 'append')});
is(q_node(q{SELECT mode, key_columns IS NULL FROM duet.kafka_consumer_config WHERE name = 'alter'}), 'append|t',
	'alter: back to append mode, the keys dropped');

$node->stop;
stop_broker($broker);
done_testing();

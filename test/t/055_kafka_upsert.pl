# Upsert mode (issue 12, "Operate it"), as Kafka Connect's JDBC sink offers: rows are INSERT … ON
# CONFLICT (key columns) DO UPDATE, a tombstone deletes its key's row, the latest message of a key
# in a batch wins; keys from the message key (its text, or its JSON fields) or from the value;
# bad messages are still dead letters; and after kill -9 of the postmaster mid-stream the table
# holds exactly the last value of every key.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $broker = start_broker('up:1', 'upjson:1', 'upvalue:1', 'upcrash:4');
my $bs = $broker->{bootstrap};
my $node = kafka_node('upsert', 'restart_after_crash = on');

sub q_node
{
	my ($rc, $out, $err) = $node->psql('postgres', $_[0]);
	return $rc == 0 ? $out : "ERROR: $err";
}

$node->safe_psql('postgres', q{
CREATE TABLE up (id int PRIMARY KEY, v text, n int CHECK (n >= 0), _offset bigint);
CREATE TABLE upjson (a int, b text, v int, PRIMARY KEY (a, b));
CREATE TABLE upvalue (id int PRIMARY KEY, v text);
CREATE TABLE noindex (id int, v text);
CREATE TABLE upcrash (id int PRIMARY KEY, n int NOT NULL, _offset bigint);
-- slow batches, so a kill lands inside one
CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;
CREATE TRIGGER slow_batch AFTER INSERT ON upcrash FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
});

# ---- configuration errors ------------------------------------------------------------------------
like(q_node("SELECT duet_kafka_consume('bad1', 'up', 'noindex', '$bs', mode => 'upsert', key_columns => '{id}')"),
	qr/table noindex has no unique index on the key columns/, 'upsert needs a unique index on the key columns');
like(q_node("SELECT duet_kafka_consume('bad2', 'up', 'up', '$bs', key_columns => '{id}')"),
	qr/key_columns are for mode upsert/, 'key columns without upsert mode are refused');
like(q_node("SELECT duet_kafka_consume('bad3', 'up', 'up', '$bs', mode => 'upsert')"),
	qr/mode upsert needs key_columns/, 'upsert mode without key columns is refused');
like(q_node("SELECT duet_kafka_consume('bad4', 'up', 'up', '$bs', mode => 'upsert', key_columns => '{nope}')"),
	qr/key column "nope" is not a column of up/, 'an unknown key column is refused');
like(q_node("SELECT duet_kafka_consume('bad5', 'up', 'up', '$bs', mode => 'merge', key_columns => '{id}')"),
	qr/unknown Kafka consumer mode "merge"/, 'an unknown mode is refused');
is(q_node("SELECT count(*) FROM duet.kafka_consumers"), '0', 'no consumer was created by the refused calls');

# ---- key from the message key: updates, deletes, duplicates within one batch ----------------------
# One batch (all produced before the consumer starts): key 1 three times, key 2 deleted, key 4
# deleted and written again, key 5 a bad row (n < 0), key 6 bad JSON.
my @msgs = (
	[ '1', '{"v": "a", "n": 1}' ],
	[ '2', '{"v": "b", "n": 2}' ],
	[ '1', '{"v": "c", "n": 3}' ],
	[ '3', '{"v": "d", "n": 4}' ],
	[ '2', undef ],
	[ '4', '{"v": "e", "n": 5}' ],
	[ '4', undef ],
	[ '4', '{"v": "f", "n": 6}' ],
	[ '5', '{"v": "bad", "n": -1}' ],
	[ '6', 'not json' ],
	[ '1', '{"v": "g", "n": 7}' ],
	[ '7', undef ],    # a tombstone for a key that is not there: deletes nothing
);
produce_msgs($broker, 'up', [ map { $_->[1] } @msgs ], keys => [ map { $_->[0] } @msgs ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('up', 'up', 'up', '$bs', 'json', flush_interval_ms => 300, mode => 'upsert', key_columns => '{id}')");
wait_for($node, q{SELECT coalesce(sum(next_offset), 0) FROM duet.kafka_offsets o JOIN duet.kafka_consumers c ON c.id = o.consumer_id WHERE c.name = 'up'},
	scalar(@msgs), 'upsert: every message committed', 60);
is(q_node(q{SELECT string_agg(id || ':' || v || ':' || n || ':' || _offset, ',' ORDER BY id) FROM up}),
	'1:g:7:10,3:d:4:3,4:f:6:7', 'upsert: the latest message of each key wins, tombstones delete');
is(q_node(q{SELECT string_agg("offset" || ':' || split_part(error, ':', 1), ',' ORDER BY "offset") FROM duet.kafka_dead_letters WHERE consumer = 'up'}),
	'8:new row for relation "up" violates check constraint "up_n_check",9:message is not valid JSON',
	'upsert: a bad row and bad JSON are dead letters, nothing else');
is(q_node(q{SELECT batches FROM duet.kafka_status WHERE name = 'up'}), '1', 'upsert: all of it was one batch');

# A second batch updates and deletes rows of the first.
@msgs = ([ '3', '{"v": "h", "n": 8}' ], [ '1', undef ], [ '9', '{"v": "i", "n": 9}' ]);
produce_msgs($broker, 'up', [ map { $_->[1] } @msgs ], keys => [ map { $_->[0] } @msgs ]);
wait_for($node, q{SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM up}, '3:h,4:f,9:i',
	'upsert: a later batch updates and deletes', 30);
is(q_node(q{SELECT count(*) FROM duet.kafka_dead_letters WHERE consumer = 'up' AND tombstone}), '0',
	'upsert: tombstones are not dead letters');

# ---- composite key from a JSON key ---------------------------------------------------------------
@msgs = (
	[ '{"a": 1, "b": "x"}', '{"v": 1}' ],
	[ '{"a": 1, "b": "y"}', '{"v": 2}' ],
	[ '{"b": "x", "a": 1}', '{"v": 3}' ],
	[ '{"a": 2, "b": "x"}', '{"v": 4}' ],
	[ '{"a": 1, "b": "y"}', undef ],
	[ '{"a": 3}', '{"v": 5}' ],
);
produce_msgs($broker, 'upjson', [ map { $_->[1] } @msgs ], keys => [ map { $_->[0] } @msgs ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('upjson', 'upjson', 'upjson', '$bs', flush_interval_ms => 200, mode => 'upsert', key_columns => '{a,b}')");
wait_for($node, q{SELECT string_agg(a || b || ':' || v, ',' ORDER BY a, b) FROM upjson}, '1x:3,2x:4',
	'upsert: a composite key from the JSON key, tombstone included', 30);
wait_for($node, q{SELECT "offset" || ':' || error FROM duet.kafka_dead_letters WHERE consumer = 'upjson'},
	'5:message key has no field "b"', 'upsert: a key without a key field is a dead letter', 30);

# ---- key from the value: tombstones cannot delete, so they stay dead letters ----------------------
@msgs = ('{"id": 1, "v": "a"}', '{"id": 1, "v": "b"}', undef, '{"id": 2, "v": "c"}');
produce_msgs($broker, 'upvalue', \@msgs);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('upvalue', 'upvalue', 'upvalue', '$bs', flush_interval_ms => 200, mode => 'upsert', key_columns => '{id}', key_source => 'value')");
wait_for($node, q{SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM upvalue}, '1:b,2:c',
	'upsert (keys from the value): latest wins', 30);
wait_for($node, q{SELECT "offset", tombstone, error FROM duet.kafka_dead_letters WHERE consumer = 'upvalue'},
	'2|t|message is a tombstone (null value)', 'upsert (keys from the value): a tombstone is a dead letter', 30);

# ---- kill -9 of the postmaster mid-stream: the table is the last value of every key ---------------
my $keys = 300;
my $total = 24_000;
my %last;
my (@vals, @ks);
for my $i (1 .. $total)
{
	my $k = 1 + ($i * 7919) % $keys;
	push @ks, $k;
	push @vals, qq({"n": $i});
	$last{$k} = $i;
}
$node->safe_psql('postgres', "SELECT duet_kafka_consume('upcrash', 'upcrash', 'upcrash', '$bs', batch_size => 500, flush_interval_ms => 100, mode => 'upsert', key_columns => '{id}')");
my $half = $total / 2;
produce_msgs($broker, 'upcrash', [ @vals[ 0 .. $half - 1 ] ], keys => [ @ks[ 0 .. $half - 1 ] ]);
sub committed
{
	return q_node(q{SELECT coalesce(sum(next_offset), 0) FROM duet.kafka_offsets o JOIN duet.kafka_consumers c ON c.id = o.consumer_id WHERE c.name = 'upcrash'});
}
for my $round (1 .. 2)
{
	wait_until(sub { my $c = committed(); $c =~ /^\d+$/ && $c > 1000 * $round }, 60);
	note("round $round: committed " . committed() . " of $total before kill -9");
	my $pid = $node->{_pid};
	$node->kill9;
	wait_until(sub { !kill(0, $pid) }, 30) or die "postmaster $pid survived SIGKILL";
	wait_until(sub { $node->start(fail_ok => 1) }, 60) or die 'node did not restart after SIGKILL';
	produce_msgs($broker, 'upcrash', [ @vals[ $half .. $total - 1 ] ], keys => [ @ks[ $half .. $total - 1 ] ])
	  if $round == 1;
}
wait_for($node, q{SELECT coalesce(sum(next_offset), 0) FROM duet.kafka_offsets o JOIN duet.kafka_consumers c ON c.id = o.consumer_id WHERE c.name = 'upcrash'},
	"$total", 'crash: every message committed after two kills', 180);
my $expect = join(',', map { "$_:$last{$_}" } sort { $a <=> $b } keys %last);
is(q_node(q{SELECT string_agg(id || ':' || n, ',' ORDER BY id) FROM upcrash}), $expect,
	"crash: the table holds exactly the last value of each of the $keys keys");
is(q_node(q{SELECT count(*) FROM duet.kafka_dead_letters WHERE consumer = 'upcrash'}), '0', 'crash: no dead letters');

$node->stop;
stop_broker($broker);
done_testing();

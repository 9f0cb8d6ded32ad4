# Kafka ingestion: every format and metadata column, column maps, defaults, triggers with transition
# tables, partitioned targets, 1% poison messages into dead letters, status and privileges.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker('events:4', 'bronze:2', 'csvt:1', 'textt:1', 'mapped:1', 'parts:2', 'priv:1');
my $b = $broker->{bootstrap};
my $node = kafka_node('formats');

$node->safe_psql('postgres', q{
CREATE TABLE events (
    id int PRIMARY KEY, campaign text NOT NULL, cost numeric CHECK (cost >= 0), tags jsonb, ok boolean,
    received timestamptz DEFAULT now(),
    _topic text, _partition int, _offset bigint, _timestamp timestamptz, _key text, _headers jsonb);
-- Statement-level trigger with a transition table: counts rows per statement.
CREATE TABLE event_batches (n bigint);
CREATE FUNCTION count_batch() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO event_batches SELECT count(*) FROM new_rows; RETURN NULL; END $$;
CREATE TRIGGER count_batch AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION count_batch();
CREATE TABLE bronze (payload jsonb NOT NULL, id bigserial, _offset bigint, _partition int);
CREATE TABLE csv_target (a int, b text, c date, _offset bigint);
CREATE TABLE text_target (line text, _key text);
CREATE TABLE mapped (campaign_id int, spend numeric, note text DEFAULT 'none', ingested_at timestamptz DEFAULT now());
CREATE TABLE parted (day date NOT NULL, v int) PARTITION BY RANGE (day);
CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
});

# json: 2000 messages, 1% poison (20): 7 bad JSON, 7 type errors, 6 constraint violations.
my (@lines, %poison);
for my $i (1 .. 2000)
{
	if ($i % 100 == 0)
	{
		my $k = $i / 100;
		my $bad = $k % 3 == 0 ? "{\"id\": $i, \"campaign\": " :
		  $k % 3 == 1 ? "{\"id\": $i, \"campaign\": \"c\", \"cost\": \"lots\"}" :
		  "{\"id\": $i, \"campaign\": \"c\", \"cost\": -5}";
		push @lines, $bad;
		$poison{$i} = 1;
		next;
	}
	push @lines, "{\"id\": $i, \"campaign\": \"camp\\t$i\", \"cost\": $i.25, \"tags\": {\"t\": [$i, \"x\"]}, \"ok\": true, \"unknown\": 1}";
}
produce($broker, 'events', \@lines, key => 'k1', headers => ['src=test', 'h2=v2']);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('events', 'events', 'events', '$b', 'json', batch_size => 500, flush_interval_ms => 100)");

wait_for($node, 'SELECT count(*) FROM events', '1980', 'json: every good message ingested');
wait_for($node, "SELECT count(*) FROM duet.kafka_dead_letters WHERE consumer = 'events'", '20', 'json: every poison message dead-lettered');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT (_partition, _offset)) FROM events'), '1980', 'json: each offset once');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT error, ' | ' ORDER BY error) FROM duet.kafka_dead_letters WHERE consumer = 'events'}),
	'invalid input syntax for type numeric: "lots" | message is not valid JSON | new row for relation "events" violates check constraint "events_cost_check"',
	'json: dead letters name the error');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.kafka_dead_letters d WHERE consumer = 'events'
	AND convert_from(value, 'UTF8') = ANY (ARRAY[} . join(',', map { "\$q\$$lines[$_ - 1]\$q\$" } sort keys %poison) . q{]) AND key = 'k1'}),
	'20', 'json: dead letters keep the raw bytes and key');
is($node->safe_psql('postgres', q{SELECT campaign, cost, tags, ok, _topic, _key, _headers, _timestamp IS NOT NULL, received IS NOT NULL FROM events WHERE id = 7}),
	"camp\t7|7.25|{\"t\": [7, \"x\"]}|t|events|k1|{\"h2\": \"v2\", \"src\": \"test\"}|t|t", 'json: values, nested JSON, metadata columns and defaults');
is($node->safe_psql('postgres', q{SELECT sum(n) FROM event_batches}), '1980', 'statement trigger saw every row through its transition table');
is($node->safe_psql('postgres', q{SELECT count(*) = count(DISTINCT _offset) FROM events WHERE _partition = (SELECT min(_partition) FROM events)}), 't', 'offsets distinct per partition');
wait_for($node, q{SELECT state, rows, errors, dead_letters, lag FROM duet.kafka_status WHERE name = 'events'},
	'idle|1980|20|20|0', 'status: rows, errors, dead letters, zero lag');
is($node->safe_psql('postgres', q{SELECT sum(committed_offset), sum(high_watermark) FROM duet.kafka_partition_status WHERE name = 'events'}),
	'2000|2000', 'status: committed offsets reach the high watermarks');

# jsonb bronze: invalid JSON is dead-lettered, the serial default fills id.
produce($broker, 'bronze', [ '{"a": 1}', '[1, 2]', 'oops', '{"nested": {"x": "y"}}', '"str"' ], partition => 0);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('bronze', 'bronze', 'bronze', '$b', 'jsonb', flush_interval_ms => 50)");
wait_for($node, q{SELECT string_agg(payload::text, ';' ORDER BY _offset) FROM bronze},
	'{"a": 1};[1, 2];{"nested": {"x": "y"}};"str"', 'jsonb: messages land whole');
wait_for($node, q{SELECT "offset", error, detail FROM duet.kafka_dead_letters WHERE consumer = 'bronze'},
	qq{2|invalid input syntax for type json|Token "oops" is invalid.\nJSON data, line 1: oops\nCOPY bronze, column payload: "oops"},
	'jsonb: invalid JSON dead-lettered by the column\'s own input check, COPY\'s column and value in the detail');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM bronze'), '4', 'jsonb: serial default applied');

# csv: quoted fields, an embedded newline, a short row.
produce($broker, 'csvt', [ '1,plain,2026-01-02', '2,"with, comma",2026-01-03', '3,"say ""hi""",2026-01-04', '4,bad-date,someday', '5,"two|lines",2026-01-05' ], delimiter => "\n");
$node->safe_psql('postgres', "SELECT duet_kafka_consume('csvt', 'csvt', 'csv_target', '$b', 'csv', flush_interval_ms => 50)");
wait_for($node, q{SELECT string_agg(a || '=' || b || '@' || c, ';' ORDER BY a) FROM csv_target},
	'1=plain@2026-01-02;2=with, comma@2026-01-03;3=say "hi"@2026-01-04;5=two|lines@2026-01-05', 'csv: fields parsed');
wait_for($node, q{SELECT "offset", error FROM duet.kafka_dead_letters WHERE consumer = 'csvt'}, '3|invalid input syntax for type date: "someday"', 'csv: bad field dead-lettered');

# text: any bytes as one value, with the key.
produce($broker, 'textt', [ 'hello world', 'tab	and \\backslash' ], key => 'tk');
$node->safe_psql('postgres', "SELECT duet_kafka_consume('textt', 'textt', 'text_target', '$b', 'text', flush_interval_ms => 50)");
wait_for($node, q{SELECT string_agg(line || '/' || _key, ';' ORDER BY line) FROM text_target}, "hello world/tk;tab\tand \\backslash/tk", 'text: lines land verbatim');

# column_map: keys renamed onto columns; a mapped column with a default is filled, others keep theirs.
produce($broker, 'mapped', [ '{"cid": 1, "cost": 2.5, "comment": "x"}', '{"cid": 2, "cost": 3}' ]);
$node->safe_psql('postgres', q{SELECT duet_kafka_consume('mapped', 'mapped', 'mapped', '} . $b . q{', 'json', flush_interval_ms => 50,
	column_map => '{"cid": "campaign_id", "cost": "spend", "comment": "note"}')});
wait_for($node, q{SELECT string_agg(campaign_id || ':' || spend || ':' || coalesce(note, 'NULL') || ':' || (ingested_at IS NOT NULL), ';' ORDER BY campaign_id) FROM mapped},
	'1:2.5:x:true;2:3:NULL:true', 'column_map: keys mapped, defaults kept');

# Partitioned target: rows routed; a row with no partition is dead-lettered.
produce($broker, 'parts', [ '{"day": "2026-01-15", "v": 1}', '{"day": "2026-02-15", "v": 2}', '{"day": "2027-01-01", "v": 3}' ], partition => 1);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('parts', 'parts', 'parted', '$b', 'json', flush_interval_ms => 50)");
wait_for($node, q{SELECT (SELECT count(*) FROM parted_a) || ',' || (SELECT count(*) FROM parted_b)}, '1,1', 'partitioned target: rows routed');
wait_for($node, q{SELECT error FROM duet.kafka_dead_letters WHERE consumer = 'parts'}, 'no partition of relation "parted" found for row', 'partitioned target: unroutable row dead-lettered');

# Privileges: a non-admin cannot create consumers; an admin without INSERT on the target cannot
# either; an admin manages only its own consumers and sees only their dead letters; nobody but
# superusers reads the consumer catalog (properties may hold secrets).
$node->safe_psql('postgres', q{
CREATE ROLE plain_user LOGIN; CREATE ROLE kadmin LOGIN IN ROLE duet_kafka_admin;
CREATE TABLE admin_target (v jsonb); GRANT INSERT ON admin_target TO kadmin;
});
my ($rc, $out, $err) = $node->psql('postgres', "SELECT duet_kafka_consume('p1', 'priv', 'admin_target', '$b', 'jsonb')", extra_params => [ '-U', 'plain_user' ]);
like($err, qr/permission denied for function duet_kafka_consume/, 'non-admin cannot create consumers');
($rc, $out, $err) = $node->psql('postgres', "SELECT duet_kafka_consume('p1', 'priv', 'events', '$b', 'json')", extra_params => [ '-U', 'kadmin' ]);
like($err, qr/permission denied for table events/, 'admin needs INSERT on the target');
($rc, $out, $err) = $node->psql('postgres', "SELECT duet_kafka_consume('p1', 'priv', 'admin_target', '$b', 'jsonb', properties => '{\"plugin.library.paths\": \"/tmp/x.so\"}')", extra_params => [ '-U', 'kadmin' ]);
like($err, qr/Kafka property "plugin.library.paths" cannot be set here/, 'admin cannot set file or code properties');
produce($broker, 'priv', [ '{"p": 1}', 'not json' ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('p1', 'priv', 'admin_target', '$b', 'jsonb', flush_interval_ms => 50, properties => '{\"sasl.password\": \"s3cret\"}')", extra_params => [ '-U', 'kadmin' ]);
wait_for($node, 'SELECT count(*) FROM admin_target', '1', 'admin consumer runs as its owner');
is($node->safe_psql('postgres', 'SELECT count(*) FROM duet.kafka_dead_letters', extra_params => [ '-U', 'kadmin' ]), '1', 'admin sees only its own dead letters');
($rc, $out, $err) = $node->psql('postgres', "SELECT properties FROM duet.kafka_consumers", extra_params => [ '-U', 'kadmin' ]);
like($err, qr/permission denied for table kafka_consumers/, 'consumer properties are superuser-only');
($rc, $out, $err) = $node->psql('postgres', "SELECT duet_kafka_stop('events')", extra_params => [ '-U', 'kadmin' ]);
like($err, qr/must be owner of Kafka consumer "events"/, 'admin cannot manage others\' consumers');
ok(wait_until(sub { $node->safe_psql('postgres', "SELECT name, state FROM duet.kafka_status WHERE name = 'p1'", extra_params => [ '-U', 'kadmin' ]) eq 'p1|idle' }, 30),
	'admin reads the status view');

$node->stop;
stop_broker($broker);
done_testing();

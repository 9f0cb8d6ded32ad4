# Kafka ingestion never loses a message silently (issue 12, "Silent loss"):
#  1. csv: every message is framed on its own ("\.", an unterminated quote, embedded and extra
#     line breaks): one row or one dead letter each;
#  2. offsets out of range (the broker's size retention deleted what a stopped consumer had not
#     read): resume at the low watermark, the skipped range in duet.kafka_gaps, the log and the status;
#  3. a reset to 'latest' while messages keep arriving: nothing produced after its commit is lost;
#  4. targets with DEFERRABLE INITIALLY DEFERRED constraints: duplicates and missing references
#     found at "commit" are dead-lettered, the partition goes on;
#  5. tombstones are marked as such; a dead letter's detail keeps COPY's column and value.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(usleep time);

my $broker = start_broker('csvloss:1', 'retain:1', 'race:1', 'deferred:1', 'tomb:1', 'tombtext:1');
my $bs = $broker->{bootstrap};
my $node = kafka_node('loss');

# A query's output, or its error (so that a missing column fails one test rather than the file).
sub q_node
{
	my ($rc, $out, $err) = $node->psql('postgres', $_[0]);
	return $rc == 0 ? $out : "ERROR: $err";
}

$node->safe_psql('postgres', q{
CREATE TABLE csv_loss (a int, b text);    -- no metadata column: a message is a whole line
CREATE TABLE retain (n int, pad text, _offset bigint);
CREATE TABLE race (n int, _offset bigint);
CREATE TABLE refs (id int PRIMARY KEY);
INSERT INTO refs SELECT generate_series(1, 10);
CREATE TABLE deferred_t (k int, ref int, _offset bigint,
    CONSTRAINT deferred_t_k_key UNIQUE (k) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT deferred_t_ref_fkey FOREIGN KEY (ref) REFERENCES refs (id) DEFERRABLE INITIALLY DEFERRED);
INSERT INTO deferred_t VALUES (1000, 1, -1), (1001, 1, -1);
CREATE TABLE tomb (id int, cost numeric, _offset bigint);
CREATE TABLE tomb_text (line text, _offset bigint);
});

# ---- 1. csv framing ----------------------------------------------------------------------------
# [message, expected (a, b) or the start of the dead letter's error]
my @csv = (
	[ '1,one',               [ 1, 'one' ] ],
	[ '\.',                  'message has 1 CSV field' ],
	[ '2,two',               [ 2, 'two' ] ],
	[ '3,"unterminated',     'message is not valid CSV' ],
	[ '4,four',              [ 4, 'four' ] ],
	[ "5,\"multi\nline\"",   [ 5, "multi\nline" ] ],
	[ '6,six',               [ 6, 'six' ] ],
	[ "7,seven\n8,eight",    'message holds more than one CSV row' ],
	[ '9,"say ""hi"""',      [ 9, 'say "hi"' ] ],
	[ "10,ten\n",            [ 10, 'ten' ] ],
	[ '11,\.',               [ 11, '\.' ] ],
	[ "12,\"\\.\n\\.\"",     [ 12, "\\.\n\\." ] ],
	[ '13',                  'message has 1 CSV field' ],
	[ '14,a,b',              'message has 3 CSV fields' ],
	[ '15,',                 [ 15, undef ] ],
	[ '16,""',               [ 16, '' ] ],
	[ 'x,bad-int',           'invalid input syntax for type integer' ],
	[ "17,\"a\r\nb\"\r\n",   [ 17, "a\r\nb" ] ],
	[ "18,\"open\n19,next",  'message is not valid CSV' ],
	map { [ "$_,good$_", [ $_, "good$_" ] ] } 20 .. 39,
);
produce_msgs($broker, 'csvloss', [ map { $_->[0] } @csv ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('csvloss', 'csvloss', 'csv_loss', '$bs', 'csv', flush_interval_ms => 200)");
my @csv_rows = grep { ref $_->[1] } @csv;
my @csv_dead = grep { !ref $_->[1] } @csv;
my $csv_total = scalar @csv;
note(sprintf('csv: %d messages, %d good, %d bad', $csv_total, scalar @csv_rows, scalar @csv_dead));
wait_for($node, q{SELECT (SELECT count(*) FROM csv_loss) + (SELECT count(*) FROM duet.kafka_dead_letters WHERE consumer = 'csvloss')},
	"$csv_total", 'csv: every message is a row or a dead letter', 30);
is(q_node('SELECT count(*), count(DISTINCT a) FROM csv_loss'), scalar(@csv_rows) . '|' . scalar(@csv_rows), 'csv: rows = good messages');
is(q_node(q{SELECT string_agg("offset"::text, ',' ORDER BY "offset") FROM duet.kafka_dead_letters WHERE consumer = 'csvloss'}),
	join(',', grep { !ref $csv[$_]->[1] } 0 .. $#csv), 'csv: dead letters = exactly the bad messages');
for my $i (0 .. $#csv)
{
	my ($msg, $want) = @{ $csv[$i] };
	(my $shown = $msg) =~ s/([\r\n])/$1 eq "\n" ? '\n' : '\r'/ge;
	if (ref $want)
	{
		is(q_node("SELECT coalesce(b, '<null>') FROM csv_loss WHERE a = $want->[0]"), $want->[1] // '<null>',
			"csv: message $i ($shown) is one row");
	}
	else
	{
		like(q_node(qq{SELECT error FROM duet.kafka_dead_letters WHERE consumer = 'csvloss' AND "offset" = $i}),
			qr/^\Q$want\E/, "csv: message $i ($shown) is one dead letter");
	}
}

# ---- 5. tombstones and COPY's context ------------------------------------------------------------
produce_msgs($broker, 'tomb', [ '{"id": 1, "cost": 1}', undef, '{"id": 2, "cost": "lots"}', '{"id": 3, "cost": 3}' ]);
produce_msgs($broker, 'tombtext', [ 'a line', undef, 'another line' ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('tomb', 'tomb', 'tomb', '$bs', 'json', flush_interval_ms => 50)");
$node->safe_psql('postgres', "SELECT duet_kafka_consume('tombtext', 'tombtext', 'tomb_text', '$bs', 'text', flush_interval_ms => 50)");
wait_for($node, q{SELECT string_agg(id::text, ',' ORDER BY id) FROM tomb}, '1,3', 'tombstone: the good messages land', 30);
wait_for($node, q{SELECT "offset", tombstone, value IS NULL, error FROM duet.kafka_dead_letters WHERE consumer = 'tomb' ORDER BY "offset"},
	"1|t|t|message is a tombstone (null value)\n2|f|f|invalid input syntax for type numeric: \"lots\"", 'tombstone: a dead letter marked as a tombstone, NULL value', 30);
like(q_node(q{SELECT detail FROM duet.kafka_dead_letters WHERE consumer = 'tomb' AND "offset" = 2}),
	qr/column cost: "lots"/, 'dead letter detail keeps COPY\'s column and value');
wait_for($node, q{SELECT string_agg(line, ',' ORDER BY _offset) FROM tomb_text}, 'a line,another line', 'tombstone (text): not an empty row', 30);
is(q_node(q{SELECT "offset", tombstone FROM duet.kafka_dead_letters WHERE consumer = 'tombtext'}), '1|t',
	'tombstone (text): dead-lettered as a tombstone');
like(q_node(q{SELECT detail FROM duet.kafka_dead_letters WHERE consumer = 'csvloss' AND "offset" = 16}),
	qr/column a: "x"/, 'csv: dead letter detail keeps COPY\'s column and value');

# ---- 4. deferred constraints -----------------------------------------------------------------------
# 300 distinct keys, then three keys again, two keys already in the table and two missing references.
my @def = map { "{\"k\": $_, \"ref\": " . ($_ % 10 + 1) . '}' } 1 .. 300;
splice(@def, 100, 0, '{"k": 5, "ref": 1}');        # offset 100: duplicate of offset 4
splice(@def, 200, 0, '{"k": 150, "ref": 1}');      # offset 200: duplicate of offset 150
push @def, '{"k": 299, "ref": 1}';                  # offset 302: duplicate of offset 300
push @def, '{"k": 1000, "ref": 1}', '{"k": 1001, "ref": 2}';    # 303, 304: already in the table
push @def, '{"k": 400, "ref": 99}', '{"k": 401, "ref": 77}';   # 305, 306: no such reference
produce_msgs($broker, 'deferred', \@def);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('deferred', 'deferred', 'deferred_t', '$bs', 'json', batch_size => 1000, flush_interval_ms => 300)");
wait_for($node, q{SELECT count(*) FROM deferred_t WHERE _offset >= 0}, '300', 'deferred: every distinct key lands', 30);
wait_for($node, q{SELECT string_agg("offset" || ':' || error, E'\n' ORDER BY "offset") FROM duet.kafka_dead_letters WHERE consumer = 'deferred'},
	join("\n", (map { "$_:duplicate key value violates unique constraint \"deferred_t_k_key\"" } 100, 200, 302, 303, 304),
		map { "$_:insert or update on table \"deferred_t\" violates foreign key constraint \"deferred_t_ref_fkey\"" } 305, 306),
	'deferred: the later duplicates, the keys already there and the missing references are dead letters', 30);
produce_msgs($broker, 'deferred', [ map { "{\"k\": $_, \"ref\": 1}" } 501 .. 510 ]);
wait_for($node, q{SELECT count(*) FROM deferred_t WHERE _offset >= 0}, '310', 'deferred: the partition goes on', 30);
is(q_node(q{SELECT count(*), count(DISTINCT k) FROM deferred_t}), '312|312', 'deferred: keys unique');

# ---- 2. offsets out of range after retention --------------------------------------------------------
# A stopped consumer that had read 100 messages falls behind 7,000 messages of 1 KiB, past the dev
# broker's size retention (outrun_retention): its stored offset 100 is then below the partition's
# low watermark.
produce($broker, 'retain', [ map { "{\"n\": $_}" } 1 .. 100 ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('retain', 'retain', 'retain', '$bs', 'json', batch_size => 2000, flush_interval_ms => 50)");
wait_for($node, 'SELECT count(*) FROM retain', '100', 'retention: first 100 messages ingested', 30);
$node->safe_psql('postgres', "SELECT duet_kafka_stop('retain')");
wait_for($node, q{SELECT state, workers FROM duet.kafka_status WHERE name = 'retain'}, 'stopped|0', 'retention: consumer stopped', 30);
my $low = outrun_retention($broker, 'retain', 101, 7100);
ok($low =~ /^\d+$/ && $low > 100, "retention deleted the oldest messages: low watermark $low > stored offset 100");
my $offset_log = -s $node->logfile;
$node->safe_psql('postgres', "SELECT duet_kafka_start('retain')");
my $expect = 100 + (7100 - $low);
wait_for($node, 'SELECT count(*), count(DISTINCT _offset) FROM retain', "$expect|$expect",
	"retention: resumes at the low watermark, every retained message ingested ($expect rows)", 60);
is(q_node(q{SELECT min(n) FILTER (WHERE n > 100), max(n) FROM retain}), ($low + 1) . '|7100',
	'retention: rows from the low watermark to the end');
is(q_node(q{SELECT g.consumer, g.topic, g.partition, g.from_offset, g.to_offset, g.resume_offset, g.messages, g.reason
	FROM duet.kafka_gaps g WHERE consumer = 'retain'}),
	"retain|retain|0|100|$low|$low|" . ($low - 100) . '|offsets out of range: deleted by the broker before they were ingested',
	'retention: the skipped range is recorded in duet.kafka_gaps');
ok(wait_until(sub { slurp_file($node->logfile, $offset_log) =~
	/WARNING:  Kafka consumer "retain" skipped offsets 100 to @{[ $low - 1 ]} of partition 0/ }, 10),
	'retention: a WARNING in the server log');
wait_for($node, q{SELECT gaps, gap_messages, lag FROM duet.kafka_status WHERE name = 'retain'}, '1|' . ($low - 100) . '|0',
	'retention: the status shows the gap', 30);
produce($broker, 'retain', [ map { "{\"n\": $_}" } 7101 .. 7110 ]);
wait_for($node, 'SELECT count(*) FROM retain', $expect + 10, 'retention: new messages follow', 30);

# ---- 3. reset to 'latest' while messages keep arriving -------------------------------------------------
# A producer sends {"n": i} for 8 s; 2 s in, the consumer is reset to 'latest'. Every message whose
# Kafka timestamp (set by the producer when it sent it) is after the reset call returned — so after
# its commit — must be ingested.
produce($broker, 'race', [ map { "{\"n\": $_}" } 1 .. 50 ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('race', 'race', 'race', '$bs', 'json', flush_interval_ms => 50)");
wait_for($node, 'SELECT count(*) FROM race', '50', 'reset race: first messages ingested', 30);
my $child = fork();
die "fork: $!" unless defined $child;
if ($child == 0)
{
	open(my $kc, '|-', 'kcat', '-P', '-b', $bs, '-t', 'race', '-X', 'linger.ms=5') or die "kcat: $!";
	my $old = select($kc); $| = 1; select($old);
	my $end = time() + 8;
	my $n = 51;
	while (time() < $end)
	{
		print $kc "{\"n\": $n}\n";
		$n++;
		usleep(4_000);
	}
	close $kc;
	POSIX::_exit(0);    # not exit: the END blocks would stop the node and the broker
}
sleep 2;
$node->safe_psql('postgres', "SELECT duet_kafka_reset('race', 'latest')");
my $reset_done_ms = int(time() * 1000) + 1;
waitpid($child, 0);
my %after;
for my $line (split /\n/, `kcat -C -b $bs -t race -p 0 -o beginning -e -q -f '%T %s\\n'`)
{
	my ($ts, $n) = $line =~ /^(\d+) \{"n": (\d+)\}$/ or next;
	$after{$n} = 1 if $ts > $reset_done_ms;
}
my $n_after = scalar keys %after;
my ($first_after) = sort { $a <=> $b } keys %after;
ok($n_after > 200, "reset race: $n_after messages produced after the reset committed (from n = $first_after)");
wait_for($node, "SELECT count(DISTINCT n) FROM race WHERE n >= $first_after", "$n_after",
	'reset race: every message produced after the reset is ingested', 60);
is(q_node('SELECT count(*) - count(DISTINCT n) FROM race'), '0', 'reset race: none twice');
note('reset race: rows ' . $node->safe_psql('postgres', 'SELECT count(*) FROM race') . ", produced after the reset $n_after");

$node->stop;
stop_broker($broker);
done_testing();

# json format: a message without a backslash is lexed without de-escaping (its strings are their
# lexemes), one with a backslash the usual way (issue 12, "Fast"). Both must give the same values:
# each message below comes in a plain and an escaped spelling of the same JSON, and the rows of
# the two must be equal, and equal to PostgreSQL's own reading of the JSON (->>).
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker('jf:1');
my $bs = $broker->{bootstrap};
my $node = kafka_node('json_fields');

$node->safe_psql('postgres', q{
CREATE TABLE jf (n int, s text, "odd key" text, j jsonb, e text, u text, _offset bigint);
});

# [plain, escaped]: the same JSON value twice; n tells the pair apart from its row
my @pairs = (
	[ '{"n": 1, "s": "plain", "odd key": "spaced name", "j": {"a": [1, "x"]}, "e": "", "u": "ünï"}',
	  '{"n": 1, "s": "pl\u0061in", "odd key": "spaced\u0020name", "j": {"a": [1, "x"]}, "e": "", "u": "\u00fcn\u00ef"}' ],
	[ '{"s": "a/b", "n": 2, "nested": {"s": "not this one"}, "j": [], "e": null}',
	  '{"s": "a\/b", "n": 2, "nested": {"s": "not this one"}, "j": [], "e": null}' ],
	[ '{"n": 3, "s": "x", "j": [1, {"k": "v"}], "u": "{}"}',
	  '{"n": 3, "s": "\u0078", "j": [1, {"k": "v"}], "u": "{}"}' ],
	[ '{ "n" : 4 , "s" : "spaces around" , "odd key":"x" }',
	  '{ "n" : 4 , "s" : "spaces\u0020around" , "odd key":"x" }' ],
);
my @msgs;
for my $p (@pairs) { push @msgs, $p->[0], $p->[1]; }
push @msgs, '{"n": 5, "s": "quote \" in"}';    # a quote needs a backslash: escaped path only
produce_msgs($broker, 'jf', \@msgs);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('jf', 'jf', 'jf', '$bs', 'json', flush_interval_ms => 100)");
wait_for($node, 'SELECT count(*) FROM jf', scalar(@msgs), 'every message is a row', 30);
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.kafka_dead_letters}), '0', 'no dead letters');

# plain (even offset) and escaped (odd offset) spellings give the same row
is($node->safe_psql('postgres', q{
SELECT count(*) FROM jf a JOIN jf b ON b._offset = a._offset + 1
 WHERE a._offset % 2 = 0 AND a._offset < 8
   AND (a.n, a.s, a."odd key", a.j, a.e, a.u) IS NOT DISTINCT FROM (b.n, b.s, b."odd key", b.j, b.e, b.u)}),
	scalar(@pairs), 'the plain and the escaped spelling of each message give the same row');

# and the values are PostgreSQL's reading of the JSON
my $i = 0;
for my $m (@msgs)
{
	(my $lit = $m) =~ s/'/''/g;
	is($node->safe_psql('postgres', qq{
SELECT (n, s, "odd key", j, e, u) IS NOT DISTINCT FROM
       ((m->>'n')::int, m->>'s', m->>'odd key', (m->'j'), m->>'e', m->>'u')
  FROM jf, (SELECT '$lit'::jsonb AS m) x WHERE _offset = $i}), 't', "message $i: the values JSON holds");
	$i++;
}

$node->stop;
stop_broker($broker);
done_testing();

# Rules end to end: messages on Kafka → ingested by a consumer worker → a row rule fires on the
# batch → the alert event goes through the outbox to rules.alerts, read back with kcat.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker('ads:2', 'rules.alerts:1');
my $b = $broker->{bootstrap};
my $node = kafka_node('rules_kafka', "duet.outbox_brokers = '$b'", 'duet.rules_interval = 0');

$node->safe_psql('postgres', q{
SELECT duet_tenant_create('acme');
SELECT duet_tenant_create('globex');
CREATE TABLE ad_spend (tenant text NOT NULL, campaign_id int, day date, spend float8, budget float8);
SELECT duet_set_tenant('acme');
SELECT duet_rule_create('over_budget', 'spend > budget', target => 'ad_spend', labels => '{campaign_id}',
                        value => 'spend - budget', severity => 'critical',
                        message => 'campaign {campaign_id} overspent by {value} on {day}',
                        topic => 'rules.alerts');
});

# 1,000 messages across two partitions: acme's campaign 99 (and no other row of it) overspends; globex's campaign 43
# overspends too, but acme's rule must not see another tenant's rows.
my @lines;
for my $i (1 .. 1000)
{
	my ($tenant, $c, $spend) = ('acme', $i % 50, 10);
	($c, $spend) = (99, 500) if $i == 500;
	($tenant, $c, $spend) = ('globex', 43, 900) if $i == 501;
	push @lines, encode_json({ tenant => $tenant, campaign_id => $c, day => '2026-10-' . sprintf('%02d', 1 + $i % 28),
							   spend => $spend, budget => 100 });
}
produce($broker, 'ads', \@lines);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('ads', 'ads', 'ad_spend', '$b', 'json', batch_size => 250, flush_interval_ms => 100)");

wait_for($node, 'SELECT count(*) FROM ad_spend', '1000', 'every message ingested');
is($node->safe_psql('postgres', q{SELECT string_agg(labels::text || ' ' || state, ', ') FROM duet.alerts WHERE state <> 'normal'}),
	'{"campaign_id": "99"} firing', 'the rule fired for acme campaign 99 only');
wait_for($node, q{SELECT count(*) FROM duet.kafka_outbox WHERE topic = 'rules.alerts' AND sent_at IS NOT NULL}, '1',
	'the alert event was published');

my $consumed = `kcat -C -b $b -t rules.alerts -e -q -f '%k\\t%s\\n' 2>/dev/null`;
my @events = grep { length } split /\n/, $consumed;
is(scalar(@events), 1, 'one event on rules.alerts');
my ($key, $json) = split /\t/, $events[0], 2;
is($key, 'acme/over_budget/{"campaign_id": "99"}', 'keyed by tenant, rule and labels');
my $event = decode_json($json);
is($event->{state}, 'firing', 'event state');
is($event->{tenant}, 'acme', 'event tenant');
is($event->{severity}, 'critical', 'event severity');
is($event->{value}, 400, 'event value');
like($event->{message}, qr/^campaign 99 overspent by 400 on 2026-10-/, 'event message');

$node->stop;
stop_broker($broker);
done_testing();

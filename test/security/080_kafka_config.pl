# Issue 12: a consumer's configuration is visible to its owners with secrets masked
# (duet.kafka_consumer_config), and duet_kafka_alter / duet_kafka_replay act only for them.
# The victim bob (tenant globex) owns canary_globex_7731_c, whose sasl.password is the canary.
# Every attacker kind — (a) no tenant, (b) a tenant member, (c) another tenant's Kafka admin —
# sees none of it; bob sees his consumer but never the secret; nobody but a superuser reads a
# secret back, not even through duet_kafka_alter's errors or a role that acts as bob.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_kafka_config');
$node->safe_psql('postgres', qq{
CREATE TABLE public.kadmin_t (id int PRIMARY KEY, v text);
GRANT ALL ON public.kadmin_t TO kadmin;
SET ROLE kadmin;
SELECT duet_kafka_consume('kadmin_c', 'own-topic', 'public.kadmin_t', '127.0.0.1:1',
                          properties => '{"sasl.username": "initech", "sasl.password": "kadmin-pw"}');
RESET ROLE;
-- a member of bob's role acts as bob (pg_has_role USAGE), as a tenant's second admin would
CREATE ROLE bob_deputy LOGIN IN ROLE bob;
INSERT INTO duet.kafka_dead_letters (consumer_id, consumer, owner, topic, partition, "offset", value, error)
    SELECT id, name, owner, topic, 0, 0, '{"note": "$CANARY"}', 'bad' FROM duet.kafka_consumers WHERE name = 'canary_globex_7731_c';
});
my $fp_sql = q{SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
    SELECT row_to_json(c)::text x FROM duet.kafka_consumers c
    UNION ALL SELECT row_to_json(s)::text FROM duet.kafka_consumer_secrets s
    UNION ALL SELECT (row_to_json(d)::jsonb - 'failed_at')::text FROM duet.kafka_dead_letters d
    UNION ALL SELECT row_to_json(m)::text FROM globex.metrics m) s};
my $fp = $node->safe_psql('postgres', $fp_sql);

# Control: the superuser sees the canary in the secrets table, masked in the view.
is($node->safe_psql('postgres', q{SELECT s.properties->>'sasl.password' FROM duet.kafka_consumer_secrets s
    JOIN duet.kafka_consumers c ON c.id = s.consumer_id WHERE c.name = 'canary_globex_7731_c'}), $CANARY,
	'control: the secret is stored');
is($node->safe_psql('postgres', q{SELECT properties->>'sasl.password' FROM duet.kafka_consumer_config WHERE name = 'canary_globex_7731_c'}),
	'********', 'control: even the superuser sees it masked in the view');

# The owner and his deputy: their consumer, the secret masked, the username shown.
for my $r (qw(bob bob_deputy))
{
	my ($rc, $out, $err) = as_role($node, $r, q{SELECT name, properties FROM duet.kafka_consumer_config ORDER BY name;});
	is($out, 'canary_globex_7731_c|{"sasl.password": "********", "sasl.username": "globex"}',
		"$r sees bob's consumer only, its secret masked");
	unlike($out . $err, qr/\Q$CANARY\E/, "$r never sees the secret through the view");
	($rc, $out, $err) = as_role($node, $r, q{SELECT * FROM duet.kafka_consumer_secrets; SELECT properties FROM duet.kafka_consumers;});
	unlike($out, qr/\Q$CANARY\E/, "$r cannot read the secrets or consumers tables");
	like($err, qr/permission denied/, "$r: the tables are refused");
}

# kadmin sees its own consumer, nothing of globex's; alice and nobody cannot read the view.
{
	my ($rc, $out, $err) = as_role($node, 'kadmin', q{SELECT name, properties->>'sasl.password' FROM duet.kafka_consumer_config;});
	is($out, 'kadmin_c|********', 'kadmin sees its own consumer, masked, and not globex\'s');
	for my $r (qw(nobody alice))
	{
		($rc, $out, $err) = as_role($node, $r, q{SELECT * FROM duet.kafka_consumer_config;});
		no_canary($out, "$KIND{$r}: nothing of globex in the view");
		like($err, qr/permission denied for view kafka_consumer_config/, "$KIND{$r}: the view is refused");
	}
}

# Alter and replay with globex's consumer name, as each attacker: refused, nothing changes.
my @calls = (
	[ 'alter brokers', q{SELECT duet_kafka_alter('canary_globex_7731_c', brokers => '127.0.0.1:9');} ],
	[ 'alter target', q{SELECT duet_kafka_alter('canary_globex_7731_c', target => 'public.kadmin_t');} ],
	[ 'alter properties', q{SELECT duet_kafka_alter('canary_globex_7731_c', properties => '{"sasl.password": null}');} ],
	[ 'alter to upsert', q{SELECT duet_kafka_alter('canary_globex_7731_c', mode => 'upsert', key_columns => '{campaign}');} ],
	[ 'replay', q{SELECT * FROM duet_kafka_replay('canary_globex_7731_c');} ],
	[ 'replay by id', q{SELECT * FROM duet_kafka_replay('canary_globex_7731_c', ids => (SELECT array_agg(id) FROM duet.kafka_dead_letters));} ],
);
for my $r (@ATTACKERS)
{
	for my $c (@calls)
	{
		my ($what, $sql) = @$c;
		my ($rc, $out, $err) = as_role($node, $r, $sql);
		# the error names the consumer the attacker named; the secret and the data stay out
		no_canary($out, "$what of globex's consumer as $KIND{$r}: shows nothing of globex");
		unlike($err, qr/\Q$CANARY\E/, "$what of globex's consumer as $KIND{$r}: no secret or data in the error");
		like($err, $r eq 'kadmin' ? qr/must be owner of Kafka consumer/ : qr/permission denied for (function|table)/,
			"$what of globex's consumer as $KIND{$r}: refused");
		is($node->safe_psql('postgres', $fp_sql), $fp, "$what of globex's consumer as $KIND{$r}: changes nothing");
	}
}

# kadmin, on its own consumer: may not point it at globex's table, nor set a superuser property,
# and its target swap cannot read the secret of anyone through an error.
{
	my ($rc, $out, $err) = as_role($node, 'kadmin', q{SELECT duet_kafka_alter('kadmin_c', target => 'globex.metrics');});
	like($err, qr/permission denied for (schema globex|table metrics)/, 'kadmin cannot retarget its consumer at globex\'s table');
	($rc, $out, $err) = as_role($node, 'kadmin', q{SELECT duet_kafka_alter('kadmin_c', properties => '{"ssl.key.location": "/etc/passwd"}');});
	like($err, qr/Kafka property "ssl.key.location" cannot be set here/, 'kadmin cannot set a file property through alter');
	is($node->safe_psql('postgres', $fp_sql), $fp, 'kadmin\'s refused alters change nothing');
	# a property merged in keeps the stored secret, which kadmin still cannot read back
	($rc, $out, $err) = as_role($node, 'kadmin', q{SELECT duet_kafka_alter('kadmin_c', properties => '{"client.rack": "r1"}');
SELECT properties FROM duet.kafka_consumer_config WHERE name = 'kadmin_c';});
	is((split /\n/, $out)[-1], '{"client.rack": "r1", "sasl.password": "********", "sasl.username": "initech"}',
		'kadmin\'s alter merges properties; the secret stays masked');
	unlike($out . $err, qr/kadmin-pw/, 'kadmin never reads its stored secret back');
}

# bob may alter his own consumer; the secret stays out of what he can read.
{
	my ($rc, $out, $err) = as_role($node, 'bob', q{SELECT duet_kafka_alter('canary_globex_7731_c', batch_size => 500);
SELECT batch_size, properties->>'sasl.password' FROM duet.kafka_consumer_config;});
	is((split /\n/, $out)[-1], '500|********', 'bob alters his consumer; the secret stays masked');
	unlike($out . $err, qr/\Q$CANARY\E/, 'bob never sees the secret');
}
not_pwned($node, $_, "$KIND{$_}: nothing of the attacker ran privileged") for @ATTACKERS;

$node->stop;
done_testing();

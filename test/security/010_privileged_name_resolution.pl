# Issue 11, class 1: name resolution under a privileged user.
#
# Every entry point that switches to the extension owner or the bootstrap superuser is attacked
# with every shadow an attacker can make: a pg_temp domain named like a built-in type (pg_temp is
# searched first for types) whose CHECK runs the attacker's code; operators and functions with
# built-in names in the attacker's schema placed first on search_path (an exact-type match beats
# pg_catalog's, and a same-type one wins when the schema is earlier); the same in pg_temp, named
# first on search_path. The secure outcome, each time: the attacker's code never ran as a
# superuser or the owner, and the attacker is not a superuser afterwards.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;
use DuetKafka;

my $node = new_node('sec_names');

# The attackers' own objects: a row rule and a query rule on their table, a config key with
# history, a Kafka consumer; kadmin is also granted the privileged scheduler entry point and the
# metric functions (grants an operator would make; they must not make it a superuser).
$node->safe_psql('postgres', q{
GRANT EXECUTE ON FUNCTION duet_rules_evaluate(timestamptz), duet_metric_define(text, text, text, jsonb, text, text, text),
                          duet_metric_drop(text, text), duet_config_define(text, jsonb, text),
                          duet_config_set_default(text, jsonb) TO kadmin;
});
for my $r (qw(alice kadmin))
{
	my $tenant = $r eq 'alice' ? 'acme' : 'initech';
	$node->safe_psql('postgres', qq{
SELECT duet_rule_create('own_row', 'v > 10', target => '$r.t', labels => '{label}');
SELECT duet_rule_create('own_query', 'v > 10', query => 'SELECT label, v FROM $r.t', labels => '{label}');
INSERT INTO $r.t VALUES ('$tenant', 100, 'x');
SELECT duet_config_set('own.key', '1'), duet_config_set('own.key', '2');
}, extra_params => [ '-U', $r ]);
}
# duet_kafka_reset asks the brokers for the position: own_c reads a real (dev) broker.
my $broker = start_broker('own-topic:1');
$node->safe_psql('postgres', qq{SELECT duet_kafka_consume('own_c', 'own-topic', 'kadmin.t', '$broker->{bootstrap}')},
	extra_params => [ '-U', 'kadmin' ]);
reset_kit($node);

# --- the shadows -------------------------------------------------------------------------------
# name => [search_path or undef, sub(attacker, tag) → SQL]
my @shadows;
for my $type (qw(text jsonb int8 int4 oid timestamptz bool name regclass regrole interval float8))
{
	push @shadows, [ "temp domain pg_temp.$type", undef, sub { temp_domain($_[0], $type, $_[1]) } ];
}
for my $op ([ '=', 'int8', 'int8' ], [ '=', 'text', 'text' ], [ '=', 'regclass', 'oid' ], [ '=', 'int4', 'int4' ],
	[ '=', 'oid', 'oid' ], [ '+', 'int4', 'int4' ], [ '?', 'jsonb', 'text' ], [ '->>', 'jsonb', 'text' ],
	[ '=', 'jsonb', 'jsonb' ], [ '||', 'text', 'text' ])
{
	my ($o, $l, $rt) = @$op;
	push @shadows, [ "operator $o($l,$rt) in a schema first on search_path", 'ATTACKER, pg_catalog, public',
		sub { evil_op($_[0], $_[0], $o, $l, $rt, $_[1]) } ];
}
for my $op ([ '=', 'int8', 'int8' ], [ '=', 'text', 'text' ], [ '=', 'regclass', 'oid' ])
{
	my ($o, $l, $rt) = @$op;
	push @shadows, [ "operator $o($l,$rt) in pg_temp first on search_path", 'pg_temp, pg_catalog, public',
		sub { evil_op($_[0], 'pg_temp', $o, $l, $rt, $_[1]) } ];
}
for my $fn ([ 'now() timestamptz', 'pg_catalog.now()' ], [ 'lower(a text) text', 'pg_catalog.lower(a)' ],
	[ 'md5(a text) text', 'pg_catalog.md5(a)' ], [ 'hashtext(a text) int4', 'pg_catalog.hashtext(a)' ],
	[ 'make_interval(mins int4) interval', 'pg_catalog.make_interval(mins => mins)' ],
	[ 'pg_notify(a text, b text) void', 'pg_catalog.pg_notify(a, b)' ],
	[ 'jsonb_typeof(a jsonb) text', 'pg_catalog.jsonb_typeof(a)' ],
	[ 'format(a text, b text) text', 'pg_catalog.format(a, b)' ],
	[ 'concat_ws(a text, b text, c text, d text, e text) text', 'pg_catalog.concat_ws(a, b, c, d, e)' ],
	[ 'to_char(a timestamp, b text) text', 'pg_catalog.to_char(a, b)' ])
{
	my ($sig, $body) = @$fn;
	(my $short = $sig) =~ s/\(.*//;
	push @shadows, [ "function $short() in a schema first on search_path", 'ATTACKER, pg_catalog, public',
		sub { evil_fn($_[0], $_[0], $sig, $body, $_[1]) } ];
}

# --- the entry points --------------------------------------------------------------------------
# [name, attacker kinds, sub(attacker, tenant, n) → SQL]; n makes names unique per attack
my @entries = (
	[ 'INSERT into own table with a row rule (rules trigger as owner)', [qw(alice kadmin)],
		sub { "INSERT INTO $_[0].t VALUES ('$_[1]', 1, 'x'), ('$_[1]', 100, 'z$_[2]');" } ],
	[ 'INSERT into a shared table with the victim\'s row rule', [qw(nobody alice kadmin)],
		sub { "INSERT INTO public.shared_events VALUES ('globex', 1, 'q'), ('globex', 100, 'w$_[2]');" } ],
	[ 'duet_rule_create (row rule)', [qw(alice)],
		sub { "SELECT duet_rule_create('atk_$_[2]', 'v > 10', target => '$_[0].t', labels => '{label}', message => '{label}');" } ],
	[ 'duet_rule_create (query rule)', [qw(alice)],
		sub { "SELECT duet_rule_create('atkq_$_[2]', 'v > 10', query => 'SELECT label, v FROM $_[0].t', labels => '{label}');" } ],
	[ 'duet_rule_alter', [qw(alice)],
		sub { qq{SELECT duet_rule_alter('own_row', '{"condition": "v > 1$_[2]", "labels": ["label"], "for": "0"}');} } ],
	[ 'duet_rule_alter (query)', [qw(alice)],
		sub { qq{SELECT duet_rule_alter('own_query', '{"query": "SELECT label, v, $_[2] AS n FROM $_[0].t"}');} } ],
	[ 'duet_rule_test', [qw(alice)],
		sub { qq{SELECT duet_rule_test('own_row', '{"v": 100, "label": "t", "tenant": "acme"}');} } ],
	[ 'duet_rule_disable/enable/drop', [qw(alice)],
		sub { "SELECT duet_rule_disable('own_query'); SELECT duet_rule_enable('own_query');"
			. " SELECT duet_rule_create('drop_$_[2]', 'v > 1', target => '$_[0].t'); SELECT duet_rule_drop('drop_$_[2]');" } ],
	[ 'duet_config_set/unset/rollback', [qw(alice)],
		sub { "SELECT duet_config_set('own.key', '$_[2]'); SELECT duet_config_rollback('own.key', 1);"
			. " SELECT duet_config_set('tmp.k$_[2]', '1'); SELECT duet_config_unset('tmp.k$_[2]');" } ],
	[ 'duet_config_get/effective/history/at', [qw(nobody alice)],
		sub { "SELECT duet_config_get('own.key'), duet_config_get_int('own.key', 0); SELECT * FROM duet.config_effective;"
			. " SELECT * FROM duet_config_history('own.key'); SELECT duet_config_at('own.key', now());" } ],
	[ 'duet_config_define/set_default (granted)', [qw(kadmin)],
		sub { qq{SELECT duet_config_define('def.k$_[2]', '{"type": "number"}', 'd'); SELECT duet_config_set_default('def.k$_[2]', '1');} } ],
	[ 'duet_kafka_consume', [qw(kadmin)],
		sub { "SELECT duet_kafka_consume('c$_[2]', 'topic-$_[2]', '$_[0].t', '127.0.0.1:1');" } ],
	[ 'duet_kafka_stop/start', [qw(kadmin)], sub { "SELECT duet_kafka_stop('own_c'); SELECT duet_kafka_start('own_c');" } ],
	[ 'duet_kafka_reset', [qw(kadmin)],
		sub { "SELECT duet_kafka_reset('own_c', 'latest'); SELECT duet_kafka_reset('own_c', now());" } ],
	[ 'duet_kafka_drop', [qw(kadmin)],
		sub { "SELECT duet_kafka_consume('d$_[2]', 'topic-d$_[2]', '$_[0].t', '127.0.0.1:1'); SELECT duet_kafka_drop('d$_[2]');" } ],
	[ 'duet_rules_evaluate (granted)', [qw(kadmin)], sub { "SELECT duet_rules_evaluate();" } ],
	[ 'duet_metric_define/drop (granted)', [qw(kadmin)],
		sub { "SELECT duet_metric_define('m$_[2]', 'a / b', 'x'); SELECT duet_metric_drop('m$_[2]');" } ],
	[ 'duet_set_tenant/current_tenant/my_tenants', [qw(nobody alice)],
		sub { ($_[1] ? "SELECT duet_set_tenant('$_[1]');" : '') . " SELECT duet_current_tenant(), duet_my_tenants();" } ],
);

# Controls (not attacks): each entry point works for its attackers without a shadow, so that the
# attacks below exercise it rather than an error of the setup.
my $c = 0;
for my $e (@entries)
{
	my ($ename, $kinds, $ep) = @$e;
	for my $r (@$kinds)
	{
		my $tenant = { nobody => '', alice => 'acme', kadmin => 'initech' }->{$r};
		$c++;
		my ($rc, $out, $err) = as_role($node, $r, $ep->($r, $tenant, "9$c") . "\n");
		unlike($err, qr/ERROR/, "control: $ename works for $KIND{$r}");
	}
}
reset_kit($node);

my $n = 0;
for my $e (@entries)
{
	my ($ename, $kinds, $ep) = @$e;
	for my $r (@$kinds)
	{
		my $tenant = { nobody => '', alice => 'acme', kadmin => 'initech' }->{$r};
		for my $s (@shadows)
		{
			my ($sname, $path, $make) = @$s;
			$n++;
			my $tag = "$n";
			my $sql = $make->($r, $tag);
			if ($path)
			{
				(my $p = $path) =~ s/ATTACKER/$r/;
				$sql .= "SET search_path = $p;\n";
			}
			$sql .= $ep->($r, $tenant, $n) . "\n";
			my ($rc, $out, $err) = as_role($node, $r, $sql);
			not_pwned($node, $r, "$ename as $KIND{$r}: $sname", $err);
		}
	}
}

stop_broker($broker);
$node->stop;
done_testing();

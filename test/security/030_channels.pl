# Issue 11, class 3: broadcast channels. pg_duet NOTIFYs on duet_alerts (alert transitions) and
# duet_config (config changes); every role can LISTEN to and NOTIFY on any channel. A listener of
# another tenant must learn nothing of globex's content (message, labels, rule and key names,
# values); a forged notification may at most cause a harmless re-read, and the extension itself
# must never deliver a notification whose content an attacker chose.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use SecurityHelper;

my $node = new_node('sec_channels');

# A psql session of $role listening on both channels; ->() returns the payloads received so far.
sub listener
{
	my ($role) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-q', '-d', $node->connstr('postgres') . " user=$role" ],
		\$in, \$out, \$err);
	$in .= "LISTEN duet_alerts; LISTEN duet_config; SELECT 'listening';\n";
	wait_until(sub { $h->pump_nb; $out =~ /listening/ }, 20) or die "listener $role not ready: $err";
	return {
		h => $h,
		poll => sub {
			$in .= "SELECT 'poll';\n";
			for (1 .. 5) { $h->pump_nb; usleep(100_000) }
			return join("\n", $out =~ /Asynchronous notification "duet_\w+" with payload "(.*?)" received/g);
		},
		quit => sub { $in .= "\\q\n"; $h->finish },
	};
}

# Each event globex causes, with what a listener of another tenant must not learn from it.
my $k = 0;
my @events = (
	[ 'a row rule alert firing', sub {
		$k++; $node->safe_psql('postgres', "INSERT INTO public.shared_events VALUES ('globex', 500, 'canary_globex_7731_l$k')") } ],
	[ 'a row rule alert resolving', sub {
		$node->safe_psql('postgres', "INSERT INTO public.shared_events VALUES ('globex', 1, 'canary_globex_7731_l$k')") } ],
	[ 'a query rule alert firing', sub {
		$node->safe_psql('postgres', "UPDATE globex.metrics SET ctr = 0.5; SELECT duet_rules_evaluate();
		                               UPDATE globex.metrics SET ctr = 0.001; SELECT duet_rules_evaluate();") } ],
	[ 'a config set', sub {
		$k++; $node->safe_psql('postgres', "SELECT duet_config_set('canary_globex_7731.k$k', '1')", extra_params => [ '-U', 'bob' ]) } ],
	[ 'a config unset', sub {
		$node->safe_psql('postgres', "SELECT duet_config_unset('canary_globex_7731.k$k')", extra_params => [ '-U', 'bob' ]) } ],
	[ 'a config rollback', sub {
		$node->safe_psql('postgres', "SELECT duet_config_rollback('canary_globex_7731.key', 1)", extra_params => [ '-U', 'bob' ]) } ],
);
for my $r (@ATTACKERS)
{
	for my $e (@events)
	{
		my ($what, $do) = @$e;
		my $l = listener($r);
		$do->();
		my $got = $l->{poll}->();
		$l->{quit}->();
		no_canary($got, "LISTEN as $KIND{$r}: $what of globex reveals nothing of it");
	}
}

# What the victim's own listener gets: an opaque id to read back under RLS, not the content (a
# forged payload with content would otherwise be indistinguishable from a genuine one).
{
	my $l = listener('bob');
	$k++;
	$node->safe_psql('postgres', "INSERT INTO public.shared_events VALUES ('globex', 500, 'own$k')");
	$node->safe_psql('postgres', "SELECT duet_config_set('own.k$k', '1')", extra_params => [ '-U', 'bob' ]);
	my $got = $l->{poll}->();
	$l->{quit}->();
	unlike($got, qr/"message"|"labels"/, 'duet_alerts carries no message or labels, only what identifies the row to re-read');
	unlike($got, qr/"key"\s*:/, 'duet_config carries no key name');
}

# Forged notifications: the victim's reads do not change; the extension never relays one.
for my $r (@ATTACKERS)
{
	my $before = $node->safe_psql('postgres', "SELECT duet_config_get('canary_globex_7731.key')", extra_params => [ '-U', 'bob' ]);
	my $alerts = $node->safe_psql('postgres', 'SELECT count(*), max(id) FROM duet.alerts');
	as_role($node, $r, q{NOTIFY duet_config, '{"tenant": "globex", "key": "canary_globex_7731.key", "version": 999, "operation": "set"}';
NOTIFY duet_alerts, '{"tenant": "globex", "rule": "canary_globex_7731_row", "state": "firing", "message": "FORGED"}';});
	is($node->safe_psql('postgres', "SELECT duet_config_get('canary_globex_7731.key')", extra_params => [ '-U', 'bob' ]),
		$before, "a duet_config notification forged by $KIND{$r} does not change globex's config reads");
	is($node->safe_psql('postgres', 'SELECT count(*), max(id) FROM duet.alerts'), $alerts,
		"a duet_alerts notification forged by $KIND{$r} creates no alert");
}

# A rule (or a row trigger) of acme that NOTIFYs: the notification would come from the scheduler's
# or the inserting session with the extension's channel name. Nothing forged may be delivered
# from inside the extension's evaluation.
$node->safe_psql('postgres', q{
CREATE FUNCTION alice.forge() RETURNS int LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM pg_catalog.pg_notify('duet_alerts', '{"tenant": "globex", "rule": "canary_globex_7731_row", "state": "firing", "message": "FORGED-BY-RULE"}');
    PERFORM pg_catalog.pg_notify('duet_config', '{"tenant": "globex", "key": "FORGED-BY-RULE", "version": 1, "operation": "set"}');
    RETURN 1;
END $f$;
ALTER FUNCTION alice.forge() OWNER TO alice;
});
$node->safe_psql('postgres', q{SELECT duet_rule_create('forger', 'v > 10', query => 'SELECT alice.forge() AS v')},
	extra_params => [ '-U', 'alice' ]);
for my $who ('bob', 'postgres')
{
	my $l = listener($who);
	$node->safe_psql('postgres', 'SELECT duet_rules_evaluate()');
	my $got = $l->{poll}->();
	$l->{quit}->();
	unlike($got, qr/FORGED-BY-RULE/, "an acme rule cannot send a notification on the extension's channels from the evaluation (listener $who)");
}
$node->safe_psql('postgres', q{SELECT duet_rule_drop('forger')}, extra_params => [ '-U', 'alice' ]);

# A formula's message template renders the attacker's data: labels and messages of acme never
# reach another tenant's listener either.
{
	my $l = listener('bob');
	$node->safe_psql('postgres', q{INSERT INTO alice.t VALUES ('acme', 500, 'acme-secret-label')}, extra_params => [ '-U', 'alice' ]);
	$node->safe_psql('postgres', q{SELECT duet_rule_create('acme_row', 'v > 10', target => 'alice.t', labels => '{label}', message => 'acme-secret {label}');
		INSERT INTO alice.t VALUES ('acme', 600, 'acme-secret-label2')}, extra_params => [ '-U', 'alice' ]);
	my $got = $l->{poll}->();
	$l->{quit}->();
	unlike($got, qr/acme-secret/, 'a globex listener learns nothing of acme\'s alerts');
}

$node->stop;
done_testing();

# Issue 11, class 4: duet_ask's guard trusting labels. The model's SQL (here the mock's answer,
# as a prompt-injected model would write it) calls code of the attacker's that the guard lets
# through or runs while deciding: IMMUTABLE-labelled functions the planner folds, aggregates with
# evil support functions, domain CHECKs, casts, operators, view bodies, policies. The marker is a
# session advisory lock (7777, ·) that <r>.ran() takes — it survives the guard's rolled-back
# subtransaction — and <r>.log. The secure outcome: the attacker's code never ran, not during
# duet_ask_guard() (PUBLIC), not during duet_ask(), not during duet_ask_run(). Also: effects of the
# run's subtransaction do not survive it, and duet.ask_run_timeout bounds guard + plan + run.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use SecurityHelper;

my $node = new_node('sec_guard', 'duet.ask_run_timeout = 1000', 'duet.ask_max_corrections = 0');
my $mock = start_mock($node);

# The attacker's objects (each attacker has its own copy in its schema).
for my $r (@ATTACKERS)
{
	$node->safe_psql('postgres', qq{
SET ROLE $r;
CREATE FUNCTION $r.sfunc(s text, v text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS \$f\$ BEGIN PERFORM $r.ran('sfunc'); RETURN v; END \$f\$;
CREATE FUNCTION $r.ffunc(s text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS \$f\$ BEGIN PERFORM $r.ran('finalfunc'); RETURN s; END \$f\$;
CREATE FUNCTION $r.cfunc(a text, b text) RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS \$f\$ BEGIN PERFORM $r.ran('combinefunc'); RETURN a; END \$f\$;
CREATE FUNCTION $r.plain(s text, v text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT v';
CREATE AGGREGATE $r.agg_s(text) (sfunc = $r.sfunc, stype = text);
CREATE AGGREGATE $r.agg_f(text) (sfunc = $r.plain, stype = text, finalfunc = $r.ffunc);
CREATE AGGREGATE $r.agg_c(text) (sfunc = $r.plain, stype = text, combinefunc = $r.cfunc, parallel = safe);
CREATE DOMAIN $r.dom_imm AS text CHECK ($r.imm('domain check'));
CREATE DOMAIN $r.dom_vol AS text CHECK ($r.ran('volatile domain check'));
CREATE TYPE $r.e AS ENUM ('a');
CREATE FUNCTION $r.castfn(x $r.e) RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$f\$ BEGIN PERFORM $r.ran('cast'); RETURN 1; END \$f\$;
CREATE CAST ($r.e AS int) WITH FUNCTION $r.castfn($r.e);
CREATE FUNCTION $r.opfn(a int, b int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS \$f\$ BEGIN PERFORM $r.ran('operator'); RETURN true; END \$f\$;
CREATE OPERATOR $r.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = $r.opfn);
CREATE FUNCTION $r.defn() RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$f\$ BEGIN PERFORM $r.ran('default'); RETURN 1; END \$f\$;
CREATE TABLE $r.d (x int DEFAULT $r.defn(), y int);
INSERT INTO $r.d (y) VALUES (1);
CREATE VIEW $r.v AS SELECT $r.imm('view body') AS x;
CREATE TABLE $r.p (x int);
INSERT INTO $r.p VALUES (1);
ALTER TABLE $r.p ENABLE ROW LEVEL SECURITY;
ALTER TABLE $r.p FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON $r.p USING ($r.imm('policy'));
CREATE FUNCTION $r.secdef() RETURNS int LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER AS \$f\$ BEGIN PERFORM $r.ran('secdef'); RETURN 1; END \$f\$;
CREATE FUNCTION $r.slow() RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$f\$ BEGIN PERFORM pg_catalog.pg_sleep(3); RETURN 1; END \$f\$;
CREATE FUNCTION $r.setcfg() RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$f\$
BEGIN PERFORM pg_catalog.set_config('atk.flag', 'survived', false); RETURN 1; END \$f\$;
CREATE FUNCTION $r.notif() RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$f\$
BEGIN PERFORM pg_catalog.pg_notify('atk_channel', 'survived'); RETURN 1; END \$f\$;
CREATE FUNCTION $r.lock() RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$f\$
BEGIN PERFORM pg_catalog.pg_advisory_lock(7777, 1); RETURN 1; END \$f\$;
CREATE SEQUENCE $r.seq;
CREATE FUNCTION $r.wr() RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$f\$
BEGIN INSERT INTO $r.d VALUES (99, 99); RETURN 1; END \$f\$;
RESET ROLE;
-- the setup's own INSERT ran the default: the attacks start from an empty log
TRUNCATE $r.log;
SELECT pg_catalog.pg_advisory_unlock_all();
});
}

my $LOCKS = q{SELECT 'locks=' || count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7777 AND pid = pg_backend_pid();};

# The guard's attacks: [what, SQL (R stands for the attacker's schema)]
my @sql = (
	[ 'IMMUTABLE-labelled function folded by the planner', q{SELECT R.imm('folded')} ],
	[ 'IMMUTABLE-labelled function over a column', q{SELECT R.imm(x::text) FROM generate_series(1, 2) x} ],
	[ 'aggregate with an evil transition function', q{SELECT R.agg_s(x) FROM (VALUES ('a'), ('b')) v(x)} ],
	[ 'aggregate with an evil final function', q{SELECT R.agg_f(x) FROM (VALUES ('a')) v(x)} ],
	[ 'aggregate with an evil combine function', q{SELECT R.agg_c(x::text) FROM generate_series(1, 100000) x} ],
	[ 'domain whose CHECK calls an IMMUTABLE-labelled function', q{SELECT 'x'::R.dom_imm} ],
	[ 'domain whose CHECK calls a volatile function', q{SELECT 'x'::R.dom_vol} ],
	[ 'domain CHECK on a column value', q{SELECT x::text::R.dom_imm FROM generate_series(1, 2) x} ],
	[ 'cast with an evil function', q{SELECT 'a'::R.e::int} ],
	[ 'operator with an evil function', q{SELECT 1 OPERATOR(R.===) 1} ],
	[ 'view whose body calls the function', q{SELECT * FROM R.v} ],
	[ 'row-level security policy calling the function', q{SELECT * FROM R.p} ],
	[ 'SECURITY DEFINER function labelled IMMUTABLE', q{SELECT R.secdef()} ],
	[ 'column default through an INSERT', q{INSERT INTO R.d (y) VALUES (2)} ],
	[ 'data-modifying CTE with a default', q{WITH w AS (INSERT INTO R.d (y) VALUES (3) RETURNING x) SELECT * FROM w} ],
	[ 'function writing from a SELECT', q{SELECT R.wr()} ],
	[ 'volatile function in a subquery', q{SELECT (SELECT R.ran('subquery'))} ],
	[ 'function in ORDER BY', q{SELECT 1 ORDER BY R.imm('order by')} ],
	[ 'function in a LATERAL FROM', q{SELECT * FROM R.imm('from') f} ],
	[ 'function in a CTE', q{WITH c AS MATERIALIZED (SELECT R.imm('cte') AS x) SELECT * FROM c} ],
);

my $q = 0;
for my $r (qw(alice nobody))
{
	for my $a (@sql)
	{
		my ($what, $s) = @$a;
		($s = $s) =~ s/\bR\./$r./g;
		(my $lit = $s) =~ s/'/''/g;
		my ($rc, $out, $err) = as_role($node, $r, "SELECT coalesce(duet_ask_guard('$lit'), 'refused');\n$LOCKS");
		my $ran = $node->safe_psql('postgres', "SELECT count(*) FROM $r.log");
		ok($out =~ /locks=0/ && $ran eq '0', "duet_ask_guard as $KIND{$r}: $what never runs the attacker's code")
		  or diag("guard said: $out $err; log rows: $ran");
		$node->safe_psql('postgres', "TRUNCATE $r.log");

		$q++;
		$mock->{fixtures}->({ answers => { "atk $q" => [$s] } });
		($rc, $out, $err) = as_role($node, $r, "SELECT * FROM duet_ask_run('atk $q');\n$LOCKS");
		$ran = $node->safe_psql('postgres', "SELECT count(*) FROM $r.log");
		ok($out =~ /locks=0/ && $ran eq '0', "duet_ask_run as $KIND{$r}: $what never runs the attacker's code")
		  or diag("ask_run: $out $err; log rows: $ran");
		$node->safe_psql('postgres', "TRUNCATE $r.log");
	}
}

# duet_ask (returns the SQL, runs nothing): the attacker's code still must not run while guarding.
for my $a (@sql[0, 2, 3, 5, 8, 9, 10, 11])
{
	my ($what, $s) = @$a;
	($s = $s) =~ s/\bR\./alice./g;
	$q++;
	$mock->{fixtures}->({ answers => { "atk $q" => [$s] } });
	my ($rc, $out, $err) = as_role($node, 'alice', qq{SELECT duet_ask('atk $q', '{"cache": false}');\n$LOCKS});
	ok($out =~ /locks=0/, "duet_ask as (b) tenant member: $what never runs while being checked") or diag("$out $err");
}

# Effects of the run's subtransaction must not survive it.
for my $e ([ 'set_config', 'alice.setcfg()', q{SELECT 'flag=' || coalesce(current_setting('atk.flag', true), '');}, qr/flag=$/m ],
	[ 'NOTIFY', 'alice.notif()', q{LISTEN atk_channel; SELECT 'after';}, qr/^(?!.*Asynchronous notification "atk_channel").*\z/s ],
	[ 'advisory lock', 'alice.lock()', $LOCKS, qr/locks=0/ ])
{
	my ($what, $call, $probe, $want) = @$e;
	$q++;
	$mock->{fixtures}->({ answers => { "atk $q" => ["SELECT $call"] } });
	my $pre = $what eq 'NOTIFY' ? "LISTEN atk_channel;\n" : '';
	my ($rc, $out, $err) = as_role($node, 'alice', "${pre}SELECT * FROM duet_ask_run('atk $q');\n$probe");
	like($out, $want, "a $what in the model's query does not survive duet_ask_run") or diag($err);
}

# duet.ask_run_timeout (1 s) bounds the guard's analysis and planning too, not only the run.
for my $e ([ 'duet_ask_run', "SELECT * FROM duet_ask_run('atk slow')" ], [ 'duet_ask', "SELECT duet_ask('atk slow', '{\"cache\": false}')" ],
	[ 'duet_ask_guard', "SELECT duet_ask_guard('SELECT alice.slow()')" ])
{
	$mock->{fixtures}->({ answers => { 'atk slow' => ['SELECT alice.slow()'] } });
	my $t0 = time();
	as_role($node, 'alice', "$e->[1];");
	cmp_ok(time() - $t0, '<', 2.5, "$e->[0]: an IMMUTABLE-labelled sleep folded while planning is cut by the timeout");
}

# Name resolution while duet_ask works as the superuser (cache, log, providers, examples): the
# shadows of class 1 must not run there either.
for my $s ((map { [ "temp domain pg_temp.$_", undef, temp_domain('alice', $_, "ask dom $_") ] } qw(text jsonb int4 float8 timestamptz name bool)),
	[ 'operator =(text,text) first on search_path', 'alice, pg_catalog, public', evil_op('alice', 'alice', '=', 'text', 'text', 'ask op') ],
	[ 'function md5() first on search_path', 'alice, pg_catalog, public', evil_fn('alice', 'alice', 'md5(a text) text', 'pg_catalog.md5(a)', 'ask md5') ],
	[ 'function now() first on search_path', 'alice, pg_catalog, public', evil_fn('alice', 'alice', 'now() timestamptz', 'pg_catalog.now()', 'ask now') ])
{
	my ($what, $path, $shadow) = @$s;
	$q++;
	$mock->{fixtures}->({ answers => { "atk $q" => ['SELECT 1'] } });
	my ($rc, $out, $err) = as_role($node, 'alice', $shadow . ($path ? "SET search_path = $path;\n" : '')
		. "SELECT duet_ask('atk $q'); SELECT duet_ask('atk $q'); SELECT * FROM duet_ask_run('atk $q');"
		. " SELECT duet_ask_feedback('atk $q', 'SELECT 2'); SELECT duet_ask('atk x$q', '{\"cache\": false}');");
	not_pwned($node, 'alice', "duet_ask/ask_run/feedback as (b) tenant member: $what never runs as superuser", $err);
}

$node->stop;
done_testing();

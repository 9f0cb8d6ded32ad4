# Issue 11, class 2: one session, many tenants. Every tenant's query rules run in one session
# (duet_rules_evaluate, called by the scheduler worker or a granted role). Tenant acme's rule
# (owner alice) calls alice's code, which leaves things behind: temp domains, views and tables,
# settings, search_path, advisory locks, LISTEN, prepared statements. None of it may make the
# owner's bookkeeping run alice's code, change what globex's later rule reads or reports, run
# alice's code as bob, or outlive the rule.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_isolation', "duet.databases = 'postgres'");
$node->safe_psql('postgres', qq{
CREATE TABLE public.victim_metrics (campaign text, ctr float8, note text, day date);
ALTER TABLE public.victim_metrics OWNER TO bob;
INSERT INTO public.victim_metrics VALUES ('$CANARY', 0.001, '$CANARY', '2026-10-31');
CREATE TABLE alice.loot (what text);
ALTER TABLE alice.loot OWNER TO alice;
CREATE TABLE alice.armed (x int);
CREATE TABLE alice.src (label text, v int);
ALTER TABLE alice.armed OWNER TO alice;
ALTER TABLE alice.src OWNER TO alice;
GRANT INSERT ON alice.loot TO PUBLIC;
});

my $n = 0;
# globex's rule, (re)created after the attacker's so that it runs later in the same evaluation;
# its query names its table unqualified, as the README's examples do.
sub victim_late_rule
{
	$node->safe_psql('postgres', q{
SELECT duet_rule_drop(name) FROM duet.rules WHERE name = 'late';
SELECT duet_rule_create('late', 'ctr < 0.01', query => 'SELECT campaign, ctr, note, day FROM victim_metrics',
                        labels => '{campaign,day}', message => 'note {note}');
}, extra_params => [ '-U', 'bob' ]);
}

sub victim_state
{
	return $node->safe_psql('postgres', q{
SELECT coalesce(string_agg(a.state || ' ' || a.labels::text || ' ' || coalesce(a.error, ''), '; ' ORDER BY a.id), 'none')
  FROM duet.alerts a JOIN duet.rules r ON r.id = a.rule_id WHERE r.name = 'late'});
}

# The attacker's rule: its query calls alice.atk_<n>(), whose body is $act (plpgsql statements).
# A first (unarmed) evaluation makes the rule's alert fire, so that the attack's evaluation, where
# it turns false, reads the rule's active alerts back (the owner's bookkeeping has rows to work on).
sub attacker_rule
{
	my ($act, $pre) = @_;
	$n++;
	my ($rc, $out, $err) = as_role($node, 'alice', ($pre // '') . qq{
TRUNCATE alice.armed, alice.src;
INSERT INTO alice.src VALUES ('a', 100);
CREATE FUNCTION alice.atk_$n() RETURNS int LANGUAGE plpgsql VOLATILE AS \$f\$
BEGIN
IF EXISTS (SELECT FROM alice.armed) THEN
$act
END IF;
RETURN 1;
END \$f\$;
SELECT duet_rule_drop(name) FROM duet.rules WHERE name LIKE 'atk%';
SELECT duet_rule_create('atk_$n', 'v > 10', query => 'SELECT label, v, alice.atk_$n() AS w FROM alice.src',
                        labels => '{label}');
});
	die "attacker rule $n not created: $err" if $err =~ /ERROR/;
	victim_late_rule();
	$node->safe_psql('postgres', 'SELECT duet_rules_evaluate()');
	$node->safe_psql('postgres', "INSERT INTO alice.armed VALUES (1); UPDATE alice.src SET v = 1;",
		extra_params => [ '-U', 'alice' ]);
	return $n;
}

# Control: globex's late rule alone.
victim_late_rule();
$node->safe_psql('postgres', 'SELECT duet_rules_evaluate()');
my $expected = victim_state();
like($expected, qr/^firing \{"day": "2026-10-31", "campaign": "$CANARY"\} $/, 'control: the victim rule fires on its own row');

# Runs one evaluation as the scheduler would (a superuser session), plus $after in that session.
sub evaluate
{
	my ($after) = @_;
	$node->safe_psql('postgres', 'DELETE FROM duet.alerts WHERE rule_id IN (SELECT id FROM duet.rules WHERE name = \'late\')');
	my ($rc, $out, $err) = ('', '', '');
	$rc = $node->psql('postgres', "SELECT duet_rules_evaluate();\n" . ($after // ''),
		stdout => \$out, stderr => \$err, on_error_stop => 0);
	return ($out, $err);
}

# --- leftovers that the owner's bookkeeping resolves -------------------------------------------
for my $type (qw(text jsonb int8 oid timestamptz bool name regclass))
{
	attacker_rule("EXECUTE 'CREATE DOMAIN pg_temp.$type AS pg_catalog.$type CHECK (alice.mark(''dom $type''))';");
	my ($out, $err) = evaluate();
	not_pwned($node, 'alice', "rule leaves a temp domain pg_temp.$type: the owner's bookkeeping never runs it", $err);
}
for my $op ([ '=', 'int8', 'int8' ], [ '=', 'text', 'text' ], [ '=', 'jsonb', 'jsonb' ], [ '=', 'int4', 'int4' ])
{
	my ($o, $l, $rt) = @$op;
	my $evil = evil_op('alice', 'alice', $o, $l, $rt, "sp $o$l");
	attacker_rule("PERFORM pg_catalog.set_config('search_path', 'alice, pg_catalog, public', false);", $evil);
	my ($out, $err) = evaluate();
	not_pwned($node, 'alice', "rule sets search_path (session) to its schema with $o($l,$rt): not used as owner", $err);
	attacker_rule("PERFORM pg_catalog.set_config('search_path', 'alice, pg_catalog, public', true);", $evil);
	($out, $err) = evaluate();
	not_pwned($node, 'alice', "rule sets search_path (local) to its schema with $o($l,$rt): not used as owner", $err);
}
attacker_rule("EXECUTE 'CREATE FUNCTION pg_temp.eq8(a int8, b int8) RETURNS bool LANGUAGE plpgsql AS "
	. "''BEGIN PERFORM alice.mark(''''tempop''''); RETURN a OPERATOR(pg_catalog.=) b; END''';"
	. " EXECUTE 'CREATE OPERATOR pg_temp.= (LEFTARG = int8, RIGHTARG = int8, FUNCTION = pg_temp.eq8)';"
	. " PERFORM pg_catalog.set_config('search_path', 'pg_temp, pg_catalog, public', false);");
my ($out, $err) = evaluate();
not_pwned($node, 'alice', 'rule leaves a pg_temp operator =(int8,int8) first on search_path: not used as owner', $err);

# --- leftovers that globex's later rule reads ----------------------------------------------------
attacker_rule(q{CREATE TEMP VIEW victim_metrics AS SELECT 'INJECTED'::text AS campaign, 0.0::float8 AS ctr,
    'x'::text AS note, '2026-10-31'::date AS day WHERE alice.mark('temp view');});
($out, $err) = evaluate();
is(ran_as_others($node, 'alice'), '', 'a temp view named like the victim\'s table never runs the attacker\'s code as the victim');
is(victim_state(), $expected, 'the victim rule still reads its own table, not the attacker\'s temp view');
reset_kit($node);

attacker_rule(q{CREATE TEMP TABLE victim_metrics AS SELECT 'INJECTED'::text AS campaign, 0.0::float8 AS ctr,
    'x'::text AS note, '2026-10-31'::date AS day;});
evaluate();
is(victim_state(), $expected, 'a temp table named like the victim\'s table does not feed the victim rule');

attacker_rule(q{CREATE TEMP TABLE victim_metrics (campaign text, ctr float8, note text, day date);
    CREATE FUNCTION pg_temp.spy() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';});
evaluate();
is(victim_state(), $expected, 'an empty temp table shadowing the victim\'s table does not turn the victim rule to No Data');

# --- settings that change how globex's rule reads or reports -----------------------------------
for my $g ([ 'DateStyle', 'SQL, DMY' ], [ 'DateStyle', 'German' ], [ 'TimeZone', 'Pacific/Kiritimati' ],
	[ 'transform_null_equals', 'on' ], [ 'extra_float_digits', '-15' ], [ 'bytea_output', 'escape' ],
	[ 'standard_conforming_strings', 'off' ], [ 'statement_timeout', '1' ])
{
	my ($name, $value) = @$g;
	for my $local ('false', 'true')
	{
		attacker_rule("PERFORM pg_catalog.set_config('$name', '$value', $local);");
		evaluate();
		is(victim_state(), $expected, "rule sets $name = '$value' (" . ($local eq 'true' ? 'local' : 'session')
			. '): the victim rule is not affected');
	}
}

# --- nothing persists after the rule, in the evaluating session --------------------------------
my @persist = (
	[ 'session advisory lock', q{PERFORM pg_catalog.pg_advisory_lock(4242);},
		q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();} ],
	[ 'LISTEN', q{EXECUTE 'LISTEN atk_channel';}, q{SELECT count(*) FROM pg_listening_channels();} ],
	[ 'prepared statement', q{EXECUTE 'PREPARE atk_p AS SELECT alice.mark(''prepared'')';},
		q{SELECT count(*) FROM pg_prepared_statements;} ],
	[ 'temp table', q{CREATE TEMP TABLE atk_tt (x int);},
		q{SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema();} ],
	[ 'temp function', q{EXECUTE 'CREATE FUNCTION pg_temp.atk_f() RETURNS int LANGUAGE sql AS ''SELECT 1''';},
		q{SELECT count(*) FROM pg_proc WHERE pronamespace = pg_my_temp_schema();} ],
	[ 'session setting', q{PERFORM pg_catalog.set_config('work_mem', '64kB', false);},
		q{SELECT (current_setting('work_mem') = '64kB')::int;} ],
	[ 'custom setting', q{PERFORM pg_catalog.set_config('atk.flag', 'set', false);},
		q{SELECT (coalesce(current_setting('atk.flag', true), '') = 'set')::int;} ],
	[ 'cursor WITH HOLD', q{EXECUTE 'DECLARE atk_c CURSOR WITH HOLD FOR SELECT 1';},
		q{SELECT count(*) FROM pg_cursors;} ],
);
for my $p (@persist)
{
	my ($what, $act, $probe) = @$p;
	attacker_rule($act);
	my ($o, $e) = evaluate($probe);
	my @lines = split /\n/, $o;
	is($lines[-1] // '', '0', "a $what made by a rule does not outlive it in the evaluating session");
}

# --- acting for another tenant from inside a rule ----------------------------------------------
for my $a ([ 'duet_set_tenant', q{PERFORM duet_set_tenant('globex');} ],
	[ 'set_config(duet.tenant)', q{PERFORM pg_catalog.set_config('duet.tenant', 'globex', false);} ],
	[ 'set_config(role)', q{PERFORM pg_catalog.set_config('role', 'bob', false);} ],
	[ 'SET SESSION AUTHORIZATION', q{EXECUTE 'SET SESSION AUTHORIZATION bob';} ],
	[ 'reading the duet tables', q{NULL;} ])
{
	my ($what, $act) = @$a;
	attacker_rule("BEGIN $act EXCEPTION WHEN OTHERS THEN NULL; END;
INSERT INTO alice.loot SELECT message FROM duet.alerts;
INSERT INTO alice.loot SELECT message FROM duet.alert_transitions;
INSERT INTO alice.loot SELECT name || query FROM duet.rules;
INSERT INTO alice.loot SELECT key || value::text FROM duet.config;
INSERT INTO alice.loot SELECT key || value::text FROM duet.config_history;
INSERT INTO alice.loot SELECT duet_config_get('canary_globex_7731.key')::text;
INSERT INTO alice.loot SELECT campaign || note FROM public.victim_metrics;");
	evaluate();
	no_canary($node->safe_psql('postgres', 'SELECT string_agg(what, \' \') FROM alice.loot'),
		"a rule of acme using $what reads nothing of globex");
	$node->safe_psql('postgres', 'TRUNCATE alice.loot');
}
$node->safe_psql('postgres', q{SELECT duet_rule_drop(name) FROM duet.rules WHERE name LIKE 'atk%'},
	extra_params => [ '-U', 'alice' ]);

# --- the scheduler worker ------------------------------------------------------------------------
# The same leftovers in the worker's session, which runs as the bootstrap superuser and, after
# the rules, prunes history with now(), <, -, * resolved through its search_path.
$node->safe_psql('postgres', 'ALTER SYSTEM SET duet.rules_interval = 1; SELECT pg_reload_conf()');
sub worker_attack
{
	my ($name, $act, $pre) = @_;
	my $m = attacker_rule("PERFORM alice.mark('worker ran $name'); $act", $pre);
	my $ran = wait_until(sub {
		$node->safe_psql('postgres', "SELECT count(*) FROM alice.log WHERE tag = 'worker ran $name'") > 0 }, 20);
	diag("the worker did not run the rule of attack $name") unless $ran;
	$node->safe_psql('postgres', "SELECT duet_rule_disable('atk_$m')", extra_params => [ '-U', 'alice' ]);
	sleep 2;
	return $ran;
}
for my $type (qw(text jsonb int8))
{
	worker_attack("dom$type", "EXECUTE 'CREATE DOMAIN pg_temp.$type AS pg_catalog.$type CHECK (alice.mark(''wdom''))';");
	not_pwned($node, 'alice', "worker: rule leaves a temp domain pg_temp.$type: never run as superuser");
}
for my $f ([ 'now() timestamptz', 'pg_catalog.now()' ])
{
	worker_attack('now', q{PERFORM pg_catalog.set_config('search_path', 'alice, pg_catalog, public', false);},
		evil_fn('alice', 'alice', $f->[0], $f->[1], 'worker now'));
	not_pwned($node, 'alice', 'worker: rule sets search_path to its schema with now(): the pruning never runs it');
}
for my $op ([ '<', 'timestamptz', 'timestamptz' ], [ '=', 'int8', 'int8' ], [ '=', 'text', 'text' ])
{
	my ($o, $l, $rt) = @$op;
	my $evil = $o eq '<'
	  ? qq{CREATE FUNCTION alice.lt(a timestamptz, b timestamptz) RETURNS bool LANGUAGE plpgsql AS \$f\$
BEGIN PERFORM alice.mark('worker lt'); RETURN a OPERATOR(pg_catalog.<) b; END \$f\$;
CREATE OPERATOR alice.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = alice.lt);
}
	  : evil_op('alice', 'alice', $o, $l, $rt, "worker $o");
	worker_attack("op$o$l", q{PERFORM pg_catalog.set_config('search_path', 'alice, pg_catalog, public', false);}, $evil);
	not_pwned($node, 'alice', "worker: rule sets search_path to its schema with $o($l,$rt): never run as superuser");
}
worker_attack('view', q{CREATE TEMP VIEW victim_metrics AS SELECT 'INJECTED'::text AS campaign, 0.0::float8 AS ctr,
    'x'::text AS note, '2026-10-31'::date AS day WHERE alice.mark('worker view');});
is(ran_as_others($node, 'alice'), '', 'worker: a temp view named like the victim\'s table never runs the attacker\'s code as the victim');
$node->safe_psql('postgres', 'ALTER SYSTEM SET duet.rules_interval = 0; SELECT pg_reload_conf()');

$node->stop;
done_testing();

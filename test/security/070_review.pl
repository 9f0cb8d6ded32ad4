# Review of the issue-11 hardening: attacks the other files do not try. Each assertion states the
# secure outcome, so an attack that still works FAILS here.
#
#   1. duet_ask guard: code the walker never sees — an operator's NEGATOR swapped in by the
#      planner, domain CHECKs reached through record_in/array_in/jsonb_populate_record (during
#      parse analysis of a literal, or at run time through CoerceViaIO), a range type's
#      subtype_diff called by the planner's selectivity estimate. The marker is the session
#      advisory lock (7777, ·) alice.ran() takes in the victim's session: it survives the guard's
#      and the run's rolled-back subtransactions, and pg_locks shows it to everyone (an exfiltration
#      channel out of a read-only run).
#   2. Kafka COPY as the consumer's owner: a DEFERRABLE INITIALLY DEFERRED constraint trigger on the
#      target fires at COMMIT, after duet_run_privileged() has returned, as the bootstrap superuser.
#   3. Kafka consumer advisory lock: any LOGIN role can take (consumer id, -1 - group) first, and
#      every consumer whose lock it holds never runs.
#   4. duet_kafka_publish: a publisher of one tenant writes into the topic another tenant consumes.
#   5. duet.kafka_status: an owner-rights view without security_barrier; a cheap function in the
#      caller's WHERE sees every tenant's consumers.
#   6. Query rules, one session for all tenants: exit_on_error set by a rule's query turns its own
#      ERROR into FATAL (no PG_TRY can catch it) and every tenant's evaluation is lost; a rule that
#      sleeps stalls every tenant's rules (no per-rule timeout).
#   And suspected holes that turned out closed (these pass).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use lib "$ENV{DUET_ROOT}/test/perl";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;
use DuetKafka qw(start_broker produce);

my $broker = start_broker('kdef:1', 'glive:1');
my $b = $broker->{bootstrap};
my $node = new_node('sec_review', "duet.databases = 'postgres'", 'duet.kafka_poll_interval = 200',
	'duet.ask_run_timeout = 5000', 'duet.ask_max_corrections = 0');
my $mock = start_mock($node);

# alice's kit for the guard attacks, in a schema of hers that reset_kit() leaves alone.
$node->safe_psql('postgres', q{
CREATE SCHEMA aliceatk AUTHORIZATION alice;
SET ROLE alice;
GRANT USAGE ON SCHEMA aliceatk TO PUBLIC;
-- an operator whose own function is built in, and whose NEGATOR is alice's
CREATE FUNCTION aliceatk.neg(a int, b int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN PERFORM alice.ran('negator'); RETURN a OPERATOR(pg_catalog.<>) b; END $f$;
CREATE OPERATOR aliceatk.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = pg_catalog.int4eq,
                              NEGATOR = OPERATOR(aliceatk.!==));
CREATE OPERATOR aliceatk.!== (LEFTARG = int, RIGHTARG = int, FUNCTION = aliceatk.neg);
-- a domain whose CHECK is alice's, inside a composite type
CREATE DOMAIN aliceatk.d AS text CHECK (alice.ran('domain check ' || VALUE));
CREATE TYPE aliceatk.c AS (a aliceatk.d);
-- a range type whose subtype_diff is alice's, over a table with statistics
CREATE FUNCTION aliceatk.diff(a int4, b int4) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN PERFORM alice.ran('subtype_diff'); RETURN (a OPERATOR(pg_catalog.-) b)::float8; END $f$;
CREATE TYPE aliceatk.r AS RANGE (subtype = int4, subtype_diff = aliceatk.diff);
CREATE TABLE aliceatk.rt (x aliceatk.r);
INSERT INTO aliceatk.rt SELECT aliceatk.r(i, i + (i % 7) + 1) FROM generate_series(1, 300) i;
ANALYZE aliceatk.rt;
GRANT SELECT ON aliceatk.rt TO PUBLIC;
-- query rules' weapons
CREATE FUNCTION aliceatk.boom() RETURNS int LANGUAGE plpgsql VOLATILE AS $f$
BEGIN
    PERFORM pg_catalog.set_config('exit_on_error', 'on', true);
    RAISE EXCEPTION 'boom';
END $f$;
RESET ROLE;
TRUNCATE alice.log;
SELECT pg_catalog.pg_advisory_unlock_all();
});

my $LOCKS = q{SELECT 'locks=' || count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7777 AND pid = pg_backend_pid();};

# --- 1. the duet_ask guard ----------------------------------------------------------------------
# [what, SQL the model answers, whether duet_ask_guard() itself already runs it]
my @guard = (
	[ 'operator whose NEGATOR is the attacker\'s (planner rewrites NOT (a === b))',
		q{SELECT count(*) FROM generate_series(1, 3) x WHERE NOT (x OPERATOR(aliceatk.===) 0)} ],
	[ 'composite literal with a domain column (record_in runs its CHECK while analysing)',
		q{SELECT '(x)'::aliceatk.c} ],
	[ 'array literal of a domain (array_in runs its CHECK while analysing)',
		q{SELECT '{x}'::aliceatk.d[]} ],
	[ 'text cast to an array of a domain (CoerceViaIO at run time)',
		q{SELECT v::aliceatk.d[] FROM (VALUES ('{y}'::text)) t(v)} ],
	[ 'jsonb_populate_record into a composite with a domain column',
		q{SELECT jsonb_populate_record(NULL::aliceatk.c, '{"a": "z"}')} ],
	[ 'jsonb_to_record with a domain in the column definition list',
		q{SELECT * FROM jsonb_to_record('{"a": "w"}') AS t(a aliceatk.d)} ],
	[ 'range type whose subtype_diff is the attacker\'s (planner selectivity)',
		q{SELECT count(*) FROM aliceatk.rt WHERE x && '[50,60)'} ],
);
# Closed: the walker sees these coercions' CoerceToDomain nodes.
my @guard_closed = (
	[ 'ROW() cast to a composite with a domain column', q{SELECT ROW('x')::aliceatk.c} ],
	[ 'ARRAY[] cast to an array of a domain', q{SELECT ARRAY['x']::aliceatk.d[]} ],
);
my $q = 0;
for my $a (@guard, @guard_closed)
{
	my ($what, $s) = @$a;
	(my $lit = $s) =~ s/'/''/g;
	my ($rc, $out, $err) = as_role($node, 'bob', "SELECT coalesce(duet_ask_guard('$lit'), 'accepted');\n$LOCKS");
	ok($out =~ /locks=0/, "duet_ask_guard as the victim: $what never runs the attacker's code")
	  or diag("guard: $out $err");

	$q++;
	$mock->{fixtures}->({ answers => { "review $q" => [$s] } });
	($rc, $out, $err) = as_role($node, 'bob', "SELECT * FROM duet_ask_run('review $q');\n$LOCKS");
	ok($out =~ /locks=0/, "duet_ask_run as the victim (prompt-injected model): $what never runs the attacker's code as the victim")
	  or diag("ask_run: $out $err");
}

# --- 2. Kafka: deferred trigger on the target fires at COMMIT as the bootstrap superuser --------
$node->safe_psql('postgres', q{
SET ROLE kadmin;
CREATE TABLE kadmin.k_target (id int, v text);
CREATE FUNCTION kadmin.k_trg() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN PERFORM kadmin.mark('deferred trigger'); RETURN NULL; END $f$;
CREATE CONSTRAINT TRIGGER k_def AFTER INSERT ON kadmin.k_target DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION kadmin.k_trg();
RESET ROLE;
});
as_role($node, 'kadmin', "SELECT duet_kafka_consume('k_def', 'kdef', 'kadmin.k_target', '$b', 'json', flush_interval_ms => 50);");
produce($broker, 'kdef', [ '{"id": 1, "v": "x"}' ]);
my $fired = wait_until(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM kadmin.log WHERE tag = 'deferred trigger'}) > 0
	  || $node->safe_psql('postgres', q{SELECT count(*) FROM kadmin.k_target}) > 0 }, 30);
sleep 1;
# Closed: each batch's COPY runs its constraints immediately (SET CONSTRAINTS ALL IMMEDIATE, so
# commit-time failures are bisected like any bad row), inside the consumer owner's restricted
# section; where a deferred event would still be queued, PostgreSQL refuses it there.
my $as = $node->safe_psql('postgres', q{SELECT coalesce(string_agg(DISTINCT cu || '/' || priv, ','), '') FROM kadmin.log WHERE tag = 'deferred trigger'});
ok($as eq 'kadmin/false'
   || slurp_file($node->logfile) =~ /cannot fire deferred trigger within security-restricted operation/,
	'closed: the deferred trigger runs as the consumer owner inside its restricted section, or not at all')
  or diag("ran as: $as");
not_pwned($node, 'kadmin', '(c) kafka admin: a DEFERRABLE INITIALLY DEFERRED constraint trigger on its consumer\'s target never runs as the bootstrap superuser');
$node->safe_psql('postgres', q{ALTER ROLE kadmin NOSUPERUSER});
as_role($node, 'kadmin', "SELECT duet_kafka_drop('k_def');");

# --- 5. the owner-rights view duet.kafka_status leaks through a cheap function ------------------
{
	my ($rc, $out, $err) = as_role($node, 'kadmin', q{
CREATE FUNCTION kadmin.leak(t text) RETURNS bool LANGUAGE plpgsql COST 0.0000001 AS $f$
BEGIN RAISE NOTICE 'leak: %', t; RETURN true; END $f$;
SELECT name FROM duet.kafka_status WHERE kadmin.leak(name) AND kadmin.leak(topic) AND kadmin.leak(target::text);
SELECT count(*) FROM duet.kafka_partition_status WHERE kadmin.leak(name);});
	like($out, qr/\S/, 'control: (c) kafka admin reads duet.kafka_status');
	no_canary("$out\n$err", '(c) kafka admin: a COST 0 function in its WHERE over duet.kafka_status sees nothing of globex\'s consumers');
	reset_kit($node);
}

# --- 4. a publisher of initech writes into the topic globex's consumer reads ---------------------
$node->safe_psql('postgres', q{CREATE TABLE globex.live (campaign text, ctr float8); ALTER TABLE globex.live OWNER TO bob;});
{
	my ($rc, $out, $err) = as_role($node, 'bob', "SELECT duet_kafka_consume('globex_live', 'glive', 'globex.live', '$b', 'json', flush_interval_ms => 50);");
	die "victim consumer not created: $err" if $err =~ /ERROR/;
	($rc, $out, $err) = as_role($node, 'kadmin', q{SELECT duet_kafka_publish('glive', 'k', '{"campaign": "FORGED", "ctr": 0}');});
	like($err, qr/ERROR/, '(c) kafka admin of initech cannot publish into the topic a consumer of globex reads');
	$node->safe_psql('postgres', q{DELETE FROM duet.kafka_outbox WHERE topic = 'glive'});
}
produce($broker, 'glive', [ '{"campaign": "control", "ctr": 1}' ]);
ok(wait_until(sub { $node->safe_psql('postgres', 'SELECT count(*) FROM globex.live') eq '1' }, 30),
	'control: the victim\'s consumer ingests');

# --- 3. squatting the consumers' advisory locks --------------------------------------------------
{
	my $id = $node->safe_psql('postgres', q{SELECT id FROM duet.kafka_consumers WHERE name = 'globex_live'});
	my $held = qq{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $id AND objid = 4294967295 AND objsubid = 2};
	# the victim's consumer restarts (a stop/start, a crash, a server restart): the squatter is first
	as_role($node, 'bob', q{SELECT duet_kafka_stop('globex_live');});
	wait_until(sub { $node->safe_psql('postgres', $held) eq '0' }, 20);
	my ($sout, $serr) = ('', '');
	my $squat = IPC::Run::start([ 'psql', '-X', '-d', $node->connstr('postgres'), '-U', 'nobody', '-c',
		'SELECT count(*) FILTER (WHERE pg_catalog.pg_try_advisory_lock(i, g)) FROM generate_series(1, 64) i, generate_series(-4, -1) g',
		'-c', 'SELECT pg_catalog.pg_sleep(90)' ], '>', \$sout, '2>', \$serr);
	my $squatting = wait_until(sub { $node->safe_psql('postgres', $held) eq '1' }, 20);
	diag('the squatter did not get the lock') unless $squatting;
	as_role($node, 'bob', q{SELECT duet_kafka_start('globex_live');});
	produce($broker, 'glive', [ '{"campaign": "after squat", "ctr": 1}' ]);
	ok(wait_until(sub { $node->safe_psql('postgres', 'SELECT count(*) FROM globex.live') eq '2' }, 30),
		'(a) LOGIN role without tenant holding advisory locks (id, -1 - group) does not stop globex\'s consumer')
	  or diag('victim consumer: ' . $node->safe_psql('postgres', q{SELECT state || ' ' || coalesce(last_error, '') FROM duet.kafka_status WHERE name = 'globex_live'}));
	$squat->kill_kill;
}

# --- 6. query rules: one session for all tenants -------------------------------------------------
sub victim_late_rule
{
	$node->safe_psql('postgres', q{
SELECT duet_rule_drop(name) FROM duet.rules WHERE name = 'late_victim';
SELECT duet_rule_create('late_victim', 'ctr < 0.01', query => 'SELECT campaign, ctr, note FROM globex.metrics',
                        labels => '{campaign}', message => 'note {note}');
}, extra_params => [ '-U', 'bob' ]);
}
sub victim_state
{
	return $node->safe_psql('postgres', q{
SELECT coalesce(string_agg(a.state, ','), 'none') FROM duet.alerts a JOIN duet.rules r ON r.id = a.rule_id WHERE r.name = 'late_victim'});
}
victim_late_rule();
$node->safe_psql('postgres', 'SELECT duet_rules_evaluate()');
is(victim_state(), 'firing', 'control: the victim\'s query rule fires on its own');

{
	my ($what, $query) = ('exit_on_error set by the rule\'s query turns its ERROR into FATAL',
		q{SELECT 1 AS v, aliceatk.boom() AS w});
	(my $lit = $query) =~ s/'/''/g;
	my ($rc, $out, $err) = as_role($node, 'alice', qq{
SELECT duet_rule_drop(name) FROM duet.rules WHERE name = 'atk_review';
SELECT duet_rule_create('atk_review', 'v > 10', query => '$lit');});
	die "attacker rule not created: $err" if $err =~ /ERROR/;
	victim_late_rule();    # after the attacker's rule, in the same evaluation
	$node->safe_psql('postgres', q{DELETE FROM duet.alerts WHERE rule_id IN (SELECT id FROM duet.rules WHERE name = 'late_victim')});
	my ($o, $e) = ('', '');
	$node->psql('postgres', 'SELECT duet_rules_evaluate();', stdout => \$o, stderr => \$e, on_error_stop => 0);
	is(victim_state(), 'firing', "(b) tenant member's rule: $what; globex's later rule is still evaluated")
	  or diag("evaluation: $e");
	as_role($node, 'alice', q{SELECT duet_rule_drop('atk_review');});
}

# The scheduler's evaluator has no time limit: one tenant's rule that sleeps (or waits for a lock
# its author holds elsewhere) stops every tenant's query rules for good.
{
	my ($rc, $out, $err) = as_role($node, 'alice', q{
SELECT duet_rule_create('atk_sleep', 'v > 10', query => 'SELECT 1 AS v, (SELECT 1 FROM pg_catalog.pg_sleep(3600)) AS w');});
	die "attacker rule not created: $err" if $err =~ /ERROR/;
	victim_late_rule();
	$node->safe_psql('postgres', q{DELETE FROM duet.alerts WHERE rule_id IN (SELECT id FROM duet.rules WHERE name = 'late_victim')});
	# duet.rules_query_timeout bounds each rule's query (30 s by default; 2 s here)
	$node->safe_psql('postgres', "ALTER SYSTEM SET duet.rules_interval = 1; ALTER SYSTEM SET duet.rules_query_timeout = '2s'; SELECT pg_reload_conf()");
	ok(wait_until(sub { victim_state() eq 'firing' }, 25),
		"(b) tenant member's rule that sleeps: the scheduler still evaluates globex's rule");
	$node->safe_psql('postgres', 'ALTER SYSTEM SET duet.rules_interval = 0; SELECT pg_reload_conf()');
	as_role($node, 'alice', q{SELECT duet_rule_drop('atk_sleep');});
	$node->safe_psql('postgres', q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pg_duet rule evaluation'});
}

# --- closed: the row-rule trigger runs as the owner over the attacker's own table -----------------
{
	my ($rc, $out, $err) = as_role($node, 'alice', q{
CREATE DOMAIN alice.dd AS text CHECK (alice.mark('row domain ' || VALUE));
CREATE TYPE alice.ee AS ENUM ('a', 'b');
CREATE FUNCTION alice.ee_num(x alice.ee) RETURNS numeric LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN PERFORM alice.mark('enum cast'); RETURN 1; END $f$;
CREATE CAST (alice.ee AS numeric) WITH FUNCTION alice.ee_num(alice.ee) AS IMPLICIT;
CREATE TYPE alice.cc AS (a alice.dd, e alice.ee);
CREATE TABLE alice.rowt (tenant alice.dd, d alice.dd, e alice.ee, c alice.cc, v int);
SELECT duet_rule_create('row_review', 'v > 1', target => 'alice.rowt', labels => '{d,e,c}',
                        message => '{d} {e} {c} {tenant}');
INSERT INTO alice.rowt VALUES ('acme', 'x', 'a', '(y,b)', 5);
SET DateStyle = 'SQL, DMY'; SET extra_float_digits = -15; SET row_security = off;
SET standard_conforming_strings = off; SET transform_null_equals = on;
INSERT INTO alice.rowt VALUES ('acme', 'x2', 'b', '(y2,a)', 6);});
	not_pwned($node, 'alice', 'closed: the row-rule trigger (as owner) over domain/enum/composite columns with the attacker\'s CHECK and cast never runs them as the owner', $err);
	is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.alerts a JOIN duet.rules r ON r.id = a.rule_id WHERE r.name = 'row_review' AND a.state = 'firing'}),
		'2', 'closed: the attacker\'s session settings do not stop the owner\'s alert bookkeeping');
}

$node->stop;
done_testing();

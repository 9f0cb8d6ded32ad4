# Pipelines (issue 19): transforms and predicates are tenant input that becomes generated SQL, and
# runs happen in the background workers' sessions. Attacks by alice (tenant acme) and nobody (no
# tenant) against the victim globex (bob) and against the extension owner:
#   - text that closes the expression's parenthesis to add columns, clauses or statements;
#   - a source, target or subquery naming the victim's table;
#   - code in a transform or expectation that should then run as the superuser worker or the
#     extension owner (it must run as alice, restricted);
#   - reading, changing or running the victim's pipelines, quarantine and history;
#   - calling the internal functions that write positions, quarantine and history.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_pipelines', "duet.databases = 'postgres'", "duet.pipeline_interval = 1");

$node->safe_psql('postgres', qq{
SET ROLE bob;
CREATE TABLE globex.bronze (id bigint PRIMARY KEY, note text);
CREATE TABLE globex.silver (id bigint PRIMARY KEY, note text);
INSERT INTO globex.bronze VALUES (1, '$CANARY'), (2, 'x');
SELECT duet_pipeline_create('canary_globex_7731_p', 'globex.bronze', 'globex.silver',
    '{"id": "id", "note": "note"}', order_by => 'id', key => '{id}', mode => 'upsert',
    expectations => '[{"name": "canary_globex_7731_e", "predicate": "note <> ''x''", "action": "drop"}]');
SELECT duet_pipeline_run('canary_globex_7731_p');
RESET ROLE;
SET ROLE alice;
CREATE TABLE alice.src (id bigint PRIMARY KEY, v int);
CREATE TABLE alice.dst (id bigint PRIMARY KEY, v int);
INSERT INTO alice.src VALUES (1, 10), (2, 20);
});

sub create_as
{
	my ($role, $transform, $expectations, $source) = @_;
	$source //= 'alice.src';
	(my $t = $transform) =~ s/'/''/g;
	(my $e = $expectations // '[]') =~ s/'/''/g;
	return as_role($node, $role, qq{SELECT duet_pipeline_create('p', '$source', 'alice.dst', '$t',
		order_by => 'id', key => '{id}', mode => 'upsert', expectations => '$e');});
}

# 1. Text that is not one expression is refused before anything is stored or run.
my @injections = (
	q{v) AS v, (SELECT note FROM globex.bronze LIMIT 1) AS w, (1},
	q{v) FROM globex.bronze --},
	q{v); DELETE FROM alice.src; SELECT (1},
	q{v) UNION SELECT (1},
	q{v -- },
	q{v) ORDER BY (1},
	q{v /* },
);
for my $inj (@injections)
{
	my ($rc, $out, $err) = create_as('alice', qq{{"id": "id", "v": "$inj"}});
	like($err, qr/ERROR/, "transform injection refused: $inj");
	like($err, qr/invalid pipeline transform of column "v"/, "the error names the column: $inj");
	my ($rc2, $out2, $err2) = create_as('alice', '{"id": "id", "v": "v"}',
		qq{[{"name": "e", "predicate": "$inj", "action": "warn"}]});
	like($err2, qr/ERROR/, "predicate injection refused: $inj");
	like($err2, qr/invalid pipeline expectation "e"/, "the error names the expectation: $inj");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.pipelines WHERE tenant = 'acme'}), '0',
	'no injected pipeline was stored');
is($node->safe_psql('postgres', q{SELECT count(*) FROM alice.src}), '2', 'nothing injected ran');

# 2. The victim's table as source, or in a subquery of a transform or predicate: planned as alice.
for my $case (
	[ 'source', '{"id": "id", "v": "1"}', undef, 'globex.bronze' ],
	[ 'transform subquery', q{{"id": "id", "v": "(SELECT length(note) FROM globex.bronze LIMIT 1)"}} ],
	[ 'predicate subquery', '{"id": "id", "v": "v"}',
	  q{[{"name": "e", "predicate": "EXISTS (SELECT FROM globex.bronze)", "action": "warn"}]} ])
{
	my ($what, $t, $e, $s) = @$case;
	my ($rc, $out, $err) = create_as('alice', $t, $e, $s);
	like($err, qr/ERROR/, "victim's table in the $what is refused");
	like($err, qr/permission denied/, "permission denied for the $what");
	no_canary($err, "the error of the $what shows none of the victim's data");
}
my ($rc, $out, $err);
my ($rc_nt, $out_nt, $err_nt) = create_as('nobody', '{"id": "id", "v": "v"}');
like($err_nt, qr/no tenant is selected/, 'a role in no tenant creates no pipeline');

# 3. Code in the transform and in a formula-free predicate runs in the worker as alice, restricted.
($rc, $out, $err) = create_as('alice', q{{"id": "id", "v": "CASE WHEN alice.ran('transform') THEN v END"}},
	q{[{"name": "e", "predicate": "alice.mark('predicate')", "action": "warn"}]});
unlike($err, qr/ERROR/, 'a pipeline calling alice\'s functions is created');
$node->safe_psql('postgres', q{SET ROLE alice; INSERT INTO alice.src VALUES (3, 30);});
ok(wait_until(sub { $node->safe_psql('postgres', q{SELECT count(*) FROM alice.dst}) eq '3' }, 60),
	'the worker ran alice\'s pipeline');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT tag || ' as ' || cu, ', ' ORDER BY tag || ' as ' || cu) FROM alice.log}),
	'predicate as alice, transform as alice', 'the transform and the predicate ran as alice');
is(ran_as_others($node, 'alice'), '', 'alice\'s code ran as nobody else');
not_pwned($node, 'alice', 'the worker never ran alice\'s code as a superuser or the owner');

# Inside a run alice's code cannot leave the restricted section (SET ROLE, session settings).
($rc, $out, $err) = as_role($node, 'alice', q{
CREATE FUNCTION alice.escape() RETURNS int LANGUAGE plpgsql AS $f$
BEGIN EXECUTE 'SET ROLE bob'; RETURN 1; END $f$;
SELECT duet_pipeline_alter('p', '{"transform": {"id": "id", "v": "alice.escape()"}}');
INSERT INTO alice.src VALUES (4, 40);
SELECT duet_pipeline_run('p');});
like($err, qr/stopped in state error/, 'a transform that tries SET ROLE fails the run');
like($node->safe_psql('postgres', q{SELECT last_error FROM duet.pipelines WHERE name = 'p'}),
	qr/cannot set parameter "role" within security-(restricted operation|definer function)/,
	'the status says why');

# 4. The victim's pipelines, quarantine and history are invisible and out of reach.
for my $r (qw(alice nobody))
{
	my ($rc1, $o1, $e1) = as_role($node, $r, q{
SELECT * FROM duet.pipelines; SELECT * FROM duet.pipeline_status; SELECT * FROM duet.pipeline_quarantine;
SELECT * FROM duet.pipeline_runs; SELECT * FROM duet.pipeline_expectations;});
	no_canary($o1 . $e1, "$r reads nothing of globex's pipelines");
	for my $call (qw(duet_pipeline_run duet_pipeline_pause duet_pipeline_resume duet_pipeline_drop duet_pipeline_replay))
	{
		my ($rc2, $o2, $e2) = as_role($node, $r, "SELECT $call('canary_globex_7731_p');");
		like($e2, qr/ERROR:  (pipeline "canary_globex_7731_p" does not exist|no tenant is selected)/, "$r cannot $call globex's pipeline");
	}
	my ($rc3, $o3, $e3) = as_role($node, $r,
		q{SELECT duet_pipeline_alter('canary_globex_7731_p', '{"transform": {"id": "id", "note": "''pwned''"}}');});
	like($e3, qr/ERROR:  (pipeline "canary_globex_7731_p" does not exist|no tenant is selected)/, "$r cannot alter globex's pipeline");
}
is($node->safe_psql('postgres', q{SELECT state || ' ' || transform::text FROM duet.pipelines WHERE tenant = 'globex'}),
	'active {"id": "id", "note": "note"}', 'globex\'s pipeline is unchanged');

# 4b. Aggregate pipelines: "=" formula columns over the group's aggregates. Text that would close
# the formula's quoting is refused or stays a string; a formula reads only the group's columns; the
# group tracking (duet.pipeline_groups) of bob's aggregate pipeline, whose group keys hold the
# canary, is neither visible to nor writable by alice.
$node->safe_psql('postgres', q{SET ROLE bob;
CREATE TABLE globex.gold (note text PRIMARY KEY, n bigint);
SELECT duet_pipeline_create('canary_globex_7731_g', 'globex.bronze', 'globex.gold', '{"note": "note", "n": "count(*)"}',
                            order_by => 'id', key => '{note}', mode => 'aggregate');
SELECT duet_pipeline_run('canary_globex_7731_g');
RESET ROLE;
SET ROLE alice;
CREATE TABLE alice.agg_src (id bigint PRIMARY KEY, grp int NOT NULL, v int);
CREATE TABLE alice.agg_dst (grp int PRIMARY KEY, total bigint, note text);
INSERT INTO alice.agg_src VALUES (1, 1, 10), (2, 1, 20), (3, 2, 5);});
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.pipeline_groups g JOIN duet.pipelines p ON p.id = g.pipeline_id
                                   WHERE p.name = 'canary_globex_7731_g'}), '2', 'bob\'s aggregate pipeline tracks its groups');
sub create_agg
{
	my ($note) = @_;
	(my $t = qq{{"grp": "grp", "total": "sum(v)", "note": "$note"}}) =~ s/'/''/g;
	return as_role($node, 'alice', qq{SELECT duet_pipeline_drop(name) FROM duet.pipeline_status WHERE name = 'agg';
		SELECT duet_pipeline_create('agg', 'alice.agg_src', 'alice.agg_dst', '$t',
		order_by => 'id', key => '{grp}', mode => 'aggregate'); SELECT duet_pipeline_run('agg');});
}
for my $inj (q{=total')) FROM globex.bronze --}, q{=total'), (SELECT note FROM globex.bronze LIMIT 1)::text) --},
             q{=total, globex.bronze}, q{=(SELECT note FROM globex.bronze)})
{
	my ($rc6, $out6, $err6) = create_agg($inj);
	like($err6, qr/ERROR:  invalid formula/, "aggregate formula injection refused: $inj");
	no_canary($err6 . $out6, "the refusal shows none of the victim's data: $inj");
}
# a formula string literal holding quotes and SQL is a value, never SQL
my ($rc7, $out7, $err7) = create_agg(q{=concat('x'')); DELETE FROM alice.agg_src; --', total)});
unlike($err7, qr/ERROR/, 'an aggregate formula with a quoted SQL string is created and runs');
is($node->safe_psql('postgres', q{SELECT string_agg(grp || ' ' || total || ' ' || note, '; ' ORDER BY grp) FROM alice.agg_dst}),
	q{1 30 x')); DELETE FROM alice.agg_src; --30; 2 5 x')); DELETE FROM alice.agg_src; --5},
	'the string is the value of the column, computed over the group\'s sum');
is($node->safe_psql('postgres', q{SELECT count(*) FROM alice.agg_src}), '3', 'nothing in the string ran');
# a formula variable that is no column of the group is an error of the run, as alice
my ($rc8, $out8, $err8) = create_agg(q{=note});
like($err8, qr/stopped in state error|ERROR/, 'a formula naming a source column that is not a group column fails');
no_canary($err8 . $out8, 'the failure shows none of the victim\'s data');
my ($rc9, $out9, $err9) = as_role($node, 'alice', q{SELECT count(*) FROM duet.pipeline_groups WHERE tenant <> 'acme' OR grp::text LIKE '%canary%'});
is($out9, '0', 'alice sees none of globex\'s tracked groups');
my ($rc10, $out10, $err10) = as_role($node, 'alice', q{INSERT INTO duet.pipeline_groups VALUES ((SELECT id FROM duet.pipelines WHERE name = 'agg'), 'acme', '[1]', '[2]')});
like($err10, qr/permission denied for table pipeline_groups/, 'alice cannot write the group tracking');
my ($rc11, $out11, $err11) = as_role($node, 'alice', q{SELECT duet_pipeline_drop('agg')});

# 5. The internal functions are the owner's.
for my $f ("duet.duet_pipeline_commit((SELECT id FROM duet.pipelines WHERE name = 'p'), 'incremental', now(), 0, 0, 0, NULL, '{\"\": \"999\"}', NULL, NULL, NULL, NULL, NULL, NULL)",
	"duet.duet_pipeline_failed(1, 'incremental', now(), 'x')",
	"duet.duet_pipeline_state_apply('globex', 'bob'::regrole, 'canary_globex_7731_p', 'drop')",
	"duet.duet_pipeline_validate('bob'::regrole, 'SELECT 1')",
	"duet.duet_pipeline_create_apply('globex', 'bob'::regrole, 'x', 'alice.src', 'alice.dst', '{\"id\": \"id\"}', 'id', NULL, '{}', 'append', '[]', 10, NULL, NULL)")
{
	my ($rc4, $o4, $e4) = as_role($node, 'alice', "SELECT $f;");
	like($e4, qr/permission denied for function/, "alice cannot call " . (split /\(/, $f)[0]);
}

done_testing();

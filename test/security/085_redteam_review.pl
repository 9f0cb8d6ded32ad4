# Red-team review of the features merged with issues 13, 18 and 19 (metrics, pipelines, monitoring,
# Kafka wake triggers). Each attack below was a hole found in the review, now closed, or a property
# that held without a test of its own:
#   1. a tenant's code in its pipeline source (a domain CHECK on the order column) ran as whoever
#      read duet.pipeline_status — a superuser, the extension owner, another member of the tenant;
#      a forged duet.pipelines row passed to duet_pipeline_backlog() counts nothing of another's;
#   2. any role could hold the advisory key every metric change waited on (hashtext('duet.metrics'))
#      and stall every tenant's metric changes, or the key of one tenant's config key;
#   3. the pipeline runner serves every tenant in one session: a session advisory lock taken by one
#      tenant's transform survived into the next tenant's run;
#   4. the wake-trigger functions cannot be attached by a plain role to wake the workers;
#   5. a transform checked in a session with standard_conforming_strings off ran, read with it on,
#      as other SQL than the check had accepted (text closing the expression's parenthesis);
#   6. duet_metric_set's statements as the caller used IS NOT DISTINCT FROM, whose = is looked up
#      on the caller's search_path.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

# Runners start only when a commit wakes the scheduler: the order of one pass is known (test 3).
my $node = new_node('sec_redteam', "duet.databases = 'postgres'", "duet.pipeline_interval = 0");

# --- 1. pipeline_status counts a tenant's source as the pipeline's owner ---------------------------
$node->safe_psql('postgres', q{
CREATE ROLE acme2 LOGIN;
SELECT duet_tenant_add_member('acme', 'acme2');
SET ROLE alice;
CREATE DOMAIN alice.ord AS int CHECK (alice.mark('backlog'));
CREATE TABLE alice.bsrc (id alice.ord PRIMARY KEY, v int);
CREATE TABLE alice.bdst (id int PRIMARY KEY, v int);
GRANT SELECT ON alice.bsrc TO PUBLIC;
SELECT duet_pipeline_create('backlog', 'alice.bsrc', 'alice.bdst', '{"id": "id", "v": "v"}',
    order_by => 'id', key => '{id}', mode => 'upsert');
INSERT INTO alice.bsrc VALUES (1, 1);
SELECT duet_pipeline_run('backlog');
SELECT duet_pipeline_pause('backlog');
INSERT INTO alice.bsrc VALUES (2, 2), (3, 3);
RESET ROLE;
SET ROLE bob;
CREATE TABLE globex.bsrc (id int PRIMARY KEY, v int);
CREATE TABLE globex.bdst (id int PRIMARY KEY, v int);
SELECT duet_pipeline_create('canary_globex_7731_b', 'globex.bsrc', 'globex.bdst', '{"id": "id", "v": "v"}',
    order_by => 'id', key => '{id}', mode => 'upsert');
INSERT INTO globex.bsrc VALUES (0, 0);
SELECT duet_pipeline_run('canary_globex_7731_b');
SELECT duet_pipeline_pause('canary_globex_7731_b');
INSERT INTO globex.bsrc SELECT g, g FROM generate_series(1, 7) g;
RESET ROLE;
});
$node->safe_psql('postgres', 'TRUNCATE alice.log');
is($node->safe_psql('postgres', q{SELECT lag_rows FROM duet.pipeline_status WHERE name = 'backlog'}), '2',
	'the superuser sees the backlog of alice\'s pipeline');
is($node->safe_psql('postgres', q{SELECT lag_rows FROM duet.pipeline_status WHERE name = 'backlog'},
		extra_params => [ '-U', 'acme2' ]), '2', 'another member of acme sees it too');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT cu, ',') FROM alice.log}), 'alice',
	'counting ran alice\'s domain CHECK as alice');
is(ran_as_others($node, 'alice'), '', 'reading the status ran alice\'s code as no one else (superuser, acme2)');
not_pwned($node, 'alice', 'reading duet.pipeline_status never ran alice\'s code as a superuser or the owner');

my $victim_id = $node->safe_psql('postgres', q{SELECT id FROM duet.pipelines WHERE tenant = 'globex' AND name = 'canary_globex_7731_b'});
my $victim_owner = $node->safe_psql('postgres', q{SELECT 'bob'::regrole::oid});
# numbers, not names: the attacker may not look names up in globex's schema
my ($victim_src, $victim_dst) = split /\|/, $node->safe_psql('postgres', q{SELECT 'globex.bsrc'::regclass::oid || '|' || 'globex.bdst'::regclass::oid});
for my $r (@ATTACKERS)
{
	# a forged row: the victim's id, owner and source under the attacker's own pipeline fields
	my ($rc, $out, $err) = as_role($node, $r, qq{
SELECT 'forged=' || coalesce(duet_pipeline_backlog(pg_catalog.jsonb_populate_record(NULL::duet.pipelines,
    '{"id": $victim_id, "tenant": "globex", "name": "x", "source": "$victim_src", "target": "$victim_dst",
      "transform": {"id": "id"}, "order_by": "id", "key": [], "mode": "append", "batch_size": 10,
      "position": {}, "owner": "$victim_owner", "state": "active"}'))::text, 'null');});
	like($out, qr/forged=null/, "$KIND{$r}: a forged pipeline row counts nothing of globex's table");
	unlike($out, qr/forged=7/, "$KIND{$r}: globex's row count does not leak");
}

# --- 2. no role can stall metric changes by holding an advisory key --------------------------------
for my $r (@ATTACKERS)
{
	my $holder = $node->background_psql('postgres', extra_params => [ '-U', $r ]);
	$holder->query_safe(q{SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext('duet.metrics'))});
	$holder->query_safe(q{SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext('duet.metrics')::int, 0)});
	# the key a write of globex's config key gx.lock waited on
	$holder->query_safe(q{SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext('duet.config/globex'), pg_catalog.hashtext('gx.lock'))});
	# the strongest lock on duet.metrics the attacker can take, held in an open transaction
	$holder->query_safe(q{BEGIN; LOCK TABLE duet.metrics IN ACCESS SHARE MODE;});
	my ($rc, $out, $err) = as_role($node, $r, q{BEGIN; LOCK TABLE duet.metrics IN ROW EXCLUSIVE MODE NOWAIT; COMMIT;});
	like($err, qr/permission denied/, "$KIND{$r}: cannot take a write lock on duet.metrics");
	# lock_timeout only bounds how long a blocked change would wait: it must not wait at all
	($rc, $out, $err) = as_role($node, 'bob', qq{SET lock_timeout = '30s';
SELECT duet_set_tenant('globex');
SELECT 'set=' || name FROM duet_metric_set('gx_lock_$r', 'x * 2', 'set while $r holds locks');
SELECT 'config=' || duet_config_set('gx.lock', '"$r"')::text;});
	like($out, qr/set=gx_lock_$r/, "$KIND{$r}: holding advisory keys does not block globex's metric change");
	like($out, qr/config=\d+/, "$KIND{$r}: nor globex's config change");
	unlike($err, qr/lock timeout/, "$KIND{$r}: no change waited on the attacker's locks");
	$holder->quit;
}
my ($rc_d, $out_d, $err_d) = as_role($node, 'postgres', q{SET lock_timeout = '30s';
SELECT 'defined=' || name FROM duet_metric_define('rt_global', 'x + 1', 'global metric defined under lock');});
like($out_d, qr/defined=rt_global/, 'a global metric is defined while no attacker holds anything');

# --- 3. the pipeline runner ends one tenant's session locks before the next tenant's run ----------
$node->safe_psql('postgres', q{
SET ROLE alice;
CREATE TABLE alice.lsrc (id int PRIMARY KEY, v int);
CREATE TABLE alice.ldst (id int PRIMARY KEY, v int);
SELECT duet_pipeline_create('locker', 'alice.lsrc', 'alice.ldst',
    '{"id": "id", "v": "CASE WHEN alice.ran(''runner'') THEN v END"}', order_by => 'id', key => '{id}', mode => 'upsert');
RESET ROLE;
SET ROLE bob;
CREATE TABLE globex.lsrc (id int PRIMARY KEY, v int);
CREATE TABLE globex.ldst (id int PRIMARY KEY, locks int);
SELECT duet_pipeline_create('canary_globex_7731_l', 'globex.lsrc', 'globex.ldst',
    '{"id": "id", "locks": "(SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l WHERE l.locktype = ''advisory'' AND l.pid = pg_catalog.pg_backend_pid())::int"}',
    order_by => 'id', key => '{id}', mode => 'upsert');
RESET ROLE;
});
cmp_ok($node->safe_psql('postgres', q{SELECT id FROM duet.pipelines WHERE name = 'locker'}), '<',
	$node->safe_psql('postgres', q{SELECT id FROM duet.pipelines WHERE name = 'canary_globex_7731_l'}),
	'alice\'s pipeline runs first in a pass');
$node->safe_psql('postgres', q{BEGIN; INSERT INTO alice.lsrc VALUES (1, 1); INSERT INTO globex.lsrc VALUES (1, 1); COMMIT;});
ok(wait_until(sub { $node->safe_psql('postgres', q{SELECT count(*) FROM globex.ldst}) eq '1'
		&& $node->safe_psql('postgres', q{SELECT count(*) FROM alice.ldst}) eq '1' }, 60),
	'one pass of the runner ran both pipelines');
is($node->safe_psql('postgres', q{SELECT v FROM alice.ldst}), '1', 'alice\'s transform took its session lock');
is($node->safe_psql('postgres', q{SELECT locks FROM globex.ldst}), '0',
	'globex\'s run does not hold the session advisory lock alice\'s run took');
not_pwned($node, 'alice', 'the runner ran alice\'s transform as alice');

# --- 4. the wake triggers are not a plain role's to attach ----------------------------------------
my $kafka_wake = $node->safe_psql('postgres', q{SELECT oid::regproc FROM pg_proc WHERE proname = 'duet_kafka_changed_trigger'});
for my $r (@ATTACKERS)
{
	for my $t ([ 'kafka', "$kafka_wake('consumers')" ], [ 'kafka outbox', "$kafka_wake('outbox')" ],
		[ 'pipeline', 'duet.duet_pipeline_wake()' ])
	{
		my ($rc, $out, $err) = as_role($node, $r, qq{CREATE TRIGGER w AFTER INSERT ON $r.t FOR EACH STATEMENT EXECUTE FUNCTION $t->[1];});
		like($err, qr/permission denied for function/, "$KIND{$r}: cannot attach the $t->[0] wake trigger");
	}
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM pg_trigger WHERE tgrelid = '$r.t'::regclass}), '0',
		"$KIND{$r}: no wake trigger on its table");
}

# --- 5. a transform means what the check read, whatever standard_conforming_strings says --------
# With it off in alice's session, '\' ... --'<newline> is one string literal; read with it on (the
# worker's default) the quote ends at the backslash and the text adds two columns to the run's
# statement. The check reads it as every run does.
my $scs_inj = q{'\\\\' ) AS v, (SELECT 1) AS w, ( 1 --'\\n};
my ($rc5, $out5, $err5) = as_role($node, 'alice', qq{
CREATE TABLE alice.ssrc (id int PRIMARY KEY, v int);
CREATE TABLE alice.sdst (id int PRIMARY KEY, v text);
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT duet_pipeline_create('scs', 'alice.ssrc', 'alice.sdst', \$j\${"id": "id", "v": "$scs_inj"}\$j\$::jsonb,
    order_by => 'id', key => '{id}', mode => 'upsert');});
like($err5, qr/invalid pipeline transform of column "v": not a single SQL expression/,
	'text that is one string only with standard_conforming_strings off is refused');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.pipelines WHERE name = 'scs'}), '0', 'no such pipeline was stored');
# a plain literal with a backslash: the same value from the check, a run in that session and the worker
($rc5, $out5, $err5) = as_role($node, 'alice', q{
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT duet_pipeline_create('scs_ok', 'alice.ssrc', 'alice.sdst', $j${"id": "id", "v": "'a\\\\b'"}$j$::jsonb,
    order_by => 'id', key => '{id}', mode => 'upsert');
INSERT INTO alice.ssrc VALUES (1, 1);
SELECT duet_pipeline_run('scs_ok');});
is($node->safe_psql('postgres', q{SELECT v FROM alice.sdst WHERE id = 1}), 'a\\b',
	'a run in a session with standard_conforming_strings off reads the literal as the check did');
$node->safe_psql('postgres', q{INSERT INTO alice.ssrc VALUES (2, 2)});
ok(wait_until(sub { $node->safe_psql('postgres', q{SELECT count(*) FROM alice.sdst}) eq '2' }, 60), 'the worker ran it too');
is($node->safe_psql('postgres', q{SELECT v FROM alice.sdst WHERE id = 2}), 'a\\b', 'and wrote the same value');

# --- 6. a metric change run as the caller resolves no operator through the caller's search_path --
# bob puts public before pg_catalog; alice (CREATE on public, as the threat model allows) shadows
# text = text there. The statements duet_metric_set runs as bob name pg_catalog's operator.
$node->safe_psql('postgres', 'GRANT CREATE ON SCHEMA public TO alice');
$node->safe_psql('postgres', 'SET ROLE alice; ' . evil_op('alice', 'public', '=', 'text', 'text', 'metric_eq'));
$node->safe_psql('postgres', 'TRUNCATE alice.log');
my ($rc6, $out6, $err6) = as_role($node, 'bob', q{SET search_path = public, pg_catalog;
SELECT duet_set_tenant('globex');
SELECT 'set=' || name FROM duet_metric_set('gx_sp', 'x + 3', 'set under search_path public, pg_catalog');});
like($out6, qr/set=gx_sp/, 'bob\'s metric change under search_path public, pg_catalog succeeds');
is(ran_as_others($node, 'alice'), '', 'alice\'s operator in public never ran as bob during his metric change');
$node->safe_psql('postgres', 'DROP OPERATOR public.= (text, text); REVOKE CREATE ON SCHEMA public FROM alice');

done_testing();

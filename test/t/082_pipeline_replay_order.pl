# Issue 19 (known gap): in upsert mode, duet_pipeline_replay() runs quarantined rows again (and
# duet_pipeline_backfill() old ranges), and those rows are older than what the pipeline may have
# written of their key since. Replay and backfill must respect source order: such a row is skipped
# when a later row of its key (by order value, then partition) was already read and written; it is
# written when the later rows of its key are still in quarantine or not read yet, and among the
# rows of one key in the run the latest wins.
# No background worker serves the database: every run here is an explicit call.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('replay_order');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'\nduet.rules_interval = 0\n");
$node->start;

sub alice { return $node->safe_psql('postgres', "SET ROLE alice;\nSELECT FROM duet_set_tenant('acme');\n" . $_[0]); }

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_duet;
SELECT duet_tenant_create('acme');
CREATE ROLE alice LOGIN;
SELECT duet_tenant_add_member('acme', 'alice');
CREATE SCHEMA ro AUTHORIZATION alice;
});
alice(q{
CREATE TABLE ro.src (id bigint PRIMARY KEY, k text, v int);
CREATE TABLE ro.dst (k text PRIMARY KEY, v int, src_id bigint);
SELECT duet_pipeline_create('latest', 'ro.src', 'ro.dst', '{"k": "upper(k)", "v": "v", "src_id": "id"}',
    order_by => 'id', key => '{k}', mode => 'upsert',
    expectations => '[{"name": "v_nonnegative", "predicate": "v >= 0", "action": "drop"}]');
});

# a: quarantined, then a later version written          -> the replay must not overwrite it
# b: two versions quarantined                           -> replayed together, the later wins
# c: quarantined, the later version quarantined too and still failing after the fix
#                                                        -> the earlier is written (nothing newer is)
# e: a later version written under another spelling of the key (the key is the transform's)
alice(q{
INSERT INTO ro.src VALUES (1, 'a', -5), (3, 'b', -1), (4, 'b', -2), (5, 'c', -3), (6, 'c', -20), (9, 'e', -7);
SELECT duet_pipeline_run('latest');
INSERT INTO ro.src VALUES (10, 'a', 21), (11, 'E', 30);
SELECT duet_pipeline_run('latest');
});
is(alice(q{SELECT string_agg(k || '=' || v, ',' ORDER BY k) FROM ro.dst}), 'A=21,E=30', 'before the replay: the later versions of a and e');
is(alice(q{SELECT count(*) FROM duet.pipeline_quarantine WHERE replayed_at IS NULL}), '6', 'six rows in quarantine');

# d: quarantined; its later version arrives while the pipeline is paused (not read yet at the replay)
alice(q{
INSERT INTO ro.src VALUES (12, 'd', -4);
SELECT duet_pipeline_run('latest');
SELECT duet_pipeline_pause('latest');
INSERT INTO ro.src VALUES (13, 'd', 9);
});

# The fix: values down to -10 are fine now (c's later version, -20, still fails).
alice(q{SELECT duet_pipeline_alter('latest', '{"expectations": [{"name": "v_floor", "predicate": "v >= -10", "action": "drop"}]}')});
is(alice(q{SELECT duet_pipeline_replay('latest')}), '7', 'the replay reads the 7 quarantined rows');
is(alice(q{SELECT string_agg(k || '=' || v || '@' || src_id, ',' ORDER BY k) FROM ro.dst}), 'A=21@10,B=-2@4,C=-3@5,D=-4@12,E=30@11',
	'replay respects source order: a and e keep their later versions, b gets its latest, c and d their replayed rows');
is(alice(q{SELECT string_agg(pos, ',' ORDER BY pos::int) FROM duet.pipeline_quarantine WHERE replayed_at IS NULL}), '6',
	'only the row that still fails is quarantined anew');
is(alice(q{SELECT rows_in || '/' || rows_out || '/' || rows_dropped FROM duet.pipeline_runs WHERE kind = 'replay'}), '7/3/1',
	'the run: 7 read, 3 written (b, c, d), 1 dropped, the stale a and e skipped');

# d's later version, read after the replay, replaces the replayed row.
alice(q{SELECT duet_pipeline_resume('latest'); SELECT duet_pipeline_run('latest');});
is(alice(q{SELECT v || '@' || src_id FROM ro.dst WHERE k = 'D'}), '9@13', 'd: the later version read after the replay wins');

# A backfill of an old range is the same case: a (row 1) must keep its later version (row 10).
is(alice(q{SELECT duet_pipeline_backfill('latest', '1', '5')}), '4', 'backfill of [1, 5] reads its 4 rows');
is(alice(q{SELECT string_agg(k || '=' || v || '@' || src_id, ',' ORDER BY k) FROM ro.dst}), 'A=21@10,B=-2@4,C=-3@5,D=9@13,E=30@11',
	'backfill respects source order: no key goes back to an older version');
is(alice(q{SELECT rows_in || '/' || rows_out FROM duet.pipeline_runs WHERE kind = 'backfill'}), '4/2',
	'the backfill wrote b and c again (their latest read rows), not a');

# Partitions: at an equal order value, the greater partition is the later row (the upsert's rule).
alice(q{
CREATE TABLE ro.psrc (p int, o bigint, k text, v int, PRIMARY KEY (p, o));
CREATE TABLE ro.pdst (k text PRIMARY KEY, v int, p int);
SELECT duet_pipeline_create('parts', 'ro.psrc', 'ro.pdst', '{"k": "k", "v": "v", "p": "p"}',
    order_by => 'o', partition_by => 'p', key => '{k}', mode => 'upsert',
    expectations => '[{"name": "v_nonnegative", "predicate": "v >= 0", "action": "drop"}]');
INSERT INTO ro.psrc VALUES (0, 5, 'x', -1), (1, 5, 'x', 1), (1, 6, 'y', -1), (0, 7, 'y', 2);
SELECT duet_pipeline_run('parts');
SELECT duet_pipeline_alter('parts', '{"expectations": []}');
SELECT duet_pipeline_replay('parts');
});
is(alice(q{SELECT string_agg(k || '=' || v || '@' || p, ',' ORDER BY k) FROM ro.pdst}), 'x=1@1,y=2@0',
	'partitions: x (partition 1 beats 0 at offset 5) and y (offset 7 beats 6) keep their later versions');

$node->stop;
done_testing();

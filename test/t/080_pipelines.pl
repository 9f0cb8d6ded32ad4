# Pipelines end to end, run by the background workers: bronze (jsonb, four partitions) -> silver
# (typed, deduplicated by event id, drop expectations into the quarantine) -> gold (daily
# aggregates per campaign). 1,000,000 bronze rows, the issue's size (the whole file ran in 341 s on
# the shared 2-core machine beside a full CI run; DUET_PIPELINES_N=200000 for a quick run), 2%
# violating: silver holds exactly the passing rows deduplicated (latest by source order wins),
# the quarantine exactly the others with their reasons, gold equals the aggregate computed over
# silver. kill -9 of the runner in the middle of a run leaves the same end state; late rows
# change only the gold groups they touch; a fail expectation stops the pipeline with nothing of
# the batch committed, and a query rule over duet.pipeline_status raises the alert.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

# DUET_PIPELINES_N sets the size (timeouts scale with it from 200k; 1M is about 4x 200k's time).
my $N = $ENV{DUET_PIPELINES_N} // 1_000_000;
my $SCALE = $N > 200_000 ? $N / 200_000 : 1;

sub wait_until
{
	my ($cond, $timeout) = @_;
	my $deadline = time() + ($timeout // 180) * $SCALE;
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(200_000);
	}
	return 0;
}


my $node = PostgreSQL::Test::Cluster->new('pipelines');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'pg_duet'",
	"duet.databases = 'postgres'",
	"duet.pipeline_interval = 1",
	"duet.rules_interval = 0",
	"max_worker_processes = 32",
	"restart_after_crash = on") . "\n");
$node->start;

sub alice { return $node->safe_psql('postgres', "SET ROLE alice;\n" . $_[0]); }

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_duet;
SELECT duet_tenant_create('acme');
CREATE ROLE alice LOGIN;
SELECT duet_tenant_add_member('acme', 'alice');
CREATE SCHEMA ads AUTHORIZATION alice;
GRANT duet_kafka_publisher TO alice;
INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_publish, may_consume)
    VALUES ('gold.*', 'alice', true, false);
-- gold's ctr is this metric of the metrics layer over the group's sums
SELECT duet_metric_define('gold_ctr', 'clicks / impressions', 'click-through rate', unit => 'ratio');
});
alice(q{
CREATE TABLE ads.bronze (_partition int NOT NULL, _offset bigint NOT NULL, payload jsonb NOT NULL,
                         PRIMARY KEY (_partition, _offset));
CREATE SEQUENCE ads.silver_seq;
CREATE TABLE ads.silver (event_id text PRIMARY KEY, campaign int, day date, cost numeric,
                         revenue numeric, clicks int, impressions int, seq bigint NOT NULL);
CREATE INDEX ON ads.silver (seq);
CREATE TABLE ads.gold (campaign int, day date, cost numeric, revenue numeric, roas numeric,
                       ctr float8, events bigint, clicks bigint, impressions bigint, PRIMARY KEY (campaign, day));
-- Bronze rows: offset o of partition p. Every 50th row violates an expectation (2%): a negative
-- cost (odd) or no campaign (even). Event ids repeat (1 in 10 rows is an update of an earlier
-- event), so silver deduplicates.
CREATE FUNCTION ads.load(lo bigint, hi bigint) RETURNS void LANGUAGE sql AS $$
INSERT INTO ads.bronze
SELECT i % 4, i / 4,
       jsonb_strip_nulls(jsonb_build_object(
           'id', 'e' || CASE WHEN i % 10 = 9 THEN (i * 7919) % (i + 1) ELSE i END,
           'campaign', CASE WHEN i % 100 = 50 THEN NULL ELSE i % 40 END,
           'ts', '2026-01-01'::date + (i % 30)::int,
           'cost', CASE WHEN i % 100 = 0 THEN -1 ELSE (i % 17) + 1 END,
           'revenue', (i % 23) * 1.5,
           'clicks', i % 7, 'impressions', 10 + i % 13))
  FROM generate_series(lo, hi - 1) i
$$;
});

my $silver_transform = q{{"event_id": "payload->>'id'", "campaign": "(payload->>'campaign')::int",
	"day": "(payload->>'ts')::date", "cost": "(payload->>'cost')::numeric",
	"revenue": "(payload->>'revenue')::numeric", "clicks": "(payload->>'clicks')::int",
	"impressions": "(payload->>'impressions')::int", "seq": "nextval('ads.silver_seq')"}};
$silver_transform =~ s/'/''/g;
alice(qq{
SELECT duet_pipeline_create('silver', 'ads.bronze', 'ads.silver', '$silver_transform',
    order_by => '_offset', partition_by => '_partition', key => '{event_id}', mode => 'upsert',
    expectations => '[{"name": "cost_nonnegative", "predicate": "cost >= 0", "action": "drop"},
                      {"name": "has_campaign", "predicate": "campaign IS NOT NULL", "action": "drop"},
                      {"name": "ctr_at_most_1", "predicate": "=clicks <= impressions", "action": "warn"}]',
    batch_size => 20000, drift_column => 'payload');
SELECT duet_pipeline_create('gold', 'ads.silver', 'ads.gold',
    '{"campaign": "campaign", "day": "day", "cost": "sum(cost)", "revenue": "sum(revenue)",
      "roas": "sum(revenue) / nullif(sum(cost), 0)",
      "clicks": "sum(clicks)", "impressions": "sum(impressions)",
      "ctr": "=gold_ctr(clicks, impressions)", "events": "count(*)"}',
    order_by => 'seq', key => '{campaign,day}', mode => 'aggregate', batch_size => 50000,
    topic => 'gold.data.ready');
});

sub caught_up
{
	return alice(q{SELECT bool_and(lag_rows = 0 AND state = 'active') FROM duet.pipeline_status}) eq 't';
}

# What silver, the quarantine and gold must hold, computed directly from bronze.
my $expected_silver = q{
SELECT DISTINCT ON (payload->>'id') payload->>'id' AS event_id, (payload->>'campaign')::int AS campaign,
       (payload->>'ts')::date AS day, (payload->>'cost')::numeric AS cost,
       (payload->>'revenue')::numeric AS revenue, (payload->>'clicks')::int AS clicks,
       (payload->>'impressions')::int AS impressions
  FROM ads.bronze
 WHERE (payload->>'cost')::numeric >= 0 AND payload ? 'campaign'
 ORDER BY payload->>'id', _offset DESC, _partition DESC};
my $silver_cols = 'event_id, campaign, day, cost, revenue, clicks, impressions';
my $expected_quarantine = q{
SELECT _partition::text, _offset::text,
       array_remove(ARRAY[CASE WHEN (payload->>'cost')::numeric < 0 THEN 'cost_nonnegative' END,
                          CASE WHEN NOT payload ? 'campaign' THEN 'has_campaign' END], NULL)
  FROM ads.bronze
 WHERE NOT ((payload->>'cost')::numeric >= 0 AND payload ? 'campaign')};
my $gold_direct = q{
SELECT campaign, day, sum(cost), sum(revenue), sum(revenue) / nullif(sum(cost), 0),
       sum(clicks)::float8 / nullif(sum(impressions), 0), count(*), sum(clicks), sum(impressions)
  FROM ads.silver GROUP BY campaign, day};

sub check_end_state
{
	my ($what) = @_;
	is(alice(qq{SELECT count(*) FROM (($expected_silver) EXCEPT ALL SELECT $silver_cols FROM ads.silver) d}), '0',
		"$what: every passing row is in silver with its latest values");
	is(alice(qq{SELECT (SELECT count(*) FROM ads.silver) - (SELECT count(*) FROM ($expected_silver) e)}), '0',
		"$what: silver holds nothing else (one row per event)");
	is(alice(qq{SELECT count(*) FROM ((($expected_quarantine) EXCEPT ALL SELECT part, pos, failed FROM duet.pipeline_quarantine)
	                                  UNION ALL (SELECT part, pos, failed FROM duet.pipeline_quarantine EXCEPT ALL ($expected_quarantine))) d}),
		'0', "$what: the quarantine holds exactly the violating rows, once each, with their reasons");
	is(alice(qq{SELECT count(*) FROM ((($gold_direct) EXCEPT SELECT * FROM ads.gold) UNION ALL
	                                  (SELECT * FROM ads.gold EXCEPT ($gold_direct))) d}),
		'0', "$what: gold equals the aggregate computed over silver");
	is($node->safe_psql('postgres', q{SELECT (SELECT count(*) FROM duet.kafka_outbox WHERE topic = 'gold.data.ready')
	       - (SELECT sum(r.rows_out) FROM duet.pipeline_runs r JOIN duet.pipelines p ON p.id = r.pipeline_id
	           WHERE p.name = 'gold' AND r.status = 'ok')}), '0',
		"$what: the outbox carries one event per committed gold row");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM ads.gold g WHERE NOT EXISTS (
	       SELECT FROM (SELECT DISTINCT ON (value::jsonb ->> 'campaign', value::jsonb ->> 'day') value::jsonb AS v
	                      FROM duet.kafka_outbox WHERE topic = 'gold.data.ready'
	                     ORDER BY value::jsonb ->> 'campaign', value::jsonb ->> 'day', id DESC) o
	        WHERE o.v = to_jsonb(g))}), '0', "$what: the latest event of each gold row is that row");
}

# 1. The load commits; the trigger wakes the workers, which run both stages to the end.
my $t0 = time();
alice("SELECT ads.load(0, $N)");
ok(wait_until(\&caught_up), 'the workers ran both pipelines to the end of bronze');
diag(sprintf('%d bronze rows loaded and run through silver and gold in %.1f s', $N, time() - $t0));
check_end_state('first load');
is(alice(q{SELECT count(*) FROM duet.pipeline_quarantine}), $N / 50, '2% of the rows are quarantined');
is(alice(q{SELECT rows_in_24h || ' ' || rows_dropped_24h || ' ' || (failures_24h ->> 'cost_nonnegative') || ' '
                  || (failures_24h ->> 'has_campaign') FROM duet.pipeline_status WHERE name = 'silver'}),
	"$N " . ($N / 50) . ' ' . ($N / 100) . ' ' . ($N / 100),
	'the status counts rows in, dropped and failures per expectation');
is(alice(q{SELECT count(*) > 1 FROM duet.pipeline_runs r JOIN duet.pipelines p ON p.id = r.pipeline_id
            WHERE p.name = 'silver' AND r.rows_in <= p.batch_size}), 't', 'in bounded batches, each in the history');

# 2. kill -9 of the runner in the middle of a run: the runner is made to wait on the silver
# table's lock after it read its batch; the crash restart rolls the run back; the workers then
# redo it and the end state is the one computed from bronze.
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE ads.silver IN EXCLUSIVE MODE;');
alice("SELECT ads.load($N, $N + 40000)");
my $pid = '';
ok(wait_until(sub {
	$pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity
	                                        WHERE backend_type = 'pg_duet pipeline runner' AND wait_event_type = 'Lock'});
	return $pid ne '';
}, 60), 'a runner is in the middle of a silver run');
my $before_kill = alice(q{SELECT position FROM duet.pipelines WHERE name = 'silver'});
kill 'KILL', $pid;
eval { $locker->quit; };
# (psql may exit before it read its input while the server restarts: a broken pipe, retried)
ok(wait_until(sub { my $rc = eval { ($node->psql('postgres', 'SELECT 1'))[0] }; defined $rc && $rc == 0 }, 120),
	'the server restarted after the crash');
ok(wait_until(\&caught_up), 'after the crash the workers caught up');
check_end_state('after kill -9');
isnt(alice(q{SELECT position FROM duet.pipelines WHERE name = 'silver'}), $before_kill, 'the position moved on after the crash');

# 3. Late rows (old days) update only the gold groups they touch.
alice(q{CREATE TABLE ads.gold_before AS SELECT * FROM ads.gold});
alice(q{INSERT INTO ads.bronze VALUES
    (0, 1000000, '{"id": "late-1", "campaign": 3, "ts": "2026-01-02", "cost": 5, "revenue": 9, "clicks": 1, "impressions": 20}'),
    (1, 1000000, '{"id": "late-2", "campaign": 7, "ts": "2026-01-05", "cost": 2, "revenue": 1, "clicks": 0, "impressions": 20, "coupon": "x"}')});
ok(wait_until(\&caught_up), 'late rows processed');
is(alice(q{SELECT string_agg(campaign || '/' || day, ',' ORDER BY campaign) FROM
           (SELECT * FROM ads.gold EXCEPT SELECT * FROM ads.gold_before) d}),
	'3/2026-01-02,7/2026-01-05', 'only the two groups of the late rows changed');
check_end_state('after late rows');

# 3b. A later version of an event in another campaign and day: the group it left is recomputed
# too (duet.pipeline_groups), both equal the aggregate computed over silver.
my $old_group = alice(q{SELECT campaign || '/' || day FROM ads.silver WHERE event_id = 'e1'});
ok($old_group ne '' && $old_group ne '5/2026-01-09', "event e1 is in group $old_group");
alice(q{DROP TABLE ads.gold_before; CREATE TABLE ads.gold_before AS SELECT * FROM ads.gold});
alice(q{INSERT INTO ads.bronze VALUES
    (2, 1000001, '{"id": "e1", "campaign": 5, "ts": "2026-01-09", "cost": 3, "revenue": 4, "clicks": 1, "impressions": 10}')});
ok(wait_until(\&caught_up), 'the moved row processed');
is(alice(q{SELECT string_agg(campaign || '/' || day, ',' ORDER BY campaign) FROM
           (SELECT * FROM ads.gold EXCEPT SELECT * FROM ads.gold_before) d}),
	join(',', sort { (split m{/}, $a)[0] <=> (split m{/}, $b)[0] } ($old_group, '5/2026-01-09')),
	'the groups it left and joined changed, no other');
check_end_state('after a row moved to another group');
is(alice(q{SELECT drift_24h -> 'new_keys' ->> 'coupon' FROM duet.pipeline_status WHERE name = 'silver'}), '1',
	'schema drift: the new key of the late row is counted');

# 4. A fail expectation: the batch with one bad row commits nothing and stops the pipeline; a
# query rule over duet.pipeline_status raises the alert; after the fix and resume the batch lands.
alice(q{SELECT duet_pipeline_alter('silver', '{"expectations": [
    {"name": "cost_nonnegative", "predicate": "cost >= 0", "action": "drop"},
    {"name": "has_campaign", "predicate": "campaign IS NOT NULL", "action": "drop"},
    {"name": "cost_sane", "predicate": "cost < 1000000", "action": "fail"}]}')});
alice(q{SELECT duet_rule_create('pipeline_stopped', 'state = ''error''',
                                query => 'SELECT name, state FROM duet.pipeline_status', labels => '{name}')});
alice(q{INSERT INTO ads.bronze SELECT 2, 2000000 + i, jsonb_build_object('id', 'f' || i, 'campaign', 1, 'ts', '2026-01-03',
            'cost', CASE WHEN i = 5 THEN 5000000 ELSE 1 END, 'revenue', 1, 'clicks', 1, 'impressions', 10)
          FROM generate_series(0, 9) i});
ok(wait_until(sub { alice(q{SELECT state FROM duet.pipeline_status WHERE name = 'silver'}) eq 'error' }, 60),
	'the fail expectation stopped the pipeline');
like(alice(q{SELECT last_error FROM duet.pipeline_status WHERE name = 'silver'}),
	qr/position 2000005 of partition "2" failed cost_sane/, 'the status says which row failed which expectation');
is(alice(q{SELECT count(*) FROM ads.silver WHERE event_id LIKE 'f%'}), '0', 'nothing of the failed batch was committed');
$node->safe_psql('postgres', q{SELECT duet_rules_evaluate(now())});	# what the rule scheduler does
is(alice(q{SELECT a.state || ' ' || (a.labels ->> 'name') FROM duet.alerts a JOIN duet.rules r ON r.id = a.rule_id
            WHERE r.name = 'pipeline_stopped' AND a.state = 'firing'}), 'firing silver', 'the rule over the status raised the alert');
alice(q{SELECT duet_pipeline_alter('silver', '{"expectations": [
    {"name": "cost_nonnegative", "predicate": "cost >= 0", "action": "drop"},
    {"name": "has_campaign", "predicate": "campaign IS NOT NULL", "action": "drop"}]}')});
alice(q{SELECT duet_pipeline_resume('silver')});
ok(wait_until(\&caught_up), 'resumed, the pipeline caught up');
is(alice(q{SELECT count(*) FROM ads.silver WHERE event_id LIKE 'f%'}), '10', 'the batch landed after the fix');
check_end_state('after the failed batch was fixed');

# 5. Replay: after the expectation on campaign is relaxed, quarantined rows without a campaign
# pass; those with a negative cost are quarantined anew.
alice(q{SELECT duet_pipeline_pause('gold')});
my $without_campaign = alice(q{SELECT count(*) FROM duet.pipeline_quarantine WHERE failed = '{has_campaign}' AND replayed_at IS NULL});
alice(q{SELECT duet_pipeline_alter('silver', '{"expectations": [
    {"name": "cost_nonnegative", "predicate": "cost >= 0", "action": "drop"}]}')});
my $replayed = alice(q{SELECT duet_pipeline_replay('silver')});
is($replayed, $N / 50 + 40000 / 50, 'every quarantined row was replayed');
is(alice(q{SELECT count(*) FROM duet.pipeline_quarantine WHERE replayed_at IS NULL}), ($N + 40000) / 100,
	'the rows that still fail are quarantined anew');
is(alice(q{SELECT count(*) FROM ads.silver WHERE campaign IS NULL}) > 0 ? 1 : 0, 1, 'rows without a campaign now reached silver');
ok($without_campaign > 0, 'there were rows quarantined for has_campaign');

# 6. Drop removes the pipeline and, with the last pipeline on a table, its wake trigger.
alice(q{SELECT duet_pipeline_drop('gold')});
is(alice(q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ads.silver'::regclass AND tgname = 'duet_pipeline_wake'}), '0',
	'dropping the last pipeline on a table drops its trigger');
is(alice(q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ads.bronze'::regclass AND tgname = 'duet_pipeline_wake'}), '1',
	'the trigger of a source still read stays');

# 7. One tenant's backlog does not hold another tenant's pipeline back beyond one batch: the runner
# gives every pipeline one batch per pass, and a run reads as its creator under its own tenant.
$node->safe_psql('postgres', q{
SELECT duet_tenant_create('beta');
CREATE ROLE carol LOGIN;
SELECT duet_tenant_add_member('beta', 'carol');
CREATE SCHEMA beta AUTHORIZATION carol;
});
$node->safe_psql('postgres', q{SET ROLE carol;
CREATE TABLE beta.src (id bigint PRIMARY KEY, v int);
CREATE TABLE beta.dst (id bigint PRIMARY KEY, v int, who text);
SELECT duet_pipeline_create('b', 'beta.src', 'beta.dst', '{"id": "id", "v": "v", "who": "current_user || ''@'' || duet_current_tenant()"}',
                            order_by => 'id');});
alice(q{CREATE TABLE ads.big (id bigint PRIMARY KEY, v int);
CREATE TABLE ads.big_out (id bigint PRIMARY KEY, v int);
SELECT duet_pipeline_create('big', 'ads.big', 'ads.big_out', '{"id": "id", "v": "v"}', order_by => 'id', batch_size => 1000);});
$node->safe_psql('postgres', q{BEGIN;
INSERT INTO ads.big SELECT i, i FROM generate_series(1, 20000) i;
INSERT INTO beta.src VALUES (1, 1);
COMMIT;});
ok(wait_until(sub { $node->safe_psql('postgres', q{SELECT (SELECT count(*) FROM ads.big_out) = 20000 AND (SELECT count(*) FROM beta.dst) = 1}) eq 't' }),
	'both tenants\' pipelines ran');
is($node->safe_psql('postgres', q{SELECT count(*) <= 1 FROM duet.pipeline_runs r JOIN duet.pipelines p ON p.id = r.pipeline_id
    WHERE p.name = 'big' AND r.id < (SELECT min(r2.id) FROM duet.pipeline_runs r2 JOIN duet.pipelines p2 ON p2.id = r2.pipeline_id
                                      WHERE p2.name = 'b')}), 't',
	'beta\'s pipeline ran after at most one of the 20 batches of acme\'s');
is($node->safe_psql('postgres', q{SELECT who FROM beta.dst}), 'carol@beta', 'it ran as its creator, under its tenant');
is($node->safe_psql('postgres', q{SET ROLE carol; SELECT count(*) FROM duet.pipeline_status}), '1',
	'a tenant sees only its own pipelines');

$node->stop;
done_testing();

# Consumers are not processes (issue 12): a bounded pool of ingestion workers serves many
# consumers; the assignment follows consumers added and dropped and a pool worker that dies; no
# session state of one tenant's consumer reaches another tenant's consumer served by the same
# worker; a consumer that cannot be scheduled says why.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nmany = 200;
# The 200 consumers all read one topic (each with its own client), into a table each.
my $broker = start_broker('ta:1', 'tb:1', 'late:1', 'many:2');
my $b = $broker->{bootstrap};

# ---- 1. Isolation: tenant A's and tenant B's consumers on one pool worker (pool size 1) ----
my $node = kafka_node('pool', 'duet.kafka_pool_size = 1');
$node->safe_psql('postgres', q{
CREATE ROLE tenant_a LOGIN IN ROLE duet_kafka_admin;
CREATE ROLE tenant_b LOGIN IN ROLE duet_kafka_admin;
INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_consume)
    VALUES ('ta', 'tenant_a', true), ('tb', 'tenant_b', true);
CREATE SCHEMA a AUTHORIZATION tenant_a;
CREATE SCHEMA b AUTHORIZATION tenant_b;
SET ROLE tenant_a;
CREATE SEQUENCE a.secret_seq START 424242;
CREATE TABLE a.t (n int);
-- What tenant A's code tries to leave behind in the worker's session.
CREATE FUNCTION a.leave_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('duet_test.secret', 'tenant-a-secret', false);
    PERFORM pg_advisory_lock(4242);
    PERFORM nextval('a.secret_seq');
    BEGIN
        EXECUTE 'PREPARE a_secret_stmt AS SELECT 42';
    EXCEPTION WHEN others THEN NULL;   -- refused in a security-restricted operation, too
    END;
    BEGIN
        CREATE TEMP TABLE a_secret_temp (x int);
    EXCEPTION WHEN others THEN NULL;   -- refused in a security-restricted operation
    END;
    RETURN NEW;
END $$;
CREATE TRIGGER leave_state BEFORE INSERT ON a.t FOR EACH ROW EXECUTE FUNCTION a.leave_state();
RESET ROLE;
SET ROLE tenant_b;
CREATE TABLE b.t (n int);
CREATE TABLE b.seen (secret_setting text, advisory_lock_held boolean, prepared text, last_value bigint,
                     temp_objects bigint);
-- What tenant B's code can see of the session it runs in.
CREATE FUNCTION b.look() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lv bigint;
BEGIN
    BEGIN
        lv := lastval();
    EXCEPTION WHEN object_not_in_prerequisite_state THEN lv := NULL;   -- nothing in this session
              WHEN insufficient_privilege THEN lv := -1;   -- another tenant's sequence was used here
    END;
    INSERT INTO b.seen VALUES (
        nullif(current_setting('duet_test.secret', true), ''),
        pg_advisory_unlock(4242),
        (SELECT string_agg(name, ',') FROM pg_prepared_statements),
        lv,
        (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()));
    RETURN NEW;
END $$;
CREATE TRIGGER look BEFORE INSERT ON b.t FOR EACH ROW EXECUTE FUNCTION b.look();
RESET ROLE;
});
$node->safe_psql('postgres', "SET ROLE tenant_a; SELECT duet_kafka_consume('ca', 'ta', 'a.t', '$b', 'json', flush_interval_ms => 50)");
$node->safe_psql('postgres', "SET ROLE tenant_b; SELECT duet_kafka_consume('cb', 'tb', 'b.t', '$b', 'json', flush_interval_ms => 50)");
wait_for($node, q{SELECT string_agg(name || ':' || array_to_string(pool_workers, ','), ' ' ORDER BY name) FROM duet.kafka_status},
	'ca:0 cb:0', 'both tenants\' consumers are served by pool worker 0');
produce($broker, 'ta', [ map { "{\"n\": $_}" } 1 .. 5 ]);
wait_for($node, 'SELECT count(*) FROM a.t', '5', 'tenant A ingests (its trigger leaves what it can in the session)');
produce($broker, 'tb', [ map { "{\"n\": $_}" } 1 .. 5 ]);
wait_for($node, 'SELECT count(*) FROM b.t', '5', 'tenant B ingests on the same worker');
is($node->safe_psql('postgres', q{SELECT DISTINCT coalesce(secret_setting, '-') || '|' || advisory_lock_held || '|' ||
	coalesce(prepared, '-') || '|' || coalesce(last_value::text, '-') || '|' || temp_objects FROM b.seen}),
	'-|false|-|-|0', 'tenant B sees none of tenant A\'s settings, advisory locks, prepared statements, sequence state or temp objects');
# And back: A again after B, then B again — each switch resets.
produce($broker, 'ta', [ '{"n": 6}' ]);
wait_for($node, 'SELECT count(*) FROM a.t', '6', 'tenant A again');
produce($broker, 'tb', [ '{"n": 6}' ]);
wait_for($node, 'SELECT count(*) FROM b.seen', '6', 'tenant B again');
is($node->safe_psql('postgres', q{SELECT count(*) FROM b.seen WHERE secret_setting IS NOT NULL OR advisory_lock_held
	OR prepared IS NOT NULL OR last_value IS NOT NULL OR temp_objects > 0}), '0', 'still nothing of tenant A after a second switch');
$node->stop;

# ---- 2. Many consumers on a default-sized server: 200 consumers, max_worker_processes = 8 ----
my $big = kafka_node('many', 'max_worker_processes = 8');
$big->safe_psql('postgres', join("\n", map {
	"CREATE TABLE m$_ (n int); SELECT duet_kafka_consume('m$_', 'many', 'm$_', '$b', 'json', flush_interval_ms => 50);" } 1 .. $nmany));
my $rows = sub { my ($want) = @_; "SELECT count(*) FILTER (WHERE c = $want) FROM (" .
	join(' UNION ALL ', map { "SELECT count(*) AS c FROM m$_" } 1 .. $nmany) . ") x" };
produce($broker, 'many', [ map { "{\"n\": $_}" } 1 .. 4 ]);
wait_for($big, $rows->(4), "$nmany", "$nmany consumers ingest on a server with max_worker_processes = 8", 240);
is($big->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_duet kafka pool'}),
	'2', 'by two pool workers (duet.kafka_pool_size = 2)');
is($big->safe_psql('postgres', q{SELECT string_agg(pool_worker || ':' || groups, ' ' ORDER BY pool_worker) FROM duet.kafka_pool}),
	'0:100 1:100', 'the groups are split evenly');
is($big->safe_psql('postgres', q{SELECT count(*) FROM duet.kafka_status WHERE state NOT IN ('idle', 'running')}),
	'0', 'every consumer idle or running, none starting');

# A pool worker dies: its consumers move to the other one, then come back when it is restarted.
my $victim = $big->safe_psql('postgres', q{SELECT pid FROM duet.kafka_pool WHERE pool_worker = 1});
$big->safe_psql('postgres', "SELECT pg_terminate_backend($victim)");
wait_for($big, q{SELECT groups FROM duet.kafka_pool WHERE pool_worker = 0}, '200',
	'a dead pool worker\'s consumers are taken over (before the supervisor restarts it, 5 s later)', 30);
produce($broker, 'many', [ map { "{\"n\": $_}" } 5 .. 6 ]);
wait_for($big, q{SELECT string_agg(pool_worker || ':' || groups, ' ' ORDER BY pool_worker) FROM duet.kafka_pool}, '0:100 1:100',
	'and are given back once it runs again', 60);
produce($broker, 'many', [ map { "{\"n\": $_}" } 7 .. 8 ]);
wait_for($big, $rows->(8), "$nmany", 'every message once in every table across the hand-overs', 120);
is($big->safe_psql('postgres', $rows->(8) =~ s/count\(\*\) AS c/count(DISTINCT n) AS c/gr), "$nmany", 'no message twice');

# A consumer added later moves nobody: the new unit is the last.
$big->safe_psql('postgres', "CREATE TABLE late (n int); SELECT duet_kafka_consume('late', 'late', 'late', '$b', 'json', flush_interval_ms => 50)");
produce($broker, 'late', [ '{"n": 1}' ]);
wait_for($big, 'SELECT count(*) FROM late', '1', 'a consumer added later runs');
is($big->safe_psql('postgres', q{SELECT pool_workers FROM duet.kafka_status WHERE name = 'late'}), '{0}',
	'on the worker its position names (unit 200 % 2 = 0)');
$big->stop;

# ---- 3. No background worker slot for the pool: loud at duet_kafka_consume and in the status ----
# rule scheduler, pipeline scheduler, kafka launcher, logical replication launcher, supervisor: no
# slot left for the pool
my $tight = kafka_node('tight', 'max_worker_processes = 5');
$tight->safe_psql('postgres', 'CREATE TABLE t (n int)');
my ($rc, $out, $err) = $tight->psql('postgres', "SELECT duet_kafka_consume('c', 'ta', 't', '$b', 'json')");
wait_for($tight, q{SELECT state, reason FROM duet.kafka_status WHERE name = 'c'},
	'not running|no background worker slot for 1 of the 1 Kafka pool workers (max_worker_processes = 5)',
	'status: not running, with the reason');
($rc, $out, $err) = $tight->psql('postgres', "SELECT duet_kafka_consume('c2', 'ta', 't', '$b', 'json')");
like($err, qr/WARNING:  Kafka consumer "c2" will not run: no background worker slot for 1 of the 1 Kafka pool workers/,
	'duet_kafka_consume warns when the pool cannot run');
like($err, qr/HINT:  Raise max_worker_processes/, 'with a hint');
$tight->stop;

stop_broker($broker);
done_testing();

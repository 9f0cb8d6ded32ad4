# The worker skeleton's promise: SIGTERM (here `pg_ctl stop -m fast`) ends a consumer even inside a
# long batch, promptly, and the aborted batch is neither lost nor doubled after the restart. Also:
# the launcher and supervisor say once, not every loop, why they skip a database of duet.databases.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $broker = start_broker('stop:4');
my $boot = $broker->{bootstrap};
my $node = kafka_node('stop', "duet.databases = 'postgres, nosuchdb, plain'");

# Slow batches: every row sleeps 1 ms in a trigger, so one batch of 5,000 takes over 5 s and an
# ingest that only stopped between batches would keep pg_ctl waiting for it.
$node->safe_psql('postgres', q{
CREATE TABLE stop (n int NOT NULL, _partition int, _offset bigint);
CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN NEW; END $$;
CREATE TRIGGER slow_row BEFORE INSERT ON stop FOR EACH ROW EXECUTE FUNCTION slow_row();
});
my $total = 20_000;
produce($broker, 'stop', [ map { "{\"n\": $_}" } 1 .. $total ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('stop', 'stop', 'stop', '$boot', 'json', batch_size => 5000, flush_interval_ms => 200)");

ok(wait_until(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_duet kafka pool' AND query LIKE 'ingesting % of consumer stop %' AND state = 'active'}) eq '1' }, 60),
	'caught the consumer inside a batch');
# Well inside it: the batch has run for a second or so and has seconds left.
sleep 1;
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM stop');
my $t0 = time();
$node->stop('fast');    # dies if pg_ctl gives up (its own 60 s wait)
my $stop_s = time() - $t0;
note(sprintf('pg_ctl stop -m fast during a batch took %.2f s (%d rows committed before it)', $stop_s, $before));
cmp_ok($stop_s, '<', 30, 'fast shutdown does not wait for the batch to finish');
like(slurp_file($node->logfile), qr/terminating background worker "pg_duet kafka pool" due to administrator command/,
	'the consumer ended through die() at an interrupt check');

my $log_from = -s $node->logfile;
$node->start;
# Finish quickly now: the rows sleep no more.
$node->safe_psql('postgres', 'DROP TRIGGER slow_row ON stop');
wait_for($node, 'SELECT count(*), count(DISTINCT n), count(DISTINCT (_partition, _offset)) FROM stop',
	"$total|$total|$total", 'after the restart every message exactly once: the aborted batch is neither lost nor doubled', 120);
is($node->safe_psql('postgres', q{SELECT sum(committed_offset), sum(lag) FROM duet.kafka_partition_status WHERE name = 'stop'}),
	"$total|0", 'committed offsets match the rows');

# Skipped databases: said once each however many loops ran (the launcher loops every 5 s).
$node->safe_psql('postgres', 'CREATE DATABASE plain');
sleep 12;
my $log = slurp_file($node->logfile, $log_from);
my $missing = () = $log =~ /pg_duet kafka launcher skips database "nosuchdb" in duet\.databases: it does not exist/g;
my $missing_rules = () = $log =~ /pg_duet rule scheduler skips database "nosuchdb" in duet\.databases: it does not exist/g;
my $noext = () = $log =~ /skips database "plain": extension pg_duet is not installed there/g;
is($missing, 1, 'a database that does not exist is logged once by the restarted launcher') or diag("seen $missing times");
is($missing_rules, 1, 'and once by the rule scheduler, which no longer starts an evaluation there') or diag("seen $missing_rules times");
unlike($log, qr/FATAL:  database "nosuchdb" does not exist/, 'no worker is started only to fail on the missing database');
is($noext, 1, 'a database without pg_duet is logged once') or diag("seen $noext times");

$node->stop;
stop_broker($broker);
done_testing();

# The Kafka supervisor and the outbox publisher wait on their latches and are woken when a change
# that concerns them commits (kafka_wake.c), not by polling: with duet.kafka_poll_interval at one
# hour, a consumer created, stopped and started, a worker that exited and a published event are
# all acted upon within the bounded waits below (a minute at most), which only a wake-up explains.
# A rolled-back change leaves the consumer as it was, and the trigger refuses to be misused.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker('wake:2', 'wake_out:1');
my $b = $broker->{bootstrap};
my $node = kafka_node('wake', "duet.kafka_poll_interval = '1h'", "duet.outbox_brokers = '$b'");
is($node->safe_psql('postgres', 'SHOW duet.kafka_poll_interval'), '1h', 'the supervisor and publisher poll only hourly');
$node->safe_psql('postgres', 'CREATE TABLE wake (n int, _partition int, _offset bigint)');

# The supervisor has made its first pass (it starts the publisher at its end) and sleeps.
wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_duet kafka outbox publisher'},
	'1', 'the supervisor started the publisher on its first pass');
wait_for($node, q{SELECT state FROM pg_stat_activity WHERE backend_type = 'pg_duet kafka supervisor postgres'},
	'idle', 'the supervisor is asleep');

# A new consumer: its worker starts at once although the next poll is an hour away.
produce($broker, 'wake', [ map { "{\"n\": $_}" } 1 .. 50 ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('wake', 'wake', 'wake', '$b', 'json', flush_interval_ms => 50)");
wait_for($node, 'SELECT count(*) FROM wake', '50', 'a committed new consumer wakes the supervisor');

# Stopping it ends its worker; a stop rolled back changes nothing; starting it again restarts it.
$node->safe_psql('postgres', "SELECT duet_kafka_stop('wake')");
wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_duet kafka pool'},
	'0', 'a committed stop wakes the supervisor, which ends the pool worker (no partition group left)');
$node->safe_psql('postgres', "BEGIN; SELECT duet_kafka_start('wake'); ROLLBACK;");
is($node->safe_psql('postgres', q{SELECT enabled FROM duet.kafka_consumers WHERE name = 'wake'}), 'f',
	'a rolled-back start leaves the consumer stopped');
produce($broker, 'wake', [ map { "{\"n\": $_}" } 51 .. 80 ]);
$node->safe_psql('postgres', "SELECT duet_kafka_start('wake')");
wait_for($node, 'SELECT count(*), count(DISTINCT n) FROM wake', '80|80', 'a committed start wakes it again');

# A pool worker that exits is restarted after the restart pause, not at the next poll: its exit
# wakes the supervisor (bgw_notify_pid), which then sleeps only until the pause is over.
my $pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_duet kafka pool'});
ok($pid =~ /^\d+$/, 'the pool worker runs');
$node->psql('postgres', "SELECT pg_terminate_backend($pid)") if $pid =~ /^\d+$/;
ok(wait_until(sub {
	my $now = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_duet kafka pool'});
	$now =~ /^\d+$/ && $now ne $pid }, 60), 'an exited worker is restarted after the pause');
produce($broker, 'wake', [ map { "{\"n\": $_}" } 81 .. 90 ]);
wait_for($node, 'SELECT count(*), count(DISTINCT n) FROM wake', '90|90', 'the restarted worker resumes, nothing lost or doubled');

# The outbox: a committed event is sent at once; an event rolled back is never sent.
$node->safe_psql('postgres', q{BEGIN; SELECT duet_kafka_publish('wake_out', 'k', 'rolled back'); ROLLBACK;});
$node->safe_psql('postgres', q{SELECT duet_kafka_publish('wake_out', 'k', 'woken')});
wait_for($node, q{SELECT pending, sent_last_hour FROM duet.kafka_outbox_status}, '0|1',
	'a committed outbox event wakes the publisher, which sends it');
$node->safe_psql('postgres', q{SELECT duet_kafka_publish('wake_out', 'k', 'again')});
wait_for($node, q{SELECT pending, sent_last_hour FROM duet.kafka_outbox_status}, '0|2',
	'and again: the publisher went back to sleep on its latch');

# The trigger function is internal: it refuses to run outside a trigger or with a wrong argument.
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT duet_kafka_changed_trigger()');
like($err, qr/function duet_kafka_changed_trigger\(\) does not exist|must be called as a trigger|trigger functions can only be called as triggers/,
	'the trigger function cannot be called directly');
($rc, $out, $err) = $node->psql('postgres', q{CREATE TABLE other (n int);
	CREATE TRIGGER bad AFTER INSERT ON other FOR EACH STATEMENT EXECUTE FUNCTION duet_kafka_changed_trigger('nobody');
	INSERT INTO other VALUES (1)});
like($err, qr/unknown argument "nobody" of duet_kafka_changed_trigger\(\)/, 'an unknown argument is refused');
# Nobody but a superuser may attach it: a plain role cannot make its own writes wake the workers.
$node->safe_psql('postgres', q{CREATE ROLE wake_mallory LOGIN; CREATE TABLE mallory_t (n int) ; ALTER TABLE mallory_t OWNER TO wake_mallory;});
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE wake_mallory;
	CREATE TRIGGER mine AFTER INSERT ON mallory_t FOR EACH STATEMENT EXECUTE FUNCTION duet_kafka_changed_trigger('consumers')});
like($err, qr/permission denied for function duet_kafka_changed_trigger/, 'a plain role cannot attach the wake-up trigger');

$node->stop('fast');
stop_broker($broker);
done_testing();

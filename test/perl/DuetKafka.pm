# DuetKafka — helpers for pg_duet's Kafka TAP tests: the dev broker, kcat, bounded waits.
package DuetKafka;

use strict;
use warnings;
use Exporter 'import';
use File::Temp ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);
use Test::More;

our @EXPORT = qw(start_broker stop_broker broker_down broker_up produce produce_msgs outrun_retention kafka_node wait_for
	wait_until);

my $devbroker = ($ENV{DUET_BUILD} // "$ENV{DUET_ROOT}/build") . '/devbroker';
my %running;    # pid → 1, so a test that dies still stops its brokers

END
{
	kill 'TERM', keys %running;
}

# start_broker('topic:partitions', ...) → { pid, bootstrap }. Topics are created before it returns.
sub start_broker
{
	my @topics = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $file = "$dir/bootstrap";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', "$dir/stdout");
		open(STDERR, '>', "$dir/stderr");
		exec($devbroker, '-f', $file, map { ('-t', $_) } @topics) or die "exec $devbroker: $!";
	}
	for (1 .. 100)
	{
		last if -s $file;
		usleep(100_000);
	}
	die "dev broker did not start" unless -s $file;
	$running{$pid} = 1;
	my $bootstrap = slurp_file($file);
	chomp $bootstrap;
	return { pid => $pid, bootstrap => $bootstrap, dir => $dir };
}

sub stop_broker
{
	my ($b) = @_;
	kill 'TERM', $b->{pid};
	waitpid($b->{pid}, 0);
	delete $running{ $b->{pid} };
}

sub broker_down { kill 'USR1', $_[0]->{pid}; usleep(300_000); }
sub broker_up   { kill 'USR2', $_[0]->{pid}; usleep(300_000); }

# produce($broker, $topic, \@lines [, partition => N, key => K, headers => ['h=v']]): one message
# per line (kcat -l), waiting for delivery.
sub produce
{
	my ($b, $topic, $lines, %opt) = @_;
	my ($fh, $path) = File::Temp::tempfile(DIR => $b->{dir}, UNLINK => 1);
	print $fh map { "$_\n" } @$lines;
	close $fh;
	# sticky.partitioning.linger.ms=0: keyless messages spread over the partitions one by one, not
	# in runs of 40 ms (twice linger.ms) to one partition, which a fast producer fills alone.
	my @cmd = ('kcat', '-P', '-b', $b->{bootstrap}, '-t', $topic, '-l', '-X', 'linger.ms=20',
		'-X', 'sticky.partitioning.linger.ms=0');
	push @cmd, '-p', $opt{partition} if defined $opt{partition};
	push @cmd, '-k', $opt{key} if defined $opt{key};
	push @cmd, map { ('-H', $_) } @{ $opt{headers} // [] };
	push @cmd, '-K', $opt{delimiter} if defined $opt{delimiter};
	system(@cmd, $path) == 0 or die "kcat produce failed: $?";
}

# produce_msgs($broker, $topic, \@msgs [, partition => N, key => K | keys => \@keys]): each element is one message,
# whatever bytes it holds (newlines, quotes, a lone "\."); undef is a tombstone (NULL value). Every
# message has a key (K, default "m<index>"): kcat sends a NULL value only with a key (-K, -Z), as
# tombstones are in compacted topics. Framed by kcat -D '\x1e' -K '\x1f', so no message may hold
# those bytes; with a tombstone in the list an empty string is sent as NULL too.
sub produce_msgs
{
	my ($b, $topic, $msgs, %opt) = @_;
	my ($fh, $path) = File::Temp::tempfile(DIR => $b->{dir}, UNLINK => 1);
	binmode $fh;
	for my $i (0 .. $#$msgs)
	{
		my $m = $msgs->[$i];
		die "produce_msgs: a message holds a \\x1e or \\x1f delimiter" if defined $m && $m =~ /[\x1e\x1f]/;
		my $k = $opt{keys} ? $opt{keys}->[$i] : $opt{key} // "m$i";
		print $fh $k, "\x1f", (defined $m ? $m : ''), "\x1e";
	}
	close $fh;
	my @cmd = ('kcat', '-P', '-b', $b->{bootstrap}, '-t', $topic, '-l', '-D', '\x1e', '-K', '\x1f', '-X', 'linger.ms=20');
	push @cmd, '-p', $opt{partition} if defined $opt{partition};
	push @cmd, '-Z' if grep { !defined } @$msgs;
	system(@cmd, $path) == 0 or die "kcat produce failed: $?";
}

# outrun_retention($broker, $topic, $from, $to) → the low watermark of partition 0 after messages
# {"n": $from} … {"n": $to} of 1 KiB each: the dev broker keeps at most 5 MiB per partition and
# deletes the oldest message sets beyond that (size retention, as a broker's retention.bytes), so
# 7,000 of them push the low watermark past the first ~2,000 offsets.
sub outrun_retention
{
	my ($b, $topic, $from, $to) = @_;
	my $pad = 'p' x 1000;
	produce($b, $topic, [ map { "{\"n\": $_, \"pad\": \"$pad\"}" } $from .. $to ]);
	my $low = `kcat -C -b $b->{bootstrap} -t $topic -p 0 -o beginning -c 1 -e -q -f '%o\\n'`;
	chomp $low;
	return $low;
}

# A started node with pg_duet preloaded, serving database postgres. The supervisor and the
# publisher poll only hourly, so every Kafka test relies on their wake-ups at commit (kafka_wake.c).
sub kafka_node
{
	my ($name, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'pg_duet'",
		"duet.databases = 'postgres'",
		"duet.kafka_poll_interval = '1h'",
		"max_worker_processes = 32",
		@conf) . "\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pg_duet');
	return $node;
}

# wait_for($node, $sql, $expected, $name [, $timeout]): polls until the query returns $expected.
# A query that fails (say, a column not there yet) is a failed test, not the end of the file.
sub wait_for
{
	my ($node, $sql, $expected, $name, $timeout) = @_;
	$timeout //= 60;
	my $deadline = time() + $timeout;
	my $got;
	while (time() < $deadline)
	{
		my ($rc, $out, $err) = $node->psql('postgres', $sql);
		$got = $rc == 0 ? $out : "ERROR: $err";
		last if $got eq $expected;
		usleep(200_000);
	}
	is($got, $expected, $name);
	return $got eq $expected;
}

# wait_until(sub { ... }, $timeout): polls a condition; returns whether it became true.
sub wait_until
{
	my ($cond, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(200_000);
	}
	return 0;
}

1;

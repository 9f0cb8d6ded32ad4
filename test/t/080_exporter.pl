# Prometheus metrics (issue 17): Debian's prometheus-postgres-exporter with
# exporter/pg_duet_queries.yaml, connected as a duet_monitor role, scraped on loopback while a
# Kafka consumer ingests (dev broker), row and query rules fire and fail, asks go to the mock LLM
# (answered and rejected by the guard), the outbox fills, config is read and pipelines lag, run,
# quarantine and fail. Every metric of the
# queries file must be on /metrics with its labels, the counters must move with the activity,
# docs/monitoring.md must list exactly the file's metrics, and duet.health must show a tenant member
# the same figures for its own tenant only.
use strict;
use warnings;
use lib "$ENV{DUET_ROOT}/test/perl";
use DuetKafka;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $root = $ENV{DUET_ROOT} or die "DUET_ROOT not set";
my $queries = "$root/exporter/pg_duet_queries.yaml";
my $exporter_bin = '/usr/bin/prometheus-postgres-exporter';
plan skip_all => "$exporter_bin not installed (test/install-deps.sh installs it)" unless -x $exporter_bin;

# ---- the queries file and docs/monitoring.md ------------------------------------------------------

# { metric name => { type => gauge|counter, labels => 'a,b' } } from the queries file: the
# exporter names a metric <key>_<column>; LABEL columns are labels of every metric of the key.
sub yaml_metrics
{
	my (%m, $ns, @labels, @cols);
	my $flush = sub {
		$m{"${ns}_$_->[0]"} = { type => $_->[1], labels => join(',', sort @labels) } for @cols;
		(@labels, @cols) = ();
	};
	my $col;
	for (split /\n/, slurp_file($queries))
	{
		next if /^\s*#/;
		if (/^([a-z_]+):\s*$/) { $flush->() if $ns; $ns = $1; next }
		if (/^    - ([a-z_]+):\s*$/) { $col = $1; next }
		if (/^        usage: "(LABEL|GAUGE|COUNTER|HISTOGRAM)"/)
		{
			if ($1 eq 'LABEL') { push @labels, $col } else { push @cols, [ $col, lc $1 ] }
		}
	}
	$flush->() if $ns;
	return \%m;
}

sub doc_metrics
{
	my %m;
	for (split /\n/, slurp_file("$root/docs/monitoring.md"))
	{
		next unless /^\| (pg_duet_[a-z_]+) \| (gauge|counter|histogram) \|\s*([a-z_, ]*?)\s*\|/;
		$m{$1} = { type => $2, labels => join(',', sort split /,\s*/, $3) };
	}
	return \%m;
}

my $yaml = yaml_metrics();
my $doc = doc_metrics();
ok(keys %$yaml >= 30, 'the queries file defines the metrics (' . scalar(keys %$yaml) . ')');
is_deeply($doc, $yaml, 'docs/monitoring.md lists every metric of the queries file, with its type and labels')
  or diag(explain({ only_in_doc => [ grep { !$yaml->{$_} } sort keys %$doc ],
		only_in_yaml => [ grep { !$doc->{$_} } sort keys %$yaml ] }));

# ---- the cluster, the broker, the mock LLM -----------------------------------------------------

my $broker = start_broker('clicks:2');
my $bootstrap = $broker->{bootstrap};
my $dir = PostgreSQL::Test::Utils::tempdir();
my ($port_file, $fixtures) = ("$dir/mock.port", "$dir/fixtures.json");
{
	open my $f, '>', $fixtures or die $!;
	print $f encode_json({ default => 'SELECT count(*) AS n FROM clicks',
		answers => { 'wipe it' => [ 'DELETE FROM clicks', 'DROP TABLE clicks' ] } });
	close $f;
}
my $mock = IPC::Run::start([ 'python3', "$root/test/mock_llm.py", '--port-file', $port_file,
	'--fixtures', $fixtures, '--log', "$dir/requests.jsonl" ]);
my $exporter;
END { local $?; $exporter->kill_kill if $exporter; $mock->kill_kill if $mock }
for (1 .. 100) { last if -s $port_file; usleep(100_000) }
my $llm_port = slurp_file($port_file);

# librdkafka's statistics every second: the watermarks' age (lag_age_seconds) is known soon.
my $node = kafka_node('exporter', 'duet.rules_interval = 0', 'duet.kafka_statistics_interval = 1000');
$node->safe_psql('postgres', qq{
CREATE ROLE prom LOGIN; GRANT duet_monitor TO prom;
CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
SELECT duet_tenant_create('acme'), duet_tenant_create('globex');
SELECT duet_tenant_add_member('acme', 'alice'), duet_tenant_add_member('globex', 'bob');
CREATE TABLE clicks (tenant text NOT NULL, campaign text, n int CHECK (n >= 0));
GRANT SELECT, INSERT ON clicks TO alice, bob;
GRANT TRIGGER ON clicks TO alice;
CREATE TABLE kclicks (tenant text, campaign text, n int CHECK (n >= 0));
INSERT INTO duet.llm_providers (name, kind, base_url, model, priority, timeout_ms, max_retries)
    VALUES ('p1', 'openai', 'http://127.0.0.1:$llm_port/p1/v1', 'mock-gpt', 1, 5000, 0);
INSERT INTO duet.llm_provider_keys VALUES ('p1', 'sk-test-exporter-1234');
GRANT EXECUTE ON FUNCTION duet_ask(text, jsonb) TO alice, bob;
INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_publish) VALUES ('events', 'postgres', true);
SET ROLE alice;
SELECT duet_set_tenant('acme');
SELECT duet_rule_create('big_click', 'n > 5', target => 'public.clicks', labels => '{campaign}', severity => 'critical');
RESET ROLE;
SET ROLE bob;
SELECT duet_set_tenant('globex');
SELECT duet_rule_create('broken', 'x > 0', query => 'SELECT campaign, 1 / (n - n) AS x FROM public.clicks');
RESET ROLE;
-- acme's pipelines: one that quarantines negative values, one stopped by a fail expectation;
-- paused, so their lag is there to be seen
CREATE SCHEMA acme AUTHORIZATION alice;
SET ROLE alice;
SELECT duet_set_tenant('acme');
CREATE TABLE acme.src (id bigint PRIMARY KEY, v int);
CREATE TABLE acme.dst (id bigint PRIMARY KEY, v int);
CREATE TABLE acme.src2 (id bigint PRIMARY KEY, v int);
CREATE TABLE acme.dst2 (id bigint PRIMARY KEY, v int);
SELECT duet_pipeline_create('acme_p', 'acme.src', 'acme.dst', '{"id": "id", "v": "v"}', order_by => 'id',
    key => '{id}', mode => 'upsert',
    expectations => '[{"name": "v_nonnegative", "predicate": "v >= 0", "action": "drop"}]');
SELECT duet_pipeline_create('acme_strict', 'acme.src2', 'acme.dst2', '{"id": "id", "v": "v"}', order_by => 'id',
    expectations => '[{"name": "v_small", "predicate": "v < 100", "action": "fail"}]');
SELECT duet_pipeline_pause('acme_p'), duet_pipeline_pause('acme_strict');
RESET ROLE;
});

# ---- the exporter ----------------------------------------------------------------------------

my $http_port = PostgreSQL::Test::Cluster::get_free_port();
my $dsn = sprintf('host=%s port=%d user=prom dbname=postgres sslmode=disable', $node->host, $node->port);
my ($exp_out, $exp_err) = ('', '');
{
	local $ENV{DATA_SOURCE_NAME} = $dsn;
	$exporter = IPC::Run::start([ $exporter_bin, "--web.listen-address=127.0.0.1:$http_port",
		"--extend.query-path=$queries", '--disable-default-metrics', '--disable-settings-metrics',
		'--no-collector.database', '--no-collector.bgwriter',
		'--log.level=warn' ], '<', \undef, '>', \$exp_out, '2>', \$exp_err);
}
my $http = HTTP::Tiny->new(timeout => 10);

# scrape() → { name => [ [ {labels}, value ], ... ] }, or undef when /metrics does not answer.
sub scrape
{
	my $r = $http->get("http://127.0.0.1:$http_port/metrics");
	return undef unless $r->{success};
	my %m;
	for (split /\n/, $r->{content})
	{
		next unless /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
		my ($name, $l, $v) = ($1, $2 // '', $3);
		my %labels = $l =~ /([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g;
		push @{ $m{$name} }, [ \%labels, $v ];
	}
	return \%m;
}

# The value of a metric whose labels include %want (undef when absent).
sub value
{
	my ($m, $name, %want) = @_;
	for my $s (@{ $m->{$name} // [] })
	{
		my $l = $s->[0];
		return $s->[1] unless grep { ($l->{$_} // "\0") ne $want{$_} } keys %want;
	}
	return undef;
}

# Polls /metrics until $cond->(metrics) is true (bounded); returns the last scrape.
sub scrape_until
{
	my ($cond, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	my $m;
	while (time() < $deadline)
	{
		$m = scrape();
		return $m if $m && $cond->($m);
		usleep(250_000);
	}
	return $m;
}

my $m = scrape_until(sub { defined value($_[0], 'pg_duet_server_counters_available') });
ok($m && defined value($m, 'pg_duet_server_counters_available'), "the exporter answers on 127.0.0.1:$http_port")
  or diag("exporter: $exp_err");
is(value($m, 'pg_up'), '1', 'the exporter reached the database as the duet_monitor role');
is(value($m, 'pg_exporter_user_queries_load_error'), '0', 'the queries file loads');
is(value($m, 'pg_duet_server_counters_available'), '1', 'counters available (preloaded)');
is(value($m, 'pg_duet_server_workers_serving'), '1', 'the workers serve the database');
is(value($m, 'pg_duet_rules_evaluations_total', tenant => 'acme', severity => 'critical'), '0',
	'before any insert: acme\'s critical rule has no evaluation');
is(value($m, 'pg_duet_rules_rules', tenant => 'globex', severity => 'warning'), '1', 'globex\'s rule is counted');
my $hits0 = value($m, 'pg_duet_server_config_cache_hits_total');
my %acme_p = (tenant => 'acme', pipeline => 'acme_p', mode => 'upsert');
is(value($m, 'pg_duet_pipeline_paused', %acme_p), '1', 'pipelines: acme_p is paused');
is(value($m, 'pg_duet_pipeline_active', %acme_p), '0', 'pipelines: ... so not active');
is(value($m, 'pg_duet_pipeline_lag_rows', %acme_p), '0', 'pipelines: no lag before any source row');
is(value($m, 'pg_duet_pipeline_rows_in_5m', %acme_p), '0', 'pipelines: nothing read yet');
is(value($m, 'pg_duet_pipeline_last_run_age_seconds', %acme_p), 'NaN', 'pipelines: never run (NaN)');

# Rows wait behind the paused pipelines: the lag shows on /metrics.
$node->safe_psql('postgres', q{
INSERT INTO acme.src VALUES (1, 1), (2, 2), (3, -1), (4, 4);
INSERT INTO acme.src2 VALUES (1, 1), (2, 500);
});
$m = scrape_until(sub { (value($_[0], 'pg_duet_pipeline_lag_rows', %acme_p) // 0) == 4 }, 60);
is(value($m, 'pg_duet_pipeline_lag_rows', %acme_p), '4', 'pipelines: 4 source rows wait (lag)');
ok(value($m, 'pg_duet_pipeline_lag_seconds', %acme_p) > 0, 'pipelines: the lag has an age (since creation)');
is(value($m, 'pg_duet_pipeline_lag_rows', tenant => 'acme', pipeline => 'acme_strict'), '2',
	'pipelines: 2 rows wait for acme_strict');
$node->safe_psql('postgres', q{
SELECT duet_set_tenant('acme');
SELECT duet_pipeline_resume('acme_p'), duet_pipeline_resume('acme_strict');
SELECT duet_pipeline_run('acme_p');
SELECT duet_pipeline_run('acme_strict');
}, connstr => $node->connstr('postgres') . ' user=alice');

# ---- activity ---------------------------------------------------------------------------------

produce($broker, 'clicks', [ (map { "{\"tenant\": \"acme\", \"campaign\": \"k$_\", \"n\": $_}" } 1 .. 10),
	'{"tenant": "acme", "campaign": "bad", "n": -1}' ]);
$node->safe_psql('postgres', "SELECT duet_kafka_consume('kc', 'clicks', 'kclicks', '$bootstrap', 'json', flush_interval_ms => 50)");
wait_for($node, 'SELECT count(*) FROM kclicks', '10', 'the consumer ingests 10 rows');
wait_for($node, q{SELECT count(*) FROM duet.kafka_dead_letters}, '1', 'the bad message is a dead letter');

my $alice = $node->connstr('postgres') . ' user=alice';
$node->safe_psql('postgres', q{
SELECT duet_set_tenant('acme');
INSERT INTO clicks VALUES ('acme', 'c1', 9), ('acme', 'c2', 1);
INSERT INTO clicks VALUES ('acme', 'c3', 7);
SELECT duet_config_set('dash.refresh', '30');
SELECT duet_config_get('dash.refresh') FROM generate_series(1, 300);
SELECT duet_ask('how many clicks?', '{"cache": false}');
}, connstr => $alice);
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT duet_set_tenant('acme'); SELECT duet_ask('wipe it', '{"cache": false}')},
	connstr => $alice);
like($err, qr/guard/i, 'the guard rejects a DELETE and a DROP');
$node->safe_psql('postgres', q{
SELECT duet_rules_evaluate();
SELECT duet_kafka_publish('events', 'k1', 'one'), duet_kafka_publish('events', 'k2', 'two');
});
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');

$m = scrape_until(sub {
	my $m = shift;
	(value($m, 'pg_duet_kafka_consumer_rows_total', consumer => 'kc') // 0) >= 10
	  && (value($m, 'pg_duet_rules_evaluations_total', tenant => 'acme', severity => 'critical') // 0) >= 2
	  && (value($m, 'pg_duet_rules_errors_total', tenant => 'globex', severity => 'warning') // 0) >= 1
	  && (value($m, 'pg_duet_outbox_pending') // 0) >= 2
	  && defined value($m, 'pg_duet_ask_calls_total', tenant => 'acme', status => 'rejected')
	  && (value($m, 'pg_duet_kafka_consumer_dead_letters', consumer => 'kc') // 0) >= 1
	  && (value($m, 'pg_duet_pipeline_rows_in_5m', %acme_p) // 0) >= 4
	  && (value($m, 'pg_duet_pipeline_in_error', tenant => 'acme', pipeline => 'acme_strict') // 0) == 1
	  && (value($m, 'pg_duet_kafka_consumer_lag_age_seconds', consumer => 'kc') // 'NaN') ne 'NaN'
}, 60);

# Every metric of the queries file is there, with exactly its labels (+ server; + le for a
# histogram's buckets).
for my $name (sort keys %$yaml)
{
	my @parts = $yaml->{$name}{type} eq 'histogram' ? ([ '_bucket', 'le' ], [ '_sum' ], [ '_count' ]) : ([ '' ]);
	for my $part (@parts)
	{
		my ($suffix, @extra) = @$part;
		my @s = @{ $m->{"$name$suffix"} // [] };
		my $want = join(',', sort(split(/,/, $yaml->{$name}{labels}), 'server', @extra));
		ok(@s && !grep({ join(',', sort keys %{ $_->[0] }) ne $want } @s), "$name$suffix is scraped with labels $want")
		  or diag(explain(\@s));
	}
}

# ... and the values follow the activity.
is(value($m, 'pg_duet_kafka_consumer_rows_total', consumer => 'kc', topic => 'clicks'), '10', 'Kafka: 10 rows ingested');
is(value($m, 'pg_duet_kafka_consumer_dead_letters', consumer => 'kc'), '1', 'Kafka: 1 dead letter');
ok(value($m, 'pg_duet_kafka_consumer_batches_total', consumer => 'kc') >= 1, 'Kafka: batches committed');
is(value($m, 'pg_duet_kafka_consumer_lag', consumer => 'kc'), '0', 'Kafka: no lag once everything is read');
my $age = value($m, 'pg_duet_kafka_consumer_lag_age_seconds', consumer => 'kc');
ok($age >= 0 && $age < 15, "Kafka: the lag's watermark is fresh while the broker answers ($age s old)");
ok(defined value($m, 'pg_duet_kafka_consumer_up', consumer => 'kc', state => 'running')
	|| defined value($m, 'pg_duet_kafka_consumer_up', consumer => 'kc', state => 'idle'), 'Kafka: the worker state is a label');
is(value($m, 'pg_duet_rules_evaluations_total', tenant => 'acme', severity => 'critical'), '2',
	'rules: two inserts, two evaluations (once per statement)');
is(value($m, 'pg_duet_rules_rows_evaluated_total', tenant => 'acme', severity => 'critical'), '3', 'rules: 3 rows evaluated');
is(value($m, 'pg_duet_rules_firing', tenant => 'acme', severity => 'critical'), '2', 'rules: c1 and c3 fire');
is(value($m, 'pg_duet_rules_errors_total', tenant => 'globex', severity => 'warning'), '1', 'rules: the broken query rule failed once');
is(value($m, 'pg_duet_rules_errors_total', tenant => 'acme', severity => 'critical'), '0', 'rules: acme had no error');
is(value($m, 'pg_duet_rules_in_error', tenant => 'globex', severity => 'warning'), '1', 'rules: its alert is in error');
is(value($m, 'pg_duet_ask_calls_total', tenant => 'acme', status => 'ok'), '1', 'ask: one answered');
is(value($m, 'pg_duet_ask_calls_total', tenant => 'acme', status => 'rejected'), '1', 'ask: one rejected');
ok(value($m, 'pg_duet_ask_guard_rejections_total', tenant => 'acme', status => 'rejected') >= 1, 'ask: the guard sent answers back');
ok(value($m, 'pg_duet_ask_http_requests_total', tenant => 'acme', status => 'rejected') >= 2, 'ask: requests counted');
ok(value($m, 'pg_duet_ask_tokens_in_total', tenant => 'acme', status => 'ok') > 0, 'ask: tokens counted');
ok(value($m, 'pg_duet_ask_latency_seconds_sum', tenant => 'acme', status => 'ok') > 0, 'ask: latency summed');
is(value($m, 'pg_duet_ask_latency_seconds_count', tenant => 'acme', status => 'ok'), '1', 'ask: latency histogram counts the ask');
is(value($m, 'pg_duet_ask_latency_seconds_bucket', tenant => 'acme', status => 'ok', le => '+Inf'), '1', 'ask: +Inf bucket');
is(value($m, 'pg_duet_ask_latency_seconds_bucket', tenant => 'acme', status => 'ok', le => '60'), '1',
	'ask: the mock\'s answer is in the 60 s bucket (cumulative)');
my @buckets = map { value($m, 'pg_duet_ask_latency_seconds_bucket', tenant => 'acme', status => 'ok', le => $_) }
	qw(0.1 0.25 0.5 1 2.5 5 10 30 60);
is(join(",", @buckets), join(",", sort { $a <=> $b } @buckets), 'ask: buckets are cumulative');
is(value($m, 'pg_duet_outbox_pending'), '2', 'outbox: 2 events pending (no broker for the outbox)');
ok(value($m, 'pg_duet_outbox_oldest_pending_age_seconds') > 0, 'outbox: the oldest pending event has an age');
ok(value($m, 'pg_duet_server_config_cache_hits_total') >= $hits0 + 299, 'config cache: 299 hits of 300 reads');
ok(value($m, 'pg_duet_server_config_cache_misses_total') >= 1, 'config cache: the first read missed');
ok(value($m, 'pg_duet_server_config_cache_hit_ratio') > 0.5, 'config cache: hit ratio');
is(value($m, 'pg_duet_server_counters_dropped_total'), '0', 'nothing dropped');
is(value($m, 'pg_duet_workers_running', worker => 'kafka supervisor'), '1', 'workers: the Kafka supervisor of the database runs');
is(value($m, 'pg_duet_workers_running', worker => 'kafka pool'), '1', 'workers: the pool worker serving the consumer runs');
is(value($m, 'pg_duet_workers_running', worker => 'rule scheduler'), '1', 'workers: the rule scheduler runs');
is(value($m, 'pg_duet_workers_running', worker => 'kafka outbox publisher'), '0', 'workers: no outbox publisher without duet.outbox_brokers');

is(value($m, 'pg_duet_pipeline_active', %acme_p), '1', 'pipelines: acme_p is active again');
is(value($m, 'pg_duet_pipeline_paused', %acme_p), '0', 'pipelines: ... not paused');
is(value($m, 'pg_duet_pipeline_lag_rows', %acme_p), '0', 'pipelines: acme_p caught up (no lag)');
is(value($m, 'pg_duet_pipeline_lag_seconds', %acme_p), '0', 'pipelines: caught up: lag 0 s');
is(value($m, 'pg_duet_pipeline_rows_in_5m', %acme_p), '4', 'pipelines: 4 rows read');
is(value($m, 'pg_duet_pipeline_rows_out_5m', %acme_p), '3', 'pipelines: 3 rows written');
is(value($m, 'pg_duet_pipeline_rows_dropped_5m', %acme_p), '1', 'pipelines: the negative one dropped');
is(value($m, 'pg_duet_pipeline_quarantined', %acme_p), '1', 'pipelines: ... and in quarantine');
is(value($m, 'pg_duet_pipeline_errors_24h', %acme_p), '0', 'pipelines: acme_p had no failed run');
ok(value($m, 'pg_duet_pipeline_runs_5m', %acme_p) >= 1, 'pipelines: acme_p ran');
ok(value($m, 'pg_duet_pipeline_last_success_age_seconds', %acme_p) >= 0, 'pipelines: last success has an age');
my %strict = (tenant => 'acme', pipeline => 'acme_strict', mode => 'append');
is(value($m, 'pg_duet_pipeline_in_error', %strict), '1', 'pipelines: the fail expectation stopped acme_strict');
is(value($m, 'pg_duet_pipeline_active', %strict), '0', 'pipelines: acme_strict is not active');
ok(value($m, 'pg_duet_pipeline_errors_24h', %strict) >= 1, 'pipelines: its failed run is counted');
is(value($m, 'pg_duet_pipeline_lag_rows', %strict), '2', 'pipelines: nothing of its batch was committed (lag 2)');
is(value($m, 'pg_duet_pipeline_rows_out_5m', %strict), '0', 'pipelines: acme_strict wrote nothing');
ok(value($m, 'pg_duet_pipeline_last_run_age_seconds', %strict) >= 0, 'pipelines: its failed run has an age');
is(value($m, 'pg_duet_pipeline_last_success_age_seconds', %strict), 'NaN', 'pipelines: it never succeeded');

# ---- duet.health: the same figures, for the viewer's tenant ------------------------------------

my $health = $node->safe_psql('postgres', q{
SELECT duet_set_tenant('acme');
SELECT string_agg(DISTINCT coalesce(tenant, '-'), ',') FROM duet.health;
SELECT value FROM duet.health WHERE subsystem = 'rules' AND metric = 'evaluations' AND labels->>'severity' = 'critical';
SELECT value FROM duet.health WHERE subsystem = 'ask' AND metric = 'calls' AND labels->>'status' = 'ok';
SELECT count(*) FROM duet.health WHERE subsystem IN ('outbox', 'server', 'kafka');
SELECT value FROM duet.health WHERE subsystem = 'pipelines' AND metric = 'quarantined' AND labels->>'pipeline' = 'acme_p';
SELECT value FROM duet.health WHERE subsystem = 'pipelines' AND metric = 'in_error' AND labels->>'pipeline' = 'acme_strict';
}, connstr => $alice);
is($health, "acme\nacme\n2\n1\n0\n1\n1", 'duet.health as an acme member: acme\'s rows only, the exporter\'s figures');
$health = $node->safe_psql('postgres', q{
SELECT value FROM duet.health WHERE subsystem = 'rules' AND metric = 'errors' AND tenant = 'globex';
SELECT value FROM duet.health WHERE subsystem = 'kafka' AND metric = 'rows' AND labels->>'consumer' = 'kc';
SELECT value FROM duet.health WHERE subsystem = 'outbox' AND metric = 'pending';
}, connstr => $node->connstr('postgres') . ' user=prom');
is($health, "1\n10\n2", 'duet.health as the monitor: every tenant, Kafka and the outbox');
# Each metric of the queries file is a row of duet.health (name without prefix and _total).
my %prefix = (pg_duet_rules_ => 'rules', pg_duet_ask_ => 'ask', pg_duet_kafka_consumer_ => 'kafka',
	pg_duet_outbox_ => 'outbox', pg_duet_server_ => 'server', pg_duet_workers_ => 'workers',
	pg_duet_pipeline_ => 'pipelines');
my %rows = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	q{SELECT DISTINCT subsystem || '.' || metric FROM duet.health}, connstr => $node->connstr('postgres') . ' user=prom');
my @missing;
for my $name (sort keys %$yaml)
{
	my ($p) = grep { index($name, $_) == 0 } keys %prefix;
	(my $short = substr($name, length $p)) =~ s/_total$//;
	push @missing, $name unless $rows{"$prefix{$p}.$short"};
}
is("@missing", '', 'every Prometheus metric is also a row of duet.health');

# ---- the exporter stops --------------------------------------------------------------------------

$exporter->signal('TERM');
ok(eval { $exporter->finish; 1 } || !$exporter->pumpable, 'the exporter stopped');
undef $exporter;
ok(!scrape(), 'nothing listens on the exporter port any more');

done_testing();

# Alerts reach people through Debian's real Alertmanager (prometheus-alertmanager 0.25): an HA
# pair started here on loopback with its own config and storage, and a webhook receiver
# (test/alert_webhook.py). A rule fires -> both Alertmanagers' API show it with the rendered labels
# and annotations (templates with Duet formulas, the tenant's routing labels from the Config
# Service) -> the receiver gets the grouped notification; a silence suppresses another alert;
# the resolve message reaches the receiver; an Alertmanager stopped mid-way shows in
# duet.alertmanager_status, the deliveries and duet_doctor(), and gets every alert once it is back.
# Tenants see only their own alerts, deliveries and routing labels.
use strict;
use warnings;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $am_bin = '/usr/bin/prometheus-alertmanager';
die "$am_bin is not installed: run test/install-deps.sh" unless -x $am_bin;

my $root = $ENV{DUET_ROOT} // '.';
my $dir = PostgreSQL::Test::Utils::tempdir();
my $http = HTTP::Tiny->new(timeout => 5);
my $json = JSON::PP->new->canonical;

sub wait_until
{
	my ($cond, $timeout) = @_;
	my $deadline = time() + ($timeout // 90);
	while (time() < $deadline)
	{
		my $r = $cond->();
		return $r if $r;
		usleep(200_000);
	}
	return 0;
}

# The webhook receiver: one JSON line per notification.
my ($hook_port_file, $hook_log) = ("$dir/hook.port", "$dir/hook.jsonl");
my $hook = IPC::Run::start([ 'python3', "$root/test/alert_webhook.py", '--port-file', $hook_port_file,
	'--log', $hook_log ]);
my %am;
END
{
	local $?;
	$_->{h}->kill_kill for grep { $_->{h} } values %am;
	$hook->kill_kill if $hook;
}
wait_until(sub { -s $hook_port_file }, 30);
my $hook_port = slurp_file($hook_port_file);
ok($hook_port =~ /^\d+$/, "webhook receiver on 127.0.0.1:$hook_port");

open my $cfg, '>', "$dir/alertmanager.yml" or die;
print $cfg <<"EOF";
route:
  receiver: hook
  group_by: ['alertname', 'tenant']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:$hook_port/
        send_resolved: true
EOF
close $cfg;

sub am_start
{
	my ($name) = @_;
	my $a = $am{$name} //= { port => PostgreSQL::Test::Cluster::get_free_port() };
	mkdir "$dir/$name";
	$a->{h} = IPC::Run::start(
		[ $am_bin, "--config.file=$dir/alertmanager.yml", "--storage.path=$dir/$name",
		  "--web.listen-address=127.0.0.1:$a->{port}", '--cluster.listen-address=' ],
		'>', "$dir/$name.log", '2>&1');
	ok(wait_until(sub { $http->get("http://127.0.0.1:$a->{port}/-/ready")->{success} }, 60),
		"Alertmanager $name ready on 127.0.0.1:$a->{port}");
}

sub am_stop
{
	my ($name) = @_;
	$am{$name}{h}->signal('TERM');
	$am{$name}{h}->finish;
	$am{$name}{h} = undef;
}

# Alertmanager's own view of the alerts (GET /api/v2/alerts), by alertname.
sub am_alerts
{
	my ($name, $query) = @_;
	my $r = $http->get("http://127.0.0.1:$am{$name}{port}/api/v2/alerts" . ($query // ''));
	return [] unless $r->{success};
	return decode_json($r->{content});
}

sub am_find
{
	my ($name, %labels) = @_;
	for my $a (@{ am_alerts($name, '?silenced=true&inhibited=true&active=true&unprocessed=true') })
	{
		return $a unless grep { ($a->{labels}{$_} // '') ne $labels{$_} } keys %labels;
	}
	return undef;
}

# Notifications the receiver got: [status, alert] pairs.
sub notified
{
	my @n;
	return \@n unless -f $hook_log;
	for my $line (split /\n/, slurp_file($hook_log))
	{
		my $doc = decode_json($line);
		push @n, map { [ $_->{status}, $_ ] } @{ $doc->{alerts} };
	}
	return \@n;
}

sub notified_with
{
	my ($status, %labels) = @_;
	for my $n (@{ notified() })
	{
		next unless $n->[0] eq $status;
		return $n->[1] unless grep { ($n->[1]{labels}{$_} // '') ne $labels{$_} } keys %labels;
	}
	return undef;
}

am_start('am1');
am_start('am2');

my $node = PostgreSQL::Test::Cluster->new('alertmanager');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'pg_duet'",
	"duet.databases = 'postgres'",
	"duet.rules_interval = 0",
	"duet.alertmanager_resend_interval = 2",
	"duet.alertmanager_timeout = 2000",
	"duet.alertmanager_urls = 'http://127.0.0.1:$am{am1}{port}/, http://127.0.0.1:$am{am2}{port}'",
	"max_worker_processes = 32") . "\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_duet;
CREATE ROLE acme_user LOGIN; CREATE ROLE globex_user LOGIN;
SELECT duet_tenant_create('acme'), duet_tenant_create('globex');
SELECT duet_tenant_add_member('acme', 'acme_user'), duet_tenant_add_member('globex', 'globex_user');
CREATE TABLE spend (tenant text NOT NULL, campaign_id int, spend float8, budget float8);
GRANT SELECT, INSERT, TRIGGER ON spend TO acme_user, globex_user;
-- Routing: a default for every tenant, and acme's own team.
SELECT duet_config_set_default('alertmanager.labels', '{"team": "everyone", "receiver": "hook"}');
});
$node->safe_psql('postgres', q{
SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

SELECT duet_config_set('alertmanager.labels', '{"team": "ads", "2bad name": "x"}');
SELECT duet_rule_create('over_budget', 'spend > budget', target => 'spend', labels => '{campaign_id}',
                        value => 'spend - budget', severity => 'critical',
                        message => 'campaign {campaign_id} overspent by {value}');
SELECT duet_rule_alter('over_budget', '{"annotations": {"description": "spend is {spend / budget * 100}% of budget",
                                                         "runbook_url": "https://runbooks.example/budget"},
                                        "resolve_message": "campaign {campaign_id} is back under budget ({spend})"}');
SELECT duet_rule_create('silenced_rule', 'spend > 1000', target => 'spend', labels => '{campaign_id}');
});

# Templates are checked like the message: an unknown column, a formula that does not compile.
my ($rc, $out, $err) = $node->psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	SELECT duet_rule_alter('over_budget', '{"annotations": {"summary": "{nope}"}}')});
like($err, qr/rule message refers to unknown column "nope"/, 'an annotation naming an unknown column is refused');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	SELECT duet_rule_alter('over_budget', '{"annotations": {"bad-name": "x"}}')});
like($err, qr/invalid annotation name "bad-name"/, 'an annotation name Alertmanager would refuse is refused');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	SELECT duet_rule_alter('over_budget', '{"resolve_message": "{spend +}"}')});
like($err, qr/invalid rule message placeholder/, 'a resolve message with a broken formula is refused');

# duet_rule_test shows the rendered annotations and resolve message.
my $t = decode_json($node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	SELECT duet_rule_test('over_budget', '{"campaign_id": 7, "spend": 150, "budget": 100}')}));
is($t->{annotations}{description}, 'spend is 150% of budget', 'duet_rule_test: a formula placeholder, Duet number text');
$t = decode_json($node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	SELECT duet_rule_test('over_budget', '{"campaign_id": 7, "spend": 50, "budget": 100}')}));
is($t->{resolve_message}, 'campaign 7 is back under budget (50)', 'duet_rule_test: the resolve message of a row that does not fire');

# 1. A rule fires: both Alertmanagers show it, the receiver gets it.
$node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	INSERT INTO spend VALUES ('acme', 1, 150, 100)});
for my $name ('am1', 'am2')
{
	my $a = wait_until(sub { am_find($name, alertname => 'over_budget', campaign_id => '1') });
	ok($a, "$name shows the firing alert");
	is_deeply([ map { $a->{labels}{$_} } qw(alertname tenant severity campaign_id team receiver _2bad_name) ],
		[ 'over_budget', 'acme', 'critical', '1', 'ads', undef, 'x' ],
		"$name: labels are the rule's, alertname/tenant/severity and the tenant's routing labels (its override replaces the default; names made valid)");
	is($a->{annotations}{summary}, 'campaign 1 overspent by 50', "$name: summary is the rendered message");
	is($a->{annotations}{description}, 'spend is 150% of budget', "$name: description rendered with a formula");
	is($a->{annotations}{runbook_url}, 'https://runbooks.example/budget', "$name: runbook_url");
	like($a->{generatorURL}, qr/duet_tenant=acme&duet_rule=over_budget/, "$name: generatorURL names the rule");
}
ok(wait_until(sub { notified_with('firing', alertname => 'over_budget', campaign_id => '1') }),
	'the webhook receiver got the grouped firing notification');
my $active = $node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	SELECT alertmanager_labels ->> 'team', annotations ->> 'runbook_url', jsonb_array_length(delivery),
	       (SELECT bool_and((d ->> 'delivered')::boolean) FROM jsonb_array_elements(delivery) d)
	  FROM duet.alerts_active WHERE rule = 'over_budget'});
ok(wait_until(sub {
	$active = $node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

		SELECT alertmanager_labels ->> 'team', annotations ->> 'runbook_url', jsonb_array_length(delivery),
		       (SELECT bool_and((d ->> 'delivered')::boolean) FROM jsonb_array_elements(delivery) d)
		  FROM duet.alerts_active WHERE rule = 'over_budget'});
	$active eq 'ads|https://runbooks.example/budget|2|t' }),
	"duet.alerts_active shows labels, annotations and delivery to both Alertmanagers ($active)");

# 2. A silence made in Alertmanager suppresses an alert; another one still gets through.
for my $name ('am1', 'am2')    # not clustered here: each Alertmanager gets the silence
{
	my $silence = $http->post("http://127.0.0.1:$am{$name}{port}/api/v2/silences", {
		headers => { 'Content-Type' => 'application/json' },
		content => encode_json({
			matchers => [ { name => 'alertname', value => 'silenced_rule', isRegex => JSON::PP::false } ],
			startsAt => '2000-01-01T00:00:00Z', endsAt => '2100-01-01T00:00:00Z',
			createdBy => 'test', comment => 'maintenance' }) });
	ok($silence->{success}, "a silence created through $name\'s API");
}
$node->safe_psql('postgres', q{SET ROLE globex_user; SELECT duet_set_tenant('globex') \gset

	SELECT duet_rule_create('globex_budget', 'spend > budget', target => 'spend', labels => '{campaign_id}');});
$node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	INSERT INTO spend VALUES ('acme', 2, 5000, 100)});
$node->safe_psql('postgres', q{SET ROLE globex_user; SELECT duet_set_tenant('globex') \gset

	INSERT INTO spend VALUES ('globex', 9, 300, 100)});
for my $name ('am1', 'am2')
{
	ok(wait_until(sub {
		my $a = am_find($name, alertname => 'silenced_rule', campaign_id => '2');
		$a && $a->{status}{state} eq 'suppressed' }), "$name has the silenced alert, suppressed");
}
# Both Alertmanagers notify (they are not clustered): wait for both notifications of the alert
# that came after the silenced one; by then the silenced one was due too, and did not come.
ok(wait_until(sub { (grep { $_->[0] eq 'firing' && $_->[1]{labels}{alertname} eq 'globex_budget' } @{ notified() }) >= 2 }),
	'the other tenant\'s alert, not silenced, reaches the receiver from both Alertmanagers');
ok(!(grep { $_->[1]{labels}{alertname} eq 'silenced_rule' } @{ notified() }), 'the silenced alert never reached the receiver');
my $g = am_find('am1', alertname => 'globex_budget');
is_deeply([ $g->{labels}{tenant}, $g->{labels}{team} ], [ 'globex', 'everyone' ],
	'globex\'s alert carries its own routing labels (the default), not acme\'s');

# 3. Resolve: the resolve message reaches the receiver.
$node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	INSERT INTO spend VALUES ('acme', 1, 20, 100)});
my $r = wait_until(sub { notified_with('resolved', alertname => 'over_budget', campaign_id => '1') });
ok($r, 'the receiver got the resolved notification (send_resolved)');
is($r && $r->{annotations}{summary}, 'campaign 1 is back under budget (20)', 'with the resolve message as summary');
is($node->safe_psql('postgres', q{SELECT message FROM duet.alert_history WHERE rule = 'over_budget' AND to_state = 'resolved'}),
	'campaign 1 is back under budget (20)', 'the history keeps the resolve message');

# 4. An Alertmanager stops: loud in the status, the deliveries and duet_doctor(); nothing lost.
am_stop('am1');
$node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	INSERT INTO spend VALUES ('acme', 3, 400, 100)});
ok(wait_until(sub { am_find('am2', alertname => 'over_budget', campaign_id => '3') }),
	'am2 gets the new alert while am1 is down');
ok(wait_until(sub {
	$node->safe_psql('postgres', qq{SELECT consecutive_failures > 0 AND last_error LIKE 'could not reach Alertmanager%'
		FROM duet.alertmanager_status WHERE alertmanager = 'http://127.0.0.1:$am{am1}{port}'}) eq 't' }),
	'duet.alertmanager_status says am1 is unreachable');
# (am1 is in backoff: its first attempt with the new alert may come after the status said so)
my $undelivered = '';
wait_until(sub {
	$undelivered = $node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset
	SELECT d ->> 'last_error' FROM duet.alerts_active a, jsonb_array_elements(a.delivery) d
	 WHERE a.labels ->> 'campaign_id' = '3' AND NOT (d ->> 'delivered')::boolean});
	$undelivered =~ /could not reach Alertmanager/ });
like($undelivered, qr/could not reach Alertmanager/, 'the tenant sees its alert is not delivered to am1, and why');
my $doctor = $node->safe_psql('postgres', q{SELECT status || ': ' || detail || ' / ' || hint FROM duet_doctor() WHERE check_name = 'alertmanager'});
like($doctor, qr/^error: .*127\.0\.0\.1:$am{am1}{port}.*unreachable.*\/ .*duet\.alertmanager_urls/s,
	"duet_doctor() reports the unreachable Alertmanager with a hint ($doctor)");

am_start('am1');    # same port, empty storage for alerts: it knows nothing
ok(wait_until(sub { am_find('am1', alertname => 'over_budget', campaign_id => '3') }),
	'am1, back, gets the alert that fired while it was down');
ok(wait_until(sub { am_find('am1', alertname => 'silenced_rule', campaign_id => '2') }),
	'am1, back, gets the alerts that were firing before (resent)');
ok(wait_until(sub {
	$node->safe_psql('postgres', qq{SELECT consecutive_failures FROM duet.alertmanager_status
		WHERE alertmanager = 'http://127.0.0.1:$am{am1}{port}'}) eq '0' }), 'am1 is healthy again in the status');

# 5. A PostgreSQL restart loses nothing: an alert fired, not yet accepted (am2 down), is sent after.
am_stop('am2');
$node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset

	INSERT INTO spend VALUES ('acme', 4, 400, 100)});
$node->restart;
am_start('am2');
ok(wait_until(sub { am_find('am2', alertname => 'over_budget', campaign_id => '4') }),
	'after a PostgreSQL restart, the alert is delivered to the Alertmanager that was down');

# 5b. A query rule evaluated as of a later time (duet_rules_evaluate(at)) starts in the future:
# Alertmanager still takes it (endsAt after startsAt), and the batch with it is accepted.
$node->safe_psql('postgres', q{SET ROLE acme_user; SELECT duet_set_tenant('acme') \gset
	SELECT duet_rule_create('future_rule', 'n > 0', query => 'SELECT count(*) AS n FROM spend')});
$node->safe_psql('postgres', q{SELECT duet_rules_evaluate(now() + interval '2 hours')});
ok(wait_until(sub { am_find('am1', alertname => 'future_rule') && am_find('am2', alertname => 'future_rule') }),
	'an alert evaluated as of a later time reaches both Alertmanagers');
ok(wait_until(sub {
	$node->safe_psql('postgres', q{SELECT bool_and(consecutive_failures = 0) FROM duet.alertmanager_status WHERE configured}) eq 't' }),
	'and no Alertmanager refused it');

# 6. Tenants: each sees only its own alerts and deliveries; the admin tables stay closed.
is($node->safe_psql('postgres', q{SET ROLE globex_user; SELECT duet_set_tenant('globex') \gset

	SELECT string_agg(DISTINCT tenant, ',') FROM duet.alertmanager_deliveries}), 'globex',
	'a tenant reads only its own delivery rows');
is($node->safe_psql('postgres', q{SET ROLE globex_user; SELECT duet_set_tenant('globex') \gset

	SELECT string_agg(DISTINCT rule, ',') FROM duet.alerts_active}), 'globex_budget',
	'a tenant sees only its own active alerts');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE globex_user; SELECT * FROM duet.alertmanager_status});
like($err, qr/permission denied/, 'a tenant cannot read duet.alertmanager_status (URLs, answers naming any tenant\'s alerts)');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE globex_user; SHOW duet.alertmanager_urls});
like($err, qr/must be superuser|permission denied|privileges of pg_read_all_settings/,
	'duet.alertmanager_urls is hidden from non-superusers');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE globex_user; SET duet.alertmanager_urls = 'http://evil:1'});
like($err, qr/cannot be changed now|permission denied/, 'and cannot be set by them');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE globex_user;
	SELECT duet.duet_alertmanager_record('x', '{1}', '{99}', NULL, NULL, NULL, false)});
like($err, qr/permission denied/, 'a tenant cannot mark deliveries');

# 7. Misconfiguration is refused when set.
($rc, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET duet.alertmanager_urls = 'am1:9093'});
like($err, qr/invalid value for parameter "duet.alertmanager_urls"/, 'a URL without http:// is refused');

$node->stop;
am_stop($_) for grep { $am{$_}{h} } keys %am;
done_testing();

# duet_ask audit that survives (shared-memory queue + audit worker) and per-tenant limits:
# rows of asks that were rolled back, rejected, failed, cancelled, over budget or whose session was
# terminated; limits refused with limit/used/reset; 8 sessions of one tenant never exceed a limit by
# more than one request; the durable usage survives a restart.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);

my $root = $ENV{DUET_ROOT} or die "DUET_ROOT not set";
my $dir = PostgreSQL::Test::Utils::tempdir();
my ($port_file, $fixtures, $reqlog) = ("$dir/mock.port", "$dir/fixtures.json", "$dir/requests.jsonl");

sub write_fixtures {
    my ($fx) = @_;
    open my $f, '>', "$fixtures.tmp" or die $!;
    print $f encode_json($fx);
    close $f;
    rename "$fixtures.tmp", $fixtures or die $!;
    sleep 0.02;
}

sub nrequests {
    open my $f, '<', $reqlog or return 0;
    my $n = grep { /\S/ } <$f>;
    close $f;
    return $n;
}

write_fixtures({ default => 'SELECT 1' });
my $mock = IPC::Run::start(['python3', "$root/test/mock_llm.py", '--port-file', $port_file,
    '--fixtures', $fixtures, '--log', $reqlog]);
END { local $?; $mock->kill_kill if $mock }
for (1 .. 100) { last if -s $port_file; sleep 0.1 }
my $port = slurp_file($port_file);

my $node = PostgreSQL::Test::Cluster->new('audit');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'\nmax_worker_processes = 32\nduet.ask_max_retry_wait = 200");
$node->start;
$node->safe_psql('postgres', qq{
    CREATE EXTENSION pg_duet;
    CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN;
    SELECT duet_tenant_create('acme'), duet_tenant_create('globex'), duet_tenant_create('initech');
    SELECT duet_tenant_add_member('acme', 'alice'), duet_tenant_add_member('globex', 'bob'), duet_tenant_add_member('initech', 'carol');
    CREATE TABLE campaigns (id int PRIMARY KEY, name text);
    GRANT SELECT ON campaigns TO alice, bob, carol;
    GRANT EXECUTE ON FUNCTION duet_ask(text, jsonb), duet_ask_run(text, int, jsonb) TO alice, bob, carol;
    INSERT INTO duet.llm_providers (name, kind, base_url, model, priority, timeout_ms, max_retries)
        VALUES ('p1', 'openai', 'http://127.0.0.1:$port/p1/v1', 'mock-gpt', 1, 60000, 0);
    INSERT INTO duet.llm_prices VALUES ('p1', 'mock-gpt', 1000, 2000);
});
my $alice = $node->connstr('postgres') . ' user=alice';
my $carol = $node->connstr('postgres') . ' user=carol';
my $bob = $node->connstr('postgres') . ' user=bob';
my $nc = q{'{"cache": false}'};
sub flush { $node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()') }
sub logq { my ($q) = @_; flush(); return $node->safe_psql('postgres', $q) }

# --- survives the caller's rollback ------------------------------------------------------------
write_fixtures({ answers => { 'q rollback' => ['SELECT id FROM campaigns'] } });
$node->safe_psql('postgres', "BEGIN; SELECT duet_ask('q rollback', $nc); ROLLBACK;", connstr => $alice);
is(logq("SELECT status || ' ' || tenant || ' ' || role || ' ' || sql || ' ' || provider || ' ' || model
         || ' ' || tokens_in || ' ' || tokens_out || ' ' || coalesce(target, 'pg') FROM duet.ask_log WHERE question = 'q rollback'"),
   'ok acme alice SELECT id FROM campaigns p1 mock-gpt 101 10 pg', 'a rolled-back ask is in the log with every field');
is(logq("SELECT cost FROM duet.ask_log WHERE question = 'q rollback'"), '0.121', 'cost from duet.llm_prices (101*1000 + 10*2000 per million)');
my $st = $node->safe_psql('postgres', 'SELECT worker_pid IS NOT NULL, rows_written >= 1 FROM duet_ask_audit_status()');
is($st, 't|t', 'an audit worker of this database wrote it');

# --- rejected, failed: the statement's ERROR does not lose them ---------------------------------
write_fixtures({ answers => { 'q evil' => ['DROP TABLE campaigns'] } });
my ($rc, $out, $err) = $node->psql('postgres', "SELECT duet_ask('q evil', '{\"cache\": false, \"max_corrections\": 0}')", connstr => $alice);
like($err, qr/did not produce an acceptable query/, 'guard refused');
is(logq("SELECT status FROM duet.ask_log WHERE question = 'q evil'"), 'rejected', 'rejected ask logged at once');
write_fixtures({ faults => { '/p1/v1' => ['400'] } });
($rc, $out, $err) = $node->psql('postgres', "SELECT duet_ask('q fail', $nc)", connstr => $alice);
like($err, qr/no language-model provider answered/, 'provider failed');
is(logq("SELECT status || ' ' || attempts || ' ' || (error LIKE '%HTTP 400%') FROM duet.ask_log WHERE question = 'q fail'"),
   'failed 1 true', 'failed ask logged with its attempts and error');

# --- cancelled (pg_cancel_backend) and session terminated during a slow answer -------------------
for my $case (['cancel', 'pg_cancel_backend'], ['terminate', 'pg_terminate_backend']) {
    my ($what, $fn) = @$case;
    write_fixtures({ faults => { '/p1/v1' => ['timeout'] } });
    my $n0 = nrequests();
    my ($in, $o, $e) = ('', '', '');
    my $h = IPC::Run::start(['psql', '-XAtq', '-d', $alice, '-c', "SELECT duet_ask('q $what', $nc)"],
        '<', \$in, '>', \$o, '2>', \$e);
    for (1 .. 600) { last if nrequests() > $n0; sleep 0.05 }
    ok(nrequests() > $n0, "$what: the request is in flight");
    $node->safe_psql('postgres', "SELECT $fn(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT duet_ask(''q $what''%' AND pid <> pg_backend_pid()");
    $h->finish;
    is(logq("SELECT status || ' ' || attempts FROM duet.ask_log WHERE question = 'q $what'"), 'cancelled 1',
       "$what: logged as cancelled");
}

# --- limits: typed keys, clear refusal ----------------------------------------------------------
($rc, $out, $err) = $node->psql('postgres', q{SELECT duet_config_set_default('ask.limit.requests_per_minute', '"ten"')});
like($err, qr/ask\.limit\.requests_per_minute/, 'a limit of the wrong type is refused by the Config Service');
write_fixtures({ default => 'SELECT 1' });
$node->safe_psql('postgres', q{SELECT duet_config_set_default('ask.limit.requests_per_minute', '1000');
    SELECT duet_set_tenant('globex'); SELECT duet_config_set('ask.limit.requests_per_minute', '2')});
# bob: two requests, the third refused (unless the minute turned: then at most two per window).
my @errs;
for my $i (1 .. 6) {
    ($rc, $out, $err) = $node->psql('postgres', "SELECT duet_ask('q rpm $i', $nc)", connstr => $bob);
    push @errs, $err if $rc;
}
ok(@errs >= 2, 'the tenant override (2 per minute) refuses requests');
like($errs[0], qr/ERROR:  the language-model rate limit of tenant "globex" exhausted/, 'errmsg names the limit and tenant');
like($errs[0], qr/DETAIL:  Limit: 2 requests per minute; used: 2 requests; resets at \d{4}-\d\d-\d\d \d\d:\d\d:00/, 'errdetail: limit, used, reset');
like($errs[0], qr/HINT:  The limit is the config key "ask\.limit\.requests_per_minute"/, 'hint names the key');
($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT duet_ask('q rpm x', $nc)", connstr => $bob);
like($err, qr/ERROR:  53400/, 'SQLSTATE 53400 configuration_limit_exceeded');
is(logq("SELECT count(*) > 0 FROM duet.ask_log WHERE tenant = 'globex' AND status = 'over_budget'"), 't', 'over_budget asks are logged');
is($node->safe_psql('postgres', "SELECT name || ' ' || \"limit\" FROM duet_ask_budget()", connstr => $bob),
   'requests_per_minute 2', 'duet_ask_budget shows the live counters');

# --- 8 sessions of one tenant at once: tokens per day ---------------------------------------------
# Each answer costs 111 tokens (101 in, 10 out); the limit is 1000: at most one request beyond it.
$node->safe_psql('postgres', q{SELECT duet_set_tenant('acme');
    SELECT duet_config_set('ask.limit.tokens_per_day', '1000');
    SELECT duet_config_unset_default('ask.limit.requests_per_minute');});
my $today = q{SELECT coalesce(sum(tokens_in + tokens_out), 0) FROM duet.ask_usage WHERE tenant = 'acme' AND day = (now() AT TIME ZONE 'UTC')::date};
my $used0 = logq($today);
my $n0 = nrequests();
my @h;
for my $s (1 .. 8) {
    my $sql = join('', map { "SELECT duet_ask('q hammer $s $_', $nc);\n" } 1 .. 15);
    my ($i, $o, $e) = ('', '', '');
    push @h, [IPC::Run::start(['psql', '-XAtq', '-d', $alice, '-v', 'ON_ERROR_STOP=0', '-c', $sql], '<', \$i, '>', \$o, '2>', \$e), \$e];
}
$_->[0]->finish for @h;
my $sent = nrequests() - $n0;
my $refused = grep { ${ $_->[1] } =~ /daily token budget of tenant "acme" exhausted/ } @h;
is($refused, 8, 'every session was refused in the end');
my $tokens = $used0 + 111 * $sent;
cmp_ok($tokens, '<=', 1000 + 111, "8 sessions: $sent requests, $tokens tokens: the limit (1000) exceeded by at most one request");
cmp_ok($tokens, '>=', 1000, 'and the budget was used up');
is(logq($today), $tokens, 'duet.ask_usage has every token');
is($node->safe_psql('postgres', q{SELECT sum(tokens) FROM duet.llm_usage WHERE day = (now() AT TIME ZONE 'UTC')::date}, connstr => $alice),
   $tokens, 'duet.llm_usage shows them to the tenant');

# --- 8 sessions at once: requests per minute is exact ---------------------------------------------
$node->safe_psql('postgres', q{SELECT duet_set_tenant('initech');
    SELECT duet_config_set('ask.limit.requests_per_minute', '10');});
$n0 = nrequests();
my $t0 = time;
@h = ();
for my $s (1 .. 8) {
    my $sql = join('', map { "SELECT duet_ask('q rate $s $_', $nc);\n" } 1 .. 4);
    my ($i, $o, $e) = ('', '', '');
    push @h, [IPC::Run::start(['psql', '-XAtq', '-d', $carol, '-v', 'ON_ERROR_STOP=0', '-c', $sql], '<', \$i, '>', \$o, '2>', \$e), \$e];
}
$_->[0]->finish for @h;
$sent = nrequests() - $n0;
# The count is per UTC minute: a run that crosses a minute may use two windows.
my $windows = int(time / 60) - int($t0 / 60) + 1;
cmp_ok($sent, '<=', 10 * $windows, "8 sessions × 4 asks: $sent requests sent for a limit of 10 per minute");
cmp_ok($sent, '>=', 10, 'the limit was reached');

# --- durable: a restart starts from duet.ask_usage ------------------------------------------------
flush();
$node->restart;
($rc, $out, $err) = $node->psql('postgres', "SELECT duet_ask('q after restart', $nc)", connstr => $alice);
like($err, qr/daily token budget of tenant "acme" exhausted/, 'after a restart the day\'s tokens still count');
is($node->safe_psql('postgres', "SELECT used >= 1000 FROM duet_ask_budget() WHERE name = 'tokens_per_day'", connstr => $alice),
   't', 'loaded from duet.ask_usage');
is($node->safe_psql('postgres', 'SELECT count(*) FROM duet.llm_usage', connstr => $bob),
   '1', 'duet.llm_usage shows only the viewer\'s tenant');

done_testing();

# duet_ask against the mock LLM (test/mock_llm.py): both wire formats, fallback order, retries
# and Retry-After, errors that must not be retried, 200-with-error/malformed/empty bodies,
# self-correction, cancellation during a slow answer, the cache, the log, and keys never visible.
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
my $OPENAI_KEY = 'sk-test-openai-7f3a9c2e1d';
my $ANTHROPIC_KEY = 'sk-ant-test-5b8e0d4f6a';

sub write_fixtures {
    my ($fx) = @_;
    open my $f, '>', "$fixtures.tmp" or die $!;
    print $f encode_json($fx);
    close $f;
    rename "$fixtures.tmp", $fixtures or die $!;
    sleep 0.02;    # a new mtime for the mock's reload check
}

sub requests {     # every request the mock received so far, decoded
    open my $f, '<', $reqlog or return ();
    my @r = map { decode_json($_) } grep { /\S/ } <$f>;
    close $f;
    return @r;
}

sub since {        # requests after the first $n
    my ($n) = @_;
    my @all = requests();
    return @all[$n .. $#all];
}

write_fixtures({ default => 'SELECT 1' });
my $mock = IPC::Run::start(['python3', "$root/test/mock_llm.py", '--port-file', $port_file,
    '--fixtures', $fixtures, '--log', $reqlog]);
END { local $?; $mock->kill_kill if $mock }    # also when the test dies half-way; keeps the exit status
for (1 .. 100) { last if -s $port_file; sleep 0.1 }
my $port = slurp_file($port_file);
ok($port =~ /^\d+$/, "mock LLM listening on 127.0.0.1:$port");

my $node = PostgreSQL::Test::Cluster->new('ask');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'\nduet.ask_max_retry_wait = 1500");
{
    # A named environment variable of the server holds the Anthropic key.
    local $ENV{DUET_TEST_ANTHROPIC_KEY} = $ANTHROPIC_KEY;
    $node->start;
}
$node->safe_psql('postgres', qq{
    CREATE EXTENSION pg_duet;
    CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
    SELECT duet_tenant_create('acme'), duet_tenant_create('globex');
    SELECT duet_tenant_add_member('acme', 'alice'), duet_tenant_add_member('globex', 'bob');
    CREATE TABLE campaigns (id int PRIMARY KEY, tenant text NOT NULL, name text NOT NULL, budget numeric);
    COMMENT ON TABLE campaigns IS 'advertising campaigns';
    INSERT INTO campaigns VALUES (1, 'acme', 'acme-spring', 500), (2, 'acme', 'acme-brand', 900),
                                 (3, 'globex', 'globex-launch', 800);
    SELECT duet_tenant_protect('campaigns');
    CREATE TABLE ask_secret (payroll int);
    GRANT SELECT ON campaigns TO alice, bob;
    GRANT EXECUTE ON FUNCTION duet_ask(text, jsonb), duet_ask_run(text, int),
                              duet_ask_feedback(text, text) TO alice, bob;
    INSERT INTO duet.llm_providers (name, kind, base_url, model, priority, timeout_ms, max_retries)
        VALUES ('p1', 'openai', 'http://127.0.0.1:$port/p1/v1', 'mock-gpt', 1, 5000, 3);
    INSERT INTO duet.llm_provider_keys VALUES ('p1', '$OPENAI_KEY');
    INSERT INTO duet.llm_providers (name, kind, base_url, model, priority, timeout_ms, max_retries, api_key_env, headers)
        VALUES ('p2', 'anthropic', 'http://127.0.0.1:$port/p2/v1/', 'mock-claude', 2, 5000, 1,
                'DUET_TEST_ANTHROPIC_KEY', '{"x-team": "analytics"}');
});
my $log_from = -s $node->logfile;    # the setup above logged the key statement (log_statement)
my $alice = $node->connstr('postgres') . ' user=alice';
my $bob = $node->connstr('postgres') . ' user=bob';
my $nocache = q{'{"cache": false}'};

# --- OpenAI wire format -------------------------------------------------------------------
write_fixtures({ answers => { 'how many campaigns?' => ["```sql\nSELECT count(*) FROM public.campaigns;\n```"] } });
is($node->safe_psql('postgres', "SELECT duet_ask('how many campaigns?', $nocache)"),
   'SELECT count(*) FROM public.campaigns', 'openai answer, fences and semicolon stripped');
my @r = requests();
is($r[-1]{path}, '/p1/v1/chat/completions', 'openai path');
is($r[-1]{headers}{authorization}, "Bearer $OPENAI_KEY", 'Bearer key from the key store');
is($r[-1]{body}{model}, 'mock-gpt', 'model sent');
is($r[-1]{body}{messages}[0]{role}, 'system', 'system message first');
like($r[-1]{body}{messages}[0]{content}, qr/table public\.campaigns -- advertising campaigns/, 'schema with comments in the prompt');
like($r[-1]{body}{messages}[0]{content}, qr/PRIMARY KEY \(id\)/, 'keys in the prompt');
is($r[-1]{body}{messages}[1]{content}, 'how many campaigns?', 'question as the user message');

# --- fallback to the Anthropic wire format on 401 (no retry) ------------------------------
write_fixtures({ answers => { 'q fallback' => ['SELECT name FROM campaigns'] }, faults => { '/p1/v1' => ['401'] } });
my $n0 = () = requests();
is($node->safe_psql('postgres', "SELECT duet_ask('q fallback', $nocache)"), 'SELECT name FROM campaigns',
   'answer from the second provider');
@r = since($n0);
is(join(',', map { $_->{prefix} } @r), '/p1/v1,/p2/v1', '401: one request, then the next provider');
is($r[1]{path}, '/p2/v1/messages', 'anthropic path (trailing slash of base_url tolerated)');
is($r[1]{headers}{'x-api-key'}, $ANTHROPIC_KEY, 'x-api-key from the named environment variable');
is($r[1]{headers}{'anthropic-version'}, '2023-06-01', 'anthropic-version header');
is($r[1]{headers}{'x-team'}, 'analytics', 'extra headers sent');
ok(!exists $r[1]{headers}{authorization}, 'no Authorization header to anthropic');
like($r[1]{body}{system}, qr/campaigns/, 'anthropic: system prompt as a top-level field');
is($r[1]{body}{messages}[0]{role}, 'user', 'anthropic: messages start with the user');
ok($r[1]{body}{max_tokens} > 0, 'anthropic: max_tokens set');

# --- 400, 403, 404, 402 go to the next provider without retry ------------------------------
for my $code (400, 402, 403, 404) {
    write_fixtures({ faults => { '/p1/v1' => ["$code"] } });
    $n0 = () = requests();
    $node->safe_psql('postgres', "SELECT duet_ask('q $code', $nocache)");
    @r = since($n0);
    is(join(',', map { $_->{prefix} } @r), '/p1/v1,/p2/v1', "$code: no retry, next provider");
}

# --- retries: Retry-After, retry-after-ms, 5xx, 529, 408, 409 -----------------------------
write_fixtures({ faults => { '/p1/v1' => ['429:1', '500', '529'] } });
$n0 = () = requests();
$node->safe_psql('postgres', "SELECT duet_ask('q retry', $nocache)");
@r = since($n0);
is(join(',', map { $_->{prefix} } @r), '/p1/v1,/p1/v1,/p1/v1,/p1/v1', '429, 500, 529 retried on the same provider');
cmp_ok($r[1]{t} - $r[0]{t}, '>=', 0.95, 'Retry-After: 1 honoured');
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');    # the audit worker committed
is($node->safe_psql('postgres', "SELECT attempts FROM duet.ask_log WHERE question = 'q retry'"), '4', 'log counts HTTP attempts');

write_fixtures({ faults => { '/p1/v1' => ['429ms:400', '408', '409'] } });
$n0 = () = requests();
$node->safe_psql('postgres', "SELECT duet_ask('q retry ms', $nocache)");
@r = since($n0);
is(scalar(@r), 4, '408 and 409 retried too');
cmp_ok($r[1]{t} - $r[0]{t}, '>=', 0.38, 'retry-after-ms honoured');

write_fixtures({ faults => { '/p1/v1' => ['429:3600'] } });
$n0 = () = requests();
$node->safe_psql('postgres', "SELECT duet_ask('q capped', $nocache)");
@r = since($n0);
cmp_ok($r[1]{t} - $r[0]{t}, '<', 10, 'Retry-After capped by duet.ask_max_retry_wait');

write_fixtures({ faults => { '/p1/v1' => ['error200', 'malformed', 'empty'] } });
$n0 = () = requests();
is($node->safe_psql('postgres', "SELECT duet_ask('q bodies', $nocache)"), 'SELECT 1', 'recovered after bad 200 bodies');
@r = since($n0);
is(scalar(@r), 4, '200 with an error object, malformed JSON and empty choices are provider errors, retried');

write_fixtures({ faults => { '/p1/v1' => ['500', '500', '500', '500'], '/p2/v1' => ['529', 'error200'] } });
my ($rc, $out, $err) = $node->psql('postgres', "SELECT duet_ask('q down', $nocache)");
like($err, qr/no language-model provider answered/, 'every provider failing is a clear error');
like($err, qr/provider "p2": provider returned an error: injected error200/, '... naming the last provider error');

# --- keys never visible --------------------------------------------------------------------
write_fixtures({ faults => { '/p1/v1' => ['echo_key', 'echo_key', 'echo_key', 'echo_key'], '/p2/v1' => ['echo_key', 'echo_key'] } });
($rc, $out, $err) = $node->psql('postgres', "SELECT duet_ask('q echo', $nocache)", connstr => $alice);
like($err, qr/withheld: it contained the provider's API key/, 'an error text echoing the key is withheld whole');
unlike($err, qr/\Q$OPENAI_KEY\E|\Q$ANTHROPIC_KEY\E/, 'no key in the error');
for my $q ('SELECT * FROM duet.llm_providers', 'SELECT * FROM duet.llm_provider_keys',
           'SELECT * FROM duet.ask_cache',
           "UPDATE duet.llm_providers SET base_url = 'http://127.0.0.1:1/evil'") {
    ($rc, $out, $err) = $node->psql('postgres', $q, connstr => $alice);
    like($err, qr/permission denied/, "non-superuser: $q refused");
}
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_settings WHERE setting LIKE '%sk-%'", connstr => $alice),
   '0', 'no key in pg_settings');
# Even a granted UPDATE cannot redirect a keyed provider.
$node->safe_psql('postgres', 'GRANT SELECT, UPDATE, INSERT ON duet.llm_providers TO alice');
($rc, $out, $err) = $node->psql('postgres', "UPDATE duet.llm_providers SET base_url = 'http://127.0.0.1:1/evil' WHERE name = 'p1'", connstr => $alice);
like($err, qr/only superusers may change a provider that has a key/, 'granted UPDATE cannot redirect a keyed provider');
($rc, $out, $err) = $node->psql('postgres', "INSERT INTO duet.llm_providers (name, kind, base_url, model, api_key_env) VALUES ('evil', 'openai', 'http://127.0.0.1:1', 'm', 'PGPASSWORD')", connstr => $alice);
like($err, qr/only superusers may change a provider that has a key/, 'granted INSERT cannot attach a key variable');
$node->safe_psql('postgres', 'REVOKE ALL ON duet.llm_providers FROM alice');

# --- self-correction ------------------------------------------------------------------------
write_fixtures({ answers => { 'q correct' => ['SELECT nope FROM campaigns', 'DELETE FROM campaigns', 'SELECT count(*) AS n FROM campaigns'] } });
$n0 = () = requests();
is($node->safe_psql('postgres', "SELECT duet_ask('q correct', $nocache)"), 'SELECT count(*) AS n FROM campaigns',
   'corrected after an unknown column and a DELETE');
@r = since($n0);
is(scalar(@r), 3, 'three rounds');
like($r[1]{body}{messages}[3]{content}, qr/column "nope" does not exist/, 'analysis error sent back to the model');
is($r[1]{body}{messages}[2]{content}, 'SELECT nope FROM campaigns', 'with its wrong answer as the assistant turn');
like($r[2]{body}{messages}[5]{content}, qr/only SELECT may run, found DELETE/, 'guard refusal sent back');
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');    # the audit worker committed
is($node->safe_psql('postgres', "SELECT corrections || ' ' || status FROM duet.ask_log WHERE question = 'q correct'"), '2 ok', 'log: corrections');

write_fixtures({ answers => { 'q evil' => ['DELETE FROM campaigns', 'SELECT pg_read_file($$/etc/passwd$$)'] } });
($rc, $out, $err) = $node->psql('postgres', q{SELECT duet_ask('q evil', '{"cache": false, "max_corrections": 1}')});
like($err, qr/the model did not produce an acceptable query/, 'refused after max_corrections');
like($err, qr/pg_read_file/, '... with the last reason');
is($node->safe_psql('postgres', 'SELECT count(*) FROM campaigns'), '3', 'nothing was deleted');
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');
is($node->safe_psql('postgres', "SELECT status || ': ' || left(error, 30) FROM duet.ask_log WHERE question = 'q evil'"),
   'rejected: function pg_catalog.pg_read_fi', 'a refused ask is logged with its last reason though its statement failed (audit worker)');

# --- tenant isolation through duet_ask_run ---------------------------------------------------
write_fixtures({ answers => { 'list campaigns' => ['SELECT name FROM campaigns ORDER BY name'],
                              'globex campaigns' => ["SELECT name FROM campaigns WHERE tenant = 'globex'"] } });
is($node->safe_psql('postgres', "SELECT string_agg(r->>'name', ',') FROM duet_ask_run('list campaigns') r", connstr => $alice),
   'acme-brand,acme-spring', 'alice (acme) sees acme rows only');
is($node->safe_psql('postgres', "SELECT string_agg(r->>'name', ',') FROM duet_ask_run('list campaigns') r", connstr => $bob),
   'globex-launch', 'bob (globex) sees globex rows only, same question');
is($node->safe_psql('postgres', "SELECT count(*) FROM duet_ask_run('globex campaigns') r", connstr => $alice),
   '0', "asking for another tenant's rows returns none");
is($node->safe_psql('postgres', "SELECT count(*) FROM duet_ask_run('list campaigns', 1)", connstr => $alice),
   '1', 'row cap');
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');    # the audit worker committed
is($node->safe_psql('postgres', "SELECT count(*) FROM duet.ask_log", connstr => $bob),
   '1', "bob's log shows his tenant's asks only");

# --- context: privileges, examples ----------------------------------------------------------
$n0 = () = requests();
$node->safe_psql('postgres', "SELECT duet_ask('payroll?', $nocache)", connstr => $alice);
$node->safe_psql('postgres', "SELECT duet_ask('payroll?', $nocache)");
@r = since($n0);
unlike($r[0]{body}{messages}[0]{content}, qr/ask_secret/, 'a table alice may not read is not described to the model');
like($r[1]{body}{messages}[0]{content}, qr/ask_secret/, '... but is for a role that may');

$node->safe_psql('postgres', "SELECT duet_ask_feedback('total budget', 'SELECT sum(budget) FROM campaigns')", connstr => $alice);
($rc, $out, $err) = $node->psql('postgres', "SELECT duet_ask_feedback('wipe', 'DELETE FROM campaigns')", connstr => $alice);
like($err, qr/example SQL is not acceptable/, 'feedback SQL passes the guard');
$n0 = () = requests();
$node->safe_psql('postgres', "SELECT duet_ask('total budget per campaign', $nocache)", connstr => $alice);
$node->safe_psql('postgres', "SELECT duet_ask('total budget per campaign', $nocache)", connstr => $bob);
@r = since($n0);
like($r[0]{body}{messages}[0]{content}, qr/Question: total budget\nSQL: SELECT sum\(budget\) FROM campaigns/, 'tenant example in the prompt');
unlike($r[1]{body}{messages}[0]{content}, qr/total budget/, "another tenant's examples are not");

# --- a large schema: the tables sharing words with the question are the ones described ----------
$node->safe_psql('postgres', q{
    DO $$ BEGIN FOR i IN 1..60 LOOP EXECUTE format('CREATE TABLE filler_%s (id int, note text)', i); END LOOP; END $$;
    CREATE TABLE impressions_by_country (country text, impressions bigint);
});
$n0 = () = requests();
$node->safe_psql('postgres', "SET duet.ask_max_context_tables = 5; SELECT duet_ask('impressions per country', $nocache)");
@r = since($n0);
my $sys = $r[0]{body}{messages}[0]{content};
like($sys, qr/\(5 of \d+ tables shown\)/, 'prompt capped at duet.ask_max_context_tables');
like($sys, qr/table public\.impressions_by_country/, 'the relevant table is among them');
unlike($sys, qr/filler_17\b/, 'unrelated tables are left out');
$node->safe_psql('postgres', q{DO $$ BEGIN FOR i IN 1..60 LOOP EXECUTE format('DROP TABLE filler_%s', i); END LOOP; END $$;
                               DROP TABLE impressions_by_country});

# --- retention --------------------------------------------------------------------------------
$node->safe_psql('postgres', q{
    INSERT INTO duet.ask_log (at, role, question, attempts, corrections, tokens_in, tokens_out, latency_ms, status)
         VALUES (now() - interval '400 days', 'alice', 'ancient question', 1, 0, 0, 0, 1, 'ok');
    SELECT duet_ask_prune();
});
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');    # the audit worker committed
is($node->safe_psql('postgres', "SELECT count(*) FROM duet.ask_log WHERE question = 'ancient question'"), '0',
   'rows past duet.ask_log_retention_days are pruned');
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');    # the audit worker committed
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM duet.ask_log'), '>', 10, 'recent rows stay');

# --- cache ----------------------------------------------------------------------------------
write_fixtures({ answers => { 'cached q' => ['SELECT id FROM campaigns'] } });
$n0 = () = requests();
$node->safe_psql('postgres', "SELECT duet_ask('cached q')", connstr => $alice);
$node->safe_psql('postgres', "SELECT duet_ask('cached q')", connstr => $alice);
is(scalar(() = requests()) - $n0, 1, 'second identical ask served from the cache');
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');    # the audit worker committed
is($node->safe_psql('postgres', "SELECT string_agg(status, ',' ORDER BY id) FROM duet.ask_log WHERE question = 'cached q'"),
   'ok,cached', 'log shows ok then cached');
$node->safe_psql('postgres', "SELECT duet_ask('cached q')", connstr => $bob);
is(scalar(() = requests()) - $n0, 2, 'another tenant does not share the cache entry');
$node->safe_psql('postgres', 'ALTER TABLE campaigns ADD COLUMN clicks int');
$node->safe_psql('postgres', "SELECT duet_ask('cached q')", connstr => $alice);
is(scalar(() = requests()) - $n0, 3, 'a schema change (new fingerprint) misses the cache');
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');    # the audit worker committed
is($node->safe_psql('postgres', "SELECT cache_hits >= 1 FROM duet.ask_stats WHERE model = 'mock-gpt'", connstr => $alice),
   't', 'duet.ask_stats counts cache hits');

# --- cancellation during a slow answer --------------------------------------------------------
$node->safe_psql('postgres', "UPDATE duet.llm_providers SET timeout_ms = 60000, max_retries = 0");
write_fixtures({ faults => { '/p1/v1' => ['slow'] } });
my ($slow_out, $slow_err) = ('', '');
my $h = IPC::Run::start([ 'psql', '-X', '-d', $node->connstr('postgres'), '-c',
    "SET application_name = 'ask_slow'; SELECT duet_ask('q slow', '{\"cache\": false}')" ],
    '>', \$slow_out, '2>', \$slow_err);
for (1 .. 100) { last if grep { $_->{question} eq 'q slow' } requests(); sleep 0.1 }
my $t0 = time;
$node->safe_psql('postgres', "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'ask_slow'");
$h->finish;
cmp_ok(time - $t0, '<', 20, 'pg_cancel_backend ends the wait (the mock would hold it for 60 s)');
like($slow_err, qr/canceling statement due to user request/, '... with the usual cancel error');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ask_slow'"), '0',
   'the backend finished');

write_fixtures({ faults => { '/p1/v1' => ['timeout'] } });
$t0 = time;
($rc, $out, $err) = $node->psql('postgres', "SET statement_timeout = '1s'; SELECT duet_ask('q timeout', $nocache)");
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout ends the wait');
cmp_ok(time - $t0, '<', 20, '... promptly');
$node->safe_psql('postgres', "UPDATE duet.llm_providers SET timeout_ms = 5000, max_retries = 1");

# duet_ask_run's own time limit
write_fixtures({ answers => { 'slow query' => ['SELECT count(*) FROM generate_series(1, 100000000)'] } });
($rc, $out, $err) = $node->psql('postgres', "SET duet.ask_run_timeout = '200ms'; SELECT * FROM duet_ask_run('slow query')");
like($err, qr/canceling statement due to statement timeout/, 'duet.ask_run_timeout bounds the generated query');

# --- the server log never carries a key ---------------------------------------------------
my $log = substr(slurp_file($node->logfile), $log_from);
unlike($log, qr/\Q$OPENAI_KEY\E|\Q$ANTHROPIC_KEY\E/, 'no key in the server log');

$node->stop;
done_testing();

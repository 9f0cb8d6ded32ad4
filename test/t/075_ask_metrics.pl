# duet_ask knows the metrics (issue 13): the prompt lists the metrics the caller may use — the
# global ones and its tenant's, never another tenant's — with parameters, types, unit and
# description and how to compute one; the guard lets such a computation run; a metric change
# changes the context fingerprint, so a cached answer made for the old definitions is not reused.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);

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

sub requests {
    open my $f, '<', $reqlog or return ();
    my @r = map { decode_json($_) } grep { /\S/ } <$f>;
    close $f;
    return @r;
}

my $answer = "SELECT c.name, duet_calc_number_args('roas(a, b)', c.revenue, c.spend) AS roas FROM public.campaigns c";
write_fixtures({ default => $answer });
my $mock = IPC::Run::start(['python3', "$root/test/mock_llm.py", '--port-file', $port_file,
    '--fixtures', $fixtures, '--log', $reqlog]);
END { local $?; $mock->kill_kill if $mock }
for (1 .. 100) { last if -s $port_file; sleep 0.1 }
my $port = slurp_file($port_file);
ok($port =~ /^\d+$/, "mock LLM listening on 127.0.0.1:$port");

my $node = PostgreSQL::Test::Cluster->new('ask_metrics');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'");
$node->start;
$node->safe_psql('postgres', qq{
    CREATE EXTENSION pg_duet;
    CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
    SELECT duet_tenant_create('acme'), duet_tenant_create('globex');
    SELECT duet_tenant_add_member('acme', 'alice'), duet_tenant_add_member('globex', 'bob');
    CREATE TABLE campaigns (id int PRIMARY KEY, tenant text NOT NULL, name text, revenue float8, spend float8);
    INSERT INTO campaigns VALUES (1, 'acme', 'acme-spring', 900, 300), (2, 'globex', 'globex-launch', 10, 5);
    SELECT duet_tenant_protect('campaigns');
    GRANT SELECT ON campaigns TO alice, bob;
    GRANT EXECUTE ON FUNCTION duet_ask(text, jsonb), duet_ask_run(text, int) TO alice, bob;
    INSERT INTO duet.llm_providers (name, kind, base_url, model, priority, timeout_ms, max_retries)
        VALUES ('p1', 'openai', 'http://127.0.0.1:$port/p1/v1', 'mock-gpt', 1, 5000, 0);
    INSERT INTO duet.llm_provider_keys VALUES ('p1', 'sk-test-q7f3a9c2');
    SELECT duet_metric_define('roas', 'revenue / spend', 'return on ad spend', unit => 'ratio');
});
$node->safe_psql('postgres', q{SELECT duet_set_tenant('acme');
    SELECT duet_metric_set('acme_margin', 'revenue - spend', 'acme margin', unit => 'currency')},
    extra_params => [ '-U', 'alice' ]);
$node->safe_psql('postgres', q{SELECT duet_set_tenant('globex');
    SELECT duet_metric_set('globex_secret_metric', 'spend * 7', 'GLOBEX_ONLY')},
    extra_params => [ '-U', 'bob' ]);

sub ask_as_alice {
    my ($question) = @_;
    return $node->safe_psql('postgres', qq{SELECT duet_set_tenant('acme');
        SELECT duet_ask('$question')}, extra_params => [ '-U', 'alice' ]);
}

my $sql = ask_as_alice('what is the roas per campaign?');
is((split /\n/, $sql)[-1], $answer, 'the answer computing a metric passes the guard');
my @r = requests();
my $prompt = $r[-1]{body}{messages}[0]{content};
like($prompt, qr/metric roas\(revenue Nullable\(Float64\), spend Nullable\(Float64\)\) returns Nullable\(Float64\), unit ratio -- return on ad spend/,
     'a global metric with parameters, types, unit and description');
like($prompt, qr/metric acme_margin\(revenue Nullable\(Float64\), spend Nullable\(Float64\)\) returns Nullable\(Float64\), unit currency -- acme margin/,
     "the caller's tenant's metric");
unlike($prompt, qr/globex_secret_metric|GLOBEX_ONLY/, "no other tenant's metric");
like($prompt, qr/duet_calc_number_args\('name\(a, b\)'/, 'how to compute a metric in SQL');

like($node->safe_psql('postgres', q{SELECT duet_set_tenant('acme');
    SELECT string_agg(r::text, ',') FROM duet_ask_run('what is the roas per campaign?', 10) r},
    extra_params => [ '-U', 'alice' ]), qr/\{"name": "acme-spring", "roas": 3\}$/,
    "the answer runs, computing the metric on the tenant's rows");

# the same question again is answered from the cache; after a metric change it is asked again
my $n = () = requests();
ask_as_alice('what is the roas per campaign?');
is(scalar(() = requests()), $n, 'same question, same metrics: answered from the cache');
$node->safe_psql('postgres', q{SELECT duet_metric_define('roas', 'revenue / spend', 'ROAS: revenue per unit of spend', unit => 'ratio')});
ask_as_alice('what is the roas per campaign?');
is(scalar(() = requests()), $n + 1, 'a metric change changes the context: asked again');
like((requests())[-1]{body}{messages}[0]{content}, qr/ROAS: revenue per unit of spend/, 'the new description is in the prompt');

# A global metric also has an inlinable function in schema duet_metrics (issue 13 item 3): the
# prompt names it, and an answer calling it passes the guard and runs. A tenant's own metric has
# none (its result depends on the tenant).
like((requests())[-1]{body}{messages}[0]{content}, qr/or natively in SQL: duet_metrics\.roas\(revenue double precision, spend double precision\)/,
     'the prompt names the generated SQL function of a global metric');
unlike((requests())[-1]{body}{messages}[0]{content}, qr/duet_metrics\.acme_margin/, "a tenant's metric has no generated function");
my $native = "SELECT c.name, duet_metrics.roas(c.revenue, c.spend) AS roas FROM public.campaigns c";
write_fixtures({ default => $native });
is((split /\n/, ask_as_alice('roas per campaign, natively?'))[-1], $native, 'an answer calling the generated function passes the guard');
like($node->safe_psql('postgres', q{SELECT duet_set_tenant('acme');
    SELECT string_agg(r::text, ',') FROM duet_ask_run('roas per campaign, natively?', 10) r},
    extra_params => [ '-U', 'alice' ]), qr/\{"name": "acme-spring", "roas": 3\}$/,
    'and runs on the tenant\'s rows');

done_testing();

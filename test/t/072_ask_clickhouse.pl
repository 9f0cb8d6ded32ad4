# duet_ask with a ClickHouse target, against Debian's real clickhouse-server (18.16) on loopback,
# started here with its own config, data directory and free ports, and the mock LLM: schema over HTTP
# (cached per server, restricted to the tenant), the guard (tokenizer + DESCRIBE) over an adversarial
# corpus with nothing executed, rows as jsonb with types mapped, the row cap, self-correction from
# ClickHouse's error text, a password that is never shown. Prints the measured overheads.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my $server_bin = -x '/usr/bin/clickhouse-server' ? '/usr/bin/clickhouse-server' : '/usr/sbin/clickhouse-server';
my $client_bin = '/usr/bin/clickhouse-client';
plan skip_all => 'clickhouse-server is not installed' unless -x $server_bin && -x $client_bin;

my $root = $ENV{DUET_ROOT} or die "DUET_ROOT not set";
my $dir = PostgreSQL::Test::Utils::tempdir();
my ($port_file, $fixtures, $reqlog) = ("$dir/mock.port", "$dir/fixtures.json", "$dir/requests.jsonl");
my $CH_PASSWORD = 'ch-secret-4b1d9e';

sub free_port { my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die; my $p = $s->sockport; close $s; return $p }
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

# --- a private ClickHouse server ------------------------------------------------------------
my $ch = "$dir/ch";
mkdir $ch; mkdir "$ch/$_" for qw(log data tmp user_files format_schemas);
my ($tcp, $http, $inter) = (free_port(), free_port(), free_port());
open my $cf, '>', "$ch/config.xml" or die;
print $cf qq{<?xml version="1.0"?><yandex>
 <logger><level>warning</level><log>$ch/log/server.log</log><errorlog>$ch/log/server.err.log</errorlog><size>10M</size><count>1</count></logger>
 <listen_host>127.0.0.1</listen_host><tcp_port>$tcp</tcp_port><http_port>$http</http_port><interserver_http_port>$inter</interserver_http_port>
 <max_concurrent_queries>16</max_concurrent_queries><mark_cache_size>67108864</mark_cache_size>
 <path>$ch/data/</path><tmp_path>$ch/tmp/</tmp_path><user_files_path>$ch/user_files/</user_files_path>
 <format_schema_path>$ch/format_schemas/</format_schema_path><users_config>$ch/users.xml</users_config>
 <default_profile>default</default_profile><default_database>default</default_database><timezone>UTC</timezone>
 <query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>500</flush_interval_milliseconds></query_log>
</yandex>};
close $cf;
open my $uf, '>', "$ch/users.xml" or die;
print $uf qq{<?xml version="1.0"?><yandex>
 <profiles><default><max_memory_usage>2000000000</max_memory_usage><log_queries>1</log_queries></default></profiles>
 <users>
  <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
  <duet><password>$CH_PASSWORD</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></duet>
 </users>
 <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>};
close $uf;
my $chproc = IPC::Run::start([$server_bin, "--config-file=$ch/config.xml"], '>', "$ch/log/stdout.log", '2>&1');
END { local $?; if ($chproc) { $chproc->signal('TERM'); eval { $chproc->finish }; } }
sub chq {
    my ($sql) = @_;
    my ($out, $err) = ('', '');
    IPC::Run::run([$client_bin, '--host=127.0.0.1', "--port=$tcp", "--query=$sql"], '>', \$out, '2>', \$err) or die "clickhouse-client: $err";
    chomp $out;
    return $out;
}
my $ready = 0;
for (1 .. 300) { $ready = eval { chq('SELECT 1') eq '1' }; last if $ready; sleep 0.2 }
ok($ready, 'clickhouse-server ' . ($ready ? chq('SELECT version()') : '?') . " on 127.0.0.1:$http");
chq('CREATE DATABASE adtech');
chq('CREATE DATABASE secretdb');
chq(q{CREATE TABLE adtech.stats (day Date, tenant String, campaign String COMMENT 'campaign name',
      impressions UInt64, clicks UInt64, spend Float64, big UInt64, ts DateTime('Europe/Berlin'),
      tags Array(String), note Nullable(String)) ENGINE = MergeTree() ORDER BY (day, campaign)});
chq(q{INSERT INTO adtech.stats VALUES
      ('2024-05-01', 'acme', 'spring', 1000, 40, 12.5, 18446744073709551615, '2024-05-01 10:00:00', ['a','b'], NULL),
      ('2024-05-01', 'acme', 'brand', 500, 10, 7.25, 42, '2024-05-01 11:00:00', [], 'x'),
      ('2024-05-02', 'acme', 'spring', 1200, 55, 14, 9007199254740993, '2024-05-02 10:00:00', ['c'], NULL),
      ('2024-05-02', 'globex', 'launch', 800, 20, 9.5, 1, '2024-05-02 12:00:00', [], NULL),
      ('2024-05-03', 'acme', 'brand', 700, 14, 8, 2, '2024-05-03 09:30:00', [], NULL)});
chq(q{CREATE TABLE secretdb.payroll (who String, salary UInt32) ENGINE = MergeTree() ORDER BY who});
chq(q{INSERT INTO secretdb.payroll VALUES ('ceo', 1000000)});

# --- PostgreSQL with the mock LLM ---------------------------------------------------------------
write_fixtures({ default => 'SELECT 1' });
my $mock = IPC::Run::start(['python3', "$root/test/mock_llm.py", '--port-file', $port_file, '--fixtures', $fixtures, '--log', $reqlog]);
END { local $?; $mock->kill_kill if $mock }
for (1 .. 100) { last if -s $port_file; sleep 0.1 }
my $port = slurp_file($port_file);
my $node = PostgreSQL::Test::Cluster->new('ch');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'\nmax_worker_processes = 32");
$node->start;
$node->safe_psql('postgres', qq{
    CREATE EXTENSION pg_duet;
    CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
    SELECT duet_tenant_create('acme'), duet_tenant_create('globex');
    SELECT duet_tenant_add_member('acme', 'alice'), duet_tenant_add_member('globex', 'bob');
    GRANT EXECUTE ON FUNCTION duet_ask(text, jsonb), duet_ask_run(text, int, jsonb), duet_ask_feedback(text, text, text),
        duet_ask_clickhouse_guard(text, text), duet_ask_clickhouse_schema(text) TO alice, bob;
    INSERT INTO duet.llm_providers (name, kind, base_url, model, priority, timeout_ms, max_retries)
        VALUES ('p1', 'openai', 'http://127.0.0.1:$port/p1/v1', 'mock-gpt', 1, 5000, 0);
    INSERT INTO duet.clickhouse_servers (name, url, database, user_name) VALUES ('ch1', 'http://127.0.0.1:$http', 'adtech', 'duet');
});
my $log_from = -s $node->logfile;
$node->safe_psql('postgres', "SET log_statement = 'none'; INSERT INTO duet.clickhouse_server_passwords VALUES ('ch1', '$CH_PASSWORD');");
$node->safe_psql('postgres', q{SELECT duet_set_tenant('acme'); SELECT duet_config_set('ask.clickhouse.access', '{"ch1": {"databases": ["adtech"]}}')});
my $alice = $node->connstr('postgres') . ' user=alice';
my $bob = $node->connstr('postgres') . ' user=bob';
my $opt = q{'{"target": "ch1", "cache": false}'};

# --- access, schema, cache ----------------------------------------------------------------------
my ($rc, $out, $err) = $node->psql('postgres', "SELECT duet_ask('q', $opt)", connstr => $bob);
like($err, qr/tenant "globex" may not ask about ClickHouse server "ch1"/, 'a tenant without access is refused');
($rc, $out, $err) = $node->psql('postgres', 'SELECT * FROM duet.clickhouse_server_passwords', connstr => $alice);
like($err, qr/permission denied/, 'passwords are not readable');
($rc, $out, $err) = $node->psql('postgres', q{SELECT duet_config_set('ask.clickhouse.access', '{"ch1": {"databases": ["bad db"]}}')}, connstr => $alice);
ok($rc != 0, 'access config is validated by its schema');
my $s1 = $node->safe_psql('postgres', "SELECT cached, tables, schema FROM duet_ask_clickhouse_schema('ch1')", connstr => $alice);
like($s1, qr/^f\|1\|/, 'schema read cold: one table visible');
like($s1, qr/table adtech\.stats \(/, 'the tenant\'s table');
like($s1, qr/campaign String -- campaign name/, 'with column comments');
unlike($s1, qr/secretdb|payroll/, 'other databases are not shown');
is($node->safe_psql('postgres', "SELECT (duet_ask_clickhouse_schema('ch1')).cached FROM generate_series(1, 2) OFFSET 1", connstr => $alice),
   't', 'then cached in the session');

# --- an answer, types mapped, row cap ---------------------------------------------------------
write_fixtures({ answers => { 'all stats' => ["SELECT campaign, clicks, big, ts, tags, note FROM adtech.stats ORDER BY day, campaign"] } });
my @rows = split /\n/, $node->safe_psql('postgres', "SELECT * FROM duet_ask_run('all stats', 10, $opt)", connstr => $alice);
is(scalar @rows, 5, 'five rows');
my $r0 = decode_json($rows[0]);
is($r0->{campaign}, 'brand', 'String');
is($r0->{clicks}, 10, 'UInt64 within 2^53 as a number');
ok(!ref $r0->{note} && $r0->{note} eq 'x', 'Nullable with a value');
is(decode_json($rows[1])->{big}, '18446744073709551615', 'UInt64 beyond 2^53 as text');
is(decode_json($rows[3])->{big}, '9007199254740993', '2^53 + 1 as text');
is(decode_json($rows[1])->{note}, undef, 'Nullable NULL as null');
is(decode_json($rows[1])->{ts}, '2024-05-01T08:00:00+00:00', 'DateTime(\'Europe/Berlin\') 10:00 is the instant 08:00 UTC (shown in the session time zone)');
is_deeply(decode_json($rows[1])->{tags}, ['a', 'b'], 'Array(String) as an array');
@rows = split /\n/, $node->safe_psql('postgres', "SELECT * FROM duet_ask_run('all stats', 2, $opt)", connstr => $alice);
is(scalar @rows, 2, 'row cap');

# --- self-correction from ClickHouse's error --------------------------------------------------------
write_fixtures({ answers => { 'clicks by day' => ['SELECT day, sum(clickz) FROM adtech.stats GROUP BY day',
                                                   'SELECT day, sum(clicks) AS clicks FROM adtech.stats GROUP BY day ORDER BY day'] } });
@rows = split /\n/, $node->safe_psql('postgres', "SELECT * FROM duet_ask_run('clicks by day', 10, $opt)", connstr => $alice);
is($rows[0], '{"day": "2024-05-01", "clicks": 50}', 'corrected answer runs');
my @r = requests();
like($r[-1]{body}{messages}[-1]{content}, qr/ClickHouse rejected that query: ClickHouse: Code: 47.*clickz/, 'the model saw ClickHouse\'s error text');
like($r[-1]{body}{messages}[0]{content}, qr/ClickHouse \(version 18\.16\)/, 'ClickHouse dialect prompt');

# --- the adversarial corpus: nothing executes ----------------------------------------------------------
chq('SYSTEM FLUSH LOGS');
my $executed = q{SELECT count() FROM system.query_log WHERE user = 'duet' AND type = 2 AND query NOT LIKE 'DESCRIBE%' AND query NOT LIKE 'select ''d''%'};
my $before = chq($executed);
my @corpus = (
    "INSERT INTO adtech.stats (day) VALUES ('2024-01-01')",
    "ALTER TABLE adtech.stats DELETE WHERE 1",
    "ALTER TABLE adtech.stats DROP COLUMN clicks",
    "DROP TABLE adtech.stats",
    "DROP DATABASE adtech",
    "TRUNCATE TABLE adtech.stats",
    "CREATE TABLE adtech.x (a UInt8) ENGINE = Memory",
    "RENAME TABLE adtech.stats TO adtech.gone",
    "OPTIMIZE TABLE adtech.stats FINAL",
    "DETACH TABLE adtech.stats",
    "ATTACH TABLE adtech.stats",
    "KILL QUERY WHERE 1",
    "SYSTEM SHUTDOWN",
    "SYSTEM DROP MARK CACHE",
    "SET readonly = 0",
    "SELECT 1; DROP TABLE adtech.stats",
    "SELECT 1; SELECT 2",
    "SELECT * FROM adtech.stats SETTINGS readonly = 0",
    "SELECT * FROM adtech.stats SETTINGS max_memory_usage = 0",
    "SELECT * FROM adtech.stats FORMAT TabSeparated",
    "SELECT * FROM adtech.stats INTO OUTFILE '/tmp/x'",
    "SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')",
    "SELECT * FROM file('/etc/passwd', CSV, 'a String')",
    "SELECT * FROM remote('127.0.0.1', secretdb.payroll)",
    "SELECT * FROM remoteSecure('127.0.0.1', system.one)",
    "SELECT * FROM mysql('127.0.0.1:3306', 'db', 't', 'u', 'p')",
    "SELECT * FROM s3('http://x/y.csv', 'CSV', 'a String')",
    "SELECT * FROM hdfs('hdfs://x/y', 'CSV', 'a String')",
    "SELECT * FROM jdbc('jdbc:x', 't')",
    "SELECT * FROM odbc('DSN=x', 't')",
    "SELECT * FROM numbers(100000000000)",
    "SELECT count() FROM adtech.stats WHERE campaign IN (SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String'))",
    "SELECT * FROM system.users",
    "SELECT * FROM system.processes",
    "SELECT * FROM system.settings",
    "SELECT * FROM system.query_log",
    "SELECT * FROM `system`.`clusters`",
    "SELECT * FROM \"system\".parts",
    "SELECT * FROM secretdb.payroll",
    "SELECT s.* FROM adtech.stats s JOIN secretdb.payroll p ON s.campaign = p.who",
    "SELECT who FROM adtech.stats WHERE campaign IN secretdb.payroll",
    "SELECT * FROM adtech.stats a CROSS JOIN adtech.stats b CROSS JOIN adtech.stats c",
    "SELECT * FROM adtech.stats a, adtech.stats b, adtech.stats c",
    "WITH (SELECT 1) AS x SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM adtech.stats /* ; DROP TABLE adtech.stats */ ; DROP TABLE adtech.stats",
    "SELECT 'x' -- \n; DROP TABLE adtech.stats",
    "select * from adtech.stats # comment",
    "SELECT * FROM merge('adtech', '.*')",
    "SELECT * FROM adtech.stats UNION ALL SELECT who, '', '', 0, 0, 0, 0, now(), [], NULL FROM secretdb.payroll",
    "SELECT * FROM adtech.stats WHERE 1 = (SELECT count() FROM system.users)",
);
my ($refused, @let) = (0);
for my $q (@corpus) {
    (my $lit = $q) =~ s/'/''/g;
    my $reason = $node->safe_psql('postgres', "SELECT coalesce(duet_ask_clickhouse_guard('ch1', '$lit'), '<accepted>')", connstr => $alice);
    if ($reason ne '<accepted>') { $refused++ } else { push @let, $q }
}
is($refused, scalar @corpus, scalar(@corpus) . ' adversarial outputs, all refused by the guard') or diag(join("\n", @let));
# Through duet_ask_run as well: the model keeps answering with them; nothing runs.
write_fixtures({ answers => { 'evil' => [@corpus[0, 21, 32, 38, 41]] } });
($rc, $out, $err) = $node->psql('postgres', qq{SELECT * FROM duet_ask_run('evil', 10, '{"target": "ch1", "cache": false, "max_corrections": 4}')}, connstr => $alice);
like($err, qr/did not produce an acceptable query/, 'duet_ask_run: five rounds refused');
chq('SYSTEM FLUSH LOGS');
is(chq($executed), $before, 'ClickHouse executed none of them (system.query_log)');
is(chq('SELECT count() FROM adtech.stats') . ' ' . chq('SELECT count() FROM secretdb.payroll'), '5 1', 'data intact');
$node->safe_psql('postgres', 'SELECT duet_ask_audit_flush()');
is($node->safe_psql('postgres', "SELECT status || ' ' || target FROM duet.ask_log WHERE question = 'evil'"), 'rejected ch1', 'audited with its target');
is(index(slurp_file($node->logfile, $log_from), $CH_PASSWORD), -1, 'the password is in no server log line');
my @sent = grep { index(encode_json($_), $CH_PASSWORD) >= 0 } requests();
is(scalar @sent, 0, 'nor in anything sent to the model');

# --- examples per target ---------------------------------------------------------------------------
$node->safe_psql('postgres', "SELECT duet_ask_feedback('spend per campaign', 'SELECT campaign, sum(spend) FROM adtech.stats GROUP BY campaign', 'ch1')", connstr => $alice);
$node->safe_psql('postgres', "SELECT duet_ask('spend per campaign?', $opt)", connstr => $alice);
@r = requests();
like($r[-1]{body}{messages}[0]{content}, qr/Verified examples:.*sum\(spend\)/s, 'a ClickHouse example is shown for its target');
($rc, $out, $err) = $node->psql('postgres', "SELECT duet_ask_feedback('x', 'SELECT * FROM secretdb.payroll', 'ch1')", connstr => $alice);
like($err, qr/example SQL is not acceptable.*\n.*secretdb/, 'examples pass the ClickHouse guard');

# --- overhead with a 0 ms mock LLM (reported, never asserted) ------------------------------------------
write_fixtures({ default => 'SELECT count() FROM adtech.stats', answers => { 'pg q' => ['SELECT 1'] } });
sub per_ask {
    my ($sql, $n) = @_;
    my $body = join('', map { "$sql;\n" } 1 .. $n);
    my $t = time;
    $node->safe_psql('postgres', $body, connstr => $alice);
    return (time - $t) * 1000 / $n;
}
my $n = 30;
my $pg = per_ask(q{SELECT duet_ask('pg q', '{"cache": false}')}, $n);
my $cached = per_ask(qq{SELECT duet_ask('ch q', $opt)}, $n);
my $cold = per_ask(qq{SET duet.ask_clickhouse_schema_ttl = 0; SELECT duet_ask('ch q', $opt)}, $n);
diag(sprintf('duet_ask overhead, 0 ms mock LLM, mean of %d: PostgreSQL %.1f ms; ClickHouse schema cached %.1f ms; cold %.1f ms', $n, $pg, $cached, $cold));
ok(1, 'overheads measured');

done_testing();

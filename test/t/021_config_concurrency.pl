# Config across sessions: the per-backend cache is never stale once a writer's COMMIT returned,
# isolation levels are honoured, concurrent writers lose nothing and versions strictly increase,
# NOTIFY is delivered at commit only, and two-phase commit invalidates caches too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('config_concurrency');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'\nmax_prepared_transactions = 5");
$node->start;
$node->safe_psql('postgres', q{
    CREATE EXTENSION pg_duet;
    CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
    SELECT duet_tenant_create('acme');
    SELECT duet_tenant_add_member('acme', 'alice'), duet_tenant_add_member('acme', 'bob');
    SELECT duet_config_set_default('cc.k', '0');
});

my $reader = $node->background_psql('postgres', extra_params => ['-U', 'alice']);
my $writer = $node->background_psql('postgres', extra_params => ['-U', 'bob']);

# 1. Never stale: the reader has the value cached; the writer commits; the reader's next read
#    returns the new value. Many rounds, so that a missed invalidation cannot hide.
$reader->query_safe("SELECT duet_config_get('cc.k')");
my $stale = 0;
for my $i (1 .. 100)
{
    $writer->query_safe("SELECT duet_config_set('cc.k', '$i')");
    my $got = $reader->query_safe("SELECT duet_config_get('cc.k')");
    $stale++ if $got ne $i;
}
is($stale, 0, 'reader never saw a stale value in 100 write/read rounds');

# The same with the reader inside one READ COMMITTED transaction block.
$reader->query_safe("BEGIN");
is($reader->query_safe("SELECT duet_config_get('cc.k')"), '100', 'RC: value before the write');
$writer->query_safe("SELECT duet_config_set('cc.k', '101')");
is($reader->query_safe("SELECT duet_config_get('cc.k')"), '101', 'RC: next statement sees the commit');
$reader->query_safe("COMMIT");

# 2. An uncommitted write is invisible to others, and visible right after COMMIT.
$writer->query_safe("BEGIN");
$writer->query_safe("SELECT duet_config_set('cc.k', '102')");
is($writer->query_safe("SELECT duet_config_get('cc.k')"), '102', 'writer sees its own write');
is($reader->query_safe("SELECT duet_config_get('cc.k')"), '101', 'others do not see it before commit');
$writer->query_safe("COMMIT");
is($reader->query_safe("SELECT duet_config_get('cc.k')"), '102', 'others see it after commit');

# 3. REPEATABLE READ: reads keep the transaction's snapshot, then catch up.
$reader->query_safe("BEGIN ISOLATION LEVEL REPEATABLE READ");
is($reader->query_safe("SELECT duet_config_get('cc.k')"), '102', 'RR: first read');
$writer->query_safe("SELECT duet_config_set('cc.k', '103')");
is($reader->query_safe("SELECT duet_config_get('cc.k')"), '102', 'RR: snapshot kept inside the transaction');
$reader->query_safe("COMMIT");
is($reader->query_safe("SELECT duet_config_get('cc.k')"), '103', 'RR: new value after the transaction');

# 4. NOTIFY duet_config after commit only, with the history row's id (read back under RLS).
$reader->query_safe("LISTEN duet_config");
$writer->query_safe("BEGIN");
my $v = $writer->query_safe("SELECT duet_config_set('cc.k', '104')");
unlike($reader->query_safe("SELECT 1"), qr/Asynchronous notification/, 'no notification before commit');
$writer->query_safe("COMMIT");
my ($hid) = $reader->query_safe("SELECT 1") =~ /Asynchronous notification "duet_config" with payload "(\d+)"/;
ok(defined $hid, 'notification after commit, its payload only an id');
is($reader->query_safe("SELECT tenant || '/' || key || '/' || version || '/' || operation FROM duet.config_history WHERE id = $hid"),
   "acme/cc.k/$v/set", 'the id reads back as tenant, key, version and operation');
$writer->query_safe("BEGIN");
$writer->query_safe("SELECT duet_config_set('cc.k', '105')");
$writer->query_safe("ROLLBACK");
unlike($reader->query_safe("SELECT 1"), qr/Asynchronous notification/, 'no notification for a rolled-back change');
$reader->query_safe("UNLISTEN duet_config");

# 5. Two writers of one key: the second waits for the first (row lock), then gets the next version.
$writer->query_safe("BEGIN");
my $v1 = $writer->query_safe("SELECT duet_config_set('cc.k', '\"first\"')");
$reader->query_until(qr/started/, "\\echo started\nSELECT duet_config_set('cc.k', '\"second\"') AS v2 \\gset\n");
$node->poll_query_until('postgres',
    "SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = 'alice' AND wait_event_type = 'Lock'")
  or die 'second writer never waited';
pass('second writer waits for the first');
$writer->query_safe("COMMIT");
my $v2 = $reader->query_safe("SELECT :v2");
is($v2, $v1 + 1, 'second writer got the next version after the first committed');
is($node->safe_psql('postgres', "SELECT value FROM duet.config WHERE key = 'cc.k' AND tenant = 'acme'"),
   '"second"', 'last committed write wins, the first is in history');

# 6. Many concurrent writers: every write is recorded once, versions are 1..N without gaps.
my $before = $node->safe_psql('postgres',
    "SELECT max(version) FROM duet.config_history WHERE key = 'cc.k' AND tenant = 'acme'");
$node->pgbench('-n -U alice -c 4 -j 2 -t 50', 0, [qr{processed: 200/200}], [qr{^$}],
    'pgbench: 4 clients x 50 writes of one key',
    { 'config_set' => "\\set r random(1, 999)\nSELECT duet_config_set('cc.k', to_jsonb(:client_id * 1000 + :r));" });
is($node->safe_psql('postgres', qq{
    SELECT count(*) || ' ' || count(DISTINCT version) || ' ' || (max(version) - $before)
      FROM duet.config_history WHERE key = 'cc.k' AND tenant = 'acme' AND version > $before}),
   '200 200 200', '200 writes, 200 distinct versions, no gaps');
is($node->safe_psql('postgres', q{
    SELECT c.version = h.version AND c.value = h.value
      FROM duet.config c
      JOIN duet.config_history h ON h.key = c.key AND h.tenant = c.tenant
     WHERE c.key = 'cc.k' AND c.tenant = 'acme'
     ORDER BY h.version DESC LIMIT 1}), 't', 'current value is the latest history entry');
is($reader->query_safe("SELECT duet_config_get('cc.k') = (SELECT value FROM duet.config WHERE key = 'cc.k' AND tenant = 'acme')"),
   't', 'reader cache follows after the burst');

# 7. Two-phase commit. duet_config_set sends NOTIFY, which PostgreSQL does not allow in a prepared
#    transaction; a direct change (superuser, restore) can be prepared, and readers must see it at
#    COMMIT PREPARED, which runs in another transaction than the one that wrote.
my ($rc, $out, $err) = $node->psql('postgres',
    "BEGIN; SELECT duet_config_set('cc.k', '1'); PREPARE TRANSACTION 'cc_p0';", extra_params => ['-U', 'bob']);
like($err, qr/cannot PREPARE a transaction that has executed LISTEN, UNLISTEN, or NOTIFY/,
     '2PC: duet_config_set cannot be prepared (NOTIFY)');
# A fresh reader that never wrote config itself.
my $fresh = $node->background_psql('postgres', extra_params => ['-U', 'alice']);
$fresh->query_safe("SELECT duet_config_get('cc.k')");
$node->safe_psql('postgres', q{BEGIN;
    UPDATE duet.config SET value = '"prepared"' WHERE key = 'cc.k' AND tenant = 'acme';
    PREPARE TRANSACTION 'cc_p1';});
isnt($fresh->query_safe("SELECT duet_config_get('cc.k')"), '"prepared"', '2PC: invisible while prepared');
$node->safe_psql('postgres', "COMMIT PREPARED 'cc_p1'");
is($fresh->query_safe("SELECT duet_config_get('cc.k')"), '"prepared"', '2PC: visible after COMMIT PREPARED');
$fresh->quit;

# 8. Membership removed in another session: the reader loses the tenant at once.
is($reader->query_safe("SELECT duet_current_tenant()"), 'acme', 'reader acts for acme');
$node->safe_psql('postgres', "SELECT duet_tenant_remove_member('acme', 'alice')");
is($reader->query_safe("SELECT coalesce(duet_current_tenant(), '(none)')"), '(none)',
   'membership removal seen by an open session');
is($reader->query_safe("SELECT duet_config_get('cc.k')"), '0', 'and it reads the default, not acme\'s value');

$reader->quit;
$writer->quit;
$node->stop;
done_testing();

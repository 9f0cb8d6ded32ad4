# The tenant context through connections: startup options cannot choose a tenant for a
# non-superuser, a role's default applies at connect, and a pooled connection's DISCARD ALL
# returns to it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('tenant_connect');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'");
$node->start;
$node->safe_psql('postgres', q{
    CREATE EXTENSION pg_duet;
    CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
    SELECT duet_tenant_create('acme'), duet_tenant_create('globex');
    SELECT duet_tenant_add_member('acme', 'alice'), duet_tenant_add_member('acme', 'bob'),
           duet_tenant_add_member('globex', 'bob');
});
my $connstr = $node->connstr('postgres');

# -c duet.tenant=... in the startup packet (also what PGOPTIONS sends)
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT duet_current_tenant()',
    connstr => "$connstr user=alice options='-c duet.tenant=globex'");
isnt($rc, 0, 'non-superuser cannot pass duet.tenant as a connection option');
like($err, qr/permission denied to set parameter "duet.tenant"/, '... with a clear error');

{
    local $ENV{PGOPTIONS} = '-c duet.tenant=globex';
    ($rc, $out, $err) = $node->psql('postgres', 'SELECT duet_current_tenant()',
        connstr => "$connstr user=alice");
    isnt($rc, 0, 'nor through PGOPTIONS');
}

is($node->safe_psql('postgres', 'SELECT duet_current_tenant()', connstr => "$connstr user=alice"),
   'acme', 'a one-tenant role acts for its tenant at connect');
is($node->safe_psql('postgres', 'SELECT coalesce(duet_current_tenant(), \'(none)\')',
   connstr => "$connstr user=bob"), '(none)', 'a two-tenant role has no default');

# A superuser may start a session for a tenant through options, and the value is still checked
# against the role in effect.
is($node->safe_psql('postgres', "SELECT duet_current_tenant()",
   connstr => "$connstr user=postgres options='-c duet.tenant=globex'"), 'globex',
   'superuser may pass duet.tenant at connect');

# A superuser-set per-role default is honoured for members only.
$node->safe_psql('postgres', "ALTER ROLE bob SET duet.tenant = 'globex'; ALTER ROLE alice SET duet.tenant = 'globex'");
is($node->safe_psql('postgres', 'SELECT duet_current_tenant()', connstr => "$connstr user=bob"),
   'globex', 'per-role default tenant set by a superuser applies to a member');
is($node->safe_psql('postgres', 'SELECT coalesce(duet_current_tenant(), \'(none)\')',
   connstr => "$connstr user=alice"), '(none)', '... and is ignored for a non-member');
$node->safe_psql('postgres', "ALTER ROLE bob RESET duet.tenant; ALTER ROLE alice RESET duet.tenant");

# Pooler pattern: one connection, transaction-local tenants, DISCARD ALL between clients.
my $s = $node->background_psql('postgres', extra_params => ['-U', 'bob']);
is($s->query_safe("BEGIN; SELECT duet_set_tenant('acme', true); SELECT duet_current_tenant(); COMMIT;"),
   "acme\nacme", 'transaction-local tenant inside the transaction');
is($s->query_safe("SELECT coalesce(duet_current_tenant(), '(none)')"), '(none)', 'gone after COMMIT');
$s->query_safe("SELECT duet_set_tenant('globex')");
$s->query_safe("DISCARD ALL");
is($s->query_safe("SELECT coalesce(duet_current_tenant(), '(none)')"), '(none)',
   'DISCARD ALL returns to the role default');
$s->quit;

$node->stop;
done_testing();

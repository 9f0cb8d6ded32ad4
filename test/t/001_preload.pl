# The library loads through shared_preload_libraries and the extension installs on a fresh cluster.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('preload');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'");
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), 'pg_duet', 'preloaded');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_duet');
is($node->safe_psql('postgres', 'SELECT duet_version()'), '0.2.0', 'library version matches');

is($node->safe_psql('postgres', 'SHOW duet.databases'), 'postgres', 'duet.databases defaults to postgres');
my ($rc, $out, $err) = $node->psql('postgres', 'SET duet.typo_setting = 1');
like($err, qr/invalid configuration parameter name "duet.typo_setting"/, 'duet.* prefix reserved');

$node->stop;
done_testing();

# duet-ch-sync (issue 13): pulls the metrics from PostgreSQL into a user_scripts directory,
# replacing the definitions file and the XML by rename(2) (no partial file is ever at the path);
# a running duet_udf pool takes a new definition up before its next block, every row of a block
# computed by one definition, and keeps its definition when the new one changes the signature.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start pump finish timeout);

my $build = $ENV{DUET_BUILD} // "$ENV{DUET_ROOT}/build";
my $sync = "$build/ch_udfs/duet-ch-sync";
my $udf = "$build/ch_udfs/duet_udf";
my $dir = PostgreSQL::Test::Utils::tempdir();

my $node = PostgreSQL::Test::Cluster->new('ch_sync');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'");
$node->start;
$node->safe_psql('postgres', q{
    CREATE EXTENSION pg_duet;
    SELECT duet_metric_define('roas', 'revenue / spend', 'return on ad spend');
    SELECT duet_metric_define('roas_pct', 'round(roas() * 100, 1)', 'ROAS in percent');
});
my $conn = $node->connstr('postgres');

sub run_sync
{
	my @args = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ $sync, '--dbname', $conn, @args ], '>', \$out, '2>', \$err);
	return ($ok, $out, $err);
}

my ($ok, $out, $err) = run_sync('--dir', $dir, '--format', 'TabSeparated');
ok($ok, 'duet-ch-sync writes the user_scripts directory') or diag($err);
my $defs = slurp_file("$dir/duet_metrics.tsv");
like($defs, qr/^roas_pct\tNullable\(Float64\)\trevenue:Nullable\(Float64\),spend:Nullable\(Float64\)\tround\(roas\(\) \* 100, 1\)$/m,
	'the definitions file has the composed metric');
like(slurp_file("$dir/duet_function.xml"), qr{<name>roas_pct</name>.*<format>TabSeparated</format>}s, 'and the XML declares it');
my $ino = (stat("$dir/duet_metrics.tsv"))[1];

# a pool, as ClickHouse runs it with send_chunk_header
my ($in, $res) = ('', '');
my $pool = start([ $udf, '--metric', 'roas_pct', '--definitions', "$dir/duet_metrics.tsv",
	'--format', 'TabSeparated', '--chunk-header' ], \$in, \$res, timeout(30));
sub block
{
	my ($rows) = @_;
	$res = '';
	$in .= scalar(@$rows) . "\n" . join('', map { "$_\n" } @$rows);
	my $want = scalar(@$rows);
	pump $pool until ($res =~ tr/\n//) >= $want;
	return [ split /\n/, $res ];
}
is_deeply(block([ "10\t4", "1\t0" ]), [ '250', '\\N' ], 'block 1 with the first definition');

$node->safe_psql('postgres', q{SELECT duet_metric_define('roas', 'revenue / spend / 2', 'net of a 50% fee', reason => 'fees')});
($ok, $out, $err) = run_sync('--dir', $dir, '--format', 'TabSeparated');
ok($ok, 'sync after a change') or diag($err);
isnt((stat("$dir/duet_metrics.tsv"))[1], $ino, 'the file was replaced (a new inode), not rewritten in place');
is(join(',', grep { /\.tmp\./ } glob("$dir/*")), '', 'no temporary file left behind');
is_deeply(block([ "10\t4", "3\t1", "7\t0" ]), [ '125', '150', '\\N' ],
	'the running pool computes the next block with the new definition of the metric it calls');

# a new definition with other parameters is not taken up by the running pool (ClickHouse still calls
# it with the declared arguments; a new XML restarts the pool)
$node->safe_psql('postgres', q{SELECT duet_metric_define('roas_pct', 'round(x * 100, 1)')});
($ok) = run_sync('--dir', $dir, '--format', 'TabSeparated');
like(slurp_file("$dir/duet_metrics.tsv"), qr/^roas_pct\tNullable\(Float64\)\tx:Nullable\(Float64\)\t/m, 'the file has the new signature');
is_deeply(block([ "10\t4" ]), [ '125' ], 'the pool keeps the definition it was started with');
$in .= '';
$pool->finish;
is($?, 0, 'the pool ends cleanly at the end of input');

($ok, $out, $err) = run_sync('--print', '--no-pool');
ok($ok && $out =~ /<type>executable<\/type>/ && $out =~ /^roas\t/m, '--print writes the XML and the definitions to stdout');
like($out, qr/^CREATE FUNCTION `roas` AS \(`revenue`, `spend`\) -> \(multiIf\(/m, '... and the SQL user-defined functions');
my $roas_sql = $node->safe_psql('postgres', q{SELECT duet_metric_sql('roas', 'clickhouse')});
($ok, $out, $err) = run_sync('--print-sql');
is($out, "-- pg_duet metrics as ClickHouse SQL user-defined functions (ClickHouse 21.10 and later)\n"
	. "DROP FUNCTION IF EXISTS `roas`;\nCREATE FUNCTION `roas` AS (`revenue`, `spend`) -> $roas_sql;\n"
	. "-- roas_pct: not compiled: function round does not compile to ClickHouse SQL\n",
	'--print-sql writes only the DDL, the expression duet_metric_sql gives, and why roas_pct has none');
$ok = IPC::Run::run([ $sync, '--dbname', 'host=/nonexistent', '--dir', $dir ], '>', \$out, '2>', \$err);
ok(!$ok && $? >> 8 == 1 && $err =~ /^duet-ch-sync: could not connect to PostgreSQL: [^\n]*\n\z/, 'a connection failure is one line on stderr, exit 1');

done_testing();

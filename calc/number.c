/*
 * number.c — numbers and their text, one algorithm for every consumer (docs/calc.md §Numbers):
 *
 *   digits    PostgreSQL's Ryu (double_to_shortest_decimal_bufn, libpgcommon): the fewest
 *             significant digits that read back exactly, the closest to the double among them.
 *             pg_duet.so resolves it in the postgres binary; duet_udf and the tests link
 *             libpgcommon.a. So both databases print the same digits by construction.
 *   layout    duet_format_number re-lays Ryu's digits and exponent out in Duet's notation
 *             (JavaScript's): fixed for decimal exponents -7 < e < 21, else d.ddde±x.
 *   parsing   duet_parse_number: decimal text with at most 19 significant digits whose value is
 *             m·10^e with m < 2^53 and |e| <= 22 is one exact IEEE multiplication or division
 *             (Clinger's fast path: both operands are exact, so the one rounding is the correct
 *             one); anything else goes to strtod_l in the C locale (never the process locale).
 *   rounding  duet_round_decimal: half away from zero on the shortest decimal of x, computed in
 *             binary when x·10^n is provably not near a half (then the decimal and the binary
 *             value round alike), else on Ryu's digits.
 */
#define _GNU_SOURCE
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

/* libpgcommon's Ryu (common/shortest_dec.h); declared here so calc/ needs no PostgreSQL headers. */
extern int	double_to_shortest_decimal_bufn(double f, char *result);

static const double pow10_exact[23] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
	1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/*
 * Ryu as in PostgreSQL 15 finds the shortest decimal strictly inside d's rounding interval, but not
 * one lying exactly on its boundary, which reads back as d when d's significand is even (ties go
 * to even): 2^59·1.22… = 705404620817080064 is "705404620817080000" (14 digits) exactly half an
 * ulp below, where Ryu gives 16. A boundary is (2m ± 1)·2^(e2-1) (or (4m - 1)·2^(e2-2) below a
 * power of two); it can be a short decimal c·10^t only if 5^t divides the odd factor, so t <= 23,
 * and c < 10^17 needs e2 < 81. So only integers from 2^54 to 2^134 can have one, and it is found
 * in 64-bit integers. The result is the shorter of Ryu's digits and such a boundary.
 */
static int
boundary_digits(double d, char *digits, int ndig, int *exp10)
{
	uint64_t	bits,
				m,
				best_c = 0;
	int			e2,
				best_t = 0,
				best_len = ndig,
				side;

	memcpy(&bits, &d, sizeof(bits));
	e2 = (int) ((bits >> 52) & 0x7FF) - 1075;
	m = (bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52);
	if (e2 < 2 || e2 > 80 || (bits >> 52 & 0x7FF) == 0 || (m & 1))
		return ndig;
	for (side = 0; side < 2; side++)
	{
		bool		pow2 = m == (UINT64_C(1) << 52) && side == 0;
		uint64_t	q = side ? 2 * m + 1 : pow2 ? 4 * m - 1 : 2 * m - 1;
		int			shift = side ? e2 - 1 : pow2 ? e2 - 2 : e2 - 1,
					t = 0,
					len = 0;
		uint64_t	c;

		while (t < shift && q % 5 == 0)
			q /= 5, t++;
		if (shift - t >= 57 || q >= (UINT64_C(1) << (57 - (shift - t))))
			continue;			/* c = q·2^(shift-t) would need more than 17 digits */
		c = q << (shift - t);
		for (uint64_t v = c; v; v /= 10)
			len++;
		if (len < best_len)
		{
			best_len = len;
			best_c = c;
			best_t = t;
		}
	}
	if (best_len == ndig)
		return ndig;
	for (int i = best_len - 1; i >= 0; i--, best_c /= 10)
		digits[i] = (char) ('0' + best_c % 10);
	*exp10 = best_t + best_len - 1;
	return best_len;
}

int
duet_shortest_digits(double d, char *digits, int *exp10)
{
	char		ryu[32];
	int			len = double_to_shortest_decimal_bufn(d, ryu),
				ndig = 0,
				e = 0;
	const char *p = ryu,
			   *end = ryu + len;

	/* Ryu writes [-]0.000ddd, [-]ddd[.ddd] or [-]d[.ddd]e±xx; no other leading zeros */
	if (*p == '-')
		p++;
	if (p[0] == '0' && p + 1 < end && p[1] == '.')
	{
		int			lead = 0;

		for (p += 2; p < end && *p == '0'; p++)
			lead++;
		for (; p < end; p++)
			digits[ndig++] = *p;
		e = -lead - 1;
	}
	else
	{
		int			before = 0;

		for (; p < end && *p >= '0' && *p <= '9'; p++)
			digits[ndig++] = *p;
		before = ndig;
		if (p < end && *p == '.')
			for (p++; p < end && *p >= '0' && *p <= '9'; p++)
				digits[ndig++] = *p;
		e = before - 1;
		if (p < end && *p == 'e')
		{
			bool		neg = *++p == '-';
			int			x = 0;

			for (p++; p < end; p++)
				x = x * 10 + (*p - '0');
			e += neg ? -x : x;
		}
	}
	if (ndig == 0 || digits[0] == '0')
	{
		*exp10 = 0;
		return 0;
	}
	while (ndig > 1 && digits[ndig - 1] == '0')
		ndig--;
	*exp10 = e;
	if (e < 15)					/* boundary cases are integers of 2^54 and more */
		return ndig;
	return boundary_digits(d, digits, ndig, exp10);
}

size_t
duet_format_number(double d, char *buf, size_t bufsize)
{
	char		digits[24],
				out[40];
	int			ndig,
				exp10,
				point,
				i;
	size_t		n = 0;

	if (!(d - d == 0))
		memcpy(out, "null", 5), n = 4;
	else if (d == 0)
		out[n++] = '0';
	else if ((n = (size_t) double_to_shortest_decimal_bufn(d, out)) > 0 && memchr(out, 'e', n) == NULL)
	{
		/*
		 * Ryu writes fixed notation only for decimal exponents -4 .. 14: inside Duet's fixed range,
		 * below the boundary cases (integers of 2^54 and more), shortest digits without trailing
		 * fraction zeros. That is Duet's text already; test_number's oracle checks it.
		 */
	}
	else
	{
		n = 0;
		ndig = duet_shortest_digits(d, digits, &exp10);
		if (d < 0)
			out[n++] = '-';
		point = exp10 + 1;		/* digits before the decimal point */
		if (point > 21 || point <= -6)
		{
			int			ae = exp10 < 0 ? -exp10 : exp10;

			out[n++] = digits[0];
			if (ndig > 1)
			{
				out[n++] = '.';
				memcpy(out + n, digits + 1, (size_t) ndig - 1);
				n += (size_t) ndig - 1;
			}
			out[n++] = 'e';
			out[n++] = exp10 < 0 ? '-' : '+';
			if (ae >= 100)
				out[n++] = (char) ('0' + ae / 100);
			if (ae >= 10)
				out[n++] = (char) ('0' + ae / 10 % 10);
			out[n++] = (char) ('0' + ae % 10);
		}
		else if (point <= 0)
		{
			out[n++] = '0';
			out[n++] = '.';
			for (i = 0; i < -point; i++)
				out[n++] = '0';
			memcpy(out + n, digits, (size_t) ndig);
			n += (size_t) ndig;
		}
		else
		{
			for (i = 0; i < ndig || i < point; i++)
			{
				if (i == point)
					out[n++] = '.';
				out[n++] = i < ndig ? digits[i] : '0';
			}
		}
	}
	if (bufsize > 0)
	{
		size_t		k = n < bufsize ? n : bufsize - 1;

		memcpy(buf, out, k);
		buf[k] = '\0';
	}
	return n;
}

/* The C locale, made once; strtod_l with it never depends on the process's LC_NUMERIC. */
static locale_t
c_locale(void)
{
	static locale_t cached;
	locale_t	loc = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);

	if (!loc)
	{
		locale_t	fresh = newlocale(LC_ALL_MASK, "C", (locale_t) 0),
					expected = (locale_t) 0;

		if (!fresh)
			return (locale_t) 0;
		if (__atomic_compare_exchange_n(&cached, &expected, fresh, false, __ATOMIC_ACQ_REL,
										__ATOMIC_ACQUIRE))
			loc = fresh;
		else
		{
			freelocale(fresh);
			loc = expected;
		}
	}
	return loc;
}

/* strtod's full grammar (hex, inf, nan, long mantissas) in the C locale, on a bounded copy. */
static size_t
parse_slow(const char *s, size_t len, double *out)
{
	char		stackbuf[128],
			   *buf = stackbuf,
			   *end;
	locale_t	loc = c_locale();
	size_t		used;

	if (len >= sizeof(stackbuf) && !(buf = malloc(len + 1)))
	{
		*out = 0;
		return 0;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	*out = loc ? strtod_l(buf, &end, loc) : strtod(buf, &end);
	used = (size_t) (end - buf);
	if (buf != stackbuf)
		free(buf);
	return used;
}

size_t
duet_parse_number(const char *s, size_t len, double *out)
{
	size_t		i = 0;
	bool		neg = false;
	uint64_t	m = 0;
	int			nsig = 0,
				scale = 0,
				e = 0,
				ndigits = 0;

	if (i < len && (s[i] == '-' || s[i] == '+'))
		neg = s[i++] == '-';
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, ndigits++)
	{
		if (m == 0 && s[i] == '0')
			continue;
		if (nsig++ < 19)
			m = m * 10 + (uint64_t) (s[i] - '0');
		else
			scale++;
	}
	if (i < len && s[i] == '.')
	{
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, ndigits++)
		{
			if (m == 0 && s[i] == '0')
			{
				scale--;
				continue;
			}
			if (nsig++ < 19)
			{
				m = m * 10 + (uint64_t) (s[i] - '0');
				scale--;
			}
		}
	}
	if (ndigits == 0 || nsig > 19)
		return parse_slow(s, len, out);
	if (i < len && (s[i] == 'e' || s[i] == 'E'))
	{
		size_t		j = i + 1;
		bool		eneg = false;
		int			ed = 0;

		if (j < len && (s[j] == '-' || s[j] == '+'))
			eneg = s[j++] == '-';
		for (; j < len && s[j] >= '0' && s[j] <= '9'; j++, ed++)
			if (e < 100000)
				e = e * 10 + (s[j] - '0');
		if (ed > 0)				/* "1e" or "1e+" read as "1", as strtod does */
		{
			i = j;
			if (eneg)
				e = -e;
		}
		else
			e = 0;
	}
	/*
	 * Only text read to its end takes the fast path: strtod reads at least as far (its grammar
	 * contains this one), so a shorter read ("0x1p3", "1e", junk) gets strtod's own answer.
	 */
	if (i != len)
		return parse_slow(s, len, out);
	e += scale;
	if (m == 0)
		*out = neg ? -0.0 : 0.0;
	else if (m <= (UINT64_C(1) << 53) && e >= -22 && e <= 22)
	{
		double		v = (double) m;

		v = e < 0 ? v / pow10_exact[-e] : v * pow10_exact[e];
		*out = neg ? -v : v;
	}
	else
		return parse_slow(s, len, out);
	return i;
}

/* From shortest digits, rounded: the double nearest to ±0.digits × 10^(exp10 + 1). */
static double
digits_to_double(bool neg, const char *digits, int ndig, int exp10)
{
	char		text[48];
	size_t		n = 0;
	double		v;
	int			e = exp10 + 1 - ndig,
				ae = e < 0 ? -e : e;

	if (neg)
		text[n++] = '-';
	memcpy(text + n, digits, (size_t) ndig);
	n += (size_t) ndig;
	text[n++] = 'e';
	if (e < 0)
		text[n++] = '-';
	if (ae >= 100)
		text[n++] = (char) ('0' + ae / 100);
	if (ae >= 10)
		text[n++] = (char) ('0' + ae / 10 % 10);
	text[n++] = (char) ('0' + ae % 10);
	duet_parse_number(text, n, &v);
	return v;
}

/* The exact rule on the digits themselves: the reference for the binary fast path. */
static double
round_on_digits(double x, int n)
{
	char		digits[24];
	int			exp10,
				ndig,
				keep;
	bool		neg = x < 0;

	if (x == 0)
		return 0;
	ndig = duet_shortest_digits(x, digits, &exp10);
	keep = exp10 + 1 + n;		/* digits that survive */
	if (keep >= ndig)
		return x;
	keep = duet_round_digits(digits, ndig, keep, &exp10);
	if (keep == 0)
		return 0;
	return digits_to_double(neg, digits, keep, exp10);
}

int
duet_round_digits(char *digits, int nd, int keep, int *exp10)
{
	int			i;

	if (keep >= nd)
		return nd;
	if (keep < 0)
		return 0;
	if (digits[keep] >= '5')
	{
		for (i = keep - 1; i >= 0 && digits[i] == '9'; i--)
			digits[i] = '0';
		if (i >= 0)
			digits[i]++;
		else
		{
			memmove(digits + 1, digits, (size_t) keep);
			digits[0] = '1';
			keep++;
			(*exp10)++;
		}
	}
	return keep;
}

double
duet_round_decimal(double x, int n)
{
	double		ax = fabs(x),
				y,
				fl,
				f,
				k,
				r;

	if (n < -22 || n > 22 || !(ax < 1e300))
		return round_on_digits(x, n);
	/*
	 * y = |x|·10^n (or /10^-n) with one rounding. The shortest decimal D of x is within half an ulp
	 * of x, so D·10^n is within about 2^-52·y of y: when y's fraction is farther than 2^-49·y from
	 * one half, D·10^n and y round to the same integer k, and k/10^n (k < 2^53, 10^n exact) is one
	 * correctly rounded operation — the double strtod gives for the rounded decimal.
	 */
	y = n >= 0 ? ax * pow10_exact[n] : ax / pow10_exact[-n];
	if (!(y < 4503599627370496.0))	/* 2^52: past it y has no fraction to round */
		return round_on_digits(x, n);
	fl = (double) (int64_t) y;	/* floor: 0 <= y < 2^52 */
	f = y - fl;
	if (fabs(f - 0.5) <= y * 0x1p-49)
		return round_on_digits(x, n);
	k = f > 0.5 ? fl + 1 : fl;
	r = n >= 0 ? k / pow10_exact[n] : k * pow10_exact[-n];
	return x < 0 ? -r : r;
}

/*
 * number_oracle.h — the number text and round() of calc before docs/calc.md's Ryu-based
 * implementation (git history: calc/format.c and calc/funcs.c up to the calc-speed branch), kept
 * verbatim as the reference of test_number's differential: the search over %.{p}e for the least
 * precision p that strtod reads back, and round() on that text.
 */
#ifndef NUMBER_ORACLE_H
#define NUMBER_ORACLE_H
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static __attribute__((unused)) size_t
oracle_format_number(double d, char *buf, size_t bufsize)
{
	char		sci[40],
				digits[24],
				out[48];
	int			prec,
				ndig = 0,
				exp10,
				point,
				i;
	size_t		n = 0;
	const char *s;

	if (d == 0)
		d = 0;					/* -0 prints as 0 */
	if (!isfinite(d))
		return (size_t) snprintf(buf, bufsize, "null");
	/*
	 * Start at 15 digits: when the shortest round-trip text has k <= 15 digits, the correctly
	 * rounded 15-digit text is that text padded with zeros (a normal double's half-ulp is below
	 * half the 15-digit spacing), and the zeros are trimmed below: at most three rounds, not
	 * seventeen. Subnormals carry fewer digits, so they search from one.
	 */
	for (prec = fabs(d) >= DBL_MIN ? 15 : 1; prec <= 17; prec++)
	{
		snprintf(sci, sizeof(sci), "%.*e", prec - 1, d);
		if (strtod(sci, NULL) == d)
			break;
	}
	/* sci is [-]d[.ddd]e±x */
	s = sci;
	if (*s == '-')
		out[n++] = *s++;
	for (; *s != 'e'; s++)
		if (*s != '.')
			digits[ndig++] = *s;
	exp10 = atoi(s + 1);
	while (ndig > 1 && digits[ndig - 1] == '0')
		ndig--;
	point = exp10 + 1;			/* digits before the decimal point */
	if (point > 21 || point <= -6)
	{
		out[n++] = digits[0];
		if (ndig > 1)
		{
			out[n++] = '.';
			for (i = 1; i < ndig; i++)
				out[n++] = digits[i];
		}
		n += (size_t) snprintf(out + n, sizeof(out) - n, "e%c%d", exp10 < 0 ? '-' : '+',
							   exp10 < 0 ? -exp10 : exp10);
	}
	else if (point <= 0)
	{
		out[n++] = '0';
		out[n++] = '.';
		for (i = 0; i < -point; i++)
			out[n++] = '0';
		for (i = 0; i < ndig; i++)
			out[n++] = digits[i];
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
	out[n] = '\0';
	return (size_t) snprintf(buf, bufsize, "%s", out);
}

static __attribute__((unused)) double
oracle_round_decimal(double x, int n)
{
	char		text[40],
				digits[40],
				buf[64];
	int			ndig = 0,
				exp10 = 0,
				keep,
				i;
	bool		neg = x < 0,
				seen_point = false;
	const char *s;

	oracle_format_number(fabs(x), text, sizeof(text));
	/* split "d.ddde±x" into digits and a decimal exponent with value = 0.digits × 10^exp10 */
	for (s = text; *s && *s != 'e'; s++)
	{
		if (*s == '.')
			seen_point = true;
		else
		{
			if (ndig == 0 && *s == '0')
			{
				if (seen_point)
					exp10--;
				continue;
			}
			digits[ndig++] = *s;
			if (!seen_point)
				exp10++;
		}
	}
	if (*s == 'e')
		exp10 += atoi(s + 1);
	if (ndig == 0)
		return 0;
	keep = exp10 + n;			/* digits that survive */
	if (keep >= ndig)
		return x;
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
			memmove(digits + 1, digits, keep);
			digits[0] = '1';
			keep++;
			exp10++;
		}
	}
	if (keep == 0)
		return 0;
	snprintf(buf, sizeof(buf), "%s0.%.*se%d", neg ? "-" : "", keep, digits, exp10);
	return strtod(buf, NULL);
}

#endif

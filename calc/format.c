/*
 * format.c — numbers as text, names of types and error classes, error messages with positions
 * and caret excerpts, and the value helpers (comparison, UTF-8 length, finiteness) shared by the
 * VM and the builtins.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

/*
 * The fewest significant digits that parse back to exactly d, laid out as JavaScript (and JSON
 * writers) do: fixed notation for decimal exponents from -7 to 20, otherwise d.ddde±x.
 */
size_t
duet_format_number(double d, char *buf, size_t bufsize)
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

const char *
duet_errclass_name(duet_errclass cls)
{
	switch (cls)
	{
		case DUET_OK: return "ok";
		case DUET_ERR_SYNTAX: return "syntax";
		case DUET_ERR_TYPE: return "type";
		case DUET_ERR_UNKNOWN_FUNCTION: return "unknown_function";
		case DUET_ERR_ARITY: return "arity";
		case DUET_ERR_LIMIT: return "limit";
		case DUET_ERR_UNKNOWN_VARIABLE: return "unknown_variable";
		case DUET_ERR_NOMEM: return "nomem";
	}
	return "unknown";
}

const char *
duet_type_name(duet_type t)
{
	switch (t)
	{
		case DUET_T_NULL: return "null";
		case DUET_T_NUMBER: return "number";
		case DUET_T_STRING: return "string";
		case DUET_T_BOOL: return "boolean";
		case DUET_T_ANY: return "any";
	}
	return "unknown";
}

/* The source line holding the error, then a caret under its column; long lines are windowed. */
static void
make_excerpt(char *out, size_t outsize, const char *src, size_t srclen, int line, int col)
{
	const char *start = src,
			   *end,
			   *p;
	int			l = 1,
				skip = 0,
				caret,
				i;
	size_t		n = 0;

	out[0] = '\0';
	if (!src || line < 1 || col < 1)
		return;
	while (l < line && (size_t) (start - src) < srclen)
		if (*start++ == '\n')
			l++;
	for (end = start; (size_t) (end - src) < srclen && *end != '\n'; end++)
		;
	/* keep the caret within ~60 code points of the window start */
	if (col > 60)
		skip = col - 40;
	for (p = start, i = 0; i < skip && p < end; i++)
		do
			p++;
		while (p < end && ((unsigned char) *p & 0xC0) == 0x80);
	caret = col - 1 - skip;
	if (skip)
		n += (size_t) snprintf(out + n, outsize - n, "...");
	for (; p < end && n + 8 < outsize / 2; p++)
		out[n++] = (*p == '\t' || *p == '\r') ? ' ' : *p;
	if (p < end)
		n += (size_t) snprintf(out + n, outsize - n, "...");
	out[n++] = '\n';
	for (i = 0; i < caret + (skip ? 3 : 0) && n + 2 < outsize; i++)
		out[n++] = ' ';
	out[n++] = '^';
	out[n] = '\0';
}

void
duet_set_error(duet_error *err, duet_errclass cls, const char *src, size_t srclen,
			   int line, int col, const char *expected, const char *fmt,...)
{
	va_list		ap;

	err->cls = cls;
	err->line = line;
	err->column = col;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	snprintf(err->expected, sizeof(err->expected), "%s", expected ? expected : "");
	make_excerpt(err->excerpt, sizeof(err->excerpt), src, srclen, line, col);
}

void
duet_set_runtime_error(duet_error *err, duet_errclass cls, int line, int col, const char *fmt,...)
{
	va_list		ap;

	err->cls = cls;
	err->line = line;
	err->column = col;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	err->expected[0] = '\0';
	err->excerpt[0] = '\0';
}

bool
duet_value_comparable(duet_type a, duet_type b)
{
	return a == b || a == DUET_T_NULL || b == DUET_T_NULL || a == DUET_T_ANY || b == DUET_T_ANY;
}

/* Numbers numerically, strings bytewise (UTF-8 order is code point order), false < true. */
int
duet_value_cmp(const duet_value *a, const duet_value *b)
{
	switch (a->type)
	{
		case DUET_T_NUMBER:
			return (a->u.num > b->u.num) - (a->u.num < b->u.num);
		case DUET_T_BOOL:
			return (int) a->u.boolean - (int) b->u.boolean;
		case DUET_T_STRING:
			{
				size_t		n = a->u.str.len < b->u.str.len ? a->u.str.len : b->u.str.len;
				int			c = n ? memcmp(a->u.str.ptr, b->u.str.ptr, n) : 0;

				if (c)
					return c < 0 ? -1 : 1;
				return (a->u.str.len > b->u.str.len) - (a->u.str.len < b->u.str.len);
			}
		default:
			return 0;
	}
}

size_t
duet_utf8_length(const char *s, size_t len)
{
	size_t		i,
				n = 0;

	for (i = 0; i < len; i++)
		if (((unsigned char) s[i] & 0xC0) != 0x80)
			n++;
	return n;
}


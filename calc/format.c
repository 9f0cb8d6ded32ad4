/*
 * format.c — names of types and error classes, error messages with positions
 * and caret excerpts, and the value helpers (comparison, UTF-8 length, finiteness) shared by the
 * VM and the builtins.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

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
		case DUET_ERR_RANGE: return "range";
		case DUET_ERR_INPUT: return "input";
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
		case DUET_T_INT: return "number";
		case DUET_T_DATE: return "date";
		case DUET_T_TIMESTAMP: return "timestamp";
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
	return duet_type_family(a) == duet_type_family(b) || a == DUET_T_NULL || b == DUET_T_NULL ||
		a == DUET_T_ANY || b == DUET_T_ANY || (duet_is_time(a) && duet_is_time(b));
}

/* An integer against a double, exactly (no rounding of i): -1, 0, 1. d is finite. */
static int
cmp_int_double(int64_t i, double d)
{
	double		t;

	if (d >= 9223372036854775808.0)
		return -1;
	if (d < -9223372036854775808.0)
		return 1;
	t = trunc(d);				/* within the int64 range now, so the cast is exact */
	if (i != (int64_t) t)
		return i < (int64_t) t ? -1 : 1;
	return (d > t) ? -1 : (d < t) ? 1 : 0;
}

/* Numbers numerically, strings bytewise (UTF-8 order is code point order), false < true. */
int
duet_value_cmp(const duet_value *a, const duet_value *b)
{
	switch (a->type)
	{
		case DUET_T_NUMBER:
			if (b->type == DUET_T_INT)
				return -cmp_int_double(b->u.i, a->u.num);
			return (a->u.num > b->u.num) - (a->u.num < b->u.num);
		case DUET_T_INT:
			if (b->type == DUET_T_NUMBER)
				return cmp_int_double(a->u.i, b->u.num);
			return (a->u.i > b->u.i) - (a->u.i < b->u.i);
		case DUET_T_BOOL:
			return (int) a->u.boolean - (int) b->u.boolean;
		case DUET_T_DATE:
		case DUET_T_TIMESTAMP:
			{
				/* a date is its midnight, as PostgreSQL compares date with timestamp */
				int64_t		x = a->type == DUET_T_DATE ? a->u.i * 86400000000 : a->u.i,
							y = b->type == DUET_T_DATE ? b->u.i * 86400000000 : b->u.i;

				return (x > y) - (x < y);
			}
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

bool
duet_utf8_valid(const char *s, size_t len)
{
	size_t		i = 0,
				n;

	while (i < len)
	{
		if ((unsigned char) s[i] < 0x80)
		{
			i++;
			continue;
		}
		if ((n = duet_utf8_seq(s, len, i)) == 0)
			return false;
		i += n;
	}
	return true;
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


size_t
duet_format_int(int64_t i, char *buf, size_t bufsize)
{
	char		tmp[24];
	char	   *p = tmp + sizeof(tmp);
	uint64_t	u = i < 0 ? (uint64_t) 0 - (uint64_t) i : (uint64_t) i;
	size_t		n;

	do
	{
		*--p = (char) ('0' + u % 10);
		u /= 10;
	} while (u);
	if (i < 0)
		*--p = '-';
	n = (size_t) (tmp + sizeof(tmp) - p);
	if (bufsize > 0)
	{
		size_t		k = n < bufsize - 1 ? n : bufsize - 1;

		memcpy(buf, p, k);
		buf[k] = '\0';
	}
	return n;
}

size_t
duet_format_value_number(const duet_value *v, char *buf, size_t bufsize)
{
	return v->type == DUET_T_INT ? duet_format_int(v->u.i, buf, bufsize)
		: duet_format_number(v->u.num, buf, bufsize);
}

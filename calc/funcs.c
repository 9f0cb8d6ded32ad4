/*
 * funcs.c — the builtin functions. Each takes already type-checked arguments; strict functions are
 * not called with a NULL argument (the VM answers NULL). Results outside the finite doubles or
 * arguments outside a function's domain give NULL, never an error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

duet_errclass duet_fn_concat(duet_value *args, int argc, duet_vm *vm, duet_value *out,
							 duet_error *err);
duet_errclass duet_fn_concat_ws(duet_value *args, int argc, duet_vm *vm, duet_value *out,
								duet_error *err);

#define UNUSED __attribute__((unused))
#define FN(name) static duet_errclass name(duet_value *args, UNUSED int argc, UNUSED duet_vm *vm, \
										   duet_value *out, UNUSED duet_error *err)
#define NUM(i) (args[(i)].u.num)
#define STR(i) (args[(i)].u.str)

/* ---- numbers ---- */

/* An integer argument such as round's digits: truncated, clamped to a sane range. */
static int
int_arg(double d, int lo, int hi)
{
	d = trunc(d);
	return d < lo ? lo : d > hi ? hi : (int) d;
}

/* abs, ceil, floor, trunc, sign, round, mod, clamp, div take integers as they are ("ints"). */
FN(fn_abs)
{
	if (args[0].type == DUET_T_INT)
	{
		if (args[0].u.i == INT64_MIN)
			return duet_int_overflow(err, "abs");
		*out = duet_int(args[0].u.i < 0 ? -args[0].u.i : args[0].u.i);
		return DUET_OK;
	}
	*out = duet_finite(fabs(NUM(0)));
	return DUET_OK;
}

/* ceil, floor and trunc of an integer are the integer */
#define INT_IDENTITY() do { if (args[0].type == DUET_T_INT) { *out = args[0]; return DUET_OK; } } while (0)
FN(fn_ceil) { INT_IDENTITY(); *out = duet_finite(ceil(NUM(0))); return DUET_OK; }
FN(fn_floor) { INT_IDENTITY(); *out = duet_finite(floor(NUM(0))); return DUET_OK; }
FN(fn_trunc) { INT_IDENTITY(); *out = duet_finite(trunc(NUM(0))); return DUET_OK; }

FN(fn_sign)
{
	double		x = duet_num(&args[0]);
	int			sg = x > 0 ? 1 : x < 0 ? -1 : 0;

	*out = args[0].type == DUET_T_INT ? duet_int(sg) : duet_number(sg);
	return DUET_OK;
}

FN(fn_exp) { *out = duet_finite(exp(NUM(0))); return DUET_OK; }
FN(fn_pow) { *out = duet_finite(pow(NUM(0), NUM(1))); return DUET_OK; }

/* round(i, n) of an integer: n >= 0 keeps it; n < 0 rounds to a multiple of 10^-n, halves away from zero */
static duet_errclass
round_int(int64_t x, int n, duet_value *out, duet_error *err)
{
	__int128	m = 1,
				q,
				r;

	if (n >= 0)
	{
		*out = duet_int(x);
		return DUET_OK;
	}
	if (n < -19)
	{
		*out = duet_int(0);		/* 10^20 > 2 |x| */
		return DUET_OK;
	}
	for (int k = 0; k < -n; k++)
		m *= 10;
	q = x / m;
	r = x % m;
	if (2 * (r < 0 ? -r : r) >= m)
		q += x < 0 ? -1 : 1;
	q *= m;
	if (q > INT64_MAX || q < INT64_MIN)
		return duet_int_overflow(err, "round");
	*out = duet_int((int64_t) q);
	return DUET_OK;
}

FN(fn_round)
{
	int			digits = argc > 1 ? int_arg(duet_num(&args[1]), -400, 400) : 0;

	if (args[0].type == DUET_T_INT)
		return round_int(args[0].u.i, digits, out, err);
	*out = duet_finite(duet_round_decimal(NUM(0), digits));
	return DUET_OK;
}

FN(fn_sqrt) { *out = NUM(0) < 0 ? duet_null() : duet_finite(sqrt(NUM(0))); return DUET_OK; }
FN(fn_ln) { *out = NUM(0) <= 0 ? duet_null() : duet_finite(log(NUM(0))); return DUET_OK; }
FN(fn_log10) { *out = NUM(0) <= 0 ? duet_null() : duet_finite(log10(NUM(0))); return DUET_OK; }

/* mod(a, b) is a % b: exact on integers (the sign of a), fmod otherwise; 0 divisor: NULL */
FN(fn_mod)
{
	if (args[0].type == DUET_T_INT && args[1].type == DUET_T_INT)
	{
		int64_t		y = args[1].u.i;

		*out = y == 0 ? duet_null() : duet_int(y == -1 ? 0 : args[0].u.i % y);
		return DUET_OK;
	}
	*out = duet_num(&args[1]) == 0 ? duet_null() : duet_finite(fmod(duet_num(&args[0]), duet_num(&args[1])));
	return DUET_OK;
}

/* div(a, b): the quotient truncated toward zero (PostgreSQL's div, ClickHouse's intDiv) */
FN(fn_div)
{
	if (args[0].type == DUET_T_INT && args[1].type == DUET_T_INT)
	{
		int64_t		x = args[0].u.i,
					y = args[1].u.i;

		if (y == 0)
			*out = duet_null();
		else if (x == INT64_MIN && y == -1)
			return duet_int_overflow(err, "div");
		else
			*out = duet_int(x / y);
		return DUET_OK;
	}
	*out = duet_num(&args[1]) == 0 ? duet_null() : duet_finite(trunc(duet_num(&args[0]) / duet_num(&args[1])));
	return DUET_OK;
}

/* clamp(x, lo, hi) = least(greatest(x, lo), hi): an integer when all three are, else a double */
FN(fn_clamp)
{
	if (args[0].type == DUET_T_INT && args[1].type == DUET_T_INT && args[2].type == DUET_T_INT)
	{
		int64_t		v = args[0].u.i < args[1].u.i ? args[1].u.i : args[0].u.i;

		*out = duet_int(v > args[2].u.i ? args[2].u.i : v);
		return DUET_OK;
	}
	{
		double		x = duet_num(&args[0]),
					lo = duet_num(&args[1]),
					hi = duet_num(&args[2]);
		double		v = x < lo ? lo : x;

		*out = duet_number(v > hi ? hi : v);
	}
	return DUET_OK;
}

/* ---- any type ---- */

FN(fn_coalesce)
{
	int			i;

	*out = duet_null();
	for (i = 0; i < argc; i++)
		if (args[i].type != DUET_T_NULL)
		{
			*out = args[i];
			break;
		}
	return DUET_OK;
}

FN(fn_nullif)
{
	*out = args[0];
	if (args[0].type != DUET_T_NULL && args[1].type != DUET_T_NULL &&
		duet_value_cmp(&args[0], &args[1]) == 0)
		*out = duet_null();
	return DUET_OK;
}

/* least/greatest skip NULLs, as PostgreSQL's do. */
static void
extreme(duet_value *args, int argc, duet_value *out, int sign)
{
	int			i;

	bool		any_double = false;

	*out = duet_null();
	for (i = 0; i < argc; i++)
	{
		any_double |= args[i].type == DUET_T_NUMBER;
		if (args[i].type != DUET_T_NULL &&
			(out->type == DUET_T_NULL || duet_value_cmp(&args[i], out) * sign > 0))
			*out = args[i];
	}
	/* integers mixed with doubles give a double, as arithmetic does */
	if (any_double && out->type == DUET_T_INT)
		*out = duet_number((double) out->u.i);
}

FN(fn_least) { extreme(args, argc, out, -1); return DUET_OK; }
FN(fn_greatest) { extreme(args, argc, out, 1); return DUET_OK; }

/* ---- strings (UTF-8; case mapping is ASCII-only so both databases agree without locales) ---- */

static duet_errclass
map_case(duet_value *args, duet_vm *vm, duet_value *out, duet_error *err, bool upper)
{
	char	   *s = duet_vm_alloc(vm, STR(0).len, err);
	size_t		i;

	if (!s)
		return err->cls;
	for (i = 0; i < STR(0).len; i++)
	{
		char		c = STR(0).ptr[i];

		if (upper && c >= 'a' && c <= 'z')
			c -= 32;
		else if (!upper && c >= 'A' && c <= 'Z')
			c += 32;
		s[i] = c;
	}
	*out = duet_string(s, STR(0).len);
	return DUET_OK;
}

FN(fn_lower) { return map_case(args, vm, out, err, false); }
FN(fn_upper) { return map_case(args, vm, out, err, true); }
FN(fn_length) { *out = duet_number((double) duet_utf8_length(STR(0).ptr, STR(0).len)); return DUET_OK; }

static const char *
find_bytes(const char *h, size_t hl, const char *n, size_t nl)
{
	size_t		i;

	if (nl == 0)
		return h;
	for (i = 0; i + nl <= hl; i++)
		if (h[i] == n[0] && memcmp(h + i, n, nl) == 0)
			return h + i;
	return NULL;
}

FN(fn_contains)
{
	*out = duet_bool(find_bytes(STR(0).ptr, STR(0).len, STR(1).ptr, STR(1).len) != NULL);
	return DUET_OK;
}

FN(fn_starts_with)
{
	*out = duet_bool(STR(1).len <= STR(0).len && memcmp(STR(0).ptr, STR(1).ptr, STR(1).len) == 0);
	return DUET_OK;
}

FN(fn_ends_with)
{
	*out = duet_bool(STR(1).len <= STR(0).len &&
					 memcmp(STR(0).ptr + STR(0).len - STR(1).len, STR(1).ptr, STR(1).len) == 0);
	return DUET_OK;
}

/* Byte offset of the code point with 0-based index k (clamped to the end). */
static size_t
utf8_offset(const char *s, size_t len, double k)
{
	size_t		i = 0;

	while (k > 0 && i < len)
	{
		i++;
		while (i < len && ((unsigned char) s[i] & 0xC0) == 0x80)
			i++;
		k--;
	}
	return i;
}

/* substr(s, start [, count]) with PostgreSQL's positions: 1-based, start may be ≤ 0. */
FN(fn_substr)
{
	double		start = trunc(NUM(1)),
				end;
	size_t		from,
				to;

	if (argc > 2)
	{
		double		count = trunc(NUM(2));

		if (count < 0)
		{
			*out = duet_null();
			return DUET_OK;
		}
		end = start + count;
	}
	else
		end = INFINITY;
	if (start < 1)
		start = 1;
	if (end <= start)
	{
		*out = duet_string("", 0);
		return DUET_OK;
	}
	from = utf8_offset(STR(0).ptr, STR(0).len, start - 1);
	to = isinf(end) ? STR(0).len : from + utf8_offset(STR(0).ptr + from, STR(0).len - from, end - start);
	*out = duet_string(STR(0).ptr + from, to - from);
	return DUET_OK;
}

FN(fn_replace)
{
	const char *cur = STR(0).ptr,
			   *end = STR(0).ptr + STR(0).len,
			   *hit;
	size_t		n = 0,
				total,
				off = 0;
	char	   *r;

	if (STR(1).len == 0)
	{
		*out = args[0];
		return DUET_OK;
	}
	for (; (hit = find_bytes(cur, end - cur, STR(1).ptr, STR(1).len)); cur = hit + STR(1).len)
		n++;
	total = STR(0).len - n * STR(1).len + n * STR(2).len;
	if (!(r = duet_vm_alloc(vm, total, err)))
		return err->cls;
	for (cur = STR(0).ptr; (hit = find_bytes(cur, end - cur, STR(1).ptr, STR(1).len));
		 cur = hit + STR(1).len)
	{
		memcpy(r + off, cur, hit - cur);
		off += hit - cur;
		memcpy(r + off, STR(2).ptr, STR(2).len);
		off += STR(2).len;
	}
	memcpy(r + off, cur, end - cur);
	*out = duet_string(r, total);
	return DUET_OK;
}

FN(fn_trim)
{
	const char *s = STR(0).ptr;
	size_t		len = STR(0).len;

	while (len > 0 && s[0] == ' ')
		s++, len--;
	while (len > 0 && s[len - 1] == ' ')
		len--;
	*out = duet_string(s, len);
	return DUET_OK;
}

/* ---- analysts' helpers (issue 15) ---- */

/* safe_divide(x, y [, d]): x / y, or d (default NULL) when y is 0; NULL x or y gives NULL */
FN(fn_safe_divide)
{
	if (args[0].type == DUET_T_NULL || args[1].type == DUET_T_NULL)
		*out = duet_null();
	else if (duet_num(&args[1]) == 0)
		*out = argc > 2 ? args[2] : duet_null();
	else
		*out = duet_finite(duet_num(&args[0]) / duet_num(&args[1]));
	return DUET_OK;
}

/* log(b, x): the base-b logarithm; outside the domain (b <= 0, b = 1, x <= 0) NULL */
FN(fn_log)
{
	double		b = NUM(0),
				x = NUM(1);

	*out = (b <= 0 || b == 1 || x <= 0) ? duet_null() : duet_finite(log(x) / log(b));
	return DUET_OK;
}

/* left(s, n) / right(s, n) in code points, as PostgreSQL's: a negative n drops |n| from the other end */
static void
left_right(duet_value *args, duet_value *out, bool left)
{
	size_t		len = duet_utf8_length(STR(0).ptr, STR(0).len);
	double		n = trunc(NUM(1));
	size_t		keep,
				off;

	if (n >= 0)
		keep = n >= (double) len ? len : (size_t) n;
	else
		keep = -n >= (double) len ? 0 : len - (size_t) -n;
	if (left)
		*out = duet_string(STR(0).ptr, utf8_offset(STR(0).ptr, STR(0).len, (double) keep));
	else
	{
		off = utf8_offset(STR(0).ptr, STR(0).len, (double) (len - keep));
		*out = duet_string(STR(0).ptr + off, STR(0).len - off);
	}
}

FN(fn_left) { left_right(args, out, true); return DUET_OK; }
FN(fn_right) { left_right(args, out, false); return DUET_OK; }

/*
 * split_part(s, delimiter, n): the n-th field (1-based; negative counts from the end, as in
 * PostgreSQL 14+); beyond the fields ''; n = 0 NULL; an empty delimiter makes s the only field.
 */
FN(fn_split_part)
{
	const char *p = STR(0).ptr,
			   *end = STR(0).ptr + STR(0).len;
	double		n = trunc(NUM(2));
	size_t		nfields = 1;
	const char *hit;

	if (n == 0)
	{
		*out = duet_null();
		return DUET_OK;
	}
	if (STR(1).len > 0)
		for (const char *q = p; (hit = find_bytes(q, end - q, STR(1).ptr, STR(1).len)); q = hit + STR(1).len)
			nfields++;
	if (n < 0)
		n = (double) nfields + n + 1;
	if (n < 1 || n > (double) nfields)
	{
		*out = duet_string("", 0);
		return DUET_OK;
	}
	for (double k = 1; k < n; k++)
		p = find_bytes(p, end - p, STR(1).ptr, STR(1).len) + STR(1).len;
	hit = STR(1).len > 0 ? find_bytes(p, end - p, STR(1).ptr, STR(1).len) : NULL;
	*out = duet_string(p, (hit ? hit : end) - p);
	return DUET_OK;
}

/* ---- number text for labels and messages: format_number, format_percent, format_currency ---- */

/*
 * v (a number) with exactly `decimals` fraction digits, rounded half away from zero on its
 * shortest decimal (as round() does) after multiplying by 10^shift exactly (a decimal shift),
 * with ',' between thousands, '.' before the fraction and '-' before pre; never the locale.
 */
static duet_errclass
format_decimal(duet_vm *vm, const duet_value *v, int decimals, int shift, const char *pre, size_t prelen,
			   const char *suf, size_t suflen, duet_value *out, duet_error *err)
{
	char		dig[32];
	int			nd = 0,
				e = 0,
				keep;
	bool		neg;
	char		body[512];
	size_t		n = 0;
	char	   *r;

	if (v->type == DUET_T_INT)
	{
		uint64_t	u = v->u.i < 0 ? (uint64_t) 0 - (uint64_t) v->u.i : (uint64_t) v->u.i;
		char		tmp[24];
		int			k = 0;

		neg = v->u.i < 0;
		do
			tmp[k++] = (char) ('0' + u % 10);
		while ((u /= 10) > 0);
		for (nd = 0; nd < k; nd++)
			dig[nd] = tmp[k - 1 - nd];
		e = nd - 1;
		if (dig[0] == '0')
			nd = 0;
	}
	else
	{
		neg = v->u.num < 0;
		if (v->u.num != 0)
			nd = duet_shortest_digits(fabs(v->u.num), dig, &e);
	}
	e += shift;
	/* digit k stands for 10^(e - k); keep those down to 10^-decimals, round at the next */
	keep = e + 1 + decimals;
	if (nd > 0)
		nd = duet_round_digits(dig, nd, keep, &e);
	{
		bool		nonzero = false;

		for (int k = 0; k < nd; k++)
			nonzero |= dig[k] != '0';
		if (!nonzero)
			neg = false;
	}
	/* the integer part, places e .. 0, then the fraction, places -1 .. -decimals */
	for (int place = e < 0 ? 0 : e; place >= 0; place--)
	{
		int			k = e - place;

		body[n++] = k >= 0 && k < nd ? dig[k] : '0';
		if (place > 0 && place % 3 == 0)
			body[n++] = ',';
	}
	if (decimals > 0)
		body[n++] = '.';
	for (int j = 1; j <= decimals; j++)
	{
		int			k = e + j;

		body[n++] = k >= 0 && k < nd ? dig[k] : '0';
	}
	if (!(r = duet_vm_alloc(vm, (neg ? 1 : 0) + prelen + n + suflen, err)))
		return err->cls;
	*out = duet_string(r, (neg ? 1 : 0) + prelen + n + suflen);
	if (neg)
		*r++ = '-';
	memcpy(r, pre, prelen);
	memcpy(r + prelen, body, n);
	memcpy(r + prelen + n, suf, suflen);
	return DUET_OK;
}

/* format_number(x [, decimals = 0]) → '1,234,567.89'; decimals 0 .. 20 */
FN(fn_format_number)
{
	return format_decimal(vm, &args[0], argc > 1 ? int_arg(duet_num(&args[1]), 0, 20) : 0, 0,
						  "", 0, "", 0, out, err);
}

/* format_percent(x [, decimals = 0]) → x × 100 with a '%': format_percent(0.1234, 1) = '12.3%' */
FN(fn_format_percent)
{
	return format_decimal(vm, &args[0], argc > 1 ? int_arg(duet_num(&args[1]), 0, 20) : 0, 2,
						  "", 0, "%", 1, out, err);
}

/* format_currency(x, symbol [, decimals = 2]) → '-$1,234.50' */
FN(fn_format_currency)
{
	return format_decimal(vm, &args[0], argc > 2 ? int_arg(duet_num(&args[2]), 0, 20) : 2, 0,
						  STR(1).ptr, STR(1).len, "", 0, out, err);
}

/*
 * to_number(s): s (ASCII spaces around it ignored) as a number: [+-]digits[.digits][e[+-]digits]
 * (or .digits); digits only within 64 bits is an integer. Anything else, '' included, is NULL.
 */
FN(fn_to_number)
{
	const char *p = STR(0).ptr;
	size_t		len = STR(0).len,
				k = 0,
				mant = 0;
	bool		digits_only = true;
	double		d;

	while (len > 0 && p[0] == ' ')
		p++, len--;
	while (len > 0 && p[len - 1] == ' ')
		len--;
	*out = duet_null();
	if (k < len && (p[k] == '+' || p[k] == '-'))
		k++;
	for (; k < len && p[k] >= '0' && p[k] <= '9'; k++)
		mant++;
	if (k < len && p[k] == '.')
	{
		digits_only = false;
		for (k++; k < len && p[k] >= '0' && p[k] <= '9'; k++)
			mant++;
	}
	if (mant == 0)
		return DUET_OK;
	if (k < len && (p[k] == 'e' || p[k] == 'E'))
	{
		size_t		ed = 0;

		digits_only = false;
		k++;
		if (k < len && (p[k] == '+' || p[k] == '-'))
			k++;
		for (; k < len && p[k] >= '0' && p[k] <= '9'; k++)
			ed++;
		if (ed == 0)
			return DUET_OK;
	}
	if (k != len)
		return DUET_OK;
	if (digits_only)
	{
		int64_t		i = 0;
		bool		neg = p[0] == '-';
		size_t		j = (p[0] == '-' || p[0] == '+') ? 1 : 0;

		/* accumulate negatively, so that -2^63 fits */
		for (; j < len; j++)
		{
			int			digit = p[j] - '0';

			if (i < (INT64_MIN + digit) / 10)
				break;
			i = i * 10 - digit;
		}
		if (j == len && (neg || i != INT64_MIN))
		{
			*out = duet_int(neg ? i : -i);
			return DUET_OK;
		}
	}
	if (duet_parse_number(p, len, &d) == len)
		*out = duet_finite(d);
	return DUET_OK;
}

/* Sorted by name for bsearch. params: n number, s string, b bool, a any scalar, x one common type. */
const builtin duet_builtins[] = {
	{"abs", 1, 1, "n", 'n', true, fn_abs, true, false},
	{"ceil", 1, 1, "n", 'n', true, fn_ceil, true, false},
	{"clamp", 3, 3, "nnn", 'n', true, fn_clamp, true, false},
	{"coalesce", 1, -1, "x", 'x', false, fn_coalesce, true, false},
	{"concat", 1, -1, "a", 's', false, duet_fn_concat, true, false},
	{"concat_ws", 2, -1, "sa", 's', false, duet_fn_concat_ws, true, false},
	{"contains", 2, 2, "ss", 'b', true, fn_contains, false, false},
	{"date", 1, 1, "a", 'd', true, duet_fn_date, false, false},
	{"date_add", 3, 3, "snT", 'T', true, duet_fn_date_add, true, false},
	{"date_diff", 3, 3, "sTT", 'n', true, duet_fn_date_diff, false, false},
	{"date_trunc", 2, 2, "sT", 'T', true, duet_fn_date_trunc, false, false},
	{"day_of_week", 1, 1, "T", 'n', true, duet_fn_day_of_week, false, false},
	{"div", 2, 2, "nn", 'n', true, fn_div, true, false},
	{"ends_with", 2, 2, "ss", 'b', true, fn_ends_with, false, false},
	{"exp", 1, 1, "n", 'n', true, fn_exp, false, false},
	{"extract", 2, 2, "sT", 'n', true, duet_fn_extract, false, false},
	{"floor", 1, 1, "n", 'n', true, fn_floor, true, false},
	{"format_currency", 2, 3, "nsn", 's', true, fn_format_currency, true, false},
	{"format_datetime", 2, 2, "Ts", 's', true, duet_fn_format_datetime, false, false},
	{"format_number", 1, 2, "nn", 's', true, fn_format_number, true, false},
	{"format_percent", 1, 2, "nn", 's', true, fn_format_percent, true, false},
	{"from_timezone", 2, 2, "Ts", 't', true, duet_fn_from_timezone, false, false},
	{"greatest", 1, -1, "x", 'x', false, fn_greatest, true, false},
	{"ifnull", 2, 2, "xx", 'x', false, fn_coalesce, true, false},
	{"least", 1, -1, "x", 'x', false, fn_least, true, false},
	{"left", 2, 2, "sn", 's', true, fn_left, false, false},
	{"length", 1, 1, "s", 'n', true, fn_length, false, false},
	{"like", 2, 2, "ss", 'b', true, duet_fn_like, false, false},
	{"ln", 1, 1, "n", 'n', true, fn_ln, false, false},
	{"log", 2, 2, "nn", 'n', true, fn_log, false, false},
	{"log10", 1, 1, "n", 'n', true, fn_log10, false, false},
	{"lower", 1, 1, "s", 's', true, fn_lower, false, false},
	{"mod", 2, 2, "nn", 'n', true, fn_mod, true, false},
	{"now", 0, 0, "", 't', true, duet_fn_now, false, true},
	{"nullif", 2, 2, "xx", 'x', false, fn_nullif, true, false},
	{"parse_date", 2, 2, "ss", 'd', true, duet_fn_parse_date, false, false},
	{"parse_datetime", 2, 2, "ss", 't', true, duet_fn_parse_datetime, false, false},
	{"pow", 2, 2, "nn", 'n', true, fn_pow, false, false},
	{"regexp_extract", 2, 3, "ssn", 's', true, duet_fn_regexp_extract, false, false},
	{"regexp_match", 2, 2, "ss", 'b', true, duet_fn_regexp_match, false, false},
	{"regexp_replace", 3, 3, "sss", 's', true, duet_fn_regexp_replace, false, false},
	{"replace", 3, 3, "sss", 's', true, fn_replace, false, false},
	{"right", 2, 2, "sn", 's', true, fn_right, false, false},
	{"round", 1, 2, "nn", 'n', true, fn_round, true, false},
	{"safe_divide", 2, 3, "nnn", 'n', false, fn_safe_divide, true, false},
	{"sign", 1, 1, "n", 'n', true, fn_sign, true, false},
	{"split_part", 3, 3, "ssn", 's', true, fn_split_part, false, false},
	{"sqrt", 1, 1, "n", 'n', true, fn_sqrt, false, false},
	{"starts_with", 2, 2, "ss", 'b', true, fn_starts_with, false, false},
	{"substr", 2, 3, "snn", 's', true, fn_substr, false, false},
	{"timestamp", 1, 1, "a", 't', true, duet_fn_timestamp, false, false},
	{"to_number", 1, 1, "s", 'n', true, fn_to_number, false, false},
	{"to_timezone", 2, 2, "Ts", 't', true, duet_fn_to_timezone, false, false},
	{"today", 0, 0, "", 'd', true, duet_fn_today, false, true},
	{"trim", 1, 1, "s", 's', true, fn_trim, false, false},
	{"trunc", 1, 1, "n", 'n', true, fn_trunc, true, false},
	{"upper", 1, 1, "s", 's', true, fn_upper, false, false},
};
const int	duet_nbuiltins = sizeof(duet_builtins) / sizeof(duet_builtins[0]);

/* Function names are case-insensitive, like SQL's. */
const builtin *
duet_builtin_lookup(const char *name, size_t len)
{
	char		lower[32];
	int			lo = 0,
				hi = duet_nbuiltins - 1;
	size_t		i;

	if (len >= sizeof(lower))
		return NULL;
	for (i = 0; i < len; i++)
		lower[i] = (name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i];
	lower[len] = '\0';
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(lower, duet_builtins[mid].name);

		if (c == 0)
			return &duet_builtins[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

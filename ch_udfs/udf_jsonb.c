/*
 * udf_jsonb.c — JSON inputs read as PostgreSQL's jsonb reads them (udf_jsonb.h).
 *
 * jansson converts a number itself (json_int_t, or a double: "too big integer" and "real number
 * overflow" are parse errors) and keeps no text, while jsonb keeps the exact decimal and duet_calc
 * binds it as an integer or the correctly rounded double. So one pass over the text first finds
 * every number token outside strings, computes its value from the token (udf_jsonb_number) and
 * writes its index in their place: `{"a": 1e400, "b": [2.5]}` becomes `{"a": 0, "b": [1]}` for
 * jansson, which parses structure and strings as before; an integer in the parsed document is then
 * the index of its number. A maximal run of number characters ([0-9+-.eE]) must be exactly one
 * JSON number, so the rewrite never turns invalid JSON into valid JSON: in valid JSON a number
 * is followed by whitespace, ',', ']', '}' or the end, and jansson lexes the same token boundaries
 * in both texts.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "udf_jsonb.h"

/* PostgreSQL 15's numeric limits (numeric.c): NUMERIC_DSCALE_MAX, the weight limit in decimal
 * digits (NUMERIC_WEIGHT_MAX + 1 base-10000 digits), and set_var_from_str's exponent bound. */
#define PG_NUMERIC_DSCALE_MAX 16383
#define PG_NUMERIC_MAX_DIGIT_POWER 131071	/* the leading digit's power of ten, at most */
#define PG_NUMERIC_EXPONENT_LIMIT (INT_MAX / 2)

static inline bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

bool
udf_jsonb_number(const char *tok, size_t len, duet_value *out)
{
	size_t		p = 0,
				int_start,
				int_len,
				frac_start = 0,
				frac_len = 0,
				lead;
	bool		neg = false,
				exp_neg = false;
	long long	exponent = 0;
	long long	dscale,
				power;

	/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and nothing else */
	if (p < len && tok[p] == '-')
	{
		neg = true;
		p++;
	}
	int_start = p;
	if (p < len && tok[p] == '0')
		p++;
	else if (p < len && tok[p] >= '1' && tok[p] <= '9')
		while (p < len && is_digit(tok[p]))
			p++;
	else
		return false;
	int_len = p - int_start;
	if (p < len && tok[p] == '.')
	{
		frac_start = ++p;
		while (p < len && is_digit(tok[p]))
			p++;
		frac_len = p - frac_start;
		if (frac_len == 0)
			return false;
	}
	if (p < len && (tok[p] == 'e' || tok[p] == 'E'))
	{
		size_t		exp_digits = 0;

		p++;
		if (p < len && (tok[p] == '+' || tok[p] == '-'))
			exp_neg = tok[p++] == '-';
		for (; p < len && is_digit(tok[p]); p++, exp_digits++)
			if (exponent < PG_NUMERIC_EXPONENT_LIMIT)	/* saturates: the bound is all that matters */
				exponent = exponent * 10 + (tok[p] - '0');
		if (exp_digits == 0)
			return false;
		if (exp_neg)
			exponent = -exponent;
	}
	if (p != len)
		return false;

	/* numeric_in's limits: what jsonb_in refuses with "value overflows numeric format" */
	if (exponent >= PG_NUMERIC_EXPONENT_LIMIT || exponent <= -PG_NUMERIC_EXPONENT_LIMIT)
		return false;
	dscale = (long long) frac_len - exponent;
	if (dscale < 0)
		dscale = 0;
	if (dscale > PG_NUMERIC_DSCALE_MAX)
		return false;
	/* the first non-zero digit of int digits ++ fraction digits, and its power of ten */
	for (lead = 0; lead < int_len + frac_len; lead++)
		if (tok[lead < int_len ? int_start + lead : frac_start + lead - int_len] != '0')
			break;
	if (lead == int_len + frac_len)
	{
		/* zero: jsonb prints 0 (an integer) or 0.0… (a double); never -0 */
		*out = dscale == 0 ? duet_int(0) : duet_number(0.0);
		return true;
	}
	power = (long long) int_len - 1 - (long long) lead + exponent;
	if (power > PG_NUMERIC_MAX_DIGIT_POWER)
		return false;

	/* no digits after the point (as numeric_out prints it) and 64 bits: an exact integer */
	if (dscale == 0 && power < 19)
	{
		uint64_t	v = 0;
		uint64_t	limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
		size_t		ndigits = int_len + frac_len;
		bool		fits = true;

		for (size_t k = lead; k < ndigits; k++)
			v = v * 10 + (uint64_t) (tok[k < int_len ? int_start + k : frac_start + k - int_len] - '0');
		/* the exponent's zeros: the value has power + 1 <= 19 digits, below 2^64 */
		for (long long z = exponent - (long long) frac_len; z > 0; z--)
			v *= 10;
		if (v > limit)
			fits = false;
		if (fits)
		{
			*out = duet_int(neg ? (int64_t) (0 - v) : (int64_t) v);
			return true;
		}
	}
	/* the correctly rounded double of the exact decimal (numeric_float8_no_overflow) */
	{
		double		d;

		if (duet_parse_number(tok, len, &d) != len)
			return false;
		if (d == 0)
			d = 0.0;			/* an underflow of a negative value: -0 */
		*out = isfinite(d) ? duet_number(d) : duet_null();	/* ±inf: NULL, as numeric beyond float8 */
	}
	return true;
}

void
udf_jsonb_init(udf_jsonb *d)
{
	memset(d, 0, sizeof(*d));
}

void
udf_jsonb_free(udf_jsonb *d)
{
	json_decref(d->root);
	free(d->nums);
	free(d->buf);
	udf_jsonb_init(d);
}

static bool
buf_reserve(udf_jsonb *d, size_t need)
{
	if (need > d->bufcap)
	{
		size_t		cap = d->bufcap ? d->bufcap : 256;
		char	   *b;

		while (cap < need)
			cap *= 2;
		b = realloc(d->buf, cap);
		if (!b)
			return false;
		d->buf = b;
		d->bufcap = cap;
	}
	return true;
}

static inline bool
is_number_char(char c)
{
	return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

bool
udf_jsonb_parse(udf_jsonb *d, const char *text, size_t len)
{
	size_t		w = 0,			/* bytes written to d->buf */
				run = 0,		/* start of the text not yet copied */
				i = 0;
	json_error_t jerr;

	json_decref(d->root);
	d->root = NULL;
	d->nnums = 0;
	/* invariant: bufcap >= w + (len - run) + 1, so copying the rest never needs to grow */
	if (!buf_reserve(d, len + 1))
		return false;
	while (i < len)
	{
		char		c = text[i];

		if (c == '"')
		{
			/* a string, kept as it is: up to the closing quote that no backslash escapes */
			for (i++; i < len && text[i] != '"'; i++)
				if (text[i] == '\\' && i + 1 < len)
					i++;
			if (i < len)
				i++;
		}
		else if (c == '-' || is_digit(c))
		{
			size_t		start = i,
						k = d->nnums,
						n = 0;
			char		idx[24];

			while (i < len && is_number_char(text[i]))
				i++;
			if (d->nnums == d->numcap)
			{
				size_t		cap = d->numcap ? d->numcap * 2 : 16;
				duet_value *nv = realloc(d->nums, cap * sizeof(duet_value));

				if (!nv)
					return false;
				d->nums = nv;
				d->numcap = cap;
			}
			if (!udf_jsonb_number(text + start, i - start, &d->nums[d->nnums]))
				return false;
			d->nnums++;
			do
			{
				idx[sizeof(idx) - ++n] = (char) ('0' + k % 10);
				k /= 10;
			} while (k);
			/* the text before the token, then its index in its place */
			if (!buf_reserve(d, w + (start - run) + n + (len - i) + 1))
				return false;
			memcpy(d->buf + w, text + run, start - run);
			w += start - run;
			memcpy(d->buf + w, idx + sizeof(idx) - n, n);
			w += n;
			run = i;
		}
		else
			i++;
	}
	memcpy(d->buf + w, text + run, len - run);
	w += len - run;
	/* no JSON_ALLOW_NUL: jsonb refuses \u0000 ("unsupported Unicode escape sequence") */
	d->root = json_loadb(d->buf, w, JSON_DECODE_ANY, &jerr);
	return d->root != NULL;
}

bool
udf_jsonb_value(const udf_jsonb *d, const json_t *j, duet_value *out)
{
	switch (json_typeof(j))
	{
		case JSON_NULL:
			*out = duet_null();
			return true;
		case JSON_TRUE:
		case JSON_FALSE:
			*out = duet_bool(json_is_true(j));
			return true;
		case JSON_INTEGER:
			{
				json_int_t	k = json_integer_value(j);

				/* every number of the text was replaced by its index (udf_jsonb_parse) */
				if (k < 0 || (size_t) k >= d->nnums)
					return false;
				*out = d->nums[k];
				return true;
			}
		case JSON_STRING:
			*out = duet_string(json_string_value(j), json_string_length(j));
			return true;
		default:
			return false;		/* an array or an object (a real cannot occur) */
	}
}

/*
 * udf_types.c — ClickHouse column types and their text form, and a text row's fields converted to
 * values (udf_row_convert). Uses udf_io.c's buffers; udf_io.c does not call back here.
 *
 * Integer columns become the engine's exact integers (DUET_T_INT), as PostgreSQL's integer columns
 * do in duet_calc; a UInt64 beyond 2^63 - 1 is an input error, never rounded. Floats are doubles.
 * An Int64 or UInt64 result takes only exact integers in its range (udf_check_int_result).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "udf.h"

static const struct
{
	const char *name;
	udf_base	base;
}			type_names[] =
{
	{"Float64", UDF_FLOAT64}, {"Float32", UDF_FLOAT32},
	{"Int8", UDF_INT8}, {"Int16", UDF_INT16}, {"Int32", UDF_INT32}, {"Int64", UDF_INT64},
	{"UInt8", UDF_UINT8}, {"UInt16", UDF_UINT16}, {"UInt32", UDF_UINT32}, {"UInt64", UDF_UINT64},
	{"Bool", UDF_BOOL}, {"String", UDF_STRING}, {"Nothing", UDF_NOTHING},
	{"Date", UDF_DATE}, {"DateTime", UDF_DATETIME},
};

bool
udf_type_parse(const char *text, size_t len, udf_type *out, udf_error *err)
{
	const char *p = text;
	size_t		n = len;

	out->nullable = false;
	if (n > 10 && strncmp(p, "Nullable(", 9) == 0 && p[n - 1] == ')')
	{
		out->nullable = true;
		p += 9;
		n -= 10;
	}
	for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
	{
		if (strlen(type_names[i].name) == n && strncmp(type_names[i].name, p, n) == 0)
		{
			out->base = type_names[i].base;
			if (out->base == UDF_NOTHING && !out->nullable)
				return udf_fail(err, "type Nothing is only supported as Nullable(Nothing)");
			return true;
		}
	}
	return udf_fail(err, "unsupported column type \"%.*s\" (expected Float64, Float32, [U]Int8..64, "
					"Bool, String, Date, DateTime, or Nullable of one of them)", (int) (len > 64 ? 64 : len), text);
}

const char *
udf_type_name(udf_type t, char *buf, size_t size)
{
	const char *base = "?";

	for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
		if (type_names[i].base == t.base)
			base = type_names[i].name;
	if (t.nullable)
		snprintf(buf, size, "Nullable(%s)", base);
	else
		snprintf(buf, size, "%s", base);
	return buf;
}

duet_type
udf_type_duet(udf_type t)
{
	switch (t.base)
	{
		case UDF_STRING:
			return DUET_T_STRING;
		case UDF_BOOL:
			return DUET_T_BOOL;
		case UDF_NOTHING:
			return DUET_T_ANY;
		case UDF_DATE:
			return DUET_T_DATE;
		case UDF_DATETIME:
			return DUET_T_TIMESTAMP;
		default:
			return DUET_T_NUMBER;
	}
}

bool
udf_columns_parse(const char *spec, udf_column *cols, size_t *ncols, udf_error *err)
{
	const char *p = spec;

	*ncols = 0;
	if (*p == '\0')
		return true;
	for (;;)
	{
		const char *item = p;
		const char *colon = NULL;
		const char *end;
		int			depth = 0;
		udf_column *c;

		/* An item ends at a comma outside parentheses. */
		for (end = p; *end && (*end != ',' || depth > 0); end++)
		{
			if (*end == '(')
				depth++;
			else if (*end == ')')
				depth--;
			else if (*end == ':' && !colon && depth == 0)
				colon = end;
		}
		if (*ncols == UDF_MAX_COLUMNS)
			return udf_fail(err, "more than %d columns", UDF_MAX_COLUMNS);
		c = &cols[*ncols];
		if (colon)
		{
			size_t		n = 0;

			for (const char *q = item; q < colon; q++)
			{
				int			ch = (unsigned char) *q;

				if (ch == '%' && q + 2 < colon && udf_hex_digit(q[1]) >= 0 && udf_hex_digit(q[2]) >= 0)
				{
					ch = udf_hex_digit(q[1]) * 16 + udf_hex_digit(q[2]);
					q += 2;
				}
				if (n + 1 >= UDF_MAX_NAME)
					return udf_fail(err, "column name longer than %d bytes", UDF_MAX_NAME - 1);
				c->name[n++] = (char) ch;
			}
			c->name[n] = '\0';
			if (n == 0)
				return udf_fail(err, "empty column name in \"%s\"", spec);
			item = colon + 1;
		}
		else
			snprintf(c->name, sizeof(c->name), "c%zu", *ncols + 1);
		if (!udf_type_parse(item, (size_t) (end - item), &c->type, err))
			return false;
		for (size_t i = 0; i < *ncols; i++)
			if (strcmp(cols[i].name, c->name) == 0)
				return udf_fail(err, "duplicate column name \"%s\"", c->name);
		(*ncols)++;
		if (*end == '\0')
			return true;
		p = end + 1;
	}
}

static bool
parse_signed(const char *text, int64_t lo, int64_t hi, int64_t *out)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (end == text || *end != '\0' || errno != 0 || isspace((unsigned char) text[0]))
		return false;
	if (v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* hi at most INT64_MAX: a UInt64 beyond it is not a formula value (*beyond set) */
static bool
parse_unsigned(const char *text, uint64_t hi, int64_t *out, bool *beyond)
{
	char	   *end;
	unsigned long long v;

	errno = 0;
	if (text[0] == '-' || isspace((unsigned char) text[0]))
		return false;
	v = strtoull(text, &end, 10);
	if (end == text || *end != '\0' || errno != 0)
		return false;
	if (v > (unsigned long long) INT64_MAX && hi == UINT64_MAX)
	{
		*beyond = true;
		return false;
	}
	if (v > hi)
		return false;
	*out = (int64_t) v;
	return true;
}

bool
udf_check_utf8(const udf_column *col, const char *s, size_t len, udf_error *err)
{
	if (col->any_bytes || duet_utf8_valid(s, len))
		return true;
	return udf_fail(err, "invalid UTF-8 in String value of column %s", col->name);
}

bool
udf_parse_text(const udf_column *col, const char *text, size_t len, duet_value *out, udf_error *err)
{
	double		d = 0;
	int64_t		iv = 0;
	bool		ok,
				is_int = false,
				beyond = false;

	if (col->type.base == UDF_STRING)
	{
		*out = duet_string(text, len);
		return udf_check_utf8(col, text, len, err);
	}
	if (strlen(text) != len)
		return udf_fail(err, "NUL byte in %s value of column %s", "numeric", col->name);
	if (col->type.base == UDF_DATE || col->type.base == UDF_DATETIME)
	{
		/* ClickHouse's text, in UTC (docs/calc.md); its zero value prints as 0000-00-00 */
		bool		is_date = col->type.base == UDF_DATE;

		if (strcmp(text, is_date ? "0000-00-00" : "0000-00-00 00:00:00") == 0)
			*out = is_date ? duet_date(0) : duet_timestamp(0);
		else if (!duet_parse_time(text, len, is_date ? DUET_T_DATE : DUET_T_TIMESTAMP, out))
			return udf_fail(err, "invalid %s value \"%.40s\" in column %s",
							is_date ? "Date" : "DateTime", text, col->name);
		return true;
	}
	if (udf_parse_counter(col, text, len, out))
		return true;
	switch (col->type.base)
	{
		case UDF_FLOAT64:
		case UDF_FLOAT32:
			/* strtod's grammar in the C locale, decimal text without strtod (calc/number.c) */
			ok = len > 0 && duet_parse_number(text, len, &d) == len &&
				!isspace((unsigned char) text[0]);
			/* the value ClickHouse holds is the float nearest the text, as RowBinary would carry */
			if (col->type.base == UDF_FLOAT32)
				d = (double) (float) d;
			break;
		case UDF_INT8:
			ok = is_int = parse_signed(text, -128, 127, &iv);
			break;
		case UDF_INT16:
			ok = is_int = parse_signed(text, -32768, 32767, &iv);
			break;
		case UDF_INT32:
			ok = is_int = parse_signed(text, INT32_MIN, INT32_MAX, &iv);
			break;
		case UDF_INT64:
			ok = is_int = parse_signed(text, INT64_MIN, INT64_MAX, &iv);
			break;
		case UDF_UINT8:
			ok = is_int = parse_unsigned(text, 255, &iv, &beyond);
			break;
		case UDF_UINT16:
			ok = is_int = parse_unsigned(text, 65535, &iv, &beyond);
			break;
		case UDF_UINT32:
			ok = is_int = parse_unsigned(text, 4294967295u, &iv, &beyond);
			break;
		case UDF_UINT64:
			ok = is_int = parse_unsigned(text, UINT64_MAX, &iv, &beyond);
			break;
		case UDF_BOOL:
			if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0)
				*out = duet_bool(true);
			else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
				*out = duet_bool(false);
			else
				return udf_fail(err, "invalid Bool value \"%.40s\" in column %s", text, col->name);
			return true;
		case UDF_NOTHING:
			return udf_fail(err, "non-NULL value in column %s of type Nullable(Nothing)", col->name);
		default:
			ok = false;
	}
	if (beyond)
		return udf_fail(err, "UInt64 value %.40s in column %s is beyond the formula integers (2^63 - 1)",
						text, col->name);
	if (!ok)
	{
		char		tn[64];

		return udf_fail(err, "invalid %s value \"%.40s\" in column %s",
						udf_type_name(col->type, tn, sizeof(tn)), text, col->name);
	}
	if (is_int)
	{
		*out = duet_int(iv);
		return true;
	}
	/* ClickHouse sends inf and nan; the engine's numbers are finite, so they arrive as NULL. */
	*out = isfinite(d) ? duet_number(d) : duet_null();
	return true;
}

/* Text formats: the row's collected fields (start/flen/is_null) as values of their columns. */
bool
udf_row_convert(udf_row *row, const udf_column *cols, size_t ncols, udf_error *err)
{
	for (size_t i = 0; i < ncols; i++)
	{
		if (row->is_null[i])
		{
			if (!cols[i].type.nullable)
				return udf_fail(err, "row %llu: NULL in column %s of non-Nullable type",
								(unsigned long long) row->number, cols[i].name);
			row->vals[i] = duet_null();
			continue;
		}
		if (!udf_parse_text(&cols[i], row->text + row->start[i], row->flen[i], &row->vals[i], err))
		{
			char		msg[sizeof(err->message)];

			memcpy(msg, err->message, sizeof(msg));
			return udf_fail(err, "row %llu: %s", (unsigned long long) row->number, msg);
		}
	}
	return true;
}

void
udf_write_number(udf_out *out, double d)
{
	char		buf[40];
	size_t		n;

	if (isnan(d))
	{
		udf_out_write(out, "nan", 3);
		return;
	}
	/*
	 * Integral values below 1e15 are printed by duet_format_number in plain digits ("3", "-120",
	 * never "-0"); doing that here skips Ryu for the common counters. test_udf_codecs checks this
	 * path against duet_format_number itself.
	 */
	if (d > -1e15 && d < 1e15 && d == (double) (int64_t) d)
	{
		int64_t		v = (int64_t) d;
		uint64_t	u = v < 0 ? (uint64_t) -v : (uint64_t) v;
		char	   *p = buf + sizeof(buf);

		do
		{
			*--p = (char) ('0' + u % 10);
			u /= 10;
		} while (u);
		if (v < 0)
			*--p = '-';
		udf_out_write(out, p, (size_t) (buf + sizeof(buf) - p));
		return;
	}
	/* straight into the output buffer (its NUL too, within the reservation) */
	if (out->len + sizeof(buf) > out->cap && !udf_out_reserve(out, sizeof(buf)))
		return;
	n = duet_format_number(d, (char *) out->buf + out->len, sizeof(buf));
	out->len += n;
}

duet_value
udf_value_for_column(const udf_column *col, const duet_value *v)
{
	duet_value	r = *v;

	if (r.type == DUET_T_NULL && !col->type.nullable)
	{
		switch (col->type.base)
		{
			case UDF_FLOAT64:
			case UDF_FLOAT32:
				r.type = DUET_T_NUMBER;
				r.u.num = NAN;
				break;
			case UDF_STRING:
				r = duet_string("", 0);
				break;
			case UDF_BOOL:
				r = duet_bool(false);
				break;
			case UDF_DATE:
				r = duet_date(0);	/* ClickHouse's default Date, as 0 is a number's */
				break;
			case UDF_DATETIME:
				r = duet_timestamp(0);
				break;
			default:
				r = duet_number(0);
		}
	}
	else if (r.type == DUET_T_DATE && col->type.base == UDF_DATETIME)
		r = duet_timestamp(r.u.i * 86400 * 1000000);
	else if (r.type == DUET_T_TIMESTAMP && col->type.base == UDF_DATETIME)
	{
		/* a DateTime holds whole seconds: the timestamp's second (floor, as toDateTime does) */
		int64_t		us = r.u.i % 1000000;

		r.u.i -= us < 0 ? us + 1000000 : us;
	}
	else if (r.type == DUET_T_BOOL && col->type.base != UDF_BOOL && col->type.base != UDF_STRING)
		r = duet_number(r.u.boolean ? 1 : 0);
	else if (r.type == DUET_T_NUMBER && col->type.base == UDF_BOOL)
		r = duet_bool(r.u.num != 0);
	else if (r.type == DUET_T_INT)
	{
		/* an integer result: exact in integer columns, the nearest double in float ones */
		if (col->type.base == UDF_BOOL)
			r = duet_bool(r.u.i != 0);
		else if (col->type.base == UDF_FLOAT64 || col->type.base == UDF_FLOAT32)
			r = duet_number((double) r.u.i);
	}
	return r;
}

void
udf_write_int(udf_out *out, int64_t i)
{
	char		buf[24];

	udf_out_write(out, buf, duet_format_int(i, buf, sizeof(buf)));
}

/* A date or timestamp as its text ("2026-12-02", "2026-12-02 10:00:00"), in quotes when quoted. */
void
udf_write_time(udf_out *out, const duet_value *v, bool quoted)
{
	char		buf[40];
	size_t		n = duet_format_time_value(v, buf, sizeof(buf));

	if (quoted)
		udf_out_byte(out, '"');
	udf_out_write(out, buf, n);
	if (quoted)
		udf_out_byte(out, '"');
}

bool
udf_result_type_supported(udf_type t)
{
	switch (t.base)
	{
		case UDF_FLOAT64:
		case UDF_INT64:
		case UDF_UINT64:
		case UDF_UINT8:
		case UDF_BOOL:
		case UDF_STRING:
		case UDF_DATE:
		case UDF_DATETIME:
			return true;
		default:
			return false;
	}
}

bool
udf_check_int_result(const udf_column *col, const duet_value *v, udf_error *err)
{
	char		tn[64];
	char		num[40];

	if (col->type.base != UDF_INT64 && col->type.base != UDF_UINT64)
		return true;
	udf_type_name(col->type, tn, sizeof(tn));
	if (v->type == DUET_T_NUMBER)
	{
		duet_format_number(v->u.num, num, sizeof(num));
		return udf_fail(err, "error:type: the formula returned the double %s, not an integer, for "
						"column %s of type %s", num, col->name, tn);
	}
	if (v->type == DUET_T_INT && col->type.base == UDF_UINT64 && v->u.i < 0)
		return udf_fail(err, "error:range: the formula returned %lld, outside column %s of type %s",
						(long long) v->u.i, col->name, tn);
	return true;
}

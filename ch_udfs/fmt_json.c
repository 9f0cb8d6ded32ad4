/*
 * fmt_json.c — ClickHouse JSONEachRow: one object per line, keys = argument names. 64-bit
 * integers may arrive quoted (output_format_json_quote_64bit_integers), so numeric columns accept
 * JSON strings holding a number. Parsing is jansson's, which also rejects invalid UTF-8.
 */
#include <jansson.h>
#include <string.h>

#include "udf.h"

static udf_read_status
json_value(const udf_column *col, json_t *j, udf_row *row, size_t i, udf_error *err)
{
	char		tn[64];

	switch (json_typeof(j))
	{
		case JSON_NULL:
			if (!col->type.nullable)
				return udf_fail(err, "row %llu: null for non-Nullable key \"%s\"",
								(unsigned long long) row->number, col->name), UDF_FAIL;
			row->vals[i] = duet_null();
			return UDF_ROW;
		case JSON_STRING:
			if (col->type.base == UDF_STRING)
			{
				row->vals[i] = duet_string(json_string_value(j), json_string_length(j));
				return UDF_ROW;
			}
			if (!udf_parse_text(col, json_string_value(j), json_string_length(j), &row->vals[i], err))
			{
				char		msg[sizeof(err->message)];

				memcpy(msg, err->message, sizeof(msg));
				return udf_fail(err, "row %llu: %s", (unsigned long long) row->number, msg), UDF_FAIL;
			}
			return UDF_ROW;
		case JSON_INTEGER:
			if (col->type.base == UDF_BOOL && (json_integer_value(j) == 0 || json_integer_value(j) == 1))
			{
				row->vals[i] = duet_bool(json_integer_value(j) == 1);
				return UDF_ROW;
			}
			if (col->type.base == UDF_STRING || col->type.base == UDF_BOOL || col->type.base == UDF_NOTHING)
				break;
			/* an integer for an integer column (exact), the nearest double for a float one */
			if (col->type.base == UDF_FLOAT64 || col->type.base == UDF_FLOAT32)
				row->vals[i] = duet_number(col->type.base == UDF_FLOAT32 ? (double) (float) json_integer_value(j)
										   : (double) json_integer_value(j));
			else
			{
				char		text[24];

				/* through the text rules: the column's range, UInt64 beyond 2^63 - 1 */
				duet_format_int(json_integer_value(j), text, sizeof(text));
				if (!udf_parse_text(col, text, strlen(text), &row->vals[i], err))
				{
					char		msg[sizeof(err->message)];

					memcpy(msg, err->message, sizeof(msg));
					return udf_fail(err, "row %llu: %s", (unsigned long long) row->number, msg), UDF_FAIL;
				}
			}
			return UDF_ROW;
		case JSON_REAL:
			if (col->type.base == UDF_STRING || col->type.base == UDF_BOOL || col->type.base == UDF_NOTHING)
				break;
			row->vals[i] = duet_number(json_real_value(j));
			return UDF_ROW;
		case JSON_TRUE:
		case JSON_FALSE:
			if (col->type.base == UDF_BOOL)
				row->vals[i] = duet_bool(json_is_true(j));
			else if (col->type.base == UDF_UINT8)
				row->vals[i] = duet_int(json_is_true(j) ? 1 : 0);
			else
				break;
			return UDF_ROW;
		default:
			break;
	}
	return udf_fail(err, "row %llu: key \"%s\" holds a JSON %s, not a %s",
					(unsigned long long) row->number, col->name,
					json_is_object(j) ? "object" : json_is_array(j) ? "array" :
					json_is_string(j) ? "string" : json_is_boolean(j) ? "boolean" : "number",
					udf_type_name(col->type, tn, sizeof(tn))), UDF_FAIL;
}

static udf_read_status
json_read_row(udf_in *in, const udf_column *cols, size_t ncols, udf_row *row, udf_error *err)
{
	json_error_t jerr;
	json_t	   *doc;
	const char *key;
	json_t	   *val;
	size_t		found = 0;

	if (row->doc)
	{
		json_decref((json_t *) row->doc);
		row->doc = NULL;
	}
	udf_read_status st = udf_row_begin(in, row, err);

	if (st != UDF_ROW)
		return st;
	for (;;)
	{
		int			c;
		const unsigned char *p,
				   *nl;

		if (in->pos == in->end && !udf_in_fill(in))
		{
			if (in->failed)
				return udf_fail(err, "%s", in->failure), UDF_FAIL;
			return udf_fail(err, "row %llu: JSONEachRow input ends inside the row (no newline)",
							(unsigned long long) row->number), UDF_FAIL;
		}
		p = in->buf + in->pos;
		nl = memchr(p, '\n', in->end - in->pos);
		if (!udf_row_append(row, p, nl ? (size_t) (nl - p) : in->end - in->pos, err))
			return UDF_FAIL;
		in->pos = nl ? (size_t) (nl - in->buf) : in->end;
		if (nl)
		{
			c = udf_in_get(in);
			(void) c;
			break;
		}
	}
	doc = json_loadb(row->text, row->len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
	if (!doc)
		return udf_fail(err, "row %llu: invalid JSONEachRow row: %s (column %d)",
						(unsigned long long) row->number, jerr.text, jerr.column), UDF_FAIL;
	row->doc = doc;
	if (!json_is_object(doc))
		return udf_fail(err, "row %llu: a JSONEachRow row must be an object",
						(unsigned long long) row->number), UDF_FAIL;
	json_object_foreach(doc, key, val)
	{
		size_t		i;

		for (i = 0; i < ncols; i++)
			if (strcmp(cols[i].name, key) == 0)
				break;
		if (i == ncols)
			return udf_fail(err, "row %llu: unknown key \"%.64s\"",
							(unsigned long long) row->number, key), UDF_FAIL;
		if (json_value(&cols[i], val, row, i, err) != UDF_ROW)
			return UDF_FAIL;
		found++;
	}
	if (found != ncols)
	{
		for (size_t i = 0; i < ncols; i++)
			if (!json_object_get(doc, cols[i].name))
				return udf_fail(err, "row %llu: missing key \"%s\"",
								(unsigned long long) row->number, cols[i].name), UDF_FAIL;
	}
	return UDF_ROW;
}

/* JSON string with raw bytes kept as they are (as ClickHouse writes them), controls escaped. */
void
udf_write_json_string(udf_out *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t		run = 0;

	udf_out_byte(out, '"');
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
			continue;
		udf_out_write(out, s + run, i - run);
		run = i + 1;
		udf_out_byte(out, '\\');
		switch (c)
		{
			case '"':
			case '\\':
				udf_out_byte(out, c);
				break;
			case '\n':
				udf_out_byte(out, 'n');
				break;
			case '\t':
				udf_out_byte(out, 't');
				break;
			case '\r':
				udf_out_byte(out, 'r');
				break;
			case '\b':
				udf_out_byte(out, 'b');
				break;
			case '\f':
				udf_out_byte(out, 'f');
				break;
			default:
				udf_out_write(out, "u00", 3);
				udf_out_byte(out, (unsigned char) hex[c >> 4]);
				udf_out_byte(out, (unsigned char) hex[c & 15]);
		}
	}
	udf_out_write(out, s + run, len - run);
	udf_out_byte(out, '"');
}

static bool
json_write_row(udf_out *out, const udf_column *cols, const duet_value *vals, size_t n)
{
	udf_out_byte(out, '{');
	for (size_t i = 0; i < n; i++)
	{
		duet_value	w = udf_value_for_column(&cols[i], &vals[i]);

		if (i > 0)
			udf_out_byte(out, ',');
		udf_write_json_string(out, cols[i].name, strlen(cols[i].name));
		udf_out_byte(out, ':');
		switch (w.type)
		{
			case DUET_T_NUMBER:
				/* JSON has no nan: a non-Nullable Float64 NULL is written as null, as ClickHouse does */
				if (w.u.num != w.u.num)
					udf_out_write(out, "null", 4);
				else
					udf_write_number(out, w.u.num);
				break;
			case DUET_T_INT:
				udf_write_int(out, w.u.i);
				break;
			case DUET_T_BOOL:
				if (w.u.boolean)
					udf_out_write(out, "true", 4);
				else
					udf_out_write(out, "false", 5);
				break;
			case DUET_T_STRING:
				udf_write_json_string(out, w.u.str.ptr, w.u.str.len);
				break;
			case DUET_T_DATE:
			case DUET_T_TIMESTAMP:
				udf_write_time(out, &w, true);
				break;
			default:
				udf_out_write(out, "null", 4);
		}
	}
	udf_out_write(out, "}\n", 2);
	return udf_out_row_done(out);
}

/* no block codecs: jansson parses an object at a time (rows go through read_row/write_row) */
const udf_format udf_format_json = {
	.name = "JSONEachRow",
	.read_row = json_read_row,
	.write_row = json_write_row,
};

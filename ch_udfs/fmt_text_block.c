/*
 * fmt_text_block.c — the block reader of TabSeparated and CSV (udf_format.read_rows): whole rows
 * of non-String columns decoded in place from the input buffer, a block at a time.
 *
 * A row is taken here only in its plain form: every field is \N (in a Nullable column) or text
 * without the format's special bytes (TabSeparated: backslash; CSV: quotes, backslash, CR),
 * split by the separator and ended by \n, all within the buffer. Digits take udf_parse_counter
 * straight from the buffer; any other field is copied NUL-terminated into the row buffer for
 * udf_parse_text, the reader's own conversion. Anything else — an escape, a quote, a bad value,
 * a row cut by the buffer's end — stops the block before that row, and the format's read_row
 * reads it (and reports it, when it is wrong): the values and messages are read_row's by
 * construction, and test_udf_codecs compares the two paths byte for byte.
 */
#include <string.h>

#include "udf.h"

/* Bytes that end a field's scan: 1 = the separator or newline, 2 = special (leave the row). */
typedef struct text_stops
{
	unsigned char stop[256];
	bool		ready;
} text_stops;

static const unsigned char *
stops_for(char sep)
{
	static text_stops tsv,
				csv;
	text_stops *t = sep == '\t' ? &tsv : &csv;

	if (!t->ready)
	{
		memset(t->stop, 0, sizeof(t->stop));
		t->stop[(unsigned char) sep] = 1;
		t->stop['\n'] = 1;
		t->stop['\\'] = 2;
		if (sep == ',')
		{
			t->stop['"'] = 2;
			t->stop['\''] = 2;
			t->stop['\r'] = 2;
		}
		t->ready = true;
	}
	return t->stop;
}

/* One field's value, or false to leave the row to read_row. */
static inline bool
field_value(const udf_column *col, const unsigned char *f, size_t len, udf_row *row, duet_value *v)
{
	udf_error	ignored;

	if (len == 2 && f[0] == '\\' && f[1] == 'N')
	{
		if (!col->type.nullable)
			return false;
		*v = duet_null();
		return true;
	}
	if (udf_parse_counter(col, (const char *) f, len, v))
		return true;
	/* not digits: the reader's own conversion, on a NUL-terminated copy */
	row->len = 0;
	if (!udf_row_reserve(row, len + 1, &ignored))
		return false;
	memcpy(row->text, f, len);
	row->text[len] = '\0';
	return udf_parse_text(col, row->text, len, v, &ignored);
}

size_t
udf_text_read_rows(udf_in *in, const udf_column *cols, size_t ncols, duet_value *vals,
				   size_t nstore, size_t stride, size_t max, udf_row *row, char sep)
{
	const unsigned char *stop = stops_for(sep);
	const unsigned char *p = in->buf + in->pos,
			   *e = in->buf + in->end;
	size_t		r = 0;

	if (ncols == 0)
		return 0;
	for (size_t i = 0; i < ncols; i++)
		if (cols[i].type.base == UDF_STRING || cols[i].type.base == UDF_NOTHING)
			return 0;
	for (; r < max; r++)
	{
		const unsigned char *q = p;

		for (size_t i = 0; i < ncols; i++)
		{
			const unsigned char *f = q;
			const unsigned char delim = i + 1 == ncols ? '\n' : (unsigned char) sep;
			duet_value	v;
			uint64_t	digits = 0;

			/* the common field, a counter: its digits read as they are scanned */
			while (q < e && (unsigned) (*q - '0') < 10)
				digits = digits * 10 + (uint64_t) (*q++ - '0');
			if (q < e && *q == delim && UDF_COUNTER_DIGITS(f, (size_t) (q - f)) &&
				udf_counter_value(&cols[i], digits, &v))
			{
				if (i < nstore)
					vals[i * stride + r] = v;
				q++;
				continue;
			}
			/*
			 * A backslash starts an escape except in "\N", the whole field; the scan goes past
			 * it and the field is checked below.
			 */
			while (q < e && stop[*q] == 0)
				q++;
			if (q < e && *q == '\\' && q == f && q + 1 < e && q[1] == 'N')
				q += 2;
			if (q == e || stop[*q] != 1)
				return r;		/* cut by the buffer's end, or a special byte: read_row's */
			if (*q != delim)
				return r;		/* too few or too many fields: read_row says which */
			if (!field_value(&cols[i], f, (size_t) (q - f), row, &v))
				return r;
			if (i < nstore)
				vals[i * stride + r] = v;
			q++;
		}
		p = q;
		in->pos = (size_t) (p - in->buf);
		row->number++;
	}
	return r;
}

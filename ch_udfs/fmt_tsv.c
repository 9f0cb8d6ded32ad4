/*
 * fmt_tsv.c — ClickHouse TabSeparated: fields split by \t, rows ended by \n, NULL as \N, and
 * escapes \b \f \r \n \t \0 \' \\ (plus \a \v \e \xHH; any other escaped char stands for itself,
 * as in ClickHouse's reader).
 */
#include <string.h>

#include "udf.h"

/* Reads the field's escape after a backslash; -1 means \N (NULL), -2 a truncated input. */
static int
read_escape(udf_in *in)
{
	int			c = udf_in_get(in);
	int			h1,
				h2;

	switch (c)
	{
		case -1:
			return -2;
		case 'b':
			return '\b';
		case 'f':
			return '\f';
		case 'r':
			return '\r';
		case 'n':
			return '\n';
		case 't':
			return '\t';
		case '0':
			return '\0';
		case 'a':
			return '\a';
		case 'v':
			return '\v';
		case 'e':
			return 0x1b;
		case 'N':
			return -1;
		case 'x':
			h1 = udf_hex_digit(udf_in_peek(in));
			if (h1 < 0)
				return 'x';
			udf_in_get(in);
			h2 = udf_hex_digit(udf_in_peek(in));
			if (h2 < 0)
				return h1;
			udf_in_get(in);
			return h1 * 16 + h2;
		default:
			return c;
	}
}

static udf_read_status
tsv_read_row(udf_in *in, const udf_column *cols, size_t ncols, udf_row *row, udf_error *err)
{
	udf_read_status st = udf_row_begin(in, row, err);

	if (st != UDF_ROW)
		return st;
	for (size_t i = 0; i < ncols; i++)
	{
		bool		last = (i == ncols - 1);

		row->start[i] = row->len;
		row->is_null[i] = false;
		for (;;)
		{
			int			c;

			/* Copy the plain run in one go; stop at a tab, newline or backslash. */
			if (in->pos < in->end)
			{
				const unsigned char *p = in->buf + in->pos;
				const unsigned char *e = in->buf + in->end;
				const unsigned char *q = p;

				while (q < e && *q != '\t' && *q != '\n' && *q != '\\')
					q++;
				if (q > p)
				{
					if (row->is_null[i])
						return udf_fail(err, "row %llu: text after \\N in column %s",
										(unsigned long long) row->number, cols[i].name), UDF_FAIL;
					if (!udf_row_append(row, p, (size_t) (q - p), err))
						return UDF_FAIL;
					in->pos += (size_t) (q - p);
				}
			}
			c = udf_in_get(in);
			if (c < 0)
				return udf_row_truncated(in, row, "TabSeparated", i, ncols, err);
			if (c == '\t' || c == '\n')
			{
				if (c == '\t' && last)
					return udf_fail(err, "row %llu: more than %zu TabSeparated columns",
									(unsigned long long) row->number, ncols), UDF_FAIL;
				if (c == '\n' && !last)
					return udf_fail(err, "row %llu: %zu TabSeparated columns, expected %zu",
									(unsigned long long) row->number, i + 1, ncols), UDF_FAIL;
				break;
			}
			if (c != '\\')
			{
				/* the plain run continued past the end of the buffer */
				if (row->is_null[i])
					return udf_fail(err, "row %llu: text after \\N in column %s",
									(unsigned long long) row->number, cols[i].name), UDF_FAIL;
				if (!udf_row_putc(row, (char) c, err))
					return UDF_FAIL;
				continue;
			}
			c = read_escape(in);
			if (c == -2)
				return udf_row_truncated(in, row, "TabSeparated", i, ncols, err);
			if (row->is_null[i] || (c == -1 && row->len != row->start[i]))
				return udf_fail(err, "row %llu: \\N must be the whole field (column %s)",
								(unsigned long long) row->number, cols[i].name), UDF_FAIL;
			if (c == -1)
				row->is_null[i] = true;
			else if (!udf_row_putc(row, (char) c, err))
				return UDF_FAIL;
		}
		row->flen[i] = row->len - row->start[i];
		if (!udf_row_putc(row, '\0', err))
			return UDF_FAIL;
	}
	return udf_row_convert(row, cols, ncols, err) ? UDF_ROW : UDF_FAIL;
}

void
udf_write_tsv_string(udf_out *out, const char *s, size_t len)
{
	size_t		run = 0;

	for (size_t i = 0; i < len; i++)
	{
		char		esc;

		switch (s[i])
		{
			case '\b':
				esc = 'b';
				break;
			case '\f':
				esc = 'f';
				break;
			case '\n':
				esc = 'n';
				break;
			case '\r':
				esc = 'r';
				break;
			case '\t':
				esc = 't';
				break;
			case '\0':
				esc = '0';
				break;
			case '\'':
				esc = '\'';
				break;
			case '\\':
				esc = '\\';
				break;
			default:
				continue;
		}
		udf_out_write(out, s + run, i - run);
		udf_out_byte(out, '\\');
		udf_out_byte(out, (unsigned char) esc);
		run = i + 1;
	}
	udf_out_write(out, s + run, len - run);
}

/* A value in TabSeparated/CSV text form; strings are left to the caller's quoting. */
static void
write_text_value(udf_out *out, const udf_column *col, const duet_value *v, bool csv)
{
	duet_value	w = udf_value_for_column(col, v);

	switch (w.type)
	{
		case DUET_T_NULL:
			udf_out_write(out, "\\N", 2);
			break;
		case DUET_T_NUMBER:
			udf_write_number(out, w.u.num);
			break;
		case DUET_T_INT:
			udf_write_int(out, w.u.i);
			break;
		case DUET_T_DATE:
		case DUET_T_TIMESTAMP:
			udf_write_time(out, &w, csv);
			break;
		case DUET_T_BOOL:
			if (w.u.boolean)
				udf_out_write(out, "true", 4);
			else
				udf_out_write(out, "false", 5);
			break;
		case DUET_T_STRING:
			if (!csv)
				udf_write_tsv_string(out, w.u.str.ptr, w.u.str.len);
			else
			{
				size_t		run = 0;

				udf_out_byte(out, '"');
				for (size_t i = 0; i < w.u.str.len; i++)
					if (w.u.str.ptr[i] == '"')
					{
						udf_out_write(out, w.u.str.ptr + run, i + 1 - run);
						udf_out_byte(out, '"');
						run = i + 1;
					}
				udf_out_write(out, w.u.str.ptr + run, w.u.str.len - run);
				udf_out_byte(out, '"');
			}
			break;
		default:
			udf_out_write(out, "\\N", 2);
	}
}

static bool
tsv_write_row(udf_out *out, const udf_column *cols, const duet_value *vals, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		if (i > 0)
			udf_out_byte(out, '\t');
		write_text_value(out, &cols[i], &vals[i], false);
	}
	udf_out_byte(out, '\n');
	return udf_out_row_done(out);
}

/* CSV shares the value writer; its reader lives in fmt_csv.c. */
bool		udf_csv_write_row(udf_out *out, const udf_column *cols, const duet_value *vals, size_t n);

bool
udf_csv_write_row(udf_out *out, const udf_column *cols, const duet_value *vals, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		if (i > 0)
			udf_out_byte(out, ',');
		write_text_value(out, &cols[i], &vals[i], true);
	}
	udf_out_byte(out, '\n');
	return udf_out_row_done(out);
}

bool
udf_text_write_col(udf_out *out, const udf_column *col, const duet_value *vals, size_t n, bool csv)
{
	for (size_t k = 0; k < n; k++)
	{
		/* a number in a column that is not Bool: write_text_value's own path, without the copy */
		if (vals[k].type == DUET_T_NUMBER && col->type.base != UDF_BOOL)
			udf_write_number(out, vals[k].u.num);
		else
			write_text_value(out, col, &vals[k], csv);
		udf_out_byte(out, '\n');
	}
	return udf_out_row_done(out);
}

static size_t
tsv_read_rows(udf_in *in, const udf_column *cols, size_t ncols, duet_value *vals, size_t nstore,
			  size_t stride, size_t max, udf_row *row)
{
	return udf_text_read_rows(in, cols, ncols, vals, nstore, stride, max, row, '\t');
}

static bool
tsv_write_col(udf_out *out, const udf_column *col, const duet_value *vals, size_t n)
{
	return udf_text_write_col(out, col, vals, n, false);
}

const udf_format udf_format_tsv = {
	.name = "TabSeparated",
	.read_row = tsv_read_row,
	.write_row = tsv_write_row,
	.read_rows = tsv_read_rows,
	.write_col = tsv_write_col,
};

const udf_format *
udf_format_find(const char *name)
{
	if (strcmp(name, "TabSeparated") == 0 || strcmp(name, "TSV") == 0)
		return &udf_format_tsv;
	if (strcmp(name, "CSV") == 0)
		return &udf_format_csv;
	if (strcmp(name, "JSONEachRow") == 0)
		return &udf_format_json;
	if (strcmp(name, "RowBinary") == 0)
		return &udf_format_rowbinary;
	return NULL;
}

/*
 * fmt_csv.c — ClickHouse CSV: fields split by ',', rows ended by \n (or \r\n); strings in double
 * quotes with "" for a quote (single quotes accepted too, as ClickHouse's reader does by default);
 * NULL is an unquoted \N. The writer shares fmt_tsv.c's value writer.
 */
#include "udf.h"

bool		udf_csv_write_row(udf_out *out, const udf_column *cols, const duet_value *vals, size_t n);

static udf_read_status
csv_read_row(udf_in *in, const udf_column *cols, size_t ncols, udf_row *row, udf_error *err)
{
	udf_read_status st = udf_row_begin(in, row, err);

	if (st != UDF_ROW)
		return st;
	for (size_t i = 0; i < ncols; i++)
	{
		bool		last = (i == ncols - 1);
		int			c = udf_in_peek(in);

		row->start[i] = row->len;
		row->is_null[i] = false;
		if (c == '"' || c == '\'')
		{
			int			quote = udf_in_get(in);

			for (;;)
			{
				c = udf_in_get(in);
				if (c < 0)
					return udf_row_truncated(in, row, "CSV", i, ncols, err);
				if (c == quote)
				{
					if (udf_in_peek(in) != quote)
						break;
					udf_in_get(in);
				}
				if (!udf_row_putc(row, (char) c, err))
					return UDF_FAIL;
			}
			c = udf_in_get(in);
		}
		else
		{
			for (;;)
			{
				c = udf_in_get(in);
				if (c < 0 || c == ',' || c == '\n' || c == '\r')
					break;
				if (c == '"')
					return udf_fail(err, "row %llu: quote inside an unquoted CSV field (column %zu)",
									(unsigned long long) row->number, i + 1), UDF_FAIL;
				if (!udf_row_putc(row, (char) c, err))
					return UDF_FAIL;
			}
			if (row->len - row->start[i] == 2 && row->text[row->start[i]] == '\\' &&
				row->text[row->start[i] + 1] == 'N')
			{
				row->is_null[i] = true;
				row->len = row->start[i];
			}
		}
		if (c == '\r')
		{
			if (udf_in_get(in) != '\n')
				return udf_fail(err, "row %llu: carriage return not followed by a newline",
								(unsigned long long) row->number), UDF_FAIL;
			c = '\n';
		}
		if (c < 0)
			return udf_row_truncated(in, row, "CSV", i, ncols, err);
		if (c == ',' && last)
			return udf_fail(err, "row %llu: more than %zu CSV columns",
							(unsigned long long) row->number, ncols), UDF_FAIL;
		if (c == '\n' && !last)
			return udf_fail(err, "row %llu: %zu CSV columns, expected %zu",
							(unsigned long long) row->number, i + 1, ncols), UDF_FAIL;
		if (c != ',' && c != '\n')
			return udf_fail(err, "row %llu: unexpected text after a quoted CSV field (column %zu)",
							(unsigned long long) row->number, i + 1), UDF_FAIL;
		row->flen[i] = row->len - row->start[i];
		if (!udf_row_putc(row, '\0', err))
			return UDF_FAIL;
	}
	return udf_row_convert(row, cols, ncols, err) ? UDF_ROW : UDF_FAIL;
}

static size_t
csv_read_rows(udf_in *in, const udf_column *cols, size_t ncols, duet_value *vals, size_t nstore,
			  size_t stride, size_t max, udf_row *row)
{
	return udf_text_read_rows(in, cols, ncols, vals, nstore, stride, max, row, ',');
}

static bool
csv_write_col(udf_out *out, const udf_column *col, const duet_value *vals, size_t n)
{
	return udf_text_write_col(out, col, vals, n, true);
}

const udf_format udf_format_csv = {
	.name = "CSV",
	.read_row = csv_read_row,
	.write_row = udf_csv_write_row,
	.read_rows = csv_read_rows,
	.write_col = csv_write_col,
};

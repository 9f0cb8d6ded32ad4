/*
 * udf_protocol.c — the block loop ClickHouse drives (DESIGN.md §9).
 *
 * executable: rows until EOF. executable_pool without send_chunk_header: the same loop; the
 * process lives on and ClickHouse reads exactly N rows per block, which works because each input
 * row yields exactly one output row and output is flushed before any blocking read. With
 * send_chunk_header each block is "<rows>\n" then that many rows; the block's results are flushed
 * as soon as its last row is evaluated. A header that disagrees with the data is an error.
 */
#include <stdio.h>
#include <string.h>

#include "udf.h"

static bool
row_error(udf_error *err, const udf_row *row)
{
	char		msg[sizeof(err->message)];

	memcpy(msg, err->message, sizeof(msg));
	return udf_fail(err, "row %llu: %s", (unsigned long long) row->number, msg);
}

static bool
one_row(const udf_protocol *proto, udf_eval *ev, udf_out *out, udf_row *row, udf_error *err)
{
	duet_value	result;

	if (!udf_eval_row(ev, row->vals, &result, err))
		return row_error(err, row);
	if (!proto->format->write_row(out, &ev->result, &result, 1))
		return udf_fail(err, "%s", out->failure);
	return true;
}

/* Reads "<digits>\n"; false at a clean EOF (*eof set) or on a malformed header. */
static bool
read_chunk_header(udf_in *in, uint64_t max_rows, uint64_t *rows, bool *eof, udf_error *err)
{
	uint64_t	n = 0;
	int			digits = 0;
	int			c;

	*eof = false;
	if (udf_in_peek(in) < 0)
	{
		if (in->failed)
			return udf_fail(err, "%s", in->failure);
		*eof = true;
		return false;
	}
	while ((c = udf_in_get(in)) >= '0' && c <= '9')
	{
		if (++digits > 19)
			return udf_fail(err, "chunk header: row count too long");
		n = n * 10 + (uint64_t) (c - '0');
	}
	if (c == '\r' && udf_in_peek(in) == '\n')
		c = udf_in_get(in);
	if (digits == 0 || c != '\n')
	{
		if (c < 0 && in->failed)
			return udf_fail(err, "%s", in->failure);
		return udf_fail(err, "chunk header: expected a row count and a newline, got %s",
						c < 0 ? "end of input" : "other bytes (is send_chunk_header set on both sides?)");
	}
	if (n > max_rows)
		return udf_fail(err, "chunk header: %llu rows exceeds the limit of %llu",
						(unsigned long long) n, (unsigned long long) max_rows);
	*rows = n;
	return true;
}

bool
udf_run(const udf_protocol *proto, udf_eval *ev, udf_in *in, udf_out *out, udf_row *row,
		udf_error *err)
{
	udf_read_status st;

	if (!proto->chunk_header)
	{
		while ((st = proto->format->read_row(in, ev->args, ev->nargs, row, err)) == UDF_ROW)
			if (!one_row(proto, ev, out, row, err))
				return false;
		if (st == UDF_FAIL)
			return false;
		if (!udf_out_flush(out))
			return udf_fail(err, "%s", out->failure);
		return true;
	}
	for (uint64_t block = 1;; block++)
	{
		uint64_t	rows = 0;
		bool		eof;

		if (!read_chunk_header(in, proto->max_chunk_rows, &rows, &eof, err))
		{
			if (eof)
				return true;
			{
				char		msg[sizeof(err->message)];

				memcpy(msg, err->message, sizeof(msg));
				return udf_fail(err, "block %llu: %s", (unsigned long long) block, msg);
			}
		}
		for (uint64_t i = 0; i < rows; i++)
		{
			st = proto->format->read_row(in, ev->args, ev->nargs, row, err);
			if (st == UDF_FAIL)
				return false;
			if (st == UDF_END)
				return udf_fail(err, "block %llu: chunk header announced %llu rows, input ended after %llu",
								(unsigned long long) block, (unsigned long long) rows,
								(unsigned long long) i);
			if (!one_row(proto, ev, out, row, err))
				return false;
		}
		if (!udf_out_flush(out))
			return udf_fail(err, "%s", out->failure);
	}
}

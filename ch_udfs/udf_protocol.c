/*
 * udf_protocol.c — the block loop ClickHouse drives (DESIGN.md §9).
 *
 * executable: rows until EOF. executable_pool without send_chunk_header: the same loop; the
 * process lives on and ClickHouse reads exactly N rows per block, which works because each input
 * row yields exactly one output row and output is flushed before any blocking read. With
 * send_chunk_header each block is "<rows>\n" then that many rows; the block's results are flushed
 * as soon as its last row is evaluated. A header that disagrees with the data is an error.
 *
 * Metric functions over non-String arguments are evaluated a batch at a time (duet_eval_batch over
 * the batch's columns): up to BATCH_ROWS rows are collected, and the batch is evaluated and written
 * when it is full, at the end of a chunk or input, before an error is reported, and whenever the
 * input buffer is empty at a row boundary — the next read may block, and ClickHouse may be
 * waiting for these rows' results first. The output bytes are those of row-at-a-time evaluation.
 * Formats with block codecs (udf_format.read_rows/write_col) decode runs of whole rows straight
 * into the batch's columns and write a batch's results in one pass; a row the block reader leaves
 * (not whole in the buffer, escaped, bad) is read by read_row, so values and messages stay its.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "udf.h"

#define BATCH_ROWS 1024

typedef struct batch
{
	duet_value *cols;			/* nvars columns of BATCH_ROWS values, column-major */
	duet_value *res;
	size_t		nvars;
	size_t		n;				/* rows collected */
	uint64_t	first;			/* input row number of the first */
} batch;

static bool
row_error_at(udf_error *err, uint64_t number)
{
	char		msg[sizeof(err->message)];

	memcpy(msg, err->message, sizeof(msg));
	return udf_fail(err, "row %llu: %s", (unsigned long long) number, msg);
}

static bool
row_error(udf_error *err, const udf_row *row)
{
	return row_error_at(err, row->number);
}

/* n results, one per row: the format's block writer, else its row writer per row. */
static bool
write_results(const udf_protocol *proto, const udf_eval *ev, udf_out *out, const duet_value *res,
			  size_t n)
{
	if (n == 0)
		return true;
	if (proto->format->write_col)
		return proto->format->write_col(out, &ev->result, res, n);
	for (size_t k = 0; k < n; k++)
		if (!proto->format->write_row(out, &ev->result, &res[k], 1))
			return false;
	return true;
}

/* Evaluates and writes the collected rows, in order; the first failing row's error. */
static bool
batch_flush(const udf_protocol *proto, udf_eval *ev, udf_out *out, batch *b, udf_error *err)
{
	duet_error	derr;
	size_t		done = 0;
	duet_errclass cls;

	if (b->n == 0)
		return true;
	cls = duet_eval_batch(ev->program, b->cols, BATCH_ROWS, b->n, ev->vm, b->res, &derr, &done);
	for (size_t k = 0; k < done; k++)
	{
		/* a number or NULL always fits a Float64 result: the check is for the other cases */
		if (ev->result.type.base == UDF_FLOAT64 &&
			(b->res[k].type == DUET_T_NUMBER || b->res[k].type == DUET_T_NULL))
			continue;
		if (!udf_eval_check(ev, &b->res[k], err))
		{
			udf_error	saved = *err;

			/* the rows before it are written first */
			if (!write_results(proto, ev, out, b->res, k))
				return udf_fail(err, "%s", out->failure);
			*err = saved;
			return row_error_at(err, b->first + k);
		}
	}
	if (!write_results(proto, ev, out, b->res, done))
		return udf_fail(err, "%s", out->failure);
	if (cls != DUET_OK)
	{
		udf_eval_fail(err, &derr);
		return row_error_at(err, b->first + done);
	}
	b->n = 0;
	return true;
}

/* Flushes pending rows before an error already in err is reported; theirs comes first. */
static bool
batch_flush_then_fail(const udf_protocol *proto, udf_eval *ev, udf_out *out, batch *b,
					  udf_error *err)
{
	udf_error	saved = *err;

	if (b && !batch_flush(proto, ev, out, b, err))
		return false;
	*err = saved;
	return false;
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

/*
 * Reads "<digits>\n"; false at a clean EOF (*eof set) or on a malformed header. prev_rows is the
 * previous block's row count (-1 before the first): bytes where its successor's header should be
 * are rows it did not announce.
 */
static bool
read_chunk_header(udf_in *in, uint64_t max_rows, long long prev_rows, uint64_t *rows, bool *eof,
				  udf_error *err)
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
		if (prev_rows >= 0 && c >= 0)
			return udf_fail(err, "more rows than the %lld its chunk header announced (expected the "
							"next chunk header)", prev_rows);
		return udf_fail(err, "chunk header: expected a row count and a newline, got %s",
						c < 0 ? "end of input" : "other bytes (is send_chunk_header set on both sides?)");
	}
	if (n > max_rows)
		return udf_fail(err, "chunk header: %llu rows exceeds the limit of %llu",
						(unsigned long long) n, (unsigned long long) max_rows);
	*rows = n;
	return true;
}

/*
 * now() and today() of the rows that follow: the time their block arrived (docs/calc.md). Set per
 * chunk with send_chunk_header; without it, whenever the input buffer is empty at a row boundary —
 * where the next read may wait for ClickHouse's next block — so a long-lived pool process never
 * answers with a stale time.
 */
static void
block_time(udf_eval *ev)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	duet_vm_set_now(ev->vm, (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/* One row read: evaluated now, or collected into the batch (flushed when full or input runs dry). */
static bool
take_row(const udf_protocol *proto, udf_eval *ev, udf_in *in, udf_out *out, udf_row *row,
		 batch *b, udf_error *err)
{
	if (!b)
		return one_row(proto, ev, out, row, err);
	if (b->n == 0)
		b->first = row->number;
	for (size_t k = 0; k < b->nvars; k++)
		b->cols[k * BATCH_ROWS + b->n] = row->vals[k];
	b->n++;
	if (b->n == BATCH_ROWS || in->pos == in->end)
		return batch_flush(proto, ev, out, b, err);
	return true;
}

/*
 * Reads up to `limit` rows (at least one, unless the input ends or fails): in batch mode first a
 * run of whole rows through the format's block reader straight into the batch's columns, else one
 * row through read_row. *got: the rows taken; the status is read_row's.
 */
static udf_read_status
next_rows(const udf_protocol *proto, udf_eval *ev, udf_in *in, udf_out *out, udf_row *row,
		  batch *b, uint64_t limit, uint64_t *got, udf_error *err)
{
	udf_read_status st;

	*got = 0;
	if (b && proto->format->read_rows)
	{
		size_t		room = BATCH_ROWS - b->n;
		uint64_t	before = row->number;
		size_t		k;

		if (room > limit)
			room = (size_t) limit;
		k = proto->format->read_rows(in, ev->args, ev->nargs, b->cols + b->n, b->nvars, BATCH_ROWS,
									 room, row);
		if (k > 0)
		{
			if (b->n == 0)
				b->first = before + 1;
			b->n += k;
			*got = k;
			if ((b->n == BATCH_ROWS || in->pos == in->end) && !batch_flush(proto, ev, out, b, err))
				return UDF_FAIL;
			return UDF_ROW;
		}
	}
	st = proto->format->read_row(in, ev->args, ev->nargs, row, err);
	if (st != UDF_ROW)
		return st;
	*got = 1;
	return take_row(proto, ev, in, out, row, b, err) ? UDF_ROW : UDF_FAIL;
}

static bool
run_rows(const udf_protocol *proto, udf_eval *ev, udf_in *in, udf_out *out, udf_row *row,
		 batch *b, udf_error *err)
{
	udf_read_status st;
	uint64_t	got;

	if (!proto->chunk_header)
	{
		for (;;)
		{
			if (in->pos == in->end)
				block_time(ev);	/* now() of the rows up to the next wait for input */
			if ((st = next_rows(proto, ev, in, out, row, b, UINT64_MAX, &got, err)) != UDF_ROW)
				break;
		}
		if (st == UDF_FAIL)
			return got ? false : batch_flush_then_fail(proto, ev, out, b, err);
		if (b && !batch_flush(proto, ev, out, b, err))
			return false;
		if (!udf_out_flush(out))
			return udf_fail(err, "%s", out->failure);
		return true;
	}
	for (uint64_t block = 1, rows = 0;; block++)
	{
		bool		eof;
		long long	prev = block > 1 ? (long long) rows : -1;

		if (!read_chunk_header(in, proto->max_chunk_rows, prev, &rows, &eof, err))
		{
			if (eof)
				return true;
			{
				char		msg[sizeof(err->message)];

				memcpy(msg, err->message, sizeof(msg));
				return udf_fail(err, "block %llu: %s", (unsigned long long) (prev >= 0 ? block - 1 : block),
								msg);
			}
		}
		if (proto->next_block)
			proto->next_block(proto->next_block_arg, ev);
		block_time(ev);
		for (uint64_t i = 0; i < rows; i += got)
		{
			st = next_rows(proto, ev, in, out, row, b, rows - i, &got, err);
			if (st == UDF_FAIL)
				return got ? false : batch_flush_then_fail(proto, ev, out, b, err);
			if (st == UDF_END)
			{
				udf_fail(err, "block %llu: chunk header announced %llu rows, input ended after %llu",
						 (unsigned long long) block, (unsigned long long) rows,
						 (unsigned long long) i);
				return batch_flush_then_fail(proto, ev, out, b, err);
			}
		}
		if (b && !batch_flush(proto, ev, out, b, err))
			return false;
		if (!udf_out_flush(out))
			return udf_fail(err, "%s", out->failure);
	}
}

bool
udf_run(const udf_protocol *proto, udf_eval *ev, udf_in *in, udf_out *out, udf_row *row,
		udf_error *err)
{
	batch		b,
			   *bp = NULL;
	bool		ok;

	memset(&b, 0, sizeof(b));
	if (udf_eval_batchable(ev))
	{
		b.nvars = duet_program_nvars(ev->program);
		b.cols = malloc((b.nvars ? b.nvars : 1) * BATCH_ROWS * sizeof(duet_value));
		b.res = malloc(BATCH_ROWS * sizeof(duet_value));
		if (b.cols && b.res)
			bp = &b;			/* else row at a time: slower, same output */
	}
	ok = run_rows(proto, ev, in, out, row, bp, err);
	free(b.cols);
	free(b.res);
	return ok;
}

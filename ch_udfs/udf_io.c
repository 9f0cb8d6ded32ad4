/*
 * udf_io.c — buffered pipe I/O and the row buffer. Knows nothing of column types: converting a
 * row's text fields to values is udf_types.c's (udf_row_convert), so the dependency goes one way,
 * types → io.
 *
 * ClickHouse writes a block and reads our output concurrently, and in a pool it waits for exactly
 * N rows before sending the next block. So the reader flushes pending output before any read()
 * that may block: results never sit in our buffer while ClickHouse waits for them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "udf.h"

#define IN_BUFSIZE (256 * 1024)
#define OUT_BUFSIZE (256 * 1024)

bool
udf_fail(udf_error *err, const char *fmt,...)
{
	va_list		ap;

	char		raw[sizeof(err->message)];
	size_t		n = 0;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/*
	 * One line on stderr: a newline or carriage return that a formula or input brought in is
	 * shown escaped, \n and \r, so that CR LF input is visible as such in the message.
	 */
	for (const char *p = raw; *p && n + 1 < sizeof(err->message); p++)
	{
		if (*p == '\n' || *p == '\r')
		{
			if (n + 2 >= sizeof(err->message))
				break;
			err->message[n++] = '\\';
			err->message[n++] = *p == '\n' ? 'n' : 'r';
		}
		else
			err->message[n++] = *p;
	}
	err->message[n] = '\0';
	return false;
}

/* ---- output ---- */

bool
udf_out_init(udf_out *out, int fd)
{
	memset(out, 0, sizeof(*out));
	out->fd = fd;
	out->cap = OUT_BUFSIZE;
	out->limit = OUT_BUFSIZE / 2;
	out->buf = malloc(out->cap);
	if (!out->buf)
	{
		out->failed = true;
		snprintf(out->failure, sizeof(out->failure), "out of memory");
		return false;
	}
	return true;
}

void
udf_out_free(udf_out *out)
{
	free(out->buf);
	out->buf = NULL;
}

bool
udf_out_flush(udf_out *out)
{
	size_t		done = 0;

	if (out->failed)
		return false;
	if (out->fd == UDF_OUT_DISCARD)
		out->len = 0;
	if (out->fd < 0)
		return true;
	while (done < out->len)
	{
		ssize_t		n = write(out->fd, out->buf + done, out->len - done);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			out->failed = true;
			snprintf(out->failure, sizeof(out->failure), "could not write output: %s", strerror(errno));
			return false;
		}
		done += (size_t) n;
	}
	out->len = 0;
	return true;
}

/* Makes room for n more bytes: flushes to the fd, or grows the buffer in memory mode. */
bool
udf_out_reserve(udf_out *out, size_t n)
{
	if (out->failed)
		return false;
	if (out->fd != UDF_OUT_MEMORY && out->len > 0 && !udf_out_flush(out))
		return false;
	if (out->len + n > out->cap)
	{
		size_t		cap = out->cap ? out->cap : 4096;
		unsigned char *b;

		while (cap < out->len + n)
			cap *= 2;
		b = realloc(out->buf, cap);
		if (!b)
		{
			out->failed = true;
			snprintf(out->failure, sizeof(out->failure), "out of memory for %zu output bytes", out->len + n);
			return false;
		}
		out->buf = b;
		out->cap = cap;
	}
	return true;
}

/* ---- input ---- */

bool
udf_in_init_fd(udf_in *in, int fd, udf_out *flush_first)
{
	memset(in, 0, sizeof(*in));
	in->fd = fd;
	in->cap = IN_BUFSIZE;
	in->buf = malloc(in->cap);
	in->owned = true;
	in->flush_first = flush_first;
	if (!in->buf)
	{
		in->failed = true;
		snprintf(in->failure, sizeof(in->failure), "out of memory");
		return false;
	}
	return true;
}

void
udf_in_init_mem(udf_in *in, const void *data, size_t len)
{
	memset(in, 0, sizeof(*in));
	in->fd = -1;
	in->buf = (unsigned char *) data;
	in->end = len;
	in->cap = len;
}

void
udf_in_free(udf_in *in)
{
	if (in->owned)
		free(in->buf);
	in->buf = NULL;
}

bool
udf_in_fill(udf_in *in)
{
	ssize_t		n;

	if (in->pos < in->end)
		return true;
	if (in->eof || in->failed || in->fd < 0)
		return false;
	if (in->flush_first && in->flush_first->len > 0 && !udf_out_flush(in->flush_first))
		return false;
	in->pos = in->end = 0;
	for (;;)
	{
		n = read(in->fd, in->buf, in->cap);
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	if (n < 0)
	{
		in->failed = true;
		snprintf(in->failure, sizeof(in->failure), "could not read input: %s", strerror(errno));
		return false;
	}
	if (n == 0)
	{
		in->eof = true;
		return false;
	}
	in->end = (size_t) n;
	return true;
}

bool
udf_in_read(udf_in *in, void *dst, size_t n)
{
	unsigned char *d = dst;

	while (n > 0)
	{
		size_t		chunk;

		if (in->pos == in->end && !udf_in_fill(in))
			return false;
		chunk = in->end - in->pos;
		if (chunk > n)
			chunk = n;
		memcpy(d, in->buf + in->pos, chunk);
		in->pos += chunk;
		d += chunk;
		n -= chunk;
	}
	return true;
}

/* ---- row buffer ---- */

void
udf_row_init(udf_row *row, size_t max_bytes)
{
	memset(row, 0, sizeof(*row));
	row->max_bytes = max_bytes;
}

void
udf_row_free(udf_row *row)
{
	if (row->doc)
		json_decref((json_t *) row->doc);
	row->doc = NULL;
	free(row->text);
	row->text = NULL;
	row->cap = row->len = 0;
}

void
udf_row_reset(udf_row *row)
{
	row->len = 0;
}

bool
udf_row_reserve(udf_row *row, size_t n, udf_error *err)
{
	if (n > row->max_bytes || row->len > row->max_bytes - n)
		return udf_fail(err, "row %llu: row larger than %zu bytes (raise --max-row-bytes)",
						(unsigned long long) row->number, row->max_bytes);
	/* never leave text NULL: empty strings point into it too */
	if (row->len + n > row->cap || !row->text)
	{
		size_t		cap = row->cap ? row->cap : 256;
		char	   *t;

		while (cap < row->len + n)
			cap *= 2;
		t = realloc(row->text, cap);
		if (!t)
			return udf_fail(err, "row %llu: out of memory for %zu bytes",
							(unsigned long long) row->number, cap);
		row->text = t;
		row->cap = cap;
	}
	return true;
}

bool
udf_row_append(udf_row *row, const void *data, size_t n, udf_error *err)
{
	if (!udf_row_reserve(row, n, err))
		return false;
	if (n > 0)
		memcpy(row->text + row->len, data, n);
	row->len += n;
	return true;
}

udf_read_status
udf_row_begin(udf_in *in, udf_row *row, udf_error *err)
{
	if (udf_in_peek(in) < 0)
	{
		if (in->failed)
			return udf_fail(err, "%s", in->failure), UDF_FAIL;
		return UDF_END;
	}
	udf_row_reset(row);
	row->number++;
	return UDF_ROW;
}

udf_read_status
udf_row_truncated(udf_in *in, const udf_row *row, const char *format, size_t col, size_t ncols,
				  udf_error *err)
{
	if (in->failed)
		udf_fail(err, "%s", in->failure);
	else
		udf_fail(err, "row %llu: truncated %s row: input ends inside the row (column %zu of %zu)",
				 (unsigned long long) row->number, format, col + 1, ncols);
	return UDF_FAIL;
}

int
udf_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

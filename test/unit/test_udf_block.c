/*
 * test_udf_block.c — the block codecs (udf_format.read_rows / write_col) against the row codecs:
 * udf_run over random inputs, once with each format as shipped and once with its block codecs
 * removed (read_row/write_row for every row), must give the same bytes, the same success and the
 * same message. The inputs mix the plain rows the block readers take with every kind of row they
 * leave to read_row: escapes, quotes, CR LF, \N in a non-Nullable column, bad values, surplus or
 * missing fields, bad Nullable flags and Bool bytes, UInt64 beyond 2^63 - 1, rows cut at the end;
 * read from memory and through a file descriptor with a small buffer (rows cut by every read),
 * with and without chunk headers, over metrics using all or only the first of their arguments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "udf.h"

typedef struct run_out
{
	bool		ok;
	char		message[512];
	unsigned char *out;
	size_t		outlen;
} run_out;

static run_out
run(const udf_format *fmt, const char *formula, const char *args, bool chunk_header,
	const unsigned char *data, size_t len, size_t bufsize)
{
	udf_eval	ev;
	udf_protocol proto;
	udf_row		row;
	udf_in		in;
	udf_out		out;
	udf_error	err;
	run_out		r;
	FILE	   *tmp = NULL;

	memset(&ev, 0, sizeof(ev));
	memset(&proto, 0, sizeof(proto));
	memset(&err, 0, sizeof(err));
	proto.format = fmt;
	proto.chunk_header = chunk_header;
	proto.max_chunk_rows = 1 << 20;
	assert_true(udf_columns_parse(args, ev.args, &ev.nargs, &err));
	assert_true(udf_type_parse("Nullable(Float64)", 17, &ev.result.type, &err));
	snprintf(ev.result.name, sizeof(ev.result.name), "result");
	assert_true(udf_eval_init_metric(&ev, formula, strlen(formula), &err));
	assert_true(udf_eval_batchable(&ev));
	udf_row_init(&row, 1 << 16);
	if (bufsize == 0)
		udf_in_init_mem(&in, data, len);
	else
	{
		tmp = tmpfile();
		assert_non_null(tmp);
		assert_int_equal(fwrite(data, 1, len, tmp), len);
		fflush(tmp);
		rewind(tmp);
		assert_true(udf_in_init_fd(&in, fileno(tmp), NULL));
		in.cap = bufsize;
	}
	memset(&out, 0, sizeof(out));
	out.fd = UDF_OUT_MEMORY;
	memset(&r, 0, sizeof(r));
	r.ok = udf_run(&proto, &ev, &in, &out, &row, &err);
	if (!r.ok)
		snprintf(r.message, sizeof(r.message), "%s", err.message);
	r.out = out.buf;
	r.outlen = out.len;
	udf_eval_free(&ev);
	udf_row_free(&row);
	if (bufsize != 0)
	{
		udf_in_free(&in);
		fclose(tmp);
	}
	return r;
}

/* xorshift: the same inputs on every run */
static uint64_t rng_state = 88172645463325252ULL;

static uint32_t
rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t) (rng_state % n);
}

typedef struct buf
{
	unsigned char *p;
	size_t		n,
				cap;
} buf;

static void
put(buf *b, const void *s, size_t n)
{
	if (b->n + n > b->cap)
	{
		b->cap = (b->n + n) * 2 + 256;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void
puts_(buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* A text field for a column of base type t: mostly plain, sometimes anything the reader knows. */
static void
text_field(buf *b, const udf_column *c, bool rare)
{
	udf_base	t = c->type.base;
	static const char *odd[] = {
		"007", "-3", "1.5", "1e3", "-0", "inf", "nan", "-inf", "1234567890123456", "99999999999999999999",
		"", "abc", "\\N", "1 ", " 1", "0x10", "2147483648", "4294967296", "9223372036854775808",
		"18446744073709551615", "true", "false", "1.25e-300", "12\\t3", "\\x31", "\\\\", "\"7\"", "'8'",
		"\"1\"\"2\"", "1\r", "\\Nx",
	};
	char		tmp[32];

	if (rare)
	{
		puts_(b, odd[rnd(sizeof(odd) / sizeof(odd[0]))]);
		return;
	}
	switch (rnd(12))
	{
		case 0:
			if (c->type.nullable)
			{
				puts_(b, "\\N");
				return;
			}
			/* FALLTHROUGH */
		case 1:
			if (t == UDF_FLOAT64 || t == UDF_FLOAT32)
			{
				snprintf(tmp, sizeof(tmp), "%.*g", 1 + (int) rnd(17), (double) rnd(1000000) / (1 + rnd(999)));
				puts_(b, tmp);
				return;
			}
			/* FALLTHROUGH */
		default:
			if (t == UDF_BOOL)
				puts_(b, rnd(2) ? "1" : "0");
			else
			{
				snprintf(tmp, sizeof(tmp), "%u", rnd(2) ? rnd(10)
						 : rnd(t == UDF_UINT8 ? 256 : t == UDF_INT32 ? 2147483647u : 4000000000u));
				puts_(b, tmp);
			}
	}
}

static void
rb_field(buf *b, const udf_column *c, bool rare)
{
	unsigned char v[8];
	size_t		w = c->type.base == UDF_FLOAT64 || c->type.base == UDF_INT64 || c->type.base == UDF_UINT64 ? 8
		: c->type.base == UDF_FLOAT32 || c->type.base == UDF_INT32 || c->type.base == UDF_UINT32 ? 4
		: c->type.base == UDF_INT16 || c->type.base == UDF_UINT16 ? 2 : 1;

	if (c->type.nullable)
	{
		unsigned char flag = rare && rnd(3) == 0 ? 2 : rnd(8) == 0;

		put(b, &flag, 1);
		if (flag == 1)
			return;
	}
	for (size_t i = 0; i < w; i++)
		v[i] = (unsigned char) rnd(256);
	if (c->type.base == UDF_FLOAT64 && !rare)
	{
		double		d = (double) rnd(1000000) / (1 + rnd(1000));

		memcpy(v, &d, 8);
	}
	else if (c->type.base == UDF_BOOL)
		v[0] = rare ? (unsigned char) rnd(4) : (unsigned char) rnd(2);
	else if (c->type.base == UDF_UINT64 && !rare)
		v[7] &= 0x7f;
	put(b, v, w);
}

/* n rows for cols in fmt; chunk headers of up to 700 rows when chunked. */
static void
make_input(buf *b, const udf_format *fmt, const udf_column *cols, size_t ncols, size_t n,
		   bool chunked, uint32_t rare_per_10000)
{
	bool		csv = fmt == &udf_format_csv;

	b->n = 0;
	for (size_t r = 0; r < n; r++)
	{
		if (chunked && r % 700 == 0)
		{
			char		h[32];

			snprintf(h, sizeof(h), "%zu\n", n - r < 700 ? n - r : (size_t) 700);
			puts_(b, h);
		}
		for (size_t i = 0; i < ncols; i++)
		{
			bool		rare = rnd(10000) < rare_per_10000;

			if (fmt == &udf_format_rowbinary)
				rb_field(b, &cols[i], rare);
			else
			{
				if (i > 0)
					puts_(b, csv ? "," : "\t");
				text_field(b, &cols[i], rare);
				if (rare && rnd(4) == 0)
					puts_(b, csv ? ",5" : "\t5");	/* a surplus field */
			}
		}
		if (fmt != &udf_format_rowbinary)
			puts_(b, csv && rnd(50) == 0 ? "\r\n" : "\n");
	}
	if (rare_per_10000 > 0 && rnd(3) == 0 && b->n > 3)
		b->n -= 1 + rnd(3);		/* cut inside the last row */
}

static void
compare(const udf_format *fmt, const char *formula, const char *args, size_t rows,
		uint32_t rare_per_10000, int rounds, int *errors_seen)
{
	udf_format	plain = *fmt;
	udf_column	cols[UDF_MAX_COLUMNS];
	size_t		ncols;
	udf_error	err;
	buf			b = {0};

	plain.read_rows = NULL;
	plain.write_col = NULL;
	assert_true(udf_columns_parse(args, cols, &ncols, &err));
	for (int k = 0; k < rounds; k++)
	{
		bool		chunked = k % 2 == 1;
		size_t		bufsize = k % 3 == 2 ? 7 + rnd(90) : 0;
		run_out		a,
					want;

		make_input(&b, fmt, cols, ncols, rows, chunked, rare_per_10000);
		a = run(fmt, formula, args, chunked, b.p, b.n, bufsize);
		want = run(&plain, formula, args, chunked, b.p, b.n, bufsize);
		if (a.ok != want.ok || strcmp(a.message, want.message) != 0 || a.outlen != want.outlen ||
			(a.outlen && memcmp(a.out, want.out, a.outlen) != 0))
			fail_msg("%s round %d (%s, buffer %zu): block %s \"%s\" %zu bytes, rows %s \"%s\" %zu bytes",
					 fmt->name, k, chunked ? "chunked" : "plain", bufsize, a.ok ? "ok" : "failed",
					 a.message, a.outlen, want.ok ? "ok" : "failed", want.message, want.outlen);
		*errors_seen += !want.ok;
		free(a.out);
		free(want.out);
	}
	free(b.p);
}

static const char *const ARGS =
	"a:Nullable(Float64),b:Float64,c:Nullable(Int32),d:UInt64,e:Nullable(Float32),f:Bool,g:Nullable(UInt8)";
static const char *const FORMULA = "a / b + c - d * 0 + coalesce(e, 1) * if(f, 1, 2) + coalesce(g, 0)";

static void
test_block_equals_rows(void **state, const udf_format *fmt)
{
	int			errors = 0;

	(void) state;
	/* clean inputs: every row plain, all through the block codecs */
	compare(fmt, FORMULA, ARGS, 3000, 0, 6, &errors);
	compare(fmt, "x / y", "x:Nullable(Float64),y:Nullable(Float64)", 5000, 0, 6, &errors);
	/* the metric reads only its first arguments: the others are decoded and dropped */
	compare(fmt, "x / y", "x:Nullable(Float64),y:Float64,z:Nullable(Float64),w:Int32", 3000, 0, 3, &errors);
	assert_int_equal(errors, 0);
	/* odd rows now and then: the row path takes them (or reports them), at the same place */
	compare(fmt, FORMULA, ARGS, 400, 60, 300, &errors);
	compare(fmt, "x / y", "x:Nullable(Float64),y:Nullable(Float64)", 400, 150, 300, &errors);
	/* the errors were reached, not only clean ends */
	assert_true(errors > 50);
}

static void
test_tsv(void **state)
{
	test_block_equals_rows(state, &udf_format_tsv);
}

static void
test_csv(void **state)
{
	test_block_equals_rows(state, &udf_format_csv);
}

static void
test_rowbinary(void **state)
{
	test_block_equals_rows(state, &udf_format_rowbinary);
}

/* A plain run of rows: all of them decoded by the block reader, in place, with their values. */
static void
test_block_path_taken(void **state)
{
	static const unsigned char data[] = "1\t2\n3\t4\n5\t\\N\n";
	run_out		r;

	(void) state;
	r = run(&udf_format_tsv, "x / y", "x:Nullable(Float64),y:Nullable(Float64)", false, data,
			sizeof(data) - 1, 0);
	assert_true(r.ok);
	assert_int_equal(r.outlen, 12);
	assert_memory_equal(r.out, "0.5\n0.75\n\\N\n", 12);
	free(r.out);
	{
		udf_in		in;
		udf_row		row;
		udf_column	cols[2];
		size_t		n;
		udf_error	err;
		duet_value	vals[2 * 4];

		assert_true(udf_columns_parse("x:Nullable(Float64),y:Nullable(Float64)", cols, &n, &err));
		udf_row_init(&row, 1 << 16);
		udf_in_init_mem(&in, data, sizeof(data) - 1);
		assert_int_equal(udf_format_tsv.read_rows(&in, cols, n, vals, 2, 4, 4, &row), 3);
		assert_int_equal(in.pos, sizeof(data) - 1);
		assert_int_equal(row.number, 3);
		assert_true(vals[0].type == DUET_T_NUMBER && vals[0].u.num == 1);
		assert_true(vals[4 + 1].type == DUET_T_NUMBER && vals[4 + 1].u.num == 4);
		assert_int_equal(vals[4 + 2].type, DUET_T_NULL);
		udf_row_free(&row);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tsv),
		cmocka_unit_test(test_csv),
		cmocka_unit_test(test_rowbinary),
		cmocka_unit_test(test_block_path_taken),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_udf_codecs.c — cmocka tests of duet_udf's format codecs (ch_udfs/fmt_*.c), column types
 * and buffered input across read boundaries. The block loop and the formulas are covered end to
 * end by test/ch_udf_tests.py through the ClickHouse harness.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "udf.h"

static void
cols_of(const char *spec, udf_column *cols, size_t *n)
{
	udf_error	err;

	assert_true(udf_columns_parse(spec, cols, n, &err));
}

/* Reads every row of data with fmt; checks the status sequence ends with want_final. */
typedef struct reader
{
	udf_in		in;
	udf_row		row;
	udf_column	cols[8];
	size_t		ncols;
	udf_error	err;
	FILE	   *tmp;
} reader;

static void
reader_open(reader *r, const char *spec, const void *data, size_t len, size_t chunk)
{
	memset(r, 0, sizeof(*r));
	cols_of(spec, r->cols, &r->ncols);
	udf_row_init(&r->row, 1 << 20);
	if (chunk == 0)
		udf_in_init_mem(&r->in, data, len);
	else
	{
		/* through a file descriptor with a tiny buffer: every field crosses read boundaries */
		r->tmp = tmpfile();
		assert_non_null(r->tmp);
		assert_int_equal(fwrite(data, 1, len, r->tmp), len);
		fflush(r->tmp);
		rewind(r->tmp);
		assert_true(udf_in_init_fd(&r->in, fileno(r->tmp), NULL));
		r->in.cap = chunk;
	}
}

static void
reader_close(reader *r)
{
	udf_row_free(&r->row);
	udf_in_free(&r->in);
	if (r->tmp)
		fclose(r->tmp);
}

static udf_read_status
next(reader *r, const udf_format *f)
{
	return f->read_row(&r->in, r->cols, r->ncols, &r->row, &r->err);
}

static void
assert_str(const duet_value *v, const char *s, size_t len)
{
	assert_int_equal(v->type, DUET_T_STRING);
	assert_int_equal(v->u.str.len, len);
	assert_memory_equal(v->u.str.ptr, s, len);
}

static void
test_types(void **state)
{
	udf_type	t;
	udf_error	err;
	udf_column	cols[4];
	size_t		n;
	char		buf[64];

	(void) state;
	assert_true(udf_type_parse("Nullable(Float64)", 17, &t, &err));
	assert_true(t.nullable);
	assert_int_equal(t.base, UDF_FLOAT64);
	assert_string_equal(udf_type_name(t, buf, sizeof(buf)), "Nullable(Float64)");
	assert_false(udf_type_parse("Decimal(10,2)", 13, &t, &err));
	assert_non_null(strstr(err.message, "unsupported column type"));
	assert_false(udf_type_parse("Nothing", 7, &t, &err));
	assert_true(udf_columns_parse("my%20var:Nullable(String),Int8,b:Bool", cols, &n, &err));
	assert_int_equal(n, 3);
	assert_string_equal(cols[0].name, "my var");
	assert_string_equal(cols[1].name, "c2");
	assert_int_equal(cols[2].type.base, UDF_BOOL);
	assert_false(udf_columns_parse("a:Float64,a:String", cols, &n, &err));
	assert_non_null(strstr(err.message, "duplicate"));
}

static void
test_parse_text(void **state)
{
	udf_column	cols[8];
	size_t		n;
	duet_value	v;
	udf_error	err;

	(void) state;
	cols_of("a:Int8,b:UInt64,c:Float64,d:Bool,e:Float32", cols, &n);
	assert_true(udf_parse_text(&cols[0], "-128", 4, &v, &err));
	assert_true(v.type == DUET_T_INT && v.u.i == -128);	/* integer columns are exact integers */
	assert_false(udf_parse_text(&cols[0], "128", 3, &v, &err));
	assert_false(udf_parse_text(&cols[1], "-1", 2, &v, &err));
	assert_true(udf_parse_text(&cols[1], "9223372036854775807", 19, &v, &err));
	assert_true(v.type == DUET_T_INT && v.u.i == INT64_MAX);
	/* a UInt64 beyond the formula integers is an error, never a rounded double */
	assert_false(udf_parse_text(&cols[1], "9223372036854775808", 19, &v, &err));
	assert_non_null(strstr(err.message, "beyond the formula integers"));
	assert_true(udf_parse_text(&cols[2], "1e-3", 4, &v, &err));
	assert_true(v.u.num == 1e-3);
	assert_true(udf_parse_text(&cols[2], "inf", 3, &v, &err));
	assert_int_equal(v.type, DUET_T_NULL);	/* the engine's numbers are finite */
	assert_false(udf_parse_text(&cols[2], " 1", 2, &v, &err));
	assert_false(udf_parse_text(&cols[2], "1x", 2, &v, &err));
	assert_false(udf_parse_text(&cols[2], "", 0, &v, &err));
	assert_true(udf_parse_text(&cols[3], "true", 4, &v, &err));
	assert_true(v.type == DUET_T_BOOL && v.u.boolean);
	assert_false(udf_parse_text(&cols[3], "yes", 3, &v, &err));
}

static void
test_tsv_read(void **state)
{
	static const char data[] = "a\\tb\\n\\\\\\'\\0x\t\\N\t1.5\n\t0\t-2\n";
	size_t		chunks[] = {0, 1, 2, 3, 7};

	(void) state;
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++)
	{
		reader		r;

		reader_open(&r, "s:String,n:Nullable(Float64),f:Float64", data, sizeof(data) - 1, chunks[c]);
		assert_int_equal(next(&r, &udf_format_tsv), UDF_ROW);
		assert_str(&r.row.vals[0], "a\tb\n\\'\0x", 8);
		assert_int_equal(r.row.vals[1].type, DUET_T_NULL);
		assert_true(r.row.vals[2].u.num == 1.5);
		assert_int_equal(next(&r, &udf_format_tsv), UDF_ROW);
		assert_str(&r.row.vals[0], "", 0);
		assert_true(r.row.vals[1].u.num == 0);
		assert_true(r.row.vals[2].u.num == -2);
		assert_int_equal(next(&r, &udf_format_tsv), UDF_END);
		reader_close(&r);
	}
}

static void
test_tsv_errors(void **state)
{
	static const struct
	{
		const char *data;
		const char *msg;
	}			cases[] = {
		{"1\n", "1 TabSeparated columns, expected 2"},
		{"1\t2\t3\n", "more than 2"},
		{"1\t2", "ends inside the row"},
		{"1\t\\", "ends inside the row"},
		{"x\\N\t2\n", "\\N must be the whole field"},
		{"\\Nx\t2\n", "text after \\N"},
		{"1\tz\n", "invalid Float64 value \"z\""},
	};

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		reader		r;

		reader_open(&r, "a:Nullable(String),b:Float64", cases[i].data, strlen(cases[i].data), 0);
		assert_int_equal(next(&r, &udf_format_tsv), UDF_FAIL);
		if (!strstr(r.err.message, cases[i].msg))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, r.err.message, cases[i].msg);
		reader_close(&r);
	}
}

static void
test_csv_read(void **state)
{
	static const char data[] = "\"a,\"\"b\"\"\",\\N,'it''s'\r\n2,3.5,x\n";
	size_t		chunks[] = {0, 1, 5};

	(void) state;
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++)
	{
		reader		r;

		reader_open(&r, "s:String,n:Nullable(Float64),t:String", data, sizeof(data) - 1, chunks[c]);
		assert_int_equal(next(&r, &udf_format_csv), UDF_ROW);
		assert_str(&r.row.vals[0], "a,\"b\"", 5);
		assert_int_equal(r.row.vals[1].type, DUET_T_NULL);
		assert_str(&r.row.vals[2], "it's", 4);
		assert_int_equal(next(&r, &udf_format_csv), UDF_ROW);
		assert_str(&r.row.vals[0], "2", 1);
		assert_true(r.row.vals[1].u.num == 3.5);
		assert_int_equal(next(&r, &udf_format_csv), UDF_END);
		reader_close(&r);
	}
}

static void
test_json_read(void **state)
{
	static const char data[] =
		"{\"n\":\"9007199254740993\",\"s\":\"a\\u0000b\",\"f\":null,\"b\":true}\n"
		"{\"b\":false,\"f\":2.5,\"s\":\"\",\"n\":7}\n";
	static const char *bad[] = {
		"{\"n\":1,\"s\":\"x\",\"f\":1}\n",	/* missing b */
		"{\"n\":1,\"s\":\"x\",\"f\":1,\"b\":true,\"z\":0}\n",
		"{\"n\":1,\"s\":\"\xff\",\"f\":1,\"b\":true}\n",
		"[1,2]\n",
		"{\"n\":1,\"s\":2,\"f\":1,\"b\":true}\n",
		"{\"n\":1,\"s\":\"x\",\"f\":1,\"b\":true}",
	};
	reader		r;

	(void) state;
	reader_open(&r, "n:UInt64,s:String,f:Nullable(Float64),b:Bool", data, sizeof(data) - 1, 4);
	assert_int_equal(next(&r, &udf_format_json), UDF_ROW);
	/* an exact integer, as a bigint is in PostgreSQL */
	assert_true(r.row.vals[0].type == DUET_T_INT && r.row.vals[0].u.i == INT64_C(9007199254740993));
	assert_str(&r.row.vals[1], "a\0b", 3);
	assert_int_equal(r.row.vals[2].type, DUET_T_NULL);
	assert_true(r.row.vals[3].u.boolean);
	assert_int_equal(next(&r, &udf_format_json), UDF_ROW);
	assert_true(r.row.vals[0].u.i == 7 && r.row.vals[2].u.num == 2.5 && !r.row.vals[3].u.boolean);
	assert_int_equal(next(&r, &udf_format_json), UDF_END);
	reader_close(&r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		reader_open(&r, "n:UInt64,s:String,f:Nullable(Float64),b:Bool", bad[i], strlen(bad[i]), 0);
		if (next(&r, &udf_format_json) != UDF_FAIL)
			fail_msg("bad JSON case %zu accepted", i);
		reader_close(&r);
	}
}

static void
test_rowbinary_read(void **state)
{
	unsigned char data[64];
	size_t		n = 0;
	double		d = -0.5;
	size_t		chunks[] = {0, 1, 3};

	(void) state;
	/* Nullable(Float64) -0.5, Int16 -2, String of 130 'z' (2-byte LEB128), Nullable(UInt8) NULL */
	data[n++] = 0;
	memcpy(data + n, &d, 8);
	n += 8;
	data[n++] = 0xfe;
	data[n++] = 0xff;
	{
		static unsigned char big[200];
		unsigned char *all = malloc(n + 2 + 130 + 1);

		memset(big, 'z', sizeof(big));
		memcpy(all, data, n);
		all[n] = 0x82;
		all[n + 1] = 0x01;
		memcpy(all + n + 2, big, 130);
		all[n + 2 + 130] = 1;
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++)
		{
			reader		r;
			size_t		total = n + 2 + 130 + 1;

			reader_open(&r, "a:Nullable(Float64),b:Int16,s:String,u:Nullable(UInt8)", all, total, chunks[c]);
			assert_int_equal(next(&r, &udf_format_rowbinary), UDF_ROW);
			assert_true(r.row.vals[0].u.num == -0.5);
			assert_true(r.row.vals[1].type == DUET_T_INT && r.row.vals[1].u.i == -2);
			assert_str(&r.row.vals[2], (const char *) big, 130);
			assert_int_equal(r.row.vals[3].type, DUET_T_NULL);
			assert_int_equal(next(&r, &udf_format_rowbinary), UDF_END);
			reader_close(&r);
			/* every proper prefix that is not empty is a truncated row */
			for (size_t cut = 1; c == 0 && cut < total; cut++)
			{
				reader_open(&r, "a:Nullable(Float64),b:Int16,s:String,u:Nullable(UInt8)", all, cut, 0);
				assert_int_equal(next(&r, &udf_format_rowbinary), UDF_FAIL);
				assert_non_null(strstr(r.err.message, "truncated RowBinary"));
				reader_close(&r);
			}
		}
		free(all);
	}
}

static void
test_writers(void **state)
{
	udf_column	cols[8];
	size_t		n;
	duet_value	vals[5] = {duet_number(0.1), duet_null(), duet_string("a\t'\"\n,", 6),
	duet_bool(true), duet_null()};
	static const struct
	{
		const udf_format *f;
		const char *want;
		size_t		len;
	}			cases[] = {
		{&udf_format_tsv, "0.1\t\\N\ta\\t\\'\"\\n,\ttrue\tnan\n", 0},
		{&udf_format_csv, "0.1,\\N,\"a\t'\"\"\n,\",true,nan\n", 0},
		{&udf_format_json, "{\"x\":0.1,\"y\":null,\"s\":\"a\\t'\\\"\\n,\",\"b\":true,\"z\":null}\n", 0},
		{&udf_format_rowbinary, "\x00\x9a\x99\x99\x99\x99\x99\xb9\x3f\x01\x00\x06\x61\x09\x27\x22\x0a\x2c\x00\x01\x00\x00\x00\x00\x00\x00\xf8\x7f", 28},
	};

	(void) state;
	cols_of("x:Nullable(Float64),y:Nullable(String),s:Nullable(String),b:Nullable(Bool),z:Float64", cols, &n);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		udf_out		out;
		size_t		len = cases[i].len ? cases[i].len : strlen(cases[i].want);

		memset(&out, 0, sizeof(out));
		out.fd = UDF_OUT_MEMORY;
		assert_true(cases[i].f->write_row(&out, cols, vals, n));
		if (out.len != len || memcmp(out.buf, cases[i].want, len) != 0)
			fail_msg("%s wrote %.*s", cases[i].f->name, (int) out.len, out.buf);
		free(out.buf);
	}
}

/*
 * Every ASCII byte and UTF-8 sequences of every length survive writing and reading back in every
 * format; a byte that is not UTF-8 (0x80-0xFF alone) is an input error in every format.
 */
static void
test_roundtrip_bytes(void **state)
{
	static const char utf8[] = "\xc2\x80 \xc3\xa9 \xdf\xbf \xe0\xa0\x80 \xe6\x97\xa5 \xef\xbf\xbf "
		"\xf0\x90\x80\x80 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
	char		all[128 + sizeof(utf8) - 1];
	udf_column	cols[1];
	size_t		n;
	const udf_format *fmts[] = {&udf_format_tsv, &udf_format_csv, &udf_format_rowbinary};

	(void) state;
	for (int i = 0; i < 128; i++)
		all[i] = (char) i;
	memcpy(all + 128, utf8, sizeof(utf8) - 1);
	cols_of("s:Nullable(String)", cols, &n);
	for (size_t f = 0; f < 3; f++)
	{
		udf_out		out;
		duet_value	v = duet_string(all, sizeof(all));
		reader		r;

		memset(&out, 0, sizeof(out));
		out.fd = UDF_OUT_MEMORY;
		assert_true(fmts[f]->write_row(&out, cols, &v, 1));
		reader_open(&r, "s:Nullable(String)", out.buf, out.len, 0);
		assert_int_equal(next(&r, fmts[f]), UDF_ROW);
		assert_str(&r.row.vals[0], all, sizeof(all));
		assert_int_equal(next(&r, fmts[f]), UDF_END);
		reader_close(&r);
		free(out.buf);
		for (int b = 0x80; b < 0x100; b++)
		{
			char		bad[3] = {'a', (char) b, 'z'};

			memset(&out, 0, sizeof(out));
			out.fd = UDF_OUT_MEMORY;
			v = duet_string(bad, 3);
			assert_true(fmts[f]->write_row(&out, cols, &v, 1));
			reader_open(&r, "s:Nullable(String)", out.buf, out.len, 0);
			assert_int_equal(next(&r, fmts[f]), UDF_FAIL);
			if (!strstr(r.err.message, "invalid UTF-8 in String value of column s"))
				fail_msg("%s, byte 0x%02x: %s", fmts[f]->name, b, r.err.message);
			reader_close(&r);
			free(out.buf);
		}
	}
}

static void
test_row_limit(void **state)
{
	reader		r;
	char	   *data = malloc(5000);

	(void) state;
	memset(data, 'q', 4999);
	data[4999] = '\n';
	reader_open(&r, "s:String", data, 5000, 0);
	r.row.max_bytes = 1000;
	assert_int_equal(next(&r, &udf_format_tsv), UDF_FAIL);
	assert_non_null(strstr(r.err.message, "row larger than 1000 bytes"));
	reader_close(&r);
	free(data);
}

/* udf_write_number's integer fast path prints exactly what duet_format_number prints. */
static void
test_number_text(void **state)
{
	double		samples[] = {0, -0.0, 1, -1, 7, 10, 100000, 123456789012345.0, -999999999999999.0,
	1e15, -1e15, 1e16, 4503599627370496.0, 0.5, -2.5, 1e-7, 0.1, 1.0 / 3, 1e300, -1e-300, 5e-324};
	uint64_t	x = 88172645463325252ULL;

	(void) state;
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]) + 20000; i++)
	{
		double		d;
		char		want[64];
		size_t		wn;
		udf_out		out;

		if (i < sizeof(samples) / sizeof(samples[0]))
			d = samples[i];
		else
		{
			/* xorshift: integers of every magnitude below and around 1e15, and fractions */
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			d = (double) (int64_t) (x % 2000000000000000ULL) - 1e15;
			if (i % 3 == 0)
				d = (double) (int64_t) (x % 100000);
			if (i % 7 == 0)
				d /= 1024;
		}
		wn = duet_format_number(d, want, sizeof(want));
		memset(&out, 0, sizeof(out));
		out.fd = UDF_OUT_MEMORY;
		udf_write_number(&out, d);
		if (out.len != wn || memcmp(out.buf, want, wn) != 0)
			fail_msg("%.17g: udf_write_number \"%.*s\", duet_format_number \"%s\"", d, (int) out.len, out.buf, want);
		free(out.buf);
	}
}

/* ---- udf_run: batched evaluation, chunk headers, errors ---- */

typedef struct run_result
{
	bool		ok;
	char		message[512];
	char	   *out;
	size_t		outlen;
} run_result;

static run_result
run_metric(const char *formula, const char *args, const char *returns, bool chunk_header,
		   const char *data, size_t len)
{
	static udf_eval ev;
	udf_protocol proto;
	udf_row		row;
	udf_in		in;
	udf_out		out;
	udf_error	err;
	run_result	r;

	memset(&ev, 0, sizeof(ev));
	memset(&proto, 0, sizeof(proto));
	proto.format = &udf_format_tsv;
	proto.chunk_header = chunk_header;
	proto.max_chunk_rows = 1 << 20;
	assert_true(udf_columns_parse(args, ev.args, &ev.nargs, &err));
	assert_true(udf_type_parse(returns, strlen(returns), &ev.result.type, &err));
	snprintf(ev.result.name, sizeof(ev.result.name), "result");
	assert_true(udf_eval_init_metric(&ev, formula, strlen(formula), &err));
	udf_row_init(&row, 1 << 20);
	udf_in_init_mem(&in, data, len);
	memset(&out, 0, sizeof(out));
	out.fd = UDF_OUT_MEMORY;
	memset(&r, 0, sizeof(r));
	r.ok = udf_run(&proto, &ev, &in, &out, &row, &err);
	if (!r.ok)
		snprintf(r.message, sizeof(r.message), "%s", err.message);
	r.out = (char *) out.buf;
	r.outlen = out.len;
	udf_eval_free(&ev);
	udf_row_free(&row);
	return r;
}

static size_t
count_lines(const char *s, size_t n)
{
	size_t		k = 0;

	for (size_t i = 0; i < n; i++)
		k += s[i] == '\n';
	return k;
}

/* Many rows through the batched path: each output line is the formula's value for its row. */
static void
test_run_batched(void **state)
{
	const size_t rows = 3000;	/* crosses the 1024-row batches */
	char	   *data = malloc(rows * 48),
			   *want = malloc(rows * 48);
	size_t		n = 0,
				wn = 0;
	run_result	r;

	(void) state;
	for (size_t i = 0; i < rows; i++)
	{
		double		a = (double) (i * 7 % 1000) / 8,
					b = (double) (i % 13);

		if (i % 17 == 0)
			n += (size_t) sprintf(data + n, "\\N\t%g\n", b);
		else
			n += (size_t) sprintf(data + n, "%g\t%g\n", a, b);
		if (i % 17 == 0 || b == 0)
			wn += (size_t) sprintf(want + wn, "\\N\n");
		else
		{
			wn += duet_format_number(a / b, want + wn, 32);
			want[wn++] = '\n';
		}
	}
	r = run_metric("clicks / impressions", "clicks:Nullable(Float64),impressions:Nullable(Float64)",
				   "Nullable(Float64)", false, data, n);
	assert_true(r.ok);
	assert_int_equal(r.outlen, wn);
	assert_memory_equal(r.out, want, wn);
	free(r.out);

	/* the same rows in chunks of 1000: the same bytes */
	{
		char	   *chunked = malloc(n + 64);
		size_t		cn = 0,
					pos = 0;

		for (size_t i = 0; i < rows; i++)
		{
			const char *eol = memchr(data + pos, '\n', n - pos);

			if (i % 1000 == 0)
				cn += (size_t) sprintf(chunked + cn, "%zu\n", rows - i < 1000 ? rows - i : (size_t) 1000);
			memcpy(chunked + cn, data + pos, (size_t) (eol - (data + pos)) + 1);
			cn += (size_t) (eol - (data + pos)) + 1;
			pos = (size_t) (eol - data) + 1;
		}
		r = run_metric("clicks / impressions", "clicks:Nullable(Float64),impressions:Nullable(Float64)",
					   "Nullable(Float64)", true, chunked, cn);
		assert_true(r.ok);
		assert_int_equal(r.outlen, wn);
		assert_memory_equal(r.out, want, wn);
		free(r.out);
		free(chunked);
	}
	free(data);
	free(want);
}

/* A failing row in the middle of a batch: the rows before it are written, its number reported. */
static void
test_run_batched_error(void **state)
{
	char		data[64 * 1600];
	size_t		n = 0;
	run_result	r;

	(void) state;
	for (int i = 1; i <= 1500; i++)
		n += (size_t) sprintf(data + n, "%d\t%d\n", i == 1300 ? 1 : 2 * (i % 200), 2);
	r = run_metric("clicks / impressions", "clicks:Float64,impressions:Float64", "UInt8", false, data, n);
	assert_false(r.ok);
	if (!strstr(r.message, "row 1300: error:type"))
		fail_msg("%s", r.message);
	assert_int_equal(count_lines(r.out, r.outlen), 1299);
	free(r.out);
	/* a read error after pending rows: their results first, then the read error */
	r = run_metric("clicks / impressions", "clicks:Float64,impressions:Float64", "Float64", false,
				   "4\t2\n6\t3\nx\t1\n", 13);
	assert_false(r.ok);
	assert_non_null(strstr(r.message, "row 3:"));
	assert_int_equal(r.outlen, 4);
	assert_memory_equal(r.out, "2\n2\n", 4);
	free(r.out);
}

/* Rows beyond what a chunk header announced are reported as such, not as a bad header. */
static void
test_run_surplus_rows(void **state)
{
	static const char data[] = "1\n1\t2\n3\t4\n";
	run_result	r;

	(void) state;
	r = run_metric("clicks / impressions", "clicks:Float64,impressions:Float64", "Float64", true,
				   data, sizeof(data) - 1);
	assert_false(r.ok);
	assert_non_null(strstr(r.message, "block 1: more rows than the 1 its chunk header announced"));
	assert_int_equal(count_lines(r.out, r.outlen), 1);
	free(r.out);
	/* a first header that is not one stays a header error */
	r = run_metric("clicks / impressions", "clicks:Float64,impressions:Float64", "Float64", true,
				   "1\t2\n", 4);
	assert_false(r.ok);
	assert_non_null(strstr(r.message, "block 1: chunk header: expected a row count"));
	free(r.out);
}

/* CR LF input: the carriage return is visible in the message, and it stays one line. */
static void
test_crlf_in_errors(void **state)
{
	run_result	r;
	udf_error	err;

	(void) state;
	udf_fail(&err, "invalid value \"%s\"", "12\r\nx");
	assert_string_equal(err.message, "invalid value \"12\\r\\nx\"");
	r = run_metric("clicks / impressions", "clicks:Float64,impressions:Float64", "Float64", false,
				   "1\t2\r\n", 5);
	assert_false(r.ok);
	assert_non_null(strstr(r.message, "\"2\\r\""));
	assert_null(strchr(r.message, '\r'));
	free(r.out);
}

/* The definitions file sits beside the path ClickHouse ran (a symlink is not resolved). */
static void
test_resolve_definitions(void **state)
{
	char		path[4096],
				exe[4096];
	ssize_t		n;

	(void) state;
	udf_resolve_definitions("/var/lib/clickhouse/user_scripts/duet_udf", "duet_metrics.tsv", path,
							sizeof(path));
	assert_string_equal(path, "/var/lib/clickhouse/user_scripts/duet_metrics.tsv");
	udf_resolve_definitions("./duet_udf", "m.tsv", path, sizeof(path));
	assert_string_equal(path, "./m.tsv");
	udf_resolve_definitions("/duet_udf", "m.tsv", path, sizeof(path));
	assert_string_equal(path, "//m.tsv");
	udf_resolve_definitions("/x/duet_udf", "/etc/m.tsv", path, sizeof(path));
	assert_string_equal(path, "/etc/m.tsv");
	/* run by name from PATH: beside the binary itself */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	strcat(exe, "/m.tsv");
	udf_resolve_definitions("duet_udf", "m.tsv", path, sizeof(path));
	assert_string_equal(path, exe);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_parse_text),
		cmocka_unit_test(test_tsv_read),
		cmocka_unit_test(test_tsv_errors),
		cmocka_unit_test(test_csv_read),
		cmocka_unit_test(test_json_read),
		cmocka_unit_test(test_rowbinary_read),
		cmocka_unit_test(test_writers),
		cmocka_unit_test(test_roundtrip_bytes),
		cmocka_unit_test(test_row_limit),
		cmocka_unit_test(test_number_text),
		cmocka_unit_test(test_run_batched),
		cmocka_unit_test(test_run_batched_error),
		cmocka_unit_test(test_run_surplus_rows),
		cmocka_unit_test(test_crlf_in_errors),
		cmocka_unit_test(test_resolve_definitions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

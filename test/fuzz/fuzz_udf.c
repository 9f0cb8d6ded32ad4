/*
 * fuzz_udf.c — libFuzzer target for one duet_udf input format (built once per format with
 * -DFUZZ_FORMAT_<fmt> by `make fuzz-udf`). The first byte picks the mode: bit 0 chunk headers,
 * bit 1 a fixed metric instead of a formula per row, bit 2 (TabSeparated) the dictionary mode,
 * bit 4 a metric over numeric arguments (batch mode: the block codecs, udf_format.read_rows),
 * run again through the same format without its block codecs: a difference in the success, the
 * bytes written or the message is a bug (abort).
 * The rest is the input stream. Any crash, leak or sanitizer report is a bug; clean errors are not.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "udf.h"

#if defined(FUZZ_FORMAT_tsv)
#define FUZZ_FORMAT udf_format_tsv
#elif defined(FUZZ_FORMAT_csv)
#define FUZZ_FORMAT udf_format_csv
#elif defined(FUZZ_FORMAT_json)
#define FUZZ_FORMAT udf_format_json
#else
#define FUZZ_FORMAT udf_format_rowbinary
#endif

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* mode bit 4: a metric over numeric arguments through proto->format, into out (memory) */
static bool
batch_metric(const udf_protocol *proto, const uint8_t *data, size_t size, udf_out *out, udf_error *err)
{
	static const char f[] = "a / b + i - u * 0 + if(t, 1, 2)";
	udf_eval	ev;
	udf_in		in;
	udf_row		row;
	bool		ok = false;

	memset(&ev, 0, sizeof(ev));
	err->message[0] = '\0';
	udf_in_init_mem(&in, data + 1, size - 1);
	out->fd = UDF_OUT_MEMORY;
	udf_row_init(&row, 1 << 16);
	udf_columns_parse("a:Nullable(Float64),b:Float64,i:Int32,u:UInt64,t:Bool", ev.args, &ev.nargs, err);
	ev.result.type.base = UDF_FLOAT64;
	ev.result.type.nullable = true;
	strcpy(ev.result.name, "result");
	if (udf_eval_init_metric(&ev, f, sizeof(f) - 1, err))
		ok = udf_run(proto, &ev, &in, out, &row, err);
	udf_eval_free(&ev);
	udf_row_free(&row);
	return ok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *formula_args = "f:Nullable(String),a:Nullable(Float64),s:Nullable(String),i:Int32,b:Bool";
	static const char *metric_args = "a:Nullable(Float64),s:Nullable(String),u:UInt64,n:Nullable(Nothing)";
	udf_protocol proto;
	udf_eval	ev;
	udf_error	err;
	udf_in		in;
	udf_out		out;
	udf_row		row;
	uint8_t		mode;

	if (size < 1)
		return 0;
	mode = data[0];
	memset(&proto, 0, sizeof(proto));
	memset(&ev, 0, sizeof(ev));
	proto.format = &FUZZ_FORMAT;
	proto.chunk_header = mode & 1;
	proto.max_chunk_rows = 1 << 20;
	udf_in_init_mem(&in, data + 1, size - 1);
	memset(&out, 0, sizeof(out));
	out.fd = UDF_OUT_DISCARD;
	udf_row_init(&row, 1 << 16);
	if ((mode & 4) && proto.format == &udf_format_tsv)
		udf_run_dictionary(&in, &out, &row, &err);
	else if (mode & 16)
	{
		/* differential: the block codecs against the row codecs on the same bytes */
		udf_format	rows_only = FUZZ_FORMAT;
		udf_out		out_rows;
		udf_error	err_rows;
		bool		ok = batch_metric(&proto, data, size, &out, &err),
					ok_rows;

		rows_only.read_rows = NULL;
		rows_only.write_col = NULL;
		proto.format = &rows_only;
		memset(&out_rows, 0, sizeof(out_rows));
		ok_rows = batch_metric(&proto, data, size, &out_rows, &err_rows);
		if (ok != ok_rows || (ok && (out.len != out_rows.len || (out.len && memcmp(out.buf, out_rows.buf, out.len) != 0))) ||
			(!ok && strcmp(err.message, err_rows.message) != 0))
		{
			fprintf(stderr, "block and row codecs differ: %d/%d, %zu/%zu bytes, \"%s\" / \"%s\"\n",
					ok, ok_rows, out.len, out_rows.len, ok ? "" : err.message, ok_rows ? "" : err_rows.message);
			abort();
		}
		free(out_rows.buf);
	}
	else if (mode & 2)
	{
		static const char f[] = "if(a > 1, s || 'x', lower(s)) || coalesce(n, u)";

		udf_columns_parse(metric_args, ev.args, &ev.nargs, &err);
		ev.result.type.base = UDF_STRING;
		ev.result.type.nullable = true;
		strcpy(ev.result.name, "result");
		if (udf_eval_init_metric(&ev, f, sizeof(f) - 1, &err))
			udf_run(&proto, &ev, &in, &out, &row, &err);
	}
	else
	{
		udf_columns_parse(formula_args, ev.args, &ev.nargs, &err);
		ev.result.type.base = (mode & 8) ? UDF_STRING : UDF_FLOAT64;
		ev.result.type.nullable = true;
		strcpy(ev.result.name, "result");
		if (udf_eval_init_formula(&ev, &err))
			udf_run(&proto, &ev, &in, &out, &row, &err);
	}
	udf_eval_free(&ev);
	udf_row_free(&row);
	free(out.buf);
	return 0;
}

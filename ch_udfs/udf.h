/*
 * udf.h — shared pieces of duet_udf, the ClickHouse executable UDF that runs Duet formulas
 * (DESIGN.md §9): column types, buffered protocol I/O, the per-format codecs, evaluation.
 *
 * Nothing here exits or prints: every failure comes back as false/UDF_FAIL with a one-line
 * message in a udf_error, so the codecs can be unit-tested and fuzzed; only main() exits.
 */
#ifndef DUET_UDF_H
#define DUET_UDF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "duet_calc.h"

typedef struct udf_error
{
	char		message[512];
} udf_error;

/* Sets err->message printf-style; returns false so callers can `return udf_fail(...)`. */
bool		udf_fail(udf_error *err, const char *fmt,...) __attribute__((format(printf, 2, 3)));

/* ---- column types (the subset of ClickHouse types a formula can take or return) ---- */

typedef enum udf_base
{
	UDF_FLOAT64, UDF_FLOAT32,
	UDF_INT8, UDF_INT16, UDF_INT32, UDF_INT64,
	UDF_UINT8, UDF_UINT16, UDF_UINT32, UDF_UINT64,
	UDF_BOOL, UDF_STRING,
	UDF_DATE,					/* days since 1970-01-01 (RowBinary UInt16), a formula date */
	UDF_DATETIME,				/* seconds since 1970-01-01 UTC (RowBinary UInt32), a timestamp */
	UDF_NOTHING					/* only as Nullable(Nothing): ClickHouse's type of a NULL literal */
} udf_base;

typedef struct udf_type
{
	udf_base	base;
	bool		nullable;
} udf_type;

#define UDF_MAX_COLUMNS 128
#define UDF_MAX_NAME 128

typedef struct udf_column
{
	char		name[UDF_MAX_NAME];
	udf_type	type;
	bool		any_bytes;		/* String: not checked as UTF-8 by the reader (the dictionary's keys,
								 * which answer error:input per key instead) */
} udf_column;

/*
 * The one UTF-8 rule of every format (docs/calc.md, "Strings"): a String value
 * that is not valid UTF-8 is an input error, as it would be for PostgreSQL text. False with err.
 */
bool		udf_check_utf8(const udf_column *col, const char *s, size_t len, udf_error *err);

/* Parses "Nullable(Float64)", "String", … */
bool		udf_type_parse(const char *text, size_t len, udf_type *out, udf_error *err);
const char *udf_type_name(udf_type t, char *buf, size_t size);
/* The static formula type of a column: number, string, boolean, or any for Nothing. */
duet_type	udf_type_duet(udf_type t);

/*
 * Parses a column list "name:Type,name:Type" (names may use %XX escapes, because ClickHouse
 * splits its command line on spaces); a bare "Type" gets ClickHouse's default name c<i>.
 */
bool		udf_columns_parse(const char *spec, udf_column *cols, size_t *ncols, udf_error *err);

/*
 * The common text field of a numeric column: counters (clicks, impressions), plain digits — at
 * most 15, exact as a double, no leading zero — into the column's value without strtod, a copy
 * or a NUL; false for anything else (fractions, exponents, signs), which the full path of
 * udf_parse_text takes. Inline: the block readers call it per field. udf_counter_value: the
 * digits' value v in the column's type (false when it does not fit).
 */
static inline bool
udf_counter_value(const udf_column *col, uint64_t v, duet_value *out)
{
	switch (col->type.base)
	{
		case UDF_FLOAT64:
			*out = duet_number((double) v);
			return true;
		case UDF_FLOAT32:
			*out = duet_number((double) (float) v);
			return true;
		case UDF_INT64:
		case UDF_UINT64:
			*out = duet_int((int64_t) v);
			return true;
		case UDF_INT32:
		case UDF_UINT32:
			if (v > (col->type.base == UDF_INT32 ? 2147483647u : 4294967295u))
				return false;
			*out = duet_int((int64_t) v);
			return true;
		default:
			return false;
	}
}

/* A counter's digits (len of them, text[0] not '0' unless alone, len <= 15): see above. */
#define UDF_COUNTER_DIGITS(text, len) ((len) > 0 && (len) <= 15 && ((len) == 1 || (text)[0] != '0'))

static inline bool
udf_parse_counter(const udf_column *col, const char *text, size_t len, duet_value *out)
{
	uint64_t	v = 0;
	size_t		k;

	if (!UDF_COUNTER_DIGITS(text, len))
		return false;
	for (k = 0; k < len && text[k] >= '0' && text[k] <= '9'; k++)
		v = v * 10 + (uint64_t) (text[k] - '0');
	return k == len && udf_counter_value(col, v, out);
}
/* The result types a function may declare: [Nullable(]Float64, Int64, UInt64, UInt8, Bool, String, Date, DateTime[)]. */
bool		udf_result_type_supported(udf_type t);
/*
 * An Int64 or UInt64 result column takes exact integers only: a double (even 3.0) is error:type,
 * an integer outside the column's range error:range, so no row is ever rounded or wrapped. True
 * for the other columns. (NULL in a non-Nullable column is the type's default, 0.)
 */
bool		udf_check_int_result(const udf_column *col, const duet_value *v, udf_error *err);

/* Converts a text field (TabSeparated, CSV, quoted JSON) into a value of the column's type. */
bool		udf_parse_text(const udf_column *col, const char *text, size_t len, duet_value *out,
						   udf_error *err);

/* ---- buffered I/O ---- */

typedef struct udf_out
{
	int			fd;				/* >= 0: write(2) there; UDF_OUT_MEMORY; UDF_OUT_DISCARD */
	unsigned char *buf;
	size_t		len;
	size_t		cap;
	size_t		limit;			/* fd mode: flush when len reaches it */
	bool		failed;
	char		failure[128];
} udf_out;

#define UDF_OUT_MEMORY (-1)
#define UDF_OUT_DISCARD (-2)

typedef struct udf_in
{
	int			fd;				/* -1: memory only (data given at init) */
	unsigned char *buf;
	size_t		pos;
	size_t		end;
	size_t		cap;
	bool		eof;
	bool		owned;
	bool		failed;
	char		failure[128];
	udf_out    *flush_first;	/* flushed before any read that may block: keeps the pipe moving */
} udf_in;

bool		udf_out_init(udf_out *out, int fd);
void		udf_out_free(udf_out *out);
bool		udf_out_flush(udf_out *out);
bool		udf_out_reserve(udf_out *out, size_t n);

static inline bool
udf_out_write(udf_out *out, const void *data, size_t n)
{
	if (out->len + n > out->cap && !udf_out_reserve(out, n))
		return false;
	if (n > 0)
		memcpy(out->buf + out->len, data, n);
	out->len += n;
	return true;
}

static inline bool
udf_out_byte(udf_out *out, unsigned char c)
{
	if (out->len + 1 > out->cap && !udf_out_reserve(out, 1))
		return false;
	out->buf[out->len++] = c;
	return true;
}

/* Called by the writers after each row: flushes to the fd once the buffer is full enough. */
static inline bool
udf_out_row_done(udf_out *out)
{
	if (out->fd >= 0 && out->len >= out->limit)
		return udf_out_flush(out);
	return !out->failed;
}

bool		udf_in_init_fd(udf_in *in, int fd, udf_out *flush_first);
void		udf_in_init_mem(udf_in *in, const void *data, size_t len);
void		udf_in_free(udf_in *in);
/* Reads more; false at EOF or on a read error (in->failed). */
bool		udf_in_fill(udf_in *in);

/* Next byte or -1 at end of input. */
static inline int
udf_in_peek(udf_in *in)
{
	if (in->pos == in->end && !udf_in_fill(in))
		return -1;
	return in->buf[in->pos];
}

static inline int
udf_in_get(udf_in *in)
{
	if (in->pos == in->end && !udf_in_fill(in))
		return -1;
	return in->buf[in->pos++];
}

/* Copies exactly n bytes; false when the input ends first. */
bool		udf_in_read(udf_in *in, void *dst, size_t n);

/* ---- one input row ---- */

/*
 * A decoded row: one value per column. String values point into `text`, which the reader grows
 * as needed; they stay valid until the next row is read.
 */
typedef struct udf_row
{
	duet_value	vals[UDF_MAX_COLUMNS];
	size_t		start[UDF_MAX_COLUMNS];	/* field offsets in text while reading */
	size_t		flen[UDF_MAX_COLUMNS];
	bool		is_null[UDF_MAX_COLUMNS];
	char	   *text;
	size_t		len;
	size_t		cap;
	size_t		max_bytes;		/* a row larger than this is an error, not an allocation */
	void	   *doc;			/* JSONEachRow: the parsed object the strings point into */
	uint64_t	number;			/* 1-based row number in the input, for messages */
} udf_row;

void		udf_row_init(udf_row *row, size_t max_bytes);
void		udf_row_free(udf_row *row);
void		udf_row_reset(udf_row *row);
bool		udf_row_append(udf_row *row, const void *data, size_t n, udf_error *err);
/* Makes room for n more bytes (within max_bytes) without changing len. */
bool		udf_row_reserve(udf_row *row, size_t n, udf_error *err);

static inline bool
udf_row_putc(udf_row *row, char c, udf_error *err)
{
	if (row->len < row->cap)
	{
		row->text[row->len++] = c;
		return true;
	}
	return udf_row_append(row, &c, 1, err);
}

/* Text formats: converts the collected fields (start/flen/is_null) into vals (udf_types.c). */
bool		udf_row_convert(udf_row *row, const udf_column *cols, size_t ncols, udf_error *err);

/* ---- formats ---- */

typedef enum udf_read_status
{
	UDF_FAIL = -1,
	UDF_END = 0,				/* clean end of input, at a row boundary */
	UDF_ROW = 1
} udf_read_status;

/* The value of a hexadecimal digit character, or -1. */
int			udf_hex_digit(int c);

/*
 * Starts a row: UDF_END at a clean end of input, UDF_FAIL on a read error, else UDF_ROW with the
 * row reset and its number advanced. Every format's read_row begins with it.
 */
udf_read_status udf_row_begin(udf_in *in, udf_row *row, udf_error *err);

/* Input ended inside a row: the read error if there was one, else which column it stopped in. */
udf_read_status udf_row_truncated(udf_in *in, const udf_row *row, const char *format,
								  size_t col, size_t ncols, udf_error *err);

typedef struct udf_format
{
	const char *name;
	udf_read_status (*read_row) (udf_in *in, const udf_column *cols, size_t ncols, udf_row *row,
								 udf_error *err);
	bool		(*write_row) (udf_out *out, const udf_column *cols, const duet_value *vals, size_t n);

	/*
	 * Optional block codecs, used by udf_run's batch mode (NULL: read_row/write_row per row, the
	 * same bytes). read_rows decodes up to max whole rows lying in the input buffer straight into
	 * column-major values (the first nstore columns: vals[c * stride + r]), with pointer scans and
	 * no copies; it stops before the first row that is not whole in the buffer or not in the plain
	 * form it knows (escapes, quotes, a bad value…), which read_row then reads — and reports, if it
	 * is wrong. It never fails and never reads; row->number counts the rows it took.
	 */
	size_t		(*read_rows) (udf_in *in, const udf_column *cols, size_t ncols, duet_value *vals,
							  size_t nstore, size_t stride, size_t max, udf_row *row);
	/* n results of one column, one per row, into the output buffer (reserved once) */
	bool		(*write_col) (udf_out *out, const udf_column *col, const duet_value *vals, size_t n);
} udf_format;

extern const udf_format udf_format_tsv;
extern const udf_format udf_format_csv;
extern const udf_format udf_format_json;
extern const udf_format udf_format_rowbinary;

/* By ClickHouse's name ("TabSeparated", "TSV", "CSV", "JSONEachRow", "RowBinary"); NULL if unknown. */
const udf_format *udf_format_find(const char *name);

/*
 * The value a writer emits for a column: NULL stays NULL only in a Nullable column (elsewhere it
 * becomes the type's default: nan, 0, false, ""), booleans become 1/0 in numeric columns.
 */
duet_value	udf_value_for_column(const udf_column *col, const duet_value *v);
/* a date or timestamp as text, in double quotes when quoted (JSON, CSV) */
void		udf_write_time(udf_out *out, const duet_value *v, bool quoted);

/*
 * The block codecs of the text formats (fmt_text_block.c): whole plain rows of non-String columns
 * (digits or \N fields split by sep, rows ended by \n) read in place; a column's values written.
 */
size_t		udf_text_read_rows(udf_in *in, const udf_column *cols, size_t ncols, duet_value *vals,
							   size_t nstore, size_t stride, size_t max, udf_row *row, char sep);
bool		udf_text_write_col(udf_out *out, const udf_column *col, const duet_value *vals, size_t n,
							   bool csv);

/* Text writers shared by the formats and the dictionary mode. */
void		udf_write_tsv_string(udf_out *out, const char *s, size_t len);
void		udf_write_json_string(udf_out *out, const char *s, size_t len);
void		udf_write_number(udf_out *out, double d);
void		udf_write_int(udf_out *out, int64_t i);	/* exact decimal digits */

/* ---- evaluation ---- */

typedef struct udf_cache udf_cache;

typedef struct udf_eval
{
	udf_column	args[UDF_MAX_COLUMNS];
	size_t		nargs;
	udf_column	result;
	bool		formula_per_row;	/* args[0] is the formula text */
	duet_program *program;		/* metric mode: the one program */
	const struct udf_metric_file *metrics;	/* metric mode: the metrics it may call, or NULL */
	size_t	   *binding;		/* metric mode: program var i ← args[binding[i]] */
	bool		direct;			/* metric mode: binding is the identity, args go in as they are */
	udf_cache  *cache;			/* formula mode: compiled formulas of this process */
	duet_vm    *vm;
	duet_value *vars;
	size_t		vars_cap;
} udf_eval;

/* Metric mode: compiles `formula` once, binding its variables to the argument names. */
bool		udf_eval_init_metric(udf_eval *ev, const char *formula, size_t len, udf_error *err);
/*
 * Metric mode, between blocks: the same metric's new formula (same arguments and result), compiled
 * and swapped in; false (ev unchanged) when it does not compile or would bind differently.
 */
bool		udf_eval_replace_metric(udf_eval *ev, const char *formula, size_t len, udf_error *err);
/* Formula mode: args[0] (String) carries the formula of each row. */
bool		udf_eval_init_formula(udf_eval *ev, udf_error *err);
void		udf_eval_free(udf_eval *ev);
/* Evaluates one row into *result, checked against the result column's type. */
bool		udf_eval_row(udf_eval *ev, const duet_value *args, duet_value *result, udf_error *err);

/* The result check of udf_eval_row: the function's result type accepts the value. */
bool		udf_eval_check(const udf_eval *ev, const duet_value *result, udf_error *err);
/* err = "error:<class>[@line:col]: message" for a calc error; false. */
bool		udf_eval_fail(udf_error *err, const duet_error *e);
/*
 * Metric mode whose variables are its first arguments in order, none a String: rows can be
 * evaluated a block at a time with duet_eval_batch (udf_run does).
 */
bool		udf_eval_batchable(const udf_eval *ev);

/* "error:<class>" or "error:<class>@line:col" for a calc error. */
void		udf_error_tag(const duet_error *e, char *buf, size_t size);

/* Formula cache shared by the formula and dictionary modes. */
typedef struct udf_compiled
{
	duet_program *program;
	size_t	   *binding;		/* program var i ← column binding[i]; unused in dictionary mode */
	bool		failed;			/* compile or bind error, kept so it is reported per row */
	duet_error	error;
} udf_compiled;

typedef duet_type (*udf_var_type_fn) (void *arg, const char *name, size_t len);

udf_cache  *udf_cache_new(size_t max_entries);
void		udf_cache_free(udf_cache *c);
/*
 * Looks the formula up, compiling it on a miss with the given static types. When cols is not
 * NULL the program's variables are bound to those column names (missing → unknown_variable).
 * NULL only when out of memory.
 */
const udf_compiled *udf_cache_get(udf_cache *c, const char *src, size_t len,
								  const udf_column *cols, size_t ncols,
								  udf_var_type_fn var_type, void *var_type_arg);

/* ---- modes ---- */

typedef struct udf_protocol
{
	const udf_format *format;
	bool		chunk_header;	/* executable_pool send_chunk_header: "<rows>\n" before each block */
	uint64_t	max_chunk_rows;
	/* chunk_header mode: called before each block's rows (a metric pool re-reads its definitions) */
	void		(*next_block) (void *arg, udf_eval *ev);
	void	   *next_block_arg;
} udf_protocol;

/* The block loop: reads rows (per chunk header when set), writes exactly one result per row. */
bool		udf_run(const udf_protocol *proto, udf_eval *ev, udf_in *in, udf_out *out,
					udf_row *row, udf_error *err);

/* ClickHouse 18.16 executable dictionary: TSV keys (formula, inputs JSON) → keys + result. */
bool		udf_run_dictionary(udf_in *in, udf_out *out, udf_row *row, udf_error *err);

/* Metric definitions file: name, return type, arguments, formula (see udf_defs.c). */
typedef struct udf_metric
{
	char		name[UDF_MAX_NAME];
	udf_column	result;
	udf_column	args[UDF_MAX_COLUMNS];
	size_t		nargs;
	char	   *formula;
	size_t		formula_len;
	/* the arguments as the compiler sees a metric's parameters (duet_metric) */
	const char *params[UDF_MAX_COLUMNS];
	duet_type	param_types[UDF_MAX_COLUMNS];
} udf_metric;

/* Every metric of a definitions file: metrics call metrics, expanded when compiled. */
typedef struct udf_metric_file
{
	udf_metric *items;
	size_t		n;
} udf_metric_file;

bool		udf_metrics_read(const char *path, udf_metric_file *f, udf_error *err);

/*
 * A metric pool follows its definitions file (udf_reload.c): duet-ch-sync replaces the file by
 * rename(2); before each block the pool stats the path and, when it is another file, reads it and
 * compiles the metric's new formula — every row of a block is computed by one definition.
 */
typedef struct udf_metric_source
{
	char		path[4200];
	char		name[UDF_MAX_NAME];
	unsigned long long dev,
				ino,
				size;
	long long	mtime_sec,
				mtime_nsec;
	unsigned	reloads;		/* definitions taken up since the start */
} udf_metric_source;

/* Reads path, sets ev's arguments and result type from metric name, compiles it. */
bool		udf_metric_source_open(udf_metric_source *src, const char *path, const char *name,
								   udf_eval *ev, udf_error *err);
/* udf_protocol.next_block: takes up a changed file; keeps the loaded definition when it cannot. */
void		udf_metric_source_refresh(void *arg, udf_eval *ev);
const udf_metric *udf_metrics_find(const udf_metric_file *f, const char *name, size_t len);
void		udf_metrics_free(udf_metric_file *f);
/* duet_compile_options.metric over a file (arg: the udf_metric_file) */
bool		udf_metrics_resolve(void *arg, const char *name, size_t len, duet_metric *m);

/*
 * The definitions file's path: given as is when absolute, else beside the executable as ClickHouse
 * ran it (argv[0]'s directory, symlinks not resolved), else beside /proc/self/exe.
 */
void		udf_resolve_definitions(const char *argv0, const char *given, char *path, size_t size);

#endif							/* DUET_UDF_H */

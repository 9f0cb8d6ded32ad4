/*
 * duet_udf.c — the ClickHouse executable UDF that runs Duet formulas (DESIGN.md §9).
 *
 *   duet_udf --formula --arguments formula:String,clicks:Nullable(Float64),… --returns Nullable(Float64)
 *       the first argument of every row is the formula; the others bind its variables by name
 *   duet_udf --metric ctr [--definitions duet_metrics.tsv]
 *       a named metric: formula, argument names/types and result type from the definitions file
 *   duet_udf --dictionary
 *       ClickHouse 18.16 executable dictionary source: keys (formula, inputs JSON) → result text
 *
 * Common options: --format TabSeparated|CSV|JSONEachRow|RowBinary (default TabSeparated),
 * --chunk-header (executable_pool with send_chunk_header), --return-name (JSONEachRow key of the
 * result; default "result"), --max-row-bytes (default 256 MiB).
 *
 * Exit status 0 after a clean end of input; on malformed input or a formula error, one line on
 * stderr and exit 1 (usage errors: 2). Nothing is written to stderr otherwise.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "udf.h"

#define DEFAULT_DEFINITIONS "duet_metrics.tsv"

static void
die(int code, const char *msg)
{
	fprintf(stderr, "duet_udf: %s\n", msg);
	exit(code);
}

static void
usage_error(const char *msg)
{
	fprintf(stderr, "duet_udf: %s\n"
			"usage: duet_udf --formula --arguments SPEC --returns TYPE [options]\n"
			"       duet_udf --metric NAME [--definitions FILE] [options]\n"
			"       duet_udf --dictionary\n"
			"options: --format TabSeparated|CSV|JSONEachRow|RowBinary  --chunk-header\n"
			"         --return-name NAME  --max-row-bytes N\n", msg);
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *format = "TabSeparated";
	const char *arguments = NULL;
	const char *returns = NULL;
	const char *return_name = "result";
	const char *metric = NULL;
	const char *definitions = DEFAULT_DEFINITIONS;
	bool		formula_mode = false;
	bool		dictionary = false;
	size_t		max_row_bytes = (size_t) 256 << 20;
	udf_protocol proto;
	udf_metric_source source;
	static udf_eval ev;
	static udf_row row;
	udf_error	err;
	udf_in		in;
	udf_out		out;
	bool		ok;

	memset(&proto, 0, sizeof(proto));
	proto.max_chunk_rows = 1ULL << 32;
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool		takes = true;

		if (strcmp(a, "--formula") == 0)
			formula_mode = true, takes = false;
		else if (strcmp(a, "--dictionary") == 0)
			dictionary = true, takes = false;
		else if (strcmp(a, "--chunk-header") == 0)
			proto.chunk_header = true, takes = false;
		else if (!v)
			usage_error("missing value after an option, or unknown option");
		else if (strcmp(a, "--format") == 0)
			format = v;
		else if (strcmp(a, "--arguments") == 0)
			arguments = v;
		else if (strcmp(a, "--returns") == 0)
			returns = v;
		else if (strcmp(a, "--return-name") == 0)
			return_name = v;
		else if (strcmp(a, "--metric") == 0)
			metric = v;
		else if (strcmp(a, "--definitions") == 0)
			definitions = v;
		else if (strcmp(a, "--max-row-bytes") == 0)
		{
			char	   *end;

			errno = 0;
			max_row_bytes = strtoull(v, &end, 10);
			if (*end || errno || max_row_bytes < 64)
				usage_error("--max-row-bytes needs a number of bytes (at least 64)");
		}
		else
			usage_error("unknown option");
		if (takes)
			i++;
	}
	if ((formula_mode ? 1 : 0) + (metric ? 1 : 0) + (dictionary ? 1 : 0) != 1)
		usage_error("give exactly one of --formula, --metric NAME, --dictionary");
	proto.format = udf_format_find(format);
	if (!proto.format)
		usage_error("unknown --format (TabSeparated, CSV, JSONEachRow or RowBinary)");
	if (dictionary && (proto.format != &udf_format_tsv || proto.chunk_header))
		usage_error("--dictionary speaks TabSeparated without chunk headers");

	/* A reader that went away is ClickHouse's business; report it as a write error, not a signal. */
	signal(SIGPIPE, SIG_IGN);

	udf_row_init(&row, max_row_bytes);
	if (!udf_out_init(&out, STDOUT_FILENO) || !udf_in_init_fd(&in, STDIN_FILENO, &out))
		die(1, "out of memory");

	if (dictionary)
		ok = udf_run_dictionary(&in, &out, &row, &err);
	else
	{
		if (strlen(return_name) >= UDF_MAX_NAME)
			usage_error("--return-name too long");
		snprintf(ev.result.name, sizeof(ev.result.name), "%s", return_name);
		if (metric)
		{
			char		path[PATH_MAX + 64];

			if (arguments || returns)
				usage_error("--metric takes its arguments and result type from the definitions file");
			udf_resolve_definitions(argv[0], definitions, path, sizeof(path));
			ok = udf_metric_source_open(&source, path, metric, &ev, &err);
			/* a pool follows its definitions file between blocks (udf_reload.c) */
			proto.next_block = udf_metric_source_refresh;
			proto.next_block_arg = &source;
			if (!ok)
			{
				char		msg[sizeof(err.message) + 64];

				snprintf(msg, sizeof(msg), "metric %s: %s", metric, err.message);
				die(2, msg);
			}
		}
		else
		{
			if (!arguments || !returns)
				usage_error("--formula needs --arguments and --returns");
			if (!udf_columns_parse(arguments, ev.args, &ev.nargs, &err) ||
				!udf_type_parse(returns, strlen(returns), &ev.result.type, &err) ||
				!udf_eval_init_formula(&ev, &err))
				usage_error(err.message);
		}
		if (ev.nargs == 0)
			usage_error("a function needs at least one argument");
		if (!udf_result_type_supported(ev.result.type))
			usage_error("the result type must be [Nullable(]Float64, Int64, UInt64, UInt8, Bool, String, Date or DateTime[)]");
		ok = udf_run(&proto, &ev, &in, &out, &row, &err);
		udf_eval_free(&ev);
	}
	udf_row_free(&row);
	udf_in_free(&in);
	udf_out_free(&out);
	if (!ok)
		die(1, err.message);
	return 0;
}

/*
 * metrics_sql.c — a metric as native SQL (docs/metrics.md, "Native SQL").
 *
 * duet_metric_sql(name, dialect) compiles the metric the caller uses (its tenant's override, else
 * the global one; composed metrics expanded) with calc/sqlgen.c into one SQL expression over its
 * parameters, written as quoted identifiers, with exactly Duet's semantics — or refuses, naming
 * the construct that has no exact equivalent in the dialect. The text is data: the caller pastes
 * it into a query of their own, so nothing here runs it.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "calc_pg.h"
#include "metrics.h"
#include "pg_duet.h"

PG_FUNCTION_INFO_V1(duet_metric_sql);

typedef struct metric_vars
{
	const DuetMetric *m;
	char	  **sql;			/* per parameter: its quoted identifier (UTF-8) */
} metric_vars;

static duet_type
param_type(void *arg, const char *name, size_t len)
{
	const metric_vars *v = arg;

	for (int i = 0; i < v->m->nparams; i++)
		if (strlen(v->m->params[i]) == len && memcmp(v->m->params[i], name, len) == 0)
			return v->m->types[i];
	return DUET_T_ANY;
}

/* calc's callback: looks up only (nothing here may raise inside calc) */
static const char *
param_sql(void *arg, const char *name, size_t len)
{
	const metric_vars *v = arg;

	for (int i = 0; i < v->m->nparams; i++)
		if (strlen(v->m->params[i]) == len && memcmp(v->m->params[i], name, len) == 0)
			return v->m->types[i] == DUET_T_ANY ? NULL : v->sql[i];
	return NULL;
}

/*
 * The SQL of metric m in dialect (calc's text, UTF-8, palloc'd), parameters written by sql[i];
 * raises when it does not compile. schema: the extension's (of duet_calc_number_args).
 */
static char *
metric_sql_text(const DuetMetric *m, duet_sql_dialect dialect, char **sql, const char *schema)
{
	metric_vars vars = {m, sql};
	duet_compile_options opts;
	duet_sql_options so;
	duet_error	err;
	bool		refused;
	char	   *text,
			   *out;

	memset(&opts, 0, sizeof(opts));
	opts.var_type = param_type;
	opts.var_type_arg = &vars;
	duet_metrics_options(&opts);
	memset(&so, 0, sizeof(so));
	so.dialect = dialect;
	so.var_sql = param_sql;
	so.arg = &vars;
	so.fallback = psprintf("%s.duet_calc_number_args", quote_identifier(schema));
	text = duet_compile_sql(m->formula, m->formula_len, &opts, &so, &refused, &err);
	if (!text && refused)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("metric \"%s\" has no exact SQL translation: %s", m->name, err.message),
				 err.line > 0 ? errdetail("At line %d, column %d of the expanded formula:\n%s",
										  err.line, err.column, err.excerpt) : 0,
				 errhint("docs/metrics.md lists what compiles to each dialect; compute this metric "
						 "with duet_calc_number_args('%s()', …) instead.", m->name)));
	if (!text)
		ereport(ERROR,
				(errcode(pgcalc_errcode(err.cls)),
				 errmsg("invalid formula: %s", err.message),
				 err.line > 0 ? errdetail("At line %d, column %d:\n%s", err.line, err.column, err.excerpt) : 0));
	out = pstrdup(text);
	free(text);
	return out;
}

/* duet_metric_sql(name text, dialect text DEFAULT 'postgres') RETURNS text */
Datum
duet_metric_sql(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *dialect = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const DuetMetric *m;
	duet_sql_dialect d;
	char	  **sql;
	char	   *text;
	size_t		len;

	if (strcmp(dialect, "postgres") == 0 || strcmp(dialect, "postgresql") == 0)
		d = DUET_SQL_POSTGRES;
	else if (strcmp(dialect, "clickhouse") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("metrics do not compile to ClickHouse SQL yet"),
				 errhint("In ClickHouse, call the metric through the executable UDF "
						 "(duet_clickhouse_config(), duet-ch-sync).")));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown SQL dialect \"%s\"", dialect),
				 errhint("The dialects are 'postgres' and 'clickhouse'.")));
	(void) duet_metrics_load(false);
	m = duet_metrics_find(name, strlen(name));
	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("metric \"%s\" does not exist", name),
				 errhint("duet.metrics_catalog lists the metrics you may use.")));
	sql = palloc(sizeof(char *) * Max(m->nparams, 1));
	for (int i = 0; i < m->nparams; i++)
	{
		/* parameter names are user input: always quoted (in UTF-8, calc's encoding) */
		const char *q = quote_identifier(m->params[i]);

		sql[i] = (char *) pgcalc_to_utf8(q, strlen(q), &len);
	}
	/* this function's schema is the extension's */
	text = metric_sql_text(m, d, sql, get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));
	PG_RETURN_TEXT_P(cstring_to_text(pgcalc_from_utf8(text, strlen(text))));
}

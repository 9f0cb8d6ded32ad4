/*
 * metrics_sql.c — a metric as native SQL (docs/metrics.md, "Native SQL").
 *
 * duet_metric_sql(name, dialect) compiles the metric the caller uses (its tenant's override, else
 * the global one; composed metrics expanded) with calc/sqlgen.c into one SQL expression over its
 * parameters, written as quoted identifiers (PostgreSQL's "…", ClickHouse's `…`), with exactly
 * Duet's semantics — or refuses, naming the construct that has no exact equivalent in the dialect. The text is data: the caller pastes
 * it into a query of their own, so nothing here runs it.
 *
 * duet_metric_functions_refresh() — called by every change of a global metric, in its transaction
 * — makes schema duet_metrics hold one inlinable LANGUAGE sql IMMUTABLE function per global metric
 * that compiles (duet_metrics.roas(revenue, spend)), and duet.metric_functions say why the others
 * have none. The functions are created by the extension owner (duet_run_privileged) and made
 * members of the extension; their text is built only from the compiled tree: names through
 * quote_identifier, string constants as E'' literals, nothing of the formula's text.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "calc_pg.h"
#include "metrics.h"
#include "pg_duet.h"
#include "privileged.h"

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
 * The SQL of metric m in dialect (calc's text, UTF-8, palloc'd) and its result type, parameters
 * written by sql[i]; schema is the extension's (of duet_calc_number_args). NULL with *refusal set
 * (the message, palloc'd) when a construct does not translate; raises when it does not compile.
 */
static char *
metric_sql_text(const DuetMetric *m, duet_sql_dialect dialect, char **sql, const char *schema,
				duet_type *type, char **refusal, int *line, char **excerpt)
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
	so.arith_prefix = psprintf("%s.duet_num_", quote_identifier(schema));
	text = duet_compile_sql(m->formula, m->formula_len, &opts, &so, type, &refused, &err);
	if (!text && refused)
	{
		*refusal = pgcalc_from_utf8(err.message, strlen(err.message));
		*line = err.line;
		*excerpt = err.line > 0 ? psprintf("At line %d, column %d of the expanded formula:\n%s",
										   err.line, err.column, err.excerpt) : NULL;
		return NULL;
	}
	if (!text)
		ereport(ERROR,
				(errcode(pgcalc_errcode(err.cls)),
				 errmsg("invalid formula: %s", err.message),
				 err.line > 0 ? errdetail("At line %d, column %d:\n%s", err.line, err.column, err.excerpt) : 0));
	out = pstrdup(text);
	free(text);
	return out;
}

/* name as a ClickHouse identifier: backquoted, ` and \ escaped (palloc'd) */
char *
duet_ch_identifier(const char *name)
{
	StringInfoData q;

	initStringInfo(&q);
	appendStringInfoChar(&q, '`');
	for (const char *p = name; *p; p++)
	{
		if (*p == '`' || *p == '\\')
			appendStringInfoChar(&q, '\\');
		appendStringInfoChar(&q, *p);
	}
	appendStringInfoChar(&q, '`');
	return q.data;
}

/* the quoted parameter names of m in dialect, in UTF-8 */
static char **
quoted_params(const DuetMetric *m, duet_sql_dialect dialect)
{
	char	  **sql = palloc(sizeof(char *) * Max(m->nparams, 1));
	size_t		len;

	for (int i = 0; i < m->nparams; i++)
	{
		/* parameter names are user input: always quoted */
		const char *q = dialect == DUET_SQL_CLICKHOUSE ? duet_ch_identifier(m->params[i]) :
			quote_identifier(m->params[i]);

		sql[i] = (char *) pgcalc_to_utf8(q, strlen(q), &len);
	}
	return sql;
}

/*
 * m as SQL in dialect, in the database encoding (palloc'd), and its result type; NULL with
 * *refusal set when a construct does not translate (*excerpt: where, or NULL); raises when the
 * formula does not compile. schema: the extension's.
 */
char *
duet_metric_sql_text(const DuetMetric *m, duet_sql_dialect dialect, const char *schema,
					 duet_type *type, char **refusal, char **excerpt)
{
	int			line;
	char	   *text = metric_sql_text(m, dialect, quoted_params(m, dialect), schema, type, refusal,
									   &line, excerpt);

	return text ? pgcalc_from_utf8(text, strlen(text)) : NULL;
}

static const char *
sql_type(duet_type t)
{
	switch (t)
	{
		case DUET_T_NUMBER:
			return "double precision";
		case DUET_T_STRING:
			return "text";
		case DUET_T_BOOL:
			return "boolean";
		default:
			return NULL;
	}
}

static duet_sql_dialect
dialect_arg(const char *dialect)
{
	if (strcmp(dialect, "clickhouse") == 0)
		return DUET_SQL_CLICKHOUSE;
	if (strcmp(dialect, "postgres") != 0 && strcmp(dialect, "postgresql") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown SQL dialect \"%s\"", dialect),
				 errhint("The dialects are 'postgres' and 'clickhouse'.")));
	return DUET_SQL_POSTGRES;
}

/* m as SQL text in the database encoding, or an error naming what does not translate */
static text *
sql_or_refuse(const DuetMetric *m, duet_sql_dialect d, Oid fn_oid, bool is_metric)
{
	duet_type	type;
	char	   *refusal = NULL,
			   *excerpt = NULL,
			   *text;

	/* the calling function's schema is the extension's */
	text = duet_metric_sql_text(m, d, get_namespace_name(get_func_namespace(fn_oid)), &type, &refusal,
								&excerpt);
	if (!text && is_metric)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("metric \"%s\" has no exact SQL translation: %s", m->name, refusal),
				 excerpt ? errdetail_internal("%s", excerpt) : 0,
				 d == DUET_SQL_CLICKHOUSE ?
				 errhint("docs/metrics.md lists what compiles to each dialect; in ClickHouse, compute "
						 "this metric with the executable UDF %s (duet_clickhouse_config()) instead.", m->name) :
				 errhint("docs/metrics.md lists what compiles to each dialect; compute this metric "
						 "with duet_calc_number_args('%s()', …) instead.", m->name)));
	if (!text)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("formula has no exact SQL translation: %s", refusal),
				 excerpt ? errdetail_internal("%s", excerpt) : 0,
				 errhint("docs/metrics.md lists what compiles to each dialect.")));
	return cstring_to_text(text);
}

/* duet_metric_sql(name text, dialect text DEFAULT 'postgres') RETURNS text */
Datum
duet_metric_sql(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	duet_sql_dialect d = dialect_arg(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	const DuetMetric *m;

	(void) duet_metrics_load(false);
	m = duet_metrics_find(name, strlen(name));
	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("metric \"%s\" does not exist", name),
				 errhint("duet.metrics_catalog lists the metrics you may use.")));
	PG_RETURN_TEXT_P(sql_or_refuse(m, d, fcinfo->flinfo->fn_oid, true));
}

PG_FUNCTION_INFO_V1(duet_formula_sql);

/*
 * duet_formula_sql(formula text, typed_names text[], typed_types text[], dialect text) RETURNS
 * text: any formula (calling the metrics the caller sees) as SQL over its variables, typed as
 * for duet_metric_signature (ClickHouse type names; undeclared: numbers).
 */
Datum
duet_formula_sql(PG_FUNCTION_ARGS)
{
	char	   *formula = text_to_cstring(PG_GETARG_TEXT_PP(0));
	duet_sql_dialect d = dialect_arg(text_to_cstring(PG_GETARG_TEXT_PP(3)));
	DuetMetricSignature sig;
	DuetMetric	m;

	(void) duet_metrics_load(false);
	duet_metric_signature_of(formula, strlen(formula), PG_GETARG_ARRAYTYPE_P(1),
							 PG_GETARG_ARRAYTYPE_P(2), &sig);
	memset(&m, 0, sizeof(m));
	m.name = "formula";
	m.formula = formula;
	m.formula_len = strlen(formula);
	m.nparams = sig.nargs;
	m.params = (const char **) sig.args;
	m.types = palloc(sizeof(duet_type) * Max(sig.nargs, 1));
	for (int i = 0; i < sig.nargs; i++)
		m.types[i] = duet_metric_ch_type(sig.ch_types[i]);
	PG_RETURN_TEXT_P(sql_or_refuse(&m, d, fcinfo->flinfo->fn_oid, false));
}

/* ---- generated functions ---- */

/*
 * As the extension owner: replaces every function of duet_metrics by those of script. Not
 * read-only, so that the list is read with a fresh snapshot: a statement changing several
 * metrics regenerates once per change.
 */
static void
replace_functions(void *arg)
{
	const char *script = arg;
	StringInfoData drop;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text FROM pg_catalog.pg_proc p "
					"WHERE p.pronamespace OPERATOR(pg_catalog.=) 'duet_metrics'::pg_catalog.regnamespace",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the functions of schema duet_metrics");
	initStringInfo(&drop);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *f = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		appendStringInfo(&drop, "ALTER EXTENSION pg_duet DROP FUNCTION %s; DROP FUNCTION %s;", f, f);
	}
	appendStringInfoString(&drop, "DELETE FROM duet.metric_functions;");
	if (SPI_execute(drop.data, false, 0) < 0 || SPI_execute(script, false, 0) < 0)
		elog(ERROR, "could not regenerate the functions of schema duet_metrics");
	SPI_finish();
}

/*
 * Regenerates schema duet_metrics from the global metrics (as the caller sees them: the global
 * rows are everyone's). fn_oid: the calling SQL function, whose schema is the extension's.
 * Returns how many functions it holds.
 */
int
duet_metric_functions_refresh(Oid fn_oid)
{
	const DuetMetric *all;
	int			n,
				made = 0;
	StringInfoData script;
	const char *schema;

	if (!duet_sql_is_current())
		return 0;
	schema = get_namespace_name(get_func_namespace(fn_oid));
	duet_metrics_forget();
	(void) duet_metrics_load(true);
	all = duet_metrics_all(&n);
	initStringInfo(&script);
	for (int i = 0; i < n; i++)
	{
		const DuetMetric *m = &all[i];
		char	  **sql = quoted_params(m, DUET_SQL_POSTGRES);
		duet_type	type;
		char	   *refusal = NULL,
				   *excerpt = NULL,
				   *text;
		int			line;
		StringInfoData sig;

		if (m->tenant != NULL)
			continue;
		text = metric_sql_text(m, DUET_SQL_POSTGRES, sql, schema, &type, &refusal, &line, &excerpt);
		if (text && !sql_type(type))
			refusal = pstrdup("a formula whose result has no type (it is always NULL)");
		for (int k = 0; k < m->nparams && !refusal; k++)
			if (strlen(m->params[k]) >= NAMEDATALEN)
				refusal = psprintf("parameter \"%s\" is longer than %d bytes, PostgreSQL's limit",
								   m->params[k], NAMEDATALEN - 1);
		initStringInfo(&sig);
		appendStringInfo(&sig, "duet_metrics.%s(", quote_identifier(m->name));
		for (int k = 0; k < m->nparams; k++)
			appendStringInfo(&sig, "%s%s %s", k ? ", " : "", quote_identifier(m->params[k]),
							 sql_type(m->types[k]) ? sql_type(m->types[k]) : "double precision");
		appendStringInfoChar(&sig, ')');
		if (refusal)
		{
			appendStringInfo(&script, "INSERT INTO duet.metric_functions (name, function, not_compiled) "
							 "VALUES (%s, NULL, %s);", quote_literal_cstr(m->name),
							 quote_literal_cstr(refusal));
			continue;
		}
		appendStringInfo(&script, "CREATE FUNCTION %s RETURNS %s LANGUAGE sql IMMUTABLE PARALLEL SAFE "
						 "RETURN %s; ALTER EXTENSION pg_duet ADD FUNCTION %s; "
						 "INSERT INTO duet.metric_functions (name, function, not_compiled) VALUES (%s, %s, NULL);",
						 sig.data, sql_type(type), pgcalc_from_utf8(text, strlen(text)), sig.data,
						 quote_literal_cstr(m->name), quote_literal_cstr(sig.data));
		made++;
	}
	duet_run_privileged(duet_extension_owner(), NULL, replace_functions, script.data);
	duet_metrics_forget();
	return made;
}

PG_FUNCTION_INFO_V1(duet_metric_functions_refresh_sql);

/* duet_metric_functions_refresh() RETURNS integer (admin; after a restore, pg_dump skips them) */
Datum
duet_metric_functions_refresh_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(duet_metric_functions_refresh(fcinfo->flinfo->fn_oid));
}

/*
 * metrics_ch_sql.c — the metrics as ClickHouse SQL user-defined functions (docs/metrics.md,
 * "ClickHouse SQL").
 *
 * duet_clickhouse_sql_functions() returns, per metric the caller uses (its tenant's override,
 * else the global one), its ClickHouse expression (calc/sqlgen_ch.c; composed metrics inlined:
 * what 18.16 runs inline in a SELECT) and the statements that make it a SQL user-defined function
 * on ClickHouse 21.10 and later:
 *
 *     DROP FUNCTION IF EXISTS `roas`;
 *     CREATE FUNCTION `roas` AS (`revenue`, `spend`) -> <expression>;
 *
 * or why it has none (the construct without an exact ClickHouse form). duet_clickhouse_config()
 * gives the executable UDF's XML beside it; duet-ch-sync --print / --print-sql print both. The
 * text is data: nothing here runs it. Names are backquoted (duet_ch_identifier), so a parameter
 * name cannot end the identifier.
 */
#include "postgres.h"

#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "metrics.h"

PG_FUNCTION_INFO_V1(duet_clickhouse_sql_functions);

/*
 * duet_clickhouse_sql_functions(OUT name text, OUT arguments text[], OUT expression text,
 * OUT ddl text, OUT not_compiled text) RETURNS SETOF record, ordered by name
 */
Datum
duet_clickhouse_sql_functions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *schema = get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid));
	const DuetMetric *all;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	(void) duet_metrics_load(false);
	all = duet_metrics_all(&n);
	for (int i = 0; i < n; i++)
	{
		const DuetMetric *m = &all[i];
		duet_type	type;
		char	   *refusal = NULL,
				   *excerpt = NULL,
				   *expr;
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};
		char	  **args = palloc(sizeof(char *) * Max(m->nparams, 1));

		for (int k = 0; k < m->nparams; k++)
			args[k] = (char *) m->params[k];
		expr = duet_metric_sql_text(m, DUET_SQL_CLICKHOUSE, schema, &type, &refusal, &excerpt);
		values[0] = CStringGetTextDatum(m->name);
		values[1] = PointerGetDatum(duet_text_array(args, m->nparams));
		if (expr)
		{
			StringInfoData ddl;
			char	   *fn = duet_ch_identifier(m->name);

			initStringInfo(&ddl);
			appendStringInfo(&ddl, "DROP FUNCTION IF EXISTS %s;\nCREATE FUNCTION %s AS (", fn, fn);
			for (int k = 0; k < m->nparams; k++)
				appendStringInfo(&ddl, "%s%s", k ? ", " : "", duet_ch_identifier(m->params[k]));
			appendStringInfo(&ddl, ") -> %s;", expr);
			values[2] = CStringGetTextDatum(expr);
			values[3] = CStringGetTextDatum(ddl.data);
			nulls[4] = true;
		}
		else
		{
			nulls[2] = nulls[3] = true;
			values[4] = CStringGetTextDatum(refusal);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

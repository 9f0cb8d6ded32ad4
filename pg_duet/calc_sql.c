/*
 * calc_sql.c — SQL functions of the Duet formula engine:
 *
 *   duet_calc(formula text, vars jsonb) → jsonb
 *   duet_calc(formula text, row anyelement) → jsonb          variables are the row's columns
 *   duet_calc_number(formula text, vars jsonb | row anyelement) → float8
 *   duet_calc_args(formula text, VARIADIC "any") → jsonb, duet_calc_number_args(…) → float8
 *                                            variables bound positionally (the planner's rewrite
 *                                            of the row form, calc_support.c)
 *   duet_formula_check(formula text) → (valid, error_class, message, line, col, ...)
 *   duet_formula_explain(formula text) → text               the bytecode listing
 *   duet_calc_cache_stats() → the backend cache's counters
 *
 * Binding and caching are in calc_bind.c and calc_cache.c; this file converts results.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include <math.h>

#include "calc_pg.h"
#include "metrics.h"

PG_FUNCTION_INFO_V1(duet_calc_jsonb);
PG_FUNCTION_INFO_V1(duet_calc_row);
PG_FUNCTION_INFO_V1(duet_calc_number_jsonb);
PG_FUNCTION_INFO_V1(duet_calc_number_row);
PG_FUNCTION_INFO_V1(duet_calc_args);
PG_FUNCTION_INFO_V1(duet_calc_number_args);
PG_FUNCTION_INFO_V1(duet_formula_check);
PG_FUNCTION_INFO_V1(duet_calc_cache_stats);
PG_FUNCTION_INFO_V1(duet_formula_explain);

/* A result as jsonb, as the value layer writes it (calc_value.c). */
static Datum
result_jsonb(const duet_value *out)
{
	return JsonbPGetDatum(pgcalc_value_jsonb(out));
}

static void
not_a_number(duet_type type)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("formula result is a %s, not a number", duet_type_name(type)),
			 errhint("duet_calc_number() is for numeric formulas; duet_calc() returns any result as jsonb.")));
}

/*
 * Evaluates for the float8 variant: NULL result → SQL NULL; string or boolean → error. Inlined
 * into each caller: it runs once per row.
 */
static pg_attribute_always_inline Datum
result_number(FunctionCallInfo fcinfo, PgcalcSite *site, const duet_value *vars)
{
	duet_value	out;

	/* A formula statically of another type fails at once, even on rows where it would be NULL. */
	if (site->typed->result_type == DUET_T_STRING || site->typed->result_type == DUET_T_BOOL ||
		site->typed->result_type == DUET_T_DATE || site->typed->result_type == DUET_T_TIMESTAMP)
		not_a_number(site->typed->result_type);
	pgcalc_eval(site, vars, &out);
	if (out.type == DUET_T_NULL)
		PG_RETURN_NULL();
	if (out.type == DUET_T_INT)
		PG_RETURN_FLOAT8((double) out.u.i);	/* float8 is the function's type: the nearest double */
	if (out.type != DUET_T_NUMBER)
		not_a_number(out.type);
	PG_RETURN_FLOAT8(out.u.num);
}

Datum
duet_calc_jsonb(PG_FUNCTION_ARGS)
{
	PgcalcSite *site = pgcalc_site(fcinfo, false);
	const duet_value *vars;
	duet_value	out;

	pgcalc_site_formula(site, PG_GETARG_TEXT_PP(0));
	vars = pgcalc_bind_jsonb(site, PG_GETARG_JSONB_P(1));
	pgcalc_eval(site, vars, &out);
	return result_jsonb(&out);
}

Datum
duet_calc_row(PG_FUNCTION_ARGS)
{
	PgcalcSite *site = pgcalc_site(fcinfo, true);
	const duet_value *vars;
	duet_value	out;

	pgcalc_site_formula(site, PG_GETARG_TEXT_PP(0));
	vars = pgcalc_bind_row(site, PG_GETARG_HEAPTUPLEHEADER(1));
	pgcalc_eval(site, vars, &out);
	return result_jsonb(&out);
}

Datum
duet_calc_number_jsonb(PG_FUNCTION_ARGS)
{
	PgcalcSite *site = pgcalc_site(fcinfo, false);
	const duet_value *vars;

	pgcalc_site_formula(site, PG_GETARG_TEXT_PP(0));
	vars = pgcalc_bind_jsonb(site, PG_GETARG_JSONB_P(1));
	return result_number(fcinfo, site, vars);
}

Datum
duet_calc_number_row(PG_FUNCTION_ARGS)
{
	PgcalcSite *site = pgcalc_site(fcinfo, true);
	const duet_value *vars;

	pgcalc_site_formula(site, PG_GETARG_TEXT_PP(0));
	vars = pgcalc_bind_row(site, PG_GETARG_HEAPTUPLEHEADER(1));
	return result_number(fcinfo, site, vars);
}

/* Not strict (a NULL value is a NULL variable), so a NULL formula is checked here. */
Datum
duet_calc_args(PG_FUNCTION_ARGS)
{
	PgcalcSite *site;
	const duet_value *vars;
	duet_value	out;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	site = pgcalc_site(fcinfo, false);
	pgcalc_site_formula(site, PG_GETARG_TEXT_PP(0));
	vars = pgcalc_bind_args(site, fcinfo);
	pgcalc_eval(site, vars, &out);
	return result_jsonb(&out);
}

Datum
duet_calc_number_args(PG_FUNCTION_ARGS)
{
	PgcalcSite *site;
	const duet_value *vars;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	site = pgcalc_site(fcinfo, false);
	pgcalc_site_formula(site, PG_GETARG_TEXT_PP(0));
	vars = pgcalc_bind_args(site, fcinfo);
	return result_number(fcinfo, site, vars);
}

static text *
utf8_text(const char *s, size_t len)
{
	return cstring_to_text(pgcalc_from_utf8(s, len));
}

/*
 * duet_formula_check(formula) → (valid, error_class, message, line, col, expected, excerpt,
 * variables, result_type). Compiles without raising (variables untyped), for editors and for
 * validating formulas before storing them.
 */
Datum
duet_formula_check(PG_FUNCTION_ARGS)
{
	text	   *formula = PG_GETARG_TEXT_PP(0);
	TupleDesc	tupdesc;
	Datum		values[9];
	bool		nulls[9];
	size_t		len;
	const char *src;
	duet_program *prog;
	duet_error	err;
	duet_compile_options opts;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "duet_formula_check must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	memset(nulls, 0, sizeof(nulls));

	src = pgcalc_to_utf8(VARDATA_ANY(formula), VARSIZE_ANY_EXHDR(formula), &len);
	memset(&opts, 0, sizeof(opts));
	(void) duet_metrics_load(false);
	duet_metrics_options(&opts);
	prog = duet_compile(src, len, &opts, &err);
	if (prog != NULL)
	{
		size_t		n = duet_program_nvars(prog);
		Datum	   *names = palloc(sizeof(Datum) * (n + 1));

		for (size_t i = 0; i < n; i++)
		{
			const char *v = duet_program_var(prog, i);

			names[i] = PointerGetDatum(utf8_text(v, strlen(v)));
		}
		values[0] = BoolGetDatum(true);
		nulls[1] = nulls[2] = nulls[3] = nulls[4] = nulls[5] = nulls[6] = true;
		values[7] = PointerGetDatum(construct_array(names, (int) n, TEXTOID, -1, false, TYPALIGN_INT));
		values[8] = PointerGetDatum(cstring_to_text(duet_type_name(duet_program_type(prog))));
		duet_program_free(prog);
	}
	else
	{
		if (err.cls == DUET_ERR_NOMEM)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		values[0] = BoolGetDatum(false);
		values[1] = PointerGetDatum(cstring_to_text(duet_errclass_name(err.cls)));
		values[2] = PointerGetDatum(utf8_text(err.message, strnlen(err.message, sizeof(err.message))));
		values[3] = Int32GetDatum(err.line);
		values[4] = Int32GetDatum(err.column);
		nulls[3] = nulls[4] = err.line <= 0;
		values[5] = PointerGetDatum(utf8_text(err.expected, strnlen(err.expected, sizeof(err.expected))));
		nulls[5] = err.expected[0] == '\0';
		values[6] = PointerGetDatum(utf8_text(err.excerpt, strnlen(err.excerpt, sizeof(err.excerpt))));
		nulls[6] = err.excerpt[0] == '\0';
		nulls[7] = nulls[8] = true;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * duet_formula_explain(formula) → the program listing (duet_program_explain, calc/explain.c).
 * Compiled untyped, as duet_formula_check does; an invalid formula raises its error.
 */
Datum
duet_formula_explain(PG_FUNCTION_ARGS)
{
	text	   *formula = PG_GETARG_TEXT_PP(0);
	size_t		len;
	const char *src;
	duet_program *prog;
	duet_error	err;
	duet_compile_options opts;
	char	   *listing;
	text	   *volatile result = NULL;

	src = pgcalc_to_utf8(VARDATA_ANY(formula), VARSIZE_ANY_EXHDR(formula), &len);
	memset(&opts, 0, sizeof(opts));
	(void) duet_metrics_load(false);
	duet_metrics_options(&opts);
	prog = duet_compile(src, len, &opts, &err);
	if (prog == NULL)
		pgcalc_report(&err, false);
	listing = duet_program_explain(prog);
	duet_program_free(prog);
	if (listing == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	PG_TRY();
	{
		size_t		n = strlen(listing);

		if (n > 0 && listing[n - 1] == '\n')
			n--;				/* one text value: no empty last line */
		result = utf8_text(listing, n);
	}
	PG_FINALLY();
	{
		free(listing);
	}
	PG_END_TRY();
	PG_RETURN_TEXT_P(result);
}

/* duet_calc_cache_stats() → (entries, lookups, compiles, evictions) of this backend's cache. */
Datum
duet_calc_cache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "duet_calc_cache_stats must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = Int32GetDatum(pgcalc_cache_stats.entries);
	values[1] = Int64GetDatum(pgcalc_cache_stats.lookups);
	values[2] = Int64GetDatum(pgcalc_cache_stats.compiles);
	values[3] = Int64GetDatum(pgcalc_cache_stats.evictions);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

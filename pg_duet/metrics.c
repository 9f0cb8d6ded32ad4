/*
 * metrics.c — named metrics shared with ClickHouse (DESIGN.md §9).
 *
 * duet_metric_signature(formula, typed_names, typed_types) compiles a metric's formula with calc/
 * and reports what ClickHouse needs to call it: the variables (the function's arguments, in order
 * of first appearance), their ClickHouse types, and the result type. duet_metric_define (SQL, in
 * sql/60_metrics.sql) stores the metric with that signature; duet_clickhouse_config() turns the
 * table into the <functions> XML and the definitions file duet_udf reads.
 *
 * The formula may call other metrics (metrics_resolve.c expands them); metrics_write.c stores
 * versions. Variables without a declared type are numbers (Nullable(Float64)): declaring them lets the
 * compiler reject `clicks || 'x'` here, in PostgreSQL, instead of in a ClickHouse query.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "calc_pg.h"
#include "metrics.h"
#include "pg_duet.h"

PG_FUNCTION_INFO_V1(duet_metric_signature);

typedef struct declared_type
{
	char	   *name;
	char	   *ch_type;		/* ClickHouse type, without Nullable() */
	duet_type	type;
	bool		used;
} declared_type;

typedef struct declared_types
{
	declared_type *items;
	int			n;
} declared_types;

static const struct
{
	const char *ch_type;
	duet_type	type;
}			allowed_types[] =
{
	{"Float64", DUET_T_NUMBER}, {"Float32", DUET_T_NUMBER},
	{"Int8", DUET_T_NUMBER}, {"Int16", DUET_T_NUMBER}, {"Int32", DUET_T_NUMBER}, {"Int64", DUET_T_NUMBER},
	{"UInt8", DUET_T_NUMBER}, {"UInt16", DUET_T_NUMBER}, {"UInt32", DUET_T_NUMBER}, {"UInt64", DUET_T_NUMBER},
	{"String", DUET_T_STRING}, {"Bool", DUET_T_BOOL},
};

/* calc's var_type callback: the declared type, or number for an undeclared variable. */
static duet_type
declared_var_type(void *arg, const char *name, size_t len)
{
	declared_types *d = arg;

	for (int i = 0; i < d->n; i++)
		if (strlen(d->items[i].name) == len && memcmp(d->items[i].name, name, len) == 0)
			return d->items[i].type;
	return DUET_T_NUMBER;
}

static void
read_declared(ArrayType *names, ArrayType *types, declared_types *out)
{
	Datum	   *nd,
			   *td;
	bool	   *nn,
			   *tn;
	int			nn_count,
				tn_count;

	deconstruct_array(names, TEXTOID, -1, false, TYPALIGN_INT, &nd, &nn, &nn_count);
	deconstruct_array(types, TEXTOID, -1, false, TYPALIGN_INT, &td, &tn, &tn_count);
	if (nn_count != tn_count)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument names and types differ in length (%d and %d)", nn_count, tn_count)));
	out->n = nn_count;
	out->items = palloc0(sizeof(declared_type) * Max(nn_count, 1));
	for (int i = 0; i < nn_count; i++)
	{
		char	   *t;
		int			k;

		if (nn[i] || tn[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument names and types must not be null")));
		out->items[i].name = TextDatumGetCString(nd[i]);
		t = TextDatumGetCString(td[i]);
		/* Nullable(T) is accepted and normalised: every argument is Nullable in ClickHouse */
		if (strncmp(t, "Nullable(", 9) == 0 && t[strlen(t) - 1] == ')')
		{
			t = pstrdup(t + 9);
			t[strlen(t) - 1] = '\0';
		}
		for (k = 0; k < lengthof(allowed_types); k++)
			if (strcmp(allowed_types[k].ch_type, t) == 0)
				break;
		if (k == lengthof(allowed_types))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unsupported ClickHouse type \"%s\" for argument \"%s\"", t, out->items[i].name),
					 errhint("Use Float64, Float32, Int8 to Int64, UInt8 to UInt64, String or Bool.")));
		out->items[i].ch_type = t;
		out->items[i].type = allowed_types[k].type;
	}
}

static const char *
return_type_for(duet_type t)
{
	switch (t)
	{
		case DUET_T_BOOL:
			return "Nullable(UInt8)";
		case DUET_T_STRING:
			return "Nullable(String)";
		default:
			/* numbers, always-NULL formulas, and results whose type calc leaves open */
			return "Nullable(Float64)";
	}
}

/*
 * The signature of a metric's formula (database encoding) compiled against the metrics loaded
 * (duet_metrics_load) with the declared argument types: its variables — the metric's parameters,
 * in order of first appearance — their ClickHouse types, and its ClickHouse result type.
 */
void
duet_metric_signature_of(const char *formula, size_t formula_len, ArrayType *typed_names,
						 ArrayType *typed_types, DuetMetricSignature *sig)
{
	declared_types declared;
	duet_compile_options opts;
	duet_error	err;
	duet_program *prog;
	const char *src;
	size_t		len;

	read_declared(typed_names, typed_types, &declared);
	memset(&opts, 0, sizeof(opts));
	opts.var_type = declared_var_type;
	opts.var_type_arg = &declared;
	duet_metrics_options(&opts);
	src = pgcalc_to_utf8(formula, formula_len, &len);
	prog = duet_compile(src, len, &opts, &err);
	if (!prog)
		ereport(ERROR,
				(errcode(pgcalc_errcode(err.cls)),
				 errmsg("invalid formula: %s", err.message),
				 err.line > 0 ? errdetail("At line %d, column %d:\n%s", err.line, err.column, err.excerpt) : 0));

	/* Copy out of the calc program (malloc'd) before anything here can throw. */
	sig->nargs = (int) duet_program_nvars(prog);
	sig->args = palloc(sizeof(char *) * Max(sig->nargs, 1));
	sig->ch_types = palloc(sizeof(char *) * Max(sig->nargs, 1));
	for (int i = 0; i < sig->nargs; i++)
		sig->args[i] = pstrdup(duet_program_var(prog, i));
	sig->return_type = pstrdup(return_type_for(duet_program_type(prog)));
	duet_program_free(prog);

	for (int i = 0; i < sig->nargs; i++)
	{
		const char *t = "Float64";

		for (int k = 0; k < declared.n; k++)
			if (strcmp(declared.items[k].name, sig->args[i]) == 0)
			{
				t = declared.items[k].ch_type;
				declared.items[k].used = true;
			}
		sig->ch_types[i] = psprintf("Nullable(%s)", t);
		sig->args[i] = pgcalc_from_utf8(sig->args[i], strlen(sig->args[i]));
	}
	for (int k = 0; k < declared.n; k++)
		if (!declared.items[k].used)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("argument type given for \"%s\", which the formula does not use",
							declared.items[k].name)));
}

ArrayType *
duet_text_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	return construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * duet_metric_signature(formula text, typed_names text[], typed_types text[],
 *                       OUT arguments text[], OUT argument_types text[], OUT return_type text)
 * The formula may call the metrics the caller sees.
 */
Datum
duet_metric_signature(PG_FUNCTION_ARGS)
{
	text	   *formula = PG_GETARG_TEXT_PP(0);
	TupleDesc	tupdesc;
	DuetMetricSignature sig;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	(void) duet_metrics_load(false);
	duet_metric_signature_of(VARDATA_ANY(formula), VARSIZE_ANY_EXHDR(formula),
							 PG_GETARG_ARRAYTYPE_P(1), PG_GETARG_ARRAYTYPE_P(2), &sig);
	values[0] = PointerGetDatum(duet_text_array(sig.args, sig.nargs));
	values[1] = PointerGetDatum(duet_text_array(sig.ch_types, sig.nargs));
	values[2] = CStringGetTextDatum(sig.return_type);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

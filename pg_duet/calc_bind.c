/*
 * calc_bind.c — a duet_calc() call site: its programs and how its variables are bound.
 *
 * State lives in fn_extra, so a query compiles (or fetches from the backend cache) once and then
 * only binds and evaluates per row. A row is bound by column name through a map built once per
 * row type; a jsonb object by key. Either way the variables' types are passed to the compiler
 * (a signature, one character per variable), so a type error is found once, at compile time,
 * with its position; a jsonb whose value types change between rows switches programs.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "calc_pg.h"

static void
site_drop_programs(PgcalcSite *site)
{
	if (site->typed != NULL && site->typed != site->untyped)
		pgcalc_program_unpin(site->typed);
	if (site->untyped != NULL)
		pgcalc_program_unpin(site->untyped);
	site->typed = NULL;
	site->untyped = NULL;
	site->row_mapped = false;
	site->args_mapped = false;
}

/* fn_mcxt is going away (end of query, or error): release the pins on cached programs. */
static void
site_release(void *arg)
{
	site_drop_programs((PgcalcSite *) arg);
}

/*
 * The call's formula argument is a Const. Not get_fn_expr_arg_stable: an external Param is
 * stable within one execution, but PL/pgSQL re-evaluates a simple expression with new values of
 * its parameters under the same FmgrInfo (fn_extra survives), so only a Const is the same text
 * for every call through this site.
 */
static bool
formula_is_const(FmgrInfo *flinfo)
{
	Node	   *expr = flinfo->fn_expr;
	List	   *args;

	if (expr == NULL || !IsA(expr, FuncExpr))
		return false;
	args = ((FuncExpr *) expr)->args;
	return args != NIL && IsA(linitial(args), Const) && !((Const *) linitial(args))->constisnull;
}

PgcalcSite *
pgcalc_site(FunctionCallInfo fcinfo, bool row_form)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;
	PgcalcSite *site = flinfo->fn_extra;

	if (site == NULL)
	{
		if (row_form)
		{
			Oid			argtype = get_fn_expr_argtype(flinfo, 1);

			if (!OidIsValid(argtype) || !type_is_rowtype(argtype))
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("formula variables must come from a row or a jsonb object"),
						 errdetail("The second argument is of type %s.",
								   OidIsValid(argtype) ? format_type_be(argtype) : "unknown"),
						 errhint("Pass a table row, as in SELECT duet_calc('clicks / impressions', d) FROM campaign_daily d, "
								 "or a jsonb object.")));
		}
		site = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(PgcalcSite));
		site->mcxt = flinfo->fn_mcxt;
		site->scratch = AllocSetContextCreate(site->mcxt, "duet_calc inputs", ALLOCSET_SMALL_SIZES);
		site->formula_cxt = AllocSetContextCreate(site->mcxt, "duet_calc formula", ALLOCSET_SMALL_SIZES);
		site->row_cxt = AllocSetContextCreate(site->mcxt, "duet_calc row type", ALLOCSET_SMALL_SIZES);
		site->formula_stable = formula_is_const(flinfo);
		site->release.func = site_release;
		site->release.arg = site;
		MemoryContextRegisterResetCallback(site->mcxt, &site->release);
		flinfo->fn_extra = site;
	}
	/* only when a conversion allocated (strings): numbers leave it untouched */
	if (!site->scratch->isReset || site->scratch->firstchild != NULL)
		MemoryContextReset(site->scratch);
	return site;
}

void
pgcalc_site_formula_lookup(PgcalcSite *site, text *formula)
{
	const char *src = VARDATA_ANY(formula);
	int			len = VARSIZE_ANY_EXHDR(formula);
	const char *utf8;
	size_t		utf8_len;
	PgcalcProgram *untyped;
	MemoryContext old;
	int			n;

	if (site->untyped != NULL && len == site->formula_len && memcmp(src, site->formula, len) == 0)
		return;

	/* A different formula (e.g. formulas read from a table): start over. */
	site_drop_programs(site);
	MemoryContextReset(site->formula_cxt);
	MemoryContextReset(site->row_cxt);

	old = MemoryContextSwitchTo(site->formula_cxt);
	utf8 = pgcalc_to_utf8(src, len, &utf8_len);
	if (utf8 == src)
		utf8 = pnstrdup(src, len);
	MemoryContextSwitchTo(old);

	untyped = pgcalc_program_get(utf8, utf8_len, NULL, "", 0);

	old = MemoryContextSwitchTo(site->formula_cxt);
	site->untyped = untyped;
	site->formula = pnstrdup(src, len);
	site->formula_len = len;
	site->formula_utf8 = utf8;
	site->formula_utf8_len = utf8_len;
	n = site->nvars = untyped->nvars;
	site->var_names = palloc0(sizeof(char *) * (n + 1));
	site->var_name_lens = palloc0(sizeof(int) * (n + 1));
	for (int j = 0; j < n; j++)
	{
		const char *v = duet_program_var(untyped->program, j);

		site->var_names[j] = pgcalc_from_utf8(v, strlen(v));
		site->var_name_lens[j] = strlen(site->var_names[j]);
	}
	site->sig = palloc0(n + 1);
	site->cur_sig = palloc0(n + 1);
	site->perm = palloc0(sizeof(int) * (n + 1));
	site->in = palloc0(sizeof(duet_value) * (n + 1));
	site->vars = palloc0(sizeof(duet_value) * (n + 1));
	site->var_attno = palloc0(sizeof(int) * (n + 1));
	site->var_col = palloc0(sizeof(PgcalcColumn) * (n + 1));
	MemoryContextSwitchTo(old);
}

/* Makes site->typed the program compiled for the types in site->cur_sig. */
static void
site_use_sig(PgcalcSite *site)
{
	int			n = site->nvars;
	bool		any_known = false;
	PgcalcProgram *typed;

	if (site->typed != NULL && memcmp(site->sig, site->cur_sig, n) == 0)
		return;

	for (int j = 0; j < n; j++)
		any_known |= site->cur_sig[j] != 'a';
	typed = any_known
		? pgcalc_program_get(site->formula_utf8, site->formula_utf8_len, site->untyped, site->cur_sig, n)
		: site->untyped;

	if (site->typed != NULL && site->typed != site->untyped)
		pgcalc_program_unpin(site->typed);
	site->typed = typed;
	memcpy(site->sig, site->cur_sig, n);

	/* Same source, so normally the same variables in the same order; don't rely on it. */
	site->typed_nvars = typed->nvars;
	for (int i = 0; i < typed->nvars; i++)
	{
		const char *name = duet_program_var(typed->program, i);
		int			j;

		for (j = 0; j < n; j++)
			if (strcmp(name, duet_program_var(site->untyped->program, j)) == 0)
				break;
		if (j == n)
			elog(ERROR, "typed formula reads variable \"%s\" unknown to its untyped compile", name);
		site->perm[i] = j;
	}
}

static const char *
jsonb_type_word(const JsonbValue *v)
{
	if (v->type == jbvBinary)
		return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
	return "a composite value";
}

const duet_value *
pgcalc_bind_jsonb(PgcalcSite *site, Jsonb *jb)
{
	int			n = site->nvars;
	MemoryContext old;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("formula variables must be a jsonb object"),
				 errdetail("The jsonb value is %s.",
						   JB_ROOT_IS_SCALAR(jb) ? "a scalar" : "an array"),
				 errhint("Pass an object such as '{\"clicks\": 12, \"impressions\": 400}'.")));

	old = MemoryContextSwitchTo(site->scratch);
	for (int j = 0; j < n; j++)
	{
		JsonbValue	v;

		if (getKeyJsonValueFromContainer(&jb->root, site->var_names[j], site->var_name_lens[j], &v) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("formula variable \"%s\" is missing from the jsonb object", site->var_names[j]),
					 errhint("Add the key to the object, with null when its value is unknown.")));
		site->cur_sig[j] = pgcalc_jsonb_value(&v, &site->in[j]);
		if (site->cur_sig[j] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("formula variable \"%s\" is %s", site->var_names[j], jsonb_type_word(&v)),
					 errdetail("Formula variables take a number, a string, a boolean or null.")));
	}
	MemoryContextSwitchTo(old);

	site_use_sig(site);
	for (int i = 0; i < site->typed_nvars; i++)
		site->vars[i] = site->in[site->perm[i]];
	return site->vars;
}

static const char *
row_type_name(Oid typid)
{
	return typid == RECORDOID ? "the row" : format_type_be(typid);
}

/* Builds the variable -> column map for a row type, and picks the program for its types. */
static void
site_map_row(PgcalcSite *site, Oid typid, int32 typmod)
{
	TupleDesc	td = lookup_rowtype_tupdesc(typid, typmod);
	TupleDesc	copy;
	MemoryContext old;
	int			max_attno = 0;

	site->row_mapped = false;
	MemoryContextReset(site->row_cxt);
	old = MemoryContextSwitchTo(site->row_cxt);
	copy = CreateTupleDescCopy(td);
	ReleaseTupleDesc(td);
	MemoryContextSwitchTo(old);

	for (int j = 0; j < site->nvars; j++)
	{
		const char *name = site->var_names[j];
		bool		ambiguous;
		int			found = pgcalc_find_column(copy, name, &ambiguous);
		Form_pg_attribute att;

		if (found < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("formula variable \"%s\" is not a column of %s", name, row_type_name(typid)),
					 ambiguous
					 ? errhint("Several columns match \"%s\" ignoring case; write the variable as one of them exactly, in double quotes.", name)
					 : errhint("Variables bind to the row's columns by name; add the column or alias an expression to that name.")));

		att = TupleDescAttr(copy, found);
		site->cur_sig[j] = pgcalc_column_init_or_error(&site->var_col[j], att->atttypid, name, site->row_cxt);
		site->var_attno[j] = found;
		max_attno = Max(max_attno, found + 1);
	}

	old = MemoryContextSwitchTo(site->row_cxt);
	site->row_slot = MakeSingleTupleTableSlot(copy, &TTSOpsHeapTuple);
	MemoryContextSwitchTo(old);
	site->row_max_attno = max_attno;
	site->row_type = typid;
	site->row_typmod = typmod;
	site->row_typentry = NULL;
	if (typid != RECORDOID)
	{
		site->row_typentry = lookup_type_cache(typid, TYPECACHE_TUPDESC);
		site->row_tupdesc_id = site->row_typentry->tupDesc_identifier;
	}
	site_use_sig(site);
	site->row_mapped = true;
}

const duet_value *
pgcalc_bind_row(PgcalcSite *site, HeapTupleHeader rec)
{
	Oid			typid = HeapTupleHeaderGetTypeId(rec);
	int32		typmod = HeapTupleHeaderGetTypMod(rec);
	HeapTupleData tuple;
	TupleTableSlot *slot;
	MemoryContext old;

	if (!site->row_mapped || typid != site->row_type || typmod != site->row_typmod ||
		(site->row_typentry != NULL &&
		 site->row_typentry->tupDesc_identifier != site->row_tupdesc_id))
		site_map_row(site, typid, typmod);

	slot = site->row_slot;
	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;

	old = MemoryContextSwitchTo(site->scratch);
	/* Deform only as far as the last column the formula reads. */
	ExecStoreHeapTuple(&tuple, slot, false);
	if (site->row_max_attno > 0)
		slot_getsomeattrs(slot, site->row_max_attno);
	for (int i = 0; i < site->typed_nvars; i++)
	{
		int			j = site->perm[i];
		int			a = site->var_attno[j];

		site->vars[i] = slot->tts_isnull[a] ? duet_null()
			: pgcalc_datum_value(&site->var_col[j], slot->tts_values[a]);
	}
	ExecClearTuple(slot);
	MemoryContextSwitchTo(old);
	return site->vars;
}

/*
 * Positional binding: argument i + 1 is variable i, in order of first appearance (as in
 * duet_formula_check's variables, and as the ClickHouse UDFs take them). The planner rewrites
 * duet_calc(f, row) to this when it can (calc_support.c), so only the columns read are passed.
 */
void
pgcalc_bind_args_map(PgcalcSite *site, FunctionCallInfo fcinfo)
{
	int			nargs = PG_NARGS() - 1;

	if (get_fn_expr_variadic(fcinfo->flinfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("formula variables cannot be passed as a VARIADIC array"),
				 errhint("Pass each variable's value as an argument.")));
	if (nargs != site->nvars)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("wrong number of formula values: the formula reads %d, %d given", site->nvars, nargs),
				 errhint("Values bind to the variables in order of first appearance; duet_formula_check(formula) lists them.")));
	for (int j = 0; j < nargs; j++)
	{
		Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, j + 1);

		if (!OidIsValid(argtype) ||
			(site->cur_sig[j] = pgcalc_column_init(&site->var_col[j], argtype, site->formula_cxt)) == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("value of type %s cannot be formula variable \"%s\"",
							OidIsValid(argtype) ? format_type_be(argtype) : "unknown", site->var_names[j]),
					 errdetail("Formula variables take smallint, integer, bigint, oid, real, double precision, "
							   "numeric, text, varchar, char, name, boolean, date, timestamp, timestamptz, uuid or enum values.")));
	}
	site_use_sig(site);
	site->args_mapped = true;
}

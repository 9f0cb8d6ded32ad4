/*
 * rules_api.c — the SQL API of rules: duet_rule_create/alter/drop/enable/disable, duet_rule_test,
 * and the validation that runs at creation.
 *
 * The rule tables are written only by the extension owner. Each entry point identifies the
 * caller here — current role (which a SECURITY DEFINER function could not see) and its verified
 * tenant — then runs the internal duet.duet_rule_*_apply function as the owner, passing them.
 * Validation (duet.duet_rule_validate) switches back to the caller, so a rule's query is analysed
 * with the caller's privileges only.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "pg_duet.h"
#include "rules.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(duet_rule_create);
PG_FUNCTION_INFO_V1(duet_rule_alter);
PG_FUNCTION_INFO_V1(duet_rule_drop);
PG_FUNCTION_INFO_V1(duet_rule_enable);
PG_FUNCTION_INFO_V1(duet_rule_disable);
PG_FUNCTION_INFO_V1(duet_rule_validate);
PG_FUNCTION_INFO_V1(duet_rule_test);

static const char *
required_tenant(const char *what)
{
	const char *tenant = duet_current_tenant_name();

	if (tenant == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no tenant is selected"),
				 errdetail("%s belong to a tenant, and role \"%s\" acts for none.",
						   what, GetUserNameFromId(GetUserId(), false)),
				 errhint("Call duet_set_tenant() first.")));
	return tenant;
}

/*
 * Calls duet.<internal>(tenant, caller, <this function's arguments>, <extra bool>) as the owner
 * and returns its int8 result (0 for void). Errors are re-raised without the internal context.
 * what names the objects ("Rules", "Pipelines") in the error for a caller without a tenant.
 */
int64
duet_forward_as_owner(FunctionCallInfo fcinfo, const char *internal, int extra, bool extra_value,
					  const char *what)
{
	const char *tenant = required_tenant(what);
	Oid			caller = GetUserId();
	Oid		   *argtypes;
	int			nargs;
	Oid			types[FUNC_MAX_ARGS];
	Datum		values[FUNC_MAX_ARGS];
	char		nulls[FUNC_MAX_ARGS];
	StringInfoData sql;
	int			i,
				n = 0;

	(void) get_func_signature(fcinfo->flinfo->fn_oid, &argtypes, &nargs);
	types[n] = TEXTOID;
	values[n] = CStringGetTextDatum(tenant);
	nulls[n++] = ' ';
	types[n] = OIDOID;
	values[n] = ObjectIdGetDatum(caller);
	nulls[n++] = ' ';
	for (i = 0; i < nargs; i++)
	{
		types[n] = argtypes[i];
		values[n] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[n++] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	if (extra)
	{
		types[n] = BOOLOID;
		values[n] = BoolGetDatum(extra_value);
		nulls[n++] = ' ';
	}
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT duet.%s(", internal);
	for (i = 0; i < n; i++)
		appendStringInfo(&sql, "%s$%d", i ? ", " : "", i + 1);
	appendStringInfoString(&sql, ")");

	return duet_run_as_owner(sql.data, n, types, values, nulls);
}

#define forward_as_owner(fcinfo, internal, extra, extra_value) \
	duet_forward_as_owner(fcinfo, internal, extra, extra_value, "Rules")

/* duet_rule_create(name, condition, target, query, value, severity, labels, message, for_period,
 * keep_firing_for, topic, enabled) → bigint */
Datum
duet_rule_create(PG_FUNCTION_ARGS)
{
	int64		id = forward_as_owner(fcinfo, "duet_rule_create_apply", 0, false);

	/* A row rule runs in its table's trigger; a query rule needs the scheduler (argument 3). */
	if (!PG_ARGISNULL(3))
		duet_workers_warn(psprintf("query rule \"%s\"", text_to_cstring(PG_GETARG_TEXT_PP(0))));
	PG_RETURN_INT64(id);
}

/* duet_rule_alter(name, changes jsonb) → void */
Datum
duet_rule_alter(PG_FUNCTION_ARGS)
{
	(void) forward_as_owner(fcinfo, "duet_rule_alter_apply", 0, false);
	PG_RETURN_VOID();
}

/* duet_rule_drop(name) → void */
Datum
duet_rule_drop(PG_FUNCTION_ARGS)
{
	(void) forward_as_owner(fcinfo, "duet_rule_drop_apply", 0, false);
	PG_RETURN_VOID();
}

Datum
duet_rule_enable(PG_FUNCTION_ARGS)
{
	(void) forward_as_owner(fcinfo, "duet_rule_enable_apply", 1, true);
	PG_RETURN_VOID();
}

Datum
duet_rule_disable(PG_FUNCTION_ARGS)
{
	(void) forward_as_owner(fcinfo, "duet_rule_enable_apply", 1, false);
	PG_RETURN_VOID();
}

/*
 * duet.duet_rule_validate(caller oid, condition, value, labels text[], message, target regclass,
 * query text) → void, raising the first problem. Runs as the caller.
 */
typedef struct ValidateRun
{
	FunctionCallInfo fcinfo;
} ValidateRun;

/* The body of duet_rule_validate, as the caller. */
static void
validate_as_caller(void *arg)
{
	FunctionCallInfo fcinfo = ((ValidateRun *) arg)->fcinfo;
	char	   *condition = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *value = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *message = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	TupleDesc	desc;

	if (!PG_ARGISNULL(5))
	{
		Relation	rel = table_open(PG_GETARG_OID(5), AccessShareLock);

		desc = CreateTupleDescCopy(RelationGetDescr(rel));
		table_close(rel, AccessShareLock);
	}
	else
	{
		MemoryContext cxt = CurrentMemoryContext;
		MemoryContext old;
		TupleDesc	spi_desc;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		spi_desc = rules_query_describe(text_to_cstring(PG_GETARG_TEXT_PP(6)));
		/* out of SPI's context, which SPI_finish frees */
		old = MemoryContextSwitchTo(cxt);
		desc = CreateTupleDescCopy(spi_desc);
		MemoryContextSwitchTo(old);
		SPI_finish();
	}

	/* Compile exactly as an evaluation would, but raise instead of recording an Error state. */
	(void) rules_formula_compile(condition, "condition", desc, true);
	if (value)
		(void) rules_formula_compile(value, "value", desc, false);
	(void) rules_template_parse(message, desc, value != NULL);
	if (!PG_ARGISNULL(3))
	{
		Datum	   *elems;
		bool	   *enulls;
		int			n,
					i;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &enulls, &n);
		for (i = 0; i < n; i++)
		{
			char	   *label;

			if (enulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("rule labels must not contain NULL")));
			label = TextDatumGetCString(elems[i]);
			if (rules_column(desc, label) == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("rule label \"%s\" is not a column of the rows the rule is evaluated on",
								label)));
		}
	}
}

Datum
duet_rule_validate(PG_FUNCTION_ARGS)
{
	ValidateRun vr = {fcinfo};

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("rule condition must not be NULL")));
	/*
	 * Called by the owner's apply function: back to the caller, so the rule's query and target
	 * are analysed with the caller's privileges only, with the search_path the query will run with.
	 */
	duet_run_privileged(PG_GETARG_OID(0), DUET_USER_SEARCH_PATH, validate_as_caller, &vr);
	PG_RETURN_VOID();
}

/*
 * duet_rule_test(rule text, row jsonb) → jsonb
 *
 * Dry run on one row given as a JSON object (numbers, strings, booleans, nulls): the condition's
 * result, the value, the labels and the rendered message. Reads the rule through row-level
 * security as the caller; writes nothing.
 */
Datum
duet_rule_test(PG_FUNCTION_ARGS)
{
	char	   *name;
	Jsonb	   *row;
	Oid			argtypes[2] = {TEXTOID, JSONBOID};
	Datum		args[2];
	int			ret;
	char	   *condition,
			   *value;
	RuleContent content;
	Datum		annotations;
	bool		annotations_null;
	Datum		labels;
	bool		labels_null;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	int			ncols,
				i;
	RuleRun    *run;
	duet_vm    *vm;
	Jsonb	   *result;
	MemoryContext callcxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("rule name and row must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	row = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_OBJECT(row) || JB_ROOT_IS_SCALAR(row))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the row to test must be a JSON object"),
				 errhint("For example: {\"spend\": 120, \"budget\": 100}.")));
	args[1] = CStringGetTextDatum(required_tenant("Rules"));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(callcxt);
	args[0] = CStringGetTextDatum(name);
	ret = SPI_execute_with_args(psprintf("SELECT condition, value, labels, message, %s FROM duet.rules "
										 "WHERE tenant OPERATOR(pg_catalog.=) $2 AND name OPERATOR(pg_catalog.=) $1",
										 rules_content_columns()),
								2, (Oid[]) {TEXTOID, TEXTOID}, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the rule: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rule \"%s\" does not exist", name)));
	condition = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	labels = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &labels_null);
	content.message = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	annotations = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &annotations_null);
	content.annotations = annotations_null ? NULL : DatumGetJsonbP(annotations);
	content.resolve_message = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6);

	/*
	 * The row's keys become columns: numbers numeric (read as duet_calc reads jsonb numbers),
	 * strings text, booleans bool, nulls of no type (a variable whose type is not known).
	 */
	args[0] = JsonbPGetDatum(row);
	ret = SPI_execute_with_args("SELECT key, pg_catalog.jsonb_typeof(value), value OPERATOR(pg_catalog.#>>) '{}' "
								"FROM pg_catalog.jsonb_each($1) "
								"ORDER BY key", 1, &argtypes[1], args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the row: %s", SPI_result_code_string(ret));
	ncols = (int) SPI_processed;
	desc = CreateTemplateTupleDesc(ncols);
	values = palloc0(sizeof(Datum) * Max(ncols, 1));
	nulls = palloc0(sizeof(bool) * Max(ncols, 1));
	for (i = 0; i < ncols; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *key = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		char	   *kind = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		char	   *text = SPI_getvalue(tup, SPI_tuptable->tupdesc, 3);
		Oid			typid = TEXTOID;

		if (strlen(key) >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("row key \"%s\" is too long", key)));
		if (strcmp(kind, "number") == 0)
		{
			typid = NUMERICOID;
			values[i] = DirectFunctionCall3(numeric_in, CStringGetDatum(text),
											ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		}
		else if (strcmp(kind, "boolean") == 0)
		{
			typid = BOOLOID;
			values[i] = BoolGetDatum(strcmp(text, "true") == 0);
		}
		else if (strcmp(kind, "null") == 0)
		{
			typid = UNKNOWNOID;
			nulls[i] = true;
		}
		else
			values[i] = CStringGetTextDatum(text);
		TupleDescInitEntry(desc, i + 1, key, typid, -1, 0);
	}

	run = rules_run_begin(0, "", condition, value, labels, labels_null, &content, desc);
	if (run->setup_error)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule \"%s\" cannot be evaluated on this row", name),
				 errdetail("%s", run->setup_error)));
	vm = duet_vm_new();
	if (vm == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	rules_run_row(run, desc, values, nulls, vm);
	duet_vm_free(vm);

	result = rules_run_describe(run);
	SPI_finish();
	PG_RETURN_JSONB_P(result);
}
